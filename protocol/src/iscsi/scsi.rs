//! SCSI Command and SCSI Response (RFC 7143 §11.3, §11.4).

use super::bhs::{
    expect_opcode, flag, header, BhsError, Opcode, BHS_LEN, FINAL_BIT, IMMEDIATE_BIT,
};
use crate::wire::{array, be24, be32, put, put_be32};

const READ_BIT: u8 = 0x40;
const WRITE_BIT: u8 = 0x20;
const ATTR_MASK: u8 = 0x07;

code_enum! {
    /// Task attribute, the ATTR bits of a SCSI Command (RFC 7143 §11.3.1;
    /// SAM). Codes 5-7 are reserved.
    pub enum TaskAttribute: u8 {
        /// Untagged (treated as Simple).
        Untagged = 0,
        /// SIMPLE.
        Simple = 1,
        /// ORDERED.
        Ordered = 2,
        /// HEAD OF QUEUE.
        HeadOfQueue = 3,
        /// ACA.
        Aca = 4,
    }
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCommand {
    /// I bit (§11.2.1.1).
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows (§11.3.1).
    pub final_bit: bool,
    /// R bit: data is expected from the target (§11.3.1).
    pub read: bool,
    /// W bit: data is expected from the initiator (§11.3.1).
    pub write: bool,
    /// ATTR (§11.3.1).
    pub attr: TaskAttribute,
    /// TotalAHSLength in 4-byte words (extended CDB / bidi AHS).
    pub total_ahs_len: u8,
    /// DataSegmentLength: immediate data (§11.3.4).
    pub data_segment_len: u32,
    /// Logical Unit Number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length (§11.3.5).
    pub expected_data_transfer_len: u32,
    /// CmdSN (§11.3.6).
    pub cmd_sn: u32,
    /// ExpStatSN (§11.3.7).
    pub exp_stat_sn: u32,
    /// The first 16 bytes of the CDB (§11.3.8).
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    /// Decodes a SCSI Command BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::ScsiCommand)?;
        let flags = b[1];
        Ok(ScsiCommand {
            immediate: b[0] & IMMEDIATE_BIT != 0,
            final_bit: flags & FINAL_BIT != 0,
            read: flags & READ_BIT != 0,
            write: flags & WRITE_BIT != 0,
            attr: TaskAttribute::from_code(flags & ATTR_MASK),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            expected_data_transfer_len: be32(b, 20),
            cmd_sn: be32(b, 24),
            exp_stat_sn: be32(b, 28),
            cdb: array(b, 32),
        })
    }

    /// Encodes the BHS; reserved fields are zero.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let flags = flag(self.final_bit, FINAL_BIT)
            | flag(self.read, READ_BIT)
            | flag(self.write, WRITE_BIT)
            | (self.attr.code() & ATTR_MASK);
        let mut b = header(
            Opcode::ScsiCommand,
            self.immediate,
            flags,
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.expected_data_transfer_len);
        put_be32(&mut b, 24, self.cmd_sn);
        put_be32(&mut b, 28, self.exp_stat_sn);
        put(&mut b, 32, &self.cdb);
        b
    }
}

/// iSCSI Response codes of a SCSI Response (RFC 7143 §11.4.3).
pub mod response {
    /// Command Completed at Target.
    pub const COMMAND_COMPLETED: u8 = 0x00;
    /// Target Failure.
    pub const TARGET_FAILURE: u8 = 0x01;
}

const BIDI_OVERFLOW: u8 = 0x10;
const BIDI_UNDERFLOW: u8 = 0x08;
const RESIDUAL_OVERFLOW: u8 = 0x04;
const RESIDUAL_UNDERFLOW: u8 = 0x02;

/// SCSI Response (RFC 7143 §11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    /// o bit: Bidirectional Read Residual Overflow (§11.4.1).
    pub bidi_read_residual_overflow: bool,
    /// u bit: Bidirectional Read Residual Underflow.
    pub bidi_read_residual_underflow: bool,
    /// O bit: Residual Overflow.
    pub residual_overflow: bool,
    /// U bit: Residual Underflow.
    pub residual_underflow: bool,
    /// Response (§11.4.3), see [`response`].
    pub response: u8,
    /// SCSI status (§11.4.2).
    pub status: u8,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: sense or response data (§11.4.7).
    pub data_segment_len: u32,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (§11.4.4).
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// ExpDataSN (§11.4.6).
    pub exp_data_sn: u32,
    /// Bidirectional Read Residual Count (§11.4.5).
    pub bidi_read_residual_count: u32,
    /// Residual Count (§11.4.5).
    pub residual_count: u32,
}

impl ScsiResponse {
    /// Decodes a SCSI Response BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::ScsiResponse)?;
        let flags = b[1];
        Ok(ScsiResponse {
            bidi_read_residual_overflow: flags & BIDI_OVERFLOW != 0,
            bidi_read_residual_underflow: flags & BIDI_UNDERFLOW != 0,
            residual_overflow: flags & RESIDUAL_OVERFLOW != 0,
            residual_underflow: flags & RESIDUAL_UNDERFLOW != 0,
            response: b[2],
            status: b[3],
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            itt: be32(b, 16),
            snack_tag: be32(b, 20),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            exp_data_sn: be32(b, 36),
            bidi_read_residual_count: be32(b, 40),
            residual_count: be32(b, 44),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let flags = FINAL_BIT
            | flag(self.bidi_read_residual_overflow, BIDI_OVERFLOW)
            | flag(self.bidi_read_residual_underflow, BIDI_UNDERFLOW)
            | flag(self.residual_overflow, RESIDUAL_OVERFLOW)
            | flag(self.residual_underflow, RESIDUAL_UNDERFLOW);
        let mut b = header(
            Opcode::ScsiResponse,
            false,
            flags,
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[2] = self.response;
        b[3] = self.status;
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.snack_tag);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        put_be32(&mut b, 36, self.exp_data_sn);
        put_be32(&mut b, 40, self.bidi_read_residual_count);
        put_be32(&mut b, 44, self.residual_count);
        b
    }
}
