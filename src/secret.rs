//! Secrets (passwords, profile keys, IKMs) live in types whose `Debug` and `Display` never
//! show them, so that no output, log, trace, journal or report can print one by accident.

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
