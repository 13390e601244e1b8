//! io_uring operations that stall: reads of a FIFO with no data yet, which
//! the kernel completes only when the test writes. They show when a lease
//! of an abandoned operation returns to the pool.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, BackendInfo};
use crate::file::{FileStore, UringFile};
use crate::{register_pool_with_ring, BufferPool, POISON_BYTE};

const CHUNK: usize = 64 << 10;

/// A FIFO opened for reading (and writing, so that opening does not block
/// and reads wait for data instead of seeing EOF) as a uring file, and a
/// writer to feed it.
fn fifo() -> (tempfile::TempDir, UringFile, File) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fifo");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open fifo");
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .expect("open fifo writer");
    let info = BackendInfo {
        capacity: 1 << 30,
        block_size: 512,
        read_only: false,
        discard: false,
        volatile_cache: false,
    };
    let store = Arc::new(FileStore::new(file, false));
    let uring = UringFile::new(info, store, Arc::default()).expect("uring file");
    (dir, uring, writer)
}

/// Lets the runtime run (no I/O of our own) until `done` or `limit`.
async fn idle_until(limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A read abandoned mid-flight keeps its lease while the kernel may write
/// into it, and returns it when its completion arrives — on a reactor that
/// does no other I/O (a parked lease used to wait for the next fixed I/O).
fn abandoned_read_released_at_completion(fixed: bool) {
    tokio_uring::start(async {
        let pool = BufferPool::new(CHUNK, CHUNK, true).expect("pool");
        if fixed {
            register_pool_with_ring(&pool).expect("fixed buffers");
        }
        let (_dir, file, mut writer) = fifo();
        let buf = pool.lease(CHUNK).await.expect("lease");
        let read = file.read(0, buf);
        let abandoned = tokio::time::timeout(Duration::from_millis(20), read).await;
        assert!(abandoned.is_err(), "the FIFO read should stall");
        assert_eq!(
            pool.free_chunks(),
            0,
            "lease held while the read is in flight"
        );
        writer.write_all(&[0x5A; 4096]).expect("feed the FIFO");
        idle_until(Duration::from_secs(5), || pool.is_full()).await;
        assert!(
            pool.is_full(),
            "the abandoned read completed, but its lease never came back"
        );
        // Released after the kernel's write, so it is poisoned all over.
        let again = pool.lease(CHUNK).await.expect("lease");
        assert!(again.segments()[0]
            .as_slice()
            .iter()
            .all(|&b| b == POISON_BYTE));
    });
}

#[test]
fn abandoned_fixed_read_is_released_at_its_completion_on_an_idle_reactor() {
    abandoned_read_released_at_completion(true);
}

#[test]
fn abandoned_plain_read_is_released_at_its_completion() {
    abandoned_read_released_at_completion(false);
}
