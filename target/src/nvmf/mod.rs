//! NVMe/TCP frontend (NVMe-oF TCP transport, NVM command set).
//!
//! - [`NvmfRegistry`]: daemon-wide state — subsystems with their
//!   namespaces, and the live controllers by CNTLID. An admin-queue Connect
//!   creates a controller (dynamic controller model); I/O-queue Connects,
//!   which arrive on other TCP connections and possibly other reactors,
//!   find it by CNTLID. The registry lock is taken only at connect and
//!   teardown; a controller's own lock only for planning a command (short,
//!   never across I/O).
//! - [`queue`]: one TCP connection = one queue: ICReq/ICResp, the PDU loop,
//!   teardown; `connect` (Connect, admin commands, events, keep-alive),
//!   `io` (I/O commands on the shared command engine, `crate::slots`, from
//!   plan to completion with the zero-copy data path), `wire` (PDU framing).
//! - [`reader`]: reading PDUs, write data straight into leased buffers.
//! - `subsystem`: a subsystem's configuration and namespace table, and the
//!   identity (NGUID, UUID, EUI-64, ANA group) each namespace reports.
//! - [`auth`]: in-band authentication (DH-HMAC-CHAP) of a queue.

mod ana;
pub mod auth;
mod connect;
mod io;
pub mod queue;
pub mod reader;
mod subsystem;
mod wire;

use subsystem::{build_namespaces, host_allowed};
pub use subsystem::{Namespace, Subsystem};

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use zctarget_config as config;
use zctarget_config::names::DISCOVERY_NQN;
use zctarget_config::ANY;
use zctarget_protocol::nvme::discovery::DiscoveryEntry;
use zctarget_protocol::nvme::{AerCompletion, Controller, ControllerConfig, IoView};

use crate::cluster::Roles;
use crate::exports::Exports;
use crate::reactor::Reactor;

/// NVM subsystem type in discovery log entries (SUBTYPE 2h).
const SUBTYPE_NVM: u8 = 2;
/// Queue entries a controller accepts per queue (CAP.MQES + 1).
pub const QUEUE_ENTRIES: u16 = 128;
/// MDTS: 4 KiB × 2^mdts = 1 MiB per command.
pub const MDTS: u8 = 8;
/// In-capsule data accepted on I/O queues (IOCCSZ).
pub const IN_CAPSULE_DATA: u32 = 8192;
/// MAXH2CDATA advertised in the ICResp.
pub const MAX_H2C_DATA: u32 = 128 * 1024;

/// A live controller: its state machine, the subsystem it belongs to
/// (None: the discovery controller), and the switch that ends every queue
/// connected to it.
pub struct ControllerEntry {
    /// The state machine.
    pub ctrl: Mutex<Controller>,
    /// What I/O planning reads of it, swapped whole after every admin
    /// command and namespace change (`refresh_io_view`): I/O queues plan
    /// without the lock.
    pub io_view: ArcSwap<IoView>,
    /// Its subsystem; None for a discovery controller.
    pub subsystem: Option<Arc<Subsystem>>,
    /// Set to true to tear the controller down (keep-alive timeout, admin
    /// queue gone): every queue connection closes.
    pub kill: watch::Sender<bool>,
    /// I/O counters for the SMART / Health log, updated by the I/O queues
    /// (relaxed atomics: one add per completed command).
    pub stats: IoStats,
    /// The host NQN that connected it.
    pub hostnqn: String,
    /// The host's address (admin queue).
    pub host_address: Mutex<Option<std::net::SocketAddr>>,
    /// Our address as the host reached it (admin queue).
    pub local_address: Mutex<Option<std::net::SocketAddr>>,
    /// Queues connected (admin included).
    pub queues: AtomicU32,
    /// I/O commands in flight over all queues.
    pub in_flight: AtomicU32,
    /// Asynchronous event completions waiting for the admin queue to send
    /// them (raised by administration on another thread).
    pub events: Mutex<Vec<AerCompletion>>,
    /// Wakes the admin queue when `events` has something.
    pub events_ready: Notify,
}

impl ControllerEntry {
    /// Takes a new I/O planning snapshot of `ctrl` (call with the lock
    /// held, after anything that may have changed it).
    pub fn refresh_io_view(&self, ctrl: &Controller) {
        let view = ctrl.io_view();
        if **self.io_view.load() != view {
            self.io_view.store(Arc::new(view));
        }
    }

    /// Queues an AER completion for the admin queue.
    fn post_event(&self, event: Option<AerCompletion>) {
        if let Some(e) = event {
            self.events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e);
            self.events_ready.notify_one();
        }
    }
}

/// One row of [`NvmfRegistry::list_controllers`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControllerRow {
    /// CNTLID.
    pub cntlid: u16,
    /// Subsystem NQN (the discovery NQN for discovery controllers).
    pub subsystem: String,
    /// Host NQN.
    pub host: String,
    /// Host address of the admin queue.
    pub address: String,
    /// Connected queues, admin included.
    pub queues: u32,
    /// I/O commands in flight.
    pub in_flight: u32,
    /// Read / write commands completed.
    pub reads: u64,
    /// See `reads`.
    pub writes: u64,
}

/// A controller's I/O counters.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Bytes read by the host.
    pub bytes_read: AtomicU64,
    /// Bytes written by the host.
    pub bytes_written: AtomicU64,
    /// Read commands completed.
    pub reads: AtomicU64,
    /// Write commands completed.
    pub writes: AtomicU64,
    /// Commands that failed in the backend.
    pub media_errors: AtomicU64,
}

impl IoStats {
    /// The counters as the SMART / Health log reports them.
    pub fn health(&self) -> zctarget_protocol::nvme::HealthCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        zctarget_protocol::nvme::HealthCounters {
            bytes_read: get(&self.bytes_read),
            bytes_written: get(&self.bytes_written),
            read_commands: get(&self.reads),
            write_commands: get(&self.writes),
            media_errors: get(&self.media_errors),
            ..Default::default()
        }
    }
}

/// Daemon-wide NVMe/TCP state.
pub struct NvmfRegistry {
    subsystems: RwLock<HashMap<String, Arc<Subsystem>>>,
    controllers: Mutex<HashMap<u16, Arc<ControllerEntry>>>,
    next_cntlid: AtomicU16,
    /// Controller IDs this gateway hands out (a block of its own in a
    /// cluster, so IDs are unique across gateways).
    cntlids: std::ops::RangeInclusive<u16>,
    /// ANA groups every I/O controller reports (`[cluster]` only).
    /// Changed at run time by failover (`ana`).
    ana: Mutex<Option<zctarget_protocol::nvme::ana::AnaGroups>>,
    portals: Vec<std::net::SocketAddr>,
}

impl NvmfRegistry {
    /// Builds the subsystems; `portals` are the NVMe/TCP listeners
    /// discovery reports; `roles` the volumes' identities and the cluster
    /// (fixed until restart: controller IDs and ANA groups).
    pub fn new(
        subsystems: &[config::NvmeSubsystem],
        exports: &Exports,
        portals: Vec<std::net::SocketAddr>,
        roles: &Roles,
    ) -> Self {
        let cntlids = roles
            .cluster()
            .map_or(1..=0xFFEF, config::Cluster::cntlid_range);
        let r = Self {
            subsystems: RwLock::new(HashMap::new()),
            controllers: Mutex::new(HashMap::new()),
            next_cntlid: AtomicU16::new(1),
            cntlids,
            ana: Mutex::new(roles.ana_groups()),
            portals,
        };
        r.apply(subsystems, exports, roles);
        r
    }

    /// A subsystem by NQN.
    pub fn subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        let subsystems = self.subsystems.read().unwrap_or_else(|e| e.into_inner());
        subsystems.get(nqn).cloned()
    }

    /// Every subsystem, by NQN.
    pub fn subsystems(&self) -> Vec<Arc<Subsystem>> {
        let subsystems = self.subsystems.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = subsystems.values().cloned().collect();
        all.sort_by(|a, b| a.nqn.cmp(&b.nqn));
        all
    }

    /// Brings the subsystems in line with `wanted`. Controllers of a
    /// removed subsystem, or of a host its ACL no longer allows, are torn
    /// down; a namespace added, removed or replaced raises the Namespace
    /// Attribute Changed event on every controller of its subsystem;
    /// discovery controllers get a Discovery Log Page Change event.
    pub fn apply(&self, wanted: &[config::NvmeSubsystem], exports: &Exports, roles: &Roles) {
        let mut subsystems = self.subsystems.write().unwrap_or_else(|e| e.into_inner());
        let mut changed_listing = false;
        let removed: Vec<String> = subsystems
            .keys()
            .filter(|nqn| !wanted.iter().any(|w| &w.nqn == *nqn))
            .cloned()
            .collect();
        for nqn in removed {
            subsystems.remove(&nqn);
            changed_listing = true;
            tracing::info!(subsystem = %nqn, "NVMe subsystem removed; tearing its controllers down");
            for e in self.controllers_where(|e| e.subsystem.as_ref().is_some_and(|s| s.nqn == nqn))
            {
                self.remove_controller(e.ctrl.lock().map(|c| c.cntlid()).unwrap_or(0));
            }
        }
        for cfg in wanted {
            let Some(sub) = subsystems.get(&cfg.nqn).cloned() else {
                subsystems.insert(
                    cfg.nqn.clone(),
                    Arc::new(Subsystem::new(cfg.clone(), exports, roles)),
                );
                changed_listing = true;
                continue;
            };
            let slots_current =
                sub.namespaces()
                    .iter()
                    .map(|n| (n.nsid, n.volume))
                    .eq(build_namespaces(cfg, exports, roles)
                        .iter()
                        .map(|n| (n.nsid, n.volume)));
            if *sub.config() == *cfg && slots_current {
                continue;
            }
            if sub.config().hosts != cfg.hosts {
                changed_listing = true;
            }
            let old = sub.namespaces();
            let new = build_namespaces(cfg, exports, roles);
            sub.config.store(Arc::new(cfg.clone()));
            sub.namespaces.store(Arc::new(new.clone()));
            let controllers = self
                .controllers_where(|e| e.subsystem.as_ref().is_some_and(|s| Arc::ptr_eq(s, &sub)));
            for e in controllers {
                if !host_allowed(&cfg.hosts, &e.hostnqn) {
                    tracing::info!(host = %e.hostnqn, subsystem = %cfg.nqn,
                        "host no longer allowed; tearing its controller down");
                    self.remove_controller(e.ctrl.lock().map(|c| c.cntlid()).unwrap_or(0));
                    continue;
                }
                let mut ctrl = e.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                for o in old.iter() {
                    if !new.iter().any(|n| n.nsid == o.nsid) {
                        let ev = ctrl.remove_namespace(o.nsid);
                        e.post_event(ev);
                    }
                }
                for n in &new {
                    let same = old.iter().any(|o| o.nsid == n.nsid && o.volume == n.volume);
                    if !same {
                        let ev = ctrl.set_namespace(n.info.clone());
                        e.post_event(ev);
                    }
                }
                e.refresh_io_view(&ctrl);
            }
        }
        drop(subsystems);
        if changed_listing {
            for e in self.controllers_where(|e| e.subsystem.is_none()) {
                let local = e.local_address.lock().ok().and_then(|a| *a);
                let entries = self.discovery_entries(&e.hostnqn, local);
                let ev = e
                    .ctrl
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_discovery_entries(entries);
                e.post_event(ev);
            }
        }
    }

    fn controllers_where(
        &self,
        pred: impl Fn(&ControllerEntry) -> bool,
    ) -> Vec<Arc<ControllerEntry>> {
        self.controllers
            .lock()
            .map(|m| m.values().filter(|e| pred(e)).cloned().collect())
            .unwrap_or_default()
    }

    /// Every live controller, by CNTLID.
    pub fn list_controllers(&self) -> Vec<ControllerRow> {
        let controllers = self
            .controllers
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(id, e)| (*id, Arc::clone(e)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut rows: Vec<ControllerRow> = controllers
            .into_iter()
            .map(|(cntlid, e)| ControllerRow {
                cntlid,
                subsystem: e
                    .subsystem
                    .as_ref()
                    .map_or_else(|| DISCOVERY_NQN.to_owned(), |s| s.nqn.clone()),
                host: if e.hostnqn.is_empty() {
                    "(empty HOSTNQN)".to_owned()
                } else {
                    e.hostnqn.clone()
                },
                address: e
                    .host_address
                    .lock()
                    .ok()
                    .and_then(|a| a.map(|a| a.to_string()))
                    .unwrap_or_default(),
                queues: e.queues.load(Ordering::Relaxed),
                in_flight: e.in_flight.load(Ordering::Relaxed),
                reads: e.stats.reads.load(Ordering::Relaxed),
                writes: e.stats.writes.load(Ordering::Relaxed),
            })
            .collect();
        rows.sort_by_key(|r| r.cntlid);
        rows
    }

    /// A fresh controller ID from this gateway's range (1..=0xFFEF alone),
    /// never reused while live.
    fn allocate_cntlid(&self) -> u16 {
        let live = self.controllers.lock().map(|m| m.len()).unwrap_or(0);
        let first = *self.cntlids.start();
        let span = self.cntlids.end().saturating_sub(first).saturating_add(1);
        for _ in 0..=live + 1 {
            let n = self.next_cntlid.fetch_add(1, Ordering::Relaxed);
            let id = first + n % span;
            if self
                .controllers
                .lock()
                .map(|m| !m.contains_key(&id))
                .unwrap_or(true)
            {
                return id;
            }
        }
        first
    }

    /// Creates a controller for an admin-queue Connect to `subnqn` (the
    /// discovery NQN or a subsystem); None if no such subsystem.
    /// `local`: the address the host reached us on (advertised for
    /// wildcard listeners).
    pub fn create_controller(
        &self,
        subnqn: &str,
        hostnqn: &str,
        local: Option<std::net::SocketAddr>,
    ) -> Option<Arc<ControllerEntry>> {
        let cntlid = self.allocate_cntlid();
        // Held until the controller is registered: a failover publishing
        // new ANA states (`set_ana_groups`) either precedes this copy or
        // finds the controller in the table.
        let ana = self.ana.lock().unwrap_or_else(|e| e.into_inner());
        let (cfg, subsystem, entries) = if subnqn == DISCOVERY_NQN {
            let cfg = ControllerConfig {
                cntlid,
                subnqn: subnqn.to_owned(),
                serial: "zctarget-discovery".to_owned(),
                is_discovery: true,
                ..ControllerConfig::default()
            };
            (cfg, None, Some(self.discovery_entries(hostnqn, local)))
        } else {
            let s = self.subsystem(subnqn)?;
            let hosts = &s.config().hosts;
            let allowed_hosts = if hosts.is_empty() || hosts.iter().any(|h| h == ANY) {
                Vec::new()
            } else {
                hosts.clone()
            };
            let cfg = ControllerConfig {
                cntlid,
                subnqn: subnqn.to_owned(),
                serial: s.serial.clone(),
                namespaces: s.namespaces().iter().map(|n| n.info.clone()).collect(),
                // Namespaces come and go at run time: NN is the highest
                // NSID we ever export (hosts list the active ones).
                max_nsid: config::VolumeMap::MAX_NSID,
                max_queue_entries: QUEUE_ENTRIES,
                mdts: MDTS,
                in_capsule_data_size: IN_CAPSULE_DATA,
                allowed_hosts,
                ana: ana.clone(),
                ..ControllerConfig::default()
            };
            (cfg, Some(s), None)
        };
        let mut ctrl = Controller::new(cfg);
        if let Some(e) = entries {
            let _ = ctrl.set_discovery_entries(e);
        }
        let (kill, _) = watch::channel(false);
        let entry = Arc::new(ControllerEntry {
            io_view: ArcSwap::from_pointee(ctrl.io_view()),
            ctrl: Mutex::new(ctrl),
            subsystem,
            kill,
            stats: IoStats::default(),
            hostnqn: hostnqn.to_owned(),
            host_address: Mutex::new(None),
            local_address: Mutex::new(local),
            queues: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            events: Mutex::new(Vec::new()),
            events_ready: Notify::new(),
        });
        if let Ok(mut m) = self.controllers.lock() {
            m.insert(cntlid, Arc::clone(&entry));
        }
        drop(ana);
        Some(entry)
    }

    /// The live controller `cntlid`.
    pub fn controller(&self, cntlid: u16) -> Option<Arc<ControllerEntry>> {
        self.controllers.lock().ok()?.get(&cntlid).cloned()
    }

    /// Tears controller `cntlid` down: forgotten, and every queue told to
    /// close.
    pub fn remove_controller(&self, cntlid: u16) {
        let entry = self
            .controllers
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&cntlid));
        if let Some(e) = entry {
            let _ = e.kill.send(true);
        }
    }

    /// Live controllers.
    pub fn controller_count(&self) -> usize {
        self.controllers.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Discovery log entries `hostnqn` may see: every subsystem that allows
    /// it, on every listener.
    fn discovery_entries(
        &self,
        hostnqn: &str,
        local: Option<std::net::SocketAddr>,
    ) -> Vec<DiscoveryEntry> {
        let mut out = Vec::new();
        for s in self.subsystems() {
            if !s.allows(hostnqn) {
                continue;
            }
            let nqn = &s.nqn;
            for (portid, addr) in self.portals.iter().enumerate() {
                let addr = crate::listener::advertised(*addr, local);
                out.push(DiscoveryEntry::tcp(
                    u16::try_from(portid).unwrap_or(u16::MAX),
                    &addr.ip().to_string(),
                    &addr.port().to_string(),
                    nqn,
                    SUBTYPE_NVM,
                ));
            }
        }
        out
    }
}

/// Serves one NVMe/TCP connection (one queue).
pub async fn serve_connection(
    reactor: Rc<Reactor>,
    stream: TcpStream,
    placement: Rc<crate::placement::Placement>,
) -> anyhow::Result<()> {
    queue::serve(reactor, stream, placement).await
}
