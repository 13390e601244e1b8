//! SNACK Request (RFC 7143 §11.16).

use super::bhs::{expect_opcode, header, BhsError, Opcode, BHS_LEN, FINAL_BIT};
use crate::wire::{array, be24, be32, put, put_be32};

const TYPE_MASK: u8 = 0x0F;

code_enum! {
    /// SNACK Type (RFC 7143 §11.16.1); four bits on the wire.
    pub enum SnackType: u8 {
        /// 0: Data/R2T SNACK.
        DataR2t = 0,
        /// 1: Status SNACK.
        Status = 1,
        /// 2: DataACK.
        DataAck = 2,
        /// 3: R-Data SNACK.
        RData = 3,
    }
}

/// SNACK Request (RFC 7143 §11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnackRequest {
    /// Type (§11.16.1).
    pub snack_type: SnackType,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength (0 per §11.16).
    pub data_segment_len: u32,
    /// LUN or reserved.
    pub lun: [u8; 8],
    /// Initiator Task Tag, or 0xffffffff.
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag (§11.16.2), or 0xffffffff.
    pub ttt_or_snack_tag: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun (§11.16.3).
    pub beg_run: u32,
    /// RunLength (§11.16.4).
    pub run_length: u32,
}

impl SnackRequest {
    /// Decodes a SNACK Request BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::SnackRequest)?;
        Ok(SnackRequest {
            snack_type: SnackType::from_code(b[1] & TYPE_MASK),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            ttt_or_snack_tag: be32(b, 20),
            exp_stat_sn: be32(b, 28),
            beg_run: be32(b, 40),
            run_length: be32(b, 44),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::SnackRequest,
            false,
            FINAL_BIT | (self.snack_type.code() & TYPE_MASK),
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.ttt_or_snack_tag);
        put_be32(&mut b, 28, self.exp_stat_sn);
        put_be32(&mut b, 40, self.beg_run);
        put_be32(&mut b, 44, self.run_length);
        b
    }
}
