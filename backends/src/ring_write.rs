//! io_uring writes with `RWF_DSYNC` (FUA): the write itself is durable
//! when it completes, so no whole-file `fdatasync` follows it.
//!
//! tokio-uring's `write_at` / `write_fixed_at` take no `rw_flags`, so these
//! build the SQE themselves and submit it as a tokio-uring oneshot
//! operation. Like the built-in operations, the driver keeps the operation's
//! data — the buffer (`OpLease` / `OpFixed`, which count themselves as in
//! flight for the ring's teardown) and the `FileStore` whose descriptor the
//! SQE names — until the CQE is seen, also when the awaiting future is
//! dropped first.

use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, types};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

use crate::file::FileStore;
use crate::ring_op::{OpFixed, OpLease};

/// What a write operation owns until its completion.
pub(crate) struct WriteData<B> {
    /// Keeps the descriptor the SQE names open.
    _store: Arc<FileStore>,
    buf: B,
}

/// Turns the CQE into `(bytes written, buffer)`.
pub(crate) struct WriteDone<B>(PhantomData<B>);

impl<B> OneshotOutputTransform for WriteDone<B> {
    type Output = (io::Result<usize>, B);
    type StoredData = WriteData<B>;

    fn transform_oneshot_output(
        self,
        data: Self::StoredData,
        cqe: io_uring::cqueue::Entry,
    ) -> Self::Output {
        let res = cqe.result();
        let res = if res >= 0 {
            Ok(res as usize)
        } else {
            Err(io::Error::from_raw_os_error(-res))
        };
        (res, data.buf)
    }
}

/// Writes `buf` (an ordinary lease) at `pos` with `RWF_DSYNC`.
pub(crate) async fn write_dsync(
    store: &Arc<FileStore>,
    buf: OpLease,
    pos: u64,
) -> (io::Result<usize>, OpLease) {
    let fd = types::Fd(store.file.as_raw_fd());
    let (ptr, len) = (buf.stable_ptr(), buf.bytes_init());
    // The pointer stays valid while the operation owns `buf` (until the
    // CQE), and `fd` while it owns the store.
    let sqe = opcode::Write::new(fd, ptr, len as u32)
        .offset(pos)
        .rw_flags(libc::RWF_DSYNC)
        .build();
    submit(store, buf, sqe).await
}

/// Writes `buf` (a registered buffer) at `pos` with `RWF_DSYNC`.
pub(crate) async fn write_fixed_dsync(
    store: &Arc<FileStore>,
    buf: OpFixed,
    pos: u64,
) -> (io::Result<usize>, OpFixed) {
    let fd = types::Fd(store.file.as_raw_fd());
    let (ptr, len) = (buf.stable_ptr(), buf.bytes_init());
    let index = buf.get_buf().buf_index();
    let sqe = opcode::WriteFixed::new(fd, ptr, len as u32, index)
        .offset(pos)
        .rw_flags(libc::RWF_DSYNC)
        .build();
    submit(store, buf, sqe).await
}

async fn submit<B: Unpin + 'static>(
    store: &Arc<FileStore>,
    buf: B,
    sqe: io_uring::squeue::Entry,
) -> (io::Result<usize>, B) {
    let data = WriteData {
        _store: Arc::clone(store),
        buf,
    };
    UnsubmittedOneshot::new(data, WriteDone(PhantomData), sqe)
        .submit()
        .await
}
