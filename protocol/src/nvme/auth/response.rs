//! The values both ends of DH-HMAC-CHAP compute (Base 2.x §8.13.5):
//!
//! - augmented challenge (with a DH group): `Ca = HMAC_H(H(g^xy mod p), C)`,
//!   the session key `g^xy mod p` big-endian, padded to the group size;
//! - host response `R1 = HMAC_H(Kh', Ca1 || le32(S1) || le16(T_ID) || SC_C
//!   || "HostHost" || NQNh || 00h || NQNc)`;
//! - controller response `R2 = HMAC_H(Kc', Ca2 || le32(S2) || le16(T_ID)
//!   || SC_C || "Controller" || NQNc || 00h || NQNh)`;
//!
//! where `Kh'`/`Kc'` are the transformed secrets ([`super::DhchapKey::transformed`]).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use super::HashId;

/// `HMAC_h(key, parts[0] || parts[1] || ...)`.
pub fn hmac(h: HashId, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            // HMAC takes keys of any length: this never fails.
            let Ok(mut m) = <Hmac<$d> as Mac>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match h {
        HashId::Sha256 => run!(Sha256),
        HashId::Sha384 => run!(Sha384),
        HashId::Sha512 => run!(Sha512),
    }
}

/// `H(data)`.
pub fn digest(h: HashId, data: &[u8]) -> Vec<u8> {
    match h {
        HashId::Sha256 => Sha256::digest(data).to_vec(),
        HashId::Sha384 => Sha384::digest(data).to_vec(),
        HashId::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// The challenge the response is computed over: `C` itself without a DH
/// session key, else `HMAC_H(H(session_key), C)`.
pub fn augmented_challenge(h: HashId, session_key: Option<&[u8]>, challenge: &[u8]) -> Vec<u8> {
    match session_key {
        None => challenge.to_vec(),
        Some(k) => hmac(h, &digest(h, k), &[challenge]),
    }
}

/// The inputs common to both responses.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// Negotiated hash.
    pub hash: HashId,
    /// DH session key, if a DH group is in use.
    pub session_key: Option<&'a [u8]>,
    /// Transaction identifier.
    pub tid: u16,
    /// Host NQN.
    pub hostnqn: &'a str,
    /// Subsystem NQN.
    pub subnqn: &'a str,
}

impl Exchange<'_> {
    /// The host's response R1 to challenge C1 with sequence number S1,
    /// keyed with the transformed host secret.
    pub fn host_response(&self, key: &[u8], c1: &[u8], s1: u32) -> Vec<u8> {
        let ca = augmented_challenge(self.hash, self.session_key, c1);
        hmac(
            self.hash,
            key,
            &[
                &ca,
                &s1.to_le_bytes(),
                &self.tid.to_le_bytes(),
                &[0],
                b"HostHost",
                self.hostnqn.as_bytes(),
                &[0],
                self.subnqn.as_bytes(),
            ],
        )
    }

    /// The controller's response R2 to challenge C2 with sequence number
    /// S2, keyed with the transformed controller secret.
    pub fn ctrl_response(&self, key: &[u8], c2: &[u8], s2: u32) -> Vec<u8> {
        let ca = augmented_challenge(self.hash, self.session_key, c2);
        hmac(
            self.hash,
            key,
            &[
                &ca,
                &s2.to_le_bytes(),
                &self.tid.to_le_bytes(),
                &[0],
                b"Controller",
                self.subnqn.as_bytes(),
                &[0],
                self.hostnqn.as_bytes(),
            ],
        )
    }
}

/// What both ends keep of a transaction to compute the responses.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Negotiated hash.
    pub hash: HashId,
    /// DH session key, if a DH group is in use.
    pub session_key: Option<Vec<u8>>,
    /// Transaction identifier.
    pub tid: u16,
    /// Host NQN.
    pub hostnqn: String,
    /// Subsystem NQN.
    pub subnqn: String,
}

impl Drop for Transcript {
    fn drop(&mut self) {
        if let Some(k) = &mut self.session_key {
            zeroize::Zeroize::zeroize(k);
        }
    }
}

impl Transcript {
    /// A transcript between `hostnqn` and `subnqn`, before any message.
    pub fn new(hostnqn: &str, subnqn: &str) -> Self {
        Transcript {
            hash: HashId::Sha256,
            session_key: None,
            tid: 0,
            hostnqn: hostnqn.to_owned(),
            subnqn: subnqn.to_owned(),
        }
    }

    /// The response inputs.
    pub fn exchange(&self) -> Exchange<'_> {
        Exchange {
            hash: self.hash,
            session_key: self.session_key.as_deref(),
            tid: self.tid,
            hostnqn: &self.hostnqn,
            subnqn: &self.subnqn,
        }
    }
}

/// Constant-time equality of two responses.
pub fn responses_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
