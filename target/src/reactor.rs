//! A reactor: one thread, one single-threaded runtime (tokio-uring or plain
//! tokio), accepting on its duplicate of each portal's one listening socket
//! (see `listener`). Every reactor is woken for a new connection and one
//! `accept` wins; the winner keeps it, or hands it to the reactor carrying
//! the least live work (`crate::placement`), so work is spread evenly
//! whichever thread the kernel woke first. A connection then lives on one
//! reactor, so its state needs no locks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{watch, Notify};
use tracing::Instrument;
use zctarget_backends::{Engine, VolumeHandle};

use crate::daemon::{Protocol, Shared, SHUTDOWN_GRACE};
use crate::placement::Placement;

/// How long a reactor's reaper may still wait for zero-copy notifications
/// of closed connections at shutdown before quarantining their buffers.
const REAPER_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a stopping uring reactor cancels and waits for disk operations
/// still in flight before it quarantines their buffers (see `run_uring`).
const RING_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What a reactor thread is given at start.
pub struct ReactorPlan {
    /// Reactor number (also the CPU it is pinned to, modulo the CPU count).
    pub id: usize,
    /// Its duplicates of the portals' listening sockets.
    pub listeners: Vec<(Protocol, std::net::TcpListener)>,
    /// Connections other reactors accepted for this one.
    pub inbox: Option<UnboundedReceiver<HandedOver>>,
}

/// A connection accepted by one reactor for another: its protocol, the
/// socket (deregistered from the accepting reactor), the peer and its
/// place on the board (counted from the accept).
pub type HandedOver = (
    Protocol,
    std::net::TcpStream,
    std::net::SocketAddr,
    Placement,
);

impl ReactorPlan {
    /// An empty plan for reactor `id`.
    pub fn new(id: usize) -> Self {
        Self {
            id,
            listeners: Vec::new(),
            inbox: None,
        }
    }
}

/// Per-reactor state shared by the connections on it (single-threaded).
pub struct Reactor {
    /// Reactor number.
    pub id: usize,
    /// Daemon-wide state.
    pub shared: Arc<Shared>,
    /// Handles by volume slot (see `Exports`), opened on this thread at
    /// first use so that uring I/O goes to this thread's ring.
    handles: RefCell<Vec<Option<Rc<VolumeHandle>>>>,
    /// `Exports::generation` when `handles` was last pruned.
    handles_generation: Cell<u64>,
    /// Fires when the daemon shuts down.
    pub shutdown: watch::Receiver<bool>,
    connections: ConnectionTracker,
}

impl Reactor {
    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// This reactor's handle for the volume in `slot`; None once the
    /// volume was removed. The handle is opened on first use; afterwards a
    /// lookup costs one atomic load and a vector index.
    pub fn volume(&self, slot: usize) -> Option<Rc<VolumeHandle>> {
        let exports = &self.shared.exports;
        let generation = exports.generation();
        if generation != self.handles_generation.get() {
            // A volume was removed: drop handles whose slot is empty now.
            let mut handles = self.handles.borrow_mut();
            for (i, h) in handles.iter_mut().enumerate() {
                if h.is_some() && exports.get(i).is_none() {
                    *h = None;
                }
            }
            self.handles_generation.set(generation);
        }
        if let Some(Some(h)) = self.handles.borrow().get(slot) {
            return Some(Rc::clone(h));
        }
        let volume = exports.get(slot)?;
        let handle = match volume.open_handle(self.shared.engine) {
            Ok(h) => Rc::new(h),
            Err(e) => {
                tracing::error!(volume = volume.name(), reactor = self.id, error = %e, "opening a volume handle");
                return None;
            }
        };
        let mut handles = self.handles.borrow_mut();
        if handles.len() <= slot {
            handles.resize(slot + 1, None);
        }
        handles[slot] = Some(Rc::clone(&handle));
        Some(handle)
    }
}

/// Counts live connections so shutdown can wait for them.
#[derive(Default)]
struct ConnectionTracker {
    active: Cell<usize>,
    idle: Notify,
}

struct ConnectionGuard(Rc<Reactor>, Protocol);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let i = crate::metrics::Counters::index(self.1);
        self.0.shared.counters.connections[i].fetch_sub(1, Ordering::Relaxed);
        let t = &self.0.connections;
        t.active.set(t.active.get().saturating_sub(1));
        if t.active.get() == 0 {
            t.idle.notify_waiters();
        }
    }
}

/// Thread body: builds the runtime for the engine and runs the reactor.
pub fn run(
    plan: ReactorPlan,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    ready: Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    pin_to_cpu(plan.id);
    match shared.engine {
        // Disk operations keep their buffers until their completion is seen,
        // also when the ring is torn down (see `run_uring`).
        Engine::Uring => {
            zctarget_backends::run_uring(reactor_main(plan, shared, shutdown, ready), RING_DRAIN)
                .context("building the io_uring reactor runtime")?
        }
        Engine::Epoll => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the reactor runtime")?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, reactor_main(plan, shared, shutdown, ready))
        }
    }
}

async fn reactor_main(
    mut plan: ReactorPlan,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    ready: Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let inbox = plan.inbox.take();
    let setup = async {
        if shared.engine == Engine::Uring {
            // Failure is logged once by the backend; plain reads still work.
            let _ = zctarget_backends::register_pool_with_ring(&shared.pool);
        }
        let mut volumes = Vec::new();
        for (slot, v) in shared.exports.volumes() {
            let h = v
                .open_handle(shared.engine)
                .with_context(|| format!("opening volume {} on reactor {}", v.name(), plan.id))?;
            if volumes.len() <= slot {
                volumes.resize(slot + 1, None);
            }
            volumes[slot] = Some(Rc::new(h));
        }
        let mut listeners = Vec::with_capacity(plan.listeners.len());
        for (protocol, std_listener) in plan.listeners {
            listeners.push((protocol, TcpListener::from_std(std_listener)?));
        }
        anyhow::Ok((volumes, listeners))
    };
    let (volumes, listeners) = match setup.await {
        Ok(v) => {
            let _ = ready.send(Ok(()));
            v
        }
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
            return Err(e);
        }
    };
    // Closed connections' zero-copy pages are released here as their
    // notifications arrive (after a reset too); see `zerocopy::reaper`.
    let reaper = crate::zerocopy::reaper::start(crate::zerocopy::reaper::REAPER_LINGER);
    let reactor = Rc::new(Reactor {
        id: plan.id,
        handles_generation: Cell::new(shared.exports.generation()),
        shared,
        handles: RefCell::new(volumes),
        shutdown: shutdown.clone(),
        connections: ConnectionTracker::default(),
    });
    let mut accepts = Vec::new();
    if let Some(inbox) = inbox {
        accepts.push(tokio::task::spawn_local(inbox_loop(
            Rc::clone(&reactor),
            inbox,
        )));
    }
    for (protocol, listener) in listeners {
        accepts.push(tokio::task::spawn_local(accept_loop(
            Rc::clone(&reactor),
            protocol,
            listener,
        )));
    }
    for a in accepts {
        let _ = a.await;
    }
    // Listeners are closed; wait for connections to finish their in-flight
    // commands, then return (dropping what is left resets it).
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while reactor.connections.active.get() > 0 {
            let idle = reactor.connections.idle.notified();
            if reactor.connections.active.get() == 0 {
                break;
            }
            idle.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            reactor = reactor.id,
            connections = reactor.connections.active.get(),
            "connections still busy after the shutdown grace period; resetting them"
        );
    }
    // Shutdown must not wait forever: give the reaper a short last chance,
    // then quarantine what the kernel never notified. Senders dropped with
    // the runtime below (connections past the grace period) find no reaper
    // and quarantine at once.
    reaper.finish(REAPER_SHUTDOWN_WAIT).await;
    Ok(())
}

async fn accept_loop(reactor: Rc<Reactor>, protocol: Protocol, listener: TcpListener) {
    let mut shutdown = reactor.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => dispatch(&reactor, protocol, stream, peer),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Serves an accepted connection here, or hands it to the reactor with the
/// least live work (`Board::place`; this one on a tie). The connection
/// is on the target's board at once, so a burst accepted by one reactor is
/// spread too.
fn dispatch(
    reactor: &Rc<Reactor>,
    protocol: Protocol,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) {
    let board = &reactor.shared.placement;
    let target = board.place(reactor.id);
    let placement = board.admit(target);
    if target == reactor.id {
        serve(reactor, protocol, stream, peer, placement);
        return;
    }
    let handed = stream.into_std().map_err(|e| e.to_string()).and_then(|s| {
        reactor.shared.reactor_inboxes[target]
            .send((protocol, s, peer, placement))
            .map_err(|_| "the reactor is gone".to_owned())
    });
    if let Err(e) = handed {
        // The connection is closed (shutdown under way, or a failed
        // deregistration), its placement with it; the client sees a reset
        // and may retry.
        tracing::debug!(%peer, target, error = %e, "handing a connection over failed");
    }
}

/// Serves connections other reactors accepted for this one, until shutdown.
async fn inbox_loop(reactor: Rc<Reactor>, mut inbox: UnboundedReceiver<HandedOver>) {
    let mut shutdown = reactor.shutdown.clone();
    loop {
        tokio::select! {
            handed = inbox.recv() => match handed {
                Some((protocol, std_stream, peer, placement)) => {
                    match TcpStream::from_std(std_stream) {
                        Ok(stream) => serve(&reactor, protocol, stream, peer, placement),
                        Err(e) => tracing::warn!(%peer, error = %e, "taking over a connection"),
                    }
                }
                None => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    // Connections still queued are closed, their placements with them.
    inbox.close();
    while let Ok(_dropped) = inbox.try_recv() {}
}

/// Runs one connection on this reactor (already on its board).
fn serve(
    reactor: &Rc<Reactor>,
    protocol: Protocol,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    placement: Placement,
) {
    if let Err(e) = crate::listener::tune_connection(&stream) {
        tracing::debug!(%peer, error = %e, "socket options");
    }
    let t = &reactor.connections;
    t.active.set(t.active.get() + 1);
    let counters = &reactor.shared.counters;
    let i = crate::metrics::Counters::index(protocol);
    counters.connections[i].fetch_add(1, Ordering::Relaxed);
    counters.connections_accepted[i].fetch_add(1, Ordering::Relaxed);
    let guard = ConnectionGuard(Rc::clone(reactor), protocol);
    let placement = Rc::new(placement);
    let span = tracing::info_span!("conn", proto = %protocol, %peer, reactor = reactor.id);
    let r = Rc::clone(reactor);
    tokio::task::spawn_local(
        async move {
            let _guard = guard;
            let result = match protocol {
                Protocol::Iscsi => crate::iscsi::serve_connection(r, stream, placement).await,
                Protocol::NvmeTcp => crate::nvmf::serve_connection(r, stream, placement).await,
            };
            match result {
                Ok(()) => tracing::debug!("connection closed"),
                Err(e) => tracing::info!(error = %format!("{e:#}"), "connection ended"),
            }
        }
        .instrument(span),
    );
}

/// Pins the calling thread to one CPU (reactor id modulo the CPUs we may
/// run on); failures only cost locality, so they are logged and ignored.
fn pin_to_cpu(id: usize) {
    // SAFETY: `set` is a plain bitmask on our stack; sched_*affinity only
    // read/write it for the duration of each call, for the calling thread (0).
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        let Some(&cpu) = cpus.get(id % cpus.len().max(1)) else {
            return;
        };
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!(cpu, "could not pin reactor");
        }
    }
}
