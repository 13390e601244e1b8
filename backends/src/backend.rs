//! The `Backend` trait: block storage a volume is exported from.
//!
//! A [`Volume`](crate::volume::Volume) is the shared, thread-safe description
//! of one backing store; each reactor thread opens its own
//! [`VolumeHandle`](crate::volume::VolumeHandle) on it, which implements
//! `Backend`. Handles are per reactor on purpose: on the io_uring engine the
//! I/O is submitted to that thread's own ring, so the futures are `!Send`.

use std::io;

use crate::SegmentList;

/// Which I/O engine a reactor runs (the config's `auto` already resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// tokio-uring: file I/O submitted to the reactor's io_uring.
    Uring,
    /// Plain tokio: positional file I/O on the blocking thread pool.
    Epoll,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Uring => "uring",
            Engine::Epoll => "epoll",
        })
    }
}

/// Static facts about a backend, fixed when it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Capacity in bytes (a multiple of `block_size`).
    pub capacity: u64,
    /// Logical block size in bytes: 512 or 4096.
    pub block_size: u32,
    /// Writes are refused.
    pub read_only: bool,
    /// `discard` really deallocates (punch hole / BLKDISCARD), so reads of a
    /// discarded range return zeroes and thin provisioning can be advertised.
    pub discard: bool,
    /// Whether the backend has a volatile cache that `flush` must write back.
    pub volatile_cache: bool,
}

impl BackendInfo {
    /// Capacity in logical blocks.
    pub fn blocks(&self) -> u64 {
        self.capacity / u64::from(self.block_size)
    }
}

/// Block storage. Offsets and lengths are in bytes; callers keep them inside
/// `[0, capacity)` and aligned to the block size (the frontends check this and
/// answer out-of-range requests themselves), implementations re-check and
/// return `InvalidInput` rather than touching memory out of bounds.
///
/// The payload is *moved* in and handed back with the result, whatever the
/// outcome: this is how the buffer-lifetime contract reaches the disk.
#[allow(async_fn_in_trait)] // per-reactor handles: the futures are deliberately !Send
pub trait Backend {
    /// Facts about the backend.
    fn info(&self) -> &BackendInfo;

    /// Reads `buf.len()` bytes at `offset` into `buf`.
    async fn read(&self, offset: u64, buf: SegmentList) -> (SegmentList, io::Result<()>);

    /// Writes `buf` at `offset`; with `fua` the data is durable on return.
    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        fua: bool,
    ) -> (SegmentList, io::Result<()>);

    /// Makes every completed write durable.
    async fn flush(&self) -> io::Result<()>;

    /// Deallocates `[offset, offset + len)`; afterwards it reads as zeroes.
    async fn discard(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Writes zeroes over `[offset, offset + len)` (may deallocate).
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;
}

/// Checks that `[offset, offset + len)` lies inside the backend and is
/// block aligned; the shared guard every implementation calls first.
pub fn check_range(info: &BackendInfo, offset: u64, len: u64) -> io::Result<()> {
    let bs = u64::from(info.block_size);
    let end = offset.checked_add(len);
    match end {
        Some(end) if end <= info.capacity && offset % bs == 0 && len % bs == 0 => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "range {offset}+{len} outside capacity {} or not aligned to {bs}",
                info.capacity
            ),
        )),
    }
}

/// The error every backend returns for a write to a read-only volume.
/// Checks a write (or discard, write zeroes) of `len` bytes at `offset`:
/// refused on a read-only volume, else [`check_range`].
pub fn check_write(info: &BackendInfo, offset: u64, len: u64) -> io::Result<()> {
    if info.read_only {
        return Err(read_only_error());
    }
    check_range(info, offset, len)
}

/// The error of a write to a read-only volume.
pub fn read_only_error() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "volume is read-only")
}
