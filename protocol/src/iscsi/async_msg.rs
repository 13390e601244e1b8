//! Asynchronous Message (RFC 7143 §11.9).

use super::bhs::{expect_opcode, header, BhsError, Opcode, BHS_LEN, FINAL_BIT};
use crate::wire::{array, be16, be24, be32, put, put_be16, put_be32};

code_enum! {
    /// AsyncEvent codes (RFC 7143 §11.9.1).
    pub enum AsyncEvent: u8 {
        /// 0: a SCSI asynchronous event; sense data in the data segment.
        ScsiEvent = 0,
        /// 1: the target requests a Logout.
        LogoutRequest = 1,
        /// 2: the target will drop the connection (CID in Parameter1).
        DropConnection = 2,
        /// 3: the target will drop all connections of the session.
        DropAllConnections = 3,
        /// 4: the target requests parameter renegotiation.
        Renegotiate = 4,
        /// 255: vendor-specific event.
        VendorSpecific = 255,
    }
}

/// Asynchronous Message (RFC 7143 §11.9). The ITT field is always
/// 0xffffffff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: sense data and iSCSI event data.
    pub data_segment_len: u32,
    /// LUN (valid for AsyncEvent 0).
    pub lun: [u8; 8],
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// AsyncEvent (§11.9.1).
    pub async_event: AsyncEvent,
    /// AsyncVCode (§11.9.2).
    pub async_vcode: u8,
    /// Parameter1.
    pub parameter1: u16,
    /// Parameter2.
    pub parameter2: u16,
    /// Parameter3.
    pub parameter3: u16,
}

impl AsyncMessage {
    /// Decodes an Asynchronous Message BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::AsyncMessage)?;
        Ok(AsyncMessage {
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            async_event: AsyncEvent::from_code(b[36]),
            async_vcode: b[37],
            parameter1: be16(b, 38),
            parameter2: be16(b, 40),
            parameter3: be16(b, 42),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1, ITT 0xffffffff.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::AsyncMessage,
            false,
            FINAL_BIT,
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, 0xFFFF_FFFF);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        b[36] = self.async_event.code();
        b[37] = self.async_vcode;
        put_be16(&mut b, 38, self.parameter1);
        put_be16(&mut b, 40, self.parameter2);
        put_be16(&mut b, 42, self.parameter3);
        b
    }
}
