//! SCSI Data-Out, SCSI Data-In and R2T (RFC 7143 §11.7, §11.8).

use super::bhs::{expect_opcode, flag, header, BhsError, Opcode, BHS_LEN, FINAL_BIT};
use crate::wire::{array, be24, be32, put, put_be32};

/// SCSI Data-Out (RFC 7143 §11.7): write payload from the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOut {
    /// F bit: last PDU of the unsolicited burst or of the R2T's (§11.7.1).
    pub final_bit: bool,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: the payload carried by this PDU.
    pub data_segment_len: u32,
    /// LUN (§11.7.4), echoed from the R2T.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (§11.7.2), 0xffffffff for unsolicited data.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN (§11.7.5).
    pub data_sn: u32,
    /// Buffer Offset (§11.7.6).
    pub buffer_offset: u32,
}

impl DataOut {
    /// Decodes a SCSI Data-Out BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::DataOut)?;
        Ok(DataOut {
            final_bit: b[1] & FINAL_BIT != 0,
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt: be32(b, 20),
            exp_stat_sn: be32(b, 28),
            data_sn: be32(b, 36),
            buffer_offset: be32(b, 40),
        })
    }

    /// Encodes the BHS; reserved fields are zero.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::DataOut,
            false,
            flag(self.final_bit, FINAL_BIT),
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.ttt);
        put_be32(&mut b, 28, self.exp_stat_sn);
        put_be32(&mut b, 36, self.data_sn);
        put_be32(&mut b, 40, self.buffer_offset);
        b
    }
}

const ACKNOWLEDGE_BIT: u8 = 0x40;
const RESIDUAL_OVERFLOW: u8 = 0x04;
const RESIDUAL_UNDERFLOW: u8 = 0x02;
const STATUS_BIT: u8 = 0x01;

/// SCSI Data-In (RFC 7143 §11.7): read payload from the target, optionally
/// carrying the command's status (phase collapse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataIn {
    /// F bit: last PDU of the sequence (§11.7.1).
    pub final_bit: bool,
    /// A bit: the target asks for a DataACK SNACK (§11.7.1).
    pub acknowledge: bool,
    /// O bit: residual overflow, valid with S (§11.7.1).
    pub residual_overflow: bool,
    /// U bit: residual underflow, valid with S.
    pub residual_underflow: bool,
    /// S bit: `status` and `stat_sn` are valid (§11.7.1).
    pub status_present: bool,
    /// SCSI status, valid with S (§11.7.3).
    pub status: u8,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: payload carried by this PDU.
    pub data_segment_len: u32,
    /// LUN (§11.7.4), required with A.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (§11.7.2), 0xffffffff unless A is set.
    pub ttt: u32,
    /// StatSN, valid with S.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN (§11.7.5).
    pub data_sn: u32,
    /// Buffer Offset (§11.7.6).
    pub buffer_offset: u32,
    /// Residual Count, valid with S (§11.7.7).
    pub residual_count: u32,
}

impl DataIn {
    /// Decodes a SCSI Data-In BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::DataIn)?;
        let flags = b[1];
        Ok(DataIn {
            final_bit: flags & FINAL_BIT != 0,
            acknowledge: flags & ACKNOWLEDGE_BIT != 0,
            residual_overflow: flags & RESIDUAL_OVERFLOW != 0,
            residual_underflow: flags & RESIDUAL_UNDERFLOW != 0,
            status_present: flags & STATUS_BIT != 0,
            status: b[3],
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt: be32(b, 20),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            data_sn: be32(b, 36),
            buffer_offset: be32(b, 40),
            residual_count: be32(b, 44),
        })
    }

    /// Encodes the BHS; reserved fields are zero.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let flags = flag(self.final_bit, FINAL_BIT)
            | flag(self.acknowledge, ACKNOWLEDGE_BIT)
            | flag(self.residual_overflow, RESIDUAL_OVERFLOW)
            | flag(self.residual_underflow, RESIDUAL_UNDERFLOW)
            | flag(self.status_present, STATUS_BIT);
        let mut b = header(
            Opcode::DataIn,
            false,
            flags,
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[3] = self.status;
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.ttt);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        put_be32(&mut b, 36, self.data_sn);
        put_be32(&mut b, 40, self.buffer_offset);
        put_be32(&mut b, 44, self.residual_count);
        b
    }
}

/// Ready To Transfer (RFC 7143 §11.8): the target solicits write data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    /// TotalAHSLength in 4-byte words (0 per §11.8).
    pub total_ahs_len: u8,
    /// DataSegmentLength (0 per §11.8).
    pub data_segment_len: u32,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (§11.8.4), echoed in the answering Data-Out.
    pub ttt: u32,
    /// StatSN: the next StatSN, not advanced (§11.8).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN (§11.8.1).
    pub r2t_sn: u32,
    /// Buffer Offset (§11.8.2).
    pub buffer_offset: u32,
    /// Desired Data Transfer Length (§11.8.3).
    pub desired_data_transfer_len: u32,
}

impl R2t {
    /// Decodes an R2T BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::R2t)?;
        Ok(R2t {
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt: be32(b, 20),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            r2t_sn: be32(b, 36),
            buffer_offset: be32(b, 40),
            desired_data_transfer_len: be32(b, 44),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::R2t,
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
        put_be32(&mut b, 36, self.r2t_sn);
        put_be32(&mut b, 40, self.buffer_offset);
        put_be32(&mut b, 44, self.desired_data_transfer_len);
        b
    }
}
