//! The less common SCSI plans: verify, write same, compare and write,
//! synchronize cache, unmap, parameter-data commands, GET LBA STATUS.

use std::rc::Rc;

use anyhow::Context;
use zctarget_backends::{Backend, SegmentList};
use zctarget_protocol::iscsi::ScsiCommand;
use zctarget_protocol::scsi_lite::{self as scsi, Plan, Sense};

use super::connection::{Connection, Residual, TaskEntry};
use super::exec::{block_size, collect, send_data, sense_bytes, status, write};
use super::target::IscsiLun;

use zctarget_protocol::scsi_lite::{CHECK_CONDITION, GOOD};

/// Carries out a plan not handled by the common path in `exec`.
pub(crate) async fn execute_other(
    conn: &Rc<Connection>,
    cmd: &ScsiCommand,
    entry: &TaskEntry,
    lun: Option<&IscsiLun>,
    plan: Plan,
) -> anyhow::Result<()> {
    let itt = cmd.itt;
    let edtl = cmd.expected_data_transfer_len;
    let Some(lun) = lun else {
        let sense = Sense::logical_unit_not_supported().fixed_format();
        return status(
            conn,
            entry,
            itt,
            CHECK_CONDITION,
            &sense,
            Residual::of(edtl, 0),
        );
    };
    let bs = block_size(conn, lun);
    let volume = conn
        .reactor
        .volumes
        .get(lun.volume)
        .context("volume handle")?;
    let check = |sense: Sense| -> anyhow::Result<()> {
        let s = sense_bytes(Some(lun), &sense);
        status(conn, entry, itt, CHECK_CONDITION, &s, Residual::of(edtl, 0))
    };
    match plan {
        Plan::SynchronizeCache { .. } => match volume.flush().await {
            Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0)),
            Err(e) => {
                tracing::warn!(error = %e, "flush failed");
                check(Sense::write_error(0))
            }
        },
        Plan::Verify {
            lba,
            blocks,
            byte_check,
        } => {
            if !byte_check {
                // BYTCHK 0: the medium is readable — verify by reading.
                let len = (u64::from(blocks) * bs) as usize;
                if len > 0 {
                    let buf = conn.reactor.shared.pool.lease(len).await?;
                    let (_buf, r) = volume.read(lba * bs, buf).await;
                    if r.is_err() {
                        return check(Sense::unrecovered_read_error(lba));
                    }
                }
                return status(conn, entry, itt, GOOD, &[], Residual::of(edtl, 0));
            }
            let Some(data) = collect(conn, cmd, entry).await else {
                return Ok(());
            };
            match compare_with_medium(conn, volume, lba * bs, &data).await? {
                None => status(conn, entry, itt, GOOD, &[], Residual::default()),
                Some(offset) => check(scsi::miscompare_sense(offset as u64)),
            }
        }
        Plan::WriteAndVerify { lba, blocks } => {
            let Some(data) = collect(conn, cmd, entry).await else {
                return Ok(());
            };
            let len = (u64::from(blocks) * bs) as usize;
            write(conn, entry, itt, lun, lba * bs, data, len, true, edtl).await
        }
        Plan::WriteSame {
            lba,
            blocks,
            unmap,
            ndob,
        } => {
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
                write_same_pattern(conn, volume, offset, len, bs as usize, &block).await
            } else {
                volume.write_zeroes(offset, len).await
            };
            match r {
                Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::default()),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    check(Sense::write_protected())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "write same failed");
                    check(Sense::write_error(lba))
                }
            }
        }
        Plan::CompareAndWrite { lba, blocks, fua } => {
            let Some(mut data) = collect(conn, cmd, entry).await else {
                return Ok(());
            };
            let half = (u64::from(blocks) * bs) as usize;
            if data.len() < 2 * half {
                return check(Sense::invalid_field_in_cdb(13, None));
            }
            // Atomic against other writers of this LUN that also take the
            // lock (COMPARE AND WRITE); plain writes are not serialised,
            // as SBC-3 allows.
            let _guard = lun.caw.lock().await;
            let mut verify = vec![0u8; half];
            data.copy_to_slice(0, &mut verify);
            let medium = conn.reactor.shared.pool.lease(half).await?;
            let (medium, r) = volume.read(lba * bs, medium).await;
            if r.is_err() {
                return check(Sense::unrecovered_read_error(lba));
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
            let (_data, r) = volume.write(lba * bs, data, fua).await;
            match r {
                Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::default()),
                Err(_) => check(Sense::write_error(lba)),
            }
        }
        Plan::Unmap(ranges) => {
            for (lba, blocks) in ranges {
                if blocks == 0 {
                    continue;
                }
                if let Err(e) = volume.discard(lba * bs, u64::from(blocks) * bs).await {
                    tracing::warn!(error = %e, "unmap failed");
                    return check(Sense::write_error(lba));
                }
            }
            status(conn, entry, itt, GOOD, &[], Residual::default())
        }
        Plan::NeedParameterData { len, then } => {
            let Some(data) = collect(conn, cmd, entry).await else {
                return Ok(());
            };
            let mut bytes = vec![0u8; (len as usize).min(data.len())];
            data.copy_to_slice(0, &mut bytes);
            drop(data);
            let next = {
                let mut unit = lun
                    .unit
                    .lock()
                    .map_err(|_| anyhow::anyhow!("LUN state poisoned"))?;
                unit.with_parameter_data(conn.nexus, &conn.initiator_port, then, &bytes)
            };
            match next {
                Plan::NeedParameterData { .. } => check(Sense::invalid_field_in_cdb(0, None)),
                other => {
                    Box::pin(super::exec::execute_plan(
                        conn,
                        cmd,
                        entry,
                        Some(lun),
                        other,
                    ))
                    .await
                }
            }
        }
        Plan::GetLbaStatus { lba, alloc_len } => {
            // Every block is reported mapped unless the volume can tell:
            // a single descriptor to the end of the medium.
            let blocks_total = volume.info().blocks();
            let run = blocks_total.saturating_sub(lba).min(u64::from(u32::MAX)) as u32;
            let data = scsi::encode_lba_status(lba, &[(lba, run, 0)], alloc_len);
            send_data(conn, cmd, entry, &data).await
        }
        other => {
            tracing::debug!(plan = ?other, "plan not supported by this frontend");
            check(Sense::invalid_command_operation_code())
        }
    }
}

/// Compares `data` with the medium at `offset`; the first differing byte.
async fn compare_with_medium(
    conn: &Connection,
    volume: &zctarget_backends::VolumeHandle,
    offset: u64,
    data: &SegmentList,
) -> anyhow::Result<Option<usize>> {
    let medium = conn.reactor.shared.pool.lease(data.len()).await?;
    let (medium, r) = volume.read(offset, medium).await;
    r.context("reading for compare")?;
    let mut pos = 0usize;
    for (a, b) in data.slices().zip(medium.slices()) {
        if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
            return Ok(Some(pos + i));
        }
        pos += a.len().min(b.len());
    }
    Ok(None)
}

/// WRITE SAME with a non-zero block: fills a leased buffer with copies of
/// the block and writes it repeatedly.
async fn write_same_pattern(
    conn: &Connection,
    volume: &zctarget_backends::VolumeHandle,
    offset: u64,
    len: u64,
    bs: usize,
    block: &SegmentList,
) -> std::io::Result<()> {
    let mut pattern = vec![0u8; bs];
    block.copy_to_slice(0, &mut pattern);
    let chunk = (1usize << 20).min(len as usize).max(bs);
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk as u64) as usize;
        let mut buf = conn
            .reactor
            .shared
            .pool
            .lease(n)
            .await
            .map_err(std::io::Error::other)?;
        let mut at = 0;
        while at < n {
            buf.copy_from_slice(at, &pattern);
            at += bs;
        }
        let (_buf, r) = volume.write(offset + done, buf, false).await;
        r?;
        done += n as u64;
    }
    Ok(())
}
