//! Login Request and Login Response (RFC 7143 §11.12, §11.13).

use super::bhs::{expect_opcode, flag, header, BhsError, Opcode, BHS_LEN, FINAL_BIT};
use crate::wire::{array, be16, be24, be32, put, put_be16, put_be32};

/// T bit (Transit), bit 0 of byte 1 (§11.12.1).
const TRANSIT_BIT: u8 = FINAL_BIT;
/// C bit (Continue), bit 1 of byte 1 (§11.12.2).
const CONTINUE_BIT: u8 = 0x40;

/// A login stage, the CSG and NSG fields (RFC 7143 §11.12.3). Value 2 is
/// reserved and never decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Stage {
    /// 0: SecurityNegotiation.
    #[default]
    SecurityNegotiation,
    /// 1: LoginOperationalNegotiation.
    LoginOperationalNegotiation,
    /// 3: FullFeaturePhase.
    FullFeaturePhase,
}

impl Stage {
    /// Decodes a two-bit stage code.
    pub fn from_code(code: u8) -> Result<Self, BhsError> {
        match code & 0x03 {
            0 => Ok(Stage::SecurityNegotiation),
            1 => Ok(Stage::LoginOperationalNegotiation),
            3 => Ok(Stage::FullFeaturePhase),
            other => Err(BhsError::ReservedStage(other)),
        }
    }

    /// The two-bit wire value.
    pub const fn code(self) -> u8 {
        match self {
            Stage::SecurityNegotiation => 0,
            Stage::LoginOperationalNegotiation => 1,
            Stage::FullFeaturePhase => 3,
        }
    }
}

/// Decodes byte 1 of a Login PDU into (C, CSG, NSG-if-T).
fn decode_stages(byte1: u8) -> Result<(bool, Stage, Option<Stage>), BhsError> {
    let current = Stage::from_code(byte1 >> 2)?;
    // NSG is only meaningful with T set; otherwise it is reserved (§11.12.3).
    let next = if byte1 & TRANSIT_BIT != 0 {
        Some(Stage::from_code(byte1)?)
    } else {
        None
    };
    Ok((byte1 & CONTINUE_BIT != 0, current, next))
}

fn encode_stages(continue_bit: bool, current: Stage, next: Option<Stage>) -> u8 {
    let (transit, nsg) = match next {
        Some(stage) => (TRANSIT_BIT, stage.code()),
        None => (0, 0),
    };
    transit | flag(continue_bit, CONTINUE_BIT) | (current.code() << 2) | nsg
}

/// Login Request (RFC 7143 §11.12). The I bit is always 1 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginRequest {
    /// The T bit and NSG together: `Some(nsg)` when the initiator is ready
    /// to transit to `nsg` (§11.12.1, §11.12.3), `None` when T is 0.
    pub next_stage: Option<Stage>,
    /// C bit: the text continues in the next PDU (§11.12.2).
    pub continue_bit: bool,
    /// CSG (§11.12.3).
    pub current_stage: Stage,
    /// Version-max (§11.12.4).
    pub version_max: u8,
    /// Version-min (§11.12.5).
    pub version_min: u8,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: the login text.
    pub data_segment_len: u32,
    /// ISID (§11.12.5).
    pub isid: [u8; 6],
    /// TSIH (§11.12.6); 0 for a new session.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID (§11.12.7).
    pub cid: u16,
    /// CmdSN (§11.12.8).
    pub cmd_sn: u32,
    /// ExpStatSN (§11.12.9).
    pub exp_stat_sn: u32,
}

impl LoginRequest {
    /// The T bit (§11.12.1).
    pub fn transit(&self) -> bool {
        self.next_stage.is_some()
    }

    /// Decodes a Login Request BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::LoginRequest)?;
        let (continue_bit, current_stage, next_stage) = decode_stages(b[1])?;
        Ok(LoginRequest {
            next_stage,
            continue_bit,
            current_stage,
            version_max: b[2],
            version_min: b[3],
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            isid: array(b, 8),
            tsih: be16(b, 14),
            itt: be32(b, 16),
            cid: be16(b, 20),
            cmd_sn: be32(b, 24),
            exp_stat_sn: be32(b, 28),
        })
    }

    /// Encodes the BHS; reserved fields are zero, I is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::LoginRequest,
            true,
            encode_stages(self.continue_bit, self.current_stage, self.next_stage),
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[2] = self.version_max;
        b[3] = self.version_min;
        put(&mut b, 8, &self.isid);
        put_be16(&mut b, 14, self.tsih);
        put_be32(&mut b, 16, self.itt);
        put_be16(&mut b, 20, self.cid);
        put_be32(&mut b, 24, self.cmd_sn);
        put_be32(&mut b, 28, self.exp_stat_sn);
        b
    }
}

/// Login Status-Class and Status-Detail (RFC 7143 §11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LoginStatus {
    /// Status-Class: 0 success, 1 redirection, 2 initiator error, 3 target
    /// error.
    pub class: u8,
    /// Status-Detail.
    pub detail: u8,
}

impl LoginStatus {
    /// Builds a status from class and detail.
    pub const fn new(class: u8, detail: u8) -> Self {
        LoginStatus { class, detail }
    }

    /// Builds a status from the `0xCCDD` form used in §11.13.5.
    pub const fn from_code(code: u16) -> Self {
        let [class, detail] = code.to_be_bytes();
        LoginStatus { class, detail }
    }

    /// The `0xCCDD` form.
    pub const fn code(self) -> u16 {
        u16::from_be_bytes([self.class, self.detail])
    }

    /// Status-Class 0: the login may proceed.
    pub const fn is_success(self) -> bool {
        self.class == Self::CLASS_SUCCESS
    }

    /// Status-Class 0: Success.
    pub const CLASS_SUCCESS: u8 = 0x00;
    /// Status-Class 1: Redirection.
    pub const CLASS_REDIRECTION: u8 = 0x01;
    /// Status-Class 2: Initiator Error.
    pub const CLASS_INITIATOR_ERROR: u8 = 0x02;
    /// Status-Class 3: Target Error.
    pub const CLASS_TARGET_ERROR: u8 = 0x03;

    /// 0x0000 Success.
    pub const SUCCESS: Self = Self::from_code(0x0000);
    /// 0x0101 Target moved temporarily.
    pub const TARGET_MOVED_TEMPORARILY: Self = Self::from_code(0x0101);
    /// 0x0102 Target moved permanently.
    pub const TARGET_MOVED_PERMANENTLY: Self = Self::from_code(0x0102);
    /// 0x0200 Initiator error (miscellaneous).
    pub const INITIATOR_ERROR: Self = Self::from_code(0x0200);
    /// 0x0201 Authentication failure.
    pub const AUTHENTICATION_FAILURE: Self = Self::from_code(0x0201);
    /// 0x0202 Authorization failure.
    pub const AUTHORIZATION_FAILURE: Self = Self::from_code(0x0202);
    /// 0x0203 Not found.
    pub const NOT_FOUND: Self = Self::from_code(0x0203);
    /// 0x0204 Target removed.
    pub const TARGET_REMOVED: Self = Self::from_code(0x0204);
    /// 0x0205 Unsupported version.
    pub const UNSUPPORTED_VERSION: Self = Self::from_code(0x0205);
    /// 0x0206 Too many connections.
    pub const TOO_MANY_CONNECTIONS: Self = Self::from_code(0x0206);
    /// 0x0207 Missing parameter.
    pub const MISSING_PARAMETER: Self = Self::from_code(0x0207);
    /// 0x0208 Can't include in session.
    pub const CANT_INCLUDE_IN_SESSION: Self = Self::from_code(0x0208);
    /// 0x0209 Session type not supported.
    pub const SESSION_TYPE_NOT_SUPPORTED: Self = Self::from_code(0x0209);
    /// 0x020a Session does not exist.
    pub const SESSION_DOES_NOT_EXIST: Self = Self::from_code(0x020a);
    /// 0x020b Invalid request during login.
    pub const INVALID_DURING_LOGIN: Self = Self::from_code(0x020b);
    /// 0x0300 Target error (miscellaneous).
    pub const TARGET_ERROR: Self = Self::from_code(0x0300);
    /// 0x0301 Service unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self::from_code(0x0301);
    /// 0x0302 Out of resources.
    pub const OUT_OF_RESOURCES: Self = Self::from_code(0x0302);
}

/// Login Response (RFC 7143 §11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginResponse {
    /// The T bit and NSG together, as in [`LoginRequest::next_stage`]
    /// (§11.13.1).
    pub next_stage: Option<Stage>,
    /// C bit (§11.13.1).
    pub continue_bit: bool,
    /// CSG.
    pub current_stage: Stage,
    /// Version-max (§11.13.2).
    pub version_max: u8,
    /// Version-active (§11.13.3).
    pub version_active: u8,
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength: the login text.
    pub data_segment_len: u32,
    /// ISID, echoed from the request.
    pub isid: [u8; 6],
    /// TSIH (§11.13.4).
    pub tsih: u16,
    /// Initiator Task Tag, echoed from the request.
    pub itt: u32,
    /// StatSN (§11.13.4).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status-Class and Status-Detail (§11.13.5).
    pub status: LoginStatus,
}

impl LoginResponse {
    /// The T bit (§11.13.1).
    pub fn transit(&self) -> bool {
        self.next_stage.is_some()
    }

    /// Decodes a Login Response BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::LoginResponse)?;
        let (continue_bit, current_stage, next_stage) = decode_stages(b[1])?;
        Ok(LoginResponse {
            next_stage,
            continue_bit,
            current_stage,
            version_max: b[2],
            version_active: b[3],
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            isid: array(b, 8),
            tsih: be16(b, 14),
            itt: be32(b, 16),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
            status: LoginStatus::new(b[36], b[37]),
        })
    }

    /// Encodes the BHS; reserved fields are zero.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::LoginResponse,
            false,
            encode_stages(self.continue_bit, self.current_stage, self.next_stage),
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[2] = self.version_max;
        b[3] = self.version_active;
        put(&mut b, 8, &self.isid);
        put_be16(&mut b, 14, self.tsih);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        b[36] = self.status.class;
        b[37] = self.status.detail;
        b
    }
}
