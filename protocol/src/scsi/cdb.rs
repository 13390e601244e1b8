//! Operation codes (SPC-4 Annex D, SBC-3 §5) and panic-free CDB field
//! extraction.

use crate::wire::{be16, be32, u8_at};

/// TEST UNIT READY.
pub const TEST_UNIT_READY: u8 = 0x00;
/// REQUEST SENSE.
pub const REQUEST_SENSE: u8 = 0x03;
/// READ(6).
pub const READ_6: u8 = 0x08;
/// WRITE(6).
pub const WRITE_6: u8 = 0x0A;
/// INQUIRY.
pub const INQUIRY: u8 = 0x12;
/// MODE SELECT(6).
pub const MODE_SELECT_6: u8 = 0x15;
/// RESERVE(6).
pub const RESERVE_6: u8 = 0x16;
/// RELEASE(6).
pub const RELEASE_6: u8 = 0x17;
/// MODE SENSE(6).
pub const MODE_SENSE_6: u8 = 0x1A;
/// START STOP UNIT.
pub const START_STOP_UNIT: u8 = 0x1B;
/// PREVENT ALLOW MEDIUM REMOVAL.
pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
/// READ CAPACITY(10).
pub const READ_CAPACITY_10: u8 = 0x25;
/// READ(10).
pub const READ_10: u8 = 0x28;
/// WRITE(10).
pub const WRITE_10: u8 = 0x2A;
/// WRITE AND VERIFY(10).
pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
/// VERIFY(10).
pub const VERIFY_10: u8 = 0x2F;
/// PRE-FETCH(10).
pub const PRE_FETCH_10: u8 = 0x34;
/// SYNCHRONIZE CACHE(10).
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
/// READ DEFECT DATA(10).
pub const READ_DEFECT_DATA_10: u8 = 0x37;
/// WRITE SAME(10).
pub const WRITE_SAME_10: u8 = 0x41;
/// UNMAP.
pub const UNMAP: u8 = 0x42;
/// SANITIZE.
pub const SANITIZE: u8 = 0x48;
/// MODE SELECT(10).
pub const MODE_SELECT_10: u8 = 0x55;
/// RESERVE(10).
pub const RESERVE_10: u8 = 0x56;
/// RELEASE(10).
pub const RELEASE_10: u8 = 0x57;
/// MODE SENSE(10).
pub const MODE_SENSE_10: u8 = 0x5A;
/// PERSISTENT RESERVE IN.
pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
/// PERSISTENT RESERVE OUT.
pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
/// EXTENDED COPY (LID1).
pub const EXTENDED_COPY: u8 = 0x83;
/// RECEIVE COPY RESULTS.
pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
/// READ(16).
pub const READ_16: u8 = 0x88;
/// COMPARE AND WRITE.
pub const COMPARE_AND_WRITE: u8 = 0x89;
/// ORWRITE(16).
pub const ORWRITE_16: u8 = 0x8B;
/// WRITE(16).
pub const WRITE_16: u8 = 0x8A;
/// WRITE AND VERIFY(16).
pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
/// VERIFY(16).
pub const VERIFY_16: u8 = 0x8F;
/// PRE-FETCH(16).
pub const PRE_FETCH_16: u8 = 0x90;
/// SYNCHRONIZE CACHE(16).
pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
/// WRITE SAME(16).
pub const WRITE_SAME_16: u8 = 0x93;
/// SERVICE ACTION IN(16) (READ CAPACITY(16), GET LBA STATUS).
pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
/// REPORT LUNS.
pub const REPORT_LUNS: u8 = 0xA0;
/// MAINTENANCE IN (REPORT SUPPORTED OPERATION CODES, ...).
pub const MAINTENANCE_IN: u8 = 0xA3;
/// READ(12).
pub const READ_12: u8 = 0xA8;
/// WRITE(12).
pub const WRITE_12: u8 = 0xAA;
/// WRITE AND VERIFY(12).
pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
/// VERIFY(12).
pub const VERIFY_12: u8 = 0xAF;
/// READ DEFECT DATA(12).
pub const READ_DEFECT_DATA_12: u8 = 0xB7;

/// SERVICE ACTION IN(16): READ CAPACITY(16).
pub const SA_READ_CAPACITY_16: u8 = 0x10;
/// SERVICE ACTION IN(16): GET LBA STATUS.
pub const SA_GET_LBA_STATUS: u8 = 0x12;
/// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES.
pub const SA_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;

/// Big-endian `u64` at `off`, zero when out of range.
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(crate::wire::array(b, off))
}

/// A borrowed CDB. Every accessor is total: bytes beyond the slice read as
/// zero, so a short CDB can never cause a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cdb<'a>(pub &'a [u8]);

impl<'a> Cdb<'a> {
    /// Operation code.
    pub fn opcode(&self) -> u8 {
        self.byte(0)
    }
    /// Service action (low five bits of byte 1).
    pub fn service_action(&self) -> u8 {
        self.byte(1) & 0x1f
    }
    /// Byte `i`.
    pub fn byte(&self, i: usize) -> u8 {
        u8_at(self.0, i)
    }
    /// Bit `bit` of byte `i`.
    pub fn bit(&self, i: usize, bit: u8) -> bool {
        self.byte(i) & (1u8 << (bit & 7)) != 0
    }
    /// Big-endian `u16` at `off`.
    pub fn u16(&self, off: usize) -> u16 {
        be16(self.0, off)
    }
    /// Big-endian `u32` at `off`.
    pub fn u32(&self, off: usize) -> u32 {
        be32(self.0, off)
    }
    /// Big-endian `u64` at `off`.
    pub fn u64(&self, off: usize) -> u64 {
        be64(self.0, off)
    }
    /// CONTROL byte: the last byte of the CDB for its group.
    pub fn control(&self) -> u8 {
        self.byte(cdb_len(self.opcode()).saturating_sub(1))
    }
}

/// CDB length implied by the operation code group (SPC-4 §4.2.5.1).
pub const fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

/// Truncates `data` to `alloc_len` bytes.
pub(crate) fn truncate(mut data: Vec<u8>, alloc_len: u32) -> Vec<u8> {
    data.truncate(usize::try_from(alloc_len).unwrap_or(usize::MAX));
    data
}
