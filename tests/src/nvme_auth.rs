//! In-band authentication (DH-HMAC-CHAP) for the test host: AUTH_Send /
//! AUTH_Receive and a whole transaction with the host side of
//! `zctarget_protocol::nvme::auth` (what `nvme connect --dhchap-secret
//! [--dhchap-ctrl-secret]` does), bidirectional included. Tests that
//! tamper with messages use [`NvmeQueue::auth_send`] / [`NvmeQueue::auth_receive`].

use std::io;

use zctarget_protocol::nvme::auth::dh::DhGroup;
use zctarget_protocol::nvme::auth::{
    reason, AuthCommand, AuthHost, DhchapKey, HashId, HostError, CONNECT_AUTHREQ_ATR,
};
use zctarget_protocol::nvme::fabrics::fctype;
use zctarget_protocol::nvme::Sgl;

use crate::nvme_client::{NvmeQueue, Reply};

/// AUTH_Receive allocation length (what the Linux host asks for).
pub const AUTH_RECEIVE_LEN: u32 = 4096;

/// A host's secrets and what it offers.
#[derive(Debug, Clone)]
pub struct Dhchap {
    /// The host secret.
    pub host_key: DhchapKey,
    /// The controller secret (bidirectional).
    pub ctrl_key: Option<DhchapKey>,
    /// Hashes offered.
    pub hashes: Vec<HashId>,
    /// DH groups offered.
    pub dhgroups: Vec<DhGroup>,
}

impl Dhchap {
    /// Secrets in their `DHHC-1:` text form; every hash and group offered.
    pub fn new(host_key: &str, ctrl_key: Option<&str>) -> Self {
        let parse = |s: &str| DhchapKey::parse(s).expect("a DHHC-1 secret");
        Self {
            host_key: parse(host_key),
            ctrl_key: ctrl_key.map(parse),
            hashes: HashId::ALL.to_vec(),
            dhgroups: DhGroup::ALL.to_vec(),
        }
    }

    /// The host side of one transaction.
    pub fn host(&self, subnqn: &str, hostnqn: &str) -> AuthHost {
        let mut h = AuthHost::new(
            hostnqn,
            subnqn,
            self.host_key.clone(),
            self.ctrl_key.clone(),
        );
        h.hashes = self.hashes.clone();
        h.dhgroups = self.dhgroups.clone();
        h
    }
}

/// True if a Connect response asks for authentication (AUTHREQ.ATR).
pub fn required(connect: &Reply) -> bool {
    connect.cqe.dw0 & CONNECT_AUTHREQ_ATR != 0
}

/// Why a transaction did not complete.
#[derive(Debug)]
pub enum AuthFailure {
    /// The host side stopped (the controller's Failure1, a wrong
    /// controller response — then Failure2 was sent —, a bad message).
    Host(HostError),
    /// A command completed with an error status.
    Status(Reply),
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::Host(e) => write!(f, "{e}"),
            AuthFailure::Status(r) => write!(f, "status {:?}", r.status()),
        }
    }
}

impl NvmeQueue {
    /// AUTH_Send with `data` in the capsule.
    pub fn auth_send(&mut self, data: &[u8]) -> io::Result<Reply> {
        self.auth_send_with(AuthCommand::dhchap(data.len() as u32), data)
    }

    /// AUTH_Send with explicit SECP/SPSP/TL fields.
    pub fn auth_send_with(&mut self, cmd: AuthCommand, data: &[u8]) -> io::Result<Reply> {
        let cid = self.cid();
        let mut sqe = cmd.to_sqe(cid, fctype::AUTH_SEND);
        sqe.dptr = Sgl::in_capsule(data.len() as u32);
        self.command(sqe, data, 0)
    }

    /// AUTH_Receive of up to `len` bytes.
    pub fn auth_receive(&mut self, len: u32) -> io::Result<Reply> {
        let cid = self.cid();
        let mut sqe = AuthCommand::dhchap(len).to_sqe(cid, fctype::AUTH_RECEIVE);
        sqe.dptr = Sgl::transport(len);
        self.command(sqe, &[], len as usize)
    }

    /// One whole transaction `tid`; the negotiated hash and group.
    /// `Ok(Err(_))`: authentication failed (the controller ends the queue
    /// after its Failure1 / our Failure2).
    pub fn authenticate(
        &mut self,
        d: &Dhchap,
        subnqn: &str,
        hostnqn: &str,
        tid: u16,
    ) -> io::Result<Result<(HashId, DhGroup), AuthFailure>> {
        let mut host = d.host(subnqn, hostnqn);
        let mut rng = rand::thread_rng();
        let checked = |r: Reply| {
            if r.status().is_success() {
                Ok(r)
            } else {
                Err(AuthFailure::Status(r))
            }
        };
        let r = self.auth_send(&host.negotiate(tid))?;
        if let Err(e) = checked(r) {
            return Ok(Err(e));
        }
        let challenge = match checked(self.auth_receive(AUTH_RECEIVE_LEN)?) {
            Ok(r) => r.data,
            Err(e) => return Ok(Err(e)),
        };
        let reply = match host.reply(&challenge, &mut rng) {
            Ok(r) => r,
            Err(e) => return Ok(Err(AuthFailure::Host(e))),
        };
        if let Err(e) = checked(self.auth_send(&reply)?) {
            return Ok(Err(e));
        }
        let success1 = match checked(self.auth_receive(AUTH_RECEIVE_LEN)?) {
            Ok(r) => r.data,
            Err(e) => return Ok(Err(e)),
        };
        let negotiated = host.negotiated();
        match host.success1(&success1) {
            Ok(None) => Ok(Ok(negotiated)),
            Ok(Some(success2)) => Ok(checked(self.auth_send(&success2)?).map(|_| negotiated)),
            Err(HostError::ControllerMismatch) => {
                self.auth_send(&host.failure2(reason::FAILED))?;
                Ok(Err(AuthFailure::Host(HostError::ControllerMismatch)))
            }
            Err(e) => Ok(Err(AuthFailure::Host(e))),
        }
    }
}
