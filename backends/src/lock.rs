//! Volume files are locked while a volume is open, so two daemons can never
//! serve one file (each would keep its own reservations, sessions and
//! controller state over the same blocks).
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on a descriptor of its own (not
//! the one I/O goes through, whose duplicates live in every reactor's
//! handle): it is held exactly as long as the [`Volume`](crate::Volume)
//! holding the [`FileLock`], and the kernel drops it when the process dies
//! (kill -9 included). `flock` works on regular files and block devices
//! alike.
//!
//! `flock` locks belong to an open file description, so within one process
//! a second open of the same file would conflict with the first. A volume
//! that is redefined (same name, reopened before the old definition is
//! dropped) therefore shares the lock its old definition took, found in a
//! process-wide registry by device and inode; another volume of this daemon
//! on the same file is refused.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use crate::volume::BackendError;

/// An exclusive lock on a volume's file, released when dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    /// The locked descriptor (its own open file description).
    _file: File,
    /// The volume that took it.
    owner: String,
}

/// A file's identity: (device, inode).
type FileKey = (u64, u64);

/// Live locks of this process by file (few: one per volume).
static LOCKS: Mutex<Vec<(FileKey, Weak<FileLock>)>> = Mutex::new(Vec::new());

/// Locks the file `io_file` (opened from `path` for volume `volume`).
pub(crate) fn lock(
    path: &Path,
    io_file: &File,
    volume: &str,
) -> Result<Arc<FileLock>, BackendError> {
    let shown = path.display().to_string();
    let io_err = |action: &'static str, source: io::Error| BackendError::Io {
        volume: volume.to_owned(),
        action,
        path: shown.clone(),
        source,
    };
    let meta = io_file.metadata().map_err(|e| io_err("inspecting", e))?;
    let key = (meta.dev(), meta.ino());
    let mut registry = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    registry.retain(|(_, l)| l.strong_count() > 0);
    let held = registry
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, l)| l.upgrade());
    if let Some(held) = held {
        if held.owner == volume {
            return Ok(held);
        }
        return Err(BackendError::Locked {
            volume: volume.to_owned(),
            path: shown,
            holder: format!("volume {:?} of this daemon", held.owner),
        });
    }
    // A descriptor of our own for the lock, checked to be the same file.
    let file = File::open(path).map_err(|e| io_err("opening (to lock)", e))?;
    let again = file.metadata().map_err(|e| io_err("inspecting", e))?;
    if (again.dev(), again.ino()) != key {
        return Err(io_err(
            "locking",
            io::Error::other("the file was replaced while being opened"),
        ));
    }
    // SAFETY: flock(2) on a descriptor `file` owns for the duration of the
    // call; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = holder(key).unwrap_or_else(|| "another process".to_owned());
            return Err(BackendError::Locked {
                volume: volume.to_owned(),
                path: shown,
                holder,
            });
        }
        return Err(io_err("locking", e));
    }
    let lock = Arc::new(FileLock {
        _file: file,
        owner: volume.to_owned(),
    });
    registry.push((key, Arc::downgrade(&lock)));
    Ok(lock)
}

/// "process <pid> (<name>)" holding a flock on (device, inode), from
/// `/proc/locks`; None when it cannot be told.
fn holder((dev, ino): FileKey) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; the device is
    // "major:minor" in hex. Some filesystems (btrfs subvolumes) report a
    // different device through stat, so the inode alone is the fallback.
    let want_dev = format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev));
    let mut by_inode = None;
    for line in locks.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            continue;
        }
        let (Some(pid), Some(id)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let Some((d, i)) = id.rsplit_once(':') else {
            continue;
        };
        if i.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if d == want_dev {
            return Some(describe(pid));
        }
        by_inode.get_or_insert(pid);
    }
    by_inode.map(describe)
}

fn describe(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) => format!("process {pid} ({})", name.trim()),
        Err(_) => format!("process {pid}"),
    }
}
