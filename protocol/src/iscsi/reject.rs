//! Reject (RFC 7143 §11.17).

use super::bhs::{expect_opcode, header, BhsError, Opcode, BHS_LEN, FINAL_BIT};
use crate::wire::{be24, be32, put_be32};

code_enum! {
    /// Reject Reason codes (RFC 7143 §11.17.1).
    pub enum RejectReason: u8 {
        /// 0x01 Reserved; MUST NOT be sent.
        Reserved = 0x01,
        /// 0x02 Data (payload) digest error.
        DataDigestError = 0x02,
        /// 0x03 SNACK Reject.
        SnackReject = 0x03,
        /// 0x04 Protocol Error (e.g., SNACK for an already acknowledged
        /// status).
        ProtocolError = 0x04,
        /// 0x05 Command not supported.
        CommandNotSupported = 0x05,
        /// 0x06 Immediate command reject: too many immediate commands.
        ImmediateCommandReject = 0x06,
        /// 0x07 Task in progress.
        TaskInProgress = 0x07,
        /// 0x08 Invalid data ack.
        InvalidDataAck = 0x08,
        /// 0x09 Invalid PDU field.
        InvalidPduField = 0x09,
        /// 0x0a Long op reject: can't generate a Target Transfer Tag, out of
        /// resources.
        LongOpReject = 0x0a,
        /// 0x0b Deprecated; MUST NOT be sent.
        Deprecated = 0x0b,
        /// 0x0c Waiting for Logout.
        WaitingForLogout = 0x0c,
    }
}

/// Reject (RFC 7143 §11.17). Its data segment carries the complete header
/// of the rejected PDU (§11.17.3); the ITT field is always 0xffffffff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reject {
    /// Reason (§11.17.1).
    pub reason: RejectReason,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: the rejected header's length.
    pub data_segment_len: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN/R2TSN (§11.17.2), for a rejected SNACK.
    pub data_sn_or_r2t_sn: u32,
}

impl Reject {
    /// Decodes a Reject BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::Reject)?;
        Ok(Reject {
            reason: RejectReason::from_code(b[2]),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            data_sn_or_r2t_sn: be32(b, 36),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1, ITT 0xffffffff.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::Reject,
            false,
            FINAL_BIT,
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[2] = self.reason.code();
        put_be32(&mut b, 16, 0xFFFF_FFFF);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        put_be32(&mut b, 36, self.data_sn_or_r2t_sn);
        b
    }
}
