//! iSCSI wire formats (RFC 7143).
//!
//! - [`bhs`]: the 48-byte Basic Header Segment, [`Opcode`], PDU length.
//! - Typed headers, each with `parse(&[u8; 48])` and `encode() -> [u8; 48]`:
//!   [`NopOut`], [`NopIn`], [`ScsiCommand`], [`ScsiResponse`],
//!   [`TaskMgmtRequest`], [`TaskMgmtResponse`], [`DataOut`], [`DataIn`],
//!   [`R2t`], [`AsyncMessage`], [`TextRequest`], [`TextResponse`],
//!   [`LoginRequest`], [`LoginResponse`], [`LogoutRequest`],
//!   [`LogoutResponse`], [`SnackRequest`], [`Reject`]; [`Pdu`] dispatches
//!   on the opcode.
//! - [`text`]: login/text `key=value` data.
//! - [`digest`]: CRC32C digests and padding.
//!
//! Decoders ignore reserved fields and encoders write them as zero, as RFC
//! 7143 asks of receivers and senders.
//! Bit fields fixed by the RFC (F in single-PDU messages, I in Login
//! Requests, ITT 0xffffffff in Reject and Asynchronous Message) are set by
//! the encoders and not stored.

pub mod bhs;
pub mod chap;
pub mod digest;
pub mod login_fsm;
mod negotiator;
pub mod params;
mod send_targets;
pub mod sequence;
pub mod text;

mod async_msg;
mod data;
mod login;
mod logout;
mod nop;
mod pdu;
mod reject;
mod scsi;
mod snack;
mod task_mgmt;
mod text_pdu;

pub use async_msg::{AsyncEvent, AsyncMessage};
pub use bhs::{pdu_len, Bhs, BhsError, Opcode, BHS_LEN, MAX_DATA_SEGMENT_LEN};
pub use data::{DataIn, DataOut, R2t};
pub use login::{LoginRequest, LoginResponse, LoginStatus, Stage};
pub use logout::{LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode};
pub use nop::{NopIn, NopOut};
pub use pdu::Pdu;
pub use reject::{Reject, RejectReason};
pub use scsi::{response, ScsiCommand, ScsiResponse, TaskAttribute};
pub use snack::{SnackRequest, SnackType};
pub use task_mgmt::{
    abort_task_reaches, abort_task_response, TaskMgmtFunction, TaskMgmtRequest, TaskMgmtResponse,
    TaskMgmtResponseCode,
};
pub use text_pdu::{TextRequest, TextResponse};

/// The reserved tag value 0xffffffff (RFC 7143 §11.2.1.8, §11.7.2).
pub const RESERVED_TAG: u32 = 0xFFFF_FFFF;
