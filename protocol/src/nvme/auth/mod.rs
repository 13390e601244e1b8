//! NVMe in-band authentication, DH-HMAC-CHAP (NVMe Base 2.x §8.13 and the
//! Fabrics commands Authentication Send / Receive).
//!
//! - [`message`]: the codec of the messages carried by AUTH_Send and
//!   AUTH_Receive (Negotiate, Challenge, Reply, Success1, Success2,
//!   Failure1, Failure2).
//! - [`secret`]: the `DHHC-1:xx:<base64>:` secret representation (CRC-32
//!   checked) and the key transformation.
//! - [`dh`]: the FFDHE groups of RFC 7919 (and the null group).
//! - [`response`]: the response values both ends compute.
//! - [`controller`]: the controller side of a transaction, one per queue.
//! - [`host`]: the host side (the in-repo host and tests use it).
//!
//! Sans-IO: no sockets, no clock. Randomness (challenges, DH private
//! exponents) comes from the caller's [`rand::RngCore`].

pub mod controller;
pub mod dh;
mod ffdhe;
pub mod host;
pub mod message;
pub mod response;
pub mod secret;

pub use controller::{
    After, AuthPolicy, Controller as AuthController, ReceiveOutcome, SendOutcome,
};
pub use dh::DhGroup;
pub use host::{Host as AuthHost, HostError};
pub use message::{Failure, Message, Negotiate, ParseError};
pub use secret::{DhchapKey, SecretError};

use super::{Completion, Sqe, Status};

/// SECP of DH-HMAC-CHAP in AUTH_Send / AUTH_Receive (CDW10 bits 31:24).
pub const SECP_DHCHAP: u8 = 0xE9;
/// SPSP0 / SPSP1 of DH-HMAC-CHAP (CDW10 bits 15:8 and 23:16).
pub const SPSP_DHCHAP: u8 = 0x01;
/// Protocol descriptor AUTHID of DH-HMAC-CHAP.
pub const AUTHID_DHCHAP: u8 = 0x01;

/// The hash functions of DH-HMAC-CHAP (HMAC with SHA-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashId {
    /// SHA-256, identifier 01h.
    Sha256,
    /// SHA-384, identifier 02h.
    Sha384,
    /// SHA-512, identifier 03h.
    Sha512,
}

impl HashId {
    /// Every hash, in identifier order.
    pub const ALL: [HashId; 3] = [HashId::Sha256, HashId::Sha384, HashId::Sha512];

    /// The wire identifier.
    pub const fn id(self) -> u8 {
        match self {
            HashId::Sha256 => 1,
            HashId::Sha384 => 2,
            HashId::Sha512 => 3,
        }
    }

    /// The hash of a wire identifier.
    pub const fn from_id(id: u8) -> Option<HashId> {
        match id {
            1 => Some(HashId::Sha256),
            2 => Some(HashId::Sha384),
            3 => Some(HashId::Sha512),
            _ => None,
        }
    }

    /// Digest length in bytes (the challenge and response length HL).
    pub const fn digest_len(self) -> usize {
        match self {
            HashId::Sha256 => 32,
            HashId::Sha384 => 48,
            HashId::Sha512 => 64,
        }
    }

    /// The configuration name (`sha256`, `sha384`, `sha512`).
    pub const fn name(self) -> &'static str {
        match self {
            HashId::Sha256 => "sha256",
            HashId::Sha384 => "sha384",
            HashId::Sha512 => "sha512",
        }
    }

    /// The hash of a configuration name.
    pub fn from_name(name: &str) -> Option<HashId> {
        HashId::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// Failure reason code explanations (Base 2.x Figure "AUTH_Failure1/2
/// Reason Code Explanation"); the reason code itself is always 01h.
pub mod reason {
    /// Reason code: authentication failure.
    pub const CODE_FAILED: u8 = 0x01;
    /// Authentication failed (wrong response).
    pub const FAILED: u8 = 0x01;
    /// Authentication protocol not usable.
    pub const NOT_USABLE: u8 = 0x02;
    /// Secure channel concatenation mismatch.
    pub const CONCAT_MISMATCH: u8 = 0x03;
    /// Hash function not usable.
    pub const HASH_UNUSABLE: u8 = 0x04;
    /// DH group not usable.
    pub const DHGROUP_UNUSABLE: u8 = 0x05;
    /// Incorrect payload (a malformed or truncated message, a wrong
    /// transaction identifier or length).
    pub const INCORRECT_PAYLOAD: u8 = 0x06;
    /// Incorrect protocol message (a message out of order).
    pub const INCORRECT_MESSAGE: u8 = 0x07;

    /// A short text for logs.
    pub const fn describe(exp: u8) -> &'static str {
        match exp {
            FAILED => "authentication failed",
            NOT_USABLE => "authentication protocol not usable",
            CONCAT_MISMATCH => "secure channel concatenation mismatch",
            HASH_UNUSABLE => "hash function not usable",
            DHGROUP_UNUSABLE => "DH group not usable",
            INCORRECT_PAYLOAD => "incorrect payload",
            INCORRECT_MESSAGE => "incorrect protocol message",
            _ => "unknown reason",
        }
    }
}

/// The SQE fields of AUTH_Send / AUTH_Receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCommand {
    /// SECP (CDW10 bits 31:24).
    pub secp: u8,
    /// SPSP0 (CDW10 bits 15:8).
    pub spsp0: u8,
    /// SPSP1 (CDW10 bits 23:16).
    pub spsp1: u8,
    /// TL (AUTH_Send) or AL (AUTH_Receive): CDW11.
    pub len: u32,
}

/// SQE byte offsets reported with Invalid Field (like nvmet's error
/// location).
pub mod sqe_offset {
    /// SPSP0.
    pub const SPSP0: u16 = 41;
    /// SPSP1.
    pub const SPSP1: u16 = 42;
    /// SECP.
    pub const SECP: u16 = 43;
    /// TL / AL.
    pub const LEN: u16 = 44;
}

/// Largest authentication message either side exchanges (a Reply with an
/// ffdhe8192 value and SHA-512 is 16 + 128 + 1024 bytes).
pub const MAX_MESSAGE_LEN: u32 = 8192;

impl AuthCommand {
    /// Reads the fields from an SQE.
    pub const fn from_sqe(sqe: &Sqe) -> AuthCommand {
        AuthCommand {
            secp: (sqe.cdw10 >> 24) as u8,
            spsp0: (sqe.cdw10 >> 8) as u8,
            spsp1: (sqe.cdw10 >> 16) as u8,
            len: sqe.cdw11,
        }
    }

    /// Writes the fields into an SQE (for hosts and tests).
    pub fn to_sqe(&self, cid: u16, fctype: u8) -> Sqe {
        let mut sqe = Sqe::new(super::FABRICS_OPCODE, cid);
        sqe.nsid = u32::from(fctype);
        sqe.cdw10 = (u32::from(self.secp) << 24)
            | (u32::from(self.spsp1) << 16)
            | (u32::from(self.spsp0) << 8);
        sqe.cdw11 = self.len;
        sqe
    }

    /// A DH-HMAC-CHAP command with length `len`.
    pub const fn dhchap(len: u32) -> AuthCommand {
        AuthCommand {
            secp: SECP_DHCHAP,
            spsp0: SPSP_DHCHAP,
            spsp1: SPSP_DHCHAP,
            len,
        }
    }

    /// Checks the protocol fields as nvmet does: a wrong SECP, SPSP0 or
    /// SPSP1 or a zero (or oversized) length is Invalid Field. Returns
    /// the length.
    pub fn check(&self) -> Result<u32, Completion> {
        let bad = |_at: u16| Completion::status(Status::INVALID_FIELD.dnr());
        if self.secp != SECP_DHCHAP {
            return Err(bad(sqe_offset::SECP));
        }
        if self.spsp0 != SPSP_DHCHAP {
            return Err(bad(sqe_offset::SPSP0));
        }
        if self.spsp1 != SPSP_DHCHAP {
            return Err(bad(sqe_offset::SPSP1));
        }
        if self.len == 0 || self.len > MAX_MESSAGE_LEN {
            return Err(bad(sqe_offset::LEN));
        }
        Ok(self.len)
    }
}

/// Connect response DW0 bit 17: AUTHREQ.ATR, an authentication transaction
/// is required (Fabrics: AUTHREQ is DW0 bits 31:16).
pub const CONNECT_AUTHREQ_ATR: u32 = 1 << 17;
/// Connect response DW0 bit 18: AUTHREQ.ASCR (secure channel; unused).
pub const CONNECT_AUTHREQ_ASCR: u32 = 1 << 18;
