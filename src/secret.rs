//! Secrets (passwords, profile keys, IKMs) live in types whose `Debug` and `Display` never
//! show them, so that no output, log, trace, journal or report can print one by accident;
//! and files that hold them are read here, bounded, with errors that never quote them.

use std::path::Path;

/// Declares a newtype over a secret: `expose` hands the value to the one computation that
/// needs it (a digest, a key derivation); `Debug` and `Display` write `<redacted>`.
macro_rules! secret {
    ($(#[$meta:meta])* $name:ident($inner:ty) exposed as $exposed:ty) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name($inner);

        impl $name {
            /// The secret itself, only for the computation that needs it.
            pub fn expose(&self) -> &$exposed {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("<redacted>")
            }
        }
    };
}

pub(crate) use secret;

/// Why a file could not be read. Never holds the file's contents: it may be a secret.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It cannot be opened or read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// What the file is for (`password file`, `token file`, ...).
        what: &'static str,
        /// Its path, as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is over the limit: `/dev/zero` or another wrong path.
    #[error("the {what} {path} is over {kib} KiB; is it the right file?")]
    TooLarge {
        /// What the file is for.
        what: &'static str,
        /// Its path, as given.
        path: String,
        /// The limit, in KiB.
        kib: usize,
    },
    /// A text file that is not UTF-8.
    #[error("the {what} {path} is not UTF-8 text")]
    NotText {
        /// What the file is for.
        what: &'static str,
        /// Its path, as given.
        path: String,
    },
}

/// The largest file that holds one secret (a password, a token, a key, an IKM): one short
/// line.
pub const MAX_SECRET_FILE: usize = 4 * 1024;

/// Reads a file of at most `limit` bytes, reading no more than one byte past it (so
/// `/dev/zero` or a wrong path costs nothing).
pub fn read_file(path: &Path, limit: usize, what: &'static str) -> Result<Vec<u8>, FileError> {
    read_opened(std::fs::File::open(path), path, limit, what)
}

fn read_opened(
    file: std::io::Result<std::fs::File>,
    path: &Path,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let mut bytes = Vec::new();
    file.and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|source| FileError::Read {
            what,
            path: shown(),
            source,
        })?;
    if bytes.len() > limit {
        return Err(FileError::TooLarge {
            what,
            path: shown(),
            kib: limit / 1024,
        });
    }
    Ok(bytes)
}

/// A secret kept in a file (a password, a token, a key): [`read_file`], UTF-8, without
/// the final LF or CRLF editors add.
pub fn read_secret(path: &Path, limit: usize, what: &'static str) -> Result<String, FileError> {
    secret_text(read_file(path, limit, what)?, path, what)
}

/// [`read_secret`] of a regular file only ([`open_regular`](crate::paths::open_regular)):
/// for paths named by others, such as the service's requests.
pub fn read_regular_secret(
    path: &Path,
    limit: usize,
    what: &'static str,
) -> Result<String, FileError> {
    let file = crate::paths::open_regular(path);
    secret_text(read_opened(file, path, limit, what)?, path, what)
}

fn secret_text(mut bytes: Vec<u8>, path: &Path, what: &'static str) -> Result<String, FileError> {
    strip_final_newline(&mut bytes);
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        what,
        path: path.display().to_string(),
    })
}

/// Removes one final LF or CRLF, the newline editors add to a file.
pub fn strip_final_newline(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_bounded_and_lose_their_final_newline() {
        let dir = std::env::temp_dir().join(format!("sipnotify-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        for (written, read) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("a\n\n", "a\n"),
        ] {
            std::fs::write(&file, written).unwrap();
            assert_eq!(read_secret(&file, 64, "password file").unwrap(), read);
        }
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        let e = read_secret(&file, 64, "password file").unwrap_err();
        assert!(matches!(e, FileError::NotText { .. }), "{e}");
        let e = read_file(Path::new("/dev/zero"), 4096, "password file").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the password file /dev/zero is over 4 KiB; is it the right file?"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
