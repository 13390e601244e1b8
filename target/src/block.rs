//! Block execution shared by both frontends: what a SCSI plan and an NVMe
//! I/O plan ask of a volume — read, write (FUA), flush, verify, compare,
//! write same / write zeroes, discard — carried out once, with one error
//! type that each frontend maps to its wire answer (sense data or an NVMe
//! status). Buffers come from the pool and go back when dropped; nothing
//! here knows about sockets or PDUs.

use zctarget_backends::{Backend, BufferPool, DirectRange, PoolError, SegmentList, VolumeHandle};

/// Largest buffer one step of a long operation (verify, compare, write
/// same) holds: long commands walk the range instead of leasing all of it.
pub const STEP_BYTES: usize = 1 << 20;

/// Why a block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// Reading the medium failed at `offset`.
    #[error("read at byte {offset} failed: {error}")]
    Read {
        /// Byte offset of the failing step.
        offset: u64,
        /// The backend's error.
        error: std::io::Error,
    },
    /// Writing the medium failed at `offset`.
    #[error("write at byte {offset} failed: {error}")]
    Write {
        /// Byte offset of the failing step.
        offset: u64,
        /// The backend's error.
        error: std::io::Error,
    },
    /// The volume is read-only.
    #[error("volume is write-protected")]
    WriteProtected,
    /// This gateway may not write the volume: another gateway of the
    /// cluster holds its lock (`fenced`: this one lost it).
    #[error("not the owner of the volume (fenced: {fenced}): {error}")]
    NotOwner {
        /// Lost the lock rather than never having it.
        fenced: bool,
        /// Another live gateway holds the lock: not a passing transition.
        settled: bool,
        /// The backend's error (carrying `rbd::NotOwner`).
        error: std::io::Error,
    },
    /// No buffers (the pool is closing, or the request exceeds it).
    #[error("buffers: {0}")]
    Buffers(#[from] PoolError),
}

impl Fault {
    fn write(offset: u64, error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::PermissionDenied {
            Fault::WriteProtected
        } else if let Some(n) = zctarget_backends::rbd::not_owner(&error) {
            Fault::NotOwner {
                fenced: n.fenced,
                settled: n.settled,
                error,
            }
        } else {
            Fault::Write { offset, error }
        }
    }

    /// The byte offset of the failing step, when known.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Fault::Read { offset, .. } | Fault::Write { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// Back to the backend's error, for callers that speak `io::Error`
    /// (a write-protected volume stays `PermissionDenied`).
    pub fn into_io(self) -> std::io::Error {
        match self {
            Fault::Read { error, .. }
            | Fault::Write { error, .. }
            | Fault::NotOwner { error, .. } => error,
            Fault::WriteProtected => zctarget_backends::read_only_error(),
            Fault::Buffers(e) => std::io::Error::other(e),
        }
    }
}

/// Reads `len` bytes at `offset` into freshly leased buffers.
pub async fn read(
    vol: &VolumeHandle,
    pool: &BufferPool,
    offset: u64,
    len: usize,
) -> Result<SegmentList, Fault> {
    let list = pool.lease(len).await?;
    let (list, r) = vol.read(offset, list).await;
    r.map_err(|error| Fault::Read { offset, error })?;
    Ok(list)
}

/// Writes `data` at `offset`; with `fua` it is durable before this returns.
/// The buffers go back to the pool when the write is done.
pub async fn write(
    vol: &VolumeHandle,
    offset: u64,
    data: SegmentList,
    fua: bool,
) -> Result<(), Fault> {
    let (_data, r) = vol.write(offset, data, fua).await;
    r.map_err(|e| Fault::write(offset, e))
}

/// Flushes the volume's volatile cache.
pub async fn flush(vol: &VolumeHandle) -> Result<(), Fault> {
    vol.flush().await.map_err(|e| Fault::write(0, e))
}

/// Verifies that `len` bytes at `offset` are readable, a step at a time.
pub async fn verify(
    vol: &VolumeHandle,
    pool: &BufferPool,
    offset: u64,
    len: u64,
) -> Result<(), Fault> {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(STEP_BYTES as u64) as usize;
        read(vol, pool, offset + done, n).await?;
        done += n as u64;
    }
    Ok(())
}

/// Compares `data` with the medium at `offset`, a step at a time: the
/// offset of the first differing byte, or None when they are equal.
pub async fn compare(
    vol: &VolumeHandle,
    pool: &BufferPool,
    offset: u64,
    data: &SegmentList,
) -> Result<Option<usize>, Fault> {
    let len = data.len();
    let mut done = 0usize;
    let mut theirs = vec![0u8; 0];
    while done < len {
        let n = (len - done).min(STEP_BYTES);
        let medium = read(vol, pool, offset + done as u64, n).await?;
        let mut pos = done;
        for ours in medium.slices() {
            let take = ours.len().min(len - pos);
            theirs.resize(take, 0);
            data.copy_to_slice(pos, &mut theirs);
            if let Some(i) = ours[..take].iter().zip(&theirs).position(|(a, b)| a != b) {
                return Ok(Some(pos + i));
            }
            pos += take;
        }
        done += n;
    }
    Ok(None)
}

/// Zeroes `len` bytes at `offset`; with `deallocate` the range is
/// discarded where the volume reads back discarded blocks as zeroes.
pub async fn zero(
    vol: &VolumeHandle,
    offset: u64,
    len: u64,
    deallocate: bool,
    fua: bool,
) -> Result<(), Fault> {
    let r = if deallocate && vol.info().discard {
        vol.discard(offset, len).await
    } else {
        vol.write_zeroes(offset, len).await
    };
    r.map_err(|e| Fault::write(offset, e))?;
    if fua {
        flush(vol).await?;
    }
    Ok(())
}

/// Discards `len` bytes at `offset` (UNMAP, Dataset Management).
pub async fn discard(vol: &VolumeHandle, offset: u64, len: u64) -> Result<(), Fault> {
    vol.discard(offset, len)
        .await
        .map_err(|e| Fault::write(offset, e))
}

/// Writes copies of `pattern` (one block) over `len` bytes at `offset`
/// (WRITE SAME with a non-zero block, SANITIZE OVERWRITE): fills a leased
/// buffer of up to one step once and writes it repeatedly.
pub async fn write_same(
    vol: &VolumeHandle,
    pool: &BufferPool,
    offset: u64,
    len: u64,
    pattern: &[u8],
) -> Result<(), Fault> {
    let bs = pattern.len().max(1);
    let chunk = STEP_BYTES.min(len as usize).max(bs) / bs * bs;
    let mut buf = pool.lease(chunk).await?;
    let mut at = 0;
    while at < chunk {
        buf.copy_from_slice(at, pattern);
        at += bs;
    }
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk as u64) as usize;
        if n < buf.len() {
            buf.truncate(n);
        }
        let (back, r) = vol.write(offset + done, buf, false).await;
        r.map_err(|e| Fault::write(offset + done, e))?;
        buf = back;
        done += n as u64;
    }
    Ok(())
}

/// Smallest read sent straight from a memory-backed volume file with
/// `sendfile` (see [`direct_read`]). Below it the per-command `sendfile`
/// costs more than the copies it saves: small reads batch many PDUs into
/// one `sendmsg`, and a file part splits that call.
pub const FILE_SEND_MIN: usize = 64 * 1024;

/// A read of `len` bytes at `offset` to be sent from where the volume
/// keeps it instead of read into leased buffers, when there is no data
/// digest (which needs the bytes in userspace):
/// - a memory volume's store, when the read's send copies (`send_copies`:
///   no `MSG_ZEROCOPY` for its payload; a zero-copy send keeps the leased
///   path, see `MemoryRange`);
/// - a file in memory (tmpfs, ramfs) by `sendfile`, for reads of at least
///   [`FILE_SEND_MIN`].
///
/// `None`: lease and read as usual.
pub fn direct_read(
    vol: &VolumeHandle,
    offset: u64,
    len: usize,
    data_digest: bool,
    send_copies: bool,
) -> Option<DirectRange> {
    if data_digest {
        return None;
    }
    if send_copies {
        if let Some(m) = vol.memory_range(offset, len) {
            return Some(DirectRange::Memory(m));
        }
    }
    if len < FILE_SEND_MIN {
        return None;
    }
    vol.file_range(offset, len).map(DirectRange::File)
}
