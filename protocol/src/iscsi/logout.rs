//! Logout Request and Logout Response (RFC 7143 §11.14, §11.15).

use super::bhs::{expect_opcode, header, BhsError, Opcode, BHS_LEN, FINAL_BIT, IMMEDIATE_BIT};
use crate::wire::{be16, be24, be32, put_be16, put_be32};

const REASON_MASK: u8 = 0x7F;

code_enum! {
    /// Logout Reason Code (RFC 7143 §11.14.1).
    pub enum LogoutReason: u8 {
        /// Close the session.
        CloseSession = 0,
        /// Close the connection.
        CloseConnection = 1,
        /// Remove the connection for recovery.
        RemoveConnectionForRecovery = 2,
    }
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutRequest {
    /// I bit (§11.2.1.1).
    pub immediate: bool,
    /// Reason Code (§11.14.1); seven bits on the wire.
    pub reason: LogoutReason,
    /// TotalAHSLength in 4-byte words (0 per §11.14).
    pub total_ahs_len: u8,
    /// DataSegmentLength (0 per §11.14).
    pub data_segment_len: u32,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID of the connection to close (§11.14.3).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl LogoutRequest {
    /// Decodes a Logout Request BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::LogoutRequest)?;
        Ok(LogoutRequest {
            immediate: b[0] & IMMEDIATE_BIT != 0,
            reason: LogoutReason::from_code(b[1] & REASON_MASK),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            itt: be32(b, 16),
            cid: be16(b, 20),
            cmd_sn: be32(b, 24),
            exp_stat_sn: be32(b, 28),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::LogoutRequest,
            self.immediate,
            FINAL_BIT | (self.reason.code() & REASON_MASK),
            self.total_ahs_len,
            self.data_segment_len,
        );
        put_be32(&mut b, 16, self.itt);
        put_be16(&mut b, 20, self.cid);
        put_be32(&mut b, 24, self.cmd_sn);
        put_be32(&mut b, 28, self.exp_stat_sn);
        b
    }
}

code_enum! {
    /// Logout Response codes (RFC 7143 §11.15.1).
    pub enum LogoutResponseCode: u8 {
        /// Connection or session closed successfully.
        ClosedSuccessfully = 0,
        /// CID not found.
        CidNotFound = 1,
        /// Connection recovery is not supported.
        RecoveryNotSupported = 2,
        /// Cleanup failed for various reasons.
        CleanupFailed = 3,
    }
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutResponse {
    /// Response (§11.15.1).
    pub response: LogoutResponseCode,
    /// TotalAHSLength in 4-byte words (0 per §11.15).
    pub total_ahs_len: u8,
    /// DataSegmentLength (0 per §11.15).
    pub data_segment_len: u32,
    /// Initiator Task Tag, echoed.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Time2Wait in seconds (§11.15.2).
    pub time2wait: u16,
    /// Time2Retain in seconds (§11.15.3).
    pub time2retain: u16,
}

impl LogoutResponse {
    /// Decodes a Logout Response BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::LogoutResponse)?;
        Ok(LogoutResponse {
            response: LogoutResponseCode::from_code(b[2]),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            itt: be32(b, 16),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            time2wait: be16(b, 40),
            time2retain: be16(b, 42),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::LogoutResponse,
            false,
            FINAL_BIT,
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[2] = self.response.code();
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        put_be16(&mut b, 40, self.time2wait);
        put_be16(&mut b, 42, self.time2retain);
        b
    }
}
