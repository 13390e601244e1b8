//! Run-time state of an exported iSCSI target: its LUNs and their SCSI
//! state (mode pages, reservations, unit attentions), shared by every
//! session on every reactor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use zctarget_config as config;
use zctarget_protocol::scsi::xcopy::CopyTarget;
use zctarget_protocol::scsi::{IoPlanner, IoState, LogicalUnit, LunInfo, ResetKind};

use crate::cluster::Roles;
use crate::exports::Exports;

/// One LUN of a target.
pub struct IscsiLun {
    /// LUN number.
    pub lun: u16,
    /// Slot of its volume in `Exports` (and in reactors' handle caches).
    pub volume: usize,
    /// Logical block size in bytes.
    pub block_size: u64,
    /// Unique among every LUN this process ever made (a connection's
    /// cache of confirmed [`IoState`]s is keyed by it).
    pub id: u64,
    /// The SCSI state machine, reached through [`lock`](Self::lock) (a
    /// short, non-blocking critical section; never held across I/O).
    unit: Mutex<LogicalUnit>,
    /// `unit.io_state()` as of the last time the lock was let go.
    state: AtomicU64,
    /// Plans plain READs and WRITEs without the lock (see
    /// `zctarget_protocol::scsi::fast`).
    pub planner: IoPlanner,
}

/// The locked SCSI state of a LUN. Letting go of it publishes the unit's
/// [`IoState`] for the lock-free planner, so no change — a unit attention
/// raised, a reservation taken, a mode page changed — can bypass it.
pub struct UnitGuard<'a> {
    guard: MutexGuard<'a, LogicalUnit>,
    state: &'a AtomicU64,
}

impl std::ops::Deref for UnitGuard<'_> {
    type Target = LogicalUnit;
    fn deref(&self) -> &LogicalUnit {
        &self.guard
    }
}

impl std::ops::DerefMut for UnitGuard<'_> {
    fn deref_mut(&mut self) -> &mut LogicalUnit {
        &mut self.guard
    }
}

impl Drop for UnitGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: publications are ordered like the changes.
        self.state.store(self.guard.io_state().0, Ordering::Release);
    }
}

static NEXT_LUN_ID: AtomicU64 = AtomicU64::new(1);

impl IscsiLun {
    /// A LUN over `unit`.
    pub fn new(lun: u16, volume: usize, block_size: u64, unit: LogicalUnit) -> Self {
        Self {
            lun,
            volume,
            block_size,
            id: NEXT_LUN_ID.fetch_add(1, Ordering::Relaxed),
            state: AtomicU64::new(unit.io_state().0),
            planner: unit.io_planner(),
            unit: Mutex::new(unit),
        }
    }

    /// Locks the SCSI state (a poisoned lock is taken over: the unit's
    /// state is plain data, valid after any panic of a holder).
    pub fn lock(&self) -> UnitGuard<'_> {
        UnitGuard {
            guard: self.unit.lock().unwrap_or_else(|e| e.into_inner()),
            state: &self.state,
        }
    }

    /// The [`IoState`] published when the lock was last let go.
    pub fn io_state(&self) -> IoState {
        IoState(self.state.load(Ordering::Acquire))
    }

    /// A reset of `kind` issued by `nexus`. After a LOGICAL UNIT RESET
    /// every I_T nexus, the issuer's included, sees the BUS DEVICE RESET
    /// unit attention (as Linux's LIO does and libiscsi's multipath test
    /// expects); a target reset spares the issuer.
    pub fn reset(&self, kind: ResetKind, nexus: u64) {
        let issuer = (kind != ResetKind::LogicalUnit).then_some(nexus);
        self.lock().reset(kind, issuer);
    }
}

/// A target with its LUNs. The configuration and the LUN table are
/// swapped whole when an administrator changes them; a command loads the
/// LUN table without taking a lock.
pub struct TargetRuntime {
    /// Target name.
    pub iqn: String,
    config: ArcSwap<config::IscsiTarget>,
    /// Sorted by LUN number.
    luns: ArcSwap<Vec<Arc<IscsiLun>>>,
    /// Live I_T nexuses → initiator port (so a LUN added later knows them).
    nexuses: Mutex<HashMap<u64, String>>,
}

impl TargetRuntime {
    /// Builds the runtime for one configured target.
    pub fn new(cfg: config::IscsiTarget, exports: &Exports, roles: &Roles) -> Self {
        let t = Self {
            iqn: cfg.iqn.clone(),
            config: ArcSwap::from_pointee(cfg.clone()),
            luns: ArcSwap::from_pointee(Vec::new()),
            nexuses: Mutex::new(HashMap::new()),
        };
        t.update(cfg, exports, roles);
        t
    }

    /// The target's current configuration (ACL, CHAP, alias, LUN map).
    pub fn config(&self) -> Arc<config::IscsiTarget> {
        self.config.load_full()
    }

    /// Applies a changed configuration: LUNs whose number and volume stay
    /// keep their SCSI state; new LUNs start with a reset unit attention
    /// for every nexus; every nexus sees REPORTED LUNS DATA HAS CHANGED
    /// when the LUN list changed.
    /// Whether every mapped LUN still points at the slot its volume name
    /// resolves to (a volume redefined under the same name gets a new slot).
    pub fn slots_current(&self, exports: &Exports) -> bool {
        let luns = self.luns.load();
        let cfg = self.config();
        let current = cfg.luns.iter().all(|(n, name)| {
            let slot = exports.slot_of(name);
            let mapped = luns
                .iter()
                .find(|l| u32::from(l.lun) == n)
                .map(|l| l.volume);
            slot == mapped
        });
        current
    }

    pub fn update(&self, cfg: config::IscsiTarget, exports: &Exports, roles: &Roles) {
        let nexuses = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.luns.load_full();
        // (LUN number, volume slot) of every mapping whose volume is open.
        let wanted: Vec<(u16, usize)> = cfg
            .luns
            .iter()
            .filter_map(|(n, name)| Some((u16::try_from(n).ok()?, exports.slot_of(name)?)))
            .collect();
        // The LUN list a new unit starts with, so that it reports only the
        // reset, not also a change of a list it never reported.
        let mut numbers: Vec<u16> = wanted.iter().map(|&(n, _)| n).collect();
        numbers.sort_unstable();
        let mut luns: Vec<Arc<IscsiLun>> = Vec::new();
        for &(number, slot) in &wanted {
            if let Some(kept) = old.iter().find(|l| l.lun == number && l.volume == slot) {
                luns.push(Arc::clone(kept));
                continue;
            }
            let Some(volume) = exports.get(slot) else {
                continue;
            };
            let mut unit = LogicalUnit::new(lun_info(&cfg.iqn, number, &volume, roles));
            unit.set_lun_list(&numbers);
            for (nexus, port) in nexuses.iter() {
                unit.nexus_added(*nexus, port);
            }
            luns.push(Arc::new(IscsiLun::new(
                number,
                slot,
                u64::from(volume.info().block_size),
                unit,
            )));
        }
        luns.sort_by_key(|l| l.lun);
        // EXTENDED COPY may copy between any two LUNs of the target.
        let copy_targets: Vec<CopyTarget> = luns
            .iter()
            .map(|l| {
                let u = l.lock();
                let i = u.info();
                CopyTarget {
                    naa: i.naa_designator,
                    lun: i.lun,
                    blocks: i.blocks,
                    block_size: i.block_size,
                }
            })
            .collect();
        for l in &luns {
            let mut u = l.lock();
            u.set_lun_list(&numbers);
            u.set_copy_targets(copy_targets.clone());
        }
        self.luns.store(Arc::new(luns));
        self.config.store(Arc::new(cfg));
    }

    /// The LUN addressed by an iSCSI LUN field (SAM-5 single level:
    /// peripheral `00 nn` or flat `40|hi lo`).
    pub fn lun(&self, lun_field: u64) -> Option<Arc<IscsiLun>> {
        let top = (lun_field >> 48) as u16;
        let number = match top >> 14 {
            0 | 1 => top & 0x3fff,
            _ => return None,
        };
        if lun_field & 0x0000_ffff_ffff_ffff != 0 {
            return None;
        }
        let luns = self.luns.load();
        luns.binary_search_by_key(&number, |l| l.lun)
            .ok()
            .map(|i| Arc::clone(&luns[i]))
    }

    /// Every LUN, in number order.
    pub fn luns(&self) -> Arc<Vec<Arc<IscsiLun>>> {
        self.luns.load_full()
    }

    /// A new I_T nexus (login): it starts with a power-on/reset unit
    /// attention on every LUN.
    pub fn nexus_added(&self, nexus: u64, initiator_port: &str) {
        let mut nexuses = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        nexuses.insert(nexus, initiator_port.to_owned());
        for l in self.luns.load().iter() {
            l.lock().nexus_added(nexus, initiator_port);
        }
    }

    /// An I_T nexus went away (logout, connection loss).
    pub fn nexus_lost(&self, nexus: u64) {
        let mut nexuses = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        nexuses.remove(&nexus);
        for l in self.luns.load().iter() {
            l.lock().nexus_lost(nexus);
        }
    }

    /// TARGET WARM / COLD RESET (`kind`) from `nexus`.
    pub fn reset_all(&self, kind: ResetKind, nexus: u64) {
        for l in self.luns.load().iter() {
            l.reset(kind, nexus);
        }
    }

    /// The volume slot of LUN `lun`, for EXTENDED COPY.
    pub fn volume_of(&self, lun: u16) -> Option<usize> {
        self.luns
            .load()
            .iter()
            .find(|l| l.lun == lun)
            .map(|l| l.volume)
    }

    /// LUN numbers, for REPORT LUNS.
    pub fn lun_numbers(&self) -> Vec<u16> {
        self.luns.load().iter().map(|l| l.lun).collect()
    }
}

/// SCSI identity of a LUN. The NAA designator and serial are derived from
/// the target name and the volume's identity (its name unless configured),
/// so they are stable across restarts and equal on every gateway exporting
/// it; the relative target port and target port group are this gateway's,
/// with the ALUA states of every gateway's group in a cluster.
fn lun_info(iqn: &str, lun: u16, volume: &zctarget_backends::Volume, roles: &Roles) -> LunInfo {
    let info = volume.info();
    let id = stable_id(iqn, roles.identity(volume.name()));
    let mut naa = [0u8; 16];
    // NAA 6 (IEEE registered extended): 6 + 24-bit OUI-ish company id +
    // vendor-specific bits from the hash.
    naa[0] = 0x60 | ((id[0] >> 4) & 0x0f);
    naa[1..16].copy_from_slice(&id[1..16]);
    let serial: String = id[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut lun_info = LunInfo::new(lun, info.blocks(), info.block_size);
    lun_info.read_only = info.read_only;
    lun_info.thin_provisioning = info.discard;
    lun_info.unit_serial = serial;
    lun_info.naa_designator = naa;
    lun_info.target_name = iqn.to_string();
    let (port, group, groups) = roles.scsi_ports(volume.name());
    lun_info.relative_port = port;
    lun_info.target_port_group = group;
    lun_info.target_port_groups = groups;
    lun_info.explicit_alua = roles.explicit_alua(volume.name());
    lun_info
}

/// 16 bytes derived from `a` and `b` (two CRC32C passes with different
/// seeds per 4-byte word — stable and well spread; not cryptographic).
fn stable_id(a: &str, b: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(4).enumerate() {
        let mut crc = crc32c::crc32c(&[i as u8; 4]);
        crc = crc32c::crc32c_append(crc, a.as_bytes());
        crc = crc32c::crc32c_append(crc, &[0]);
        crc = crc32c::crc32c_append(crc, b.as_bytes());
        chunk.copy_from_slice(&crc.to_be_bytes());
    }
    out
}
