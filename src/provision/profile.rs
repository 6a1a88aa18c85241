//! Profile files as the phone reads them: gzip, and AES-256-CBC in the format of
//! `openssl enc -e -aes-256-cbc -k KEY` (the guide's only CBC format), plus [`open`], the
//! phone's whole pipeline from a downloaded body to profile text.
//!
//! The openssl format is `Salted__`, an 8-byte random salt, then the PKCS#7-padded
//! ciphertext. Key and IV come from the passphrase and the salt by openssl's
//! `EVP_BytesToKey` with one iteration: D1 = H(pass || salt), Di = H(Di-1 || pass || salt),
//! key = the first 32 bytes of D1 || D2 || ..., IV the next 16. H is SHA-256 since
//! openssl 1.1.0 (`-md sha256`, the default, and what firmware tested with 1.1.1d
//! expects) and MD5 before it (`-md md5`).

use super::rfc8188::{self, Rfc8188Error};
use super::{Ikm, Key, MAX_PROFILE};
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use std::io::Read;

/// What openssl writes first in a salted file.
pub const MAGIC: &[u8; 8] = b"Salted__";

/// The first two bytes of every gzip member (RFC 1952): how the phone tells a compressed
/// profile from a plain one.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The digest openssl's key derivation uses (`-md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Md {
    /// openssl 1.1.0 and later: the default.
    #[default]
    Sha256,
    /// openssl before 1.1.0.
    Md5,
}

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// No `Salted__` header: not what `openssl enc -k` writes.
    #[error("not an `openssl enc -aes-256-cbc -k` file: it does not start with Salted__")]
    NotEncrypted,
    /// The ciphertext is not whole blocks.
    #[error("the file is cut short or corrupt: {0} bytes of ciphertext is not a positive multiple of 16")]
    Truncated(usize),
    /// The padding does not check out, or the plaintext is neither gzip nor text.
    #[error("wrong key (or wrong --md), or a corrupt file: the decrypted data {0}")]
    WrongKey(&'static str),
    /// The body is encrypted but the rule gives no key.
    #[error("the file is encrypted (Salted__) but the profile rule has no --key")]
    NoKey,
    /// `Content-Encoding: aes128gcm` but no IKM.
    #[error("the server sent Content-Encoding: aes128gcm but no IKM is set")]
    NoIkm,
    /// An RFC 8188 body that does not decode.
    #[error("aes128gcm: {0}")]
    Rfc8188(#[from] Rfc8188Error),
    /// A gzip header on data that does not inflate.
    #[error("corrupt gzip data: {0}")]
    Gzip(String),
    /// Too large, before or after decompression.
    #[error("over {} MiB (after decompression)", MAX_PROFILE / (1024 * 1024))]
    TooLarge,
    /// Profiles are UTF-8 only.
    #[error("not UTF-8 text (the phone reads UTF-8 profiles only), at byte {0}")]
    NotUtf8(usize),
}

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// openssl's `EVP_BytesToKey(aes-256-cbc, md, salt, pass, count = 1)`: 32 bytes of key and
/// 16 of IV.
fn derive(key: &Key, md: Md, salt: &[u8; 8]) -> ([u8; 32], [u8; 16]) {
    fn chain<D: sha2::Digest>(pass: &[u8], salt: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let mut previous: Vec<u8> = Vec::new();
        while out.len() < 48 {
            let mut h = D::new();
            h.update(&previous);
            h.update(pass);
            h.update(salt);
            previous = h.finalize().to_vec();
            out.extend_from_slice(&previous);
        }
        out
    }
    let pass = key.expose().as_bytes();
    let bytes = match md {
        Md::Sha256 => chain::<sha2::Sha256>(pass, salt),
        Md::Md5 => chain::<md5::Md5>(pass, salt),
    };
    let mut k = [0; 32];
    let mut iv = [0; 16];
    k.copy_from_slice(&bytes[..32]);
    iv.copy_from_slice(&bytes[32..48]);
    (k, iv)
}

/// Encrypts as `openssl enc -e -aes-256-cbc -k KEY -md MD` does with this salt (the caller
/// draws it at random; a fixed one is for tests only).
pub fn encrypt(plain: &[u8], key: &Key, md: Md, salt: [u8; 8]) -> Vec<u8> {
    let (k, iv) = derive(key, md, &salt);
    let body = Aes256CbcEnc::new(&k.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&body);
    out
}

/// Decrypts what `openssl enc -e -aes-256-cbc -k KEY -md MD` wrote. A wrong key almost
/// always breaks the padding; when it happens to look right, a result that is neither
/// gzip nor UTF-8 (which no profile is) is refused too.
pub fn decrypt(data: &[u8], key: &Key, md: Md) -> Result<Vec<u8>, ProfileError> {
    let rest = data.strip_prefix(MAGIC).ok_or(ProfileError::NotEncrypted)?;
    if rest.len() < 8 {
        return Err(ProfileError::Truncated(0));
    }
    let (salt, body) = rest.split_at(8);
    if body.is_empty() || body.len() % 16 != 0 {
        return Err(ProfileError::Truncated(body.len()));
    }
    let salt: [u8; 8] = salt.try_into().expect("split at 8");
    let (k, iv) = derive(key, md, &salt);
    let plain = Aes256CbcDec::new(&k.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(body)
        .map_err(|_| ProfileError::WrongKey("has no valid padding"))?;
    if !is_gzip(&plain) && std::str::from_utf8(&plain).is_err() {
        return Err(ProfileError::WrongKey("is neither gzip nor UTF-8 text"));
    }
    Ok(plain)
}

/// Whether the data starts like a gzip file.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// Whether the data starts like an `openssl enc` salted file.
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Compresses with gzip (deflate, RFC 1951 in an RFC 1952 wrapper), as `gzip` does.
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(plain)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Decompresses gzip data, stopping at [`MAX_PROFILE`] bytes of output (a small file can
/// inflate to gigabytes).
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, ProfileError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(MAX_PROFILE as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ProfileError::Gzip(e.to_string()))?;
    if out.len() > MAX_PROFILE {
        return Err(ProfileError::TooLarge);
    }
    Ok(out)
}

/// How a phone is set to decrypt: the rule's `--key`, and its IKM.
#[derive(Debug, Clone, Copy, Default)]
pub struct Secrets<'a> {
    /// `--key` of the profile rule (AES-256-CBC, openssl format, SHA-256 derivation).
    pub key: Option<&'a Key>,
    /// `IKM_HTTP_Encrypt_Content` (RFC 8188).
    pub ikm: Option<&'a Ikm>,
}

/// The phone's pipeline from a downloaded body to profile text (the guide's rules):
/// `Content-Encoding: aes128gcm` means RFC 8188 with the IKM; otherwise a `--key` in the
/// rule means AES-256-CBC; then a gzip header means gzip (compression precedes
/// encryption); the result must be UTF-8.
pub fn open(body: &[u8], aes128gcm: bool, secrets: Secrets<'_>) -> Result<String, ProfileError> {
    if body.len() > MAX_PROFILE {
        return Err(ProfileError::TooLarge);
    }
    let plain = if aes128gcm {
        let ikm = secrets.ikm.ok_or(ProfileError::NoIkm)?;
        rfc8188::decode(body, ikm)?.plain
    } else if let Some(key) = secrets.key {
        decrypt(body, key, Md::Sha256)?
    } else if is_encrypted(body) {
        return Err(ProfileError::NoKey);
    } else {
        body.to_vec()
    };
    let plain = if is_gzip(&plain) {
        gunzip(&plain)?
    } else {
        plain
    };
    String::from_utf8(plain).map_err(|e| ProfileError::NotUtf8(e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &[u8] =
        b"<flat-profile>\n<Resync_Periodic> 7200 </Resync_Periodic>\n</flat-profile>\n";

    #[test]
    fn key_derivation_matches_openssl() {
        // `openssl enc -aes-256-cbc -k SecretPhrase1234 -S 0102030405060708 -P [-md md5]`
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        let key = Key::new("SecretPhrase1234");
        let (k, iv) = derive(&key, Md::Sha256, &salt);
        assert_eq!(
            hex(&k),
            "EC2A2D45A836181F7FA96D7E6204D9C24CD45FF1E1062E3B2DAE7E7BAA7D63A8"
        );
        assert_eq!(hex(&iv), "E10DD0D54AEFDDC59586871B1A7BD83C");
        let (k, iv) = derive(&key, Md::Md5, &salt);
        assert_eq!(
            hex(&k),
            "75618538A4502FA7161D6DC303F2A1F1C0EE19362EE647E725505C3C52364C82"
        );
        assert_eq!(hex(&iv), "04CA41F7B4E382DA569224B0C61B445A");
    }

    #[test]
    fn round_trip_and_wrong_keys() {
        let key = Key::new("SecretPhrase1234");
        for md in [Md::Sha256, Md::Md5] {
            let sealed = encrypt(PROFILE, &key, md, [9; 8]);
            assert!(sealed.starts_with(b"Salted__\x09\x09"));
            assert_eq!(sealed.len(), 16 + (PROFILE.len() / 16 + 1) * 16);
            assert_eq!(decrypt(&sealed, &key, md).unwrap(), PROFILE);
            assert!(matches!(
                decrypt(&sealed, &Key::new("SecretPhrase1235"), md),
                Err(ProfileError::WrongKey(_))
            ));
        }
        let sha = encrypt(PROFILE, &key, Md::Sha256, [9; 8]);
        assert!(matches!(
            decrypt(&sha, &key, Md::Md5),
            Err(ProfileError::WrongKey(_))
        ));
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let key = Key::new("k");
        let sealed = encrypt(PROFILE, &key, Md::Sha256, [0; 8]);
        assert_eq!(
            decrypt(PROFILE, &key, Md::Sha256),
            Err(ProfileError::NotEncrypted)
        );
        assert_eq!(
            decrypt(b"Salted__abc", &key, Md::Sha256),
            Err(ProfileError::Truncated(0))
        );
        assert_eq!(
            decrypt(&sealed[..16], &key, Md::Sha256),
            Err(ProfileError::Truncated(0))
        );
        assert_eq!(
            decrypt(&sealed[..sealed.len() - 1], &key, Md::Sha256),
            Err(ProfileError::Truncated(sealed.len() - 17))
        );
        for len in 0..sealed.len() {
            let _ = decrypt(&sealed[..len], &key, Md::Sha256);
        }
    }

    #[test]
    fn gzip_round_trip_and_bomb() {
        assert!(is_gzip(&gzip(PROFILE)));
        assert_eq!(gunzip(&gzip(PROFILE)).unwrap(), PROFILE);
        let bomb = gzip(&vec![b' '; MAX_PROFILE + 1]);
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(gunzip(&bomb), Err(ProfileError::TooLarge));
        assert!(matches!(
            gunzip(&[0x1f, 0x8b, 8, 0, 1]),
            Err(ProfileError::Gzip(_))
        ));
    }

    #[test]
    fn the_phone_pipeline() {
        let key = Key::new("SecretPhrase1234");
        let with = |key| Secrets { key, ikm: None };
        let text = std::str::from_utf8(PROFILE).unwrap();
        assert_eq!(open(PROFILE, false, with(None)).unwrap(), text);
        assert_eq!(open(&gzip(PROFILE), false, with(None)).unwrap(), text);
        let sealed = encrypt(&gzip(PROFILE), &key, Md::Sha256, [3; 8]);
        assert_eq!(open(&sealed, false, with(Some(&key))).unwrap(), text);
        assert_eq!(open(&sealed, false, with(None)), Err(ProfileError::NoKey));
        assert!(matches!(
            open(PROFILE, false, with(Some(&key))),
            Err(ProfileError::NotEncrypted)
        ));
        assert_eq!(
            open(PROFILE, true, with(Some(&key))),
            Err(ProfileError::NoIkm)
        );
        assert_eq!(
            open(b"\xff\xfe<", false, with(None)),
            Err(ProfileError::NotUtf8(0))
        );
    }
}
