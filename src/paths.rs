//! Where a path leads, as opening it would: the one place that follows links, for the
//! checks that two options name the same file and that a file is not inside a served
//! directory; and opening a path only if it is a regular file.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Opens `path` for reading if it is a regular file, as the opened file says: a look at
/// the path first could be undone by a swap before the open. The open does not wait (a
/// FIFO would hold the caller until a writer came); reads of a regular file never do.
/// For paths named by others, such as the service's requests.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// The path opening `path` would reach: every link followed (the last one too, even one
/// that leads to no file yet), canonical where the file exists, else its folder's canonical
/// path and its name. `None` when its folder does not exist either.
pub fn leads_to(path: &Path) -> Option<PathBuf> {
    let mut path = path.to_path_buf();
    // As many links as the kernel follows (SYMLOOP_MAX), so that a loop ends.
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        // A relative target is relative to the link's folder; an absolute one replaces it.
        path = path.parent().unwrap_or(Path::new("")).join(target);
    }
    if let Ok(real) = std::fs::canonicalize(&path) {
        return Some(real);
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = std::fs::canonicalize(folder.unwrap_or(Path::new("."))).ok()?;
    Some(folder.join(path.file_name()?))
}

/// Whether the file `path` (which need not exist yet) is inside the directory `dir`, by
/// where it [leads](leads_to): in a served directory, anyone could fetch it. A file whose
/// folder does not exist is inside nothing (it cannot be written either).
pub fn inside(path: &Path, dir: &Path) -> bool {
    match (leads_to(path), std::fs::canonicalize(dir)) {
        (Some(real), Ok(dir)) => real.starts_with(dir),
        _ => false,
    }
}

/// Whether two paths name the same file: by device and inode where both exist, else by
/// where they [lead](leads_to), else (neither folder exists yet) by their absolute paths
/// cleaned of `.` and `..`.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    resolved(a) == resolved(b)
}

/// Where `path` leads, else where its cleaned absolute form leads, else that form.
fn resolved(path: &Path) -> PathBuf {
    leads_to(path).unwrap_or_else(|| {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut clean = PathBuf::new();
        for part in path.components() {
            match part {
                Component::ParentDir => {
                    clean.pop();
                }
                Component::CurDir => {}
                other => clean.push(other),
            }
        }
        leads_to(&clean).unwrap_or(clean)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str) -> PathBuf {
        let base = std::env::temp_dir().join(format!("sipnotify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        base
    }

    /// Only a regular file opens, and a FIFO with no writer is refused at once rather than
    /// waited on (the open would otherwise block this test, which then never ends).
    #[test]
    fn only_a_regular_file_opens_and_a_fifo_does_not_wait() {
        let base = base("regular");
        let (file, fifo) = (base.join("rows.csv"), base.join("fifo"));
        std::fs::write(&file, "target\n").unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(open_regular(&file).is_ok());
        let (done, finished) = std::sync::mpsc::channel();
        let opened = fifo.clone();
        std::thread::spawn(move || done.send(open_regular(&opened).map(drop)));
        let refused = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO must not wait for a writer");
        for refused in [refused, open_regular(Path::new("/dev/null")).map(drop)] {
            let e = refused.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            assert_eq!(e.to_string(), "not a regular file");
        }
        assert!(open_regular(&base).is_err(), "a directory");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A file is inside a directory by where it really is: its folder's links and its own
    /// are followed, its own even when it leads to no file yet.
    #[test]
    fn a_file_is_inside_by_its_real_place() {
        let base = base("inside");
        let (root, elsewhere) = (base.join("root"), base.join("elsewhere"));
        std::fs::create_dir_all(root.join("cfg")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(root.join("cfg"), elsewhere.join("to-cfg")).unwrap();
        std::fs::write(root.join("cfg/journal"), "").unwrap();
        std::os::unix::fs::symlink(root.join("cfg/journal"), elsewhere.join("journal")).unwrap();
        assert!(inside(&root.join("cfg/new.log"), &root));
        assert!(inside(&elsewhere.join("to-cfg/new.log"), &root));
        assert!(inside(&elsewhere.join("journal"), &root));
        // A link to a file not made yet: opening it would make the file inside.
        std::os::unix::fs::symlink("../root/cfg/later", elsewhere.join("later")).unwrap();
        assert!(inside(&elsewhere.join("later"), &root));
        assert!(!inside(&elsewhere.join("new.log"), &root));
        assert!(!inside(&elsewhere.join("missing/new.log"), &root));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_same_file_by_another_name_is_the_same_file() {
        let dir = base("same");
        let a = dir.join("a");
        std::fs::write(&a, "x").unwrap();
        assert!(same_file(&a, &dir.join(".").join("a")));
        let fresh = dir.join("fresh");
        assert!(same_file(&fresh, &dir.join("x").join("..").join("fresh")));
        assert!(!same_file(&a, &fresh));
        // A link to a file not made yet names the file that writing through it makes.
        std::os::unix::fs::symlink("fresh", dir.join("to-fresh")).unwrap();
        assert!(same_file(&fresh, &dir.join("to-fresh")));
        assert!(!same_file(&a, &dir.join("to-fresh")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
