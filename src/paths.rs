//! Where a path leads, as opening it would: the one place that follows links, for the
//! checks that two options name the same file and that a file is not inside a served
//! directory.

use std::path::{Component, Path, PathBuf};

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
