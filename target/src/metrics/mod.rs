//! Prometheus text endpoint (`server.metrics_listen`): `GET /metrics`,
//! plus `GET /healthz` (the process answers) and `GET /readyz` (listeners
//! up, not shutting down) for probes.
//!
//! The HTTP side is a few lines on a blocking thread rather than an HTTP
//! crate: three fixed GET routes, no keep-alive, no bodies in; hyper or
//! axum would bring a second async stack for that. Counters live where
//! they are updated (volume handles, sessions, controllers, the zero-copy
//! sender, the pool); this module only reads them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;

use crate::daemon::{Protocol, Shared};

mod render;
pub use render::render;

/// Daemon-wide counters that have no better home.
#[derive(Debug, Default)]
pub struct Counters {
    /// Open connections: iSCSI, NVMe/TCP.
    pub connections: [AtomicU64; 2],
    /// Connections accepted since start: iSCSI, NVMe/TCP.
    pub connections_accepted: [AtomicU64; 2],
    /// Protocol errors by (protocol, kind). Locked only when an error
    /// happens, never on the command path.
    protocol_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Command-slot workers started: iSCSI, NVMe/TCP. One per slot on its
    /// first use, kept for the connection's life — not one per command.
    pub command_workers: [AtomicU64; 2],
    /// Command lifecycle transitions refused (a frontend bug if not 0).
    pub lifecycle_errors: AtomicU64,
    /// SCSI commands planned under their LUN's lock (the rest, plain
    /// READs and WRITEs, are planned lock-free).
    pub scsi_locked_plans: AtomicU64,
    /// Listeners are up and the daemon is not shutting down.
    pub ready: AtomicBool,
    /// Shared rbd volumes taken over from a dead owner (`failover`).
    pub failovers: AtomicU64,
    /// Exclusive locks acquired after start (takeover or failback).
    pub lock_acquisitions: AtomicU64,
    /// Exclusive locks lost (fenced: broken by a survivor, blocklisted).
    pub lock_losses: AtomicU64,
    /// Exclusive locks released on request (failback).
    pub lock_releases: AtomicU64,
}

impl Counters {
    /// Index of `p` in the per-protocol arrays.
    pub fn index(p: Protocol) -> usize {
        match p {
            Protocol::Iscsi => 0,
            Protocol::NvmeTcp => 1,
        }
    }

    /// Counts one protocol error of `kind` (a snake_case name).
    pub fn protocol_error(&self, protocol: Protocol, kind: &'static str) {
        let p = match protocol {
            Protocol::Iscsi => "iscsi",
            Protocol::NvmeTcp => "nvme_tcp",
        };
        *self
            .protocol_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((p, kind))
            .or_default() += 1;
    }
}

/// The running endpoint.
pub struct MetricsServer {
    /// The address bound (port resolved).
    pub addr: SocketAddr,
}

/// Binds `addr` and serves scrapes on a background thread.
pub fn start(addr: SocketAddr, shared: &Arc<Shared>) -> anyhow::Result<MetricsServer> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the metrics endpoint {addr}"))?;
    let addr = listener.local_addr()?;
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(e) = answer(stream, &weak) {
                    tracing::debug!(error = %e, "metrics request");
                }
            }
        })
        .context("spawning the metrics thread")?;
    tracing::info!(%addr, "metrics endpoint listening");
    Ok(MetricsServer { addr })
}

fn answer(mut stream: TcpStream, shared: &Weak<Shared>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let shared = shared.upgrade();
    let (status, ctype, body) = match (method, path, &shared) {
        ("GET", "/metrics", Some(s)) => ("200 OK", "text/plain; version=0.0.4", render(s)),
        ("GET", "/healthz", Some(_)) => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz", Some(s)) if s.counters.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", "ready\n".to_owned())
        }
        ("GET", "/readyz", _) => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".to_owned(),
        ),
        ("GET", _, _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
