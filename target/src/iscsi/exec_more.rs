//! The less common SCSI plans: verify, write same, compare and write,
//! synchronize cache, pre-fetch, unmap, parameter-data commands, GET LBA
//! STATUS, SANITIZE, EXTENDED COPY, PREEMPT AND ABORT.

use std::rc::Rc;

use anyhow::Context;
use zctarget_backends::Backend;
use zctarget_protocol::iscsi::ScsiCommand;
use zctarget_protocol::scsi::{self, sense, Plan, SanitizeAction, Sense};

use super::connection::{Connection, Residual};
use super::exec::{
    collect, collect_or_nothing, fault_sense, send_data, sense_bytes, status, write,
    CHECK_CONDITION, GOOD,
};
use super::target::IscsiLun;
use super::task::TaskEntry;
use crate::block;

mod sanitize_copy;

/// Carries out a plan not handled by the common path in `exec`.
pub(crate) async fn execute_other(
    conn: &Rc<Connection>,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    lun: Option<&IscsiLun>,
    plan: Plan,
    write_cache: bool,
) -> anyhow::Result<()> {
    let itt = cmd.itt;
    let edtl = cmd.expected_data_transfer_len;
    let Some(lun) = lun else {
        let sense = sense::LOGICAL_UNIT_NOT_SUPPORTED.fixed_format();
        return status(
            conn,
            entry,
            itt,
            CHECK_CONDITION,
            &sense,
            Residual::of(edtl, 0),
        );
    };
    let bs = lun.block_size;
    let volume = conn.reactor.volume(lun.volume).context("volume handle")?;
    let volume = &*volume;
    let ctx = Other {
        conn,
        cmd,
        entry,
        lun,
        volume,
        bs,
        write_cache,
    };
    let check = |sense: Sense| ctx.check(sense);
    match plan {
        Plan::SynchronizeCache { immed, .. } => ctx.synchronize_cache(immed).await,
        Plan::PreFetch { .. } => {
            // Nothing is cached in userspace: the kernel's page cache (or
            // the device) does its own read-ahead. GOOD says the range was
            // valid and nothing more (SBC-3 §5.9: CONDITION MET only when
            // the cache is known to hold it).
            status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0))
        }
        Plan::Verify {
            lba,
            blocks,
            byte_check,
        } => ctx.verify(lba, blocks, byte_check).await,
        Plan::WriteAndVerify { lba, blocks } => {
            let len = (u64::from(blocks) * bs) as usize;
            let Some(data) = collect_or_nothing(conn, cmd, entry, len).await else {
                return Ok(());
            };
            write(conn, entry, itt, lun, lba * bs, data, len, true, edtl).await
        }
        Plan::WriteSame {
            lba,
            blocks,
            unmap,
            ndob,
        } => ctx.write_same(lba, blocks, unmap, ndob).await,
        Plan::CompareAndWrite { lba, blocks, fua } => ctx.compare_and_write(lba, blocks, fua).await,
        Plan::OrWrite { lba, blocks, fua } => ctx.or_write(lba, blocks, fua).await,
        Plan::Unmap(ranges) => {
            for (lba, blocks) in ranges {
                if blocks == 0 {
                    continue;
                }
                if let Err(e) = volume.discard(lba * bs, u64::from(blocks) * bs).await {
                    tracing::warn!(error = %e, "unmap failed");
                    return check(super::exec::write_sense(&e, Some(lba)));
                }
            }
            status(conn, entry, itt, GOOD, &[], Residual::default())
        }
        Plan::NeedParameterData { len, then } => ctx.parameter_data(len, then).await,
        Plan::GetLbaStatus { lba, alloc_len } => ctx.get_lba_status(lba, alloc_len).await,
        Plan::Sanitize { action, immed } => ctx.sanitize_lun(action, immed).await,
        Plan::ExtendedCopy { list_id, segments } => ctx.extended_copy(list_id, segments).await,
        Plan::SetTargetPortGroups { group } => ctx.set_target_port_groups(group).await,
        Plan::PreemptAndAbort { preempted } => {
            // The preempted initiators' tasks on this logical unit end
            // without status (SPC-4 §5.13.11.2.3); this command completes.
            // Their sessions — on any reactor thread — abort them (a write
            // waiting for Data-Out is woken and ends), told through the
            // session table; the issuer is never among the preempted.
            // GOOD goes out once none of their aborted tasks executes any
            // more: no preempted write lands after it.
            if let Some(target) = conn.target.as_ref() {
                let settling = conn.reactor.shared.iscsi.sessions.abort_preempted(
                    &target.iqn,
                    &preempted,
                    &conn.initiator_port,
                    lun.id,
                );
                settling.wait("PREEMPT AND ABORT").await;
            }
            status(conn, entry, itt, GOOD, &[], Residual::default())
        }
        other => {
            tracing::debug!(plan = ?other, "plan not supported by this frontend");
            check(sense::INVALID_COMMAND_OPERATION_CODE)
        }
    }
}

/// What every uncommon plan works with.
#[derive(Clone, Copy)]
struct Other<'a> {
    conn: &'a Rc<Connection>,
    cmd: &'a ScsiCommand,
    entry: &'a TaskEntry,
    lun: &'a IscsiLun,
    volume: &'a zctarget_backends::VolumeHandle,
    bs: u64,
    write_cache: bool,
}

impl Other<'_> {
    /// CHECK CONDITION with `sense` in the LUN's sense format.
    fn check(&self, sense: Sense) -> anyhow::Result<()> {
        let s = sense_bytes(Some(self.lun), &sense);
        let residual = Residual::of(self.cmd.expected_data_transfer_len, 0);
        status(
            self.conn,
            self.entry,
            self.cmd.itt,
            CHECK_CONDITION,
            &s,
            residual,
        )
    }

    async fn synchronize_cache(&self, immed: bool) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            volume,
            ..
        } = *self;
        let (itt, edtl) = (cmd.itt, cmd.expected_data_transfer_len);
        let check = |sense: Sense| self.check(sense);
        if immed {
            // IMMED: GOOD once the command is validated; the flush
            // still completes before the task ends.
            status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0))?;
            if let Err(e) = volume.flush().await {
                tracing::warn!(error = %e, "flush failed");
            }
            return Ok(());
        }
        match volume.flush().await {
            Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0)),
            Err(e) => {
                tracing::warn!(error = %e, "flush failed");
                check(super::exec::write_sense(&e, None))
            }
        }
    }

    async fn verify(&self, lba: u64, blocks: u32, byte_check: bool) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            volume,
            bs,
            ..
        } = *self;
        let (itt, edtl) = (cmd.itt, cmd.expected_data_transfer_len);
        let check = |sense: Sense| self.check(sense);
        if !byte_check {
            // BYTCHK 0: the medium is readable — verify by reading.
            let pool = &conn.reactor.shared.pool;
            let len = u64::from(blocks) * bs;
            if let Err(e) = block::verify(volume, pool, lba * bs, len).await {
                tracing::warn!(error = %e, "verify failed");
                return check(fault_sense(&e, bs));
            }
            return status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0));
        }
        let Some(data) = collect(conn, cmd, entry).await else {
            return Ok(());
        };
        let pool = &conn.reactor.shared.pool;
        match block::compare(volume, pool, lba * bs, &data).await {
            Err(e) => check(fault_sense(&e, bs)),
            Ok(None) => status(conn, entry, itt, GOOD, &[], Residual::default()),
            Ok(Some(offset)) => check(scsi::miscompare_sense(offset as u64)),
        }
    }

    async fn write_same(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
        ndob: bool,
    ) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            volume,
            bs,
            ..
        } = *self;
        let itt = cmd.itt;
        let check = |sense: Sense| self.check(sense);
        let block = if ndob {
            None
        } else {
            match collect(conn, cmd, entry).await {
                Some(d) => Some(d),
                None => return Ok(()),
            }
        };
        let zero = block
            .as_ref()
            .is_none_or(|b| b.slices().all(|s| s.iter().all(|&x| x == 0)));
        let offset = lba * bs;
        let len = blocks * bs;
        let r = if unmap && zero && volume.info().discard {
            volume.discard(offset, len).await
        } else if zero {
            volume.write_zeroes(offset, len).await
        } else if let Some(block) = block {
            let mut pattern = vec![0u8; bs as usize];
            block.copy_to_slice(0, &mut pattern);
            block::write_same(volume, &conn.reactor.shared.pool, offset, len, &pattern)
                .await
                .map_err(block::Fault::into_io)
        } else {
            volume.write_zeroes(offset, len).await
        };
        match r {
            Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::default()),
            Err(e) => {
                tracing::warn!(error = %e, "write same failed");
                check(super::exec::write_sense(&e, Some(lba)))
            }
        }
    }

    async fn compare_and_write(&self, lba: u64, blocks: u32, fua: bool) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            volume,
            bs,
            write_cache,
            ..
        } = *self;
        let itt = cmd.itt;
        let check = |sense: Sense| self.check(sense);
        let Some(mut data) = collect(conn, cmd, entry).await else {
            return Ok(());
        };
        let half = (u64::from(blocks) * bs) as usize;
        if data.len() < 2 * half {
            return check(Sense::invalid_cdb_field(13, None));
        }
        // A follower with the peer link: the owner runs it whole, under
        // its own lock, so it is atomic across the gateways.
        if let Some(r) = forward_caw(volume, &data, half, lba * bs, fua || !write_cache).await {
            drop(data);
            return match r {
                Ok(None) => status(conn, entry, itt, GOOD, &[], Residual::default()),
                Ok(Some(pos)) => check(scsi::miscompare_sense(pos)),
                Err(e) => check(super::exec::write_sense(&e, Some(lba))),
            };
        }
        // Atomic against other writers of this volume that also take the
        // lock (COMPARE AND WRITE, ORWRITE, a peer's forwarded COMPARE AND
        // WRITE); plain writes are not serialised, as SBC-3 allows.
        let _guard = volume.caw_lock().lock().await;
        let mut verify = vec![0u8; half];
        data.copy_to_slice(0, &mut verify);
        let medium = conn.reactor.shared.pool.lease(half).await?;
        let (medium, r) = volume.read(lba * bs, medium).await;
        if r.is_err() {
            return check(sense::UNRECOVERED_READ_ERROR.with_info(lba));
        }
        let mut current = vec![0u8; half];
        medium.copy_to_slice(0, &mut current);
        drop(medium);
        if let Some(pos) = verify.iter().zip(&current).position(|(a, b)| a != b) {
            return check(scsi::miscompare_sense(pos as u64));
        }
        // The write half: move it to the front of the leased buffers.
        let mut write_half = vec![0u8; half];
        data.copy_to_slice(half, &mut write_half);
        data.copy_from_slice(0, &write_half);
        data.truncate(half);
        let (_data, r) = volume.write(lba * bs, data, fua || !write_cache).await;
        match r {
            Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::default()),
            Err(e) => check(super::exec::write_sense(&e, Some(lba))),
        }
    }

    async fn or_write(&self, lba: u64, blocks: u32, fua: bool) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            volume,
            bs,
            write_cache,
            ..
        } = *self;
        let (itt, edtl) = (cmd.itt, cmd.expected_data_transfer_len);
        let check = |sense: Sense| self.check(sense);
        let len = (u64::from(blocks) * bs) as usize;
        let Some(mut data) = collect(conn, cmd, entry).await else {
            return Ok(());
        };
        if data.len() < len {
            return check(Sense::invalid_cdb_field(10, None));
        }
        data.truncate(len);
        // Read-modify-write, atomic against COMPARE AND WRITE and other
        // ORWRITEs of this LUN. A control-path command: the OR runs on
        // a copy.
        let _guard = volume.caw_lock().lock().await;
        let medium = conn.reactor.shared.pool.lease(len).await?;
        let (medium, r) = volume.read(lba * bs, medium).await;
        if r.is_err() {
            return check(sense::UNRECOVERED_READ_ERROR.with_info(lba));
        }
        let mut merged = vec![0u8; len];
        medium.copy_to_slice(0, &mut merged);
        drop(medium);
        let mut incoming = vec![0u8; len];
        data.copy_to_slice(0, &mut incoming);
        merged.iter_mut().zip(&incoming).for_each(|(m, d)| *m |= d);
        data.copy_from_slice(0, &merged);
        let (_data, r) = volume.write(lba * bs, data, fua || !write_cache).await;
        match r {
            Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::of(edtl, len as u32)),
            Err(e) => check(super::exec::write_sense(&e, Some(lba))),
        }
    }

    async fn parameter_data(&self, len: u32, then: scsi::ParamKind) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            lun,
            ..
        } = *self;
        let check = |sense: Sense| self.check(sense);
        let Some(data) = collect(conn, cmd, entry).await else {
            return Ok(());
        };
        let mut bytes = vec![0u8; (len as usize).min(data.len())];
        data.copy_to_slice(0, &mut bytes);
        drop(data);
        let (next, write_cache) = {
            let mut unit = lun.lock();
            let next = unit.with_parameter_data(conn.nexus, then, &bytes);
            (next, unit.write_cache_enabled())
        };
        match next {
            Plan::NeedParameterData { .. } => check(Sense::invalid_cdb_field(0, None)),
            other => {
                Box::pin(super::exec::execute_plan(
                    conn,
                    cmd,
                    entry,
                    Some(lun),
                    other,
                    write_cache,
                ))
                .await
            }
        }
    }

    async fn get_lba_status(&self, lba: u64, alloc_len: u32) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            lun,
            volume,
            bs,
            ..
        } = *self;
        // Descriptors from the backing file's holes and data (SEEK_HOLE
        // / SEEK_DATA), as many as the allocation length can hold.
        let capacity = volume.info().capacity;
        let max_runs = (alloc_len.saturating_sub(8) / 16).clamp(1, 4096) as usize;
        let runs = conn
            .reactor
            .shared
            .exports
            .get(lun.volume)
            .map(|v| v.allocation(lba * bs, capacity - lba * bs, max_runs))
            .transpose()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "allocation map unavailable");
                None
            })
            .unwrap_or_else(|| vec![(lba * bs, capacity - lba * bs, true)]);
        let descriptors: Vec<(u64, u32, u8)> = runs
            .iter()
            .map(|&(offset, len, allocated)| {
                let blocks = (len / bs).min(u64::from(u32::MAX)) as u32;
                let status = if allocated {
                    scsi::ProvisioningStatus::Mapped
                } else {
                    scsi::ProvisioningStatus::Deallocated
                };
                (offset / bs, blocks, status as u8)
            })
            .collect();
        let data = scsi::encode_lba_status(lba, &descriptors, alloc_len);
        send_data(conn, cmd, entry, &data).await
    }

    /// SET TARGET PORT GROUPS named `group` the owner: the lock calls
    /// block, so they run on tokio's blocking pool (a rare management
    /// command, not the I/O path); GOOD once this gateway's part is done
    /// (the ASYMMETRIC ACCESS STATE CHANGED unit attention follows), else
    /// SET TARGET PORT GROUPS COMMAND FAILED.
    async fn set_target_port_groups(&self, group: u16) -> anyhow::Result<()> {
        let shared = std::sync::Arc::clone(&self.conn.reactor.shared);
        let Some(volume) = shared
            .exports
            .get(self.lun.volume)
            .map(|v| v.name().to_owned())
        else {
            return self.check(sense::SET_TARGET_PORT_GROUPS_FAILED);
        };
        let r = tokio::task::spawn_blocking(move || {
            crate::failover::request_owner(&shared, &volume, group)
        })
        .await;
        match r {
            Ok(Ok(())) => status(
                self.conn,
                self.entry,
                self.cmd.itt,
                GOOD,
                &[],
                Residual::default(),
            ),
            Ok(Err(e)) => {
                tracing::warn!(lun = self.lun.lun, group, error = %format!("{e:#}"),
                    "SET TARGET PORT GROUPS failed");
                self.check(sense::SET_TARGET_PORT_GROUPS_FAILED)
            }
            Err(e) => {
                tracing::warn!(error = %e, "SET TARGET PORT GROUPS task failed");
                self.check(sense::SET_TARGET_PORT_GROUPS_FAILED)
            }
        }
    }
}

/// COMPARE AND WRITE sent to the owner when this gateway forwards writes
/// of `volume` now (`data`: the compare half, then the write half).
async fn forward_caw(
    volume: &zctarget_backends::VolumeHandle,
    data: &zctarget_backends::SegmentList,
    half: usize,
    offset: u64,
    fua: bool,
) -> Option<zctarget_backends::forward::Forwarded> {
    if volume.may_write().is_ok() {
        return None;
    }
    let mut compare = vec![0u8; half];
    data.copy_to_slice(0, &mut compare);
    let mut new = vec![0u8; half];
    data.copy_to_slice(half, &mut new);
    volume
        .forward_compare_and_write(offset, compare, new, fua)
        .await
}
