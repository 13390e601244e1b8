//! The 48-byte Basic Header Segment (RFC 7143 §11.2.1).
//!
//! ```text
//! Byte   0: .|I| Opcode            1: F| Opcode-specific
//!      2-3: Opcode-specific
//!        4: TotalAHSLength       5-7: DataSegmentLength
//!     8-15: LUN or Opcode-specific
//!    16-19: Initiator Task Tag
//!    20-47: Opcode-specific fields
//! ```

use crate::iscsi::digest::{padded_len, DIGEST_LEN};
use crate::iscsi::RejectReason;
use crate::wire::{array, be24, be32, u8_at};

/// Length of the Basic Header Segment (RFC 7143 §11.2.1).
pub const BHS_LEN: usize = 48;

/// Largest value of the 24-bit DataSegmentLength field (RFC 7143 §11.2.1.5).
pub const MAX_DATA_SEGMENT_LEN: u32 = 0x00FF_FFFF;

/// Bit 6 of byte 0: the immediate-delivery (I) bit (RFC 7143 §11.2.1.1).
pub(crate) const IMMEDIATE_BIT: u8 = 0x40;
/// Bit 0 of byte 1: the Final (F) bit, or T for Login (RFC 7143 §11.2.1.2).
pub(crate) const FINAL_BIT: u8 = 0x80;
/// Low six bits of byte 0 carry the opcode (RFC 7143 §11.2.1.2).
const OPCODE_MASK: u8 = 0x3F;

/// An iSCSI opcode (RFC 7143 §11.2.1.2).
///
/// Initiator opcodes are `0x00..=0x1f`, target opcodes `0x20..=0x3f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// NOP-Out (§11.18).
    NopOut = 0x00,
    /// SCSI Command (§11.3).
    ScsiCommand = 0x01,
    /// SCSI Task Management Function Request (§11.5).
    TaskMgmtRequest = 0x02,
    /// Login Request (§11.12).
    LoginRequest = 0x03,
    /// Text Request (§11.10).
    TextRequest = 0x04,
    /// SCSI Data-Out (§11.7).
    DataOut = 0x05,
    /// Logout Request (§11.14).
    LogoutRequest = 0x06,
    /// SNACK Request (§11.16).
    SnackRequest = 0x10,
    /// NOP-In (§11.19).
    NopIn = 0x20,
    /// SCSI Response (§11.4).
    ScsiResponse = 0x21,
    /// SCSI Task Management Function Response (§11.6).
    TaskMgmtResponse = 0x22,
    /// Login Response (§11.13).
    LoginResponse = 0x23,
    /// Text Response (§11.11).
    TextResponse = 0x24,
    /// SCSI Data-In (§11.7).
    DataIn = 0x25,
    /// Logout Response (§11.15).
    LogoutResponse = 0x26,
    /// Ready To Transfer (§11.8).
    R2t = 0x31,
    /// Asynchronous Message (§11.9).
    AsyncMessage = 0x32,
    /// Reject (§11.17).
    Reject = 0x3F,
}

impl Opcode {
    /// Every opcode defined by RFC 7143, in numeric order.
    pub const ALL: [Opcode; 18] = [
        Opcode::NopOut,
        Opcode::ScsiCommand,
        Opcode::TaskMgmtRequest,
        Opcode::LoginRequest,
        Opcode::TextRequest,
        Opcode::DataOut,
        Opcode::LogoutRequest,
        Opcode::SnackRequest,
        Opcode::NopIn,
        Opcode::ScsiResponse,
        Opcode::TaskMgmtResponse,
        Opcode::LoginResponse,
        Opcode::TextResponse,
        Opcode::DataIn,
        Opcode::LogoutResponse,
        Opcode::R2t,
        Opcode::AsyncMessage,
        Opcode::Reject,
    ];

    /// Decodes the opcode in byte 0 of a BHS; the I bit and the reserved
    /// top bit are ignored.
    pub fn from_byte(byte: u8) -> Result<Self, BhsError> {
        let code = byte & OPCODE_MASK;
        Ok(match code {
            0x00 => Opcode::NopOut,
            0x01 => Opcode::ScsiCommand,
            0x02 => Opcode::TaskMgmtRequest,
            0x03 => Opcode::LoginRequest,
            0x04 => Opcode::TextRequest,
            0x05 => Opcode::DataOut,
            0x06 => Opcode::LogoutRequest,
            0x10 => Opcode::SnackRequest,
            0x20 => Opcode::NopIn,
            0x21 => Opcode::ScsiResponse,
            0x22 => Opcode::TaskMgmtResponse,
            0x23 => Opcode::LoginResponse,
            0x24 => Opcode::TextResponse,
            0x25 => Opcode::DataIn,
            0x26 => Opcode::LogoutResponse,
            0x31 => Opcode::R2t,
            0x32 => Opcode::AsyncMessage,
            0x3F => Opcode::Reject,
            _ => return Err(BhsError::UnknownOpcode(code)),
        })
    }

    /// The six-bit wire value.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// True for opcodes sent by an initiator (`0x00..=0x1f`, §11.2.1.2).
    pub const fn is_initiator(self) -> bool {
        (self as u8) < 0x20
    }
}

/// Why a BHS (or a typed PDU header) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BhsError {
    /// Fewer than [`BHS_LEN`] bytes were supplied.
    #[error("truncated BHS: {0} of 48 bytes")]
    Truncated(usize),
    /// Byte 0 carries an opcode RFC 7143 §11.2.1.2 does not define.
    #[error("unknown iSCSI opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// A typed parser was handed a header with a different opcode.
    #[error("expected opcode {expected:?}, found {found:#04x}")]
    OpcodeMismatch {
        /// The opcode the typed parser decodes.
        expected: Opcode,
        /// The opcode byte found (I bit masked off).
        found: u8,
    },
    /// A Login PDU names the reserved stage 2 in CSG, or in NSG with T set
    /// (RFC 7143 §11.12.3).
    #[error("reserved login stage {0}")]
    ReservedStage(u8),
}

impl BhsError {
    /// The Reject reason a target answers this error with (RFC 7143
    /// §11.17.1): an unknown opcode is "Command not supported", anything
    /// else a malformed field.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            BhsError::UnknownOpcode(_) => RejectReason::CommandNotSupported,
            BhsError::Truncated(_) => RejectReason::ProtocolError,
            BhsError::OpcodeMismatch { .. } | BhsError::ReservedStage(_) => {
                RejectReason::InvalidPduField
            }
        }
    }
}

/// A received Basic Header Segment whose opcode is known (RFC 7143 §11.2.1).
///
/// A read-only view of the 48 bytes with accessors for the common fields;
/// [`Bhs::pdu`] decodes the opcode-specific fields into a typed PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bhs {
    bytes: [u8; BHS_LEN],
    opcode: Opcode,
}

impl Bhs {
    /// Decodes the first 48 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, BhsError> {
        let bytes: [u8; BHS_LEN] = buf
            .get(..BHS_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(BhsError::Truncated(buf.len()))?;
        Self::from_bytes(&bytes)
    }

    /// Decodes a BHS array.
    pub fn from_bytes(bytes: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        let opcode = Opcode::from_byte(bytes[0])?;
        Ok(Bhs {
            bytes: *bytes,
            opcode,
        })
    }

    /// The raw 48 bytes (for header digests and Reject data segments).
    pub fn as_bytes(&self) -> &[u8; BHS_LEN] {
        &self.bytes
    }

    /// The opcode (§11.2.1.2).
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }

    /// The I bit: immediate delivery (§11.2.1.1).
    pub fn immediate(&self) -> bool {
        self.bytes[0] & IMMEDIATE_BIT != 0
    }

    /// The F bit, bit 0 of byte 1 (§11.2.1.2; the T bit in Login PDUs).
    pub fn final_bit(&self) -> bool {
        self.bytes[1] & FINAL_BIT != 0
    }

    /// Byte 1 whole: the F bit and the opcode-specific flags.
    pub fn flags(&self) -> u8 {
        self.bytes[1]
    }

    /// Bytes 2-3, opcode-specific.
    pub fn specific_2_3(&self) -> [u8; 2] {
        [self.bytes[2], self.bytes[3]]
    }

    /// TotalAHSLength, in 4-byte words (§11.2.1.4).
    pub fn total_ahs_len(&self) -> u8 {
        self.bytes[4]
    }

    /// Length of the Additional Header Segments in bytes.
    pub fn ahs_len_bytes(&self) -> usize {
        usize::from(self.bytes[4]) * 4
    }

    /// DataSegmentLength in bytes, excluding padding (§11.2.1.5).
    pub fn data_segment_len(&self) -> u32 {
        be24(&self.bytes, 5)
    }

    /// Bytes 8-15: the LUN, or opcode-specific (§11.2.1.6).
    pub fn lun(&self) -> [u8; 8] {
        array(&self.bytes, 8)
    }

    /// The Initiator Task Tag (§11.2.1.8).
    pub fn itt(&self) -> u32 {
        be32(&self.bytes, 16)
    }

    /// Bytes 20-47, the opcode-specific fields.
    pub fn opcode_specific(&self) -> [u8; 28] {
        array(&self.bytes, 20)
    }

    /// A big-endian 32-bit field at byte `offset`, if it lies within the BHS.
    pub fn u32_at(&self, offset: usize) -> Option<u32> {
        let end = offset.checked_add(4)?;
        self.bytes
            .get(offset..end)
            .map(|_| be32(&self.bytes, offset))
    }

    /// A single byte at `offset`, if it lies within the BHS.
    pub fn u8_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(offset).map(|_| u8_at(&self.bytes, offset))
    }

    /// Length of the whole PDU on the wire (RFC 7143 §11.1): BHS, AHS,
    /// header digest, data segment padded to 4 bytes, data digest. The data
    /// digest is present only when the data segment is non-empty.
    pub fn pdu_len(&self, hdr_digest: bool, data_digest: bool) -> usize {
        pdu_len(
            self.total_ahs_len(),
            self.data_segment_len(),
            hdr_digest,
            data_digest,
        )
    }

    /// Decodes the opcode-specific fields into a typed PDU.
    pub fn pdu(&self) -> Result<crate::iscsi::Pdu, BhsError> {
        crate::iscsi::Pdu::parse(&self.bytes)
    }
}

/// Length on the wire of a PDU with the given TotalAHSLength (in words) and
/// DataSegmentLength (RFC 7143 §11.1, §11.2.1.4-5).
pub fn pdu_len(
    total_ahs_len: u8,
    data_segment_len: u32,
    hdr_digest: bool,
    data_digest: bool,
) -> usize {
    // DataSegmentLength is 24 bits, so none of this can overflow a usize.
    let data = (data_segment_len & MAX_DATA_SEGMENT_LEN) as usize;
    let mut len = BHS_LEN + usize::from(total_ahs_len) * 4 + padded_len(data);
    if hdr_digest {
        len += DIGEST_LEN;
    }
    if data_digest && data > 0 {
        len += DIGEST_LEN;
    }
    len
}

/// Checks that `b` carries `expected` in byte 0 (I bit ignored).
pub(crate) fn expect_opcode(b: &[u8; BHS_LEN], expected: Opcode) -> Result<(), BhsError> {
    let found = b[0] & OPCODE_MASK;
    if found == expected.code() {
        Ok(())
    } else {
        Err(BhsError::OpcodeMismatch { expected, found })
    }
}

/// `bit` if `set`, else 0.
pub(crate) const fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

/// Starts an encoded header: byte 0 (opcode and I bit), byte 1, the AHS
/// length and the 24-bit DataSegmentLength.
pub(crate) fn header(
    opcode: Opcode,
    immediate: bool,
    byte1: u8,
    total_ahs_len: u8,
    data_segment_len: u32,
) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[0] = opcode.code() | if immediate { IMMEDIATE_BIT } else { 0 };
    b[1] = byte1;
    b[4] = total_ahs_len;
    crate::wire::put_be24(&mut b, 5, data_segment_len);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips_and_others_are_rejected() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_byte(op.code()), Ok(op));
            assert_eq!(Opcode::from_byte(op.code() | 0xC0), Ok(op));
        }
        let known = Opcode::ALL.map(Opcode::code);
        for code in 0u8..0x40 {
            if !known.contains(&code) {
                assert_eq!(Opcode::from_byte(code), Err(BhsError::UnknownOpcode(code)));
            }
        }
    }

    #[test]
    fn pdu_len_pads_and_counts_digests() {
        assert_eq!(pdu_len(0, 0, false, false), 48);
        assert_eq!(pdu_len(0, 0, true, true), 52);
        assert_eq!(pdu_len(0, 1, false, false), 52);
        assert_eq!(pdu_len(0, 1, false, true), 56);
        assert_eq!(pdu_len(2, 5, true, true), 48 + 8 + 4 + 8 + 4);
        assert_eq!(
            pdu_len(255, MAX_DATA_SEGMENT_LEN, true, true),
            48 + 1020 + 4 + 0x0100_0000 + 4
        );
    }

    #[test]
    fn short_input_is_truncated() {
        assert_eq!(Bhs::parse(&[0u8; 47]), Err(BhsError::Truncated(47)));
        assert!(Bhs::parse(&[0u8; 60]).is_ok());
    }

    #[test]
    fn common_fields() {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x41;
        b[1] = 0x81;
        b[4] = 3;
        b[5..8].copy_from_slice(&[0x01, 0x02, 0x03]);
        b[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        b[16..20].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        b[47] = 0x5a;
        let h = Bhs::from_bytes(&b).unwrap();
        assert_eq!(h.opcode(), Opcode::ScsiCommand);
        assert!(h.immediate());
        assert!(h.final_bit());
        assert_eq!(h.flags(), 0x81);
        assert_eq!(h.total_ahs_len(), 3);
        assert_eq!(h.ahs_len_bytes(), 12);
        assert_eq!(h.data_segment_len(), 0x010203);
        assert_eq!(h.lun(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(h.itt(), 0xdeadbeef);
        assert_eq!(h.opcode_specific()[27], 0x5a);
        assert_eq!(h.u32_at(16), Some(0xdeadbeef));
        assert_eq!(h.u32_at(45), None);
        assert_eq!(h.u8_at(47), Some(0x5a));
        assert_eq!(h.u8_at(48), None);
        assert_eq!(h.pdu_len(false, false), 48 + 12 + 0x010204);
    }
}
