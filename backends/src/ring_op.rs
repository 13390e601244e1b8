//! Leases owned by io_uring operations until their completion is seen, and
//! a ring teardown that keeps that promise.
//!
//! A lease handed to an operation is wrapped in [`OpLease`] (plain reads and
//! writes) or [`OpFixed`] (registered buffers: the `FixedBuf` and the lease
//! travel together). tokio-uring keeps the operation's data until the CQE
//! even when the future awaiting it is dropped, and drops it then — so an
//! abandoned operation's lease returns to the pool exactly at its completion,
//! on an idle reactor too (nothing waits for a later I/O to sweep it).
//!
//! The one place tokio-uring frees data early is `Driver::drop`: it replaces
//! every in-flight operation's data (dropping the buffers) *before* it
//! submits the cancellations and waits for the CQEs. [`run_uring`] therefore
//! never drops a ring with our operations in flight: after the main future
//! it cancels them (`IORING_OP_ASYNC_CANCEL`, any request) and keeps driving
//! the runtime until every counted operation's CQE has been seen. If some
//! never complete within the bound, the runtime is leaked on purpose: the
//! operations keep their leases for good (quarantined, logged), and the
//! kernel can finish with memory that is never reused.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::ops;
use std::time::{Duration, Instant};

use tokio_uring::buf::fixed::FixedBuf;
use tokio_uring::buf::{BoundedBuf, BoundedBufMut, IoBuf, IoBufMut, Slice};

use crate::pool::Lease;

thread_local! {
    /// Operations of this thread's ring that hold a lease, and their bytes.
    static IN_FLIGHT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Operations on this thread's ring that still own a lease (submitted and
/// not yet completed, including abandoned ones the driver holds until their
/// CQE).
pub fn ops_in_flight() -> usize {
    IN_FLIGHT.with(|c| c.get().0)
}

/// A lease counted as owned by one operation; the count drops with it.
struct Held {
    lease: Option<Lease>,
    bytes: usize,
}

impl Held {
    fn new(lease: Option<Lease>) -> Self {
        let bytes = lease.as_ref().map_or(0, Lease::capacity);
        IN_FLIGHT.with(|c| {
            let (n, b) = c.get();
            c.set((n + 1, b + bytes));
        });
        Self { lease, bytes }
    }

    fn take(mut self) -> Option<Lease> {
        self.lease.take()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // `try_with`: this may run during thread-local destruction.
        let _ = IN_FLIGHT.try_with(|c| {
            let (n, b) = c.get();
            c.set((n.saturating_sub(1), b.saturating_sub(self.bytes)));
        });
        // A lease still here is dropped by tokio-uring at the operation's
        // completion (or the operation never reached the kernel): the kernel
        // is done with it. `run_uring` makes sure the driver never drops it
        // earlier.
    }
}

/// Bytes `start..end` of a lease, owned by one plain (unregistered)
/// read or write.
pub(crate) struct OpLease {
    held: Held,
    start: usize,
    end: usize,
}

impl OpLease {
    /// `start..end` must lie within the chunk (`end <= lease.capacity()`).
    pub(crate) fn new(lease: Lease, start: usize, end: usize) -> Self {
        let end = end.min(lease.capacity());
        Self {
            held: Held::new(Some(lease)),
            start: start.min(end),
            end,
        }
    }

    /// The operation completed: the lease is the caller's again.
    pub(crate) fn into_lease(self) -> Lease {
        held_lease(self.held.take())
    }
}

/// `OpLease`/`OpFixed` are built with a lease and only `into_*` takes it
/// out (consuming them), so it is always there.
fn held_lease(lease: Option<Lease>) -> Lease {
    match lease {
        Some(lease) => lease,
        None => unreachable!("an operation's lease was taken twice"),
    }
}

// SAFETY: the pointer is inside the lease's chunk (`start <= end <=
// capacity`), in the pool allocation that the lease keeps alive and that
// never moves; the lease is owned by this value, which the operation owns
// until its completion, so the memory stays valid and unaliased for the
// kernel's whole access. Pool memory is always initialized.
unsafe impl IoBuf for OpLease {
    fn stable_ptr(&self) -> *const u8 {
        self.held.lease.as_ref().map_or(std::ptr::null(), |l| {
            l.stable_ptr().wrapping_add(self.start)
        })
    }

    fn bytes_init(&self) -> usize {
        self.end - self.start
    }

    fn bytes_total(&self) -> usize {
        self.end - self.start
    }
}

// SAFETY: see `IoBuf for OpLease`; the whole range is always initialized, so
// `set_init` has nothing to record.
unsafe impl IoBufMut for OpLease {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        let start = self.start;
        self.held.lease.as_mut().map_or(std::ptr::null_mut(), |l| {
            l.stable_mut_ptr().wrapping_add(start)
        })
    }

    unsafe fn set_init(&mut self, _pos: usize) {}
}

/// Bytes `start..end` of a registered buffer, owned by one fixed read or
/// write together with the lease of the same chunk: the lease returns to the
/// pool only with the `FixedBuf`, when the operation's data is dropped.
pub(crate) struct OpFixed {
    // Declared first: dropped first, so the chunk is checked back in to the
    // registry before its lease can return it to the pool.
    buf: FixedBuf,
    held: Held,
    start: usize,
    end: usize,
}

impl OpFixed {
    pub(crate) fn new(buf: FixedBuf, lease: Lease, start: usize, end: usize) -> Self {
        let end = end.min(IoBuf::bytes_total(&buf));
        Self {
            buf,
            held: Held::new(Some(lease)),
            start: start.min(end),
            end,
        }
    }

    /// The operation completed: the buffer and the lease are the caller's.
    pub(crate) fn into_parts(self) -> (FixedBuf, Lease) {
        let OpFixed { buf, held, .. } = self;
        (buf, held_lease(held.take()))
    }
}

impl BoundedBuf for OpFixed {
    type Buf = FixedBuf;
    type Bounds = ops::Range<usize>;

    fn slice(self, range: impl ops::RangeBounds<usize>) -> Slice<FixedBuf> {
        // Not used by the operations (they only read pointer and length).
        // The `FixedBuf` leaves without its lease, which can then never be
        // proven free again: keep the chunk out of the pool for good.
        let OpFixed {
            buf,
            held,
            start,
            end,
        } = self;
        if let Some(lease) = held.take() {
            lease.quarantine();
        }
        let from = match range.start_bound() {
            ops::Bound::Included(&n) => start + n,
            ops::Bound::Excluded(&n) => start + n + 1,
            ops::Bound::Unbounded => start,
        };
        let to = match range.end_bound() {
            ops::Bound::Included(&n) => start + n + 1,
            ops::Bound::Excluded(&n) => start + n,
            ops::Bound::Unbounded => end,
        };
        buf.slice(from.min(end)..to.min(end))
    }

    fn slice_full(self) -> Slice<FixedBuf> {
        self.slice(..)
    }

    fn get_buf(&self) -> &FixedBuf {
        &self.buf
    }

    fn bounds(&self) -> Self::Bounds {
        self.start..self.end
    }

    fn from_buf_bounds(buf: FixedBuf, bounds: Self::Bounds) -> Self {
        // Not used by the operations; without a lease there is nothing to
        // hold back.
        let end = bounds.end.min(IoBuf::bytes_total(&buf));
        Self {
            buf,
            held: Held::new(None),
            start: bounds.start.min(end),
            end,
        }
    }

    fn stable_ptr(&self) -> *const u8 {
        IoBuf::stable_ptr(&self.buf).wrapping_add(self.start)
    }

    fn bytes_init(&self) -> usize {
        self.end - self.start
    }

    fn bytes_total(&self) -> usize {
        self.end - self.start
    }
}

impl BoundedBufMut for OpFixed {
    type BufMut = FixedBuf;

    fn stable_mut_ptr(&mut self) -> *mut u8 {
        IoBufMut::stable_mut_ptr(&mut self.buf).wrapping_add(self.start)
    }

    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller guarantees `pos` bytes from our start are
        // initialized, i.e. `start + pos` bytes of the registered buffer.
        unsafe { IoBufMut::set_init(&mut self.buf, self.start + pos) }
    }
}

/// Completion of the cancel request: its result code.
struct CancelDone;

impl tokio_uring::OneshotOutputTransform for CancelDone {
    type Output = i32;
    type StoredData = ();

    fn transform_oneshot_output(self, _: (), cqe: io_uring::cqueue::Entry) -> i32 {
        cqe.result()
    }
}

/// Runs `future` to completion on a new tokio-uring runtime on this thread,
/// then tears the ring down without freeing any buffer before the kernel is
/// done with it: operations still in flight are cancelled and the runtime is
/// driven until each one's completion is seen, for at most `drain`. Past
/// that, the runtime (with the operations and their leases) is leaked on
/// purpose and the leases count as quarantined; this is logged once.
pub fn run_uring<F: Future>(future: F, drain: Duration) -> io::Result<F::Output> {
    let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
    let out = rt.block_on(future);
    let left = rt.block_on(drain_ring(drain));
    if left > 0 {
        let bytes = IN_FLIGHT.with(|c| c.get().1);
        tracing::error!(
            operations = left,
            bytes,
            "io_uring operations never completed; their buffers are quarantined \
             (never returned to the pool) and the ring is left open"
        );
        std::mem::forget(rt);
    } else {
        drop(rt);
    }
    Ok(out)
}

/// Cancels every request on this thread's ring and waits until no counted
/// operation is left, for at most `bound`. Returns how many are left.
async fn drain_ring(bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    let mut cancel_supported = true;
    while ops_in_flight() > 0 && Instant::now() < deadline {
        if cancel_supported {
            let sqe =
                io_uring::opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::any()).build();
            let res = tokio_uring::UnsubmittedOneshot::new((), CancelDone, sqe)
                .submit()
                .await;
            // -EINVAL: a kernel before 5.19 (no "cancel any"); then only wait.
            cancel_supported = res != -libc::EINVAL;
        }
        let nap = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        tokio::time::sleep(nap).await;
    }
    ops_in_flight()
}
