//! Target side of CHAP authentication (RFC 7143 §12.1.3, RFC 1994).
//!
//! The exchange, as the Linux initiator and libiscsi run it:
//!
//! 1. initiator `AuthMethod=CHAP,None` → target `AuthMethod=CHAP`
//!    ([`select_auth_method`]);
//! 2. initiator `CHAP_A=5` (or a list such as `7,6,5`) → target
//!    `CHAP_A=5`, `CHAP_I=<id>`, `CHAP_C=0x<challenge>`
//!    ([`ChapServer::select_algorithm`]);
//! 3. initiator `CHAP_N=<name>`, `CHAP_R=<response>` and, for mutual CHAP,
//!    `CHAP_I` + `CHAP_C` of its own → target checks
//!    `CHAP_R == MD5(id || secret || challenge)` and, for mutual CHAP,
//!    answers `CHAP_N` + `CHAP_R` ([`ChapServer::verify`]).
//!
//! Only MD5 (`CHAP_A=5`) is implemented. The module is sans-IO: the
//! identifier and challenge come from caller-provided random bytes.

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

use super::login::LoginStatus;

/// `CHAP_A` value of CHAP with MD5 (RFC 1994, IANA PPP authentication
/// algorithms).
pub const CHAP_MD5: u8 = 5;

/// Length of an MD5 CHAP response.
pub const MD5_RESPONSE_LEN: usize = 16;

/// Length of the challenge the target sends (at least the hash length, as
/// RFC 7143 §12.1.3 recommends).
pub const CHAP_CHALLENGE_LEN: usize = 16;

/// Random bytes a CHAP exchange consumes: one for `CHAP_I`, the rest for
/// `CHAP_C`.
pub const CHAP_ENTROPY_LEN: usize = 1 + CHAP_CHALLENGE_LEN;

/// Longest challenge accepted from an initiator, in bytes (RFC 7143
/// §12.1.3: CHAP_C is at most 1024 bytes).
pub const MAX_CHALLENGE_LEN: usize = 1024;

/// A CHAP user name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The `CHAP_N` value.
    pub username: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl Credentials {
    /// Credentials from a user name and a secret.
    pub fn new(username: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Credentials {
            username: username.into(),
            secret: secret.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why CHAP authentication failed. Every variant ends the login with
/// [`LoginStatus::AUTHENTICATION_FAILURE`] (see [`ChapError::status`]); the
/// variants exist for logs and tests, never for the initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    /// The target requires CHAP and the initiator did not offer it, or the
    /// target has no credentials and the initiator offered only CHAP.
    #[error("no acceptable AuthMethod")]
    NoAcceptableMethod,
    /// `CHAP_A` lists no algorithm the target implements (MD5).
    #[error("no acceptable CHAP algorithm")]
    NoAcceptableAlgorithm,
    /// A CHAP key arrived at the wrong point of the exchange.
    #[error("CHAP key out of sequence")]
    OutOfSequence,
    /// `CHAP_N` or `CHAP_R` is missing from the response.
    #[error("CHAP_N or CHAP_R missing")]
    MissingResponse,
    /// A binary value is neither `0x` hex nor `0b` base64, or is empty.
    #[error("malformed CHAP binary value")]
    BadEncoding,
    /// `CHAP_I` is not a number in 0..=255.
    #[error("malformed CHAP_I")]
    BadIdentifier,
    /// `CHAP_N` or `CHAP_R` does not match the configured credentials.
    #[error("CHAP name or response mismatch")]
    Mismatch,
    /// The initiator asked for mutual CHAP and none is configured, or the
    /// target requires mutual CHAP and the initiator did not ask for it.
    #[error("mutual CHAP mismatch")]
    MutualMismatch,
    /// `CHAP_I` without `CHAP_C` or the reverse.
    #[error("CHAP_I and CHAP_C must come together")]
    IncompleteMutual,
    /// The initiator's challenge equals the target's (reflection attack).
    #[error("initiator reflected the target's challenge")]
    Reflection,
    /// The initiator's challenge is over [`MAX_CHALLENGE_LEN`] bytes.
    #[error("CHAP_C too long")]
    ChallengeTooLong,
}

impl ChapError {
    /// The login status to reject with.
    pub const fn status(self) -> LoginStatus {
        LoginStatus::AUTHENTICATION_FAILURE
    }
}

/// The result of `AuthMethod` negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication.
    None,
    /// CHAP.
    Chap,
}

impl AuthMethod {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "None",
            AuthMethod::Chap => "CHAP",
        }
    }
}

/// Picks the authentication method from the initiator's `AuthMethod` list:
/// CHAP when the target has credentials configured (authentication is then
/// required), else None.
pub fn select_auth_method(offer: &str, chap_configured: bool) -> Result<AuthMethod, ChapError> {
    let wanted = if chap_configured {
        AuthMethod::Chap
    } else {
        AuthMethod::None
    };
    if offer.split(',').any(|v| v == wanted.as_str()) {
        Ok(wanted)
    } else {
        Err(ChapError::NoAcceptableMethod)
    }
}

/// True if the `CHAP_A` list contains MD5.
pub fn offers_md5(chap_a: &str) -> bool {
    chap_a
        .split(',')
        .any(|v| parse_number(v) == Some(u64::from(CHAP_MD5)))
}

/// `MD5(id || secret || challenge)` (RFC 1994 §4.1).
pub fn chap_md5(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; MD5_RESPONSE_LEN] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Encodes bytes as a `0x` hex binary value (lower case).
pub fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            s.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn b64_val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes a binary value (RFC 7143 §6.1 hex-constant / base64-constant):
/// `0x`/`0X` then hex digits (an odd count has an implied leading zero),
/// or `0b`/`0B` then base64 (RFC 4648, `=` padding optional). Empty
/// values are refused.
pub fn decode_binary(value: &str) -> Result<Vec<u8>, ChapError> {
    let bytes = value.as_bytes();
    let (prefix, body) = (bytes.get(..2), bytes.get(2..).unwrap_or_default());
    if body.is_empty() {
        return Err(ChapError::BadEncoding);
    }
    match prefix {
        Some(b"0x" | b"0X") => decode_hex(body),
        Some(b"0b" | b"0B") => decode_base64(body),
        _ => Err(ChapError::BadEncoding),
    }
}

fn decode_hex(body: &[u8]) -> Result<Vec<u8>, ChapError> {
    let mut out = Vec::with_capacity(body.len() / 2 + 1);
    let mut digits = body
        .iter()
        .map(|&c| hex_val(c).ok_or(ChapError::BadEncoding));
    if body.len() % 2 == 1 {
        if let Some(d) = digits.next() {
            out.push(d?);
        }
    }
    while let Some(hi) = digits.next() {
        let lo = digits.next().ok_or(ChapError::BadEncoding)?;
        out.push((hi? << 4) | lo?);
    }
    Ok(out)
}

fn decode_base64(body: &[u8]) -> Result<Vec<u8>, ChapError> {
    let trimmed_len = body.iter().rposition(|&c| c != b'=').map_or(0, |p| p + 1);
    let (data, pad) = body.split_at(trimmed_len);
    if pad.len() > 2 || data.is_empty() {
        return Err(ChapError::BadEncoding);
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in data {
        acc = (acc << 6) | u32::from(b64_val(c).ok_or(ChapError::BadEncoding)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing sextet cannot encode a byte; leftover bits must be 0.
    if bits >= 6 || acc != 0 {
        return Err(ChapError::BadEncoding);
    }
    Ok(out)
}

/// Parses a numeric value: decimal, or `0x` hex (RFC 7143 §6.1
/// numerical-value). `None` if malformed or over `u64`.
pub(crate) fn parse_number(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    match b.get(..2) {
        Some(b"0x" | b"0X") => {
            let digits = b.get(2..)?;
            if digits.is_empty() || digits.len() > 16 {
                return None;
            }
            digits
                .iter()
                .try_fold(0u64, |acc, &c| Some((acc << 4) | u64::from(hex_val(c)?)))
        }
        _ => {
            if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            v.parse().ok()
        }
    }
}

/// The keys of the initiator's CHAP response step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChapResponse<'a> {
    /// `CHAP_N`.
    pub name: Option<&'a str>,
    /// `CHAP_R`.
    pub response: Option<&'a str>,
    /// `CHAP_I` (mutual CHAP).
    pub mutual_id: Option<&'a str>,
    /// `CHAP_C` (mutual CHAP).
    pub mutual_challenge: Option<&'a str>,
}

impl ChapResponse<'_> {
    /// True if any key is present.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.response.is_none()
            && self.mutual_id.is_none()
            && self.mutual_challenge.is_none()
    }
}

#[derive(Clone)]
enum ChapState {
    AwaitAlgorithm,
    AwaitResponse { id: u8, challenge: Vec<u8> },
    Done,
    Failed,
}

/// The target side of one CHAP exchange.
#[derive(Clone)]
pub struct ChapServer {
    creds: Credentials,
    mutual: Option<Credentials>,
    state: ChapState,
}

impl std::fmt::Debug for ChapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            ChapState::AwaitAlgorithm => "AwaitAlgorithm",
            ChapState::AwaitResponse { .. } => "AwaitResponse",
            ChapState::Done => "Done",
            ChapState::Failed => "Failed",
        };
        f.debug_struct("ChapServer")
            .field("creds", &self.creds)
            .field("mutual", &self.mutual)
            .field("state", &state)
            .finish()
    }
}

impl ChapServer {
    /// A server checking `creds`; with `mutual`, the initiator must also
    /// authenticate the target (mutual CHAP is then required).
    pub fn new(creds: Credentials, mutual: Option<Credentials>) -> Self {
        ChapServer {
            creds,
            mutual,
            state: ChapState::AwaitAlgorithm,
        }
    }

    /// True once the initiator (and, for mutual CHAP, the target) is
    /// authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ChapState::Done)
    }

    /// True while waiting for `CHAP_A`.
    pub fn awaits_algorithm(&self) -> bool {
        matches!(self.state, ChapState::AwaitAlgorithm)
    }

    /// Handles `CHAP_A`: returns the `CHAP_A`, `CHAP_I` and `CHAP_C` pairs
    /// to send. `entropy[0]` is the identifier, the rest the challenge.
    pub fn select_algorithm(
        &mut self,
        chap_a: &str,
        entropy: &[u8; CHAP_ENTROPY_LEN],
    ) -> Result<Vec<(String, String)>, ChapError> {
        if !self.awaits_algorithm() {
            return self.fail(ChapError::OutOfSequence);
        }
        if !offers_md5(chap_a) {
            return self.fail(ChapError::NoAcceptableAlgorithm);
        }
        let (&id, challenge) = entropy
            .split_first()
            .ok_or(ChapError::NoAcceptableAlgorithm)?;
        let challenge = challenge.to_vec();
        let pairs = vec![
            ("CHAP_A".to_owned(), CHAP_MD5.to_string()),
            ("CHAP_I".to_owned(), id.to_string()),
            ("CHAP_C".to_owned(), encode_hex(&challenge)),
        ];
        self.state = ChapState::AwaitResponse { id, challenge };
        Ok(pairs)
    }

    /// Checks the initiator's response; for mutual CHAP returns the
    /// target's `CHAP_N` and `CHAP_R` pairs to send.
    pub fn verify(&mut self, rsp: &ChapResponse<'_>) -> Result<Vec<(String, String)>, ChapError> {
        let result = self.verify_inner(rsp);
        self.state = match &result {
            Ok(_) => ChapState::Done,
            Err(_) => ChapState::Failed,
        };
        result
    }

    fn verify_inner(&self, rsp: &ChapResponse<'_>) -> Result<Vec<(String, String)>, ChapError> {
        let ChapState::AwaitResponse { id, challenge } = &self.state else {
            return Err(ChapError::OutOfSequence);
        };
        let (Some(name), Some(response)) = (rsp.name, rsp.response) else {
            return Err(ChapError::MissingResponse);
        };
        let response = decode_binary(response)?;
        let expected = chap_md5(*id, &self.creds.secret, challenge);
        let name_ok = name.as_bytes().ct_eq(self.creds.username.as_bytes());
        let rsp_ok = response.as_slice().ct_eq(expected.as_slice());
        if !bool::from(name_ok & rsp_ok) {
            return Err(ChapError::Mismatch);
        }
        let mutual_req = match (rsp.mutual_id, rsp.mutual_challenge) {
            (None, None) => None,
            (Some(i), Some(c)) => Some((i, c)),
            _ => return Err(ChapError::IncompleteMutual),
        };
        match (mutual_req, &self.mutual) {
            (None, None) => Ok(Vec::new()),
            (Some((i, c)), Some(mutual)) => {
                let mid = parse_number(i)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(ChapError::BadIdentifier)?;
                let mchallenge = decode_binary(c)?;
                if mchallenge.len() > MAX_CHALLENGE_LEN {
                    return Err(ChapError::ChallengeTooLong);
                }
                if bool::from(mchallenge.as_slice().ct_eq(challenge.as_slice())) {
                    return Err(ChapError::Reflection);
                }
                let answer = chap_md5(mid, &mutual.secret, &mchallenge);
                Ok(vec![
                    ("CHAP_N".to_owned(), mutual.username.clone()),
                    ("CHAP_R".to_owned(), encode_hex(&answer)),
                ])
            }
            _ => Err(ChapError::MutualMismatch),
        }
    }

    fn fail<T>(&mut self, e: ChapError) -> Result<T, ChapError> {
        self.state = ChapState::Failed;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_answer() {
        // RFC 1321 test vector: MD5("abc").
        let d = chap_md5(b'a', b"b", b"c");
        assert_eq!(encode_hex(&d), "0x900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn base64_round() {
        assert_eq!(decode_binary("0bAQID").unwrap(), [1, 2, 3]);
        assert_eq!(decode_binary("0bAQI=").unwrap(), [1, 2]);
        assert_eq!(decode_binary("0bAQ==").unwrap(), [1]);
        assert_eq!(decode_binary("0bAQ").unwrap(), [1]);
        assert!(decode_binary("0bA").is_err());
        assert!(decode_binary("0bAR==").is_err());
        assert_eq!(decode_binary("0xabc").unwrap(), [0x0a, 0xbc]);
        assert!(decode_binary("0x").is_err());
        assert!(decode_binary("abc").is_err());
    }
}
