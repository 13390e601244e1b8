//! DH groups of DH-HMAC-CHAP: the null group (no key exchange) and the
//! RFC 7919 FFDHE groups, identifiers 00h..05h. Public values and the
//! session key are big-endian and padded to the group's size, as the Linux
//! host and nvmet exchange them.

use num_bigint::BigUint;
use rand::RngCore;
use std::sync::OnceLock;

use super::ffdhe;

/// A DH group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// No DH exchange (00h): the challenge is used as is.
    Null,
    /// ffdhe2048 (01h).
    Ffdhe2048,
    /// ffdhe3072 (02h).
    Ffdhe3072,
    /// ffdhe4096 (03h).
    Ffdhe4096,
    /// ffdhe6144 (04h).
    Ffdhe6144,
    /// ffdhe8192 (05h).
    Ffdhe8192,
}

impl DhGroup {
    /// Every group, in identifier order.
    pub const ALL: [DhGroup; 6] = [
        DhGroup::Null,
        DhGroup::Ffdhe2048,
        DhGroup::Ffdhe3072,
        DhGroup::Ffdhe4096,
        DhGroup::Ffdhe6144,
        DhGroup::Ffdhe8192,
    ];

    /// The wire identifier.
    pub const fn id(self) -> u8 {
        match self {
            DhGroup::Null => 0,
            DhGroup::Ffdhe2048 => 1,
            DhGroup::Ffdhe3072 => 2,
            DhGroup::Ffdhe4096 => 3,
            DhGroup::Ffdhe6144 => 4,
            DhGroup::Ffdhe8192 => 5,
        }
    }

    /// The group of a wire identifier.
    pub fn from_id(id: u8) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| g.id() == id)
    }

    /// The configuration name (`null`, `ffdhe2048`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DhGroup::Null => "null",
            DhGroup::Ffdhe2048 => "ffdhe2048",
            DhGroup::Ffdhe3072 => "ffdhe3072",
            DhGroup::Ffdhe4096 => "ffdhe4096",
            DhGroup::Ffdhe6144 => "ffdhe6144",
            DhGroup::Ffdhe8192 => "ffdhe8192",
        }
    }

    /// The group of a configuration name.
    pub fn from_name(name: &str) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Size of public values and of the session key in bytes (0 for null).
    pub const fn value_len(self) -> usize {
        match self {
            DhGroup::Null => 0,
            DhGroup::Ffdhe2048 => 256,
            DhGroup::Ffdhe3072 => 384,
            DhGroup::Ffdhe4096 => 512,
            DhGroup::Ffdhe6144 => 768,
            DhGroup::Ffdhe8192 => 1024,
        }
    }

    /// Private exponent length in bytes: at least twice the group's
    /// security strength (RFC 7919 §5.2; NIST SP 800-56A).
    const fn exponent_len(self) -> usize {
        match self {
            DhGroup::Null => 0,
            DhGroup::Ffdhe2048 => 32,
            DhGroup::Ffdhe3072 => 40,
            DhGroup::Ffdhe4096 => 48,
            DhGroup::Ffdhe6144 => 56,
            DhGroup::Ffdhe8192 => 64,
        }
    }

    fn prime(self) -> Option<&'static BigUint> {
        static P: [OnceLock<Option<BigUint>>; 5] = [const { OnceLock::new() }; 5];
        let (slot, hex) = match self {
            DhGroup::Null => return None,
            DhGroup::Ffdhe2048 => (0, ffdhe::FFDHE2048_P),
            DhGroup::Ffdhe3072 => (1, ffdhe::FFDHE3072_P),
            DhGroup::Ffdhe4096 => (2, ffdhe::FFDHE4096_P),
            DhGroup::Ffdhe6144 => (3, ffdhe::FFDHE6144_P),
            DhGroup::Ffdhe8192 => (4, ffdhe::FFDHE8192_P),
        };
        P.get(slot)?
            .get_or_init(|| BigUint::parse_bytes(hex.as_bytes(), 16))
            .as_ref()
    }
}

/// Why a peer's public value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    /// Not the group's size.
    #[error("DH value of {got} bytes, the group's is {want}")]
    Length {
        /// Received length.
        got: usize,
        /// The group's value length.
        want: usize,
    },
    /// Outside 2..=p-2 (RFC 7919 §5.1 / SP 800-56A public key check).
    #[error("DH value out of range")]
    Range,
    /// The null group has no key exchange.
    #[error("no DH exchange in the null group")]
    Null,
}

/// One side's ephemeral key pair.
pub struct KeyPair {
    group: DhGroup,
    x: BigUint,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({})", self.group.name())
    }
}

fn pad(v: &BigUint, len: usize) -> Vec<u8> {
    let b = v.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

impl KeyPair {
    /// A fresh private exponent for `group` (`None` for the null group).
    pub fn generate(group: DhGroup, rng: &mut dyn RngCore) -> Option<KeyPair> {
        let mut x = vec![0u8; group.exponent_len()];
        rng.fill_bytes(&mut x);
        KeyPair::from_exponent(group, &x)
    }

    /// A key pair with a given private exponent (big-endian; for tests).
    pub fn from_exponent(group: DhGroup, x: &[u8]) -> Option<KeyPair> {
        group.prime()?;
        let mut x = BigUint::from_bytes_be(x);
        if x < BigUint::from(2u8) {
            x = BigUint::from(2u8);
        }
        Some(KeyPair { group, x })
    }

    /// The public value `g^x mod p`, padded to the group's size.
    pub fn public(&self) -> Vec<u8> {
        let Some(p) = self.group.prime() else {
            return Vec::new();
        };
        pad(
            &BigUint::from(2u8).modpow(&self.x, p),
            self.group.value_len(),
        )
    }

    /// The session key `peer^x mod p`, padded to the group's size.
    pub fn session_key(&self, peer: &[u8]) -> Result<Vec<u8>, DhError> {
        let p = self.group.prime().ok_or(DhError::Null)?;
        let want = self.group.value_len();
        if peer.len() != want {
            return Err(DhError::Length {
                got: peer.len(),
                want,
            });
        }
        let y = BigUint::from_bytes_be(peer);
        if y < BigUint::from(2u8) || y > p - 2u8 {
            return Err(DhError::Range);
        }
        Ok(pad(&y.modpow(&self.x, p), want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_rfc7919_shaped() {
        for g in DhGroup::ALL.into_iter().skip(1) {
            let p = g.prime().unwrap();
            assert_eq!(p.bits() as usize, g.value_len() * 8, "{g:?}");
            let b = p.to_bytes_be();
            // RFC 7919: the top and bottom 64 bits are all ones.
            assert!(b[..8].iter().all(|&x| x == 0xFF), "{g:?}");
            assert!(b[b.len() - 8..].iter().all(|&x| x == 0xFF), "{g:?}");
            // ffdhe2048's second word: the start of e's binary expansion.
            if g == DhGroup::Ffdhe2048 {
                assert_eq!(&b[8..12], &[0xAD, 0xF8, 0x54, 0x58]);
            }
        }
    }

    #[test]
    fn both_sides_agree_and_bad_values_are_refused() {
        let mut rng = rand::rngs::mock::StepRng::new(0x1234_5678, 0x9E37_79B9_7F4A_7C15);
        let a = KeyPair::generate(DhGroup::Ffdhe2048, &mut rng).unwrap();
        let b = KeyPair::generate(DhGroup::Ffdhe2048, &mut rng).unwrap();
        let ka = a.session_key(&b.public()).unwrap();
        assert_eq!(ka, b.session_key(&a.public()).unwrap());
        assert_eq!(ka.len(), 256);
        assert_eq!(a.session_key(&[0; 256]), Err(DhError::Range));
        assert_eq!(
            a.session_key(&[1; 255]),
            Err(DhError::Length {
                got: 255,
                want: 256
            })
        );
        assert_eq!(a.session_key(&[0xFF; 256]), Err(DhError::Range));
        assert!(KeyPair::generate(DhGroup::Null, &mut rng).is_none());
    }
}
