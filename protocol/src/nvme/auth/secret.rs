//! DH-HMAC-CHAP secrets in their text representation
//! `DHHC-1:<hh>:<base64 of key || CRC-32(key) little-endian>:` (what
//! `nvme gen-dhchap-key` prints), and the key transformation
//! `HMAC_hh(key, NQN || "NVMe-over-Fabrics")` applied when `hh` names a
//! hash (01 SHA-256, 02 SHA-384, 03 SHA-512; 00: the key is used as is).

use base64::Engine as _;
use std::fmt;

use super::HashId;

/// A parsed secret. `Debug` never shows the key; the bytes are zeroed
/// when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct DhchapKey {
    /// The transformation hash (`None` for `00`).
    pub transform: Option<HashId>,
    key: Vec<u8>,
}

/// Why a secret does not parse. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not `DHHC-1:hh:...:`.
    #[error("not a DH-HMAC-CHAP secret: expected DHHC-1:<00|01|02|03>:<base64>:")]
    Format,
    /// The `hh` field is not 00..03.
    #[error("unknown key transformation {0:?} (expected 00, 01, 02 or 03)")]
    Transform(String),
    /// The base64 part does not decode.
    #[error("the key is not valid base64")]
    Base64,
    /// The decoded key is not 32, 48 or 64 bytes (plus the CRC).
    #[error("the key is {0} bytes; it must be 32, 48 or 64")]
    Length(usize),
    /// The CRC-32 does not match.
    #[error("the key's CRC-32 does not match (mistyped secret?)")]
    Crc,
}

impl DhchapKey {
    /// Builds a key from raw bytes (32, 48 or 64 of them).
    pub fn new(transform: Option<HashId>, key: &[u8]) -> Result<DhchapKey, SecretError> {
        if !matches!(key.len(), 32 | 48 | 64) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(DhchapKey {
            transform,
            key: key.to_vec(),
        })
    }

    /// Parses `DHHC-1:hh:<base64>:` (the trailing colon is optional, as in
    /// nvme-cli and Linux).
    pub fn parse(text: &str) -> Result<DhchapKey, SecretError> {
        let rest = text.strip_prefix("DHHC-1:").ok_or(SecretError::Format)?;
        let (hh, rest) = rest.split_once(':').ok_or(SecretError::Format)?;
        let b64 = rest.strip_suffix(':').unwrap_or(rest);
        if b64.is_empty() || b64.contains(':') {
            return Err(SecretError::Format);
        }
        let transform = match hh {
            "00" => None,
            "01" | "02" | "03" => HashId::from_id(hh.as_bytes().get(1).map_or(0, |b| b - b'0')),
            other => return Err(SecretError::Transform(other.to_owned())),
        };
        let raw = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| SecretError::Base64)?,
        );
        let key_len = raw.len().saturating_sub(4);
        if !matches!(key_len, 32 | 48 | 64) || raw.len() < 4 {
            return Err(SecretError::Length(key_len));
        }
        let (key, crc) = raw.split_at(key_len);
        if crc != crc32fast::hash(key).to_le_bytes() {
            return Err(SecretError::Crc);
        }
        DhchapKey::new(transform, key)
    }

    /// The text representation.
    pub fn format(&self) -> String {
        let mut raw = zeroize::Zeroizing::new(self.key.clone());
        raw.extend_from_slice(&crc32fast::hash(&self.key).to_le_bytes());
        format!(
            "DHHC-1:{:02}:{}:",
            self.transform.map_or(0, HashId::id),
            base64::engine::general_purpose::STANDARD.encode(&*raw)
        )
    }

    /// The raw key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.key
    }

    /// The key used as HMAC key for the responses: the key itself, or
    /// `HMAC(key, nqn || "NVMe-over-Fabrics")` with the transformation
    /// hash (`nqn` is the host NQN for the host's key, the subsystem NQN
    /// for the controller's).
    pub fn transformed(&self, nqn: &str) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(match self.transform {
            None => self.key.clone(),
            Some(h) => super::response::hmac(h, &self.key, &[nqn.as_bytes(), b"NVMe-over-Fabrics"]),
        })
    }
}

impl Drop for DhchapKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl fmt::Debug for DhchapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhchapKey")
            .field("transform", &self.transform)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nvme_cli_style_key_parses_and_formats_back() {
        // 32 bytes 00..1f with CRC-32 (computed independently by Python's
        // zlib.crc32) 0x91267e8a, little-endian.
        let key: Vec<u8> = (0u8..32).collect();
        let mut raw = key.clone();
        raw.extend_from_slice(&0x91267e8a_u32.to_le_bytes());
        let text = format!(
            "DHHC-1:01:{}:",
            base64::engine::general_purpose::STANDARD.encode(&raw)
        );
        let k = DhchapKey::parse(&text).unwrap();
        assert_eq!(k.bytes(), key.as_slice());
        assert_eq!(k.transform, Some(HashId::Sha256));
        assert_eq!(k.format(), text);
        assert!(!format!("{k:?}").contains("AAEC"));
    }

    #[test]
    fn malformed_secrets_are_refused_with_the_reason() {
        let good = DhchapKey::new(None, &[7; 32]).unwrap().format();
        assert_eq!(DhchapKey::parse(&good).unwrap().bytes(), &[7; 32]);
        assert_eq!(
            DhchapKey::parse(good.trim_end_matches(':'))
                .unwrap()
                .bytes(),
            &[7; 32]
        );
        assert_eq!(DhchapKey::parse("DHHC-2:00:abc:"), Err(SecretError::Format));
        assert_eq!(
            DhchapKey::parse(&good.replace(":00:", ":04:")),
            Err(SecretError::Transform("04".into()))
        );
        assert_eq!(
            DhchapKey::parse("DHHC-1:00:@@@@:"),
            Err(SecretError::Base64)
        );
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 20]);
        assert_eq!(
            DhchapKey::parse(&format!("DHHC-1:00:{short}:")),
            Err(SecretError::Length(16))
        );
        // One flipped key bit: the CRC catches it.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(good.trim_start_matches("DHHC-1:00:").trim_end_matches(':'))
            .unwrap();
        raw[0] ^= 1;
        let bad = format!(
            "DHHC-1:00:{}:",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert_eq!(DhchapKey::parse(&bad), Err(SecretError::Crc));
    }

    proptest! {
        #[test]
        fn secrets_round_trip(len in prop::sample::select(vec![32usize, 48, 64]),
                              t in 0u8..4, seed in any::<u64>()) {
            let key: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8).collect();
            let k = DhchapKey::new(HashId::from_id(t), &key).unwrap();
            prop_assert_eq!(DhchapKey::parse(&k.format()).unwrap(), k);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,120}") {
            let _ = DhchapKey::parse(&s);
        }
    }
}
