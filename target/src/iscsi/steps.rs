//! A SCSI command's steps on the shared engine (`crate::slots::Execute`):
//!
//! - lease: plan the CDB (the LUN's SCSI state machine) and, for a READ,
//!   lease its buffers;
//! - receive: collect the Data-Out (R2Ts for what was not sent unasked;
//!   data refused for lack of buffers is drained, TASK SET FULL);
//! - execute: the block operation of a READ or WRITE; any other plan runs
//!   whole in `exec` (control data, status and all — those commands are
//!   rare and their shapes many);
//! - send data: Data-In from the buffers the disk filled, status folded
//!   into the last Data-In (eager) or sent after the kernel released the
//!   pages (strict);
//! - send status: the SCSI Response, unless the task was aborted.

use std::rc::Rc;
use std::sync::Arc;

use zctarget_backends::DirectRange;
use zctarget_backends::SegmentList;
use zctarget_protocol::iscsi::{RejectReason, ScsiCommand};
use zctarget_protocol::scsi::{self, sense, IoState, Plan, Status};

use super::connection::{Connection, Residual};
use super::exec::{self, fault_sense, CHECK_CONDITION, GOOD};
use super::target::IscsiLun;
use crate::block;
use crate::slots::{DataSent, Execute};

/// A command in a slot.
pub struct IscsiCmd {
    pub(super) cmd: ScsiCommand,
    work: Work,
}

impl IscsiCmd {
    pub(super) fn new(cmd: ScsiCommand) -> Self {
        Self {
            cmd,
            work: Work::Unplanned,
        }
    }
}

/// Where a command is, and what it holds.
enum Work {
    Unplanned,
    /// A READ: `bytes` of whole blocks read, `len` of them sent.
    Read {
        lun: Arc<IscsiLun>,
        lba: u64,
        bytes: usize,
        len: usize,
        residual: Residual,
        buf: Option<SegmentList>,
        /// Sent from where the volume keeps it instead of `buf`
        /// (`block::direct_read`).
        direct: Option<DirectRange>,
    },
    /// A WRITE of `len` bytes at `offset`.
    Write {
        lun: Arc<IscsiLun>,
        offset: u64,
        len: usize,
        fua: bool,
        data: Option<SegmentList>,
    },
    /// Any other plan, run whole by `exec::execute_plan`.
    Other {
        plan: Plan,
        lun: Option<Arc<IscsiLun>>,
        write_cache: bool,
    },
    /// The status to send.
    Status {
        status: u8,
        sense: Option<Vec<u8>>,
        residual: Residual,
    },
    /// Answered (or nothing to answer).
    Done,
}

impl Work {
    fn good(residual: Residual) -> Self {
        Work::Status {
            status: GOOD,
            sense: None,
            residual,
        }
    }

    fn check(sense: scsi::Sense, residual: Residual) -> Self {
        Work::Status {
            status: CHECK_CONDITION,
            sense: Some(sense.fixed_format().to_vec()),
            residual,
        }
    }
}

impl Connection {
    /// Plans `cmd` against its LUN: what the execute step will do.
    fn plan_work(&self, cmd: &ScsiCommand) -> anyhow::Result<Work> {
        let Some(target) = self.target.as_ref() else {
            // Discovery sessions carry no SCSI commands (RFC 7143 §6.2).
            self.send_reject(RejectReason::ProtocolError, &cmd.encode())?;
            return Ok(Work::Done);
        };
        let edtl = cmd.expected_data_transfer_len;
        let lun = target.lun(u64::from_be_bytes(cmd.lun));
        let (plan, write_cache) = match &lun {
            Some(l) => self.plan_on(l, cmd),
            None => (
                scsi::plan_missing_lun(&cmd.cdb, &target.lun_numbers()),
                true,
            ),
        };
        tracing::debug!(op = cmd.cdb[0], ?plan, "planned");
        Ok(match (plan, lun) {
            // Bidirectional commands and writes without data keep the
            // general path.
            (Plan::Read { lba, blocks, .. }, Some(lun)) if !cmd.write => {
                let bytes = u64::from(blocks) * lun.block_size;
                let residual = Residual::of(edtl, bytes.min(u64::from(u32::MAX)) as u32);
                // Only what the initiator expects is sent (the residual
                // says the rest), but the disk is read in whole blocks.
                let len = bytes.min(u64::from(edtl)) as usize;
                if len == 0 || !cmd.read {
                    Work::good(residual)
                } else {
                    Work::Read {
                        lun,
                        lba,
                        bytes: bytes as usize,
                        len,
                        residual,
                        buf: None,
                        direct: None,
                    }
                }
            }
            (Plan::Write { lba, blocks, fua }, Some(lun)) if cmd.write && edtl > 0 => Work::Write {
                offset: lba * lun.block_size,
                len: (u64::from(blocks) * lun.block_size) as usize,
                // With the write cache off (caching mode page WCE=0) every
                // write is durable before GOOD.
                fua: fua || !write_cache,
                lun,
                data: None,
            },
            (plan, lun) => Work::Other {
                plan,
                lun,
                write_cache,
            },
        })
    }
}

impl Connection {
    /// Plans `cmd` on `lun`: a plain READ or WRITE without the LUN's lock
    /// when the state this nexus last confirmed under the lock is still the
    /// published one (no unit attention raised since, no reservation, the
    /// same mode bits); anything else under the lock, which confirms the
    /// state anew. Returns the plan and whether the write cache is on.
    fn plan_on(&self, lun: &IscsiLun, cmd: &ScsiCommand) -> (Plan, bool) {
        let published = lun.io_state();
        let confirmed = self
            .confirmed
            .borrow()
            .iter()
            .find(|(id, _)| *id == lun.id)
            .map_or(IoState::default(), |&(_, s)| s);
        if let Some(plan) = lun.planner.plan(published, confirmed, &cmd.cdb) {
            return (plan, published.write_cache());
        }
        let edtl = cmd.expected_data_transfer_len;
        let (plan, write_cache, state) = {
            let mut unit = lun.lock();
            let plan = unit.plan(self.nexus, &self.initiator_port, &cmd.cdb, edtl);
            let state = unit.confirmed_state(self.nexus, &self.initiator_port);
            (plan, unit.write_cache_enabled(), state)
        };
        self.reactor
            .shared
            .counters
            .scsi_locked_plans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut confirmed = self.confirmed.borrow_mut();
        match confirmed.iter_mut().find(|(id, _)| *id == lun.id) {
            Some(entry) => entry.1 = state,
            None => {
                if confirmed.len() >= MAX_CONFIRMED {
                    // LUNs come and go: forget the oldest (relocked once).
                    confirmed.remove(0);
                }
                confirmed.push((lun.id, state));
            }
        }
        (plan, write_cache)
    }
}

/// LUNs whose confirmed state a connection remembers.
const MAX_CONFIRMED: usize = 64;

/// The answer for a command that failed inside the target: HARDWARE
/// ERROR / INTERNAL TARGET FAILURE, so the initiator does not wait forever.
fn internal_failure(c: &mut IscsiCmd, e: &anyhow::Error) {
    tracing::warn!(error = %format!("{e:#}"), itt = c.cmd.itt, op = c.cmd.cdb[0], "command failed");
    c.work = Work::check(sense::INTERNAL_TARGET_FAILURE, Residual::default());
}

impl Execute for Rc<Connection> {
    type Cmd = IscsiCmd;

    async fn lease(&self, _idx: u16, c: &mut IscsiCmd) -> bool {
        c.work = match self.plan_work(&c.cmd) {
            Ok(w) => w,
            Err(e) => {
                internal_failure(c, &e);
                return true;
            }
        };
        if let Work::Read {
            lun,
            lba,
            bytes,
            len,
            buf,
            direct,
            ..
        } = &mut c.work
        {
            // A memory volume's store or a memory-backed file's pages go to
            // the socket as they are.
            if let Some(vol) = self.reactor.volume(lun.volume) {
                // Whether the send copies depends on what is sent: `len`.
                let (at, digest) = (*lba * lun.block_size, self.params.data_digest);
                *direct = block::direct_read(&vol, at, *bytes, digest, self.out.copies(*len));
                if direct.is_some() {
                    return true;
                }
            }
            match self.reactor.shared.pool.lease(*bytes).await {
                Ok(list) => *buf = Some(list),
                Err(e) => internal_failure(c, &e.into()),
            }
        }
        true
    }

    async fn receive(&self, idx: u16, c: &mut IscsiCmd) -> bool {
        let entry = self.tasks.slot(idx);
        let edtl = c.cmd.expected_data_transfer_len;
        if let Some(state) = entry.data_out().filter(|d| d.busy.get()) {
            // No buffers were free for the data the initiator sent unasked:
            // it is drained (the unsolicited burst included), then the
            // initiator is told to retry later (SAM-5 TASK SET FULL).
            let _ = self
                .collect_write_data(c.cmd.itt, c.cmd.lun, entry, state)
                .await;
            c.work = Work::Status {
                status: Status::TaskSetFull.code(),
                sense: None,
                residual: Residual::of(edtl, 0),
            };
            return true;
        }
        if let Work::Write { len, data, .. } = &mut c.work {
            // None: aborted, or the data phase broke (answered there).
            match exec::collect_or_nothing(self, &c.cmd, entry, *len).await {
                Some(d) => *data = Some(d),
                None => return false,
            }
        }
        // Other plans collect what they need themselves.
        true
    }

    async fn execute(&self, idx: u16, c: &mut IscsiCmd) {
        let entry = self.tasks.slot(idx);
        // Every command passes here before its backend I/O (those that
        // collect write data inside `execute_plan` pass the fence again
        // in `exec::collect`, once their data is in): one whose session
        // was asked to abort it since it was accepted — the reader may be
        // stalled inside a PDU and not have handled the ask — ends as any
        // aborted command does, without status, its buffers released
        // (`Connection::fenced`: one atomic load when nothing was asked).
        if self.fenced(entry) {
            c.work = Work::Done;
            return;
        }
        let edtl = c.cmd.expected_data_transfer_len;
        let volume = |lun: &IscsiLun| {
            self.reactor
                .volume(lun.volume)
                .ok_or_else(|| anyhow::anyhow!("no volume handle"))
        };
        match std::mem::replace(&mut c.work, Work::Done) {
            Work::Read {
                lun,
                lba,
                bytes,
                len,
                residual,
                buf: Some(buf),
                direct: _,
            } => {
                let vol = match volume(&lun) {
                    Ok(v) => v,
                    Err(e) => return internal_failure(c, &e),
                };
                let (buf, r) =
                    zctarget_backends::Backend::read(&*vol, lba * lun.block_size, buf).await;
                c.work = match r {
                    Ok(()) => Work::Read {
                        lun,
                        lba,
                        bytes,
                        len,
                        residual,
                        buf: Some(buf),
                        direct: None,
                    },
                    Err(error) => {
                        tracing::warn!(error = %error, lba, "read failed");
                        Work::check(sense::UNRECOVERED_READ_ERROR.with_info(lba), residual)
                    }
                };
            }
            Work::Write {
                lun,
                offset,
                len,
                fua,
                data: Some(mut data),
            } => {
                let vol = match volume(&lun) {
                    Ok(v) => v,
                    Err(e) => return internal_failure(c, &e),
                };
                let residual = Residual::of(edtl, len as u32);
                // An initiator that sends less than the CDB asks for (EDTL
                // too small) gets what it sent written, in whole blocks,
                // and an overflow residual.
                let bs = lun.block_size as usize;
                let len = len.min(data.len() / bs * bs);
                if len == 0 {
                    c.work = Work::good(residual);
                    return;
                }
                data.truncate(len);
                c.work = match block::write(&vol, offset, data, fua).await {
                    Ok(()) => Work::good(residual),
                    Err(e) => {
                        tracing::warn!(error = %e, offset, len, "write failed");
                        Work::check(fault_sense(&e, bs as u64), residual)
                    }
                };
            }
            Work::Other {
                plan,
                lun,
                write_cache,
            } => {
                let r = exec::execute_plan(self, &c.cmd, entry, lun.as_deref(), plan, write_cache)
                    .await;
                if let Err(e) = r {
                    internal_failure(c, &e);
                }
            }
            other => c.work = other,
        }
    }

    fn send_data(&self, idx: u16, c: &mut IscsiCmd) -> DataSent {
        let Work::Read {
            len,
            residual,
            buf,
            direct,
            ..
        } = &mut c.work
        else {
            return DataSent::Nothing;
        };
        let (len, residual) = (*len, *residual);
        let direct = direct.take();
        let buf = match (buf.take(), &direct) {
            (Some(buf), _) => buf,
            (None, Some(_)) => SegmentList::new(),
            (None, None) => return DataSent::Nothing,
        };
        if self.tasks.slot(idx).aborted.get() {
            c.work = Work::Done;
            return DataSent::Nothing;
        }
        let (itt, lun) = (c.cmd.itt, c.cmd.lun);
        // Strict waits for the kernel to release the data's pages; a
        // message sent by copy is released by the `sendmsg` that writes its
        // last byte, so its status can ride on the last Data-In as under
        // the eager policy (one PDU and no wake-up fewer per command).
        let fold = match self.status_policy() {
            crate::command::StatusPolicy::Eager => true,
            // A direct range is referenced, not ours: released once written.
            crate::command::StatusPolicy::Strict => direct.is_some() || self.out.copies(len),
        };
        match fold {
            true => {
                // Status rides on the last Data-In; the buffers stay pinned
                // until the kernel releases them (nobody waits for that).
                c.work = Work::Done;
                self.tasks.slot(idx).responded();
                match self.send_data_in_from(itt, lun, buf, direct, len, Some((GOOD, residual))) {
                    Ok(_) => DataSent::Untracked,
                    Err(e) => {
                        internal_failure(c, &e);
                        DataSent::Nothing
                    }
                }
            }
            false => {
                // Strict and zero-copy: the status goes only after the
                // kernel released every page of the data.
                c.work = Work::good(residual);
                match self.send_data_in_from(itt, lun, buf, direct, len, None) {
                    Ok(Some(released)) => DataSent::Tracked(released),
                    Ok(None) => DataSent::Nothing,
                    Err(e) => {
                        internal_failure(c, &e);
                        DataSent::Nothing
                    }
                }
            }
        }
    }

    fn send_status(&self, idx: u16, c: &mut IscsiCmd) {
        if let Work::Status {
            status,
            sense,
            residual,
        } = std::mem::replace(&mut c.work, Work::Done)
        {
            let entry = self.tasks.slot(idx);
            let sense = sense.as_deref().unwrap_or(&[]);
            let _ = exec::status(self, entry, c.cmd.itt, status, sense, residual);
        }
    }
}
