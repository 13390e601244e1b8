//! The host side of DH-HMAC-CHAP (what `nvme connect --dhchap-secret
//! [--dhchap-ctrl-secret]` does in the Linux host): builds the Negotiate,
//! answers the Challenge, and checks the controller's response in
//! Success1 when a controller secret is configured.

use rand::RngCore;

use super::dh::{DhGroup, KeyPair};
use super::message::{Failure, Message, Negotiate, Protocol, Reply};
use super::response::{responses_match, Transcript};
use super::{reason, DhchapKey, HashId, AUTHID_DHCHAP};

/// Why the host side stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The controller sent AUTH_Failure1.
    #[error("controller refused: {} ({:#04x})", reason::describe(.0.explanation), .0.explanation)]
    Refused(Failure),
    /// The controller's response R2 is wrong: send [`Host::failure2`].
    #[error("the controller's response does not match its secret")]
    ControllerMismatch,
    /// A message that is not the one expected (or does not parse).
    #[error("unexpected authentication message: {0}")]
    Unexpected(String),
}

/// One host transaction.
#[derive(Debug)]
pub struct Host {
    /// Hash, session key, T_ID and NQNs.
    t: Transcript,
    host_key: DhchapKey,
    ctrl_key: Option<DhchapKey>,
    /// Hashes offered in the Negotiate.
    pub hashes: Vec<HashId>,
    /// DH groups offered in the Negotiate.
    pub dhgroups: Vec<DhGroup>,
    group: DhGroup,
    c2: Option<(Vec<u8>, u32)>,
}

impl Host {
    /// A host offering every hash and group (as the Linux host does).
    pub fn new(
        hostnqn: &str,
        subnqn: &str,
        host_key: DhchapKey,
        ctrl_key: Option<DhchapKey>,
    ) -> Host {
        Host {
            t: Transcript::new(hostnqn, subnqn),
            host_key,
            ctrl_key,
            hashes: HashId::ALL.to_vec(),
            dhgroups: DhGroup::ALL.to_vec(),
            group: DhGroup::Null,
            c2: None,
        }
    }

    /// The hash and DH group the controller chose (after [`Host::reply`]).
    pub const fn negotiated(&self) -> (HashId, DhGroup) {
        (self.t.hash, self.group)
    }

    /// The AUTH_Negotiate of transaction `tid`.
    pub fn negotiate(&mut self, tid: u16) -> Vec<u8> {
        self.t.tid = tid;
        Message::Negotiate(Negotiate {
            tid,
            sc_c: 0,
            protocols: vec![Protocol {
                authid: AUTHID_DHCHAP,
                hashes: self.hashes.iter().map(|h| h.id()).collect(),
                dhgroups: self.dhgroups.iter().map(|g| g.id()).collect(),
            }],
        })
        .encode()
    }

    fn expect(&self, data: &[u8], want: u8) -> Result<Message, HostError> {
        let m = Message::parse(data).map_err(|e| HostError::Unexpected(e.to_string()))?;
        if let Message::Failure1(f) = m {
            return Err(HostError::Refused(f));
        }
        if m.auth_id() != want || m.tid() != self.t.tid {
            return Err(HostError::Unexpected(format!("{m:?}")));
        }
        Ok(m)
    }

    /// Answers a Challenge with the Reply (S2 from `rng` when a
    /// controller secret asks for bidirectional authentication).
    pub fn reply(&mut self, challenge: &[u8], rng: &mut dyn RngCore) -> Result<Vec<u8>, HostError> {
        let Message::Challenge(c) = self.expect(challenge, super::message::id::CHALLENGE)? else {
            return Err(HostError::Unexpected("not a challenge".into()));
        };
        let bad = |what: &str| HostError::Unexpected(what.to_owned());
        self.t.hash = HashId::from_id(c.hash).ok_or_else(|| bad("hash"))?;
        let group = DhGroup::from_id(c.dhgroup).ok_or_else(|| bad("DH group"))?;
        self.group = group;
        if c.challenge.len() != self.t.hash.digest_len() {
            return Err(bad("challenge length"));
        }
        let (dh_value, session_key) = match KeyPair::generate(group, rng) {
            None => (Vec::new(), None),
            Some(kp) => {
                let k = kp
                    .session_key(&c.dh_value)
                    .map_err(|e| HostError::Unexpected(e.to_string()))?;
                (kp.public(), Some(k))
            }
        };
        self.t.session_key = session_key;
        let key = self.host_key.transformed(&self.t.hostnqn);
        let response = self
            .t
            .exchange()
            .host_response(&key, &c.challenge, c.seqnum);
        self.c2 = self.ctrl_key.as_ref().map(|_| {
            let mut c2 = vec![0u8; self.t.hash.digest_len()];
            rng.fill_bytes(&mut c2);
            (c2, rng.next_u32().max(1))
        });
        let (cvalid, seqnum, challenge) = match &self.c2 {
            Some((c2, s2)) => (true, *s2, c2.clone()),
            None => (false, 0, vec![0; self.t.hash.digest_len()]),
        };
        Ok(Message::Reply(Reply {
            tid: self.t.tid,
            cvalid,
            seqnum,
            response,
            challenge,
            dh_value,
        })
        .encode())
    }

    /// Checks Success1. Returns the Success2 to send when bidirectional,
    /// `None` when the transaction is complete.
    pub fn success1(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        let Message::Success1(s) = self.expect(data, super::message::id::SUCCESS1)? else {
            return Err(HostError::Unexpected("not a success1".into()));
        };
        let Some((c2, s2)) = self.c2.take() else {
            return Ok(None);
        };
        let key = self
            .ctrl_key
            .as_ref()
            .map(|k| k.transformed(&self.t.subnqn))
            .unwrap_or_default();
        let expected = self.t.exchange().ctrl_response(&key, &c2, s2);
        if !s.rvalid || !responses_match(&expected, &s.response) {
            return Err(HostError::ControllerMismatch);
        }
        Ok(Some(Message::Success2 { tid: self.t.tid }.encode()))
    }

    /// The AUTH_Failure2 that ends the transaction with `explanation`.
    pub fn failure2(&self, explanation: u8) -> Vec<u8> {
        Message::Failure2(Failure {
            tid: self.t.tid,
            code: reason::CODE_FAILED,
            explanation,
        })
        .encode()
    }
}
