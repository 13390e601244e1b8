//! Reading from a connection's socket on its reactor, shared by the iSCSI
//! and NVMe/TCP PDU readers.
//!
//! One `recv` should yield many small PDUs (a host at queue depth 32 sends
//! 32 command headers back to back), so headers are read through a
//! read-ahead window: a read that finds the window empty asks the kernel for
//! up to a window's worth, and the next headers are parsed from what came
//! along. Large payload (write data) goes straight into the command's leases
//! with vectored reads; small payload (a 4 KiB write's data, the tail of a
//! payload of at most [`SMALL_PAYLOAD`] bytes) is read through the window
//! too, so one `recv` brings many small writes, headers and data — the same
//! trade SPDK's socket layer makes: a `memcpy` of a few KiB is cheaper than
//! a second system call. After a large payload, header reads ask for at
//! most [`SMALL_FILL`] bytes, so a stream of large writes is not copied
//! through the window.
//!
//! A `recv` that returns less than it asked for drained the socket: the
//! stream's readiness is cleared then (as tokio's own `poll_read` does), so
//! the next wait goes to the reactor's poller instead of a `recv` that
//! would only say `EAGAIN`.

use std::io::{self, IoSliceMut};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;
use tokio::io::Interest;
use tokio::net::TcpStream;
use zctarget_backends::{SegmentList, INLINE_SEGMENTS};

/// Size of the read-ahead window.
pub const READ_AHEAD: usize = 64 * 1024;
/// Most bytes a header read asks for right after a large payload.
pub const SMALL_FILL: usize = 8192;
/// Payload (or a payload's tail) up to this size is read through the
/// window; larger payload goes straight into its leases.
pub const SMALL_PAYLOAD: usize = 16 * 1024;

/// Receive calls (`recv`, `readv`) on connections, process-wide: all, and
/// those that found nothing (`EAGAIN`). Read by the metrics endpoint.
static RECV_CALLS: AtomicU64 = AtomicU64::new(0);
static RECV_WOULD_BLOCK: AtomicU64 = AtomicU64::new(0);

/// (receive calls, of which found nothing) since start.
pub fn recv_calls() -> (u64, u64) {
    (
        RECV_CALLS.load(Ordering::Relaxed),
        RECV_WOULD_BLOCK.load(Ordering::Relaxed),
    )
}

/// Counts one receive call and, on a short read, clears the stream's read
/// readiness (see the module).
fn note_recv(stream: &TcpStream, r: &io::Result<usize>, asked: usize) {
    RECV_CALLS.fetch_add(1, Ordering::Relaxed);
    match r {
        Ok(n) if *n > 0 && *n < asked => {
            // Nothing else can run on this thread between the `recv` and
            // this: any byte that arrives later raises a new edge.
            let _ = stream.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            RECV_WOULD_BLOCK.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// A connection's receive side: the socket and its read-ahead window.
pub struct Receiver {
    stream: Rc<TcpStream>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// How much the next fill asks for: the whole window, or
    /// [`SMALL_FILL`] after a large payload.
    fill_limit: usize,
}

impl Receiver {
    /// A receiver with an empty window.
    pub fn new(stream: Rc<TcpStream>) -> Self {
        Self {
            stream,
            buf: vec![0u8; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
            fill_limit: SMALL_FILL,
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Waits until there is something to read: at once when bytes are
    /// buffered (the socket may have nothing more to say about them).
    pub async fn readable(&self) -> io::Result<()> {
        if self.buffered() > 0 {
            return Ok(());
        }
        self.stream.readable().await
    }

    /// One non-blocking `recv` into the window. `Ok(0)`: the peer closed;
    /// `WouldBlock` passes through (stale readiness).
    /// Called only with an empty window, which it rewinds.
    fn fill(&mut self) -> io::Result<usize> {
        debug_assert_eq!(self.start, self.end);
        self.start = 0;
        self.end = 0;
        let limit = self.fill_limit;
        let r = self.stream.try_read(&mut self.buf[..limit]);
        note_recv(&self.stream, &r, limit);
        let n = r?;
        self.end = n;
        Ok(n)
    }

    /// Takes up to `out.len()` buffered bytes; returns how many.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buffered());
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        n
    }

    /// The first bytes of a new PDU, without waiting: `Ok(0)` when the peer
    /// closed cleanly, `WouldBlock` when nothing has arrived (stale
    /// readiness: the caller goes back to its timers), else how many of
    /// `out` were filled (at least one).
    pub fn try_read_start(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buffered() == 0 {
            let n = self.fill()?;
            if n == 0 {
                return Ok(0);
            }
        }
        Ok(self.take(out))
    }

    /// Reads exactly `out.len()` bytes (headers, control data) through the
    /// window.
    pub async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut done = self.take(out);
        while done < out.len() {
            if out.len() - done >= READ_AHEAD {
                // Large control data: straight in, no window.
                self.stream.readable().await?;
                let r = self.stream.try_read(&mut out[done..]);
                note_recv(&self.stream, &r, out.len() - done);
                match r {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => done += n,
                    Err(e) if retry(&e) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            self.stream.readable().await?;
            match self.fill() {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => done += self.take(&mut out[done..]),
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads `len` bytes into `payload` at `offset`: what the window holds
    /// is copied, the rest lands in the leases by vectored reads — no
    /// intermediate buffer. `InvalidInput` when the range lies beyond the
    /// payload.
    pub async fn read_into(
        &mut self,
        payload: &mut SegmentList,
        offset: usize,
        len: usize,
    ) -> io::Result<()> {
        if offset + len > payload.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data beyond the command's buffer",
            ));
        }
        // Small payload keeps the window at full size (many small writes per
        // `recv`); after a large one, header reads stay small.
        self.fill_limit = if len > SMALL_PAYLOAD {
            SMALL_FILL
        } else {
            READ_AHEAD
        };
        let have = len.min(self.buffered());
        if have > 0 {
            payload.copy_from_slice(offset, &self.buf[self.start..self.start + have]);
            self.start += have;
        }
        let mut done = have;
        while done < len && len - done <= SMALL_PAYLOAD {
            // A small rest: through the window, with whatever follows it.
            self.stream.readable().await?;
            match self.fill() {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    let n = (len - done).min(self.buffered());
                    payload.copy_from_slice(offset + done, &self.buf[self.start..self.start + n]);
                    self.start += n;
                    done += n;
                }
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        while done < len {
            self.stream.readable().await?;
            let mut iov: SmallVec<[IoSliceMut<'_>; INLINE_SEGMENTS]> = SmallVec::new();
            payload.io_slices_mut_range(offset + done, len - done, &mut iov);
            let r = self.stream.try_read_vectored(&mut iov);
            note_recv(&self.stream, &r, len - done);
            match r {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and discards `len` bytes, feeding them to `seen` (digests).
    pub async fn skip(&mut self, len: usize, mut seen: impl FnMut(&[u8])) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            if self.buffered() == 0 {
                self.stream.readable().await?;
                match self.fill() {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {}
                    Err(e) if retry(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
            let n = left.min(self.buffered());
            seen(&self.buf[self.start..self.start + n]);
            self.start += n;
            left -= n;
        }
        Ok(())
    }
}

/// Runs `fut` with a stall bound of `limit`, arming the timer only if the
/// first poll does not finish it: a PDU whose bytes are already here (the
/// common case under load) costs no clock read and no timer.
/// `None`: `limit` passed.
pub async fn stall_bounded<F: std::future::Future>(
    fut: F,
    limit: std::time::Duration,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => tokio::time::timeout(limit, fut).await.ok(),
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
