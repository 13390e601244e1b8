//! Login operational parameters and their negotiation (RFC 7143 §6.2,
//! §13; RFC 7145 for the iSER keys).
//!
//! [`SessionParams`] and [`ConnectionParams`] hold every operational key
//! with its RFC default. [`Negotiator`] answers the initiator's keys from a
//! [`TargetLoginConfig`]:
//!
//! | rule | keys |
//! | --- | --- |
//! | boolean OR | InitialR2T, DataPDUInOrder, DataSequenceInOrder |
//! | boolean AND | ImmediateData (IFMarker/OFMarker: always `No`, RDMAExtensions: always `No`) |
//! | numerical min | MaxConnections, MaxBurstLength, FirstBurstLength, MaxOutstandingR2T, DefaultTime2Retain, ErrorRecoveryLevel, iSCSIProtocolLevel |
//! | numerical max | DefaultTime2Wait |
//! | list | HeaderDigest, DataDigest, TaskReporting |
//! | declarative | MaxRecvDataSegmentLength (names and aliases: see `login_fsm`) |
//!
//! Invalid or out-of-range values are answered `Reject`, unknown keys
//! `NotUnderstood`, keys that do not apply `Irrelevant` (session-wide keys
//! in a discovery session, FirstBurstLength when InitialR2T=Yes and
//! ImmediateData=No, the iSER keys over TCP). A key negotiated twice in
//! one login is an initiator error.

use super::text::{max_value_len, TextError, MAX_KEY_LEN};

/// MaxRecvDataSegmentLength default, also the limit during login (RFC 7143
/// §13.12).
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;
/// Smallest valid MaxRecvDataSegmentLength / MaxBurstLength /
/// FirstBurstLength.
pub const MIN_LENGTH: u32 = 512;
/// Largest valid MaxRecvDataSegmentLength / MaxBurstLength /
/// FirstBurstLength (2^24 - 1).
pub const MAX_LENGTH: u32 = 16_777_215;
/// The iSCSIProtocolLevel of RFC 7143 (RFC 7144 §2.1).
pub const PROTOCOL_LEVEL: u64 = 1;

/// The answer `NotUnderstood`.
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
/// The answer `Irrelevant`.
pub const IRRELEVANT: &str = "Irrelevant";
/// The answer `Reject`.
pub const REJECT: &str = "Reject";

/// A header or data digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Digest {
    /// No digest.
    #[default]
    None,
    /// CRC32C.
    Crc32c,
}

impl Digest {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }

    /// Decodes a wire value.
    pub fn from_wire(v: &str) -> Option<Self> {
        match v {
            "None" => Some(Digest::None),
            "CRC32C" => Some(Digest::Crc32c),
            _ => None,
        }
    }
}

/// SessionType (RFC 7143 §13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionType {
    /// `Normal`.
    #[default]
    Normal,
    /// `Discovery`.
    Discovery,
}

impl SessionType {
    /// Decodes a wire value.
    pub fn from_wire(v: &str) -> Option<Self> {
        match v {
            "Normal" => Some(SessionType::Normal),
            "Discovery" => Some(SessionType::Discovery),
            _ => None,
        }
    }
}

/// Session-wide parameters (RFC 7143 §13), defaults per the RFC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// SessionType.
    pub session_type: SessionType,
    /// InitiatorName.
    pub initiator_name: String,
    /// InitiatorAlias.
    pub initiator_alias: Option<String>,
    /// TargetName (absent in discovery sessions that did not send it).
    pub target_name: Option<String>,
    /// TargetAlias we sent.
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag we sent.
    pub target_portal_group_tag: u16,
    /// MaxConnections (1).
    pub max_connections: u16,
    /// InitialR2T (Yes).
    pub initial_r2t: bool,
    /// ImmediateData (Yes).
    pub immediate_data: bool,
    /// MaxBurstLength (262144).
    pub max_burst_length: u32,
    /// FirstBurstLength (65536); never above `max_burst_length`.
    pub first_burst_length: u32,
    /// DefaultTime2Wait (2).
    pub default_time2wait: u16,
    /// DefaultTime2Retain (20).
    pub default_time2retain: u16,
    /// MaxOutstandingR2T (1).
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder (Yes).
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder (Yes).
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (0).
    pub error_recovery_level: u8,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target_name: None,
            target_alias: None,
            target_portal_group_tag: 1,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// Per-connection parameters (RFC 7143 §13.1, §13.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionParams {
    /// HeaderDigest (None).
    pub header_digest: Digest,
    /// DataDigest (None).
    pub data_digest: Digest,
    /// MaxRecvDataSegmentLength the initiator declared: the largest data
    /// segment the target may **send** (8192 by default).
    pub initiator_mrdsl: u32,
    /// MaxRecvDataSegmentLength the target declared: the largest data
    /// segment the target **accepts** (8192 if it never declared one).
    pub target_mrdsl: u32,
}

impl Default for ConnectionParams {
    fn default() -> Self {
        ConnectionParams {
            header_digest: Digest::None,
            data_digest: Digest::None,
            initiator_mrdsl: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            target_mrdsl: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
        }
    }
}

/// Session and connection parameters together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginParams {
    /// Session-wide keys.
    pub session: SessionParams,
    /// Connection keys.
    pub connection: ConnectionParams,
}

/// What the target offers and accepts in negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLoginConfig {
    /// MaxRecvDataSegmentLength the target declares (512..=2^24-1).
    pub max_recv_data_segment_length: u32,
    /// Largest MaxBurstLength accepted.
    pub max_burst_length: u32,
    /// Largest FirstBurstLength accepted (clamped to `max_burst_length`).
    pub first_burst_length: u32,
    /// ImmediateData the target wants (AND).
    pub immediate_data: bool,
    /// InitialR2T the target wants (OR).
    pub initial_r2t: bool,
    /// Largest MaxOutstandingR2T accepted.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder the target wants (OR).
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder the target wants (OR).
    pub data_sequence_in_order: bool,
    /// Accept HeaderDigest=CRC32C (None is always accepted).
    pub header_digest_crc32c: bool,
    /// Accept DataDigest=CRC32C (None is always accepted).
    pub data_digest_crc32c: bool,
    /// Highest ErrorRecoveryLevel supported.
    pub error_recovery_level: u8,
    /// Largest MaxConnections accepted.
    pub max_connections: u16,
    /// DefaultTime2Wait the target wants (max).
    pub default_time2wait: u16,
    /// DefaultTime2Retain the target allows (min).
    pub default_time2retain: u16,
    /// TargetAlias, unless the target's own [`TargetAuth`] alias overrides
    /// it.
    ///
    /// [`TargetAuth`]: super::login_fsm::TargetAuth
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag of the portal this connection arrived on.
    pub portal_group_tag: u16,
}

impl Default for TargetLoginConfig {
    fn default() -> Self {
        TargetLoginConfig {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 65_536,
            immediate_data: true,
            initial_r2t: false,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            header_digest_crc32c: true,
            data_digest_crc32c: true,
            error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            target_alias: None,
            portal_group_tag: 1,
        }
    }
}

impl TargetLoginConfig {
    /// The configuration with every value forced into its valid range
    /// (FirstBurstLength ≤ MaxBurstLength, lengths in 512..=2^24-1,
    /// counts ≥ 1, times ≤ 3600, ErrorRecoveryLevel ≤ 2).
    pub fn normalized(&self) -> Self {
        let mut c = self.clone();
        c.max_recv_data_segment_length =
            c.max_recv_data_segment_length.clamp(MIN_LENGTH, MAX_LENGTH);
        c.max_burst_length = c.max_burst_length.clamp(MIN_LENGTH, MAX_LENGTH);
        c.first_burst_length = c.first_burst_length.clamp(MIN_LENGTH, c.max_burst_length);
        c.max_outstanding_r2t = c.max_outstanding_r2t.max(1);
        c.max_connections = c.max_connections.max(1);
        c.default_time2wait = c.default_time2wait.min(3600);
        c.default_time2retain = c.default_time2retain.min(3600);
        c.error_recovery_level = c.error_recovery_level.min(2);
        c
    }
}

/// How a key is treated in login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// AuthMethod and the CHAP/SRP/Kerberos/SPKM keys: security stage only.
    Security,
    /// InitiatorName, InitiatorAlias, TargetName, SessionType: declared by
    /// the initiator, handled by the login state machine.
    Declaration,
    /// Keys only a target may send (TargetAlias, TargetAddress,
    /// TargetPortalGroupTag).
    TargetOnly,
    /// Everything else, answered by [`Negotiator`].
    Operational,
}

/// Classifies a key name.
pub fn classify(key: &str) -> KeyClass {
    match key {
        "AuthMethod" => KeyClass::Security,
        k if k.starts_with("CHAP_")
            || k.starts_with("SRP_")
            || k.starts_with("KRB_")
            || k.starts_with("SPKM_") =>
        {
            KeyClass::Security
        }
        "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType" => KeyClass::Declaration,
        "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => KeyClass::TargetOnly,
        _ => KeyClass::Operational,
    }
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_')
}

/// Splits a complete login/text data segment into `(key, value)` pairs.
///
/// Like [`super::text::parse`], but also accepts key names beginning with
/// a lower-case letter (`iSCSIProtocolLevel` of RFC 7144, `iSERHelloRequired`
/// of RFC 7145) and skips empty pairs (stray NULs some initiators pad
/// with).
pub fn split_pairs(data: &[u8]) -> Result<Vec<(&str, &str)>, TextError> {
    let mut pairs = Vec::new();
    let mut offset = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let nul = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or(TextError::Unterminated { offset })?;
        let (pair, tail) = rest.split_at(nul);
        let tail = tail.get(1..).unwrap_or_default();
        if !pair.is_empty() {
            let eq = pair
                .iter()
                .position(|&c| c == b'=')
                .ok_or(TextError::MissingEquals { offset })?;
            let (key, value) = pair.split_at(eq);
            let value = value.get(1..).unwrap_or_default();
            check_key(key, offset)?;
            let key = std::str::from_utf8(key).map_err(|_| TextError::NotUtf8 { offset })?;
            let value = std::str::from_utf8(value).map_err(|_| TextError::NotUtf8 { offset })?;
            let max = max_value_len(key);
            if value.len() > max {
                return Err(TextError::ValueTooLong {
                    offset,
                    len: value.len(),
                    max,
                });
            }
            pairs.push((key, value));
        }
        offset += nul + 1;
        rest = tail;
    }
    Ok(pairs)
}

fn check_key(key: &[u8], offset: usize) -> Result<(), TextError> {
    let Some((&first, rest)) = key.split_first() else {
        return Err(TextError::EmptyKey { offset });
    };
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong {
            offset,
            len: key.len(),
        });
    }
    let rest = match rest.split_first() {
        Some((b'#', tail)) if first == b'X' => tail,
        _ => rest,
    };
    if first.is_ascii_alphabetic() && rest.iter().all(|&c| is_label_char(c)) {
        Ok(())
    } else {
        Err(TextError::InvalidKey { offset })
    }
}

/// Encodes pairs as `key=value\0` text.
pub fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub use super::negotiator::Negotiator;
