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
//!   commands from plan (protocol crate) to completion with the zero-copy
//!   data path.
//! - [`reader`]: reading PDUs, write data straight into leased buffers.

pub mod queue;
pub mod reader;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::watch;
use zctarget_config::names::DISCOVERY_NQN;
use zctarget_config::ANY;
use zctarget_protocol::nvme::discovery::DiscoveryEntry;
use zctarget_protocol::nvme::{Controller, ControllerConfig, NamespaceInfo};

use crate::exports::{Exports, NvmeSubsystemExport};
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

/// One exported NVM subsystem.
pub struct Subsystem {
    /// Its configuration and namespace map.
    pub export: NvmeSubsystemExport,
    /// Namespace n at index n - 1.
    pub namespaces: Vec<NamespaceInfo>,
    /// Serial number reported by its controllers (stable: derived from
    /// the NQN).
    pub serial: String,
}

impl Subsystem {
    /// Whether `hostnqn` may connect.
    pub fn allows(&self, hostnqn: &str) -> bool {
        let hosts = &self.export.config.hosts;
        hosts.is_empty() || hosts.iter().any(|h| h == ANY || h == hostnqn)
    }

    /// Volume index of namespace `nsid`.
    pub fn volume(&self, nsid: u32) -> Option<usize> {
        let i = usize::try_from(nsid.checked_sub(1)?).ok()?;
        self.export.namespaces.get(i).copied()
    }
}

/// A live controller: its state machine, the subsystem it belongs to
/// (None: the discovery controller), and the switch that ends every queue
/// connected to it.
pub struct ControllerEntry {
    /// The state machine.
    pub ctrl: Mutex<Controller>,
    /// Its subsystem; None for a discovery controller.
    pub subsystem: Option<Arc<Subsystem>>,
    /// Set to true to tear the controller down (keep-alive timeout, admin
    /// queue gone): every queue connection closes.
    pub kill: watch::Sender<bool>,
    /// I/O counters for the SMART / Health log, updated by the I/O queues
    /// (relaxed atomics: one add per completed command).
    pub stats: IoStats,
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
    subsystems: HashMap<String, Arc<Subsystem>>,
    controllers: Mutex<HashMap<u16, Arc<ControllerEntry>>>,
    next_cntlid: AtomicU16,
    portals: Vec<std::net::SocketAddr>,
}

impl NvmfRegistry {
    /// Builds the subsystems from the exports; `portals` are the NVMe/TCP
    /// listeners discovery reports.
    pub fn new(exports: &Exports, portals: Vec<std::net::SocketAddr>) -> Self {
        let subsystems = exports
            .nvme_subsystems()
            .iter()
            .map(|s| {
                let namespaces = s
                    .namespaces
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &vol)| {
                        let v = exports.volumes().get(vol)?;
                        Some(namespace_info(&s.config.nqn, i as u32 + 1, v))
                    })
                    .collect();
                let serial = stable_id(&s.config.nqn, "serial")[..10]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (
                    s.config.nqn.clone(),
                    Arc::new(Subsystem {
                        export: s.clone(),
                        namespaces,
                        serial,
                    }),
                )
            })
            .collect();
        Self {
            subsystems,
            controllers: Mutex::new(HashMap::new()),
            next_cntlid: AtomicU16::new(1),
            portals,
        }
    }

    /// A subsystem by NQN.
    pub fn subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        self.subsystems.get(nqn).cloned()
    }

    /// A fresh controller ID (1..=0xFFEF, never reused while live).
    fn allocate_cntlid(&self) -> u16 {
        let live = self.controllers.lock().map(|m| m.len()).unwrap_or(0);
        for _ in 0..=live + 1 {
            let id = self.next_cntlid.fetch_add(1, Ordering::Relaxed) % 0xFFEF + 1;
            if self
                .controllers
                .lock()
                .map(|m| !m.contains_key(&id))
                .unwrap_or(true)
            {
                return id;
            }
        }
        1
    }

    /// Creates a controller for an admin-queue Connect to `subnqn` (the
    /// discovery NQN or a subsystem); None if no such subsystem.
    pub fn create_controller(&self, subnqn: &str, hostnqn: &str) -> Option<Arc<ControllerEntry>> {
        let cntlid = self.allocate_cntlid();
        let (cfg, subsystem, entries) = if subnqn == DISCOVERY_NQN {
            let cfg = ControllerConfig {
                cntlid,
                subnqn: subnqn.to_owned(),
                serial: "zctarget-discovery".to_owned(),
                is_discovery: true,
                ..ControllerConfig::default()
            };
            (cfg, None, Some(self.discovery_entries(hostnqn)))
        } else {
            let s = self.subsystem(subnqn)?;
            let hosts = &s.export.config.hosts;
            let allowed_hosts = if hosts.is_empty() || hosts.iter().any(|h| h == ANY) {
                Vec::new()
            } else {
                hosts.clone()
            };
            let cfg = ControllerConfig {
                cntlid,
                subnqn: subnqn.to_owned(),
                serial: s.serial.clone(),
                namespaces: s.namespaces.clone(),
                max_nsid: u32::try_from(s.namespaces.len()).unwrap_or(u32::MAX).max(1),
                max_queue_entries: QUEUE_ENTRIES,
                mdts: MDTS,
                in_capsule_data_size: IN_CAPSULE_DATA,
                allowed_hosts,
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
            ctrl: Mutex::new(ctrl),
            subsystem,
            kill,
            stats: IoStats::default(),
        });
        if let Ok(mut m) = self.controllers.lock() {
            m.insert(cntlid, Arc::clone(&entry));
        }
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
    fn discovery_entries(&self, hostnqn: &str) -> Vec<DiscoveryEntry> {
        let mut names: Vec<&String> = self.subsystems.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for nqn in names {
            let s = &self.subsystems[nqn];
            if !s.allows(hostnqn) {
                continue;
            }
            for (portid, addr) in self.portals.iter().enumerate() {
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

/// The namespace a volume becomes: identifiers derived from the subsystem
/// NQN and the volume name, so they are stable across restarts.
fn namespace_info(nqn: &str, nsid: u32, volume: &zctarget_backends::Volume) -> NamespaceInfo {
    let info = volume.info();
    let id = stable_id(nqn, volume.name());
    let mut ns = NamespaceInfo::new(nsid, info.blocks(), info.block_size);
    ns.read_only = info.read_only;
    ns.discard = info.discard;
    ns.nguid = id;
    let mut uuid = id;
    // RFC 4122 version 4 / variant 1 bits, so hosts accept it as a UUID.
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    ns.uuid = uuid;
    ns.eui64.copy_from_slice(&id[8..16]);
    ns
}

/// 16 bytes derived from `a` and `b` (CRC32C per 4-byte word with
/// different seeds — stable and well spread; not cryptographic).
fn stable_id(a: &str, b: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(4).enumerate() {
        let mut crc = crc32c::crc32c(&[0x4e, i as u8, 0x56, 0x4d]);
        crc = crc32c::crc32c_append(crc, a.as_bytes());
        crc = crc32c::crc32c_append(crc, &[0]);
        crc = crc32c::crc32c_append(crc, b.as_bytes());
        chunk.copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// Serves one NVMe/TCP connection (one queue).
pub async fn serve_connection(reactor: Rc<Reactor>, stream: TcpStream) -> anyhow::Result<()> {
    queue::serve(reactor, stream).await
}
