//! H2CTermReq and C2HTermReq (TCP Transport 1.0 §3.6.2.4-5).

use super::{put_common, CommonHeader, Direction, Fes, PduError, PduFlags, PduType};
use crate::wire::{le16, le32, put, put_le16, put_le32};

/// HLEN of a TermReq.
const TERM_REQ_HLEN: usize = 24;

/// Most bytes of the offending PDU header a TermReq carries as data.
pub const TERM_REQ_MAX_DATA: usize = 128;

/// Largest PLEN of a TermReq: the 24-byte header and 128 bytes of data.
pub const TERM_REQ_MAX_PLEN: u32 = (TERM_REQ_HLEN + TERM_REQ_MAX_DATA) as u32;

/// A Terminate Connection Request (§3.6.2.4): the fatal error that ends
/// the connection and the header of the PDU that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermReq {
    /// H2CTermReq or C2HTermReq.
    pub direction: Direction,
    /// FES: Fatal Error Status (bytes 8-9).
    pub fes: Fes,
    /// FEI: Fatal Error Information (bytes 10-13), e.g. the offset of an
    /// invalid header field.
    pub fei: u32,
    header: [u8; TERM_REQ_MAX_DATA],
    header_len: u8,
}

/// An encoded TermReq: a fixed buffer and the PDU's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermReqBytes {
    bytes: [u8; TERM_REQ_MAX_PLEN as usize],
    len: usize,
}

impl TermReqBytes {
    /// The PDU's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl TermReq {
    /// A TermReq carrying the first (up to 128) bytes of `offending_header`.
    pub fn new(direction: Direction, fes: Fes, fei: u32, offending_header: &[u8]) -> Self {
        let n = offending_header.len().min(TERM_REQ_MAX_DATA);
        let mut header = [0u8; TERM_REQ_MAX_DATA];
        put(
            &mut header,
            0,
            offending_header.get(..n).unwrap_or_default(),
        );
        TermReq {
            direction,
            fes,
            fei,
            header,
            header_len: n as u8,
        }
    }

    /// The C2HTermReq a controller sends for `error`, or `None` if the
    /// error closes the connection without one.
    pub fn for_error(error: &PduError, offending_header: &[u8]) -> Option<Self> {
        let fes = error.fes()?;
        Some(Self::new(
            Direction::ControllerToHost,
            fes,
            error.fei(),
            offending_header,
        ))
    }

    /// The offending PDU header carried as data.
    pub fn error_header(&self) -> &[u8] {
        self.header
            .get(..usize::from(self.header_len))
            .unwrap_or_default()
    }

    /// PLEN of the encoded PDU.
    pub fn plen(&self) -> u32 {
        TERM_REQ_HLEN as u32 + u32::from(self.header_len)
    }

    fn pdu_type(&self) -> PduType {
        match self.direction {
            Direction::HostToController => PduType::H2CTermReq,
            Direction::ControllerToHost => PduType::C2HTermReq,
        }
    }

    /// Decodes a whole TermReq PDU from `buf` (at least PLEN bytes).
    pub fn parse(buf: &[u8]) -> Result<Self, PduError> {
        let ch = CommonHeader::parse(buf)?;
        if !ch.pdu_type.is_term_req() {
            return Err(PduError::UnexpectedPduType(ch.pdu_type));
        }
        let layout = ch.validate(false, false, TERM_REQ_MAX_PLEN)?;
        let data = buf
            .get(layout.data_offset..layout.plen)
            .ok_or(PduError::Truncated {
                needed: layout.plen,
                got: buf.len(),
            })?;
        Ok(Self::new(
            ch.pdu_type.direction(),
            Fes::from_code(le16(buf, 8)),
            le32(buf, 10),
            data,
        ))
    }

    /// Encodes the PDU: header, then the offending header as data.
    pub fn encode(&self) -> TermReqBytes {
        let mut bytes = [0u8; TERM_REQ_MAX_PLEN as usize];
        put_common(
            &mut bytes,
            self.pdu_type(),
            PduFlags::empty(),
            0,
            self.plen(),
        );
        put_le16(&mut bytes, 8, self.fes.code());
        put_le32(&mut bytes, 10, self.fei);
        put(&mut bytes, TERM_REQ_HLEN, self.error_header());
        TermReqBytes {
            bytes,
            len: TERM_REQ_HLEN + usize::from(self.header_len),
        }
    }
}
