//! The per-connection iSCSI login state machine (RFC 7143 §6.3, §11.12,
//! §11.13, §12, §13) and the full-feature-phase text helper.
//!
//! [`LoginFsm::on_request`] takes each received Login Request (its parsed
//! header and data segment) and returns a [`LoginStep`]: the Login Response
//! header and text to send, and whether the login goes on, completed, or
//! failed. Nothing here does I/O; the target lookup and ACL come from the
//! caller's [`LoginPolicy`], randomness for CHAP from the caller's bytes.
//!
//! - Text split over several requests with the C bit is accumulated (at
//!   most [`MAX_LOGIN_TEXT`] bytes) and each part answered with an empty
//!   response; a response text longer than 8192 bytes (the
//!   MaxRecvDataSegmentLength in force during login) is sent in several
//!   responses with C=1, each answered by an empty request.
//! - Stages: SecurityNegotiation → LoginOperationalNegotiation →
//!   FullFeaturePhase. A requested transit (T=1) is granted once the target
//!   has nothing left to do in the current stage (authentication done).
//!   The initiator may start in the operational stage when the target
//!   requires no authentication.
//! - Operational keys are accepted in the security stage too (they are
//!   answered as in the operational stage); security keys in the
//!   operational stage are an initiator error.
//! - `InitiatorName`, `TargetName` and `SessionType` are taken from the
//!   first request; libiscsi repeats the names in every request, which is
//!   accepted when the value is unchanged.
//! - On [`LoginOutcome::Failed`] the caller sends the response (it carries
//!   the status) and closes the connection.

mod declared;

use super::chap::{
    select_auth_method, AuthMethod, ChapResponse, ChapServer, Credentials, CHAP_ENTROPY_LEN,
};
use super::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use super::params::{
    classify, encode_pairs, split_pairs, KeyClass, LoginParams, Negotiator, SessionType,
    TargetLoginConfig, DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH, NOT_UNDERSTOOD,
};

/// Most login text accepted across C-bit continuations, in bytes.
pub const MAX_LOGIN_TEXT: usize = 64 * 1024;

/// Most Login Requests one login may take.
pub const MAX_LOGIN_EXCHANGES: u32 = 256;

/// The data segment size used for login responses (RFC 7143 §13.12: the
/// default MaxRecvDataSegmentLength applies during login).
pub const LOGIN_MAX_SEND: usize = DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH as usize;

/// Longest iSCSI name (RFC 7143 §4.2.7.1).
pub const MAX_NAME_LEN: usize = 223;

/// The only iSCSI version (RFC 7143 §11.12.4).
pub const ISCSI_VERSION: u8 = 0;

/// Authentication a target (or discovery) requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetAuth {
    /// CHAP credentials the initiator must present; `None`: no
    /// authentication.
    pub chap: Option<Credentials>,
    /// Credentials the target answers mutual CHAP with; when set, the
    /// initiator must ask for mutual CHAP.
    pub mutual_chap: Option<Credentials>,
    /// TargetAlias to send, overriding the configured one.
    pub alias: Option<String>,
}

/// Target lookup and access control, implemented by the caller.
pub trait LoginPolicy {
    /// The target named `target_name`, or `None` (login fails with
    /// [`LoginStatus::NOT_FOUND`]).
    fn target(&self, target_name: &str) -> Option<TargetAuth>;
    /// Whether `initiator_name` may log in to `target_name` (`false`:
    /// [`LoginStatus::AUTHORIZATION_FAILURE`]).
    fn initiator_allowed(&self, target_name: &str, initiator_name: &str) -> bool;
    /// Authentication for discovery sessions; `None`: none required.
    fn discovery_auth(&self) -> Option<TargetAuth>;
}

/// A completed login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedLogin {
    /// The negotiated parameters.
    pub params: LoginParams,
    /// Normal or Discovery.
    pub session_type: SessionType,
    /// TargetName (None for a discovery session that sent none).
    pub target_name: Option<String>,
    /// InitiatorName.
    pub initiator_name: String,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH the initiator sent: 0 for a new session, else the session this
    /// connection joins or reinstates.
    pub tsih_requested: u16,
    /// CID.
    pub cid: u16,
    /// True if the initiator authenticated with CHAP.
    pub authenticated: bool,
    /// The StatSN of the connection's next response (full feature phase).
    pub next_stat_sn: u32,
    /// The CmdSN the login carried: the ExpCmdSN of full feature phase.
    pub exp_cmd_sn: u32,
}

/// What became of the login after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Send the response and wait for the next Login Request.
    Continue,
    /// Send the response: the connection is in full feature phase. For a
    /// new session (`tsih_requested == 0`) set the TSIH first with
    /// [`LoginStep::set_tsih`].
    Complete(Box<NegotiatedLogin>),
    /// Send the response (it carries this status) and close the
    /// connection.
    Failed(LoginStatus),
}

/// One Login Response to send and the login's state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStep {
    /// The response header; `data_segment_len` matches `data`.
    pub response: LoginResponse,
    /// The response text.
    pub data: Vec<u8>,
    /// What happens next.
    pub outcome: LoginOutcome,
}

impl LoginStep {
    /// Sets the TSIH of the response (the caller assigns it for a new
    /// session in the final response).
    pub fn set_tsih(&mut self, tsih: u16) {
        self.response.tsih = tsih;
    }
}

#[derive(Debug, Clone)]
struct Declared {
    initiator_name: String,
    target_name: Option<String>,
    session_type: SessionType,
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
}

#[derive(Debug, Clone)]
enum Auth {
    /// AuthMethod not negotiated yet.
    Pending,
    /// AuthMethod=None agreed, or nothing required.
    NoneAgreed,
    /// CHAP under way or done.
    Chap(Box<ChapServer>),
}

#[derive(Debug, Clone)]
struct PendingTx {
    data: Vec<u8>,
    sent: usize,
    next_stage: Option<Stage>,
    complete: bool,
}

/// The login state machine of one connection.
#[derive(Debug, Clone)]
pub struct LoginFsm {
    entropy: [u8; CHAP_ENTROPY_LEN],
    stat_sn: u32,
    stage: Stage,
    declared: Option<Declared>,
    target_auth: TargetAuth,
    auth: Auth,
    negotiator: Negotiator,
    rx: Vec<u8>,
    tx: Option<PendingTx>,
    exchanges: u32,
    auth_method_seen: bool,
    done: bool,
    last_cmd_sn: u32,
}

enum Processed {
    /// Answer pairs and the stage granted (if any).
    Answer(Vec<(String, String)>, Option<Stage>),
}

impl LoginFsm {
    /// A state machine for a new connection. `initial_stat_sn` is the
    /// StatSN of the first response; `entropy` are fresh random bytes for
    /// the CHAP identifier and challenge.
    pub fn new(
        config: &TargetLoginConfig,
        initial_stat_sn: u32,
        entropy: [u8; CHAP_ENTROPY_LEN],
    ) -> Self {
        LoginFsm {
            entropy,
            stat_sn: initial_stat_sn,
            stage: Stage::SecurityNegotiation,
            declared: None,
            target_auth: TargetAuth::default(),
            auth: Auth::Pending,
            negotiator: Negotiator::new(config),
            rx: Vec::new(),
            tx: None,
            exchanges: 0,
            auth_method_seen: false,
            done: false,
            last_cmd_sn: 0,
        }
    }

    /// The current stage (CSG of the next expected request).
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// True once the login completed or failed.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    /// Ends the login with `status` (for the caller's own reasons: session
    /// reinstatement failed, too many connections...): the response to
    /// send for `req`.
    pub fn reject(&mut self, req: &LoginRequest, status: LoginStatus) -> LoginStep {
        self.fail(req, status)
    }

    /// Handles one Login Request and its data segment.
    pub fn on_request(
        &mut self,
        req: &LoginRequest,
        data: &[u8],
        policy: &dyn LoginPolicy,
    ) -> LoginStep {
        if self.done {
            return self.fail(req, LoginStatus::INVALID_DURING_LOGIN);
        }
        self.exchanges = self.exchanges.saturating_add(1);
        if self.exchanges > MAX_LOGIN_EXCHANGES {
            return self.fail(req, LoginStatus::INITIATOR_ERROR);
        }
        if let Err(status) = self.check_header(req) {
            return self.fail(req, status);
        }
        if self.declared.is_none() && self.rx.is_empty() {
            self.stage = req.current_stage;
        }
        self.last_cmd_sn = req.cmd_sn;
        if self.tx.is_some() {
            // We are sending a long response; the initiator must answer
            // each part with an empty request.
            if !data.is_empty() || req.continue_bit {
                return self.fail(req, LoginStatus::INITIATOR_ERROR);
            }
            return self.send_pending(req);
        }
        if self.rx.len().saturating_add(data.len()) > MAX_LOGIN_TEXT {
            return self.fail(req, LoginStatus::OUT_OF_RESOURCES);
        }
        self.rx.extend_from_slice(data);
        if req.continue_bit {
            let response = self.header(req, LoginStatus::SUCCESS, false, None, 0);
            return LoginStep {
                response,
                data: Vec::new(),
                outcome: LoginOutcome::Continue,
            };
        }
        let text = std::mem::take(&mut self.rx);
        match self.process(req, &text, policy) {
            Ok(Processed::Answer(pairs, granted)) => {
                let complete = granted == Some(Stage::FullFeaturePhase);
                self.tx = Some(PendingTx {
                    data: encode_pairs(&pairs),
                    sent: 0,
                    next_stage: granted,
                    complete,
                });
                self.send_pending(req)
            }
            Err(status) => self.fail(req, status),
        }
    }

    fn check_header(&self, req: &LoginRequest) -> Result<(), LoginStatus> {
        if req.version_min > ISCSI_VERSION || req.version_max < req.version_min {
            return Err(LoginStatus::UNSUPPORTED_VERSION);
        }
        if req.continue_bit && req.transit() {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        match &self.declared {
            None if self.rx.is_empty() => {
                if req.current_stage == Stage::FullFeaturePhase {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
            }
            _ => {
                if req.current_stage != self.stage {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
            }
        }
        if let Some(d) = &self.declared {
            if d.isid != req.isid || d.tsih != req.tsih || d.cid != req.cid {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
        }
        if let Some(nsg) = req.next_stage {
            // A transit goes forward only (§6.3: no return to security).
            if nsg <= req.current_stage {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
        }
        Ok(())
    }

    fn process(
        &mut self,
        req: &LoginRequest,
        text: &[u8],
        policy: &dyn LoginPolicy,
    ) -> Result<Processed, LoginStatus> {
        let pairs = split_pairs(text).map_err(|_| LoginStatus::INITIATOR_ERROR)?;
        // A key twice in one request is an initiator error (§6.2).
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs.iter().skip(i + 1).any(|(k2, _)| k2 == k) {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
        }
        let get = |key: &str| lookup(&pairs, key);
        let mut out: Vec<(String, String)> = Vec::new();

        if self.declared.is_none() {
            self.first_request(req, &pairs, policy, &mut out)?;
        } else {
            self.check_redeclared(&pairs)?;
        }
        if let Some(alias) = get("InitiatorAlias") {
            self.negotiator.params_mut().session.initiator_alias = Some(alias.to_owned());
        }

        let in_security = self.stage == Stage::SecurityNegotiation;
        let mut chap_rsp = ChapResponse::default();
        for &(key, value) in &pairs {
            match classify(key) {
                KeyClass::Declaration => {}
                KeyClass::TargetOnly => return Err(LoginStatus::INITIATOR_ERROR),
                KeyClass::Security => {
                    if !in_security {
                        return Err(LoginStatus::INITIATOR_ERROR);
                    }
                    match key {
                        "AuthMethod" => self.auth_method(value, &mut out)?,
                        "CHAP_A" => self.chap_algorithm(value, &mut out)?,
                        "CHAP_N" => chap_rsp.name = Some(value),
                        "CHAP_R" => chap_rsp.response = Some(value),
                        "CHAP_I" => chap_rsp.mutual_id = Some(value),
                        "CHAP_C" => chap_rsp.mutual_challenge = Some(value),
                        _ => out.push((key.to_owned(), NOT_UNDERSTOOD.to_owned())),
                    }
                }
                KeyClass::Operational => self.negotiator.handle_key(key, value, &mut out)?,
            }
        }
        self.negotiator.finish_request(&mut out);
        if !chap_rsp.is_empty() {
            let Auth::Chap(server) = &mut self.auth else {
                return Err(LoginStatus::INITIATOR_ERROR);
            };
            let mutual = server.verify(&chap_rsp).map_err(|e| e.status())?;
            out.extend(mutual);
        }

        let granted = match req.next_stage {
            None => None,
            Some(nsg) => self.transit(nsg)?,
        };
        if granted == Some(Stage::FullFeaturePhase)
            && (self.stage == Stage::LoginOperationalNegotiation
                || self.negotiator.params().connection.initiator_mrdsl
                    != DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH)
        {
            self.negotiator.declare_mrdsl(&mut out);
        }
        Ok(Processed::Answer(out, granted))
    }

    fn auth_method(
        &mut self,
        value: &str,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), LoginStatus> {
        let chap_configured = self.target_auth.chap.is_some();
        // Negotiated once per login.
        if self.auth_method_seen {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        self.auth_method_seen = true;
        let method = select_auth_method(value, chap_configured).map_err(|e| e.status())?;
        match (method, &self.target_auth.chap) {
            (AuthMethod::Chap, Some(creds)) => {
                let server = ChapServer::new(creds.clone(), self.target_auth.mutual_chap.clone());
                self.auth = Auth::Chap(Box::new(server));
            }
            _ => self.auth = Auth::NoneAgreed,
        }
        out.push(("AuthMethod".to_owned(), method.as_str().to_owned()));
        Ok(())
    }

    fn chap_algorithm(
        &mut self,
        value: &str,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), LoginStatus> {
        let Auth::Chap(server) = &mut self.auth else {
            return Err(LoginStatus::INITIATOR_ERROR);
        };
        let pairs = server
            .select_algorithm(value, &self.entropy)
            .map_err(|e| e.status())?;
        out.extend(pairs);
        Ok(())
    }

    /// Decides a requested transit to `nsg`: `Ok(Some(nsg))` granted,
    /// `Ok(None)` not yet (authentication under way).
    fn transit(&mut self, nsg: Stage) -> Result<Option<Stage>, LoginStatus> {
        if self.stage == Stage::SecurityNegotiation {
            match &self.auth {
                Auth::NoneAgreed => {}
                Auth::Pending => return Err(LoginStatus::AUTHENTICATION_FAILURE),
                Auth::Chap(server) if server.is_done() => {}
                // CHAP still running: stay in the security stage.
                Auth::Chap(_) => return Ok(None),
            }
        }
        Ok(Some(nsg))
    }

    fn send_pending(&mut self, req: &LoginRequest) -> LoginStep {
        let Some(mut tx) = self.tx.take() else {
            return self.fail(req, LoginStatus::TARGET_ERROR);
        };
        let remaining = tx.data.get(tx.sent..).unwrap_or_default();
        let chunk_len = remaining.len().min(LOGIN_MAX_SEND);
        let chunk = remaining.get(..chunk_len).unwrap_or_default().to_vec();
        tx.sent += chunk_len;
        let more = tx.sent < tx.data.len();
        let len = u32::try_from(chunk.len()).unwrap_or(0);
        if more {
            let response = self.header(req, LoginStatus::SUCCESS, true, None, len);
            self.tx = Some(tx);
            return LoginStep {
                response,
                data: chunk,
                outcome: LoginOutcome::Continue,
            };
        }
        let response = self.header(req, LoginStatus::SUCCESS, false, tx.next_stage, len);
        if let Some(nsg) = tx.next_stage {
            self.stage = nsg;
        }
        let outcome = if tx.complete {
            self.done = true;
            LoginOutcome::Complete(Box::new(self.negotiated()))
        } else {
            LoginOutcome::Continue
        };
        LoginStep {
            response,
            data: chunk,
            outcome,
        }
    }

    fn negotiated(&self) -> NegotiatedLogin {
        let params = self.negotiator.clone().into_params();
        let d = self.declared.clone();
        let (initiator_name, target_name, session_type, isid, tsih, cid) = match d {
            Some(d) => (
                d.initiator_name,
                d.target_name,
                d.session_type,
                d.isid,
                d.tsih,
                d.cid,
            ),
            None => (String::new(), None, SessionType::Normal, [0; 6], 0, 0),
        };
        NegotiatedLogin {
            params,
            session_type,
            target_name,
            initiator_name,
            isid,
            tsih_requested: tsih,
            cid,
            authenticated: matches!(&self.auth, Auth::Chap(s) if s.is_done()),
            next_stat_sn: self.stat_sn,
            exp_cmd_sn: self.last_cmd_sn,
        }
    }

    fn header(
        &mut self,
        req: &LoginRequest,
        status: LoginStatus,
        continue_bit: bool,
        next_stage: Option<Stage>,
        data_len: u32,
    ) -> LoginResponse {
        let stat_sn = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        LoginResponse {
            next_stage,
            continue_bit,
            current_stage: req.current_stage,
            version_max: ISCSI_VERSION,
            version_active: ISCSI_VERSION,
            total_ahs_len: 0,
            data_segment_len: data_len,
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            stat_sn,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn,
            status,
        }
    }

    fn fail(&mut self, req: &LoginRequest, status: LoginStatus) -> LoginStep {
        self.done = true;
        self.tx = None;
        self.rx = Vec::new();
        let response = self.header(req, status, false, None, 0);
        LoginStep {
            response,
            data: Vec::new(),
            outcome: LoginOutcome::Failed(status),
        }
    }
}

fn lookup<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

pub use super::send_targets::{text_response, TargetPortals};
