//! Provisioning: the MPP profile formats, the profile rule, a provisioning server, and the
//! phone's side of a resync (fetch, decrypt, apply).
//!
//! What a resync NOTIFY sets off happens here: the phone expands its Profile_Rule
//! ([`rule`]), downloads the file, decrypts it ([`profile`] for `openssl enc -aes-256-cbc
//! -k`, [`rfc8188`] for `Content-Encoding: aes128gcm`), gunzips it, and applies the
//! `<flat-profile>` parameters ([`check`]). [`serve`] is the provisioning server that hands
//! those files out and logs one JSON line per fetch ([`fetch`] reads such lines back and
//! is the phone's HTTP client).
//!
//! `profile`, `rfc8188`, `rule` and `check` are sans-IO: plain functions over bytes and
//! text, with known-answer tests. Nothing read from a file or the network is trusted: sizes
//! are bounded (decompressed output included) and malformed input is an error, never a
//! panic.

pub mod check;
pub mod confirm;
pub mod fetch;
pub mod profile;
pub mod resync;
pub mod rfc8188;
pub mod rule;
pub mod serve;

/// The largest profile read, written, served or decompressed: real profiles are a few
/// hundred KiB at most, and a gzip bomb must stop here.
pub const MAX_PROFILE: usize = 16 * 1024 * 1024;

crate::secret::secret!(
    /// A profile encryption key: the passphrase given to `openssl enc -k` and to the phone
    /// as `--key` in its Profile_Rule. `Debug` and `Display` never show it.
    Key(String) exposed as str
);

impl Key {
    /// Wraps a passphrase.
    pub fn new(value: impl Into<String>) -> Key {
        Key(value.into())
    }
}

crate::secret::secret!(
    /// RFC 8188 input keying material (the phone's `IKM_HTTP_Encrypt_Content`), written in
    /// base64url. `Debug` and `Display` never show it.
    Ikm(Vec<u8>) exposed as [u8]
);

/// Why an IKM was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IkmError {
    /// Not base64url.
    #[error("the IKM is not base64url (A-Z a-z 0-9 - _, padding optional)")]
    NotBase64,
    /// Empty or too long.
    #[error("the IKM must be 1 to {MAX_IKM} bytes once decoded, not {0}")]
    Length(usize),
}

/// RFC 8188 does not bound the IKM; 64 bytes is far above the 16 of its examples.
const MAX_IKM: usize = 64;

impl Ikm {
    /// Reads base64url, with or without `=` padding (leading and trailing white space is
    /// ignored, as in a key file).
    pub fn from_base64url(text: &str) -> Result<Ikm, IkmError> {
        use base64::Engine as _;
        let text = text.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| IkmError::NotBase64)?;
        if bytes.is_empty() || bytes.len() > MAX_IKM {
            return Err(IkmError::Length(bytes.len()));
        }
        Ok(Ikm(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let key = Key::new("SecretPhrase1234");
        let ikm = Ikm::from_base64url("yqdlZ-tYemfogSmv7Ws5PQ").unwrap();
        for shown in [
            format!("{key} {key:?}"),
            format!("{ikm} {ikm:?}"),
            format!("{:?}", Some(&key)),
        ] {
            assert!(
                !shown.contains("Secret") && !shown.contains("yqdl"),
                "{shown}"
            );
            assert!(shown.contains("redacted"));
        }
    }

    /// Every parser here reads text from files and the network: random input built from
    /// the characters that matter to them must give a value or an error, never a panic.
    #[test]
    fn parsers_never_panic_on_arbitrary_input() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &[
            "$",
            "$$",
            "$(",
            ")",
            "(",
            "?",
            "|",
            "[",
            "]",
            "\"",
            "--key",
            " ",
            "MA",
            "MAU",
            "SA",
            "=",
            "!=",
            "!",
            "<",
            ">=",
            "eq",
            "and",
            "1",
            "-",
            ".",
            "sip.11-3-2MPP-1",
            "/",
            "://",
            "http",
            ":",
            "%",
            "%2e",
            "..",
            "<flat-profile>",
            "</flat-profile>",
            "<A",
            ">",
            "ua=\"",
            "&lt;",
            "é",
            "\u{0}",
            "\n",
            "0e:08",
            "000e08012345",
            "Salted__",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(8188);
        let macros = rule::Macros::for_mac(rule::Mac([0, 0x0e, 8, 1, 2, 3]));
        let ikm = Ikm::from_base64url("BO3ZVPxUlnLORbVGMpbT1Q").unwrap();
        let key = Key::new("k");
        for _ in 0..20_000 {
            let text: String = (0..rng.gen_range(0..12))
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect();
            if let Ok(parsed) = rule::Rule::parse(&text) {
                let _ = parsed.evaluate(&macros);
            }
            let _ = rule::holds(&text);
            let _ = macros.expand(&text);
            let _ = rule::macro_names(&text);
            let _ = rule::Url::parse(&text);
            let _ = rule::Mac::parse(&text);
            let _ = fetch::mac_in(&text);
            let _ = serve::segments(&text);
            let _ = check::check(text.as_bytes());
            let _ = confirm::parse_log_line(&text);
            let bytes: Vec<u8> = (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect();
            let _ = rfc8188::decode(&bytes, &ikm);
            let _ = profile::open(
                &bytes,
                rng.gen(),
                profile::Secrets {
                    key: Some(&key),
                    ikm: Some(&ikm),
                },
            );
            let _ = check::check(&bytes);
        }
    }

    #[test]
    fn ikm_is_base64url_within_bounds() {
        assert_eq!(
            Ikm::from_base64url("yqdlZ-tYemfogSmv7Ws5PQ==\n")
                .unwrap()
                .expose()
                .len(),
            16
        );
        assert_eq!(Ikm::from_base64url("a+b/"), Err(IkmError::NotBase64));
        assert_eq!(Ikm::from_base64url(""), Err(IkmError::Length(0)));
        assert_eq!(
            Ikm::from_base64url(&"A".repeat(100)),
            Err(IkmError::Length(75))
        );
    }
}
