//! The target's side of operational key negotiation (RFC 7143 §6.2,
//! §13): [`Negotiator`] answers each key the initiator offers from a
//! [`TargetLoginConfig`], by the rules tabled in [`super::params`].

use super::chap::parse_number;
use super::login::LoginStatus;
use super::params::{
    Digest, LoginParams, SessionType, TargetLoginConfig, IRRELEVANT, MAX_LENGTH, MIN_LENGTH,
    NOT_UNDERSTOOD, PROTOCOL_LEVEL, REJECT,
};

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn parse_in_range(v: &str, min: u64, max: u64) -> Option<u64> {
    parse_number(v).filter(|n| (min..=max).contains(n))
}

fn is_answer_value(v: &str) -> bool {
    matches!(v, NOT_UNDERSTOOD | IRRELEVANT | REJECT)
}

/// Answers the initiator's operational keys.
#[derive(Debug, Clone)]
pub struct Negotiator {
    cfg: TargetLoginConfig,
    params: LoginParams,
    seen: Vec<String>,
    mrdsl_declared: bool,
    first_burst: Option<(usize, u32)>,
}

impl Negotiator {
    /// A negotiator starting from RFC defaults; `cfg` is normalized.
    pub fn new(cfg: &TargetLoginConfig) -> Self {
        let cfg = cfg.normalized();
        let mut params = LoginParams::default();
        params.session.target_alias.clone_from(&cfg.target_alias);
        params.session.target_portal_group_tag = cfg.portal_group_tag;
        Negotiator {
            cfg,
            params,
            seen: Vec::new(),
            mrdsl_declared: false,
            first_burst: None,
        }
    }

    /// The parameters negotiated so far.
    pub fn params(&self) -> &LoginParams {
        &self.params
    }

    /// Mutable access, for the declarations the login state machine
    /// handles (names, session type, alias).
    pub fn params_mut(&mut self) -> &mut LoginParams {
        &mut self.params
    }

    /// True if the target has declared its MaxRecvDataSegmentLength.
    pub fn mrdsl_declared(&self) -> bool {
        self.mrdsl_declared
    }

    /// Appends the target's MaxRecvDataSegmentLength declaration to `out`
    /// unless already sent in this login.
    pub fn declare_mrdsl(&mut self, out: &mut Vec<(String, String)>) {
        if !self.mrdsl_declared {
            self.mrdsl_declared = true;
            let v = self.cfg.max_recv_data_segment_length;
            self.params.connection.target_mrdsl = v;
            out.push(("MaxRecvDataSegmentLength".to_owned(), v.to_string()));
        }
    }

    fn discovery(&self) -> bool {
        self.params.session.session_type == SessionType::Discovery
    }

    /// Answers one operational key, appending the answer (if any) to
    /// `out`. Fails with [`LoginStatus::INITIATOR_ERROR`] for a key
    /// negotiated twice in this login.
    pub fn handle_key(
        &mut self,
        key: &str,
        value: &str,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), LoginStatus> {
        if self.seen.iter().any(|k| k == key) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        self.seen.push(key.to_owned());
        // Reserved answer values are not offers; nothing to answer.
        if is_answer_value(value) {
            return Ok(());
        }
        if let Some(answer) = self.answer(key, value) {
            out.push((key.to_owned(), answer));
        }
        if key == "FirstBurstLength" {
            // Answered in `finish_request`, once MaxBurstLength, InitialR2T
            // and ImmediateData of the same request are known.
            if let Some((_, v)) = out.last() {
                if let Ok(n) = v.parse::<u32>() {
                    self.first_burst = Some((out.len() - 1, n));
                }
            }
        }
        Ok(())
    }

    /// Resolves answers that depend on other keys of the same request
    /// (FirstBurstLength).
    pub fn finish_request(&mut self, out: &mut [(String, String)]) {
        let Some((index, offered)) = self.first_burst.take() else {
            return;
        };
        let s = &mut self.params.session;
        let answer = if s.initial_r2t && !s.immediate_data {
            IRRELEVANT.to_owned()
        } else {
            // §13.14: FirstBurstLength MUST NOT exceed MaxBurstLength.
            let v = offered.min(s.max_burst_length);
            s.first_burst_length = v;
            v.to_string()
        };
        if let Some(slot) = out.get_mut(index) {
            slot.1 = answer;
        }
    }

    /// The final parameters: FirstBurstLength forced under MaxBurstLength.
    pub fn into_params(mut self) -> LoginParams {
        let s = &mut self.params.session;
        s.first_burst_length = s.first_burst_length.min(s.max_burst_length);
        self.params
    }

    fn session_only(&self) -> Option<String> {
        self.discovery().then(|| IRRELEVANT.to_owned())
    }

    fn answer(&mut self, key: &str, value: &str) -> Option<String> {
        let cfg = &self.cfg;
        let answer = match key {
            "HeaderDigest" | "DataDigest" => {
                let crc_ok = if key == "HeaderDigest" {
                    cfg.header_digest_crc32c
                } else {
                    cfg.data_digest_crc32c
                };
                let pick = value
                    .split(',')
                    .filter_map(Digest::from_wire)
                    .find(|d| *d == Digest::None || crc_ok);
                match pick {
                    Some(d) => {
                        if key == "HeaderDigest" {
                            self.params.connection.header_digest = d;
                        } else {
                            self.params.connection.data_digest = d;
                        }
                        d.as_str().to_owned()
                    }
                    None => REJECT.to_owned(),
                }
            }
            "MaxRecvDataSegmentLength" => {
                match parse_in_range(value, u64::from(MIN_LENGTH), u64::from(MAX_LENGTH)) {
                    Some(n) => {
                        self.params.connection.initiator_mrdsl =
                            u32::try_from(n).unwrap_or(MAX_LENGTH);
                        // Declarative: no answer, but the target declares
                        // its own value in the same response.
                        let mut decl = Vec::new();
                        self.declare_mrdsl(&mut decl);
                        return decl.pop().map(|(_, v)| v);
                    }
                    None => REJECT.to_owned(),
                }
            }
            "MaxConnections" => {
                if let Some(a) = self.session_only() {
                    return Some(a);
                }
                match parse_in_range(value, 1, 65535) {
                    Some(n) => {
                        let v = u16::try_from(n)
                            .unwrap_or(u16::MAX)
                            .min(cfg.max_connections);
                        self.params.session.max_connections = v;
                        v.to_string()
                    }
                    None => REJECT.to_owned(),
                }
            }
            "InitialR2T" | "ImmediateData" | "DataPDUInOrder" | "DataSequenceInOrder" => {
                if let Some(a) = self.session_only() {
                    return Some(a);
                }
                let Some(b) = parse_bool(value) else {
                    return Some(REJECT.to_owned());
                };
                let s = &mut self.params.session;
                let v = match key {
                    "InitialR2T" => {
                        s.initial_r2t = b || cfg.initial_r2t;
                        s.initial_r2t
                    }
                    "ImmediateData" => {
                        s.immediate_data = b && cfg.immediate_data;
                        s.immediate_data
                    }
                    "DataPDUInOrder" => {
                        s.data_pdu_in_order = b || cfg.data_pdu_in_order;
                        s.data_pdu_in_order
                    }
                    _ => {
                        s.data_sequence_in_order = b || cfg.data_sequence_in_order;
                        s.data_sequence_in_order
                    }
                };
                yes_no(v).to_owned()
            }
            "MaxBurstLength" | "FirstBurstLength" => {
                if let Some(a) = self.session_only() {
                    return Some(a);
                }
                match parse_in_range(value, u64::from(MIN_LENGTH), u64::from(MAX_LENGTH)) {
                    Some(n) => {
                        let n = u32::try_from(n).unwrap_or(MAX_LENGTH);
                        if key == "MaxBurstLength" {
                            let v = n.min(cfg.max_burst_length);
                            self.params.session.max_burst_length = v;
                            v.to_string()
                        } else {
                            n.min(cfg.first_burst_length).to_string()
                        }
                    }
                    None => REJECT.to_owned(),
                }
            }
            "DefaultTime2Wait" | "DefaultTime2Retain" => match parse_in_range(value, 0, 3600) {
                Some(n) => {
                    let n = u16::try_from(n).unwrap_or(3600);
                    let v = if key == "DefaultTime2Wait" {
                        let v = n.max(cfg.default_time2wait);
                        self.params.session.default_time2wait = v;
                        v
                    } else {
                        let v = n.min(cfg.default_time2retain);
                        self.params.session.default_time2retain = v;
                        v
                    };
                    v.to_string()
                }
                None => REJECT.to_owned(),
            },
            "MaxOutstandingR2T" => {
                if let Some(a) = self.session_only() {
                    return Some(a);
                }
                match parse_in_range(value, 1, 65535) {
                    Some(n) => {
                        let v = u16::try_from(n)
                            .unwrap_or(u16::MAX)
                            .min(cfg.max_outstanding_r2t);
                        self.params.session.max_outstanding_r2t = v;
                        v.to_string()
                    }
                    None => REJECT.to_owned(),
                }
            }
            "ErrorRecoveryLevel" => match parse_in_range(value, 0, 2) {
                Some(n) => {
                    let v = u8::try_from(n).unwrap_or(2).min(cfg.error_recovery_level);
                    self.params.session.error_recovery_level = v;
                    v.to_string()
                }
                None => REJECT.to_owned(),
            },
            // RFC 7143 §13.26 obsoletes the markers; IFMarker/OFMarker may
            // be answered No (what RFC 3720 initiators expect).
            "IFMarker" | "OFMarker" => match parse_bool(value) {
                Some(_) => "No".to_owned(),
                None => REJECT.to_owned(),
            },
            "IFMarkInt" | "OFMarkInt" => REJECT.to_owned(),
            // iSER (RFC 7145) is not offered over TCP: RDMAExtensions is a
            // boolean AND the target answers No; the other iSER keys only
            // apply when RDMAExtensions=Yes.
            "RDMAExtensions" => match parse_bool(value) {
                Some(_) => "No".to_owned(),
                None => REJECT.to_owned(),
            },
            "InitiatorRecvDataSegmentLength"
            | "TargetRecvDataSegmentLength"
            | "MaxAHSLength"
            | "TaggedBufferForSolicitedDataOnly"
            | "iSERHelloRequired" => IRRELEVANT.to_owned(),
            "TaskReporting" => {
                if value.split(',').any(|v| v == "RFC3720") {
                    "RFC3720".to_owned()
                } else {
                    REJECT.to_owned()
                }
            }
            "iSCSIProtocolLevel" => match parse_in_range(value, 0, 31) {
                Some(n) => n.min(PROTOCOL_LEVEL).to_string(),
                None => REJECT.to_owned(),
            },
            // Only meaningful in full feature phase.
            "SendTargets" => IRRELEVANT.to_owned(),
            _ => NOT_UNDERSTOOD.to_owned(),
        };
        Some(answer)
    }
}
