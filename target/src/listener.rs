//! Listening sockets: one per portal, owned by this daemon alone, shared by
//! every reactor.
//!
//! A portal is bound once with `SO_REUSEADDR` only — never `SO_REUSEPORT`,
//! which would let any other process of the same user join the port's group
//! and silently take half the new connections (a second zctarget started on
//! the same configuration). Each reactor accepts on its own duplicate of
//! that one descriptor: every reactor waiting on it is woken, one `accept`
//! wins each connection, so connections go to whichever reactor gets there
//! first.

use std::net::SocketAddr;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each listener.
const BACKLOG: i32 = 1024;

/// A non-blocking std listener on `addr` (`SO_REUSEADDR`, so a restart is
/// not held up by the previous run's connections in TIME-WAIT; no
/// `SO_REUSEPORT`, so nobody else can bind the port while we hold it).
/// `what` names the portal in errors ("iscsi portal"). Give each reactor a
/// `try_clone` and convert it with `tokio::net::TcpListener::from_std` there.
pub fn bind_portal(what: &str, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("{what} {addr}: creating the listening socket"))?;
    socket
        .set_reuse_address(true)
        .with_context(|| format!("{what} {addr}: SO_REUSEADDR"))?;
    socket
        .set_nonblocking(true)
        .with_context(|| format!("{what} {addr}: O_NONBLOCK"))?;
    if let Err(e) = socket.bind(&addr.into()) {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::bail!(
                "{what} {addr}: address already in use (another zctarget, or another \
                 program, is listening there)"
            );
        }
        return Err(e).with_context(|| format!("{what} {addr}: binding"));
    }
    socket
        .listen(BACKLOG)
        .with_context(|| format!("{what} {addr}: listening"))?;
    Ok(socket.into())
}

/// Tunes an accepted connection: no Nagle delay (PDUs are batched by the
/// sender already), keepalive as a last resort against dead peers.
pub fn tune_connection(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    // A peer that vanished (host crash, link cut) is found within about two
    // minutes even while a PDU is half received, instead of the kernel's
    // two-hour default.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(6);
    sock.set_tcp_keepalive(&keepalive)?;
    Ok(())
}

/// How long a PDU may take to arrive once its first byte has: a peer that
/// is alive but stops in the middle of a PDU is dropped after this.
pub const PDU_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The address to advertise for a listener (SendTargets, the NVMe
/// discovery log): itself, or — when it listens on the unspecified address
/// (0.0.0.0 / ::) — the address the client reached us on, with the
/// listener's port. A wildcard address in a portal list is useless to an
/// initiator.
pub fn advertised(listener: SocketAddr, local: Option<SocketAddr>) -> SocketAddr {
    match local {
        Some(l) if listener.ip().is_unspecified() && l.is_ipv4() == listener.is_ipv4() => {
            SocketAddr::new(l.ip(), listener.port())
        }
        _ => listener,
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn wildcard_listeners_advertise_the_reached_address() {
        let any = "0.0.0.0:3260".parse().unwrap();
        let local = Some("10.1.2.3:3260".parse().unwrap());
        assert_eq!(advertised(any, local), "10.1.2.3:3260".parse().unwrap());
        let fixed = "127.0.0.5:4420".parse().unwrap();
        assert_eq!(advertised(fixed, local), fixed);
        assert_eq!(advertised(any, None), any);
        let any6 = "[::]:4420".parse().unwrap();
        assert_eq!(advertised(any6, local), any6, "families differ: keep it");
    }
}
