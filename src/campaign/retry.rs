//! What is retried, and when: exponential backoff with jitter, honouring `Retry-After`.

use crate::proto::outcome::{Outcome, OutcomeKind};
use rand::Rng;
use std::time::Duration;

/// Longest wait a `Retry-After` may ask for; a phone asking for more is not retried.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The retry policy of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0: none).
    pub retries: u32,
    /// The first backoff; each retry doubles it.
    pub base: Duration,
    /// The longest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Whether an outcome may be retried: `timeout`, `unreachable` and 503. Never
    /// `delivered`, `auth_failed`, `no_credentials`, or any other final response.
    pub fn retryable(outcome: &Outcome) -> bool {
        match outcome.kind {
            OutcomeKind::Timeout | OutcomeKind::Unreachable => true,
            OutcomeKind::Rejected => outcome.status == Some(503),
            _ => false,
        }
    }

    /// How long to wait before retry number `retry` (1 for the first), or `None` when the
    /// outcome is final or the retries are used up.
    pub fn next_delay(
        &self,
        retry: u32,
        outcome: &Outcome,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if retry > self.retries || !Self::retryable(outcome) {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << (retry - 1).min(20))
            .min(self.max);
        // "Equal jitter": half fixed, half random, so retries neither bunch nor vanish.
        let backoff = exp / 2 + exp.mul_f64(rng.gen::<f64>() / 2.0);
        match outcome.retry_after {
            Some(after) if after > MAX_RETRY_AFTER => None,
            // Never earlier than asked, with jitter on top so a fleet does not come back at
            // the same instant.
            Some(after) => Some(after + self.base.mul_f64(rng.gen::<f64>() / 2.0)),
            None => Some(backoff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn outcome(kind: OutcomeKind, status: Option<u16>) -> Outcome {
        Outcome {
            status,
            ..Outcome::unsent(kind, "x")
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for (kind, status, retried) in [
            (OutcomeKind::Timeout, None, true),
            (OutcomeKind::Unreachable, None, true),
            (OutcomeKind::Rejected, Some(503), true),
            (OutcomeKind::Rejected, Some(486), false),
            (OutcomeKind::Rejected, Some(500), false),
            (OutcomeKind::Delivered, Some(200), false),
            (OutcomeKind::AuthFailed, Some(403), false),
        ] {
            let outcome = outcome(kind, status);
            assert_eq!(
                RetryPolicy::retryable(&outcome),
                retried,
                "{kind:?} {status:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops() {
        let p = RetryPolicy {
            retries: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        let mut rng = StdRng::seed_from_u64(1);
        let t = outcome(OutcomeKind::Timeout, None);
        for _ in 0..100 {
            let d1 = p.next_delay(1, &t, &mut rng).unwrap();
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = p.next_delay(2, &t, &mut rng).unwrap();
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d3 = p.next_delay(3, &t, &mut rng).unwrap();
            assert!(d3 >= Duration::from_millis(150) && d3 <= Duration::from_millis(300));
        }
        assert_eq!(p.next_delay(4, &t, &mut rng), None);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy {
            retries: 2,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(2);
        let mut busy = outcome(OutcomeKind::Rejected, Some(503));
        busy.retry_after = Some(Duration::from_secs(5));
        let d = p.next_delay(1, &busy, &mut rng).unwrap();
        assert!(d >= Duration::from_secs(5) && d <= Duration::from_millis(5500));
        busy.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(p.next_delay(1, &busy, &mut rng), None);
    }
}
