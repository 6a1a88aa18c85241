//! The delivery channel a campaign acts through: SIP NOTIFY today, HTTP push next. The
//! campaign's pacing, journal, retries and reports are the same whatever acts on the phone.

use crate::net::Notifier;
use crate::proto::{Notify, Outcome};
use std::future::Future;
use std::sync::Arc;

/// A way of acting on one phone.
///
/// An implementation sends one request and reports the phone's answer as an [`Outcome`]:
/// network faults are outcomes (`timeout`, `unreachable`), never errors, and the outcome's
/// `status` and `reason` are the channel's own (a SIP or an HTTP status).
pub trait Channel: Send + Sync + 'static {
    /// What to send to one target.
    type Request: Send + Sync + 'static;

    /// Acts on one target once (a campaign's retries call it again).
    fn deliver<'a>(
        &'a self,
        request: &'a Self::Request,
    ) -> impl Future<Output = Outcome> + Send + 'a;

    /// [`deliver`](Self::deliver), given the campaign's shared copy of the request, which
    /// it keeps for retries and the record: a channel that holds the request while the
    /// target is in flight holds this one instead of a copy of its own.
    fn deliver_shared<'a>(
        &'a self,
        request: &'a Arc<Self::Request>,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        self.deliver(request)
    }

    /// The target as reports name it (its URI).
    fn target(request: &Self::Request) -> &str;

    /// The action as reports name it (the event).
    fn action(request: &Self::Request) -> &str;

    /// What makes two requests the same act on the same phone: the journal key of a row
    /// that has no `id`.
    fn identity(request: &Self::Request) -> String;
}

impl Channel for Notifier {
    type Request = Notify;

    fn deliver<'a>(&'a self, notify: &'a Notify) -> impl Future<Output = Outcome> + Send + 'a {
        self.send(notify.clone())
    }

    fn deliver_shared<'a>(
        &'a self,
        notify: &'a Arc<Notify>,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        self.send(notify.clone())
    }

    fn target(notify: &Notify) -> &str {
        notify.target.as_str()
    }

    fn action(notify: &Notify) -> &str {
        notify.event.name()
    }

    /// The target and the Event header, and a digest of the body when there is one (an
    /// XML-Service URL, a custom body): the same event with another body is another act.
    fn identity(notify: &Notify) -> String {
        // Built by hand rather than by format!: every row of a campaign has one. Room for
        // a body's digest too (a space and 16 hex digits).
        let (target, event) = (notify.target.as_str(), notify.event.header_value());
        let mut identity = String::with_capacity(target.len() + 1 + event.len() + 17);
        identity.push_str(target);
        identity.push(' ');
        identity.push_str(&event);
        let body = notify.event.body();
        if !body.is_empty() {
            identity.push(' ');
            identity.push_str(&digest_prefix(body));
        }
        identity
    }
}

/// The first 64 bits of a body's SHA-256, in hex: enough to tell bodies apart in keys.
pub(crate) fn digest_prefix(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Target};

    #[test]
    fn a_notify_is_named_by_its_target_and_event() {
        let notify = Notify::new(Target::parse("159@h").unwrap(), Event::Reboot);
        assert_eq!(Notifier::identity(&notify), "sip:159@h reboot_now");
        // `1000@h` is read as `sip:1000@h`: one phone, one identity.
        let a = Notify::new(Target::parse("1000@h").unwrap(), Event::Reboot);
        let b = Notify::new(Target::parse("sip:1000@h").unwrap(), Event::Reboot);
        assert_eq!(Notifier::identity(&a), Notifier::identity(&b));
        let menu = |url| {
            Notify::new(
                Target::parse("1@h").unwrap(),
                Event::xml_service(url).unwrap(),
            )
        };
        let (x, y) = (menu("http://h/a.xml"), menu("http://h/b.xml"));
        assert_ne!(Notifier::identity(&x), Notifier::identity(&y));
        assert_eq!(
            (Notifier::target(&notify), Notifier::action(&notify)),
            ("sip:159@h", "reboot_now")
        );
    }
}
