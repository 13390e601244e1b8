//! Volumes: a shared description of one opened backing store, and the
//! per-reactor handles that do its I/O.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::stats::VolumeStats;

use crate::backend::{Backend, BackendInfo, Engine};
use crate::file::{EpollFile, FileStore, UringFile, BLKGETSIZE64, BLKSSZGET};
use crate::lock::FileLock;
use crate::memory::{MemoryBackend, MemoryStore};
use crate::null::NullBackend;
use crate::rbd::{Image, RbdBackend, RbdError, RbdSpec};
use crate::SegmentList;

/// What stores a volume's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A regular file, or a block device (detected from the path).
    File,
    /// A block device (must be one).
    Block,
    /// Discards writes, reads zeroes (benchmarks).
    Null,
    /// RAM (tests).
    Memory,
    /// A Ceph RBD image (`VolumeSpec::rbd`).
    Rbd,
}

/// How to open a volume (the daemon maps its configuration onto this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume name (for messages).
    pub name: String,
    /// Backend kind.
    pub kind: BackendKind,
    /// Path of the file or device (file/block kinds).
    pub path: Option<PathBuf>,
    /// Capacity in bytes; required for null/memory and for creating files.
    pub size: Option<u64>,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Refuse writes.
    pub read_only: bool,
    /// Open with `O_DIRECT`.
    pub direct_io: bool,
    /// The image of an RBD volume.
    pub rbd: Option<RbdSpec>,
    /// Memory volumes: how long every write waits before it lands.
    pub write_delay: std::time::Duration,
}

/// Why a volume could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An I/O error with what we were doing.
    #[error("volume {volume}: {action} {path}: {source}")]
    Io {
        /// Volume name.
        volume: String,
        /// What failed, e.g. "opening".
        action: &'static str,
        /// Path involved.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The file is locked: another daemon (or another volume of this one)
    /// serves it.
    #[error(
        "volume {volume}: {path} is locked by {holder}: it is already being served \
         (one file is served by one volume of one daemon only)"
    )]
    Locked {
        /// Volume name.
        volume: String,
        /// The file.
        path: String,
        /// Who holds the lock, as far as known ("process 1234 (zctarget)").
        holder: String,
    },
    /// An RBD image could not be opened (or is locked by another client).
    #[error("volume {volume}: {error}")]
    Rbd {
        /// Volume name.
        volume: String,
        /// What went wrong.
        error: RbdError,
    },
    /// The specification cannot work.
    #[error("volume {volume}: {reason}")]
    Invalid {
        /// Volume name.
        volume: String,
        /// What is wrong.
        reason: String,
    },
}

enum Store {
    File(Arc<FileStore>),
    Null,
    Memory(Arc<MemoryStore>),
    Rbd(Arc<Image>),
}

/// One opened backing store, shared by every reactor.
pub struct Volume {
    name: String,
    info: BackendInfo,
    store: Store,
    stats: Arc<VolumeStats>,
    /// The file's lock (file and block volumes), held while the volume is.
    _lock: Option<Arc<FileLock>>,
    /// Serialises COMPARE AND WRITE (and read-modify-writes) on the volume,
    /// whichever LUN, frontend or peer gateway asks (atomicity, SBC-3
    /// §5.2); shared by every handle.
    caw: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish()
    }
}

impl Volume {
    /// Opens the store, creating a sparse file when it is missing and a size
    /// is given (or extending a shorter file, sparsely).
    pub fn open(spec: &VolumeSpec) -> Result<Arc<Volume>, BackendError> {
        let invalid = |reason: String| BackendError::Invalid {
            volume: spec.name.clone(),
            reason,
        };
        if spec.block_size != 512 && spec.block_size != 4096 {
            return Err(invalid(format!(
                "block size {} is not 512 or 4096",
                spec.block_size
            )));
        }
        let bs = u64::from(spec.block_size);
        let mut lock = None;
        let (store, capacity, discard, volatile_cache) = match spec.kind {
            BackendKind::Null | BackendKind::Memory => {
                let size = spec
                    .size
                    .ok_or_else(|| invalid("a null or memory volume needs a size".into()))?;
                let capacity = size - size % bs;
                let store = if spec.kind == BackendKind::Null {
                    Store::Null
                } else {
                    let bytes = usize::try_from(capacity)
                        .map_err(|_| invalid("memory volume too large".into()))?;
                    let store = MemoryStore::new(bytes).map_err(|e| {
                        invalid(format!("cannot allocate {bytes} bytes of memory: {e}"))
                    })?;
                    Store::Memory(Arc::new(store.with_write_delay(spec.write_delay)))
                };
                (store, capacity, true, false)
            }
            BackendKind::File | BackendKind::Block => {
                let path = spec
                    .path
                    .clone()
                    .ok_or_else(|| invalid("a file or block volume needs a path".into()))?;
                let (file, file_lock, capacity, block_device) = open_file(spec, &path)?;
                lock = Some(file_lock);
                let store = FileStore::new(file, block_device);
                (Store::File(Arc::new(store)), capacity, true, true)
            }
            BackendKind::Rbd => {
                let rbd = spec
                    .rbd
                    .as_ref()
                    .ok_or_else(|| invalid("an rbd volume needs its pool and image".into()))?;
                let image = crate::rbd::open(rbd, spec.size, spec.read_only).map_err(|error| {
                    BackendError::Rbd {
                        volume: spec.name.clone(),
                        error,
                    }
                })?;
                let capacity = spec.size.unwrap_or(image.size()).min(image.size());
                // No volatile cache: rbd_cache is off, a completed write is
                // on the OSDs. Discards read back zeroes (see rbd/mod.rs).
                (Store::Rbd(image), capacity - capacity % bs, true, false)
            }
        };
        if capacity == 0 {
            return Err(invalid("capacity is zero".into()));
        }
        Ok(Arc::new(Volume {
            stats: Arc::default(),
            name: spec.name.clone(),
            info: BackendInfo {
                capacity,
                block_size: spec.block_size,
                read_only: spec.read_only,
                discard,
                volatile_cache,
            },
            store,
            _lock: lock,
            caw: Arc::default(),
        }))
    }

    /// The RBD image of an rbd volume.
    pub fn rbd_image(&self) -> Option<&Arc<Image>> {
        match &self.store {
            Store::Rbd(image) => Some(image),
            _ => None,
        }
    }

    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Facts about the volume.
    pub fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// Flushes the store synchronously (shutdown).
    pub fn sync(&self) -> io::Result<()> {
        match &self.store {
            Store::File(f) if !self.info.read_only => f.sync(),
            _ => Ok(()),
        }
    }

    /// Which parts of `[offset, offset + len)` hold data: ordered
    /// `(offset, len, allocated)` runs covering the range (an RBD image's
    /// may cover only a prefix: see `rbd/allocation.rs`). Stores that
    /// cannot tell report everything allocated. At most `max_runs` runs.
    pub fn allocation(
        &self,
        offset: u64,
        len: u64,
        max_runs: usize,
    ) -> io::Result<Vec<(u64, u64, bool)>> {
        match &self.store {
            Store::File(f) => f.allocation(offset, len, max_runs.max(1)),
            Store::Rbd(image) => image.allocation(offset, len, max_runs.max(1)),
            _ => Ok(vec![(offset, len, true)]),
        }
    }

    /// Opens a handle for the calling reactor. On the uring engine this must
    /// run inside that reactor's tokio-uring runtime.
    pub fn open_handle(self: &Arc<Self>, engine: Engine) -> io::Result<VolumeHandle> {
        let info = self.info.clone();
        let io = match &self.store {
            Store::Null => HandleIo::Null(NullBackend { info }),
            Store::Memory(store) => HandleIo::Memory(MemoryBackend {
                info,
                store: Arc::clone(store),
            }),
            Store::File(store) => match engine {
                Engine::Uring => HandleIo::UringFile(UringFile::new(
                    info,
                    Arc::clone(store),
                    Arc::clone(&self.stats),
                )?),
                Engine::Epoll => HandleIo::EpollFile(EpollFile {
                    info,
                    store: Arc::clone(store),
                    stats: Arc::clone(&self.stats),
                }),
            },
            Store::Rbd(image) => HandleIo::Rbd(RbdBackend {
                info,
                image: Arc::clone(image),
                forward: true,
            }),
        };
        Ok(VolumeHandle {
            io,
            stats: Arc::clone(&self.stats),
            caw: Arc::clone(&self.caw),
        })
    }

    /// I/O statistics over every reactor's handle.
    pub fn stats(&self) -> &VolumeStats {
        &self.stats
    }
}

/// Opens (creating if allowed) and locks the file, then sizes it: the lock
/// comes before anything that could change a file another daemon serves.
fn open_file(
    spec: &VolumeSpec,
    path: &PathBuf,
) -> Result<(File, Arc<FileLock>, u64, bool), BackendError> {
    let io_err = |action: &'static str, source: io::Error| BackendError::Io {
        volume: spec.name.clone(),
        action,
        path: path.display().to_string(),
        source,
    };
    let invalid = |reason: String| BackendError::Invalid {
        volume: spec.name.clone(),
        reason,
    };
    let bs = u64::from(spec.block_size);
    let exists = path.exists();
    let is_block = exists
        && std::fs::metadata(path)
            .map_err(|e| io_err("inspecting", e))?
            .file_type()
            .is_block_device();
    if spec.kind == BackendKind::Block && !is_block {
        return Err(invalid(format!("{} is not a block device", path.display())));
    }
    if !exists && spec.size.is_none() {
        return Err(invalid(format!(
            "{} does not exist and no size is given to create it",
            path.display()
        )));
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    if !spec.read_only {
        opts.write(true);
        if !is_block {
            opts.create(true);
        }
    }
    if spec.direct_io {
        opts.custom_flags(libc::O_DIRECT);
    }
    let file = opts.open(path).map_err(|e| io_err("opening", e))?;
    let lock = crate::lock::lock(path, &file, &spec.name)?;
    if is_block {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which
        // points at our local for the duration of the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) } != 0 {
            return Err(io_err("reading the size of", io::Error::last_os_error()));
        }
        let mut sector: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer, which points
        // at our local for the duration of the call.
        if unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                BLKSSZGET as _,
                &mut sector as *mut libc::c_int,
            )
        } != 0
        {
            return Err(io_err(
                "reading the sector size of",
                io::Error::last_os_error(),
            ));
        }
        if u64::from(sector.unsigned_abs()) > bs {
            return Err(invalid(format!(
                "device sector size {sector} is larger than block_size {bs}"
            )));
        }
        let capacity = spec.size.unwrap_or(size).min(size);
        return Ok((file, lock, capacity - capacity % bs, true));
    }
    let len = file.metadata().map_err(|e| io_err("inspecting", e))?.len();
    let capacity = match spec.size {
        Some(size) => {
            if len < size {
                if spec.read_only {
                    return Err(invalid(format!(
                        "read-only file is {len} bytes, smaller than its size {size}"
                    )));
                }
                // Sparse: set_len allocates nothing.
                file.set_len(size).map_err(|e| io_err("sizing", e))?;
            }
            size
        }
        None => len,
    };
    Ok((file, lock, capacity - capacity % bs, false))
}

/// A volume as one reactor sees it: the I/O path for its engine, and the
/// volume's statistics (every operation is counted and timed here, so both
/// frontends are measured the same way).
#[derive(Debug)]
pub struct VolumeHandle {
    io: HandleIo,
    stats: Arc<VolumeStats>,
    caw: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
enum HandleIo {
    /// File or block device through io_uring.
    UringFile(UringFile),
    /// File or block device through the blocking pool.
    EpollFile(EpollFile),
    /// Null.
    Null(NullBackend),
    /// Memory.
    Memory(MemoryBackend),
    /// Ceph RBD (either engine: librbd does its own I/O).
    Rbd(RbdBackend),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match &$self.io {
            HandleIo::UringFile($b) => $e,
            HandleIo::EpollFile($b) => $e,
            HandleIo::Null($b) => $e,
            HandleIo::Memory($b) => $e,
            HandleIo::Rbd($b) => $e,
        }
    };
}

impl Backend for VolumeHandle {
    fn info(&self) -> &BackendInfo {
        dispatch!(self, b => b.info())
    }

    async fn read(&self, offset: u64, buf: SegmentList) -> (SegmentList, io::Result<()>) {
        let start = Instant::now();
        let len = buf.len() as u64;
        let (buf, r) = dispatch!(self, b => b.read(offset, buf).await);
        self.stats.record(false, len, start.elapsed(), r.is_ok());
        (buf, r)
    }

    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        fua: bool,
    ) -> (SegmentList, io::Result<()>) {
        let start = Instant::now();
        let len = buf.len() as u64;
        let (buf, r) = dispatch!(self, b => b.write(offset, buf, fua).await);
        self.stats.record(true, len, start.elapsed(), r.is_ok());
        (buf, r)
    }

    async fn flush(&self) -> io::Result<()> {
        let r = dispatch!(self, b => b.flush().await);
        self.count(&self.stats.flushes, &r);
        r
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = dispatch!(self, b => b.discard(offset, len).await);
        self.count(&self.stats.discards, &r);
        r
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = dispatch!(self, b => b.write_zeroes(offset, len).await);
        self.count(&self.stats.discards, &r);
        r
    }
}

impl VolumeHandle {
    /// The volume's COMPARE AND WRITE lock (one per volume, see `Volume`).
    pub fn caw_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.caw
    }

    /// Whether this gateway may write the volume now (a shared rbd
    /// image's gate; always for other volumes that are not read-only).
    pub fn may_write(&self) -> io::Result<()> {
        if self.info().read_only {
            return Err(crate::read_only_error());
        }
        match &self.io {
            HandleIo::Rbd(b) => b.image.may_write(),
            _ => Ok(()),
        }
    }

    /// The same handle, whose writes are never forwarded to another
    /// gateway (the peer link's owner side: what a peer forwarded runs
    /// here or is refused).
    pub fn without_forwarding(mut self) -> Self {
        if let HandleIo::Rbd(b) = &mut self.io {
            b.forward = false;
        }
        self
    }

    /// COMPARE AND WRITE run by the owner of the volume, when this gateway
    /// follows and forwards writes now (`None`: run it here). `Ok(Some(at))`
    /// is a miscompare at byte `at` of the compared range.
    pub async fn forward_compare_and_write(
        &self,
        offset: u64,
        compare: Vec<u8>,
        data: Vec<u8>,
        fua: bool,
    ) -> Option<crate::forward::Forwarded> {
        match &self.io {
            HandleIo::Rbd(b) => {
                let start = Instant::now();
                let len = data.len() as u64;
                let r = b
                    .forward_compare_and_write(offset, compare, data, fua)
                    .await?;
                self.stats.record(true, len, start.elapsed(), r.is_ok());
                Some(r)
            }
            _ => None,
        }
    }

    /// A read of `[offset, offset + len)` to be sent from the file itself
    /// (`sendfile`) rather than read into leased buffers: only a file in
    /// memory (tmpfs, ramfs) — the page cache is the data, so `sendfile`
    /// never waits for a device on the reactor — and only within the
    /// volume and the file. Counted as a read of `len` bytes (its cost is
    /// paid when the socket takes the pages). `None`: read as usual.
    pub fn file_range(&self, offset: u64, len: usize) -> Option<crate::file::FileRange> {
        let store = match &self.io {
            HandleIo::UringFile(f) => &f.store,
            HandleIo::EpollFile(f) => &f.store,
            _ => return None,
        };
        self.direct_range(offset, len, || store.range(offset, len))
    }

    /// A read of `[offset, offset + len)` of a memory volume to be sent
    /// from its store rather than copied into leased buffers (see
    /// [`MemoryRange`](crate::memory::MemoryRange): only for a send that
    /// copies). Counted as a read of `len` bytes. `None`: not a memory
    /// volume, or outside it.
    pub fn memory_range(&self, offset: u64, len: usize) -> Option<crate::memory::MemoryRange> {
        let HandleIo::Memory(m) = &self.io else {
            return None;
        };
        self.direct_range(offset, len, || {
            crate::memory::MemoryRange::new(&m.store, offset, len)
        })
    }

    /// What [`file_range`](Self::file_range) and
    /// [`memory_range`](Self::memory_range) share: the range checked against
    /// the volume, made by `range`, and counted as a read of `len` bytes.
    fn direct_range<T>(
        &self,
        offset: u64,
        len: usize,
        range: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        crate::backend::check_range(self.info(), offset, len as u64).ok()?;
        let range = range()?;
        self.stats
            .record(false, len as u64, std::time::Duration::ZERO, true);
        Some(range)
    }

    fn count(&self, ok_counter: &AtomicU64, r: &io::Result<()>) {
        let c = if r.is_ok() {
            ok_counter
        } else {
            &self.stats.errors
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}
