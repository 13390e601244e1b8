//! NVMe in-band authentication (DH-HMAC-CHAP) of one queue, between the
//! queue's PDU loop and the sans-IO transaction
//! (`zctarget_protocol::nvme::auth`).
//!
//! The queue calls in at a few places, each a few delimited lines
//! (`queue.rs`: the capsule hook and the deadline; `connect.rs`: Connect
//! and the keep-alive deadline):
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
    ReceiveOutcome, SendOutcome, CONNECT_AUTHREQ_ATR, MAX_MESSAGE_LEN,
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
    /// A step runs on the blocking pool (`txn` is lent to it): not yet
    /// authenticated as far as the deadline is concerned.
    stepping: std::cell::Cell<bool>,
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

    /// Runs AUTH_Send (with its data) or AUTH_Receive. With a DH group the
    /// transaction step runs on the blocking pool: an FFDHE exponentiation
    /// takes milliseconds to over a hundred (ffdhe8192) and would stall
    /// every connection of this reactor. The queue itself waits for it
    /// (its capsules are handled one at a time).
    pub async fn execute(&self, sqe: &Sqe, data: &[u8], counters: &Counters) -> Answer {
        let answer = |completion, data, exit| Answer {
            completion,
            data,
            exit,
        };
        let len = match AuthCommand::from_sqe(sqe).check() {
            Ok(l) => l,
            Err(c) => return answer(c, None, None),
        };
        let send = sqe.fctype() == fctype::AUTH_SEND;
        if send && data.len() != len as usize {
            return answer(
                Completion::status(Status::SGL_INVALID_DATA.dnr()),
                None,
                None,
            );
        }
        let Some(t) = self.txn.borrow_mut().take() else {
            // No secret for this host: nothing to authenticate.
            return answer(Completion::status(Status::INVALID_FIELD.dnr()), None, None);
        };
        self.stepping.set(!t.authenticated());
        let stepped = run(t, send, data).await;
        self.stepping.set(false);
        let Some((t, step)) = stepped else {
            tracing::error!(
                qid = self.qid.get(),
                "authentication step lost (blocking pool)"
            );
            return answer(
                Completion::status(Status::INTERNAL.dnr()),
                None,
                Some(Exit::AuthFailed),
            );
        };
        let a = self.conclude(&t, step, len, counters);
        *self.txn.borrow_mut() = Some(t);
        a
    }

    /// The answer to a transaction step, logged and counted.
    fn conclude(&self, t: &AuthController, step: Step, len: u32, counters: &Counters) -> Answer {
        let answer = |completion, data, exit| Answer {
            completion,
            data,
            exit,
        };
        let qid = self.qid.get();
        let hostnqn = self.hostnqn.borrow();
        let hostnqn = hostnqn.as_str();
        let (hash, group) = t.negotiated();
        let out = match step {
            Step::Sent(SendOutcome::Continue) => return answer(Completion::success(0), None, None),
            Step::Sent(SendOutcome::Authenticated) => {
                tracing::info!(
                    %hostnqn,
                    qid,
                    hash = hash.name(),
                    dhgroup = group.name(),
                    "queue authenticated (bidirectional)"
                );
                return answer(Completion::success(0), None, None);
            }
            Step::Sent(SendOutcome::HostFailed(f)) => {
                counters.protocol_error(Protocol::NvmeTcp, "auth_host_failure");
                tracing::warn!(
                    %hostnqn,
                    qid,
                    reason = reason::describe(f.explanation),
                    "host ended authentication with AUTH_Failure2; ending the queue"
                );
                return answer(Completion::success(0), None, Some(Exit::AuthFailed));
            }
            Step::Received(out) => out,
        };
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

/// One transaction step's result.
enum Step {
    Sent(SendOutcome),
    Received(ReceiveOutcome),
}

/// Runs one step of `t`: inline without a DH group, else on the blocking
/// pool. `None` if the blocking task was lost (runtime shutting down).
async fn run(t: AuthController, send: bool, data: &[u8]) -> Option<(AuthController, Step)> {
    let step = move |mut t: AuthController, data: Vec<u8>| {
        let s = if send {
            Step::Sent(t.send(&data))
        } else {
            Step::Received(t.receive(&mut rand::thread_rng()))
        };
        (t, s)
    };
    if t.negotiated().1 == DhGroup::Null {
        return Some(step(t, data.to_vec()));
    }
    let data = data.to_vec();
    tokio::task::spawn_blocking(move || step(t, data))
        .await
        .ok()
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
