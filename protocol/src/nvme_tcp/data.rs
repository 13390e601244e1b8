//! H2CData, C2HData and R2T (TCP Transport 1.0 §3.6.2.8-10).

use super::{
    common, expect_type, put_common, CommonHeader, PduError, PduFlags, PduLayout, PduType,
};
use crate::wire::{le16, le32, put_le16, put_le32};

const DATA_HLEN: usize = 24;

/// Host to Controller Data PDU header (§3.6.2.8): write data
/// answering an R2T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct H2CData {
    /// FLAGS (HDGSTF, DDGSTF, LAST_PDU).
    pub flags: PduFlags,
    /// PDO.
    pub pdo: u8,
    /// PLEN.
    pub plen: u32,
    /// CCCID: command capsule CID (bytes 8-9).
    pub cccid: u16,
    /// TTAG: transfer tag from the R2T (bytes 10-11).
    pub ttag: u16,
    /// DATAO: offset of this data in the command's buffer (bytes 12-15).
    pub datao: u32,
    /// DATAL: length of this PDU's data (bytes 16-19).
    pub datal: u32,
}

impl H2CData {
    /// Offset of DATAL, for FEI.
    pub const DATAL_OFFSET: u32 = 16;

    /// Decodes the 24-byte header.
    pub fn parse(b: &[u8; DATA_HLEN]) -> Result<Self, PduError> {
        expect_type(b, PduType::H2CData)?;
        Ok(H2CData {
            flags: PduFlags(b[1]),
            pdo: b[3],
            plen: le32(b, 4),
            cccid: le16(b, 8),
            ttag: le16(b, 10),
            datao: le32(b, 12),
            datal: le32(b, 16),
        })
    }

    /// Encodes the 24-byte header.
    pub fn encode(&self) -> [u8; DATA_HLEN] {
        let mut b = [0u8; DATA_HLEN];
        put_common(&mut b, PduType::H2CData, self.flags, self.pdo, self.plen);
        put_le16(&mut b, 8, self.cccid);
        put_le16(&mut b, 10, self.ttag);
        put_le32(&mut b, 12, self.datao);
        put_le32(&mut b, 16, self.datal);
        b
    }

    /// LAST_PDU: the last H2CData of the R2T's transfer.
    pub fn last_pdu(&self) -> bool {
        self.flags.contains(PduFlags::LAST_PDU)
    }

    /// The common header.
    pub fn common_header(&self) -> CommonHeader {
        common(PduType::H2CData, self.flags, self.pdo, self.plen)
    }

    /// Checks DATAL against MAXH2CDATA (FES 05h) and against the data the
    /// PDU actually carries (FES 01h at DATAL).
    pub fn check_datal(&self, layout: &PduLayout, maxh2cdata: u32) -> Result<(), PduError> {
        if self.datal > maxh2cdata {
            return Err(PduError::DataLimitExceeded {
                datal: self.datal,
                max: maxh2cdata,
            });
        }
        if usize::try_from(self.datal).ok() != Some(layout.data_len) {
            return Err(PduError::InvalidField(Self::DATAL_OFFSET));
        }
        Ok(())
    }
}

/// Controller to Host Data PDU header (§3.6.2.9): read data.
/// Bytes 10-11 are reserved (there is no TTAG in this direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct C2HData {
    /// FLAGS (HDGSTF, DDGSTF, LAST_PDU, SUCCESS).
    pub flags: PduFlags,
    /// PDO.
    pub pdo: u8,
    /// PLEN.
    pub plen: u32,
    /// CCCID: command capsule CID (bytes 8-9).
    pub cccid: u16,
    /// DATAO: offset of this data in the command's buffer (bytes 12-15).
    pub datao: u32,
    /// DATAL: length of this PDU's data (bytes 16-19).
    pub datal: u32,
}

impl C2HData {
    /// Decodes the 24-byte header.
    pub fn parse(b: &[u8; DATA_HLEN]) -> Result<Self, PduError> {
        expect_type(b, PduType::C2HData)?;
        Ok(C2HData {
            flags: PduFlags(b[1]),
            pdo: b[3],
            plen: le32(b, 4),
            cccid: le16(b, 8),
            datao: le32(b, 12),
            datal: le32(b, 16),
        })
    }

    /// Encodes the 24-byte header.
    pub fn encode(&self) -> [u8; DATA_HLEN] {
        let mut b = [0u8; DATA_HLEN];
        put_common(&mut b, PduType::C2HData, self.flags, self.pdo, self.plen);
        put_le16(&mut b, 8, self.cccid);
        put_le32(&mut b, 12, self.datao);
        put_le32(&mut b, 16, self.datal);
        b
    }

    /// LAST_PDU: the last C2HData of the command.
    pub fn last_pdu(&self) -> bool {
        self.flags.contains(PduFlags::LAST_PDU)
    }

    /// SUCCESS: the command succeeded and no CapsuleResp follows.
    pub fn success(&self) -> bool {
        self.flags.contains(PduFlags::SUCCESS)
    }

    /// The common header.
    pub fn common_header(&self) -> CommonHeader {
        common(PduType::C2HData, self.flags, self.pdo, self.plen)
    }
}

/// Ready to Transfer PDU (§3.6.2.10): the controller solicits
/// write data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    /// FLAGS (HDGSTF).
    pub flags: PduFlags,
    /// PDO (0: no data).
    pub pdo: u8,
    /// PLEN: 24, or 28 with a header digest.
    pub plen: u32,
    /// CCCID: command capsule CID (bytes 8-9).
    pub cccid: u16,
    /// TTAG: transfer tag the host echoes in H2CData (bytes 10-11).
    pub ttag: u16,
    /// R2TO: offset of the requested data (bytes 12-15).
    pub r2to: u32,
    /// R2TL: length of the requested data (bytes 16-19).
    pub r2tl: u32,
}

impl Default for R2t {
    fn default() -> Self {
        R2t {
            flags: PduFlags::empty(),
            pdo: 0,
            plen: DATA_HLEN as u32,
            cccid: 0,
            ttag: 0,
            r2to: 0,
            r2tl: 0,
        }
    }
}

impl R2t {
    /// Decodes the 24-byte header.
    pub fn parse(b: &[u8; DATA_HLEN]) -> Result<Self, PduError> {
        expect_type(b, PduType::R2t)?;
        Ok(R2t {
            flags: PduFlags(b[1]),
            pdo: b[3],
            plen: le32(b, 4),
            cccid: le16(b, 8),
            ttag: le16(b, 10),
            r2to: le32(b, 12),
            r2tl: le32(b, 16),
        })
    }

    /// Encodes the 24-byte header.
    pub fn encode(&self) -> [u8; DATA_HLEN] {
        let mut b = [0u8; DATA_HLEN];
        put_common(&mut b, PduType::R2t, self.flags, self.pdo, self.plen);
        put_le16(&mut b, 8, self.cccid);
        put_le16(&mut b, 10, self.ttag);
        put_le32(&mut b, 12, self.r2to);
        put_le32(&mut b, 16, self.r2tl);
        b
    }

    /// The common header.
    pub fn common_header(&self) -> CommonHeader {
        common(PduType::R2t, self.flags, self.pdo, self.plen)
    }
}
