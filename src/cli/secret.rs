//! The secrets given on the command line (the line and web passwords, the profile key and
//! IKM): each by a file, an environment variable or a value, with the same options, help
//! and order of precedence, declared by [`secret_args!`] and read through [`Given`].

use super::profile::read_input;
use super::send::read_secret;
use super::Failure;
use sipnotify::secret::{strip_final_newline, MAX_SECRET_FILE};
use sipnotify::text::printable;
use sipnotify::Password;
use std::path::Path;

/// Declares the options of secrets: for `NAME { FILE_FIELD, VALUE_FIELD "VALUE_NAME", "what
/// it is", env "ENV" }`, `--VALUE_FIELD-file FILE` and `--VALUE_FIELD VALUE_NAME` (the file
/// field is the value field with `_file`, as the help and the warnings name it), with one
/// help wording: a value on the command line is visible in the process list, so the help
/// prefers the file or the environment variable. `given` hands them to [`Given`].
macro_rules! secret_args {
    ($($(#[$meta:meta])* $name:ident {
        $file:ident, $value:ident $value_name:literal, $what:literal, env $env:literal
    })*) => {$(
        $(#[$meta])*
        #[derive(Debug, clap::Args)]
        pub struct $name {
            #[arg(long, value_name = "FILE", help = concat!(
                "Read the ", $what, " from this file (a final newline is ignored). Also: the ",
                $env, " environment variable"
            ))]
            pub $file: Option<std::path::PathBuf>,
            #[arg(long, value_name = $value_name, help = concat!(
                "The ", $what, " on the command line: visible to other users of the machine ",
                "in the process list; prefer --", stringify!($value), "-file or ", $env
            ))]
            pub $value: Option<String>,
        }

        impl $name {
            /// The environment variable the secret may come from.
            pub const ENV: &'static str = $env;

            /// The options as given.
            pub fn given(&self) -> Given<'_> {
                Given {
                    file: self.$file.as_deref(),
                    env: Self::ENV,
                    value: self.$value.as_deref(),
                    flag: stringify!($value),
                }
            }
        }
    )*};
}

secret_args! {
    /// The line password: the single-target commands' and `batch`'s.
    LinePasswordArgs { password_file, password "VALUE", "line password", env "SIPNOTIFY_PASSWORD" }
    /// The web password of the HTTP commands.
    WebPasswordArgs { password_file, password "VALUE", "web password", env "SIPNOTIFY_PASSWORD" }
    /// The AES-256-CBC key of profiles.
    KeyArgs { key_file, key "KEY", "AES-256-CBC key", env "SIPNOTIFY_PROFILE_KEY" }
    /// The RFC 8188 IKM of profiles.
    IkmArgs { ikm_file, ikm "B64URL", "RFC 8188 IKM (base64url)", env "SIPNOTIFY_PROFILE_IKM" }
}

/// A secret's options as given: its file, its environment variable, its value on the
/// command line, and the value's option name without `--` (the file's is `--FLAG-file`).
#[derive(Clone, Copy)]
pub struct Given<'a> {
    pub file: Option<&'a Path>,
    pub env: &'static str,
    pub value: Option<&'a str>,
    pub flag: &'static str,
}

/// Where a secret comes from.
enum Source<'a> {
    File(&'a Path),
    Env(String),
    Value(&'a str),
}

impl<'a> Given<'a> {
    /// The file, else the environment variable, else the value: the value warns, as other
    /// users of the machine see it in the process list, and a value behind the file or the
    /// environment variable is said to be ignored (the user may think it applies).
    fn source(self) -> Option<Source<'a>> {
        let (flag, env) = (self.flag, self.env);
        if self.value.is_some() {
            errln!(
                "warning: --{flag} is visible to other users of this machine (ps, /proc); prefer --{flag}-file or {env}"
            );
        }
        let ignored = |by: &str| {
            if self.value.is_some() {
                errln!("warning: --{flag} is ignored: {by} comes first");
            }
        };
        if let Some(path) = self.file {
            ignored(&format!("--{flag}-file"));
            return Some(Source::File(path));
        }
        if let Ok(from_env) = std::env::var(env) {
            ignored(env);
            return Some(Source::Env(from_env));
        }
        self.value.map(Source::Value)
    }

    /// A password: a file others can read warns.
    pub fn password(self) -> Result<Option<Password>, Failure> {
        Ok(match self.source() {
            Some(Source::File(path)) => {
                warn_if_shared(path);
                let text = read_secret(path, MAX_SECRET_FILE, "password file")?;
                Some(Password::new(text))
            }
            Some(Source::Env(from_env)) => Some(Password::new(from_env)),
            Some(Source::Value(value)) => Some(Password::new(value)),
            None => None,
        })
    }

    /// A key, an IKM or `serve`'s password: a file may be `-`, standard input, and loses
    /// its final newline, as a password file does.
    pub fn text(self) -> Result<Option<String>, Failure> {
        let flag = self.flag;
        Ok(match self.source() {
            Some(Source::File(path)) => {
                let mut bytes = read_input(&path.display().to_string(), MAX_SECRET_FILE, flag)?;
                strip_final_newline(&mut bytes);
                let text = String::from_utf8(bytes).map_err(|_| {
                    Failure::input(format!("the {flag} file {} is not UTF-8", path.display()))
                })?;
                Some(text)
            }
            Some(Source::Env(from_env)) => Some(from_env),
            Some(Source::Value(value)) => Some(value.to_string()),
            None => None,
        })
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            // The path may come from the service's query (`sipnotify api`).
            let path = printable(&path.to_string_lossy(), false).into_owned();
            errln!(
                "warning: the password file {path} is readable by other users: chmod 600 {path}"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}
