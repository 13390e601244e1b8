//! NVMe in-band authentication (DH-HMAC-CHAP) of one queue, between the
//! queue's PDU loop and the sans-IO transaction
//! (`zctarget_protocol::nvme::auth`).
//!
//! `queue.rs` calls in at three places, each a few lines:
//! - Connect: [`QueueAuth::on_connect`] sets AUTHREQ.ATR in the Connect
//!   response when the host has a `dhchap_key` in the subsystem;
//! - every later capsule: [`QueueAuth::intercept`] routes AUTH_Send /
//!   AUTH_Receive here, and refuses any other non-Fabrics command on a queue
//!   not yet authenticated with Authentication Required (as Linux nvmet:
//!   Fabrics commands such as Property Get/Set pass);
//! - [`QueueAuth::execute`] runs the command and says whether the queue
//!   ends (after AUTH_Failure1 was returned, or the host's AUTH_Failure2).
//!
//! Secrets are never logged; failures are counted in the protocol-error
//! metrics (`auth_failed`, `auth_host_failure`, `auth_required`).

use std::cell::RefCell;
use std::time::Duration;

use zctarget_config as config;
use zctarget_protocol::nvme::auth::{
    reason, After, AuthCommand, AuthController, AuthPolicy, DhGroup, DhchapKey, HashId,
    SendOutcome, CONNECT_AUTHREQ_ATR, MAX_MESSAGE_LEN,
};
use zctarget_protocol::nvme::fabrics::fctype;
use zctarget_protocol::nvme::{Completion, Sqe, Status};

use super::queue::Exit;
use super::NvmfRegistry;
use crate::daemon::Protocol;
use crate::metrics::Counters;

/// What the queue does with a capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not an authentication matter: the usual path.
    Pass,
    /// AUTH_Send / AUTH_Receive: read the capsule data, then [`QueueAuth::execute`].
    Command,
    /// Refuse the command (its data drained) with this status.
    Refuse(Status),
}

/// An executed AUTH_Send / AUTH_Receive.
#[derive(Debug)]
pub struct Answer {
    /// The completion.
    pub completion: Completion,
    /// AUTH_Receive data to return first.
    pub data: Option<Vec<u8>>,
    /// End the queue once the answer is sent.
    pub exit: Option<Exit>,
}

/// The authentication state of one queue.
#[derive(Default)]
pub struct QueueAuth {
    txn: RefCell<Option<AuthController>>,
    qid: std::cell::Cell<u16>,
    /// For logs.
    hostnqn: RefCell<String>,
}

/// The policy of `hostnqn` in subsystem `cfg`, if it must authenticate.
/// `Err` when a configured secret does not parse (validation prevents it).
fn policy(cfg: &config::NvmeSubsystem, hostnqn: &str) -> Option<Result<AuthPolicy, String>> {
    let k = cfg.host_key(hostnqn)?;
    let parse = |s: &str| DhchapKey::parse(s).map_err(|e| e.to_string());
    Some((|| {
        let host_key = parse(&k.dhchap_key)?;
        let ctrl_key = k.dhchap_ctrl_key.as_deref().map(parse).transpose()?;
        let mut p = AuthPolicy::new(host_key, ctrl_key);
        let hashes = if k.dhchap_hashes.is_empty() {
            &cfg.dhchap_hashes
        } else {
            &k.dhchap_hashes
        };
        if !hashes.is_empty() {
            p.hashes = hashes.iter().filter_map(|h| HashId::from_name(h)).collect();
        }
        let groups = if k.dhchap_dhgroups.is_empty() {
            &cfg.dhchap_dhgroups
        } else {
            &k.dhchap_dhgroups
        };
        if !groups.is_empty() {
            p.dhgroups = groups
                .iter()
                .filter_map(|g| DhGroup::from_name(g))
                .collect();
        }
        Ok(p)
    })())
}

impl QueueAuth {
    /// Connect hook, for a queue just connected to `subnqn` by `hostnqn`:
    /// returns the Connect completion, with AUTHREQ.ATR when the host must
    /// authenticate this queue.
    pub fn on_connect(
        &self,
        registry: &NvmfRegistry,
        subnqn: &str,
        hostnqn: &str,
        qid: u16,
        c: Completion,
    ) -> Completion {
        self.qid.set(qid);
        hostnqn.clone_into(&mut self.hostnqn.borrow_mut());
        let Some(sub) = registry.subsystem(subnqn) else {
            return c;
        };
        match policy(&sub.config(), hostnqn) {
            None => c,
            Some(Ok(p)) => {
                let txn = AuthController::new(p, hostnqn, subnqn, &mut rand::thread_rng());
                *self.txn.borrow_mut() = Some(txn);
                Completion {
                    dw0: c.dw0 | CONNECT_AUTHREQ_ATR,
                    ..c
                }
            }
            Some(Err(e)) => {
                // Validation prevents this; the host is refused anyway:
                // with no usable hash, every Negotiate fails.
                tracing::error!(%hostnqn, qid, error = %e, "host secret unusable; host cannot authenticate");
                if let Ok(k) = DhchapKey::new(None, &[0; 32]) {
                    let mut p = AuthPolicy::new(k, None);
                    p.hashes.clear();
                    let txn = AuthController::new(p, hostnqn, subnqn, &mut rand::thread_rng());
                    *self.txn.borrow_mut() = Some(txn);
                }
                Completion {
                    dw0: c.dw0 | CONNECT_AUTHREQ_ATR,
                    ..c
                }
            }
        }
    }

    /// True while the host must authenticate and has not yet done so.
    pub fn pending(&self) -> bool {
        self.txn
            .borrow()
            .as_ref()
            .is_some_and(|t| !t.authenticated())
    }

    /// Capsule hook: what to do with `sqe` on this (connected) queue.
    pub fn intercept(&self, sqe: &Sqe, counters: &Counters) -> Verdict {
        if sqe.is_fabrics() {
            return match sqe.fctype() {
                fctype::AUTH_SEND | fctype::AUTH_RECEIVE => Verdict::Command,
                _ => Verdict::Pass,
            };
        }
        match &*self.txn.borrow() {
            Some(t) if !t.authenticated() => {
                counters.protocol_error(Protocol::NvmeTcp, "auth_required");
                Verdict::Refuse(Status::AUTH_REQUIRED.dnr())
            }
            _ => Verdict::Pass,
        }
    }

    /// Runs AUTH_Send (with its data) or AUTH_Receive.
    pub fn execute(&self, sqe: &Sqe, data: &[u8], counters: &Counters) -> Answer {
        let answer = |completion, data, exit| Answer {
            completion,
            data,
            exit,
        };
        let cmd = AuthCommand::from_sqe(sqe);
        let len = match cmd.check() {
            Ok(l) => l,
            Err(c) => return answer(c, None, None),
        };
        let mut txn = self.txn.borrow_mut();
        let Some(t) = txn.as_mut() else {
            // No secret for this host: nothing to authenticate.
            return answer(Completion::status(Status::INVALID_FIELD.dnr()), None, None);
        };
        let qid = self.qid.get();
        let hostnqn = self.hostnqn.borrow();
        let hostnqn = hostnqn.as_str();
        if sqe.fctype() == fctype::AUTH_SEND {
            if data.len() != len as usize {
                return answer(
                    Completion::status(Status::SGL_INVALID_DATA.dnr()),
                    None,
                    None,
                );
            }
            return match t.send(data) {
                SendOutcome::Continue => answer(Completion::success(0), None, None),
                SendOutcome::Authenticated => {
                    let (hash, group) = t.negotiated();
                    tracing::info!(
                        %hostnqn,
                        qid,
                        hash = hash.name(),
                        dhgroup = group.name(),
                        "queue authenticated (bidirectional)"
                    );
                    answer(Completion::success(0), None, None)
                }
                SendOutcome::HostFailed(f) => {
                    counters.protocol_error(Protocol::NvmeTcp, "auth_host_failure");
                    tracing::warn!(
                        %hostnqn,
                        qid,
                        reason = reason::describe(f.explanation),
                        "host ended authentication with AUTH_Failure2; ending the queue"
                    );
                    answer(Completion::success(0), None, Some(Exit::AuthFailed))
                }
            };
        }
        let out = t.receive(&mut rand::thread_rng());
        if (len as usize) < out.data.len() {
            return answer(
                Completion::status(Status::INVALID_FIELD.dnr()),
                None,
                Some(Exit::AuthFailed),
            );
        }
        let mut bytes = out.data;
        bytes.resize((len.min(MAX_MESSAGE_LEN) as usize).max(bytes.len()), 0);
        let exit = match out.then {
            After::Continue => None,
            After::Authenticated => {
                let (hash, group) = t.negotiated();
                tracing::info!(
                    %hostnqn,
                    qid,
                    hash = hash.name(),
                    dhgroup = group.name(),
                    "queue authenticated"
                );
                None
            }
            After::Terminate(why) => {
                counters.protocol_error(Protocol::NvmeTcp, "auth_failed");
                tracing::warn!(
                    %hostnqn,
                    qid,
                    reason = reason::describe(why),
                    "authentication failed: AUTH_Failure1 sent; ending the queue"
                );
                Some(Exit::AuthFailed)
            }
        };
        answer(Completion::success(0), Some(bytes), exit)
    }
}

/// Runs `end` after `within` on this reactor (the queue's end of an
/// abandoned transaction; `end` checks the queue still waits).
pub fn expire(within: Duration, end: impl FnOnce() -> Option<()> + 'static) {
    tokio::task::spawn_local(async move {
        tokio::time::sleep(within).await;
        if end().is_some() {
            tracing::warn!(
                ?within,
                "authentication not completed in time; ending the queue"
            );
        }
    });
}
