//! Dispatch from a BHS to its typed PDU (RFC 7143 §11).

use super::bhs::{BhsError, Opcode, BHS_LEN};
use super::{
    AsyncMessage, DataIn, DataOut, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse,
    NopIn, NopOut, R2t, Reject, ScsiCommand, ScsiResponse, SnackRequest, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse,
};

/// Any iSCSI PDU header, decoded according to its opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdu {
    /// NOP-Out (§11.18).
    NopOut(NopOut),
    /// SCSI Command (§11.3).
    ScsiCommand(ScsiCommand),
    /// Task Management Function Request (§11.5).
    TaskMgmtRequest(TaskMgmtRequest),
    /// Login Request (§11.12).
    LoginRequest(LoginRequest),
    /// Text Request (§11.10).
    TextRequest(TextRequest),
    /// SCSI Data-Out (§11.7).
    DataOut(DataOut),
    /// Logout Request (§11.14).
    LogoutRequest(LogoutRequest),
    /// SNACK Request (§11.16).
    SnackRequest(SnackRequest),
    /// NOP-In (§11.19).
    NopIn(NopIn),
    /// SCSI Response (§11.4).
    ScsiResponse(ScsiResponse),
    /// Task Management Function Response (§11.6).
    TaskMgmtResponse(TaskMgmtResponse),
    /// Login Response (§11.13).
    LoginResponse(LoginResponse),
    /// Text Response (§11.11).
    TextResponse(TextResponse),
    /// SCSI Data-In (§11.7).
    DataIn(DataIn),
    /// Logout Response (§11.15).
    LogoutResponse(LogoutResponse),
    /// R2T (§11.8).
    R2t(R2t),
    /// Asynchronous Message (§11.9).
    AsyncMessage(AsyncMessage),
    /// Reject (§11.17).
    Reject(Reject),
}

impl Pdu {
    /// Decodes a BHS into the typed PDU its opcode names.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        Ok(match Opcode::from_byte(b[0])? {
            Opcode::NopOut => Pdu::NopOut(NopOut::parse(b)?),
            Opcode::ScsiCommand => Pdu::ScsiCommand(ScsiCommand::parse(b)?),
            Opcode::TaskMgmtRequest => Pdu::TaskMgmtRequest(TaskMgmtRequest::parse(b)?),
            Opcode::LoginRequest => Pdu::LoginRequest(LoginRequest::parse(b)?),
            Opcode::TextRequest => Pdu::TextRequest(TextRequest::parse(b)?),
            Opcode::DataOut => Pdu::DataOut(DataOut::parse(b)?),
            Opcode::LogoutRequest => Pdu::LogoutRequest(LogoutRequest::parse(b)?),
            Opcode::SnackRequest => Pdu::SnackRequest(SnackRequest::parse(b)?),
            Opcode::NopIn => Pdu::NopIn(NopIn::parse(b)?),
            Opcode::ScsiResponse => Pdu::ScsiResponse(ScsiResponse::parse(b)?),
            Opcode::TaskMgmtResponse => Pdu::TaskMgmtResponse(TaskMgmtResponse::parse(b)?),
            Opcode::LoginResponse => Pdu::LoginResponse(LoginResponse::parse(b)?),
            Opcode::TextResponse => Pdu::TextResponse(TextResponse::parse(b)?),
            Opcode::DataIn => Pdu::DataIn(DataIn::parse(b)?),
            Opcode::LogoutResponse => Pdu::LogoutResponse(LogoutResponse::parse(b)?),
            Opcode::R2t => Pdu::R2t(R2t::parse(b)?),
            Opcode::AsyncMessage => Pdu::AsyncMessage(AsyncMessage::parse(b)?),
            Opcode::Reject => Pdu::Reject(Reject::parse(b)?),
        })
    }

    /// Encodes the BHS.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        match self {
            Pdu::NopOut(p) => p.encode(),
            Pdu::ScsiCommand(p) => p.encode(),
            Pdu::TaskMgmtRequest(p) => p.encode(),
            Pdu::LoginRequest(p) => p.encode(),
            Pdu::TextRequest(p) => p.encode(),
            Pdu::DataOut(p) => p.encode(),
            Pdu::LogoutRequest(p) => p.encode(),
            Pdu::SnackRequest(p) => p.encode(),
            Pdu::NopIn(p) => p.encode(),
            Pdu::ScsiResponse(p) => p.encode(),
            Pdu::TaskMgmtResponse(p) => p.encode(),
            Pdu::LoginResponse(p) => p.encode(),
            Pdu::TextResponse(p) => p.encode(),
            Pdu::DataIn(p) => p.encode(),
            Pdu::LogoutResponse(p) => p.encode(),
            Pdu::R2t(p) => p.encode(),
            Pdu::AsyncMessage(p) => p.encode(),
            Pdu::Reject(p) => p.encode(),
        }
    }

    /// The opcode of this PDU.
    pub fn opcode(&self) -> Opcode {
        match self {
            Pdu::NopOut(_) => Opcode::NopOut,
            Pdu::ScsiCommand(_) => Opcode::ScsiCommand,
            Pdu::TaskMgmtRequest(_) => Opcode::TaskMgmtRequest,
            Pdu::LoginRequest(_) => Opcode::LoginRequest,
            Pdu::TextRequest(_) => Opcode::TextRequest,
            Pdu::DataOut(_) => Opcode::DataOut,
            Pdu::LogoutRequest(_) => Opcode::LogoutRequest,
            Pdu::SnackRequest(_) => Opcode::SnackRequest,
            Pdu::NopIn(_) => Opcode::NopIn,
            Pdu::ScsiResponse(_) => Opcode::ScsiResponse,
            Pdu::TaskMgmtResponse(_) => Opcode::TaskMgmtResponse,
            Pdu::LoginResponse(_) => Opcode::LoginResponse,
            Pdu::TextResponse(_) => Opcode::TextResponse,
            Pdu::DataIn(_) => Opcode::DataIn,
            Pdu::LogoutResponse(_) => Opcode::LogoutResponse,
            Pdu::R2t(_) => Opcode::R2t,
            Pdu::AsyncMessage(_) => Opcode::AsyncMessage,
            Pdu::Reject(_) => Opcode::Reject,
        }
    }
}
