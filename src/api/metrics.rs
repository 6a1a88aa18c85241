//! The service's metrics in the OpenMetrics text format (which Prometheus reads), through
//! `prometheus-client`:
//!
//! - `sipnotify_targets_total{outcome, event}`: targets ended, by the label of their record
//!   (`delivered`, `auth_failed`, ..., `already_delivered`, `bad_row`) and event, from
//!   `POST /v1/notify` and campaigns alike (at most [`MAX_EVENTS`] events by name);
//! - `sipnotify_target_duration_seconds`: a histogram of each try's time, first send to
//!   answer;
//! - `sipnotify_targets_in_flight`: tries under way now;
//! - `sipnotify_retransmissions_total`: Timer E retransmissions;
//! - `sipnotify_campaigns{state}`: campaigns known to the service by state.
//!
//! Tries are measured by [`Metered`], a [`Channel`] around the one that acts; targets are
//! counted where their record is made.

use crate::campaign::Channel;
use crate::proto::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    outcome: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Distinct `event` label values named after events; more are counted as [`OTHER`].
pub const MAX_EVENTS: usize = 64;

/// The `event` label of the events past [`MAX_EVENTS`], and of names that are not SIP
/// tokens; no event is named so (parentheses are not token characters).
pub const OTHER: &str = "(other)";

/// The `event` label of records with no event (a bad row whose event is unknown); it takes
/// no place among the [`MAX_EVENTS`].
pub const NO_EVENT: &str = "(none)";

/// The service's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Mutex<HashSet<String>>,
    targets: Family<TargetLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge,
    retransmissions: Counter,
    campaigns: Family<StateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sipnotify");
        let targets = Family::<TargetLabels, Counter>::default();
        registry.register(
            "targets",
            "Targets ended, by the outcome of their record and event",
            targets.clone(),
        );
        // 1 ms to about 65 s: loopback answers to Timer F.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "target_duration",
            "Time of each try, from the first send to the end",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("targets_in_flight", "Tries under way", in_flight.clone());
        let retransmissions = Counter::default();
        registry.register(
            "retransmissions",
            "Requests retransmitted (Timer E)",
            retransmissions.clone(),
        );
        let campaigns = Family::<StateLabels, Gauge>::default();
        registry.register("campaigns", "Campaigns by state", campaigns.clone());
        Metrics {
            registry,
            events: Mutex::default(),
            targets,
            duration,
            in_flight,
            retransmissions,
            campaigns,
        }
    }

    /// One target ended with a record labelled `outcome`. Events past the first
    /// [`MAX_EVENTS`] are counted as [`OTHER`]: rows may name any event, and each label
    /// value is a series kept for the life of the service.
    pub fn target(&self, event: &str, outcome: &str) {
        let event = if event.is_empty() {
            NO_EVENT
        } else if !event.bytes().all(crate::sip::codec::is_token_byte) {
            OTHER
        } else {
            let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            if events.contains(event) {
                event
            } else if events.len() < MAX_EVENTS {
                events.insert(event.to_string());
                event
            } else {
                OTHER
            }
        };
        self.targets
            .get_or_create(&TargetLabels {
                outcome: outcome.to_string(),
                event: event.to_string(),
            })
            .inc();
    }

    /// The text a scrape gets, with `campaigns` (state, count) as they are now.
    pub fn encode(&self, campaigns: &[(&str, i64)]) -> String {
        for (state, count) in campaigns {
            self.campaigns
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(*count);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A channel that measures each try of the channel it wraps: time, retransmissions, and
/// tries in flight (counted down even when the try is cancelled).
pub struct Metered<C> {
    /// The channel that acts.
    pub inner: C,
    /// Where the measures go.
    pub metrics: Arc<Metrics>,
}

/// A try in flight, counted while it lives.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<C: Channel> Metered<C> {
    /// One delivery, counted in flight while it lasts, then its duration and
    /// retransmissions.
    async fn metered(&self, delivery: impl Future<Output = Outcome>) -> Outcome {
        self.metrics.in_flight.inc();
        let _in_flight = InFlight(&self.metrics.in_flight);
        let outcome = delivery.await;
        self.metrics.duration.observe(outcome.elapsed.as_secs_f64());
        self.metrics
            .retransmissions
            .inc_by(u64::from(outcome.retransmissions));
        outcome
    }
}

impl<C: Channel> Channel for Metered<C> {
    type Request = C::Request;

    async fn deliver(&self, request: &Self::Request) -> Outcome {
        self.metered(self.inner.deliver(request)).await
    }

    // The campaign's shared request goes on to the inner channel shared, not copied.
    async fn deliver_shared(&self, request: &Arc<Self::Request>) -> Outcome {
        self.metered(self.inner.deliver_shared(request)).await
    }

    fn target(request: &Self::Request) -> &str {
        C::target(request)
    }

    fn action(request: &Self::Request) -> &str {
        C::action(request)
    }

    fn identity(request: &Self::Request) -> String {
        C::identity(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.target("resync", "delivered");
        metrics.target("resync", "delivered");
        metrics.duration.observe(0.003);
        for _ in 0..3 {
            metrics.target("", "bad_row");
        }
        // "resync", "other" and custom-0 to custom-61 are the 64 events named; empty events
        // take no place, and the overflow's label is not an event's.
        metrics.target("other", "rejected");
        for n in 0..MAX_EVENTS + 10 {
            metrics.target(&format!("custom-{n}"), "rejected");
        }
        metrics.target("(other)", "rejected");
        let text = metrics.encode(&[("running", 2), ("done", 0)]);
        for line in [
            "sipnotify_targets_total{outcome=\"delivered\",event=\"resync\"} 2",
            "sipnotify_targets_total{outcome=\"bad_row\",event=\"(none)\"} 3",
            "sipnotify_targets_total{outcome=\"rejected\",event=\"other\"} 1",
            "sipnotify_targets_total{outcome=\"rejected\",event=\"custom-61\"} 1",
            "sipnotify_targets_total{outcome=\"rejected\",event=\"(other)\"} 13",
            "sipnotify_target_duration_seconds_count 1",
            "sipnotify_targets_in_flight 0",
            "sipnotify_retransmissions_total 0",
            "sipnotify_campaigns{state=\"running\"} 2",
            "sipnotify_campaigns{state=\"done\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("custom-62"), "{text}");
    }
}
