//! File and block-device backends.
//!
//! One shared [`FileStore`] per volume (the open descriptor and its kind);
//! per-reactor handles submit I/O either to the reactor's io_uring
//! ([`UringFile`]) or as `preadv`/`pwritev` on tokio's blocking pool
//! ([`EpollFile`]). Discard is `fallocate(PUNCH_HOLE)` on files and
//! block devices (which guarantees zeroes on read-back); write-zeroes is `fallocate(ZERO_RANGE)` /
//! `BLKZEROOUT`.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;

use smallvec::SmallVec;

use crate::{SegmentList, INLINE_SEGMENTS};

pub use crate::epoll_file::EpollFile;
pub use crate::uring_file::UringFile;

/// `BLKZEROOUT` = _IO(0x12, 127).
const BLKZEROOUT: libc::c_ulong = 0x127f;
/// `BLKGETSIZE64` = _IOR(0x12, 114, size_t).
pub(crate) const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// `BLKSSZGET` = _IO(0x12, 104).
pub(crate) const BLKSSZGET: libc::c_ulong = 0x1268;

/// The open backing store of a file or block-device volume.
#[derive(Debug)]
pub struct FileStore {
    pub(crate) file: File,
    pub(crate) block_device: bool,
    /// The file lives in memory (tmpfs, ramfs): reading or writing it is a
    /// memory copy that never waits for a device, so the epoll engine does
    /// it on the reactor instead of hopping to a thread.
    pub(crate) memory_backed: bool,
    /// `RWF_NOWAIT` works on this file for reads (`[0]`) and for writes
    /// (`[1]`); each is cleared the first time the kernel says it is not
    /// supported, so that no call is wasted on it again. They are apart
    /// because filesystems differ: ext4 takes non-blocking buffered reads
    /// but refuses non-blocking buffered writes.
    nowait: [std::sync::atomic::AtomicBool; 2],
    /// The file's length when opened: a [`FileRange`] never reaches past
    /// it (a read there returns zeroes on the copying path, while a
    /// socket `sendfile` would stop short).
    len_at_open: u64,
}

/// A range of a memory-backed volume file that a connection sends to its
/// socket with `sendfile(2)` instead of reading it into leased buffers and
/// sending those: the kernel moves page-cache page references into the
/// socket, so neither the read copy nor (on loopback) the send copy happens.
/// It owns a reference to the open file, so the descriptor stays valid
/// while a queued message carries the range; it owns no user memory, so
/// nothing waits for a zero-copy notification to release it.
#[derive(Debug, Clone)]
pub struct FileRange {
    store: std::sync::Arc<FileStore>,
    offset: u64,
    len: usize,
}

impl FileRange {
    /// The open file (valid while `self` lives).
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.store.fd()
    }

    /// File offset of the range's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes in the range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `TMPFS_MAGIC` and `RAMFS_MAGIC` (statfs(2)).
const MEMORY_FS: [libc::c_long; 2] = [0x0102_1994, 0x8584_58f6];

impl FileStore {
    /// The store of an open file or block device.
    pub fn new(file: File, block_device: bool) -> Self {
        let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
        let memory_backed = !block_device && regular && {
            // SAFETY: statfs is plain old data; fstatfs fills it for the
            // open descriptor and reads nothing else.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: `file` is open for the duration of the call and `st`
            // is a valid, exclusively borrowed statfs.
            let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
            r == 0 && MEMORY_FS.contains(&(st.f_type as libc::c_long))
        };
        let len_at_open = file.metadata().map_or(0, |m| m.len());
        Self {
            file,
            block_device,
            memory_backed,
            len_at_open,
            nowait: [
                std::sync::atomic::AtomicBool::new(true),
                std::sync::atomic::AtomicBool::new(true),
            ],
        }
    }

    /// `[offset, offset + len)` of a memory-backed file, to be sent with
    /// `sendfile` (see [`FileRange`]); `None` for other files and for
    /// ranges past the file's length at open.
    pub(crate) fn range(self: &std::sync::Arc<Self>, offset: u64, len: usize) -> Option<FileRange> {
        let end = offset.checked_add(len as u64)?;
        (self.memory_backed && !self.block_device && end <= self.len_at_open).then(|| FileRange {
            store: std::sync::Arc::clone(self),
            offset,
            len,
        })
    }

    /// How the epoll engine may try a read (`write == false`) or a write on
    /// the reactor first: `Some(0)` in full (memory-backed),
    /// `Some(RWF_NOWAIT)` from the page cache, `None` not at all.
    pub(crate) fn inline_flags(&self, write: bool) -> Option<libc::c_int> {
        if self.memory_backed {
            Some(0)
        } else if self.nowait[usize::from(write)].load(std::sync::atomic::Ordering::Relaxed) {
            Some(libc::RWF_NOWAIT)
        } else {
            None
        }
    }

    /// Reads all of `buf` at `offset` on the calling thread (memory-backed
    /// files).
    pub(crate) fn read_inline(&self, offset: u64, buf: &mut SegmentList) -> io::Result<()> {
        self.preadv_from(offset, buf, 0, 0).map(|_| ())
    }

    /// Writes all of `buf` at `offset` on the calling thread (memory-backed
    /// files), with `RWF_DSYNC` when `fua`.
    pub(crate) fn write_inline(&self, offset: u64, buf: &SegmentList, fua: bool) -> io::Result<()> {
        let flags = if fua { libc::RWF_DSYNC } else { 0 };
        self.pwritev_from_flags(offset, buf, 0, flags).map(|_| ())
    }

    /// Writes `buf[done..]` at `offset + done` (blocking); with `fua`
    /// durably: `pwritev2(RWF_DSYNC)`, which syncs just these bytes (and
    /// the metadata needed to read them back), or — where the kernel
    /// refuses the flag — a plain write and a whole-file `fdatasync`.
    /// Returns whether that `fdatasync` was needed.
    pub(crate) fn write_blocking(
        &self,
        offset: u64,
        buf: &SegmentList,
        done: usize,
        fua: bool,
    ) -> io::Result<bool> {
        if !fua {
            return self.pwritev_from(offset, buf, done).map(|()| false);
        }
        match self.pwritev_from_flags(offset, buf, done, libc::RWF_DSYNC) {
            Ok(_) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                self.pwritev_from(offset, buf, done)?;
                self.sync().map(|()| true)
            }
            Err(e) => Err(e),
        }
    }

    /// Notes that `RWF_NOWAIT` is refused as unsupported for reads
    /// (`write == false`) or writes.
    fn note_nowait_error(&self, write: bool, e: &io::Error) {
        if matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
        ) {
            self.nowait[usize::from(write)].store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// fsync(2)-class flush (data and the metadata needed to read it).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn fd(&self) -> libc::c_int {
        self.file.as_raw_fd()
    }

    /// Allocation of `[offset, offset + len)`: `(offset, len, allocated)`
    /// runs found with `lseek(SEEK_DATA / SEEK_HOLE)`, which works on
    /// every Linux filesystem (ones without hole tracking report all
    /// data). A block device reports one allocated run. At most
    /// `max_runs` runs are returned (the last one may end early).
    pub fn allocation(
        &self,
        offset: u64,
        len: u64,
        max_runs: usize,
    ) -> io::Result<Vec<(u64, u64, bool)>> {
        let end = offset.saturating_add(len);
        if self.block_device {
            return Ok(vec![(offset, len, true)]);
        }
        let seek = |from: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
            let from = libc::off_t::try_from(from).map_err(io::Error::other)?;
            // SAFETY: lseek on a descriptor owned by `self.file`; it only
            // moves the file offset, which no I/O here uses (all I/O is
            // positional).
            let r = unsafe { libc::lseek(self.fd(), from, whence) };
            if r < 0 {
                let e = io::Error::last_os_error();
                // ENXIO: no data (SEEK_DATA) past `from` up to EOF.
                return if e.raw_os_error() == Some(libc::ENXIO) {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
            Ok(Some(r as u64))
        };
        let mut runs = Vec::new();
        let mut at = offset;
        while at < end && runs.len() < max_runs {
            let data = seek(at, libc::SEEK_DATA)?.unwrap_or(end).min(end);
            if data > at {
                runs.push((at, data - at, false));
                at = data;
                continue;
            }
            let hole = seek(at, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
            let hole = hole.max(at + 1);
            runs.push((at, hole - at, true));
            at = hole;
        }
        Ok(runs)
    }

    /// Reads `buf.len()` bytes at `offset` with `preadv`, looping on short
    /// reads; bytes past the end of a short file read as zeroes.
    /// Reads `buf[done..]` at `offset + done` with `preadv2(flags)`; returns
    /// how far it got. With `RWF_NOWAIT` it stops (`Ok` short of the end)
    /// where the data is not in the page cache instead of blocking.
    pub(crate) fn preadv_from(
        &self,
        offset: u64,
        buf: &mut SegmentList,
        mut done: usize,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let total = buf.len();
        while done < total {
            let mut iov: SmallVec<[IoSliceMut<'_>; INLINE_SEGMENTS]> = SmallVec::new();
            buf.io_slices_mut_range(done, total - done, &mut iov);
            let iovcnt = iov.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: `iov` describes memory exclusively borrowed from `buf`
            // for this call; IoSliceMut is ABI-compatible with iovec.
            let n = unsafe {
                libc::preadv2(
                    self.fd(),
                    iov.as_ptr().cast(),
                    iovcnt,
                    (offset + done as u64) as libc::off_t,
                    flags,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if flags & libc::RWF_NOWAIT != 0 && nowait_refused(&e) {
                    self.note_nowait_error(false, &e);
                    return Ok(done);
                }
                return Err(e);
            }
            drop(iov);
            if n == 0 {
                zero_from(buf, done);
                return Ok(total);
            }
            done += n as usize;
        }
        Ok(done)
    }

    /// Writes `buf[done..]` at `offset + done` with `pwritev2(flags)`;
    /// returns how far it got. With `RWF_NOWAIT` it stops (`Ok` short of
    /// the end) where the kernel would have blocked.
    fn pwritev_from_flags(
        &self,
        offset: u64,
        buf: &SegmentList,
        mut done: usize,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let total = buf.len();
        while done < total {
            let mut iov: SmallVec<[IoSlice<'_>; INLINE_SEGMENTS]> = SmallVec::new();
            buf.io_slices_range(done, total - done, &mut iov);
            let iovcnt = iov.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: `iov` describes memory borrowed from `buf` for this
            // call; IoSlice is ABI-compatible with iovec.
            let n = unsafe {
                libc::pwritev2(
                    self.fd(),
                    iov.as_ptr().cast(),
                    iovcnt,
                    (offset + done as u64) as libc::off_t,
                    flags,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if flags & libc::RWF_NOWAIT != 0 && nowait_refused(&e) {
                    self.note_nowait_error(true, &e);
                    return Ok(done);
                }
                return Err(e);
            }
            if n == 0 {
                if flags & libc::RWF_NOWAIT != 0 {
                    return Ok(done);
                }
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            done += n as usize;
        }
        Ok(done)
    }

    /// Writes `buf` at `offset` with `pwritev2(flags)` (`RWF_NOWAIT`, or 0
    /// for a memory-backed file); returns how far it got.
    pub(crate) fn pwritev_inline(
        &self,
        offset: u64,
        buf: &SegmentList,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        self.pwritev_from_flags(offset, buf, 0, flags)
    }

    /// Writes `buf[done..]` at `offset + done` (blocking).
    fn pwritev_from(&self, offset: u64, buf: &SegmentList, done: usize) -> io::Result<()> {
        self.pwritev_from_flags(offset, buf, done, 0).map(|_| ())
    }

    /// Deallocates a range (reads back as zeroes afterwards).
    pub(crate) fn discard_sync(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if self.block_device {
            // BLKDISCARD does not promise that reads return zeroes on every
            // device; fallocate(PUNCH_HOLE) on a block device does (or fails
            // with EOPNOTSUPP), so the "discarded reads as zeroes" contract
            // holds. Fall back to an explicit zero-out.
            return match fallocate(
                self.fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.range_ioctl(BLKZEROOUT, offset, len)
                }
                r => r,
            };
        }
        match fallocate(
            self.fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                self.write_zeroes_by_writing(offset, len)
            }
            r => r,
        }
    }

    /// Zeroes a range, deallocating where the filesystem can.
    pub(crate) fn write_zeroes_sync(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if self.block_device {
            return self.range_ioctl(BLKZEROOUT, offset, len);
        }
        match fallocate(
            self.fd(),
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.discard_sync(offset, len),
            r => r,
        }
    }

    fn write_zeroes_by_writing(&self, offset: u64, len: u64) -> io::Result<()> {
        // Aligned for O_DIRECT volumes.
        let layout = std::alloc::Layout::from_size_align(1 << 20, 4096)
            .map_err(|_| io::Error::other("layout"))?;
        let zeroes = AlignedZeroes::new(layout)?;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(1 << 20) as usize;
            let chunk = zeroes.slice(n);
            std::os::unix::fs::FileExt::write_all_at(&self.file, chunk, offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    fn range_ioctl(&self, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
        let range: [u64; 2] = [offset, len];
        // SAFETY: both ioctls read a `u64[2]` {start, length} from the
        // pointer, which points at our stack array for the duration of the call.
        let rc = unsafe { libc::ioctl(self.fd(), request as _, range.as_ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// A zeroed, aligned heap block (for writing zeroes to O_DIRECT files).
struct AlignedZeroes {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedZeroes {
    fn new(layout: std::alloc::Layout) -> io::Result<Self> {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(ptr).ok_or_else(|| io::Error::other("out of memory"))?;
        Ok(Self { ptr, layout })
    }

    fn slice(&self, n: usize) -> &[u8] {
        // SAFETY: the block holds `layout.size()` initialized (zero) bytes
        // and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), n.min(self.layout.size())) }
    }
}

impl Drop for AlignedZeroes {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

fn fallocate(fd: libc::c_int, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(fd, mode, offset as libc::off_t, len as libc::off_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn zero_from(buf: &mut SegmentList, from: usize) {
    let mut skip = from;
    for seg in buf.segments_mut() {
        let s = seg.as_mut_slice();
        if skip >= s.len() {
            skip -= s.len();
            continue;
        }
        if let Some(rest) = s.get_mut(skip..) {
            rest.fill(0);
        }
        skip = 0;
    }
}

/// `RWF_NOWAIT` said "would block" (or is not supported here).
fn nowait_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &std::path::Path) -> FileStore {
        let path = dir.join("f");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("open");
        FileStore::new(file, false)
    }

    #[test]
    fn memory_backed_files_are_recognised() {
        if std::path::Path::new("/dev/shm").is_dir() {
            let shm = tempfile::tempdir_in("/dev/shm").expect("tempdir");
            let s = store_in(shm.path());
            assert!(s.memory_backed);
            assert_eq!(s.inline_flags(false), Some(0));
            assert_eq!(s.inline_flags(true), Some(0));
        }
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("tempdir");
        let s = store_in(disk.path());
        assert!(!s.memory_backed);
        for write in [false, true] {
            assert_eq!(s.inline_flags(write), Some(libc::RWF_NOWAIT));
        }
        s.note_nowait_error(true, &io::Error::from_raw_os_error(libc::EAGAIN));
        assert_eq!(
            s.inline_flags(true),
            Some(libc::RWF_NOWAIT),
            "EAGAIN: still supported"
        );
        s.note_nowait_error(true, &io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        assert_eq!(s.inline_flags(true), None, "unsupported: not tried again");
        assert_eq!(
            s.inline_flags(false),
            Some(libc::RWF_NOWAIT),
            "writes refused (ext4): reads still tried"
        );
        s.note_nowait_error(false, &io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        assert_eq!(s.inline_flags(false), None);
    }
}
