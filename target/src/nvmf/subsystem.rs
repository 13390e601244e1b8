//! An exported NVM subsystem and its namespaces: what Identify reports for
//! each volume, with identifiers stable across restarts and gateways.

use std::sync::Arc;

use arc_swap::ArcSwap;
use zctarget_config as config;
use zctarget_config::ANY;
use zctarget_protocol::nvme::NamespaceInfo;

use crate::cluster::Roles;
use crate::exports::Exports;

/// One exported NVM subsystem. Its configuration and namespace table are
/// swapped whole by administration; an I/O command loads the table without
/// a lock.
pub struct Subsystem {
    /// Its NQN.
    pub nqn: String,
    pub(super) config: ArcSwap<config::NvmeSubsystem>,
    /// Sorted by NSID.
    pub(super) namespaces: ArcSwap<Vec<Namespace>>,
    /// Serial number reported by its controllers (stable: derived from
    /// the NQN, so equal on every gateway of a cluster).
    pub serial: String,
}

/// A namespace: its NSID, volume slot and identity.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// NSID.
    pub nsid: u32,
    /// Volume slot in `Exports`.
    pub volume: usize,
    /// What Identify reports.
    pub info: NamespaceInfo,
}

impl Subsystem {
    pub(super) fn new(cfg: config::NvmeSubsystem, exports: &Exports, roles: &Roles) -> Self {
        let serial = stable_id(&cfg.nqn, "serial")[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let namespaces = build_namespaces(&cfg, exports, roles);
        Self {
            nqn: cfg.nqn.clone(),
            config: ArcSwap::from_pointee(cfg),
            namespaces: ArcSwap::from_pointee(namespaces),
            serial,
        }
    }

    /// The current configuration (hosts, namespace map).
    pub fn config(&self) -> Arc<config::NvmeSubsystem> {
        self.config.load_full()
    }

    /// Whether `hostnqn` may connect.
    pub fn allows(&self, hostnqn: &str) -> bool {
        host_allowed(&self.config.load().hosts, hostnqn)
    }

    /// Volume slot of namespace `nsid`.
    pub fn volume(&self, nsid: u32) -> Option<usize> {
        let ns = self.namespaces.load();
        ns.binary_search_by_key(&nsid, |n| n.nsid)
            .ok()
            .map(|i| ns[i].volume)
    }

    /// Every namespace, in NSID order.
    pub fn namespaces(&self) -> Arc<Vec<Namespace>> {
        self.namespaces.load_full()
    }
}

pub(super) fn host_allowed(hosts: &[String], hostnqn: &str) -> bool {
    hosts.is_empty() || hosts.iter().any(|h| h == ANY || h == hostnqn)
}

pub(super) fn build_namespaces(
    cfg: &config::NvmeSubsystem,
    exports: &Exports,
    roles: &Roles,
) -> Vec<Namespace> {
    cfg.namespaces
        .iter()
        .filter_map(|(nsid, name)| {
            let slot = exports.slot_of(name)?;
            let volume = exports.get(slot)?;
            Some(Namespace {
                nsid,
                volume: slot,
                info: namespace_info(&cfg.nqn, nsid, &volume, roles),
            })
        })
        .collect()
}

/// The namespace a volume becomes: identifiers derived from the subsystem
/// NQN and the volume's identity (its name unless configured), so they are
/// stable across restarts and equal on every gateway exporting it; in a
/// cluster its ANA group is its owner gateway's.
fn namespace_info(
    nqn: &str,
    nsid: u32,
    volume: &zctarget_backends::Volume,
    roles: &Roles,
) -> NamespaceInfo {
    let info = volume.info();
    let id = stable_id(nqn, roles.identity(volume.name()));
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
    ns.anagrpid = roles.anagrpid(volume.name());
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
