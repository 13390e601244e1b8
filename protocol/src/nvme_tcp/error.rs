//! Fatal transport errors and their C2HTermReq encoding (TCP Transport 1.0
//! §3.6.2.4-5).

use super::PduType;

code_enum! {
    /// Fatal Error Status of an H2CTermReq / C2HTermReq (§3.6.2.4).
    pub enum Fes: u16 {
        /// 01h Invalid PDU Header Field; FEI is the byte offset of the field.
        InvalidPduHeaderField = 0x01,
        /// 02h PDU Sequence Error.
        PduSequenceError = 0x02,
        /// 03h Header Digest Error.
        HeaderDigestError = 0x03,
        /// 04h Data Transfer Out of Range.
        DataTransferOutOfRange = 0x04,
        /// 05h Data Transfer Limit Exceeded (was R2T Limit Exceeded).
        DataTransferLimitExceeded = 0x05,
        /// 06h Unsupported Parameter; FEI is the byte offset of the
        /// parameter.
        UnsupportedParameter = 0x06,
    }
}

/// Why a PDU header is unacceptable. [`PduError::fes`] and
/// [`PduError::fei`] give the C2HTermReq to send before closing the
/// connection; errors with no FES close it without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// Fewer bytes than the header needs were supplied (not a wire error:
    /// the caller has not received enough yet).
    #[error("truncated PDU header: need {needed} bytes, have {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// Byte 0 names no PDU type.
    #[error("unknown NVMe/TCP PDU type {0:#04x}")]
    UnknownPduType(u8),
    /// A known PDU type where it may not appear (wrong direction, or a
    /// typed parser handed another type).
    #[error("unexpected NVMe/TCP PDU type {0:?}")]
    UnexpectedPduType(PduType),
    /// A known PDU type out of sequence (e.g. a second ICReq).
    #[error("PDU {0:?} out of sequence")]
    SequenceError(PduType),
    /// FLAGS disagree with the negotiated digests or the PDU type.
    #[error("invalid PDU flags {0:#04x}")]
    InvalidFlags(u8),
    /// HLEN is not the fixed length of the PDU type.
    #[error("invalid HLEN {hlen} for {pdu_type:?}")]
    InvalidHlen {
        /// The PDU type.
        pdu_type: PduType,
        /// HLEN received.
        hlen: u8,
    },
    /// PDO is out of range or misaligned.
    #[error("invalid PDO {0}")]
    InvalidPdo(u8),
    /// PLEN is inconsistent with HLEN, PDO and the digests.
    #[error("invalid PLEN {0}")]
    InvalidPlen(u32),
    /// PLEN exceeds what the receiver accepts.
    #[error("PLEN {plen} exceeds the limit {max}")]
    PlenExceedsLimit {
        /// PLEN received.
        plen: u32,
        /// The receiver's limit.
        max: u32,
    },
    /// A TermReq with PLEN outside 24..=152: close without a reply.
    #[error("TermReq with invalid PLEN {0}")]
    InvalidTermReqLength(u32),
    /// A PDU-specific header field is invalid.
    #[error("invalid PDU header field at offset {0}")]
    InvalidField(u32),
    /// The header digest did not match.
    #[error("header digest mismatch")]
    HeaderDigest,
    /// Data outside the range the command or R2T allows.
    #[error("data transfer out of range")]
    DataOutOfRange,
    /// H2CData DATAL exceeds MAXH2CDATA.
    #[error("DATAL {datal} exceeds MAXH2CDATA {max}")]
    DataLimitExceeded {
        /// DATAL received.
        datal: u32,
        /// The negotiated MAXH2CDATA.
        max: u32,
    },
    /// A parameter the receiver does not support (ICReq PFV, HPDA).
    #[error("unsupported parameter at offset {0}")]
    UnsupportedParameter(u32),
}

impl PduError {
    /// The Fatal Error Status to report, or `None` if the connection is
    /// closed without a TermReq (or, for `Truncated`, not at all).
    pub fn fes(&self) -> Option<Fes> {
        Some(match self {
            PduError::Truncated { .. } | PduError::InvalidTermReqLength(_) => return None,
            PduError::UnknownPduType(_)
            | PduError::UnexpectedPduType(_)
            | PduError::InvalidFlags(_)
            | PduError::InvalidHlen { .. }
            | PduError::InvalidPdo(_)
            | PduError::InvalidPlen(_)
            | PduError::PlenExceedsLimit { .. }
            | PduError::InvalidField(_) => Fes::InvalidPduHeaderField,
            PduError::SequenceError(_) => Fes::PduSequenceError,
            PduError::HeaderDigest => Fes::HeaderDigestError,
            PduError::DataOutOfRange => Fes::DataTransferOutOfRange,
            PduError::DataLimitExceeded { .. } => Fes::DataTransferLimitExceeded,
            PduError::UnsupportedParameter(_) => Fes::UnsupportedParameter,
        })
    }

    /// The Fatal Error Information: for FES 01h and 06h the byte offset of
    /// the offending field from the start of the PDU; otherwise 0.
    pub fn fei(&self) -> u32 {
        match self {
            PduError::UnknownPduType(_) | PduError::UnexpectedPduType(_) => 0,
            PduError::InvalidFlags(_) => 1,
            PduError::InvalidHlen { .. } => 2,
            PduError::InvalidPdo(_) => 3,
            PduError::InvalidPlen(_) | PduError::PlenExceedsLimit { .. } => 4,
            PduError::InvalidField(offset) | PduError::UnsupportedParameter(offset) => *offset,
            PduError::Truncated { .. }
            | PduError::InvalidTermReqLength(_)
            | PduError::SequenceError(_)
            | PduError::HeaderDigest
            | PduError::DataOutOfRange
            | PduError::DataLimitExceeded { .. } => 0,
        }
    }
}
