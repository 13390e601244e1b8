//! File and block-device volumes on the reactor's io_uring (tokio-uring).
//!
//! Each read or write moves its lease into the operation (`ring_op`), so the
//! lease comes back with the completion, or is dropped at the completion if
//! the awaiting future went away first.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use smallvec::SmallVec;
use tokio_uring::buf::fixed::FixedBuf;

use crate::backend::{check_range, check_write, Backend, BackendInfo};
use crate::file::FileStore;
use crate::pool::Lease;
use crate::ring_op::{OpFixed, OpLease};
use crate::ring_write::{write_dsync, write_fixed_dsync};
use crate::stats::VolumeStats;
use crate::uring_buf::check_out_fixed;
use crate::{Segment, SegmentList, INLINE_SEGMENTS};

/// A file volume driven through the reactor's io_uring (tokio-uring).
pub struct UringFile {
    pub(crate) info: BackendInfo,
    pub(crate) store: Arc<FileStore>,
    /// This reactor's descriptor (a dup of the store's), registered with
    /// its ring's runtime.
    pub(crate) file: tokio_uring::fs::File,
    /// The volume's counters (`data_syncs`, `ring_fixed`, `ring_unfixed`).
    pub(crate) stats: Arc<VolumeStats>,
}

impl std::fmt::Debug for UringFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringFile")
            .field("info", &self.info)
            .finish()
    }
}

impl UringFile {
    /// Opens a handle for the current tokio-uring runtime.
    pub(crate) fn new(
        info: BackendInfo,
        store: Arc<FileStore>,
        stats: Arc<VolumeStats>,
    ) -> io::Result<Self> {
        let dup = store.file.try_clone()?;
        // SAFETY: `into_raw_fd` gives us sole ownership of the duplicated
        // descriptor, which `from_raw_fd` then takes over.
        let std_file = unsafe { File::from_raw_fd(dup.into_raw_fd()) };
        Ok(Self {
            info,
            store,
            file: tokio_uring::fs::File::from_std(std_file),
            stats,
        })
    }

    async fn read_segment(&self, seg: Segment, pos: u64) -> (Segment, io::Result<()>) {
        let (lease, off, len) = seg.into_parts();
        let mut lease = match check_out_fixed(lease) {
            Ok((buf, lease)) => {
                self.stats.ring_fixed.fetch_add(1, Ordering::Relaxed);
                return self.fixed_op(None, buf, lease, off, len, pos).await;
            }
            Err(lease) => lease,
        };
        self.stats.ring_unfixed.fetch_add(1, Ordering::Relaxed);
        let mut done = 0;
        while done < len {
            // The lease moves into the operation and comes back with its
            // completion; if this future is dropped first, tokio-uring drops
            // it at the completion.
            let (res, op) = self
                .file
                .read_at(
                    OpLease::new(lease, off + done, off + len),
                    pos + done as u64,
                )
                .await;
            lease = op.into_lease();
            match res {
                Ok(0) => {
                    if let Some(rest) = lease.as_mut_slice().get_mut(off + done..off + len) {
                        rest.fill(0);
                    }
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Segment::new(lease, off, len), Err(e)),
            }
        }
        (Segment::new(lease, off, len), Ok(()))
    }

    /// Reads into (`write == None`) or writes from a registered (fixed)
    /// buffer (`Some(fua)`: with `RWF_DSYNC` when FUA). The `FixedBuf` and the lease move into each operation
    /// together: if this future is dropped mid-operation, both are dropped
    /// at its completion, so the lease returns to the pool exactly then.
    async fn fixed_op(
        &self,
        write: Option<bool>,
        buf: FixedBuf,
        lease: Lease,
        off: usize,
        len: usize,
        pos: u64,
    ) -> (Segment, io::Result<()>) {
        let (mut buf, mut lease) = (buf, lease);
        let mut done = 0;
        let mut result = Ok(());
        while done < len {
            let op = OpFixed::new(buf, lease, off + done, off + len);
            let at = pos + done as u64;
            let (res, op) = match write {
                Some(true) => {
                    let (res, op) = write_fixed_dsync(&self.store, op, at).await;
                    (res, op)
                }
                Some(false) => self.file.write_fixed_at(op, at).await,
                None => self.file.read_fixed_at(op, at).await,
            };
            (buf, lease) = op.into_parts();
            match res {
                // End of a short file: the rest reads as zeroes.
                Ok(0) if write.is_none() => {
                    if let Some(rest) = lease.as_mut_slice().get_mut(off + done..off + len) {
                        rest.fill(0);
                    }
                    break;
                }
                Ok(0) => {
                    result = Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write wrote nothing",
                    ));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Checked in before the lease can go back to the pool.
        drop(buf);
        (Segment::new(lease, off, len), result)
    }

    /// Writes one segment; with `fua`, each write carries `RWF_DSYNC`.
    async fn write_segment(&self, seg: Segment, pos: u64, fua: bool) -> (Segment, io::Result<()>) {
        let (lease, off, len) = seg.into_parts();
        let mut lease = match check_out_fixed(lease) {
            Ok((buf, lease)) => {
                self.stats.ring_fixed.fetch_add(1, Ordering::Relaxed);
                return self.fixed_op(Some(fua), buf, lease, off, len, pos).await;
            }
            Err(lease) => lease,
        };
        self.stats.ring_unfixed.fetch_add(1, Ordering::Relaxed);
        let mut done = 0;
        while done < len {
            let op = OpLease::new(lease, off + done, off + len);
            let at = pos + done as u64;
            let (res, op) = if fua {
                write_dsync(&self.store, op, at).await
            } else {
                self.file.write_at(op, at).submit().await
            };
            lease = op.into_lease();
            match res {
                Ok(0) => {
                    return (
                        Segment::new(lease, off, len),
                        Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "write wrote nothing",
                        )),
                    )
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Segment::new(lease, off, len), Err(e)),
            }
        }
        (Segment::new(lease, off, len), Ok(()))
    }

    /// Discard / write-zeroes: `fallocate(mode)` on the ring for files;
    /// block devices, and filesystems without that mode (EOPNOTSUPP), go
    /// through `sync_op` on the blocking pool, which has the fallbacks.
    async fn fallocate_range(
        &self,
        offset: u64,
        len: u64,
        mode: i32,
        sync_op: fn(&FileStore, u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        check_write(&self.info, offset, len)?;
        if !self.store.block_device {
            match self.file.fallocate(offset, len, mode).await {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
                r => return r,
            }
        }
        self.on_blocking_pool(move |s| sync_op(s, offset, len))
            .await
    }

    async fn on_blocking_pool(
        &self,
        f: impl FnOnce(&FileStore) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
    }
}

/// Runs one operation per segment concurrently and reassembles the list in
/// its original order.
async fn per_segment<'a, F, Fut>(
    buf: SegmentList,
    offset: u64,
    op: F,
) -> (SegmentList, io::Result<()>)
where
    F: Fn(Segment, u64) -> Fut,
    Fut: std::future::Future<Output = (Segment, io::Result<()>)> + 'a,
{
    if buf.segment_count() == 1 {
        // The common case (up to one chunk): no join, no allocation.
        let mut segments = buf.into_segments();
        if let Some(seg) = segments.pop() {
            let (seg, r) = op(seg, offset).await;
            segments.push(seg);
            return (SegmentList::from_segments(segments), r);
        }
        return (SegmentList::from_segments(segments), Ok(()));
    }
    let mut pos = offset;
    let ops: Vec<Fut> = buf
        .into_segments()
        .into_iter()
        .map(|seg| {
            let at = pos;
            pos += seg.len() as u64;
            op(seg, at)
        })
        .collect();
    let results = futures_util::future::join_all(ops).await;
    let mut segments: SmallVec<[Segment; INLINE_SEGMENTS]> = SmallVec::new();
    let mut first_err = Ok(());
    for (seg, r) in results {
        if let (Err(e), true) = (r, first_err.is_ok()) {
            first_err = Err(e);
        }
        segments.push(seg);
    }
    (SegmentList::from_segments(segments), first_err)
}

impl Backend for UringFile {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn read(&self, offset: u64, buf: SegmentList) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_range(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        if self.store.memory_backed {
            // tmpfs cannot complete an io_uring read without a kernel
            // worker thread (no non-blocking path): the copy is done here.
            let mut buf = buf;
            let r = self.store.read_inline(offset, &mut buf);
            return (buf, r);
        }
        per_segment(buf, offset, |seg, at| self.read_segment(seg, at)).await
    }

    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        fua: bool,
    ) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_write(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        // FUA is `RWF_DSYNC` on the write itself (a range sync of just
        // these bytes), never a whole-file fdatasync after it.
        if self.store.memory_backed {
            // As for reads: a memory copy, done here.
            let r = self.store.write_inline(offset, &buf, fua);
            return (buf, r);
        }
        per_segment(buf, offset, |seg, at| self.write_segment(seg, at, fua)).await
    }

    async fn flush(&self) -> io::Result<()> {
        self.stats.data_syncs.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data().await
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate_range(
            offset,
            len,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            FileStore::discard_sync,
        )
        .await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate_range(
            offset,
            len,
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            FileStore::write_zeroes_sync,
        )
        .await
    }
}
