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
    sock.set_keepalive(true)?;
    Ok(())
}
