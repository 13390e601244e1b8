//! Reading from a connection's socket on its reactor: exact reads, and
//! reads straight into leased buffers (the zero-copy receive path). Shared
//! by the iSCSI and NVMe/TCP PDU readers.

use std::io::{self, IoSliceMut};

use smallvec::SmallVec;
use tokio::net::TcpStream;
use zctarget_backends::{SegmentList, INLINE_SEGMENTS};

/// Reads exactly `buf.len()` bytes.
pub async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        stream.readable().await?;
        match stream.try_read(&mut buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `len` bytes straight into `payload` at `offset` with vectored
/// reads over the leases — no intermediate buffer. `InvalidInput` when the
/// range lies beyond the payload.
pub async fn read_into(
    stream: &TcpStream,
    payload: &mut SegmentList,
    offset: usize,
    len: usize,
) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        stream.readable().await?;
        let mut iov: SmallVec<[IoSliceMut<'_>; INLINE_SEGMENTS]> = SmallVec::new();
        let described = payload.io_slices_mut_range(offset + done, len - done, &mut iov);
        if described == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data beyond the command's buffer",
            ));
        }
        match stream.try_read_vectored(&mut iov) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
