//! NVMe/TCP transport PDUs (NVM Express TCP Transport Specification 1.0,
//! §3.6). All multi-byte fields are little-endian.
//!
//! Every PDU starts with the 8-byte [`CommonHeader`] (CH): PDU-Type, FLAGS,
//! HLEN (length of CH plus the PDU-specific header, without digest), PDO
//! (offset of the PDU data) and PLEN (length of the whole PDU). A receiver
//! reads the CH, calls [`CommonHeader::validate`] to learn the layout of the
//! rest or the fatal error to report in a C2HTermReq ([`TermReq`]), then
//! decodes the PDU-specific header with the typed parser:
//! [`ICReq`], [`ICResp`], [`TermReq`], [`CapsuleCmd`], [`CapsuleResp`],
//! [`H2CData`], [`C2HData`], [`R2t`].

mod capsule;
mod data;
pub mod digest;
mod error;
mod header;
mod ic;
mod sequence;
mod term;

pub use capsule::{CapsuleCmd, CapsuleResp, CQE_LEN, SQE_LEN};
pub use data::{C2HData, H2CData, R2t};
pub use error::{Fes, PduError};
pub use header::{CommonHeader, PduLayout, CH_LEN};
pub use ic::{ICReq, ICResp, IC_LEN, MIN_MAXH2CDATA, PFV_1_0};
pub use sequence::{C2hFraming, C2hHeader, H2cTransfer, SqHead};
pub use term::{TermReq, TermReqBytes, TERM_REQ_MAX_DATA, TERM_REQ_MAX_PLEN};

/// Which way a PDU travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Host to controller (H2C).
    HostToController,
    /// Controller to host (C2H).
    ControllerToHost,
}

/// PDU-Type, byte 0 of the common header (TCP Transport 1.0 §3.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    /// 0x00 Initialize Connection Request.
    ICReq = 0x00,
    /// 0x01 Initialize Connection Response.
    ICResp = 0x01,
    /// 0x02 Host to Controller Terminate Connection Request.
    H2CTermReq = 0x02,
    /// 0x03 Controller to Host Terminate Connection Request.
    C2HTermReq = 0x03,
    /// 0x04 Command Capsule.
    CapsuleCmd = 0x04,
    /// 0x05 Response Capsule.
    CapsuleResp = 0x05,
    /// 0x06 Host to Controller Data.
    H2CData = 0x06,
    /// 0x07 Controller to Host Data.
    C2HData = 0x07,
    /// 0x09 Ready to Transfer.
    R2t = 0x09,
}

impl PduType {
    /// Every PDU type, in numeric order.
    pub const ALL: [PduType; 9] = [
        PduType::ICReq,
        PduType::ICResp,
        PduType::H2CTermReq,
        PduType::C2HTermReq,
        PduType::CapsuleCmd,
        PduType::CapsuleResp,
        PduType::H2CData,
        PduType::C2HData,
        PduType::R2t,
    ];

    /// Decodes byte 0 of a common header.
    pub fn from_code(code: u8) -> Result<Self, PduError> {
        Ok(match code {
            0x00 => PduType::ICReq,
            0x01 => PduType::ICResp,
            0x02 => PduType::H2CTermReq,
            0x03 => PduType::C2HTermReq,
            0x04 => PduType::CapsuleCmd,
            0x05 => PduType::CapsuleResp,
            0x06 => PduType::H2CData,
            0x07 => PduType::C2HData,
            0x09 => PduType::R2t,
            other => return Err(PduError::UnknownPduType(other)),
        })
    }

    /// The wire value.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The HLEN every PDU of this type carries (§3.6.2).
    pub const fn header_len(self) -> u8 {
        match self {
            PduType::ICReq | PduType::ICResp => 128,
            PduType::CapsuleCmd => 72,
            PduType::H2CTermReq
            | PduType::C2HTermReq
            | PduType::CapsuleResp
            | PduType::H2CData
            | PduType::C2HData
            | PduType::R2t => 24,
        }
    }

    /// Which way this type travels.
    pub const fn direction(self) -> Direction {
        match self {
            PduType::ICReq | PduType::H2CTermReq | PduType::CapsuleCmd | PduType::H2CData => {
                Direction::HostToController
            }
            PduType::ICResp
            | PduType::C2HTermReq
            | PduType::CapsuleResp
            | PduType::C2HData
            | PduType::R2t => Direction::ControllerToHost,
        }
    }

    /// True for the types that carry a header digest when header digests are
    /// enabled (all but ICReq, ICResp and the TermReqs, §3.6.2).
    pub const fn has_header_digest(self) -> bool {
        matches!(
            self,
            PduType::CapsuleCmd
                | PduType::CapsuleResp
                | PduType::H2CData
                | PduType::C2HData
                | PduType::R2t
        )
    }

    /// True for the types whose data is placed at PDO and covered by a data
    /// digest: CapsuleCmd (in-capsule data), H2CData and C2HData.
    pub const fn has_data(self) -> bool {
        matches!(
            self,
            PduType::CapsuleCmd | PduType::H2CData | PduType::C2HData
        )
    }

    /// True for H2CTermReq and C2HTermReq.
    pub const fn is_term_req(self) -> bool {
        matches!(self, PduType::H2CTermReq | PduType::C2HTermReq)
    }
}

/// FLAGS, byte 1 of the common header (§3.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PduFlags(pub u8);

impl PduFlags {
    /// HDGSTF: a header digest follows the header.
    pub const HDGSTF: PduFlags = PduFlags(0x01);
    /// DDGSTF: a data digest follows the data.
    pub const DDGSTF: PduFlags = PduFlags(0x02);
    /// LAST_PDU: last data PDU of the transfer (H2CData, C2HData).
    pub const LAST_PDU: PduFlags = PduFlags(0x04);
    /// SUCCESS: the command completed successfully, no CapsuleResp follows
    /// (C2HData; requires LAST_PDU).
    pub const SUCCESS: PduFlags = PduFlags(0x08);

    /// No flags.
    pub const fn empty() -> Self {
        PduFlags(0)
    }

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: PduFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set or cleared.
    pub const fn with(self, other: PduFlags, set: bool) -> Self {
        if set {
            PduFlags(self.0 | other.0)
        } else {
            PduFlags(self.0 & !other.0)
        }
    }
}

impl std::ops::BitOr for PduFlags {
    type Output = PduFlags;

    fn bitor(self, rhs: PduFlags) -> PduFlags {
        PduFlags(self.0 | rhs.0)
    }
}

/// Checks byte 0 and HLEN of a typed header: `Ok` if the PDU type is
/// `expected` and HLEN its fixed value.
pub(crate) fn expect_type(b: &[u8], expected: PduType) -> Result<(), PduError> {
    let found = PduType::from_code(crate::wire::u8_at(b, 0))?;
    if found != expected {
        return Err(PduError::UnexpectedPduType(found));
    }
    let hlen = crate::wire::u8_at(b, 2);
    if hlen != expected.header_len() {
        return Err(PduError::InvalidHlen {
            pdu_type: expected,
            hlen,
        });
    }
    Ok(())
}

/// A common header for `pdu_type` with its fixed HLEN.
pub(crate) fn common(pdu_type: PduType, flags: PduFlags, pdo: u8, plen: u32) -> CommonHeader {
    CommonHeader {
        pdu_type,
        flags,
        hlen: pdu_type.header_len(),
        pdo,
        plen,
    }
}

/// Writes a common header at the start of `b`.
pub(crate) fn put_common(b: &mut [u8], pdu_type: PduType, flags: PduFlags, pdo: u8, plen: u32) {
    crate::wire::put(b, 0, &common(pdu_type, flags, pdo, plen).encode());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdu_types_round_trip_and_unknown_are_errors() {
        for t in PduType::ALL {
            assert_eq!(PduType::from_code(t.code()), Ok(t));
        }
        for code in [0x08, 0x0a, 0x0f, 0x80, 0xff] {
            assert_eq!(
                PduType::from_code(code),
                Err(PduError::UnknownPduType(code))
            );
        }
    }

    #[test]
    fn header_lengths_match_the_spec() {
        let expected = [128, 128, 24, 24, 72, 24, 24, 24, 24];
        assert_eq!(PduType::ALL.map(PduType::header_len), expected);
    }

    #[test]
    fn flags() {
        let f = PduFlags::HDGSTF | PduFlags::LAST_PDU;
        assert!(f.contains(PduFlags::HDGSTF));
        assert!(!f.contains(PduFlags::DDGSTF));
        assert_eq!(f.with(PduFlags::HDGSTF, false), PduFlags::LAST_PDU);
        assert_eq!(f.0, 0x05);
    }
}
