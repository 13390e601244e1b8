//! What a controller is configured with: its namespaces, health counters
//! and the limits and identity it reports.

use super::VERSION_1_3;
use crate::nvme::ana::AnaGroups;

/// One namespace as the controller presents it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceInfo {
    /// Namespace ID (1-based).
    pub nsid: u32,
    /// Size in logical blocks (NSZE).
    pub blocks: u64,
    /// Logical block size in bytes; a power of two, at least 512.
    pub block_size: u32,
    /// Write protected.
    pub read_only: bool,
    /// NGUID (zero: not reported).
    pub nguid: [u8; 16],
    /// UUID (zero: not reported).
    pub uuid: [u8; 16],
    /// EUI-64 (zero: not reported).
    pub eui64: [u8; 8],
    /// The backend can deallocate (DSM deallocate, Write Zeroes DEAC).
    pub discard: bool,
    /// ANA group (ANAGRPID; 0: none, the controller reports no ANA).
    pub anagrpid: u32,
}

impl NamespaceInfo {
    /// A writable namespace without identifiers or discard.
    pub fn new(nsid: u32, blocks: u64, block_size: u32) -> Self {
        NamespaceInfo {
            nsid,
            blocks,
            block_size,
            ..NamespaceInfo::default()
        }
    }

    /// LBA Data Size: log2 of the block size.
    pub fn lbads(&self) -> u8 {
        self.block_size.trailing_zeros() as u8
    }
}

/// Counters reported in the SMART / Health Information log page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthCounters {
    /// Critical Warning bits.
    pub critical_warning: u8,
    /// Composite temperature in kelvin (0: not reported).
    pub temperature_kelvin: u16,
    /// Bytes read by hosts.
    pub bytes_read: u64,
    /// Bytes written by hosts.
    pub bytes_written: u64,
    /// Read commands completed.
    pub read_commands: u64,
    /// Write commands completed.
    pub write_commands: u64,
    /// Power cycles.
    pub power_cycles: u64,
    /// Power-on hours.
    pub power_on_hours: u64,
    /// Unsafe shutdowns.
    pub unsafe_shutdowns: u64,
    /// Media and data integrity errors.
    pub media_errors: u64,
}

/// Static controller parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Controller ID (CNTLID).
    pub cntlid: u16,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Serial number (SN, 20 ASCII characters).
    pub serial: String,
    /// Model number (MN, 40 ASCII characters).
    pub model: String,
    /// Firmware revision (FR, 8 ASCII characters).
    pub firmware_rev: String,
    /// PCI Vendor ID (VID).
    pub vid: u16,
    /// PCI Subsystem Vendor ID (SSVID).
    pub ssvid: u16,
    /// IEEE OUI, least significant byte first.
    pub ieee_oui: [u8; 3],
    /// Namespaces.
    pub namespaces: Vec<NamespaceInfo>,
    /// Highest NSID the controller may ever report (NN).
    pub max_nsid: u32,
    /// I/O queues the controller allocates (Number of Queues, 1-based).
    pub max_io_queues: u16,
    /// Maximum queue entries (CAP.MQES + 1), also MAXCMD.
    pub max_queue_entries: u16,
    /// MDTS: maximum transfer is 4 KiB × 2^mdts; 0 means no limit.
    pub mdts: u8,
    /// Keep-alive timeout in milliseconds used when a discovery host asks
    /// for none.
    pub kato_ms: u32,
    /// In-capsule data bytes accepted on I/O queues (IOCCSZ = (64 +
    /// this) / 16).
    pub in_capsule_data_size: u32,
    /// A discovery controller.
    pub is_discovery: bool,
    /// Host NQNs allowed to connect; empty: any host.
    pub allowed_hosts: Vec<String>,
    /// A volatile write cache is present (Flush is meaningful).
    pub volatile_write_cache: bool,
    /// VS property value.
    pub version: u32,
    /// Asymmetric Namespace Access groups (multipath), `None`: no ANA
    /// reporting. Namespaces name their group in `anagrpid`.
    pub ana: Option<AnaGroups>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            cntlid: 1,
            subnqn: String::new(),
            serial: String::new(),
            model: "zctarget".to_owned(),
            firmware_rev: env!("CARGO_PKG_VERSION").to_owned(),
            vid: 0,
            ssvid: 0,
            ieee_oui: [0; 3],
            namespaces: Vec::new(),
            max_nsid: 1024,
            max_io_queues: 8,
            max_queue_entries: 128,
            mdts: 5,
            kato_ms: 120_000,
            in_capsule_data_size: 8192,
            is_discovery: false,
            allowed_hosts: Vec::new(),
            volatile_write_cache: true,
            version: VERSION_1_3,
            ana: None,
        }
    }
}

impl ControllerConfig {
    /// IOCCSZ in 16-byte units.
    pub fn ioccsz(&self) -> u32 {
        self.in_capsule_data_size.saturating_add(64) / 16
    }

    /// Maximum data transfer in bytes, `None` if unlimited (MDTS 0).
    pub fn max_transfer(&self) -> Option<u64> {
        if self.mdts == 0 {
            None
        } else {
            Some(
                4096u64
                    .checked_shl(u32::from(self.mdts))
                    .unwrap_or(u64::MAX),
            )
        }
    }
}
