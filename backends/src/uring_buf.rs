//! Pool memory as tokio-uring buffers.
//!
//! - [`Lease`] implements `IoBuf`/`IoBufMut`, so a lease (or a `Slice` of it)
//!   can be *moved* into a tokio-uring operation, which owns it until the
//!   completion arrives — even if the future awaiting it is dropped. The file
//!   backend moves leases in as [`OpLease`](crate::ring_op) so the ring's
//!   teardown can account for them.
//! - [`register_pool_with_ring`] registers the pool's chunks as io_uring
//!   fixed buffers on the calling reactor's ring; the file I/O then uses
//!   `read_fixed_at`/`write_fixed_at` for leases of that pool.
//!
//! With fixed buffers the operation owns a `FixedBuf` (a second, non-owning
//! view of the chunk) *and* the lease, together (`ring_op::OpFixed`): if the
//! future awaiting such an operation is dropped mid-flight, tokio-uring keeps
//! both until the completion and drops them then — the `FixedBuf` is checked
//! back in first, then the lease returns to the pool. Nothing waits for a
//! later I/O on the reactor.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_uring::buf::fixed::{FixedBuf, FixedBufRegistry};
use tokio_uring::buf::{IoBuf, IoBufMut};

use crate::pool::{BufferPool, Lease};

// SAFETY: `stable_ptr` is the chunk's start inside the pool allocation, which
// does not move and outlives the lease (the lease holds an `Arc` of the pool).
// A lease is moved into the operation and owned by it until the completion,
// so the memory stays valid and unaliased by us for the kernel's whole access.
// All `bytes_total` bytes are initialized: the pool is zeroed at allocation.
unsafe impl IoBuf for Lease {
    fn stable_ptr(&self) -> *const u8 {
        Lease::stable_ptr(self)
    }

    fn bytes_init(&self) -> usize {
        self.capacity()
    }

    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: see `IoBuf` above; `&mut self` is exclusive and the pointer is the
// same stable chunk start. The whole chunk is always initialized, so
// `set_init` has nothing to record.
unsafe impl IoBufMut for Lease {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        Lease::stable_mut_ptr(self)
    }

    unsafe fn set_init(&mut self, _pos: usize) {}
}

/// Most buffers one registry can hold: tokio-uring caps a
/// `FixedBufRegistry` at `min(UIO_MAXIOV, u16::MAX)` = 1024 buffers. Chunks
/// with a higher index use plain (unregistered) reads and writes.
pub const MAX_FIXED_BUFFERS: usize = 1024;

/// A non-owning view of one pool chunk, registered with the ring. It holds a
/// clone of the pool so the memory outlives the registry (which lives as long
/// as the ring or any in-flight fixed operation).
struct PoolChunk {
    ptr: *mut u8,
    len: usize,
    _pool: BufferPool,
}

// SAFETY: `ptr..ptr + len` is one chunk inside the pool allocation, kept
// alive by `_pool` for as long as this value (and so the registry) exists.
// The registry only hands the memory to the kernel through `FixedBuf`s, one
// at a time per chunk, and we check a chunk out only while holding its
// (exclusive) lease, so the kernel's access never overlaps another owner's.
// The pool memory is zeroed at allocation, so every byte is initialized.
unsafe impl IoBuf for PoolChunk {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.len
    }
}

// SAFETY: see `IoBuf` for `PoolChunk`.
unsafe impl IoBufMut for PoolChunk {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    unsafe fn set_init(&mut self, _pos: usize) {}
}

/// The pool registered with this thread's ring.
struct Registration {
    pool: BufferPool,
    registry: FixedBufRegistry<PoolChunk>,
}

thread_local! {
    static REGISTRATION: RefCell<Option<Registration>> = const { RefCell::new(None) };
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Registers `pool`'s chunks (up to [`MAX_FIXED_BUFFERS`]) as fixed buffers
/// with the io_uring of the calling thread. Call once per reactor, **inside**
/// `tokio_uring::start` (tokio-uring panics otherwise), before any I/O.
///
/// On failure (typically `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`, or a ring
/// that already has buffers) it logs one warning per process and returns the
/// error; file I/O then uses plain reads and writes, which is correct, only
/// slower. The registration ends with the runtime.
pub fn register_pool_with_ring(pool: &BufferPool) -> io::Result<()> {
    let already = REGISTRATION.with(|r| r.borrow().as_ref().map(|reg| reg.pool.inner_ptr_eq(pool)));
    match already {
        Some(true) => return Ok(()),
        Some(false) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "another buffer pool is already registered with this ring",
            ))
        }
        None => {}
    }
    let (base, total) = pool.region();
    let chunk = pool.chunk_size();
    let count = (total / chunk).min(MAX_FIXED_BUFFERS);
    let chunks = (0..count).map(|i| PoolChunk {
        // `i * chunk < total`: the pointer stays inside the allocation.
        ptr: base.as_ptr().wrapping_add(i * chunk),
        len: chunk,
        _pool: pool.clone(),
    });
    let registry = FixedBufRegistry::new(chunks);
    if let Err(e) = registry.register() {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %e,
                buffers = count,
                bytes = count * chunk,
                "cannot register the buffer pool as io_uring fixed buffers \
                 (RLIMIT_MEMLOCK too low without CAP_IPC_LOCK?); using plain reads/writes"
            );
        }
        return Err(e);
    }
    if count * chunk < total {
        tracing::info!(
            registered = count,
            total = total / chunk,
            "only the first {MAX_FIXED_BUFFERS} pool chunks are io_uring fixed buffers"
        );
    }
    REGISTRATION.with(|r| {
        *r.borrow_mut() = Some(Registration {
            pool: pool.clone(),
            registry,
        });
    });
    // The registration belongs to this runtime's ring: forget it when the
    // runtime drops its tasks (tokio-uring drops the LocalSet first), so a
    // later runtime on the same thread never uses another ring's indices.
    let guard = ClearOnDrop;
    tokio_uring::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    Ok(())
}

struct ClearOnDrop;

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        // `try_with`: this may run during thread-local destruction.
        let _ = REGISTRATION.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                // In-flight fixed operations keep their `FixedBuf` (and with
                // it the registry) and their lease until their completion.
                r.take();
            }
        });
    }
}

/// Whether fixed buffers are registered on this thread (for tests and
/// diagnostics).
pub fn fixed_buffers_registered() -> bool {
    REGISTRATION.with(|r| r.borrow().is_some())
}

/// Checks out the fixed buffer of `lease`'s chunk if its pool is registered
/// on this thread and the chunk index is registered; otherwise gives the
/// lease back for plain I/O. The caller moves both into the operation
/// together (`ring_op::OpFixed`).
pub(crate) fn check_out_fixed(lease: Lease) -> Result<(FixedBuf, Lease), Lease> {
    REGISTRATION.with(|r| {
        let r = r.borrow();
        let Some(reg) = r.as_ref().filter(|reg| lease.belongs_to(&reg.pool)) else {
            return Err(lease);
        };
        match reg.registry.check_out(lease.index() as usize) {
            Some(buf) => Ok((buf, lease)),
            None => Err(lease),
        }
    })
}
