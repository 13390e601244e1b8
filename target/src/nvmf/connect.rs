//! A queue's control path: Fabrics Connect (creating or joining the
//! controller), admin commands planned by the controller state machine and
//! answered inline, asynchronous events and keep-alive.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use zctarget_protocol::nvme::fabrics::{ConnectData, CONNECT_DATA_LEN};
use zctarget_protocol::nvme::{AdminPlan, Completion, Sqe, Status};
use zctarget_protocol::nvme_tcp::SqHead;

use super::io::IoQueue;
use super::queue::{Bound, Exit, Queue};
use super::reader::{Header, PduReader};
use super::ControllerEntry;
use crate::command::StatusPolicy;

/// Fabrics CONNECT fctype.
const FCTYPE_CONNECT: u8 = 0x01;

impl Queue {
    pub(super) fn kill_switch(&self) -> Option<watch::Receiver<bool>> {
        self.bound
            .borrow()
            .as_ref()
            .map(|b| b.entry.kill.subscribe())
    }

    /// The status policy configured for the daemon.
    pub(super) fn status_policy(&self) -> StatusPolicy {
        match self.reactor.shared.server.status_policy {
            zctarget_config::StatusPolicy::Strict => StatusPolicy::Strict,
            zctarget_config::StatusPolicy::Eager => StatusPolicy::Eager,
        }
    }

    /// The controller, when this is its admin queue.
    pub(super) fn admin_entry(&self) -> Option<Arc<ControllerEntry>> {
        let b = self.bound.borrow();
        let b = b.as_ref()?;
        (b.qid == 0).then(|| Arc::clone(&b.entry))
    }

    /// Completes parked Asynchronous Event Requests with the events
    /// administration raised.
    pub(super) fn send_events(&self) -> anyhow::Result<()> {
        let Some(entry) = self.admin_entry() else {
            return Ok(());
        };
        let events = std::mem::take(&mut *entry.events.lock().unwrap_or_else(|e| e.into_inner()));
        for e in events {
            tracing::info!(cid = e.cid, "asynchronous event completed");
            self.send_completion(e.cid, e.completion)?;
        }
        Ok(())
    }

    pub(super) fn keep_alive_deadline(&self) -> Option<Instant> {
        let b = self.bound.borrow();
        let b = b.as_ref()?;
        if b.qid != 0 {
            return None;
        }
        // DH-HMAC-CHAP hook: no keep-alive timeout while the admin queue
        // authenticates (the host computes its DH value between commands;
        // the authentication deadline bounds this time).
        if self.auth.pending() {
            return None;
        }
        let kato = b.entry.ctrl.lock().ok()?.kato_ms();
        if kato == 0 {
            return None;
        }
        Some(self.last_keep_alive.get() + Duration::from_millis(u64::from(kato)))
    }

    pub(super) fn keep_alive_expired(&self) -> bool {
        self.keep_alive_deadline()
            .is_some_and(|d| Instant::now() >= d)
    }

    pub(super) async fn on_connect(
        &self,
        reader: &mut PduReader,
        h: &Header,
        sqe: &Sqe,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        if let Err(e) = reader.read_data(h, data).await {
            return self.data_error(e, h, sqe.cid);
        }
        if !sqe.is_fabrics() || sqe.fctype() != FCTYPE_CONNECT {
            // Anything before Connect: command sequence error (Fabrics 1.1
            // §3.3: the first command on a queue is Connect).
            self.send_completion(sqe.cid, Completion::status(Status::CMD_SEQ_ERROR.dnr()))?;
            return Ok(None);
        }
        let qid = (sqe.cdw10 >> 16) as u16;
        let parsed = if data.len() == CONNECT_DATA_LEN {
            ConnectData::parse(data)
        } else {
            Err(Completion::status(Status::SGL_INVALID_DATA.dnr()))
        };
        let cd = match parsed {
            Ok(cd) => cd,
            Err(c) => {
                self.send_completion(sqe.cid, c)?;
                return Ok(None);
            }
        };
        if qid == 0 && cd.hostnqn.is_empty() {
            tracing::info!(subnqn = %cd.subnqn, "Connect with an empty HOSTNQN");
        }
        let registry = self.registry();
        let entry = if qid == 0 {
            registry.create_controller(&cd.subnqn, &cd.hostnqn, self.out.stream().local_addr().ok())
        } else {
            registry.controller(cd.cntlid)
        };
        let Some(entry) = entry else {
            tracing::info!(subnqn = %cd.subnqn, hostnqn = %cd.hostnqn, qid, "Connect to an unknown subsystem or controller");
            let c = zctarget_protocol::nvme::fabrics::invalid_param(
                true,
                if qid == 0 { 256 } else { 16 },
            );
            self.send_completion(sqe.cid, c)?;
            return Ok(None);
        };
        let mut outcome = match entry.ctrl.lock() {
            Ok(mut ctrl) => {
                let outcome = ctrl.connect(sqe, data);
                entry.refresh_io_view(&ctrl);
                outcome
            }
            Err(_) => anyhow::bail!("controller state poisoned"),
        };
        let cntlid = entry.ctrl.lock().map(|c| c.cntlid()).unwrap_or(0);
        match outcome.queue {
            Some(q) => {
                tracing::info!(
                    subnqn = %cd.subnqn,
                    hostnqn = %cd.hostnqn,
                    cntlid,
                    qid,
                    sq_entries = q.sq_entries,
                    "queue connected"
                );
                entry.queues.fetch_add(1, Ordering::Relaxed);
                if qid == 0 {
                    if let Ok(mut a) = entry.host_address.lock() {
                        *a = self.out.stream().peer_addr().ok();
                    }
                }
                *self.bound.borrow_mut() = Some(Bound { qid, cntlid, entry });
                // Placement weighs I/O: an admin queue (discovery included)
                // carries none. Said before the completion goes out, so the
                // host's I/O queues are placed knowing it.
                if qid == 0 {
                    self.placement.carries(crate::placement::WORK_CONTROL);
                }
                if qid != 0 {
                    // One slot per submission queue entry: a host within
                    // its queue size always finds one.
                    let _ = self
                        .io
                        .set(IoQueue::new(q.sq_entries as usize, self.status_policy()));
                }
                self.last_keep_alive.set(Instant::now());
                // DH-HMAC-CHAP hook: AUTHREQ.ATR for hosts with a secret.
                outcome.completion = self.auth.on_connect(
                    registry,
                    &cd.subnqn,
                    &cd.hostnqn,
                    qid,
                    outcome.completion,
                );
                // The Connect itself was the first command fetched.
                let mut head = SqHead::new(q.sq_entries, q.sq_flow_control_disabled);
                head.advance();
                self.sqhd.set(head);
            }
            None => {
                tracing::info!(
                    subnqn = %cd.subnqn,
                    hostnqn = %cd.hostnqn,
                    qid,
                    status = ?outcome.completion.status,
                    "Connect refused"
                );
                if qid == 0 {
                    registry.remove_controller(cntlid);
                }
            }
        }
        self.send_completion(sqe.cid, outcome.completion)?;
        Ok(None)
    }

    pub(super) fn entry(&self) -> Option<Arc<ControllerEntry>> {
        self.bound.borrow().as_ref().map(|b| Arc::clone(&b.entry))
    }

    pub(super) fn on_admin(&self, sqe: &Sqe, data: &[u8]) -> anyhow::Result<Option<Exit>> {
        let Some(entry) = self.entry() else {
            return Ok(None);
        };
        let plan = {
            let mut ctrl = entry
                .ctrl
                .lock()
                .map_err(|_| anyhow::anyhow!("controller state poisoned"))?;
            let before = ctrl.keep_alive_seq();
            if sqe.opcode == zctarget_protocol::nvme::admin_opcode::GET_LOG_PAGE {
                ctrl.set_health(entry.stats.health());
            }
            let plan = ctrl.plan_admin(sqe, data);
            entry.refresh_io_view(&ctrl);
            if ctrl.keep_alive_seq() != before {
                self.last_keep_alive.set(Instant::now());
            }
            plan
        };
        match plan {
            AdminPlan::Complete {
                completion,
                data: Some(bytes),
            } => self.send_control_data(sqe.cid, &bytes, completion)?,
            AdminPlan::Complete {
                completion,
                data: None,
            } => self.send_completion(sqe.cid, completion)?,
            // Held until an event occurs; the controller keeps the CID.
            AdminPlan::Park => {}
        }
        Ok(None)
    }
}
