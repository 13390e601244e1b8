//! CapsuleCmd and CapsuleResp (TCP Transport 1.0 §3.6.2.6-7). The SQE and CQE are carried opaquely.

use super::{common, expect_type, put_common, CommonHeader, PduError, PduFlags, PduType};
use crate::wire::{array, le32, put};

/// Length of a submission queue entry.
pub const SQE_LEN: usize = 64;
/// Length of a completion queue entry.
pub const CQE_LEN: usize = 16;

const CAPSULE_CMD_HLEN: usize = 72;
const CAPSULE_RESP_HLEN: usize = 24;

/// Command Capsule PDU header: CH and the 64-byte SQE (§3.6.2.6). Any
/// in-capsule data follows at PDO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsuleCmd {
    /// FLAGS (HDGSTF, DDGSTF).
    pub flags: PduFlags,
    /// PDO: offset of the in-capsule data, 0 if none.
    pub pdo: u8,
    /// PLEN.
    pub plen: u32,
    /// The submission queue entry.
    pub sqe: [u8; SQE_LEN],
}

impl Default for CapsuleCmd {
    fn default() -> Self {
        CapsuleCmd {
            flags: PduFlags::empty(),
            pdo: 0,
            plen: CAPSULE_CMD_HLEN as u32,
            sqe: [0; SQE_LEN],
        }
    }
}

impl CapsuleCmd {
    /// Decodes the 72-byte header (PDU type and HLEN are checked; the rest
    /// of the CH by [`CommonHeader::validate`]).
    pub fn parse(b: &[u8; CAPSULE_CMD_HLEN]) -> Result<Self, PduError> {
        expect_type(b, PduType::CapsuleCmd)?;
        Ok(CapsuleCmd {
            flags: PduFlags(b[1]),
            pdo: b[3],
            plen: le32(b, 4),
            sqe: array(b, 8),
        })
    }

    /// Encodes the 72-byte header.
    pub fn encode(&self) -> [u8; CAPSULE_CMD_HLEN] {
        let mut b = [0u8; CAPSULE_CMD_HLEN];
        put_common(&mut b, PduType::CapsuleCmd, self.flags, self.pdo, self.plen);
        put(&mut b, 8, &self.sqe);
        b
    }

    /// The common header.
    pub fn common_header(&self) -> CommonHeader {
        common(PduType::CapsuleCmd, self.flags, self.pdo, self.plen)
    }
}

/// Response Capsule PDU: CH and the 16-byte CQE (§3.6.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsuleResp {
    /// FLAGS (HDGSTF).
    pub flags: PduFlags,
    /// PDO (0: no data).
    pub pdo: u8,
    /// PLEN: 24, or 28 with a header digest.
    pub plen: u32,
    /// The completion queue entry.
    pub cqe: [u8; CQE_LEN],
}

impl Default for CapsuleResp {
    fn default() -> Self {
        CapsuleResp {
            flags: PduFlags::empty(),
            pdo: 0,
            plen: CAPSULE_RESP_HLEN as u32,
            cqe: [0; CQE_LEN],
        }
    }
}

impl CapsuleResp {
    /// Decodes the 24-byte header.
    pub fn parse(b: &[u8; CAPSULE_RESP_HLEN]) -> Result<Self, PduError> {
        expect_type(b, PduType::CapsuleResp)?;
        Ok(CapsuleResp {
            flags: PduFlags(b[1]),
            pdo: b[3],
            plen: le32(b, 4),
            cqe: array(b, 8),
        })
    }

    /// Encodes the 24-byte header.
    pub fn encode(&self) -> [u8; CAPSULE_RESP_HLEN] {
        let mut b = [0u8; CAPSULE_RESP_HLEN];
        put_common(
            &mut b,
            PduType::CapsuleResp,
            self.flags,
            self.pdo,
            self.plen,
        );
        put(&mut b, 8, &self.cqe);
        b
    }

    /// The common header.
    pub fn common_header(&self) -> CommonHeader {
        common(PduType::CapsuleResp, self.flags, self.pdo, self.plen)
    }
}
