//! Listening sockets: one per address per reactor, all bound with
//! `SO_REUSEPORT` so the kernel spreads connections over the reactors.

use std::net::SocketAddr;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each listener.
const BACKLOG: i32 = 1024;

/// A non-blocking std listener on `addr` with `SO_REUSEADDR` and
/// `SO_REUSEPORT`; convert it with `tokio::net::TcpListener::from_std` on the
/// reactor that will accept on it.
pub fn bind_reuseport(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("creating listening socket")?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("listening on {addr}"))?;
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
