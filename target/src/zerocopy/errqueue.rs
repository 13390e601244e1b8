//! The socket boundary of the zero-copy path: enabling `SO_ZEROCOPY`, sending
//! with `MSG_ZEROCOPY`, and reading completion notifications from the
//! socket's error queue (`MSG_ERRQUEUE`).
//!
//! Written against libc directly because no maintained crate parses
//! `SO_EE_ORIGIN_ZEROCOPY` control messages (socket2 has no error-queue API).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, RawFd};

use super::message::Iov;

/// `SO_ZEROCOPY` (asm-generic/socket.h); libc does not export it for all targets.
pub const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` (linux/errqueue.h).
pub const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` (linux/errqueue.h): the kernel copied after all.
pub const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// One zero-copy completion: counter values `lo..=hi` are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroCopyNotification {
    /// First released counter value.
    pub lo: u32,
    /// Last released counter value (inclusive; may be below `lo` after a wrap).
    pub hi: u32,
    /// The kernel fell back to copying for (part of) this range.
    pub copied: bool,
}

/// Turns on `SO_ZEROCOPY` so that `MSG_ZEROCOPY` sends are honoured.
pub fn enable_zerocopy(fd: &impl AsRawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket borrowed for the call; the option value
    // points to a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `sendmsg` of `bufs` with `flags` (plus `MSG_DONTWAIT | MSG_NOSIGNAL`).
/// Returns bytes accepted. With `MSG_ZEROCOPY` the kernel keeps referencing
/// the pages of `bufs` after this returns, until it notifies: the caller must
/// keep that memory untouched until then (the sender's tracker does).
pub(crate) fn sendmsg(fd: RawFd, bufs: &[Iov<'_>], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    // `Iov` is a `repr(transparent)` `libc::iovec`.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `msg` points at `bufs`, which stay borrowed (alive, unmoved) for
    // the duration of the call, and each `Iov` borrows the memory it
    // describes for as long (a lease, a message's inline area, or a memory
    // volume's store held by its range). The kernel only reads that memory.
    // A store's bytes may be written by other threads meanwhile, with
    // atomic stores: the kernel then takes some mix of old and new bytes,
    // as a device reading the memory would, and no Rust reference to them
    // exists to be invalidated.
    let n = unsafe { libc::sendmsg(fd, &msg, flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendfile(2)` of `len` bytes at `offset` of `in_fd` to the socket `fd`
/// (non-blocking: the socket is). Bytes sent; `WouldBlock` when full.
pub fn sendfile(fd: RawFd, in_fd: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: both descriptors are open for the call (the caller owns the
    // socket and a reference to the file); `off` is a valid, exclusively
    // borrowed offset the kernel updates; no user memory is read.
    let n = unsafe { libc::sendfile(fd, in_fd, &mut off, len) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads one entry from the error queue. `Ok(None)` means an entry that is
/// not a zero-copy notification (ignored); `WouldBlock` means the queue is
/// empty.
pub fn recv_notification(fd: RawFd) -> io::Result<Option<ZeroCopyNotification>> {
    // Room for one cmsg carrying sock_extended_err plus its offender address.
    #[repr(C, align(8))]
    struct ControlBuf([u8; 128]);
    let mut control = ControlBuf([0; 128]);
    // SAFETY: an all-zero msghdr is valid; we set only the control buffer.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: `msg.msg_control` points at `control`, alive and exclusively
    // borrowed for the call; no data iovecs are given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the CMSG_* helpers walk `control` within `msg.msg_controllen`,
    // which the kernel set to the bytes it wrote; each header is checked for
    // the expected level/type and the payload read unaligned-safely.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            let is_recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
            let payload_len = (*cmsg).cmsg_len as usize;
            if is_recverr
                && payload_len
                    >= libc::CMSG_LEN(size_of::<libc::sock_extended_err>() as u32) as usize
            {
                let ee: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                if ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY && ee.ee_errno == 0 {
                    return Ok(Some(ZeroCopyNotification {
                        lo: ee.ee_info,
                        hi: ee.ee_data,
                        copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    }));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(None)
}

/// Resets the connection without closing the descriptor: `connect` to an
/// `AF_UNSPEC` address makes TCP abort (RST) and purge its write queue, which
/// drops the kernel's last references to zero-copy pages still queued.
pub fn abort_connection(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC is a valid argument of
    // the size passed; it lives on the stack for the duration of the call.
    let rc = unsafe {
        let mut addr: libc::sockaddr = MaybeUninit::zeroed().assume_init();
        addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(fd, &addr, size_of::<libc::sockaddr>() as libc::socklen_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
