//! NOP-Out and NOP-In (RFC 7143 §11.18, §11.19).

use super::bhs::{expect_opcode, header, BhsError, Opcode, BHS_LEN, FINAL_BIT, IMMEDIATE_BIT};
use crate::wire::{array, be24, be32, put, put_be32};

/// NOP-Out (RFC 7143 §11.18): a ping from the initiator, or its answer to
/// a target's NOP-In.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopOut {
    /// I bit (§11.2.1.1).
    pub immediate: bool,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength (24 bits): ping data.
    pub data_segment_len: u32,
    /// LUN (§11.18.2 with TTT != 0xffffffff echoes the NOP-In's).
    pub lun: [u8; 8],
    /// Initiator Task Tag; 0xffffffff when answering a NOP-In (§11.18.3).
    pub itt: u32,
    /// Target Transfer Tag (§11.18.4); 0xffffffff for an initiator ping.
    pub ttt: u32,
    /// CmdSN (§11.18.1).
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl NopOut {
    /// Decodes a NOP-Out BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::NopOut)?;
        Ok(NopOut {
            immediate: b[0] & IMMEDIATE_BIT != 0,
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt: be32(b, 20),
            cmd_sn: be32(b, 24),
            exp_stat_sn: be32(b, 28),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::NopOut,
            self.immediate,
            FINAL_BIT,
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

/// NOP-In (RFC 7143 §11.19): the target's answer to a NOP-Out, or its own
/// ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopIn {
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength (24 bits).
    pub data_segment_len: u32,
    /// LUN (§11.19.3).
    pub lun: [u8; 8],
    /// Initiator Task Tag; 0xffffffff for a target ping.
    pub itt: u32,
    /// Target Transfer Tag (§11.19.1); 0xffffffff when no answer is wanted.
    pub ttt: u32,
    /// StatSN (§11.19.2).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl NopIn {
    /// Decodes a NOP-In BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::NopIn)?;
        Ok(NopIn {
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

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::NopIn,
            false,
            FINAL_BIT,
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
