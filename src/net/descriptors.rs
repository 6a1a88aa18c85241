//! The process's open file limit: each target in flight over TCP holds a descriptor.

use std::sync::Once;

/// Raises the soft limit on open files to the hard limit, once per process. The usual soft
/// limit (1,024) is far below the targets a TCP campaign keeps in flight; the hard limit is
/// what the system allows (Go's runtime raises it the same way at start).
/// [`Notifier::bind`](super::Notifier::bind) calls it.
pub fn raise_descriptor_limit() {
    static RAISED: Once = Once::new();
    RAISED.call_once(|| {
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            tracing::debug!("cannot raise the open file limit: {e}");
        }
    });
}

/// How many more descriptors this process may open: the (raised) soft limit minus those
/// open now; `None` where either is unknown. A campaign over TCP needs one per target in
/// flight (`--concurrency`).
pub fn descriptor_budget() -> Option<u64> {
    raise_descriptor_limit();
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    let open = ["/proc/self/fd", "/dev/fd"]
        .iter()
        .find_map(|dir| std::fs::read_dir(dir).ok())?
        .count() as u64;
    Some(soft.saturating_sub(open))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_shrinks_with_each_open_file() {
        let before = descriptor_budget().expect("a budget on this system");
        let files: Vec<_> = (0..100)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let after = descriptor_budget().unwrap();
        // Other tests open and close sockets meanwhile: allow for some.
        assert!(after + 50 <= before, "{before} then {after}");
        drop(files);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        raise_descriptor_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(soft, hard);
    }
}
