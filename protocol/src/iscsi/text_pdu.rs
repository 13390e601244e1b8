//! Text Request and Text Response (RFC 7143 §11.10, §11.11).

use super::bhs::{
    expect_opcode, flag, header, BhsError, Opcode, BHS_LEN, FINAL_BIT, IMMEDIATE_BIT,
};
use crate::wire::{array, be24, be32, put, put_be32};

/// C bit (Continue), bit 1 of byte 1 (§11.10.2).
const CONTINUE_BIT: u8 = 0x40;

/// Text Request (RFC 7143 §11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRequest {
    /// I bit (§11.2.1.1).
    pub immediate: bool,
    /// F bit: last PDU of the request (§11.10.1).
    pub final_bit: bool,
    /// C bit: a key=value pair continues in the next PDU (§11.10.2).
    pub continue_bit: bool,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: the text.
    pub data_segment_len: u32,
    /// LUN or reserved.
    pub lun: [u8; 8],
    /// Initiator Task Tag (§11.10.3).
    pub itt: u32,
    /// Target Transfer Tag (§11.10.4); 0xffffffff starts a new request.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl TextRequest {
    /// Decodes a Text Request BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::TextRequest)?;
        Ok(TextRequest {
            immediate: b[0] & IMMEDIATE_BIT != 0,
            final_bit: b[1] & FINAL_BIT != 0,
            continue_bit: b[1] & CONTINUE_BIT != 0,
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt: be32(b, 20),
            cmd_sn: be32(b, 24),
            exp_stat_sn: be32(b, 28),
        })
    }

    /// Encodes the BHS; reserved fields are zero.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::TextRequest,
            self.immediate,
            flag(self.final_bit, FINAL_BIT) | flag(self.continue_bit, CONTINUE_BIT),
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.ttt);
        put_be32(&mut b, 24, self.cmd_sn);
        put_be32(&mut b, 28, self.exp_stat_sn);
        b
    }
}

/// Text Response (RFC 7143 §11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextResponse {
    /// F bit: the response is complete (§11.11.1).
    pub final_bit: bool,
    /// C bit: a key=value pair continues in the next PDU (§11.11.2).
    pub continue_bit: bool,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: the text.
    pub data_segment_len: u32,
    /// LUN or reserved.
    pub lun: [u8; 8],
    /// Initiator Task Tag, echoed.
    pub itt: u32,
    /// Target Transfer Tag (§11.11.4); 0xffffffff when final.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl TextResponse {
    /// Decodes a Text Response BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::TextResponse)?;
        Ok(TextResponse {
            final_bit: b[1] & FINAL_BIT != 0,
            continue_bit: b[1] & CONTINUE_BIT != 0,
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt: be32(b, 20),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
        })
    }

    /// Encodes the BHS; reserved fields are zero.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::TextResponse,
            false,
            flag(self.final_bit, FINAL_BIT) | flag(self.continue_bit, CONTINUE_BIT),
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.ttt);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        b
    }
}
