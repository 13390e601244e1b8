//! The gateway-to-gateway peer link (issue #13; frames in
//! `zctarget_protocol::peer`).
//!
//! With `cluster.peers`, every gateway listens on its own entry's address
//! ([`server`]) and keeps one connection to every other gateway that has
//! one ([`dialer`]), authenticated both ways with the shared secret
//! (`cluster.peer_secret_file`). Over it:
//!
//! - a **follower** forwards the writes its hosts send (write, write
//!   zeroes, discard, COMPARE AND WRITE) when its own gate refuses them
//!   and a live peer holds the volume's lock (the backends' `Forward` hook,
//!   installed on each shared rbd image: both frontends and every write
//!   path get it in one place). The owner runs them through its own
//!   backend — whose gate refuses them unless it holds the lock, so a
//!   fenced or demoted gateway never writes — and COMPARE AND WRITE under
//!   the volume's CAW lock its own hosts take, so it is atomic across the
//!   gateways. The host gets the owner's answer; no answer within
//!   [`FORWARD_TIMEOUT`], a link down mid-request or too many bytes in
//!   flight ([`MAX_IN_FLIGHT_BYTES`]) answer a transition (SCSI 04/0A,
//!   NVMe ANA Transition), which hosts retry.
//! - a **LOGICAL UNIT RESET** on one gateway is sent to every peer, which
//!   raises the same unit attention on the volume's logical units there.
//! - `ctl volume handover` asks the owner to release (then acquires);
//! - a dialer pings a silent peer and drops the link after 5 s of
//!   silence: the **heartbeat**. A follower whose links to every peer
//!   have been down for `takeover_after_ms` (after having been up) takes
//!   a lock over although its owner's watch is still registered — a
//!   gateway that hangs keeps its RADOS session (and so its watch) alive
//!   for up to `osd_client_watch_timeout` — blocklisting the owner first,
//!   as every takeover does (`failover`).
//!
//! All of it runs on one thread of its own (a current-thread runtime):
//! forwarding is the slow path, never a reactor's work beyond a copy and a
//! channel send. Sends are plain copying writes (no `MSG_ZEROCOPY`): a
//! forwarded payload is a private copy, so no pool lease is tied to a
//! send.

mod dialer;
mod frame_io;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use zctarget_backends::forward::{Forward, ForwardFuture, ForwardOp};
use zctarget_backends::rbd::NotOwner;
use zctarget_backends::Volume;
use zctarget_protocol::peer::{Frame, SharedUa, Status, MAX_DATA};

use crate::daemon::Shared;

/// A forwarded operation with no answer by then fails as a transition.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of forwarded payload in flight at most, per gateway (beyond it a
/// write is answered as a transition at once: the host retries).
pub const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;
/// How long a LOGICAL UNIT RESET waits for the peers to raise its unit
/// attention before it is answered.
pub const UA_WAIT: Duration = Duration::from_secs(2);
/// How long a handover waits for the owner's release (it drains the
/// owner's writes in flight).
pub const HANDOVER_WAIT: Duration = Duration::from_secs(30);

/// The peer link of this gateway.
pub struct Link {
    gateway: String,
    secret: Vec<u8>,
    listen: Option<std::net::TcpListener>,
    /// The address the listener is bound to (port resolved).
    pub local_addr: Option<SocketAddr>,
    peers: Vec<Arc<dialer::Peer>>,
    stop: Arc<AtomicBool>,
    /// Wakes whatever waits in [`Link::stopped`].
    stop_notify: tokio::sync::Notify,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("gateway", &self.gateway)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Reads the secret: one non-empty line (a trailing newline dropped).
fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading cluster.peer_secret_file {}", path.display()))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    anyhow::ensure!(
        !line.is_empty() && !line.contains('\n'),
        "the peer secret file {} must hold one non-empty line",
        path.display()
    );
    Ok(line.as_bytes().to_vec())
}

impl Link {
    /// Binds this gateway's peer address (without `cluster.peers`: `None`).
    /// Nothing runs until [`Link::start`].
    pub fn bind(cluster: Option<&zctarget_config::Cluster>) -> anyhow::Result<Option<Arc<Link>>> {
        let Some(c) = cluster.filter(|c| !c.peers.is_empty()) else {
            return Ok(None);
        };
        let path = c
            .peer_secret_file
            .as_ref()
            .context("cluster.peers needs cluster.peer_secret_file")?;
        let secret = read_secret(path)?;
        let (listen, local_addr) = match c.peers.get(&c.gateway) {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("peer link: binding {addr}"))?;
                l.set_nonblocking(true)?;
                let actual = l.local_addr()?;
                tracing::info!(protocol = %"peer", portal = %actual, "listening");
                (Some(l), Some(actual))
            }
            None => (None, None),
        };
        let peers = dialer_targets(&c.peers, &c.gateway)
            .map(|(id, addr)| Arc::new(dialer::Peer::new(id, addr)))
            .collect();
        Ok(Some(Arc::new(Link {
            gateway: c.gateway.clone(),
            secret,
            listen,
            local_addr,
            peers,
            stop: Arc::new(AtomicBool::new(false)),
            stop_notify: tokio::sync::Notify::new(),
            thread: std::sync::Mutex::new(None),
        })))
    }

    /// Starts the link's thread: the listener and the dialers.
    pub fn start(self: &Arc<Self>, shared: &Arc<Shared>) -> anyhow::Result<()> {
        let (link, shared) = (Arc::clone(self), Arc::clone(shared));
        let listener = self
            .listen
            .as_ref()
            .map(std::net::TcpListener::try_clone)
            .transpose()?;
        let t = std::thread::Builder::new()
            .name("peer-link".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "peer link: no runtime");
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    if let Some(l) = listener {
                        tokio::task::spawn_local(server::serve(
                            Arc::clone(&link),
                            Arc::clone(&shared),
                            l,
                        ));
                    }
                    for p in &link.peers {
                        tokio::task::spawn_local(dialer::run(Arc::clone(&link), Arc::clone(p)));
                    }
                    // Volumes opened later (a rejoin, a volume added) get
                    // their forwarder here, when the volume table says so:
                    // nothing wakes this thread on a timer. Returning
                    // drops the listener's and the dialers' tasks.
                    loop {
                        tokio::select! {
                            _ = shared.exports.added() => link.install_all(&shared),
                            _ = link.stopped() => break,
                        }
                    }
                });
            })
            .context("spawning the peer link thread")?;
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(())
    }

    /// Stops the thread (connections close; requests in flight fail).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.stop_notify.notify_waiters();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    /// Resolves once [`Link::stop`] was called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.stop_notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: a stop in between still
            // wakes it.
            notified.as_mut().enable();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Installs the forwarder on every shared rbd volume that has none.
    pub fn install_all(self: &Arc<Self>, shared: &Shared) {
        for (_, v) in shared.exports.volumes() {
            let Some(img) = v.rbd_image() else { continue };
            if img.has_forwarder() || img.role() == zctarget_backends::rbd::Role::Solo {
                continue;
            }
            let identity = {
                let cfg = shared.live.lock();
                cfg.volume(v.name()).map(|c| cfg.volume_identity(c))
            };
            if let Some(id) = identity {
                self.install(&v, &id);
            }
        }
    }

    /// The identity of the volume in `slot`, if configured.
    pub fn identity_of(shared: &Shared, slot: usize) -> Option<String> {
        let v = shared.exports.get(slot)?;
        let cfg = shared.live.lock();
        cfg.volume(v.name()).map(|c| cfg.volume_identity(c))
    }

    /// Installs the forwarder on `volume` (a shared rbd volume whose
    /// identity is `identity`; others are left alone).
    pub fn install(self: &Arc<Self>, volume: &Volume, identity: &str) {
        if let Some(img) = volume.rbd_image() {
            img.set_forwarder(Arc::new(Forwarder {
                link: Arc::clone(self),
                volume: identity.to_owned(),
                image: img.name().to_owned(),
            }));
        }
    }

    /// `ctl volume handover NAME`, on the gateway that is to own the
    /// volume: asks the peers over the link to release its lock (the owner
    /// does, the others answer "not the owner"), then takes it. Blocking
    /// (an admin thread).
    pub fn handover(&self, shared: &Shared, name: &str) -> anyhow::Result<crate::failover::Moved> {
        let identity = {
            let cfg = shared.live.lock();
            let v = cfg
                .volume(name)
                .ok_or_else(|| anyhow::anyhow!("{name:?} is not configured"))?;
            cfg.volume_identity(v)
        };
        let img = shared
            .exports
            .slot_of(name)
            .and_then(|s| shared.exports.get(s))
            .and_then(|v| v.rbd_image().cloned())
            .ok_or_else(|| anyhow::anyhow!("no shared rbd volume named {name:?}"))?;
        if img.role() != zctarget_backends::rbd::Role::Follower {
            anyhow::bail!("{name:?}: this gateway is {:?}, not a follower", img.role());
        }
        let mut released = None;
        let mut answers = Vec::new();
        for p in &self.peers {
            let f = Frame::Release {
                volume: identity.clone(),
            };
            let Some(rx) = p.send(f, 0, HANDOVER_WAIT) else {
                answers.push(format!("{}: link down", p.id));
                continue;
            };
            match rx.blocking_recv() {
                Ok(Status::Ok) => {
                    released = Some(p.id.clone());
                    break;
                }
                other => answers.push(format!("{}: {other:?}", p.id)),
            }
        }
        let Some(from) = released else {
            anyhow::bail!("{name:?}: no peer released it ({})", answers.join(", "));
        };
        tracing::warn!(volume = name, from = %from, "handover: released by its owner, acquiring");
        // librbd may list the old owner for a moment after its release.
        let mut last = None;
        for _ in 0..20 {
            match crate::failover::move_owner(shared, name, false, None) {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("acquiring {name:?}")))
    }

    /// How long every peer has been unreachable (see
    /// `dialer::Peer::unreachable_for`): the heartbeat's verdict that the
    /// other gateways are gone. `None` while any peer's link is up, or was
    /// never up.
    pub fn all_peers_unreachable_for(&self) -> Option<Duration> {
        self.peers
            .iter()
            .map(|p| p.unreachable_for())
            .try_fold(Duration::MAX, |min, d| d.map(|d| min.min(d)))
            .filter(|_| !self.peers.is_empty())
    }

    /// Tells every connected peer about `ua` on the volume `identity` and
    /// waits (at most [`UA_WAIT`]) for them to have raised it.
    pub async fn share_ua(&self, identity: &str, ua: SharedUa) {
        let mut waits = Vec::new();
        for p in &self.peers {
            let f = Frame::UnitAttention {
                volume: identity.to_owned(),
                ua,
            };
            if let Some(rx) = p.send(f, 0, UA_WAIT) {
                waits.push(rx);
            }
        }
        for rx in waits {
            match rx.await {
                Ok(Status::Ok) => {}
                other => tracing::warn!(volume = identity, answer = ?other,
                    "peer link: a peer did not raise the shared unit attention"),
            }
        }
    }
}

fn dialer_targets<'a>(
    peers: &'a BTreeMap<String, SocketAddr>,
    me: &'a str,
) -> impl Iterator<Item = (String, SocketAddr)> + 'a {
    peers
        .iter()
        .filter(move |(id, _)| id.as_str() != me)
        .map(|(id, a)| (id.clone(), *a))
}

/// A volume's forwarder: sends its operations to the peers, first
/// connected first, until one answers other than "not the owner".
struct Forwarder {
    link: Arc<Link>,
    volume: String,
    image: String,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("volume", &self.volume)
            .finish()
    }
}

impl Forward for Forwarder {
    fn forward(&self, op: ForwardOp) -> Option<ForwardFuture> {
        let peers: Vec<_> = self
            .link
            .peers
            .iter()
            .filter(|p| p.connected())
            .cloned()
            .collect();
        if peers.is_empty() {
            return None;
        }
        let (volume, image) = (self.volume.clone(), self.image.clone());
        Some(Box::pin(async move {
            let refusal = |settled| {
                std::io::Error::other(NotOwner {
                    image: image.clone(),
                    fenced: false,
                    settled,
                })
            };
            let frames = frames(&volume, op);
            let mut last = Status::NotOwner {
                fenced: false,
                settled: true,
            };
            'peers: for p in &peers {
                for (f, bytes) in &frames {
                    let Some(rx) = p.send(f.clone(), *bytes, FORWARD_TIMEOUT) else {
                        last = Status::Busy;
                        continue 'peers;
                    };
                    let st = rx.await.unwrap_or(Status::Busy);
                    match st {
                        Status::Ok => {}
                        Status::NotOwner { .. } | Status::NoVolume => {
                            last = st;
                            continue 'peers;
                        }
                        other => return status_result(other, &refusal),
                    }
                }
                return Ok(None);
            }
            status_result(last, &refusal)
        }))
    }
}

/// The frames an operation takes (a write longer than a frame allows is
/// split), each with the payload bytes it holds.
fn frames(volume: &str, op: ForwardOp) -> Vec<(Frame, usize)> {
    let volume = volume.to_owned();
    match op {
        ForwardOp::Write { offset, data, fua } => {
            if data.len() <= MAX_DATA {
                let n = data.len();
                return vec![(
                    Frame::Write {
                        volume,
                        offset,
                        fua,
                        data,
                    },
                    n,
                )];
            }
            data.chunks(MAX_DATA)
                .scan(offset, |at, chunk| {
                    let f = Frame::Write {
                        volume: volume.clone(),
                        offset: *at,
                        fua,
                        data: chunk.to_vec(),
                    };
                    *at += chunk.len() as u64;
                    Some((f, chunk.len()))
                })
                .collect()
        }
        ForwardOp::WriteZeroes { offset, len } => vec![(
            Frame::WriteZeroes {
                volume,
                offset,
                len,
            },
            0,
        )],
        ForwardOp::Discard { offset, len } => vec![(
            Frame::Discard {
                volume,
                offset,
                len,
            },
            0,
        )],
        ForwardOp::CompareAndWrite {
            offset,
            compare,
            data,
            fua,
        } => {
            let n = compare.len() + data.len();
            vec![(
                Frame::CompareAndWrite {
                    volume,
                    offset,
                    fua,
                    compare,
                    data,
                },
                n,
            )]
        }
    }
}

/// What the host gets for the owner's answer: its refusal a transition
/// (the owner no longer holds the lock, or the link failed: retry) unless
/// every peer said another gateway owns the volume.
fn status_result(
    st: Status,
    refusal: &dyn Fn(bool) -> std::io::Error,
) -> zctarget_backends::forward::Forwarded {
    match st {
        Status::Ok => Ok(None),
        Status::Miscompare(at) => Ok(Some(at)),
        Status::NotOwner { .. } | Status::Busy => Err(refusal(false)),
        Status::NoVolume => Err(refusal(true)),
        Status::Medium => Err(std::io::Error::other("the owner gateway failed the write")),
        Status::WriteProtected => Err(zctarget_backends::read_only_error()),
        Status::Invalid => Err(std::io::Error::from(std::io::ErrorKind::InvalidInput)),
    }
}

/// The status an operation's error answers a peer with.
pub(crate) fn status_of(e: &std::io::Error) -> Status {
    if let Some(n) = zctarget_backends::rbd::not_owner(e) {
        Status::NotOwner {
            fenced: n.fenced,
            settled: n.settled,
        }
    } else {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Status::WriteProtected,
            std::io::ErrorKind::InvalidInput => Status::Invalid,
            _ => Status::Medium,
        }
    }
}
