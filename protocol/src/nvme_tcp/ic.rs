//! ICReq and ICResp: connection initialization (TCP Transport 1.0
//! §3.6.2.2-3).

use super::header::common_of;
use super::{expect_type, put_common, PduError, PduFlags, PduType};
use crate::wire::{le16, le32, put_le16, put_le32};

/// Length of ICReq and ICResp (HLEN = PLEN = 128).
pub const IC_LEN: usize = 128;

/// PDU Format Version 1.0, the only one defined.
pub const PFV_1_0: u16 = 0;

/// Smallest MAXH2CDATA a controller may offer (4 KiB, a multiple of 4, §3.6.2.3).
pub const MIN_MAXH2CDATA: u32 = 4096;

/// Largest PDU data alignment value (0's based dwords, §3.6.2.2).
const MAX_PDA: u8 = 31;

const HDGST_ENABLE: u8 = 0x01;
const DDGST_ENABLE: u8 = 0x02;

/// Checks the fixed common header of an IC PDU: no digests, PDO 0,
/// PLEN 128.
fn check_ic_common(b: &[u8; IC_LEN], pdu_type: PduType) -> Result<(), PduError> {
    expect_type(b, pdu_type)?;
    let ch = common_of(b)?;
    ch.validate(false, false, IC_LEN as u32).map(|_| ())
}

/// Initialize Connection Request (§3.6.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ICReq {
    /// PFV: PDU format version (bytes 8-9).
    pub pfv: u16,
    /// HPDA: host PDU data alignment, 0's based dwords, 0..=31 (byte 10).
    pub hpda: u8,
    /// DGST bit 0: the host asks for header digests (byte 11).
    pub hdgst_enable: bool,
    /// DGST bit 1: the host asks for data digests.
    pub ddgst_enable: bool,
    /// MAXR2T: maximum outstanding R2Ts per command, 0's based (bytes
    /// 12-15).
    pub maxr2t: u32,
}

impl ICReq {
    /// Decodes an ICReq, checking its fixed common header.
    pub fn parse(b: &[u8; IC_LEN]) -> Result<Self, PduError> {
        check_ic_common(b, PduType::ICReq)?;
        Ok(ICReq {
            pfv: le16(b, 8),
            hpda: b[10],
            hdgst_enable: b[11] & HDGST_ENABLE != 0,
            ddgst_enable: b[11] & DDGST_ENABLE != 0,
            maxr2t: le32(b, 12),
        })
    }

    /// Checks the parameters a controller must support: PFV 1.0 and HPDA
    /// in range (FES 06h with the parameter's offset otherwise).
    pub fn validate(&self) -> Result<(), PduError> {
        if self.pfv != PFV_1_0 {
            return Err(PduError::UnsupportedParameter(8));
        }
        if self.hpda > MAX_PDA {
            return Err(PduError::UnsupportedParameter(10));
        }
        Ok(())
    }

    /// Encodes the 128 bytes; reserved fields are zero.
    pub fn encode(&self) -> [u8; IC_LEN] {
        let mut b = [0u8; IC_LEN];
        put_common(&mut b, PduType::ICReq, PduFlags::empty(), 0, IC_LEN as u32);
        put_le16(&mut b, 8, self.pfv);
        b[10] = self.hpda;
        b[11] = dgst(self.hdgst_enable, self.ddgst_enable);
        put_le32(&mut b, 12, self.maxr2t);
        b
    }
}

/// Initialize Connection Response (§3.6.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ICResp {
    /// PFV: PDU format version (bytes 8-9).
    pub pfv: u16,
    /// CPDA: controller PDU data alignment, 0's based dwords (byte 10).
    pub cpda: u8,
    /// DGST bit 0: header digests enabled (byte 11).
    pub hdgst_enable: bool,
    /// DGST bit 1: data digests enabled.
    pub ddgst_enable: bool,
    /// MAXH2CDATA: largest H2CData data length the controller accepts,
    /// at least 4096 (bytes 12-15).
    pub maxh2cdata: u32,
}

impl ICResp {
    /// Decodes an ICResp, checking its fixed common header.
    pub fn parse(b: &[u8; IC_LEN]) -> Result<Self, PduError> {
        check_ic_common(b, PduType::ICResp)?;
        Ok(ICResp {
            pfv: le16(b, 8),
            cpda: b[10],
            hdgst_enable: b[11] & HDGST_ENABLE != 0,
            ddgst_enable: b[11] & DDGST_ENABLE != 0,
            maxh2cdata: le32(b, 12),
        })
    }

    /// Checks the parameters a host must see: PFV 1.0, CPDA in range, and
    /// MAXH2CDATA a multiple of 4 of at least 4096 (§3.6.2.3).
    pub fn validate(&self) -> Result<(), PduError> {
        if self.pfv != PFV_1_0 {
            return Err(PduError::UnsupportedParameter(8));
        }
        if self.cpda > MAX_PDA {
            return Err(PduError::InvalidField(10));
        }
        if self.maxh2cdata < MIN_MAXH2CDATA || self.maxh2cdata % 4 != 0 {
            return Err(PduError::InvalidField(12));
        }
        Ok(())
    }

    /// Encodes the 128 bytes; reserved fields are zero.
    pub fn encode(&self) -> [u8; IC_LEN] {
        let mut b = [0u8; IC_LEN];
        put_common(&mut b, PduType::ICResp, PduFlags::empty(), 0, IC_LEN as u32);
        put_le16(&mut b, 8, self.pfv);
        b[10] = self.cpda;
        b[11] = dgst(self.hdgst_enable, self.ddgst_enable);
        put_le32(&mut b, 12, self.maxh2cdata);
        b
    }
}

fn dgst(hdgst: bool, ddgst: bool) -> u8 {
    (if hdgst { HDGST_ENABLE } else { 0 }) | (if ddgst { DDGST_ENABLE } else { 0 })
}
