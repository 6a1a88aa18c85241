//! RFC 8188 "aes128gcm" content encoding: what a provisioning server sends with
//! `Content-Encoding: aes128gcm` to a phone holding the IKM (`IKM_HTTP_Encrypt_Content`).
//!
//! The body is a header (16-byte salt, 4-byte record size `rs`, 1-byte key id length, the
//! key id) and then records of exactly `rs` bytes each, the last one shorter or equal. Each
//! record is AES-128-GCM over its plaintext, a delimiter (2 in the last record, 1 in the
//! others) and zero padding. The key and nonce come from HKDF-SHA-256 with the salt:
//! CEK = HKDF(salt, IKM, "Content-Encoding: aes128gcm\0", 16), NONCE = HKDF(salt, IKM,
//! "Content-Encoding: nonce\0", 12), and record i's nonce is NONCE XOR i (RFC 8188 §2.2,
//! §2.3).

use super::Ikm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};

/// The AES-GCM tag on every record.
const TAG: usize = 16;
/// The smallest record size: a tag, a delimiter and one octet of data (RFC 8188 §2.1).
pub const MIN_RECORD_SIZE: u32 = 18;
/// The record size sipnotify writes by default (the RFC's example, 4 KiB).
pub const DEFAULT_RECORD_SIZE: u32 = 4096;
/// The header without its key id.
const HEADER: usize = 21;

/// Why an aes128gcm body did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rfc8188Error {
    /// Shorter than its header.
    #[error("the body is shorter than its header ({0} bytes)")]
    ShortHeader(usize),
    /// A record size under 18.
    #[error("record size {0} is under the minimum of 18")]
    RecordSize(u32),
    /// A record does not authenticate.
    #[error("record {0} does not decrypt: wrong IKM, or a corrupt body")]
    Decrypt(u64),
    /// A record's delimiter is missing or of the wrong kind.
    #[error("record {0} has no valid delimiter (corrupt body)")]
    Delimiter(u64),
    /// The last record says more follow, or a middle one says it is the last.
    #[error("the body is truncated or has data after its last record (record {0})")]
    Truncated(u64),
    /// The key id does not fit its one-byte length.
    #[error("the key id is over 255 bytes")]
    KeyIdTooLong,
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The content.
    pub plain: Vec<u8>,
    /// The header's key id (which key the sender used; the phone has one IKM).
    pub key_id: Vec<u8>,
    /// The header's record size.
    pub record_size: u32,
}

/// The content-encryption key and nonce base for a salt.
fn keys(ikm: &Ikm, salt: &[u8]) -> (Aes128Gcm, [u8; 12]) {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm.expose());
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    hk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .expect("16 bytes is a valid HKDF length");
    hk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("12 bytes is a valid HKDF length");
    (Aes128Gcm::new(&cek.into()), nonce)
}

/// Record `seq`'s nonce: the nonce base XOR the sequence number, big-endian in the low
/// 96 bits.
fn nonce(base: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *base;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

/// Encodes `plain` with this salt, record size and key id, putting `lengths` octets of
/// content in each record (the last record takes what is left). Every record but the last
/// is padded with zeros to the full record size; the last is not padded. This is how
/// RFC 8188's §3.2 example is made (7 octets, padded, then 8).
pub(crate) fn encode_records(
    plain: &[u8],
    ikm: &Ikm,
    salt: [u8; 16],
    record_size: u32,
    key_id: &[u8],
    lengths: impl Iterator<Item = usize>,
) -> Result<Vec<u8>, Rfc8188Error> {
    if record_size < MIN_RECORD_SIZE {
        return Err(Rfc8188Error::RecordSize(record_size));
    }
    let id_len = u8::try_from(key_id.len()).map_err(|_| Rfc8188Error::KeyIdTooLong)?;
    let mut out = Vec::with_capacity(HEADER + key_id.len() + plain.len() * 2 + TAG);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&record_size.to_be_bytes());
    out.push(id_len);
    out.extend_from_slice(key_id);
    let (cipher, base) = keys(ikm, &salt);
    // Content plus delimiter fit in a record minus its tag.
    let room = record_size as usize - TAG - 1;
    let mut rest = plain;
    let mut lengths = lengths;
    let mut seq = 0u64;
    loop {
        let take = lengths
            .next()
            .unwrap_or(room)
            .clamp(1, room)
            .min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        let last = tail.is_empty();
        let mut record = chunk.to_vec();
        record.push(if last { 2 } else { 1 });
        if !last {
            record.resize(room + 1, 0);
        }
        let sealed = cipher
            .encrypt(&nonce(&base, seq).into(), record.as_slice())
            .expect("AES-GCM encryption of a bounded record cannot fail");
        out.extend_from_slice(&sealed);
        if last {
            return Ok(out);
        }
        rest = tail;
        seq += 1;
    }
}

/// Encodes `plain` in records of `record_size` bytes, each full but the last.
pub fn encode(
    plain: &[u8],
    ikm: &Ikm,
    salt: [u8; 16],
    record_size: u32,
    key_id: &[u8],
) -> Result<Vec<u8>, Rfc8188Error> {
    encode_records(plain, ikm, salt, record_size, key_id, std::iter::empty())
}

/// Decodes an aes128gcm body. Memory is bounded by the body's length, whatever its header
/// claims.
pub fn decode(body: &[u8], ikm: &Ikm) -> Result<Decoded, Rfc8188Error> {
    if body.len() < HEADER {
        return Err(Rfc8188Error::ShortHeader(body.len()));
    }
    let salt = &body[..16];
    let record_size = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes"));
    if record_size < MIN_RECORD_SIZE {
        return Err(Rfc8188Error::RecordSize(record_size));
    }
    let id_len = usize::from(body[20]);
    let records = body
        .get(HEADER + id_len..)
        .ok_or(Rfc8188Error::ShortHeader(body.len()))?;
    let key_id = body[HEADER..HEADER + id_len].to_vec();
    let (cipher, base) = keys(ikm, salt);
    let mut plain = Vec::with_capacity(records.len());
    let mut seq = 0u64;
    for record in records.chunks(record_size as usize) {
        if record.len() <= TAG {
            return Err(Rfc8188Error::Decrypt(seq));
        }
        let mut opened = cipher
            .decrypt(
                Nonce::from_slice(&nonce(&base, seq)),
                Payload {
                    msg: record,
                    aad: b"",
                },
            )
            .map_err(|_| Rfc8188Error::Decrypt(seq))?;
        let end = opened
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(Rfc8188Error::Delimiter(seq))?;
        let is_last = seq as usize == (records.len() - 1) / record_size as usize;
        match (opened[end], is_last) {
            (2, true) | (1, false) => {}
            (1, true) | (2, false) => return Err(Rfc8188Error::Truncated(seq)),
            _ => return Err(Rfc8188Error::Delimiter(seq)),
        }
        opened.truncate(end);
        plain.extend_from_slice(&opened);
        seq += 1;
    }
    if seq == 0 {
        return Err(Rfc8188Error::Truncated(0));
    }
    Ok(Decoded {
        plain,
        key_id,
        record_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap()
    }

    // RFC 8188 §3.1: one record, rs 4096, no key id.
    const EX1_IKM: &str = "yqdlZ-tYemfogSmv7Ws5PQ";
    const EX1: &str = "I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg";
    // RFC 8188 §3.2: rs 25, key id "a1", 7 octets (padded) then 8.
    const EX2_IKM: &str = "BO3ZVPxUlnLORbVGMpbT1Q";
    const EX2: &str = "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA";

    #[test]
    fn rfc8188_examples_decode_and_encode() {
        // (IKM, body, record size, key id, the plaintext's length in each record; none: as
        // much as fits)
        for (ikm, body, record_size, key_id, lengths) in [
            (EX1_IKM, EX1, 4096, &b""[..], &[][..]),
            (EX2_IKM, EX2, 25, &b"a1"[..], &[7, 8][..]),
        ] {
            let ikm = Ikm::from_base64url(ikm).unwrap();
            let body = b64(body);
            let decoded = decode(&body, &ikm).unwrap();
            assert_eq!(decoded.plain, b"I am the walrus");
            assert_eq!(
                (decoded.record_size, &decoded.key_id[..]),
                (record_size, key_id)
            );
            let salt: [u8; 16] = body[..16].try_into().unwrap();
            let lengths = lengths.iter().copied();
            let encoded =
                encode_records(b"I am the walrus", &ikm, salt, record_size, key_id, lengths);
            assert_eq!(encoded.unwrap(), body);
        }
    }

    #[test]
    fn round_trips_at_record_boundaries() {
        let ikm = Ikm::from_base64url(EX1_IKM).unwrap();
        for len in [0, 1, 7, 8, 9, 16, 17, 100] {
            let plain: Vec<u8> = (0..len as u8).collect();
            for rs in [18, 25, 26, 4096] {
                let body = encode(&plain, &ikm, [7; 16], rs, b"k").unwrap();
                let decoded = decode(&body, &ikm).unwrap();
                assert_eq!(decoded.plain, plain, "len {len} rs {rs}");
            }
        }
    }

    #[test]
    fn wrong_ikm_truncation_and_garbage_are_errors() {
        let ikm = Ikm::from_base64url(EX2_IKM).unwrap();
        let body = b64(EX2);
        let other = Ikm::from_base64url(EX1_IKM).unwrap();
        assert_eq!(decode(&body, &other), Err(Rfc8188Error::Decrypt(0)));
        // Dropping the last record leaves a first record that says more follow.
        let header = 21 + 2;
        assert_eq!(
            decode(&body[..header + 25], &ikm),
            Err(Rfc8188Error::Truncated(0))
        );
        assert_eq!(
            decode(&body[..10], &ikm),
            Err(Rfc8188Error::ShortHeader(10))
        );
        let mut small = body.clone();
        small[16..20].copy_from_slice(&17u32.to_be_bytes());
        assert_eq!(decode(&small, &ikm), Err(Rfc8188Error::RecordSize(17)));
        assert_eq!(
            decode(&body[..header], &ikm),
            Err(Rfc8188Error::Truncated(0))
        );
        for len in 0..body.len() {
            assert!(decode(&body[..len], &ikm).is_err());
        }
        let mut huge = body.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge, &ikm).is_err());
        assert_eq!(
            encode(b"x", &ikm, [0; 16], 17, b""),
            Err(Rfc8188Error::RecordSize(17))
        );
    }
}
