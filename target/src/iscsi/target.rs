//! Run-time state of an exported iSCSI target: its LUNs and their SCSI
//! state (mode pages, reservations, unit attentions), shared by every
//! session on every reactor.

use std::sync::{Arc, Mutex};

use zctarget_protocol::scsi_lite::{LogicalUnit, LunInfo};

use crate::exports::IscsiTargetExport;

/// One LUN of a target.
pub struct IscsiLun {
    /// LUN number.
    pub lun: u16,
    /// Index of its volume in `Exports::volumes` (and reactor handles).
    pub volume: usize,
    /// The SCSI state machine. Locked for planning a command (a short,
    /// non-blocking critical section); never held across I/O.
    pub unit: Mutex<LogicalUnit>,
    /// Serialises COMPARE AND WRITE against other writers of this LUN
    /// (atomicity, SBC-3 §5.2).
    pub caw: tokio::sync::Mutex<()>,
}

impl IscsiLun {
    /// LUN RESET from `nexus`.
    pub fn reset(&self, nexus: u64) {
        if let Ok(mut u) = self.unit.lock() {
            u.reset(nexus);
        }
    }
}

/// A target with its LUNs.
pub struct TargetRuntime {
    /// Its configuration and LUN map.
    pub export: IscsiTargetExport,
    /// LUN n at index n.
    pub luns: Vec<Arc<IscsiLun>>,
}

impl TargetRuntime {
    /// Builds the runtime for one configured target.
    pub fn new(export: IscsiTargetExport, volumes: &[Arc<zctarget_backends::Volume>]) -> Self {
        let luns = export
            .luns
            .iter()
            .enumerate()
            .filter_map(|(n, &vol)| {
                let volume = volumes.get(vol)?;
                let info = lun_info(&export.config.iqn, n as u16, volume);
                Some(Arc::new(IscsiLun {
                    lun: n as u16,
                    volume: vol,
                    unit: Mutex::new(LogicalUnit::new(info)),
                    caw: tokio::sync::Mutex::new(()),
                }))
            })
            .collect();
        Self { export, luns }
    }

    /// The LUN addressed by an iSCSI LUN field (SAM-5 single level:
    /// peripheral `00 nn` or flat `40|hi lo`).
    pub fn lun(&self, lun_field: u64) -> Option<&Arc<IscsiLun>> {
        let top = (lun_field >> 48) as u16;
        let number = match top >> 14 {
            0 | 1 => top & 0x3fff,
            _ => return None,
        };
        if lun_field & 0x0000_ffff_ffff_ffff != 0 {
            return None;
        }
        self.luns.get(number as usize)
    }

    /// A new I_T nexus (login): it starts with a power-on/reset unit
    /// attention on every LUN.
    pub fn nexus_added(&self, nexus: u64) {
        for l in &self.luns {
            if let Ok(mut u) = l.unit.lock() {
                u.nexus_added(nexus);
            }
        }
    }

    /// An I_T nexus went away (logout, connection loss).
    pub fn nexus_lost(&self, nexus: u64) {
        for l in &self.luns {
            if let Ok(mut u) = l.unit.lock() {
                u.nexus_lost(nexus);
            }
        }
    }

    /// TARGET WARM RESET from `nexus`.
    pub fn reset_all(&self, nexus: u64) {
        for l in &self.luns {
            l.reset(nexus);
        }
    }

    /// LUN numbers, for REPORT LUNS.
    pub fn lun_numbers(&self) -> Vec<u16> {
        self.luns.iter().map(|l| l.lun).collect()
    }
}

/// SCSI identity of a LUN. The NAA designator and serial are derived from
/// the target and volume names, so they are stable across restarts.
fn lun_info(iqn: &str, lun: u16, volume: &zctarget_backends::Volume) -> LunInfo {
    let info = volume.info();
    let id = stable_id(iqn, volume.name());
    let mut naa = [0u8; 16];
    // NAA 6 (IEEE registered extended): 6 + 24-bit OUI-ish company id +
    // vendor-specific bits from the hash.
    naa[0] = 0x60 | ((id[0] >> 4) & 0x0f);
    naa[1..16].copy_from_slice(&id[1..16]);
    let serial: String = id[..8].iter().map(|b| format!("{b:02x}")).collect();
    let bs = info.block_size;
    LunInfo::new(
        info.blocks(),
        bs,
        info.read_only,
        info.discard,
        lun,
        serial,
        naa,
        iqn.to_string(),
    )
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
