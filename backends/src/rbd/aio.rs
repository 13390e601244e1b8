//! Asynchronous operations on an image, and how their completions get back
//! to the reactor that submitted them.
//!
//! Each operation is one heap-allocated [`OpState`] that *owns* the
//! operation's `SegmentList` (and the iovec array built from it) from
//! submission until librbd's completion callback has run. The callback runs
//! on a librbd thread and does only this: read the result, release the
//! completion, and send `(buffers, result)` through the operation's oneshot
//! channel, which wakes the submitting reactor's task. If that task's future
//! was dropped meanwhile, the send fails and the buffers are dropped right
//! there — after librbd has finished with them, never before.

use std::ffi::c_void;
use std::io;
use std::ptr;

use libc::iovec;
use tokio::sync::oneshot;

use super::ffi::{self, CompletionT, Lib};
use super::image::Image;
use crate::SegmentList;

/// What to submit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Read(u64),
    Write(u64),
    Flush,
    Discard(u64, u64),
    WriteZeroes(u64, u64),
}

type Done = (Option<SegmentList>, i64);

struct OpState {
    lib: &'static Lib,
    buf: Option<SegmentList>,
    /// Kept with the buffers: librbd reads it at submission only, but
    /// nothing is gained by freeing it earlier.
    iov: Vec<iovec>,
    tx: Option<oneshot::Sender<Done>>,
}

/// librbd's completion callback (a librbd thread).
unsafe extern "C" fn complete(c: CompletionT, arg: *mut c_void) {
    // SAFETY: `arg` is the `Box<OpState>` leaked by `submit` for exactly this
    // completion, and librbd calls the callback once; we take it back here,
    // after librbd is done with the buffers it describes.
    let state = unsafe { Box::from_raw(arg.cast::<OpState>()) };
    // SAFETY: `c` is the completion this callback was registered on; it is
    // released exactly once, here, after its value was read.
    let rc = unsafe {
        let rc = (state.lib.rbd_aio_get_return_value)(c);
        (state.lib.rbd_aio_release)(c);
        rc
    };
    let OpState { buf, tx, iov, .. } = *state;
    drop(iov);
    if let Some(tx) = tx {
        // Err: the submitter is gone; the buffers drop here, which is safe
        // now that librbd no longer references them.
        let _ = tx.send((buf, i64::try_from(rc).unwrap_or(-i64::from(libc::EIO))));
    }
}

/// Submits `op` on `image` with `buf` (reads and writes) and waits for its
/// completion. The buffers come back whatever the outcome; if this future
/// is dropped first they stay with the operation until librbd completes it.
pub(super) async fn run(image: &Image, op: Op, buf: Option<SegmentList>) -> Done {
    let lib = image.lib();
    let (tx, rx) = oneshot::channel();
    let mut state = Box::new(OpState {
        lib,
        buf,
        iov: Vec::new(),
        tx: Some(tx),
    });
    if let Some(buf) = state.buf.as_mut() {
        // The pool's chunks do not move when the SegmentList does, so these
        // pointers stay valid while `state` owns the list.
        state.iov = buf
            .segments_mut()
            .iter_mut()
            .map(|s| {
                let sl = s.as_mut_slice();
                iovec {
                    iov_base: sl.as_mut_ptr().cast(),
                    iov_len: sl.len(),
                }
            })
            .collect();
    }
    let iov_ptr = state.iov.as_ptr();
    let Ok(iovcnt) = i32::try_from(state.iov.len()) else {
        return (state.buf.take(), -i64::from(libc::EINVAL));
    };
    let arg = Box::into_raw(state);
    let mut c: CompletionT = ptr::null_mut();
    // SAFETY: `arg` stays valid until the callback reclaims it (or we do,
    // below, when nothing was submitted); `c` is our local.
    let rc = unsafe { (lib.rbd_aio_create_completion)(arg.cast(), complete, &mut c) };
    if rc < 0 {
        // SAFETY: not submitted, so we still own the leaked box.
        let mut state = unsafe { Box::from_raw(arg) };
        return (state.buf.take(), i64::from(rc));
    }
    let h = image.handle;
    // SAFETY: `h` is an open image (the caller's `&Image` keeps it open
    // until this returns, and rbd_close waits for operations in flight);
    // the iovecs point into chunks owned by the boxed state, which only the
    // completion callback frees; `c` belongs to this one operation.
    let rc = unsafe {
        match op {
            Op::Read(off) => (lib.rbd_aio_readv)(h, iov_ptr, iovcnt, off, c),
            Op::Write(off) => (lib.rbd_aio_writev)(h, iov_ptr, iovcnt, off, c),
            Op::Flush => (lib.rbd_aio_flush)(h, c),
            Op::Discard(off, len) => (lib.rbd_aio_discard)(h, off, len, c),
            Op::WriteZeroes(off, len) => match usize::try_from(len) {
                Ok(len) => (lib.rbd_aio_write_zeroes)(h, off, len, c, 0, 0),
                Err(_) => -libc::EINVAL,
            },
        }
    };
    if rc < 0 {
        // librbd refused before queuing anything: the callback will not run.
        // SAFETY: `c` was never submitted; we release it and take the state
        // back exactly once.
        let mut state = unsafe {
            (lib.rbd_aio_release)(c);
            Box::from_raw(arg)
        };
        return (state.buf.take(), i64::from(rc));
    }
    match rx.await {
        Ok(done) => done,
        // The callback always sends; a dropped sender means it never ran
        // and the buffers are lost with it.
        Err(_) => (None, -i64::from(libc::EIO)),
    }
}

/// A librbd result as `io::Result`, with what we were doing.
pub(super) fn result(rc: i64, what: &str, image: &Image) -> io::Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    let e = ffi::errno(rc);
    Err(io::Error::new(
        e.kind(),
        format!("rbd {what} on {}: {e}", image.name()),
    ))
}
