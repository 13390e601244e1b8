//! The daemon: opens volumes, builds the buffer pool, starts one reactor
//! thread per core, and shuts everything down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use zctarget_backends::{BufferPool, Engine};
use zctarget_config::Config;

use crate::exports::Exports;
use crate::reactor::{self, ReactorPlan};
use crate::zerocopy::{SenderCounters, ZeroCopyPolicy};

/// Size of one buffer-pool chunk: the lease granularity. 64 KiB keeps small
/// commands cheap while a 512 KiB command still fits in the inline segment
/// list (8 segments).
pub const POOL_CHUNK_SIZE: usize = 64 << 10;

/// How long shutdown waits for in-flight commands to retire before
/// resetting the remaining connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Which protocol a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// iSCSI (RFC 7143).
    Iscsi,
    /// NVMe/TCP.
    NvmeTcp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Iscsi => "iscsi",
            Protocol::NvmeTcp => "nvme-tcp",
        })
    }
}

/// What every reactor shares.
pub struct Shared {
    /// The `[server]` section the daemon started with (changes need a
    /// restart).
    pub server: zctarget_config::Server,
    /// The `[cluster]` section the daemon started with (changes need a
    /// restart).
    pub cluster: Option<zctarget_config::Cluster>,
    /// The live configuration: what administration changes, persists and
    /// applies (see `live`).
    pub live: crate::live::LiveConfig,
    /// Open volumes by slot.
    pub exports: Exports,
    /// Payload memory for every connection.
    pub pool: BufferPool,
    /// Connection, readiness and protocol-error counters (metrics).
    pub counters: crate::metrics::Counters,
    /// Zero-copy counters, summed over all connections.
    pub sender_counters: Arc<SenderCounters>,
    /// The resolved I/O engine.
    pub engine: Engine,
    /// When to use `MSG_ZEROCOPY`.
    pub zerocopy: ZeroCopyPolicy,
    /// Addresses actually bound (ports resolved), per protocol.
    pub iscsi_portals: Vec<SocketAddr>,
    /// See `iscsi_portals`.
    pub nvme_portals: Vec<SocketAddr>,
    /// iSCSI targets' run-time state and the session table.
    pub iscsi: crate::iscsi::IscsiRegistry,
    /// NVMe/TCP subsystems and live controllers.
    pub nvmf: crate::nvmf::NvmfRegistry,
    /// Every reactor's connections (handed-over ones included) and their
    /// work: where an accepted connection goes (see `placement`).
    pub placement: Arc<crate::placement::Board>,
    /// Each reactor's inbox for connections another reactor accepted.
    pub reactor_inboxes: Vec<tokio::sync::mpsc::UnboundedSender<crate::reactor::HandedOver>>,
    /// The gateway-to-gateway link (`cluster.peers` only).
    pub peer: Option<Arc<crate::peer::Link>>,
}

/// A running daemon.
pub struct Daemon {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    reactors: Vec<JoinHandle<anyhow::Result<()>>>,
    /// Ownership of the shared rbd volumes (`[cluster]` only).
    failover: Option<crate::failover::Monitor>,
}

impl Daemon {
    /// Opens every volume, binds every listener and starts the reactors.
    /// Returns once all reactors are accepting.
    pub fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, None)
    }

    /// [`Daemon::start`], persisting administrative changes to
    /// `config_path` (None: changes live only until restart).
    pub fn start_with(
        config: Config,
        config_path: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let engine = crate::engine::resolve(config.server.io_engine)?;
        let pool_bytes = usize::try_from(config.server.buffer_pool.0)
            .context("buffer_pool does not fit in memory")?;
        // An eighth of the pool is the reserve for data hosts send unasked
        // (see `admission`).
        let reserve = pool_bytes / POOL_CHUNK_SIZE / 8;
        let pool = BufferPool::with_reserve(
            pool_bytes,
            POOL_CHUNK_SIZE,
            config.server.poison_on_release,
            reserve,
        )
        .context("creating the buffer pool")?;
        let zerocopy = match config.server.zerocopy {
            zctarget_config::ZeroCopyMode::Always => ZeroCopyPolicy::Always,
            zctarget_config::ZeroCopyMode::Never => ZeroCopyPolicy::Never,
            zctarget_config::ZeroCopyMode::Auto => ZeroCopyPolicy::Threshold(
                usize::try_from(config.server.zerocopy_threshold.0).unwrap_or(usize::MAX),
            ),
        };
        let reactor_count = match config.server.reactors {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };

        // Bind every portal once, before opening any volume (a second daemon
        // on the same configuration stops here, naming the portal, and
        // touches no file); every reactor accepts on a duplicate of the
        // socket.
        let mut plans: Vec<ReactorPlan> = (0..reactor_count).map(ReactorPlan::new).collect();
        let mut iscsi_portals = Vec::new();
        let mut nvme_portals = Vec::new();
        let wanted = config
            .server
            .iscsi_listen
            .iter()
            .map(|a| (Protocol::Iscsi, *a))
            .chain(
                config
                    .server
                    .nvme_listen
                    .iter()
                    .map(|a| (Protocol::NvmeTcp, *a)),
            );
        for (protocol, addr) in wanted {
            let what = format!("{protocol} portal");
            let listener = crate::listener::bind_portal(&what, addr)?;
            let actual = listener
                .local_addr()
                .with_context(|| format!("{what} {addr}: local address"))?;
            tracing::info!(%protocol, portal = %actual, "listening");
            match protocol {
                Protocol::Iscsi => iscsi_portals.push(actual),
                Protocol::NvmeTcp => nvme_portals.push(actual),
            }
            for plan in plans.iter_mut() {
                let dup = listener
                    .try_clone()
                    .with_context(|| format!("{what} {actual}: duplicating the socket"))?;
                plan.listeners.push((protocol, dup));
            }
        }
        let exports = Exports::open(&config)?;
        let peer = crate::peer::Link::bind(config.cluster.as_ref())?;

        let mut reactor_inboxes = Vec::with_capacity(reactor_count);
        for plan in plans.iter_mut() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            reactor_inboxes.push(tx);
            plan.inbox = Some(rx);
        }
        let roles =
            crate::cluster::Roles::new(config.cluster.as_ref(), &config).observing(&exports);
        if let Some(c) = &config.cluster {
            tracing::info!(gateway = %c.gateway, number = c.number(),
                gateways = c.gateways.len(), non_owner_state = %c.non_owner_state,
                "cluster member");
        }
        let iscsi = crate::iscsi::IscsiRegistry::new(&config.iscsi_targets, &exports, &roles);
        let nvmf = crate::nvmf::NvmfRegistry::new(
            &config.nvme_subsystems,
            &exports,
            nvme_portals.clone(),
            &roles,
        );
        let shared = Arc::new(Shared {
            iscsi,
            nvmf,
            server: config.server.clone(),
            cluster: config.cluster.clone(),
            live: crate::live::LiveConfig::new(config, config_path),
            exports,
            pool,
            sender_counters: Arc::new(SenderCounters::default()),
            counters: crate::metrics::Counters::default(),
            engine,
            zerocopy,
            iscsi_portals,
            nvme_portals,
            placement: Arc::new(crate::placement::Board::new(reactor_count)),
            reactor_inboxes,
            peer,
        });
        if let Some(link) = &shared.peer {
            link.install_all(&shared);
            link.start(&shared)?;
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut reactors = Vec::with_capacity(reactor_count);
        for plan in plans {
            let shared = Arc::clone(&shared);
            let rx = shutdown_rx.clone();
            let ready = ready_tx.clone();
            let id = plan.id;
            let handle = std::thread::Builder::new()
                .name(format!("reactor-{id}"))
                .spawn(move || reactor::run(plan, shared, rx, ready))
                .context("spawning reactor thread")?;
            reactors.push(handle);
        }
        drop(ready_tx);
        for _ in 0..reactor_count {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = shutdown.send(true);
                    return Err(e.context("starting a reactor"));
                }
                Err(_) => {
                    let _ = shutdown.send(true);
                    anyhow::bail!("a reactor thread died during start-up");
                }
            }
        }
        shared
            .counters
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            engine = %shared.engine,
            reactors = reactor_count,
            pool = shared.pool.total_bytes(),
            "zctarget started"
        );
        let failover = crate::failover::Monitor::start(&shared)?;
        Ok(Self {
            shared,
            shutdown,
            reactors,
            failover,
        })
    }

    /// Shared state (portals, pool, counters).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets in-flight commands retire (up to
    /// [`SHUTDOWN_GRACE`]), flushes every volume.
    pub fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down: no new connections, waiting for in-flight commands");
        // No takeover while the volumes close.
        drop(self.failover);
        if let Some(link) = &self.shared.peer {
            link.stop();
        }
        self.shared
            .counters
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let mut first_error = None;
        for handle in self.reactors {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reactor failed");
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow::anyhow!("a reactor thread panicked"));
                }
            }
        }
        for (slot, volume) in self.shared.exports.volumes() {
            if let Err(e) = volume.sync() {
                tracing::error!(volume = volume.name(), error = %e, "flush at shutdown failed");
                first_error.get_or_insert(e.into());
            }
            // Close it now rather than at exit: an RBD image releases its
            // exclusive lock (a process that just exits leaves the lock to
            // expire with its watch), its Ceph client shuts down.
            drop(volume);
            drop(self.shared.exports.remove(slot));
        }
        let pool = self.shared.pool.stats();
        let leased = pool.total_chunks - pool.free_chunks - pool.quarantined_chunks;
        if pool.quarantined_chunks > 0 {
            tracing::warn!(
                quarantined = pool.quarantined_chunks,
                "buffer chunks quarantined (the kernel never released them)"
            );
        }
        if leased > 0 {
            tracing::error!(leased, "buffer leases outstanding at shutdown");
        } else if pool.quarantined_chunks == 0 {
            tracing::info!(
                chunks = pool.total_chunks,
                "buffer pool intact: every chunk free"
            );
        }
        tracing::info!("shutdown complete");
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}
