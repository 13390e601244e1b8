//! The controller side of DH-HMAC-CHAP, one per queue:
//!
//! ```text
//! AUTH_Send Negotiate -> AUTH_Receive Challenge -> AUTH_Send Reply
//!   -> AUTH_Receive Success1 [R2 if the host asked, bidirectional]
//!   -> AUTH_Send Success2 (bidirectional only) -> authenticated
//! ```
//!
//! Anything wrong — a malformed or truncated message, one out of order, a
//! wrong transaction identifier, a wrong response, a reused sequence
//! number — makes the next AUTH_Receive return AUTH_Failure1 with the
//! reason, after which the queue is to be terminated
//! ([`After::Terminate`]). An AUTH_Receive when the controller has nothing
//! to send is itself out of order. A Negotiate restarts the transaction at
//! any point (re-authentication of an established queue).

use rand::RngCore;

use super::dh::{DhError, DhGroup, KeyPair};
use super::message::{Challenge, Failure, Message, Negotiate, Reply, Success1};
use super::response::{responses_match, Transcript};
use super::{reason, DhchapKey, HashId, AUTHID_DHCHAP};

/// What a host must prove, and what the controller may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    /// The host's secret.
    pub host_key: DhchapKey,
    /// The controller's secret, for bidirectional authentication.
    pub ctrl_key: Option<DhchapKey>,
    /// Hashes allowed, in the controller's order of preference.
    pub hashes: Vec<HashId>,
    /// DH groups allowed, in the controller's order of preference.
    pub dhgroups: Vec<DhGroup>,
}

impl AuthPolicy {
    /// Default preference: SHA-256 first; the FFDHE groups from the
    /// smallest, the null group last.
    pub fn new(host_key: DhchapKey, ctrl_key: Option<DhchapKey>) -> AuthPolicy {
        AuthPolicy {
            host_key,
            ctrl_key,
            hashes: HashId::ALL.to_vec(),
            dhgroups: DEFAULT_DHGROUPS.to_vec(),
        }
    }
}

/// The default DH group preference.
pub const DEFAULT_DHGROUPS: [DhGroup; 6] = [
    DhGroup::Ffdhe2048,
    DhGroup::Ffdhe3072,
    DhGroup::Ffdhe4096,
    DhGroup::Ffdhe6144,
    DhGroup::Ffdhe8192,
    DhGroup::Null,
];

#[derive(Debug)]
enum Step {
    /// Waiting for AUTH_Negotiate (also the idle state).
    Negotiate,
    /// The challenge is ready for AUTH_Receive.
    Challenge,
    /// Waiting for the Reply.
    Reply,
    /// Success1 is ready for AUTH_Receive.
    Success1,
    /// Waiting for Success2.
    Success2,
    /// Failure1 with this explanation is ready for AUTH_Receive.
    Failure1(u8),
}

/// What follows an AUTH_Send (always completed successfully, as nvmet
/// does: a failure is reported by the next AUTH_Receive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The transaction goes on (an AUTH_Receive is expected next).
    Continue,
    /// Success2 accepted: the queue is authenticated.
    Authenticated,
    /// The host ended the transaction with AUTH_Failure2: terminate the
    /// queue.
    HostFailed(Failure),
}

/// What follows an AUTH_Receive, once its data is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The transaction goes on.
    Continue,
    /// The queue is authenticated (unidirectional: after Success1).
    Authenticated,
    /// Failure1 was sent with this explanation: terminate the queue.
    Terminate(u8),
}

/// An AUTH_Receive's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveOutcome {
    /// The message to return.
    pub data: Vec<u8>,
    /// What to do after sending it.
    pub then: After,
}

/// The controller side of a queue's authentication.
#[derive(Debug)]
pub struct Controller {
    policy: AuthPolicy,
    /// Hash, session key, T_ID and NQNs.
    t: Transcript,
    step: Step,
    authenticated: bool,
    group: DhGroup,
    c1: Vec<u8>,
    s1: u32,
    keypair: Option<KeyPair>,
    c2: Option<(Vec<u8>, u32)>,
    seen_s2: Vec<u32>,
    next_s1: u32,
}

/// Sequence numbers S2 remembered per queue to refuse a replayed Reply.
const SEEN_S2_LIMIT: usize = 64;

impl Controller {
    /// A queue of host `hostnqn` on subsystem `subnqn` that must
    /// authenticate under `policy`. The first sequence number S1 is drawn
    /// from `rng`.
    pub fn new(policy: AuthPolicy, hostnqn: &str, subnqn: &str, rng: &mut dyn RngCore) -> Self {
        Controller {
            policy,
            t: Transcript::new(hostnqn, subnqn),
            step: Step::Negotiate,
            authenticated: false,
            group: DhGroup::Null,
            c1: Vec::new(),
            s1: 0,
            keypair: None,
            c2: None,
            seen_s2: Vec::new(),
            next_s1: rng.next_u32().max(1),
        }
    }

    /// True once a transaction completed successfully (and still during a
    /// later re-authentication).
    pub const fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The negotiated hash and DH group of the last transaction.
    pub const fn negotiated(&self) -> (HashId, DhGroup) {
        (self.t.hash, self.group)
    }

    fn fail(&mut self, explanation: u8) -> SendOutcome {
        if !matches!(self.step, Step::Failure1(_)) {
            self.step = Step::Failure1(explanation);
        }
        SendOutcome::Continue
    }

    /// Handles AUTH_Send data.
    pub fn send(&mut self, data: &[u8]) -> SendOutcome {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => return self.fail(e.explanation()),
        };
        let (want_reply, want_success2) = (
            matches!(self.step, Step::Reply),
            matches!(self.step, Step::Success2),
        );
        match msg {
            Message::Negotiate(n) => self.negotiate(&n),
            Message::Failure2(f) => {
                self.step = Step::Negotiate;
                SendOutcome::HostFailed(f)
            }
            Message::Reply(r) if want_reply => {
                if r.tid != self.t.tid {
                    return self.fail(reason::INCORRECT_PAYLOAD);
                }
                self.reply(&r)
            }
            Message::Success2 { tid } if want_success2 => {
                if tid != self.t.tid {
                    return self.fail(reason::INCORRECT_PAYLOAD);
                }
                self.step = Step::Negotiate;
                self.authenticated = true;
                SendOutcome::Authenticated
            }
            _ => self.fail(reason::INCORRECT_MESSAGE),
        }
    }

    fn negotiate(&mut self, n: &Negotiate) -> SendOutcome {
        // A new transaction: forget the previous one's state.
        self.step = Step::Negotiate;
        self.keypair = None;
        self.t.session_key = None;
        self.c2 = None;
        self.t.tid = n.tid;
        if n.sc_c != 0 {
            return self.fail(reason::CONCAT_MISMATCH);
        }
        let Some(p) = n.protocols.iter().find(|p| p.authid == AUTHID_DHCHAP) else {
            return self.fail(reason::NOT_USABLE);
        };
        let Some(hash) = self
            .policy
            .hashes
            .iter()
            .copied()
            .find(|h| p.hashes.contains(&h.id()))
        else {
            return self.fail(reason::HASH_UNUSABLE);
        };
        let Some(group) = self
            .policy
            .dhgroups
            .iter()
            .copied()
            .find(|g| p.dhgroups.contains(&g.id()))
        else {
            return self.fail(reason::DHGROUP_UNUSABLE);
        };
        self.t.hash = hash;
        self.group = group;
        self.step = Step::Challenge;
        SendOutcome::Continue
    }

    fn reply(&mut self, r: &Reply) -> SendOutcome {
        if r.response.len() != self.t.hash.digest_len() {
            return self.fail(reason::INCORRECT_PAYLOAD);
        }
        self.t.session_key = match (&self.keypair, r.dh_value.is_empty()) {
            (None, true) => None,
            (None, false) | (Some(_), true) => return self.fail(reason::INCORRECT_PAYLOAD),
            (Some(kp), false) => match kp.session_key(&r.dh_value) {
                Ok(k) => Some(k),
                Err(DhError::Length { .. } | DhError::Null) => {
                    return self.fail(reason::INCORRECT_PAYLOAD)
                }
                Err(DhError::Range) => return self.fail(reason::DHGROUP_UNUSABLE),
            },
        };
        let key = self.policy.host_key.transformed(&self.t.hostnqn);
        let expected = self.t.exchange().host_response(&key, &self.c1, self.s1);
        if !responses_match(&expected, &r.response) {
            return self.fail(reason::FAILED);
        }
        if r.cvalid {
            if self.policy.ctrl_key.is_none() || r.seqnum == 0 {
                return self.fail(reason::FAILED);
            }
            if self.seen_s2.contains(&r.seqnum) {
                // The same S2 again: a replayed Reply.
                return self.fail(reason::FAILED);
            }
            if self.seen_s2.len() >= SEEN_S2_LIMIT {
                self.seen_s2.remove(0);
            }
            self.seen_s2.push(r.seqnum);
            self.c2 = Some((r.challenge.clone(), r.seqnum));
        }
        self.step = Step::Success1;
        SendOutcome::Continue
    }

    /// Handles AUTH_Receive: the message the host is to read next.
    pub fn receive(&mut self, rng: &mut dyn RngCore) -> ReceiveOutcome {
        let step = std::mem::replace(&mut self.step, Step::Negotiate);
        match step {
            Step::Challenge => {
                let mut c1 = vec![0u8; self.t.hash.digest_len()];
                rng.fill_bytes(&mut c1);
                self.c1 = c1;
                self.s1 = self.next_s1;
                self.next_s1 = self.next_s1.wrapping_add(1).max(1);
                self.keypair = KeyPair::generate(self.group, rng);
                let msg = Message::Challenge(Challenge {
                    tid: self.t.tid,
                    hash: self.t.hash.id(),
                    dhgroup: self.group.id(),
                    seqnum: self.s1,
                    challenge: self.c1.clone(),
                    dh_value: self
                        .keypair
                        .as_ref()
                        .map(KeyPair::public)
                        .unwrap_or_default(),
                });
                self.step = Step::Reply;
                ReceiveOutcome {
                    data: msg.encode(),
                    then: After::Continue,
                }
            }
            Step::Success1 => {
                let hl = self.t.hash.digest_len();
                let (rvalid, response, then) = match self.c2.take() {
                    Some((c2, s2)) => {
                        let key = self
                            .policy
                            .ctrl_key
                            .as_ref()
                            .map(|k| k.transformed(&self.t.subnqn))
                            .unwrap_or_default();
                        self.step = Step::Success2;
                        (
                            true,
                            self.t.exchange().ctrl_response(&key, &c2, s2),
                            After::Continue,
                        )
                    }
                    None => {
                        self.authenticated = true;
                        (false, vec![0; hl], After::Authenticated)
                    }
                };
                let msg = Message::Success1(Success1 {
                    tid: self.t.tid,
                    rvalid,
                    response,
                });
                ReceiveOutcome {
                    data: msg.encode(),
                    then,
                }
            }
            Step::Failure1(explanation) => self.failure1(explanation),
            // Nothing to send: an AUTH_Receive out of order.
            Step::Negotiate | Step::Reply | Step::Success2 => {
                self.failure1(reason::INCORRECT_MESSAGE)
            }
        }
    }

    fn failure1(&mut self, explanation: u8) -> ReceiveOutcome {
        self.step = Step::Negotiate;
        self.keypair = None;
        self.t.session_key = None;
        let msg = Message::Failure1(Failure {
            tid: self.t.tid,
            code: reason::CODE_FAILED,
            explanation,
        });
        ReceiveOutcome {
            data: msg.encode(),
            then: After::Terminate(explanation),
        }
    }
}
