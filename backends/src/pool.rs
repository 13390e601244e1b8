//! The buffer pool: the only source of payload memory.
//!
//! The pool is one 4096-aligned allocation cut into equal chunks. A [`Lease`]
//! is the exclusive handle to one chunk; it goes back to the pool when it is
//! dropped — which, because leases are only ever *moved* (inside a
//! [`SegmentList`](crate::SegmentList)) into asynchronous operations and handed
//! back by their completions, happens only after the last operation using the
//! memory has finished.
//!
//! Pinned memory is bounded by construction: [`BufferPool::lease`] waits when
//! the pool is empty (back-pressure) and never allocates around it.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use smallvec::SmallVec;
use tokio::sync::Semaphore;

use crate::segment::{Segment, SegmentList};

/// Alignment of every chunk: a page, which is also what `O_DIRECT` needs.
pub const POOL_ALIGN: usize = 4096;

/// Chunks at the start of the pool preferred by leases: io_uring registers
/// this many as fixed buffers (see `uring_buf::MAX_FIXED_BUFFERS`).
pub const PREFERRED_CHUNKS: usize = 1024;

/// Byte written over a chunk when it returns to the pool and poisoning is on.
pub const POISON_BYTE: u8 = 0xA5;

/// Why the pool could not hand out memory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// The request is larger than the whole pool and could never be satisfied.
    #[error("request of {requested} bytes exceeds the buffer pool's total of {total} bytes")]
    TooLarge {
        /// Bytes asked for.
        requested: usize,
        /// Bytes in the whole pool.
        total: usize,
    },
    /// The pool was configured with an impossible geometry.
    #[error("invalid buffer pool geometry: {0}")]
    Geometry(&'static str),
    /// The pool's memory could not be allocated.
    #[error("cannot allocate {0} bytes for the buffer pool")]
    OutOfMemory(usize),
    /// The pool is closed (daemon shutting down).
    #[error("buffer pool closed")]
    Closed,
}

/// Counters describing the pool, cheap to read at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Chunks in the pool.
    pub total_chunks: usize,
    /// Chunks currently free.
    pub free_chunks: usize,
    /// Size of one chunk in bytes.
    pub chunk_size: usize,
    /// How many lease requests had to wait because the pool was empty.
    pub backpressure_waits: u64,
    /// Chunks withheld for good because the kernel may still reference
    /// them (see [`Lease::quarantine`]); they are neither free nor leased.
    pub quarantined_chunks: usize,
}

/// A bounded pool of aligned payload buffers. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

pub(crate) struct PoolInner {
    base: NonNull<u8>,
    layout: Layout,
    chunk_size: usize,
    chunks: usize,
    free: ArrayQueue<u32>,
    /// Free chunks with an index below [`PREFERRED_CHUNKS`] (outside the
    /// reserve): taken before `free`, so that while the pool is not busy
    /// every lease is one of the chunks io_uring has registered as fixed
    /// buffers, instead of the free list cycling through the whole pool.
    free_low: ArrayQueue<u32>,
    /// One permit per free chunk; waiting on it is the back-pressure.
    permits: Semaphore,
    /// The last `reserved` chunks form the reserve: never waited for, leased
    /// only by [`BufferPool::try_lease_reserve`] and as the fallback of
    /// [`BufferPool::try_lease_unasked`] (data a host sends unasked must
    /// find buffers *now*, also while waiters queue for the rest).
    reserved: usize,
    /// End of the preferred range (`free_low` holds `0..low_end`).
    low_end: usize,
    reserve_free: ArrayQueue<u32>,
    reserve_permits: Semaphore,
    poison: bool,
    waits: AtomicU64,
    quarantined: AtomicUsize,
}

// SAFETY: `base` points to memory owned by the pool for its whole life. Each
// chunk is reachable only through the single `Lease` that holds its index
// (indices are handed out once from `free` and come back only when that lease
// drops), so no two threads ever access one chunk's bytes concurrently; the
// shared bookkeeping (`free`, `permits`, `waits`) is itself thread-safe.
unsafe impl Send for PoolInner {}
// SAFETY: see `Send` above: shared access only touches thread-safe bookkeeping.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed(self.layout)` and every lease
        // holds an `Arc<PoolInner>`, so no lease (and no operation holding one)
        // can still reference the memory when the last Arc drops.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

impl BufferPool {
    /// A pool of `total_bytes / chunk_size` chunks of `chunk_size` bytes.
    ///
    /// `chunk_size` must be a non-zero multiple of [`POOL_ALIGN`]; `total_bytes`
    /// is rounded down to whole chunks and must hold at least one.
    pub fn new(total_bytes: usize, chunk_size: usize, poison: bool) -> Result<Self, PoolError> {
        Self::with_reserve(total_bytes, chunk_size, poison, 0)
    }

    /// Like [`new`](Self::new), with `reserve` of the chunks set apart for
    /// requests that must not wait (see [`try_lease_reserve`](Self::try_lease_reserve));
    /// at least one chunk stays outside the reserve.
    pub fn with_reserve(
        total_bytes: usize,
        chunk_size: usize,
        poison: bool,
        reserve: usize,
    ) -> Result<Self, PoolError> {
        if chunk_size == 0 || chunk_size % POOL_ALIGN != 0 {
            return Err(PoolError::Geometry(
                "chunk size must be a non-zero multiple of 4096",
            ));
        }
        let chunks = total_bytes / chunk_size;
        if chunks == 0 {
            return Err(PoolError::Geometry("pool smaller than one chunk"));
        }
        if chunks > u32::MAX as usize || chunks > Semaphore::MAX_PERMITS {
            return Err(PoolError::Geometry("too many chunks"));
        }
        let size = chunks * chunk_size;
        let layout = Layout::from_size_align(size, POOL_ALIGN)
            .map_err(|_| PoolError::Geometry("pool size overflows"))?;
        // SAFETY: `layout` has a non-zero size (chunks >= 1, chunk_size >= 4096).
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).ok_or(PoolError::OutOfMemory(size))?;
        let reserved = reserve.min(chunks - 1);
        // The reserve sits at the end, so that the preferred (registered)
        // chunks at the start serve everyday leases.
        let general = chunks - reserved;
        let low_end = PREFERRED_CHUNKS.min(general);
        let free = ArrayQueue::new((general - low_end).max(1));
        for index in low_end..general {
            // Cannot fail: the queue was created with exactly that many slots.
            let _ = free.push(index as u32);
        }
        let free_low = ArrayQueue::new(low_end.max(1));
        for index in 0..low_end {
            let _ = free_low.push(index as u32);
        }
        let reserve_free = ArrayQueue::new(reserved.max(1));
        for index in general..chunks {
            let _ = reserve_free.push(index as u32);
        }
        Ok(Self {
            inner: Arc::new(PoolInner {
                base,
                layout,
                chunk_size,
                chunks,
                free,
                free_low,
                low_end,
                permits: Semaphore::new(chunks - reserved),
                reserved,
                reserve_free,
                reserve_permits: Semaphore::new(reserved),
                poison,
                waits: AtomicU64::new(0),
                quarantined: AtomicUsize::new(0),
            }),
        })
    }

    /// Size of one chunk (the granularity of leases).
    pub fn chunk_size(&self) -> usize {
        self.inner.chunk_size
    }

    /// Total bytes of payload memory in the pool.
    pub fn total_bytes(&self) -> usize {
        self.inner.chunks * self.inner.chunk_size
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total_chunks: self.inner.chunks,
            free_chunks: self.free_chunks(),
            chunk_size: self.inner.chunk_size,
            backpressure_waits: self.inner.waits.load(Ordering::Relaxed),
            quarantined_chunks: self.inner.quarantined.load(Ordering::Relaxed),
        }
    }

    /// Number of chunks free right now.
    pub fn free_chunks(&self) -> usize {
        self.inner.permits.available_permits() + self.inner.reserve_permits.available_permits()
    }

    /// Bytes the waiting [`lease`](Self::lease) can ever grant at once
    /// (the pool less its reserve).
    pub fn leasable_bytes(&self) -> usize {
        (self.inner.chunks - self.inner.reserved) * self.inner.chunk_size
    }

    /// Whether every chunk is back in the pool (no lease outstanding, none
    /// quarantined).
    pub fn is_full(&self) -> bool {
        self.free_chunks() == self.inner.chunks
    }

    /// Chunks needed to hold `bytes`.
    pub fn chunks_for(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.inner.chunk_size)
    }

    /// Leases enough chunks for `bytes` bytes and returns them as a
    /// [`SegmentList`] of exactly `bytes` bytes. Waits while the pool is empty
    /// (back-pressure); all chunks of one request are granted together, so two
    /// large requests cannot deadlock each holding half.
    pub async fn lease(&self, bytes: usize) -> Result<SegmentList, PoolError> {
        let n = self.check_request(bytes)?;
        let permits = match self.inner.permits.try_acquire_many(n as u32) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(PoolError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.inner.waits.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .permits
                    .acquire_many(n as u32)
                    .await
                    .map_err(|_| PoolError::Closed)?
            }
        };
        permits.forget();
        Ok(self.take_chunks(n, bytes))
    }

    /// Counts a request turned away for lack of buffers (back-pressure
    /// that did not wait: the frontend answered "busy").
    pub fn note_backpressure(&self) {
        self.inner.waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Like [`lease`](Self::lease) but returns `None` instead of waiting.
    pub fn try_lease(&self, bytes: usize) -> Result<Option<SegmentList>, PoolError> {
        let n = self.check_request(bytes)?;
        match self.inner.permits.try_acquire_many(n as u32) {
            Ok(p) => {
                p.forget();
                Ok(Some(self.take_chunks(n, bytes)))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => Err(PoolError::Closed),
        }
    }

    /// Chunks from the reserve only, without waiting. For a holder that
    /// may then wait for more (the reserve bounds how much such holders
    /// pin, so the rest of the pool always drains).
    pub fn try_lease_reserve(&self, bytes: usize) -> Result<Option<SegmentList>, PoolError> {
        let n = self.chunks_for(bytes.max(1));
        if n > self.inner.reserved {
            return Ok(None);
        }
        match self.inner.reserve_permits.try_acquire_many(n as u32) {
            Ok(p) => {
                p.forget();
                Ok(Some(self.take_from(&self.inner.reserve_free, n, bytes)))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => Err(PoolError::Closed),
        }
    }

    /// For data a host sends unasked: the pool if chunks are free now, else
    /// the reserve; `None` if neither has them.
    pub fn try_lease_unasked(&self, bytes: usize) -> Result<Option<SegmentList>, PoolError> {
        match self.try_lease(bytes) {
            Ok(None) | Err(PoolError::TooLarge { .. }) => self.try_lease_reserve(bytes),
            other => other,
        }
    }

    /// Wakes every waiter with [`PoolError::Closed`]; used at shutdown.
    pub fn close(&self) {
        self.inner.permits.close();
        self.inner.reserve_permits.close();
    }

    fn check_request(&self, bytes: usize) -> Result<usize, PoolError> {
        let n = self.chunks_for(bytes.max(1));
        if n > self.inner.chunks - self.inner.reserved {
            return Err(PoolError::TooLarge {
                requested: bytes,
                total: self.total_bytes(),
            });
        }
        Ok(n)
    }

    /// Pops `n` chunk indices; the caller already holds `n` forgotten permits,
    /// and permits are only ever added after an index is pushed back, so the
    /// queue holds at least `n` indices.
    fn take_chunks(&self, n: usize, bytes: usize) -> SegmentList {
        self.take_from(&self.inner.free_low, n, bytes)
    }

    /// Pops `n` indices from `queue` (whose permits the caller holds).
    fn take_from(&self, queue: &ArrayQueue<u32>, n: usize, bytes: usize) -> SegmentList {
        let mut segments: SmallVec<[Segment; crate::segment::INLINE_SEGMENTS]> = SmallVec::new();
        let mut remaining = bytes;
        for _ in 0..n {
            // The general list: its preferred part first, then the rest.
            let popped = queue.pop().or_else(|| {
                std::ptr::eq(queue, &self.inner.free_low)
                    .then(|| self.inner.free.pop())
                    .flatten()
            });
            let Some(index) = popped else {
                // Unreachable by the permit invariant above; if it ever broke,
                // handing out fewer bytes is caught by the length check below
                // rather than corrupting memory.
                break;
            };
            let len = remaining.min(self.inner.chunk_size);
            remaining -= len;
            segments.push(Segment::new(
                Lease {
                    pool: Arc::clone(&self.inner),
                    index,
                },
                0,
                len,
            ));
        }
        SegmentList::from_segments(segments)
    }

    /// Base pointer and length of the whole pool region (for io_uring buffer
    /// registration).
    pub(crate) fn region(&self) -> (NonNull<u8>, usize) {
        (self.inner.base, self.total_bytes())
    }

    /// Whether `self` and `other` are handles on the same pool.
    pub fn inner_ptr_eq(&self, other: &BufferPool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn inner(&self) -> &Arc<PoolInner> {
        &self.inner
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Exclusive handle to one chunk of pool memory. Not `Clone`: there is
/// exactly one owner, and the chunk returns to the pool when it drops.
pub struct Lease {
    pool: Arc<PoolInner>,
    index: u32,
}

impl Lease {
    /// Index of the chunk within its pool (the io_uring fixed-buffer index).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Capacity of the chunk in bytes.
    pub fn capacity(&self) -> usize {
        self.pool.chunk_size
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: index < chunks (it came from the free queue, which only
        // holds valid indices), so the offset stays inside the allocation.
        unsafe {
            self.pool
                .base
                .as_ptr()
                .add(self.index as usize * self.pool.chunk_size)
        }
    }

    /// The chunk's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the chunk lies inside the pool allocation, which lives as
        // long as `self.pool`; this lease is the chunk's only handle, and the
        // returned borrow of `self` prevents a concurrent `&mut`.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.pool.chunk_size) }
    }

    /// The chunk's bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.pool.chunk_size) }
    }

    /// Stable pointer to the chunk start, for kernel I/O while the lease is
    /// owned by the operation.
    pub fn stable_ptr(&self) -> *const u8 {
        self.ptr()
    }

    /// Mutable stable pointer, see [`stable_ptr`](Self::stable_ptr).
    pub fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr()
    }

    /// Whether this lease belongs to `pool`.
    pub fn belongs_to(&self, pool: &BufferPool) -> bool {
        Arc::ptr_eq(&self.pool, pool.inner())
    }

    /// Withholds the chunk for good: for memory the kernel may still
    /// reference (a zero-copy send never notified, an io_uring operation
    /// whose completion never came). The chunk never returns to the pool
    /// and is not poisoned (that would write under the kernel); the pool's
    /// memory is kept alive (this lease's reference to it is leaked), and
    /// [`PoolStats::quarantined_chunks`] counts it. Returns the bytes
    /// withheld.
    pub fn quarantine(self) -> usize {
        let bytes = self.pool.chunk_size;
        self.pool.quarantined.fetch_add(1, Ordering::Relaxed);
        std::mem::forget(self);
        bytes
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.pool.poison {
            self.as_mut_slice().fill(POISON_BYTE);
        }
        // The queue has room for every index and this index is not in it
        // (only its single lease could put it back), so push cannot fail.
        let index = self.index as usize;
        if index >= self.pool.chunks - self.pool.reserved {
            let _ = self.pool.reserve_free.push(self.index);
            self.pool.reserve_permits.add_permits(1);
        } else {
            if index < self.pool.low_end {
                let _ = self.pool.free_low.push(self.index);
            } else {
                let _ = self.pool.free.push(self.index);
            }
            self.pool.permits.add_permits(1);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease#{}", self.index)
    }
}
