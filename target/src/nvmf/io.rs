//! An I/O queue's commands on the shared command engine (`crate::slots`):
//! the reader plans a capsule, takes a slot and wakes its worker; the
//! worker drives the command's lifecycle through this module's
//! [`Execute`] steps — lease buffers, fetch write data with one R2T per
//! command (its transfer tag names the slot; `h2c`), run the block operation,
//! send C2HData and the completion per the status policy.
//!
//! Nothing here allocates per command: the slot, its H2C transfer state
//! and its worker are the queue's, reused; the buffers are pool leases.

mod h2c;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::Notify;
use zctarget_backends::{DirectRange, SegmentList};
use zctarget_protocol::nvme::{Completion, IoPlan, Sqe, Status};
use zctarget_protocol::nvme_tcp::H2cTransfer;

use super::queue::{Exit, Queue};
use super::reader::{Header, PduReader};
use super::ControllerEntry;
use crate::admission::HostDataGrant;
use crate::block::{self, Fault};
use crate::command::StatusPolicy;
use crate::slots::{self, DataSent, Execute, Slots};

/// An I/O queue's engine state: its slots and, per slot, the H2C transfer
/// of the command in it.
pub(super) struct IoQueue {
    pub(super) slots: Slots<IoCmd>,
    h2c: Box<[H2cSlot]>,
}

/// Write data arriving by H2CData for the command in one slot.
#[derive(Default)]
struct H2cSlot {
    transfer: Cell<Option<H2cTransfer>>,
    payload: RefCell<Option<SegmentList>>,
    /// The connection's admission quota, held until all data is in.
    grant: RefCell<Option<HostDataGrant>>,
    done: Notify,
    aborted: Cell<bool>,
    /// The data arrived with a bad digest: the command fails with
    /// Transient Transport Error.
    digest_failed: Cell<bool>,
}

/// One I/O command in a slot.
pub struct IoCmd {
    cid: u16,
    plan: IoPlan,
    /// Volatile write cache enabled (else every write is FUA).
    wce: bool,
    entry: Arc<ControllerEntry>,
    /// In-capsule data, H2C data, or read data.
    data: Option<SegmentList>,
    /// Read data sent from where the volume keeps it instead
    /// (`block::direct_read`).
    direct: Option<DirectRange>,
    /// The completion to send; None until the command has an outcome.
    outcome: Option<Completion>,
    /// The C2HData carried SUCCESS: no CapsuleResp.
    status_sent: bool,
}

impl Drop for IoCmd {
    fn drop(&mut self) {
        self.entry.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl IoQueue {
    pub(super) fn new(entries: usize, policy: StatusPolicy) -> Self {
        let slots = Slots::new(entries, policy);
        let h2c = (0..slots.len()).map(|_| H2cSlot::default()).collect();
        Self { slots, h2c }
    }

    /// Commands waiting for host data give up (teardown; the driver then
    /// closes the slots).
    pub(super) fn abort_transfers(&self) {
        for s in self.h2c.iter() {
            s.aborted.set(true);
            s.done.notify_one();
        }
    }
}

/// Bytes of host data the plan transfers, and whether they come in the
/// capsule.
fn host_data(plan: &IoPlan) -> Option<(u32, bool)> {
    match *plan {
        IoPlan::Write {
            len, in_capsule, ..
        }
        | IoPlan::Dsm {
            len, in_capsule, ..
        }
        | IoPlan::Compare {
            len, in_capsule, ..
        } => Some((len, in_capsule)),
        _ => None,
    }
}

/// A slot's worker: runs the slot's commands until the queue closes.
async fn worker(q: Rc<Queue>, idx: u16) {
    let Some(io) = q.io.get() else {
        return;
    };
    while let Some(cmd) = io.slots.next(idx).await {
        let host = host_data(&cmd.plan).is_some();
        let reads = matches!(cmd.plan, IoPlan::Read { .. });
        slots::drive(&*q, &io.slots, idx, cmd, host, reads).await;
    }
}

impl Queue {
    pub(super) async fn on_io(
        self: &Rc<Self>,
        reader: &mut PduReader,
        h: &Header,
        sqe: Sqe,
    ) -> anyhow::Result<Option<Exit>> {
        let (Some(entry), Some(io)) = (self.entry(), self.io.get()) else {
            return Ok(None);
        };
        // Planned from the controller's snapshot: no lock per command.
        let (plan, wce) = {
            let view = entry.io_view.load();
            (view.plan_io(&sqe), view.write_cache_enabled())
        };
        let carried = h.layout.data_len;
        let capsule_len = match host_data(&plan) {
            Some((len, true)) => Some(len as usize),
            _ => None,
        };
        match capsule_len {
            Some(len) if len != carried => {
                // The capsule must carry exactly what its SGL describes (and
                // the SGL what the command transfers, checked by the plan):
                // nothing reaches the backend otherwise.
                tracing::info!(
                    cid = sqe.cid,
                    sgl = len,
                    carried,
                    "in-capsule data length differs from the SGL"
                );
                return self
                    .refuse_capsule(reader, h, sqe.cid, Status::SGL_INVALID_DATA.dnr())
                    .await;
            }
            None if carried > 0 && !matches!(plan, IoPlan::Error(_)) => {
                // Data in a capsule whose SGL does not describe in-capsule
                // data.
                return self
                    .refuse_capsule(reader, h, sqe.cid, Status::SGL_INVALID_DATA.dnr())
                    .await;
            }
            _ => {}
        }
        match plan {
            IoPlan::Error(s) => return self.refuse_capsule(reader, h, sqe.cid, s).await,
            IoPlan::Nop => {
                return self
                    .refuse_capsule(reader, h, sqe.cid, Status::SUCCESS)
                    .await
            }
            IoPlan::Disconnect => {
                self.send_completion(sqe.cid, Completion::SUCCESS)?;
                return Ok(Some(Exit::Disconnected));
            }
            _ => {}
        }
        if io.slots.busy() == io.slots.len() {
            // More commands than the queue has entries: the host ignored
            // SQHD. It may retry (Command Interrupted, no DNR).
            self.reactor
                .shared
                .counters
                .protocol_error(crate::daemon::Protocol::NvmeTcp, "queue_overflow");
            return self
                .refuse_capsule(reader, h, sqe.cid, Status::CMD_INTERRUPTED)
                .await;
        }
        // Write data that came in the capsule goes straight into leased
        // buffers; control data (DSM ranges, compare data) too.
        let mut data = None;
        if let Some(len) = capsule_len {
            match self.admission.try_now(len, true) {
                Ok(Some((mut list, _grant))) => {
                    if let Err(e) = reader.read_data_into(h, &mut list, 0).await {
                        return self.data_error(e, h, sqe.cid);
                    }
                    data = Some(list);
                }
                Ok(None) | Err(_) => {
                    // The data is on the wire and no buffers are free now:
                    // drained, and the host retries (Command Interrupted,
                    // no DNR).
                    self.reactor.shared.pool.note_backpressure();
                    return self
                        .refuse_capsule(reader, h, sqe.cid, Status::CMD_INTERRUPTED)
                        .await;
                }
            }
        }
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        let cmd = IoCmd {
            cid: sqe.cid,
            plan,
            wce,
            entry,
            data,
            direct: None,
            outcome: None,
            status_sent: false,
        };
        match io.slots.start(cmd) {
            Ok((idx, true)) => {
                let workers = &self.reactor.shared.counters.command_workers;
                workers[1].fetch_add(1, Ordering::Relaxed);
                tokio::task::spawn_local(worker(Rc::clone(self), idx));
            }
            Ok((_, false)) => {}
            // Checked above; closing: nothing to answer.
            Err(cmd) => drop(cmd),
        }
        Ok(None)
    }

    /// Answers a capsule with `status` at once, after draining its data.
    pub(super) async fn refuse_capsule(
        &self,
        reader: &mut PduReader,
        h: &Header,
        cid: u16,
        status: Status,
    ) -> anyhow::Result<Option<Exit>> {
        if let Err(e) = reader.skip_data(h).await {
            return self.data_error(e, h, cid);
        }
        self.send_completion(cid, Completion::status(status))?;
        Ok(None)
    }

    /// Waits until `f` resolves or the queue closes; None if it closed.
    async fn unless_closing<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        let closed = async {
            loop {
                let n = self.closed.notified();
                if self.closing.get() {
                    return;
                }
                n.await;
            }
        };
        tokio::select! {
            r = f => Some(r),
            () = closed => None,
        }
    }

    fn volume(
        &self,
        entry: &ControllerEntry,
        nsid: u32,
    ) -> Option<Rc<zctarget_backends::VolumeHandle>> {
        let v = entry.subsystem.as_ref()?.volume(nsid)?;
        self.reactor.volume(v)
    }

    /// Runs the block operation of `cmd`'s plan; its completion.
    async fn run_plan(&self, cmd: &mut IoCmd) -> Result<Completion, Fault> {
        let entry = &cmd.entry;
        let pool = &self.reactor.shared.pool;
        let ok = Completion::SUCCESS;
        let nsid = match cmd.plan {
            IoPlan::Read { nsid, .. }
            | IoPlan::Write { nsid, .. }
            | IoPlan::WriteZeroes { nsid, .. }
            | IoPlan::Dsm { nsid, .. }
            | IoPlan::Compare { nsid, .. }
            | IoPlan::Verify { nsid, .. }
            | IoPlan::Flush { nsid } => nsid,
            _ => return Ok(ok),
        };
        if let IoPlan::Flush { .. } = cmd.plan {
            let Some(sub) = entry.subsystem.as_ref() else {
                return Ok(ok);
            };
            if nsid == zctarget_protocol::nvme::NSID_ALL {
                for n in sub.namespaces().iter() {
                    if let Some(vol) = self.volume(entry, n.nsid) {
                        block::flush(&vol).await?;
                    }
                }
            } else if let Some(vol) = self.volume(entry, nsid) {
                block::flush(&vol).await?;
            }
            return Ok(ok);
        }
        let Some(vol) = self.volume(entry, nsid) else {
            tracing::warn!(nsid, "no volume behind the namespace");
            return Ok(Completion::status(Status::INTERNAL));
        };
        let stats = &entry.stats;
        match cmd.plan {
            IoPlan::Read { offset, len, .. } => {
                // A memory volume's store or a memory-backed file's pages go
                // to the socket as they are.
                let len_b = len as usize;
                let copies = self.out.copies(len_b);
                match block::direct_read(&vol, offset, len_b, self.ddgst, copies) {
                    Some(direct) => cmd.direct = Some(direct),
                    None => cmd.data = Some(block::read(&vol, pool, offset, len_b).await?),
                }
                stats
                    .bytes_read
                    .fetch_add(u64::from(len), Ordering::Relaxed);
                stats.reads.fetch_add(1, Ordering::Relaxed);
            }
            IoPlan::Write {
                offset, len, fua, ..
            } => {
                let Some(mut data) = cmd.data.take() else {
                    return Ok(Completion::status(Status::INTERNAL));
                };
                data.truncate(len as usize);
                block::write(&vol, offset, data, fua || !cmd.wce).await?;
                stats
                    .bytes_written
                    .fetch_add(u64::from(len), Ordering::Relaxed);
                stats.writes.fetch_add(1, Ordering::Relaxed);
            }
            IoPlan::WriteZeroes {
                offset,
                len,
                deallocate,
                fua,
                ..
            } => block::zero(&vol, offset, len, deallocate, fua).await?,
            IoPlan::Dsm { ranges, .. } => {
                let Some(list) = cmd.data.take() else {
                    return Ok(Completion::status(Status::INTERNAL));
                };
                // A rare command: its ranges are copied out of the lease.
                let mut bytes = vec![0u8; usize::from(ranges) * 16];
                list.copy_to_slice(0, &mut bytes);
                drop(list);
                let parsed = entry.io_view.load().dsm_ranges(nsid, &bytes);
                let ranges = match parsed {
                    Ok(r) => r,
                    Err(s) => return Ok(Completion::status(s)),
                };
                for r in ranges {
                    block::discard(&vol, r.offset, r.len).await?;
                }
            }
            IoPlan::Compare { offset, .. } => {
                let Some(host) = cmd.data.take() else {
                    return Ok(Completion::status(Status::INTERNAL));
                };
                if block::compare(&vol, pool, offset, &host).await?.is_some() {
                    return Ok(Completion::status(Status::COMPARE_FAILURE));
                }
            }
            IoPlan::Verify { offset, len, .. } => block::verify(&vol, pool, offset, len).await?,
            _ => {}
        }
        Ok(ok)
    }
}

/// The NVMe status for a block fault.
fn fault_status(entry: &ControllerEntry, fault: &Fault) -> Completion {
    if let Fault::NotOwner { fenced, .. } = fault {
        // Another gateway owns the volume (Asymmetric Access Transition:
        // the host retries on the other path), or this one lost the lock.
        return Completion::status(if *fenced {
            Status::ANA_INACCESSIBLE
        } else {
            Status::ANA_TRANSITION
        });
    }
    tracing::warn!(error = %fault, "backend I/O failed");
    entry.stats.media_errors.fetch_add(1, Ordering::Relaxed);
    Completion::status(match fault {
        Fault::WriteProtected | Fault::NotOwner { .. } => Status::NS_WRITE_PROTECTED,
        Fault::Write { .. } => Status::WRITE_FAULT,
        Fault::Read { .. } => Status::UNRECOVERED_READ,
        Fault::Buffers(_) => Status::INTERNAL,
    })
}

impl Execute for Queue {
    type Cmd = IoCmd;

    async fn lease(&self, idx: u16, cmd: &mut IoCmd) -> bool {
        let Some((len, in_capsule)) = host_data(&cmd.plan) else {
            // Reads lease when they run (block::read); others need none.
            return true;
        };
        if in_capsule {
            return true;
        }
        // Data fetched with R2T: leased within the connection's quota
        // (NeedBuffer, the reader goes on) and only then solicited.
        let Some(leased) = self
            .unless_closing(self.admission.lease_solicited(len as usize))
            .await
        else {
            return false;
        };
        let Ok((payload, grant)) = leased else {
            cmd.outcome = Some(Completion::status(Status::INTERNAL));
            return true;
        };
        let Some(io) = self.io.get() else {
            return false;
        };
        let slot = &io.h2c[usize::from(idx)];
        *slot.payload.borrow_mut() = Some(payload);
        *slot.grant.borrow_mut() = Some(grant);
        true
    }

    async fn receive(&self, idx: u16, cmd: &mut IoCmd) -> bool {
        if cmd.outcome.is_some() || cmd.data.is_some() {
            return true;
        }
        self.fetch_h2c(idx, cmd).await
    }

    async fn execute(&self, _idx: u16, cmd: &mut IoCmd) {
        if cmd.outcome.is_some() {
            return;
        }
        // Not abandoned at teardown: the queue waits for running I/O.
        let outcome = match self.run_plan(cmd).await {
            Ok(c) => c,
            Err(f) => fault_status(&cmd.entry, &f),
        };
        if !outcome.status.is_success() {
            tracing::debug!(status = ?outcome.status, "I/O command failed");
            cmd.data = None;
            cmd.direct = None;
        }
        cmd.outcome = Some(outcome);
    }

    fn send_data(&self, _idx: u16, cmd: &mut IoCmd) -> DataSent {
        let direct = cmd.direct.take();
        let list = match (cmd.data.take(), &direct) {
            (Some(list), _) => list,
            (None, Some(_)) => SegmentList::new(),
            (None, None) => return DataSent::Nothing,
        };
        let IoPlan::Read { len, .. } = cmd.plan else {
            return DataSent::Nothing;
        };
        // A direct range is referenced, not ours: released once written.
        let copies = direct.is_some() || self.out.copies(len as usize);
        // The SUCCESS flag may replace the CapsuleResp only when SQ flow
        // control is disabled (TCP transport 1.0 §3.6.2.9): the response
        // would carry SQHD. Under the strict policy only when the data goes
        // by copy: the kernel takes its last byte, releasing the pages,
        // before the host can see the command end (as the iSCSI status
        // rides on the last Data-In).
        let policy = self.status_policy();
        let fold = self.sqhd.get().flow_disabled() && (policy == StatusPolicy::Eager || copies);
        let msg = match self.read_data_message(cmd.cid, list, direct, len as usize, fold) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), cid = cmd.cid, "framing read data");
                cmd.outcome = Some(Completion::status(Status::INTERNAL));
                return DataSent::Nothing;
            }
        };
        match policy {
            StatusPolicy::Eager => {
                self.out.send(msg);
                cmd.status_sent = fold;
                DataSent::Untracked
            }
            // Strict and sent by copy: the kernel releases the pages in the
            // `sendmsg` that writes the data's last byte, before it takes
            // any byte of the CapsuleResp queued behind it — so the
            // completion is queued at once, for the same `sendmsg` (or
            // rides on the C2HData, `fold`).
            StatusPolicy::Strict if copies => {
                self.out.send(msg);
                cmd.status_sent = fold;
                DataSent::Untracked
            }
            // Strict and zero-copy: the completion goes only after the
            // kernel released every page of the data.
            StatusPolicy::Strict => DataSent::Tracked(self.out.send_tracked(msg)),
        }
    }

    fn send_status(&self, _idx: u16, cmd: &mut IoCmd) {
        if cmd.status_sent {
            return;
        }
        if let Some(c) = cmd.outcome {
            let _ = self.send_completion(cmd.cid, c);
        }
    }
}
