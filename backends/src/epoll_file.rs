//! File and block-device volumes on the epoll engine: I/O that memory or
//! the page cache can serve at once runs on the reactor, the rest as
//! `preadv`/`pwritev` on tokio's blocking pool.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::{check_range, check_write, Backend, BackendInfo};
use crate::file::FileStore;
use crate::stats::VolumeStats;
use crate::SegmentList;

/// A file volume driven from tokio's blocking pool (the epoll engine);
/// I/O the page cache can serve at once runs on the reactor
/// (`RWF_NOWAIT`) instead of hopping to a thread.
#[derive(Debug, Clone)]
pub struct EpollFile {
    pub(crate) info: BackendInfo,
    pub(crate) store: Arc<FileStore>,
    /// The volume's counters (`offloaded`, `data_syncs`).
    pub(crate) stats: Arc<VolumeStats>,
}

impl EpollFile {
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&FileStore) -> io::Result<R> + Send + 'static,
    ) -> io::Result<R> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| io::Error::other(format!("blocking I/O task failed: {e}")))?
    }
}

impl Backend for EpollFile {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn read(&self, offset: u64, buf: SegmentList) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_range(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        // First on the reactor: in full from a file in memory, or from the
        // page cache without blocking (`RWF_NOWAIT`, where supported — tmpfs
        // refuses it, so it must not be asked there).
        let mut buf = buf;
        let mut done = 0;
        if let Some(flags) = self.store.inline_flags(false) {
            match self.store.preadv_from(offset, &mut buf, 0, flags) {
                Ok(n) if n == buf.len() => return (buf, Ok(())),
                Ok(n) => done = n,
                Err(e) => return (buf, Err(e)),
            }
        }
        self.stats.offloaded.fetch_add(1, Ordering::Relaxed);
        let store = Arc::clone(&self.store);
        // The list moves into the blocking task and comes back with the
        // result; if the task died its leases were dropped there, after the
        // syscall finished with them.
        match tokio::task::spawn_blocking(move || {
            let mut buf = buf;
            let r = store.preadv_from(offset, &mut buf, done, 0).map(|_| ());
            (buf, r)
        })
        .await
        {
            Ok(out) => out,
            Err(e) => (
                SegmentList::new(),
                Err(io::Error::other(format!("read task failed: {e}"))),
            ),
        }
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
        // A write to memory, and a buffered write the page cache takes at
        // once, run on the reactor; FUA on a device-backed file (the write
        // waits for the device) and the rest go to a thread.
        let inline = match (self.store.inline_flags(true), fua) {
            // tmpfs: RWF_DSYNC costs nothing and keeps FUA honest.
            (Some(0), true) => Some(libc::RWF_DSYNC),
            (flags, false) => flags,
            (_, true) => None,
        };
        let mut done = 0;
        if let Some(flags) = inline {
            match self.store.pwritev_inline(offset, &buf, flags) {
                Ok(n) if n == buf.len() => return (buf, Ok(())),
                Ok(n) => done = n,
                Err(e) => return (buf, Err(e)),
            }
        }
        self.stats.offloaded.fetch_add(1, Ordering::Relaxed);
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || {
            let r = store.write_blocking(offset, &buf, done, fua);
            (buf, r)
        })
        .await
        {
            Ok((buf, r)) => {
                if let Ok(true) = r {
                    self.stats.data_syncs.fetch_add(1, Ordering::Relaxed);
                }
                (buf, r.map(|_| ()))
            }
            Err(e) => (
                SegmentList::new(),
                Err(io::Error::other(format!("write task failed: {e}"))),
            ),
        }
    }

    async fn flush(&self) -> io::Result<()> {
        self.stats.data_syncs.fetch_add(1, Ordering::Relaxed);
        self.blocking(|s| s.sync()).await
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_write(&self.info, offset, len)?;
        self.blocking(move |s| s.discard_sync(offset, len)).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_write(&self.info, offset, len)?;
        self.blocking(move |s| s.write_zeroes_sync(offset, len))
            .await
    }
}
