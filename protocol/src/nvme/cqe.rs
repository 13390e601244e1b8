//! Completion Queue Entry (Base 2.0 §4.6, Figure 90).

use super::bytes::{le16, le32, put_le16, put_le32};
use super::Status;
use crate::nvme_tcp::CQE_LEN;

/// A Completion Queue Entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cqe {
    /// DW0: command specific result.
    pub dw0: u32,
    /// DW1: command specific result (upper half of 64-bit results).
    pub dw1: u32,
    /// DW2 bits 15:0 SQ Head Pointer.
    pub sqhd: u16,
    /// DW2 bits 31:16 SQ Identifier.
    pub sqid: u16,
    /// DW3 bits 15:0 Command Identifier.
    pub cid: u16,
    /// DW3 bit 16 Phase Tag (reserved on fabrics; keep false).
    pub phase: bool,
    /// DW3 bits 31:17 Status.
    pub status: Status,
}

impl Cqe {
    /// Encodes 16 bytes.
    pub fn encode(&self) -> [u8; CQE_LEN] {
        let mut b = [0u8; CQE_LEN];
        put_le32(&mut b, 0, self.dw0);
        put_le32(&mut b, 4, self.dw1);
        put_le16(&mut b, 8, self.sqhd);
        put_le16(&mut b, 10, self.sqid);
        put_le16(&mut b, 12, self.cid);
        put_le16(&mut b, 14, self.status.to_word() | u16::from(self.phase));
        b
    }

    /// Decodes 16 bytes.
    pub fn parse(b: &[u8; CQE_LEN]) -> Cqe {
        let w = le16(b, 14);
        Cqe {
            dw0: le32(b, 0),
            dw1: le32(b, 4),
            sqhd: le16(b, 8),
            sqid: le16(b, 10),
            cid: le16(b, 12),
            phase: w & 1 != 0,
            status: Status::from_word(w),
        }
    }
}

/// The command-specific part of a completion: what the controller decides.
/// The transport adds CID, SQID and SQHD with [`Completion::to_cqe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Completion {
    /// DW0.
    pub dw0: u32,
    /// DW1.
    pub dw1: u32,
    /// Status.
    pub status: Status,
}

impl Completion {
    /// Successful completion with zero result.
    pub const SUCCESS: Completion = Completion {
        dw0: 0,
        dw1: 0,
        status: Status::SUCCESS,
    };

    /// A completion with the given status and zero result.
    pub const fn status(status: Status) -> Completion {
        Completion {
            dw0: 0,
            dw1: 0,
            status,
        }
    }

    /// Successful completion with DW0 = `dw0`.
    pub const fn success(dw0: u32) -> Completion {
        Completion {
            dw0,
            dw1: 0,
            status: Status::SUCCESS,
        }
    }

    /// Successful completion with a 64-bit result in DW0 (low) and DW1.
    pub const fn success64(v: u64) -> Completion {
        Completion {
            dw0: v as u32,
            dw1: (v >> 32) as u32,
            status: Status::SUCCESS,
        }
    }

    /// The full CQE for command `cid` on queue `sqid` with head `sqhd`.
    pub const fn to_cqe(self, cid: u16, sqid: u16, sqhd: u16) -> Cqe {
        Cqe {
            dw0: self.dw0,
            dw1: self.dw1,
            sqhd,
            sqid,
            cid,
            phase: false,
            status: self.status,
        }
    }
}

impl From<Status> for Completion {
    fn from(status: Status) -> Self {
        Completion::status(status)
    }
}
