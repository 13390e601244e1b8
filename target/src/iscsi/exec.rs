//! Executing one SCSI command: ask the LUN's SCSI state machine for a plan,
//! carry it out against the volume, answer the initiator.

use std::rc::Rc;

use anyhow::Context;
use zctarget_backends::SegmentList;
use zctarget_protocol::iscsi::ScsiCommand;
use zctarget_protocol::scsi::{sense, Plan, Sense, Status};

use super::connection::{Connection, Residual};
use super::target::IscsiLun;
use super::task::TaskEntry;
use crate::block;
use crate::command::StatusPolicy;

/// Largest single transfer accepted (advertised in the Block Limits VPD).
pub const MAX_TRANSFER_BYTES: u32 = 8 << 20;

/// SCSI status GOOD.
pub(crate) const GOOD: u8 = Status::Good.code();
/// SCSI status CHECK CONDITION.
pub(crate) const CHECK_CONDITION: u8 = Status::CheckCondition.code();

/// Answers a command whose data transfer is larger than we accept.
pub fn reject_too_large(conn: &Connection, cmd: &ScsiCommand) -> anyhow::Result<()> {
    let sense = Sense::invalid_cdb_field(7, None).fixed_format();
    conn.send_scsi_response(cmd.itt, CHECK_CONDITION, &sense, Residual::default())
}

/// Collects all the command's write data into its leased buffers. None
/// when the task was aborted, also by the fence once the data is in.
pub(crate) async fn collect(
    conn: &Rc<Connection>,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
) -> Option<SegmentList> {
    let state = entry.data_out()?;
    let data = conn
        .collect_write_data(cmd.itt, cmd.lun, entry, state)
        .await;
    if data.is_none() && state.data_error.get() {
        // The data phase broke (a Data-Out out of sequence): the command
        // ends here, ABORTED COMMAND / DATA PHASE ERROR.
        let sense = sense::DATA_PHASE_ERROR.fixed_format();
        let residual = Residual::of(cmd.expected_data_transfer_len, 0);
        let _ = status(conn, entry, cmd.itt, CHECK_CONDITION, &sense, residual);
    }
    // The data may come long after another nexus asked this session to
    // abort the task — while the reader was stalled inside a PDU and could
    // not handle the ask — and every command that writes with it (WRITE,
    // and the rarer ones that collect inside `execute_plan`) goes on to
    // its backend I/O from here: the fence (`Connection::fenced`). The
    // dropped data lets go of its buffers.
    if data.is_some() && conn.fenced(entry) {
        return None;
    }
    data
}

/// The command's write data; when the initiator announced none (EDTL 0
/// on a command whose CDB transfers data) an empty list, so the command
/// still completes with an overflow residual (RFC 7143 §11.4.5.2). None
/// when the task was aborted while data was arriving.
pub(crate) async fn collect_or_nothing(
    conn: &Rc<Connection>,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    expected: usize,
) -> Option<SegmentList> {
    if entry.data_out().is_none() && expected > 0 {
        return Some(SegmentList::new());
    }
    collect(conn, cmd, entry).await
}

/// Carries out a plan: I/O against the volume, data and status to the
/// initiator.
pub(crate) async fn execute_plan(
    conn: &Rc<Connection>,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    lun: Option<&IscsiLun>,
    plan: Plan,
    write_cache: bool,
) -> anyhow::Result<()> {
    let edtl = cmd.expected_data_transfer_len;
    let itt = cmd.itt;
    match plan {
        Plan::DataIn(data) => {
            // Control-path data: leased so it leaves like any other data.
            if entry.data_out().is_some() {
                // Data the initiator insists on sending is drained first.
                let _ = collect(conn, cmd, entry).await;
            }
            send_data(conn, cmd, entry, &data).await
        }
        Plan::Good => {
            if entry.data_out().is_some() {
                let _ = collect(conn, cmd, entry).await;
            }
            status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0))
        }
        Plan::Check(sense) => {
            // No R2T for a command that already failed; unsolicited data
            // already sent is dropped with the task.
            let s = sense_bytes(lun, &sense);
            status(conn, entry, itt, CHECK_CONDITION, &s, Residual::of(edtl, 0))
        }
        Plan::Status(st) => status(conn, entry, itt, st.code(), &[], Residual::of(edtl, 0)),
        Plan::Read {
            lba,
            blocks,
            fua: _,
        } => {
            let lun = lun.context("read on a missing LUN")?;
            read(conn, cmd, entry, lun, lba, blocks).await
        }
        Plan::Write { lba, blocks, fua } => {
            let lun = lun.context("write on a missing LUN")?;
            let bs = lun.block_size;
            let len = (u64::from(blocks) * bs) as usize;
            let Some(data) = collect_or_nothing(conn, cmd, entry, len).await else {
                return Ok(());
            };
            // With the write cache off (caching mode page WCE=0) every
            // write is durable before GOOD.
            let fua = fua || !write_cache;
            write(conn, entry, itt, lun, lba * bs, data, len, fua, edtl).await
        }
        // The rarer commands run boxed: their state would otherwise make
        // every command's future (moved into its task at spawn) large.
        other => {
            Box::pin(super::exec_more::execute_other(
                conn,
                cmd,
                entry,
                lun,
                other,
                write_cache,
            ))
            .await
        }
    }
}

/// Sense bytes in the format the LUN's control mode page asks for.
pub(crate) fn sense_bytes(lun: Option<&IscsiLun>, sense: &Sense) -> Vec<u8> {
    let descriptor = lun.map(|l| l.lock().descriptor_sense()).unwrap_or(false);
    sense.encode(descriptor)
}

/// Sends the status unless the task was aborted.
pub(crate) fn status(
    conn: &Connection,
    entry: &TaskEntry,
    itt: u32,
    st: u8,
    sense: &[u8],
    residual: Residual,
) -> anyhow::Result<()> {
    if entry.aborted.get() {
        return Ok(());
    }
    entry.responded();
    conn.send_scsi_response(itt, st, sense, residual)
}

/// Sends control-path data (truncated to the EDTL) and GOOD status.
pub(crate) async fn send_data(
    conn: &Connection,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    data: &[u8],
) -> anyhow::Result<()> {
    let edtl = cmd.expected_data_transfer_len;
    let n = data.len().min(edtl as usize);
    let residual = Residual::of(edtl, data.len() as u32);
    if n == 0 || !cmd.read {
        return status(conn, entry, cmd.itt, GOOD, &[], residual);
    }
    let mut list = conn.reactor.shared.pool.lease(n).await?;
    list.copy_from_slice(0, &data[..n]);
    send_payload(conn, cmd, entry, list, n, residual).await
}

/// Sends `len` bytes of `list` as Data-In, then the status per policy.
async fn send_payload(
    conn: &Connection,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    list: SegmentList,
    len: usize,
    residual: Residual,
) -> anyhow::Result<()> {
    if entry.aborted.get() {
        return Ok(());
    }
    match conn.status_policy() {
        StatusPolicy::Eager => {
            // Status rides on the last Data-In; the buffers stay pinned
            // until the kernel releases them (nobody waits for that).
            entry.responded();
            conn.send_data_in(cmd.itt, cmd.lun, list, len, Some((GOOD, residual)))?;
            Ok(())
        }
        StatusPolicy::Strict => {
            let release = conn
                .send_data_in(cmd.itt, cmd.lun, list, len, None)?
                .context("data send not tracked")?;
            // Strict: the status goes only after the kernel released every
            // page of the data.
            let done = release.await.context("data send aborted")?;
            drop(done);
            status(conn, entry, cmd.itt, GOOD, &[], residual)
        }
    }
}

async fn read(
    conn: &Connection,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    lun: &IscsiLun,
    lba: u64,
    blocks: u32,
) -> anyhow::Result<()> {
    let bs = lun.block_size;
    let edtl = cmd.expected_data_transfer_len;
    let bytes = u64::from(blocks) * bs;
    let residual = Residual::of(edtl, bytes.min(u64::from(u32::MAX)) as u32);
    // Only what the initiator expects is sent (the residual says the rest),
    // but the disk is read in whole blocks.
    let len = bytes.min(u64::from(edtl)) as usize;
    if len == 0 || !cmd.read {
        return status(conn, entry, cmd.itt, GOOD, &[], residual);
    }
    let volume = conn.reactor.volume(lun.volume).context("volume handle")?;
    let pool = &conn.reactor.shared.pool;
    let list = match block::read(&volume, pool, lba * bs, bytes as usize).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, lba, blocks, "read failed");
            let sense = fault_sense(&e, bs).fixed_format();
            return status(conn, entry, cmd.itt, CHECK_CONDITION, &sense, residual);
        }
    };
    send_payload(conn, cmd, entry, list, len, residual).await
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn write(
    conn: &Connection,
    entry: &TaskEntry,
    itt: u32,
    lun: &IscsiLun,
    offset: u64,
    mut data: SegmentList,
    len: usize,
    fua: bool,
    edtl: u32,
) -> anyhow::Result<()> {
    let volume = conn.reactor.volume(lun.volume).context("volume handle")?;
    let residual = Residual::of(edtl, len as u32);
    // An initiator that sends less than the CDB asks for (EDTL too small)
    // gets what it sent written, in whole blocks, and an overflow residual.
    let bs = lun.block_size as usize;
    let len = len.min(data.len() / bs * bs);
    if len == 0 {
        return status(conn, entry, itt, GOOD, &[], residual);
    }
    data.truncate(len);
    match block::write(&volume, offset, data, fua).await {
        Ok(()) => status(conn, entry, itt, GOOD, &[], residual),
        Err(e) => {
            tracing::warn!(error = %e, offset, len, "write failed");
            let sense = fault_sense(&e, bs as u64).fixed_format();
            status(conn, entry, itt, CHECK_CONDITION, &sense, residual)
        }
    }
}

/// The sense data for a block fault: WRITE PROTECTED, or the medium error
/// with the failing LBA in INFORMATION.
pub(crate) fn fault_sense(fault: &block::Fault, block_size: u64) -> Sense {
    let lba = fault.offset().map(|o| o / block_size.max(1));
    match fault {
        block::Fault::WriteProtected => sense::WRITE_PROTECTED,
        block::Fault::NotOwner {
            fenced, settled, ..
        } => not_owner_sense(*fenced, *settled),
        block::Fault::Write { .. } => with_info(sense::WRITE_ERROR, lba),
        block::Fault::Read { .. } | block::Fault::Buffers(_) => {
            with_info(sense::UNRECOVERED_READ_ERROR, lba)
        }
    }
}

/// A write this gateway may not do (it does not hold the shared volume's
/// lock). While the lock is free or changing hands the write is to be
/// retried (ASYMMETRIC ACCESS STATE TRANSITION, 04/0A: Linux retries it on
/// the same path). Once another live gateway holds it — or this one was
/// fenced — the write must go to another path at once: TARGET PORT IN
/// STANDBY STATE (04/0B), which Linux fails to dm-multipath, which
/// resubmits on the owner's path (retrying 04/0A there instead held
/// writes for the SCSI layer's whole retry budget — 180 s in the VM
/// failback test).
fn not_owner_sense(fenced: bool, settled: bool) -> Sense {
    if fenced || settled {
        sense::TARGET_PORT_STANDBY
    } else {
        sense::ALUA_TRANSITION
    }
}

/// The sense data for a failed write-type backend call (write, discard,
/// write zeroes, flush): this gateway not owning a shared volume (ALUA
/// transition, or Standby once fenced), WRITE PROTECTED, or WRITE ERROR
/// with the LBA in INFORMATION.
pub(crate) fn write_sense(e: &std::io::Error, lba: Option<u64>) -> Sense {
    match zctarget_backends::rbd::not_owner(e) {
        Some(n) => not_owner_sense(n.fenced, n.settled),
        None if e.kind() == std::io::ErrorKind::PermissionDenied => sense::WRITE_PROTECTED,
        None => with_info(sense::WRITE_ERROR, lba),
    }
}

fn with_info(s: Sense, lba: Option<u64>) -> Sense {
    match lba {
        Some(lba) => s.with_info(lba),
        None => s,
    }
}
