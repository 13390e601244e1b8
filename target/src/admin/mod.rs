//! The admin API: JSON-RPC 2.0 over a Unix socket (mode 0600), one
//! request per line, one response per line. Long operations (creating a
//! preallocated volume) send `progress` notifications before the response.
//!
//! - [`server`]: the socket, framing and the JSON-RPC envelope.
//! - [`methods`]: the operations (`volume.add`, `iscsi.lun.remove`, ...);
//!   every change goes through `live` (validate, open, persist, apply).
//! - [`client`]: what `zctarget ctl` uses to call them.

pub mod client;
pub mod methods;
pub mod server;

/// A JSON-RPC error: code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// JSON-RPC error code (negative: protocol; positive: ours).
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
}

impl RpcError {
    /// Parse error (-32700).
    pub const PARSE: i64 = -32700;
    /// Invalid request (-32600).
    pub const INVALID_REQUEST: i64 = -32600;
    /// Method not found (-32601).
    pub const NO_METHOD: i64 = -32601;
    /// Invalid params (-32602).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The object named does not exist.
    pub const NOT_FOUND: i64 = 1;
    /// Refused: already exists, or in use (retry with force).
    pub const REFUSED: i64 = 2;
    /// The resulting configuration would be invalid.
    pub const INVALID_CONFIG: i64 = 3;
    /// A volume could not be created or opened.
    pub const VOLUME: i64 = 4;
    /// The configuration file could not be written.
    pub const PERSIST: i64 = 5;

    /// An error with `code`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Invalid params.
    pub fn params(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_PARAMS, message)
    }

    /// Not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Self::NOT_FOUND, message)
    }

    /// Refused.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Self::REFUSED, message)
    }
}

impl From<crate::live::ChangeError> for RpcError {
    fn from(e: crate::live::ChangeError) -> Self {
        use crate::live::ChangeError as E;
        let code = match &e {
            E::Invalid(_) => Self::INVALID_CONFIG,
            E::Volume(_) => Self::VOLUME,
            E::Persist(_) => Self::PERSIST,
        };
        Self::new(code, e.to_string())
    }
}
