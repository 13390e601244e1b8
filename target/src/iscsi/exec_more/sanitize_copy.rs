//! SANITIZE and EXTENDED COPY: the long operations that run on the
//! volume as a whole (or between volumes) once planned, with their
//! state on the unit (SANITIZE IN PROGRESS, the copy results a RECEIVE
//! COPY RESULTS reports).

use super::*;

impl Other<'_> {
    pub(super) async fn sanitize_lun(
        &self,
        action: SanitizeAction,
        immed: bool,
    ) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            lun,
            volume,
            bs,
            ..
        } = *self;
        let itt = cmd.itt;
        let check = |sense: Sense| self.check(sense);
        // The unit answers SANITIZE IN PROGRESS until `sanitize_done`;
        // the guard calls it however this task ends (error, abort,
        // connection loss), so the LUN can never stay wedged.
        let _done = SanitizeDone(lun);
        entry.outlives_abort.set(true);
        if immed {
            status(conn, entry, itt, GOOD, &[], Residual::default())?;
        }
        tracing::info!(lun = lun.lun, action = action.name(), "sanitize started");
        let started = std::time::Instant::now();
        let r = sanitize(conn, volume, &action, bs).await;
        tracing::info!(lun = lun.lun, ok = r.is_ok(), took = ?started.elapsed(), "sanitize finished");
        if immed {
            if let Err(e) = r {
                tracing::warn!(error = %e, "background sanitize failed");
            }
            return Ok(());
        }
        match r {
            Ok(()) => status(conn, entry, itt, GOOD, &[], Residual::default()),
            Err(e) => {
                tracing::warn!(error = %e, "sanitize failed");
                check(sense::WRITE_ERROR)
            }
        }
    }

    pub(super) async fn extended_copy(
        &self,
        list_id: u8,
        segments: Vec<scsi::CopySegment>,
    ) -> anyhow::Result<()> {
        let Self {
            conn,
            cmd,
            entry,
            lun,
            ..
        } = *self;
        let itt = cmd.itt;
        let check = |sense: Sense| self.check(sense);
        let mut done = 0u16;
        let mut failed = None;
        for seg in &segments {
            if entry.aborted.get() {
                failed = Some(sense::COPY_ABORTED);
                break;
            }
            if let Err(s) = copy_segment(conn, lun, seg).await {
                failed = Some(s);
                break;
            }
            done += 1;
        }
        lun.lock()
            .copy_done(conn.nexus, list_id, done, failed.is_none());
        match failed {
            None => status(conn, entry, itt, GOOD, &[], Residual::default()),
            Some(s) => check(s),
        }
    }
}

/// Ends a LUN's SANITIZE state when dropped.
struct SanitizeDone<'a>(&'a IscsiLun);

impl Drop for SanitizeDone<'_> {
    fn drop(&mut self) {
        self.0.lock().sanitize_done();
    }
}

/// Carries out a SANITIZE action on the whole volume.
async fn sanitize(
    conn: &Connection,
    volume: &zctarget_backends::VolumeHandle,
    action: &SanitizeAction,
    bs: u64,
) -> std::io::Result<()> {
    let len = volume.info().capacity;
    match action {
        SanitizeAction::BlockErase => volume.discard(0, len).await,
        SanitizeAction::ExitFailureMode => Ok(()),
        SanitizeAction::Overwrite {
            pattern,
            invert,
            count,
        } => {
            // The initialization pattern is repeated to fill each block,
            // and every block is really written — also for an all-zero
            // pattern: fallocate(ZERO_RANGE / PUNCH_HOLE) would only unmap
            // the blocks, leaving the old data in the filesystem's free
            // space, which is what SANITIZE exists to prevent.
            let bs = bs as usize;
            let mut block: Vec<u8> = pattern.iter().copied().cycle().take(bs).collect();
            for pass in 0..*count {
                if pass > 0 && *invert {
                    block.iter_mut().for_each(|b| *b = !*b);
                }
                block::write_same(volume, &conn.reactor.shared.pool, 0, len, &block)
                    .await
                    .map_err(block::Fault::into_io)?;
            }
            volume.flush().await
        }
    }
}

/// Copies one EXTENDED COPY segment, in chunks of at most 1 MiB through
/// leased buffers.
async fn copy_segment(
    conn: &Connection,
    lun: &IscsiLun,
    seg: &scsi::CopySegment,
) -> Result<(), Sense> {
    let target = conn.target.as_ref().ok_or(sense::COPY_ABORTED)?;
    let volume_of = |n: u16| {
        target
            .volume_of(n)
            .and_then(|v| conn.reactor.volume(v))
            .ok_or(sense::COPY_TARGET_NOT_REACHABLE)
    };
    let src = volume_of(seg.src_lun)?;
    let dst = volume_of(seg.dst_lun)?;
    let bs = lun.block_size;
    let total = u64::from(seg.blocks) * bs;
    let chunk = 1u64 << 20;
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(chunk);
        let buf = conn
            .reactor
            .shared
            .pool
            .lease(n as usize)
            .await
            .map_err(|_| sense::COPY_ABORTED)?;
        let (buf, r) = src.read(seg.src_lba * bs + done, buf).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "extended copy read failed");
            return Err(sense::UNRECOVERED_READ_ERROR.with_info(seg.src_lba));
        }
        let (_buf, r) = dst.write(seg.dst_lba * bs + done, buf, false).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "extended copy write failed");
            return Err(sense::WRITE_ERROR.with_info(seg.dst_lba));
        }
        done += n;
    }
    Ok(())
}
