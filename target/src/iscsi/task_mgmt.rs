//! Logout and task management (RFC 7143 §11.5, §11.14): aborting tasks in
//! their slots, LUN and target resets, closing the connection.

use zctarget_protocol::iscsi::{
    abort_task_reaches, abort_task_response, LogoutRequest, LogoutResponse, LogoutResponseCode,
    TaskMgmtFunction, TaskMgmtRequest, TaskMgmtResponse, TaskMgmtResponseCode,
};

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::connection::{Connection, LOGOUT_DRAIN};
use super::session::{AbortCause, Settling};
use super::task::TaskEntry;

/// What a task management request does after its aborts settled.
#[derive(Debug, Clone, Copy)]
enum After {
    /// Only answer.
    Answer,
    /// LOGICAL UNIT RESET of this LUN, then answer.
    LuReset(u64),
    /// A target reset, then answer (and end the sessions if cold).
    TargetReset { cold: bool },
}

/// How long an answer that aborted commands waits for those still
/// executing (`Connection::aborted_settled`).
pub(super) const ABORT_DRAIN: Duration = Duration::from_secs(5);

impl Connection {
    /// Logout (RFC 7143 §11.14, §11.15). Closing the session or this
    /// connection terminates the connection's tasks (ERL 0): they are
    /// aborted — a write waiting for Data-Out ends at once instead of
    /// holding the reader — and the response goes out once the running
    /// ones have let go of their buffers (bounded). `Ok(true)`: the
    /// connection closes.
    pub(super) async fn on_logout(&self, req: LogoutRequest) -> anyhow::Result<bool> {
        use zctarget_protocol::iscsi::LogoutReason;
        // Outside the window: silently ignored (RFC 7143 §3.2.2.1), the
        // connection stays.
        if !self.accept_cmd_sn(req.immediate, req.cmd_sn) {
            return Ok(false);
        }
        let response = match req.reason {
            LogoutReason::CloseSession => LogoutResponseCode::ClosedSuccessfully,
            LogoutReason::CloseConnection if req.cid == self.params.cid => {
                LogoutResponseCode::ClosedSuccessfully
            }
            // MaxConnections=1: no other connection of this session exists.
            LogoutReason::CloseConnection => LogoutResponseCode::CidNotFound,
            // ErrorRecoveryLevel 0: no connection recovery.
            _ => LogoutResponseCode::RecoveryNotSupported,
        };
        let closes = response == LogoutResponseCode::ClosedSuccessfully;
        if closes {
            self.abort_tasks(None);
            self.slots.drained(LOGOUT_DRAIN).await;
        }
        let rsp = LogoutResponse {
            response,
            itt: req.itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            time2wait: 0,
            time2retain: 0,
            ..Default::default()
        };
        self.send_control(rsp.encode(), &[])?;
        Ok(closes)
    }

    /// A task management request. What it aborts is aborted here, in the
    /// order PDUs arrive — on this connection, and, for the functions that
    /// concern every I_T nexus (CLEAR TASK SET, LOGICAL UNIT RESET, the
    /// target resets: SAM-5 §7.4, §7.7, §6.3), by asking the target's
    /// other sessions through the session table. The wait for aborted
    /// commands still executing (`aborted_settled` here, `Settling` there),
    /// the reset that follows and the answer run on a task of their own,
    /// so the reader keeps reading — the Data-Out an aborted command may
    /// still need included.
    pub(super) fn on_task_mgmt(self: &Rc<Self>, req: TaskMgmtRequest) {
        // RFC 7143 §3.2.2.1: a non-immediate request outside the command
        // window is silently ignored, as SCSI commands are — not carried
        // out, not answered. Immediate ones are not subject to the window.
        if !self.accept_cmd_sn(req.immediate, req.cmd_sn) {
            return;
        }
        let lun = u64::from_be_bytes(req.lun);
        let lun_id = self.target.as_ref().and_then(|t| t.lun(lun)).map(|l| l.id);
        // What to wait for (None: nothing; Some(None): every LUN), then do.
        let mut wait = None;
        let mut then = After::Answer;
        // The other sessions asked to abort their tasks too.
        let mut others = None;
        let response = match req.function {
            TaskMgmtFunction::AbortTask => {
                let pending = self
                    .tasks
                    .find(req.referenced_task_tag)
                    .filter(|t| abort_task_reaches(&req, t.lun.get().to_be_bytes(), t.pending()));
                if let Some(t) = pending {
                    t.abort();
                    wait = Some(Some(t.lun.get()));
                }
                abort_task_response(pending.is_some(), &req, &self.window.get())
            }
            // ABORT TASK SET: this I_T nexus's tasks only (SAM-5 §7.3).
            TaskMgmtFunction::AbortTaskSet => {
                self.abort_tasks(Some(lun));
                wait = Some(Some(lun));
                TaskMgmtResponseCode::FunctionComplete
            }
            // CLEAR TASK SET: the task set is shared (control mode page
            // TST 000), so every nexus's tasks on the logical unit go.
            TaskMgmtFunction::ClearTaskSet => {
                self.abort_tasks(Some(lun));
                wait = Some(Some(lun));
                if let Some(id) = lun_id {
                    others = self.abort_others(Some(id), AbortCause::TaskSetCleared);
                }
                TaskMgmtResponseCode::FunctionComplete
            }
            TaskMgmtFunction::LogicalUnitReset => match lun_id {
                Some(id) => {
                    self.abort_tasks(Some(lun));
                    wait = Some(Some(lun));
                    others = self.abort_others(Some(id), AbortCause::Reset);
                    then = After::LuReset(lun);
                    TaskMgmtResponseCode::FunctionComplete
                }
                None => TaskMgmtResponseCode::LunDoesNotExist,
            },
            TaskMgmtFunction::TargetWarmReset | TaskMgmtFunction::TargetColdReset => {
                self.abort_tasks(None);
                wait = Some(None);
                others = self.abort_others(None, AbortCause::Reset);
                then = After::TargetReset {
                    cold: req.function == TaskMgmtFunction::TargetColdReset,
                };
                TaskMgmtResponseCode::FunctionComplete
            }
            _ => TaskMgmtResponseCode::FunctionNotSupported,
        };
        let conn = Rc::clone(self);
        tokio::task::spawn_local(async move {
            let own = async {
                if let Some(lun) = wait {
                    conn.aborted_settled(lun).await;
                }
            };
            let theirs = async {
                if let Some(settling) = others {
                    settling.wait(&format!("{:?}", req.function)).await;
                }
            };
            tokio::join!(own, theirs);
            if let Err(e) = conn.finish_task_mgmt(&req, response, then).await {
                conn.fatal.fail(format!("{e:#}"));
            }
        });
    }

    /// Asks the target's other sessions to abort their tasks on the LUN
    /// `lun_id` (every LUN: None); what says when they settled.
    fn abort_others(&self, lun_id: Option<u64>, cause: AbortCause) -> Option<Arc<Settling>> {
        let target = self.target.as_ref()?;
        Some(self.reactor.shared.iscsi.sessions.abort_others(
            &target.iqn,
            &self.session_info,
            lun_id,
            cause,
        ))
    }

    /// The reset a task management request asks for, then its answer.
    async fn finish_task_mgmt(
        &self,
        req: &TaskMgmtRequest,
        response: TaskMgmtResponseCode,
        then: After,
    ) -> anyhow::Result<()> {
        let mut cold_reset_target = None;
        match (then, self.target.as_ref()) {
            (After::LuReset(lun), Some(target)) => {
                if let Some(l) = target.lun(lun) {
                    l.reset(zctarget_protocol::scsi::ResetKind::LogicalUnit, self.nexus);
                    self.share_lu_reset(l.volume).await;
                }
            }
            (After::TargetReset { cold }, Some(target)) => {
                let kind = if cold {
                    zctarget_protocol::scsi::ResetKind::TargetCold
                } else {
                    zctarget_protocol::scsi::ResetKind::TargetWarm
                };
                target.reset_all(kind, self.nexus);
                if cold {
                    // RFC 7143 §11.5.1: a cold reset also ends every
                    // session of the target, this one included, once the
                    // response is queued.
                    cold_reset_target = Some(target.iqn.clone());
                }
            }
            _ => {}
        }
        let rsp = TaskMgmtResponse {
            response,
            itt: req.itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rsp.encode(), &[])?;
        if let Some(iqn) = cold_reset_target {
            self.reactor.shared.iscsi.sessions.kill_target(&iqn);
        }
        Ok(())
    }

    /// Waits, bounded by [`ABORT_DRAIN`], until no aborted task on `lun`
    /// (any LUN: None) is still executing — its backend I/O the only step
    /// of an aborted command that can still change the medium (one waiting
    /// for buffers or data sees the abort before it executes). A sanitize
    /// operation is not waited for: it continues after any abort or reset
    /// by design (SBC-4 §4.11), and the unit says SANITIZE IN PROGRESS.
    /// The answer to what aborted them (a task management request,
    /// PREEMPT AND ABORT) goes out after this, so no aborted write lands after it
    /// (SAM-5 §7.11: a task is aborted when it can no longer affect the
    /// logical unit). Checked every millisecond: task management is rare,
    /// and a notification per retiring command would cost every command.
    pub(super) async fn aborted_settled(&self, lun: Option<u64>) {
        let executing = || {
            (0..self.slots.len()).any(|i| {
                let idx = i as u16;
                let t = self.tasks.slot(idx);
                t.itt().is_some()
                    && t.aborted.get()
                    && !t.outlives_abort.get()
                    && lun.is_none_or(|l| t.lun.get() == l)
                    && self.slots.state(idx) == crate::command::CommandState::Executing
            })
        };
        let deadline = tokio::time::Instant::now() + ABORT_DRAIN;
        while executing() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    ?lun,
                    "aborted commands still executing after {ABORT_DRAIN:?}"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Aborts this connection's active tasks on `lun` (every LUN: None):
    /// no status, and a write waiting for Data-Out ends at once.
    pub(super) fn abort_tasks(&self, lun: Option<u64>) {
        for t in self.tasks.active() {
            if lun.is_none_or(|l| t.lun.get() == l) {
                t.abort();
            }
        }
    }

    /// Another I_T nexus asked this one to abort its tasks on a LUN (or
    /// every LUN), `SessionEvents`: PREEMPT AND ABORT preempted its
    /// registration (SPC-4 §5.13.11.2.3), or a CLEAR TASK SET, LOGICAL
    /// UNIT RESET or target reset concerns them (SAM-5 §7). They are
    /// aborted at once, as ABORT TASK SET aborts them — no status (TAS
    /// 0), and a write waiting for Data-Out ends, letting go of its
    /// buffers. After a CLEAR TASK SET that cleared any of them, this
    /// nexus gets COMMANDS CLEARED BY ANOTHER INITIATOR on that LUN
    /// (SAM-5 §5.6), before the issuer is answered. Once none of them
    /// executes any more, the tokens go and the request that asked is
    /// answered (`Settling`).
    pub(super) fn abort_asked(self: &Rc<Self>) {
        let asked = self.session_info.events.take();
        if asked.is_empty() {
            // Handled already (by the reader or a command's fence).
            return;
        }
        // LUN fields to wait on (None: every LUN).
        let mut luns: Vec<Option<u64>> = Vec::new();
        if let Some(target) = self.target.as_ref() {
            for ask in &asked {
                let mut cleared = None;
                for t in self.tasks.active() {
                    let lun = t.lun.get();
                    let hit = match ask.lun_id {
                        None => true,
                        Some(id) => target.lun(lun).is_some_and(|l| l.id == id),
                    };
                    if !hit {
                        continue;
                    }
                    // A task is cleared if this abort ends it: still to
                    // answer, not aborted before, not a sanitize.
                    if t.pending() && !t.aborted.get() && !t.outlives_abort.get() {
                        cleared = Some(lun);
                    }
                    t.abort();
                    let wait = ask.lun_id.map(|_| lun);
                    if !luns.contains(&wait) {
                        luns.push(wait);
                    }
                }
                if ask.cause == AbortCause::TaskSetCleared {
                    if let Some(l) = cleared.and_then(|lun| target.lun(lun)) {
                        l.lock().commands_cleared(self.nexus);
                    }
                }
            }
        }
        let conn = Rc::clone(self);
        tokio::task::spawn_local(async move {
            if luns.contains(&None) {
                conn.aborted_settled(None).await;
            } else {
                for lun in luns {
                    conn.aborted_settled(lun).await;
                }
            }
            drop(asked);
        });
    }

    /// The fence before a command's backend I/O, run on the command's
    /// worker: when other I_T nexuses asked this session to abort tasks
    /// since the command was accepted (the session's ask count changed,
    /// `SessionEvents::asked`), the asks are handled here at once
    /// ([`abort_asked`](Self::abort_asked)) instead of waiting for the
    /// reader, which handles them only between PDUs and may be stalled
    /// inside one (a host paused mid-Data-Out) past the asker's bound
    /// (`session::OTHERS_SETTLE`). True when the command is aborted: it must not
    /// execute, or an aborted or fenced write would land after the
    /// PREEMPT AND ABORT (SPC-4 §5.13.11.2.3), CLEAR TASK SET or reset
    /// (SAM-5 §7) that aborted it was answered. When nothing was asked it
    /// costs one atomic load and a compare — no lock.
    pub(super) fn fenced(self: &Rc<Self>, entry: &TaskEntry) -> bool {
        if entry.asks_changed(self.session_info.events.asked()) {
            // The count is recorded before the asks are taken: one made
            // after this load changes it again for the next check.
            self.abort_asked();
        }
        entry.aborted.get()
    }

    /// A LOGICAL UNIT RESET concerns every I_T nexus of the logical unit,
    /// those of the other gateways of a cluster too: with the peer link,
    /// they raise the same unit attention before the reset is answered
    /// (bounded by `peer::UA_WAIT`).
    async fn share_lu_reset(&self, slot: usize) {
        let shared = &self.reactor.shared;
        let Some(link) = &shared.peer else { return };
        if let Some(id) = crate::peer::Link::identity_of(shared, slot) {
            link.share_ua(&id, zctarget_protocol::peer::SharedUa::LuReset)
                .await;
        }
    }
}
