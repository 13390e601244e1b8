//! Identify data structures (Base 2.0 §5.17.2; NVM Command Set 1.0 §4.1.5).
//!
//! Every structure is [`IDENTIFY_DATA_LEN`] (4096) bytes.

use super::bytes::{put, put_le128, put_le16, put_le32, put_le64, put_padded, put_u8};
use super::controller::{ControllerConfig, NamespaceInfo};
use super::IDENTIFY_DATA_LEN;

/// CNS values (Base 2.0 Figure 273).
pub mod cns {
    /// Identify Namespace (NVM command set).
    pub const NAMESPACE: u8 = 0x00;
    /// Identify Controller.
    pub const CONTROLLER: u8 = 0x01;
    /// Active Namespace ID list.
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    /// Namespace Identification Descriptor list.
    pub const NS_DESC_LIST: u8 = 0x03;
    /// I/O Command Set specific Identify Namespace.
    pub const CS_NAMESPACE: u8 = 0x05;
    /// I/O Command Set specific Identify Controller.
    pub const CS_CONTROLLER: u8 = 0x06;
    /// Active Namespace ID list for an I/O Command Set.
    pub const CS_ACTIVE_NS_LIST: u8 = 0x07;
    /// I/O Command Set Independent Identify Namespace.
    pub const CS_INDEPENDENT_NS: u8 = 0x08;
    /// Identify I/O Command Set data structure.
    pub const IO_COMMAND_SETS: u8 = 0x1C;
}

/// Command Set Identifier of the NVM command set.
pub const CSI_NVM: u8 = 0;

/// Namespace Identifier Types (Base 2.0 Figure 280).
pub mod nidt {
    /// IEEE Extended Unique Identifier, 8 bytes.
    pub const EUI64: u8 = 1;
    /// Namespace Globally Unique Identifier, 16 bytes.
    pub const NGUID: u8 = 2;
    /// Namespace UUID, 16 bytes.
    pub const UUID: u8 = 3;
    /// Command Set Identifier, 1 byte.
    pub const CSI: u8 = 4;
}

/// ONCS bits advertised by I/O controllers (Base 2.0 Figure 275, byte
/// 520): Compare (0), Dataset Management (2), Write Zeroes (3), Verify (7).
pub const ONCS: u16 = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 7);

/// SGLS (byte 536): bits 1:0 = 01b SGLs supported without alignment, bit
/// 20 SGL address may be an offset (in-capsule data), bit 21 Transport SGL
/// Data Block descriptor supported.
pub const SGLS_BASE: u32 = 1;
/// SGLS bit 20: address field as offset (needed for in-capsule data).
pub const SGLS_OFFSET: u32 = 1 << 20;
/// SGLS bit 21: Transport SGL Data Block descriptor supported.
pub const SGLS_TRANSPORT: u32 = 1 << 21;

/// OAES bit 8: Namespace Attribute Notices.
pub const OAES_NS_ATTR: u32 = 1 << 8;
/// OAES bit 31: Discovery Log Page Change Notices.
pub const OAES_DISCOVERY: u32 = 1 << 31;
/// OAES bit 11: Asymmetric Namespace Access Change Notices.
pub const OAES_ANA_CHANGE: u32 = 1 << 11;

/// Identify Controller data structure (Base 2.0 Figure 275; Fabrics 1.1
/// §4.1 for IOCCSZ..MSDBD). `nn` is the number of namespaces (highest valid
/// NSID), `ver` the VS property value.
pub fn controller(cfg: &ControllerConfig, nn: u32, ver: u32) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_DATA_LEN];
    let disc = cfg.is_discovery;
    put_le16(&mut b, 0, cfg.vid);
    put_le16(&mut b, 2, cfg.ssvid);
    put_padded(&mut b, 4, 20, &cfg.serial, b' ');
    put_padded(&mut b, 24, 40, &cfg.model, b' ');
    put_padded(&mut b, 64, 8, &cfg.firmware_rev, b' ');
    put_u8(&mut b, 72, 6); // RAB: 2^6 commands
    put(&mut b, 73, &cfg.ieee_oui);
    // CMIC: bit 0 multiple ports, bit 1 multiple controllers (every host gets
    // its own controller of the same subsystem), bit 3 ANA reporting.
    let ana_bit = if cfg.ana.is_some() { 1 << 3 } else { 0 };
    put_u8(&mut b, 76, if disc { 0 } else { 0b11 | ana_bit });
    put_u8(&mut b, 77, cfg.mdts);
    put_le16(&mut b, 78, cfg.cntlid);
    put_le32(&mut b, 80, ver);
    let oaes = match (disc, cfg.ana.is_some()) {
        (true, _) => OAES_DISCOVERY,
        (false, false) => OAES_NS_ATTR,
        (false, true) => OAES_NS_ATTR | OAES_ANA_CHANGE,
    };
    put_le32(&mut b, 92, oaes);
    put_le32(&mut b, 96, 1); // CTRATT bit 0: 128-bit Host Identifier
    put_u8(&mut b, 111, if disc { 2 } else { 1 }); // CNTRLTYPE
    put_le16(&mut b, 256, 0); // OACS: no optional admin commands
    put_u8(&mut b, 258, 3); // ACL: 4 concurrent Abort commands (0's based)
    put_u8(&mut b, 259, super::controller::AER_LIMIT - 1); // AERL, 0's based
    put_u8(&mut b, 260, 0b11); // FRMW: one slot, slot 1 read-only
                               // LPA: bit 0 per-namespace SMART, bit 1 Commands Supported and Effects,
                               // bit 2 extended data for Get Log Page (NUMDU, LPOL/LPOU).
    put_u8(&mut b, 261, if disc { 1 << 2 } else { 0b111 });
    put_u8(&mut b, 262, 0); // ELPE: one Error Information entry
    put_u8(&mut b, 263, 0); // NPSS: one power state
    put_le16(&mut b, 320, super::controller::KAS_100MS); // KAS
    if let Some(ana) = cfg.ana.as_ref().filter(|_| !disc) {
        put_u8(&mut b, 342, super::ana::ANATT_SECS); // ANATT
        put_u8(&mut b, 343, super::ana::ANACAP); // ANACAP
        put_le32(&mut b, 344, ana.count()); // ANAGRPMAX
        put_le32(&mut b, 348, ana.count()); // NANAGRPID
                                            // MNAN: hosts size the ANA log's NSID lists by it.
        put_le32(&mut b, 540, cfg.max_nsid);
    }
    put_u8(&mut b, 512, 0x66); // SQES: required and maximum 64 bytes
    put_u8(&mut b, 513, 0x44); // CQES: required and maximum 16 bytes
    put_le16(&mut b, 514, cfg.max_queue_entries);
    if !disc {
        put_le32(&mut b, 516, nn);
        put_le16(&mut b, 520, ONCS);
        // VWC: bit 0 present; bits 2:1 = 11b Flush with NSID FFFFFFFFh
        // supported.
        put_u8(
            &mut b,
            525,
            if cfg.volatile_write_cache { 0b111 } else { 0 },
        );
    }
    let mut sgls = SGLS_BASE | SGLS_TRANSPORT;
    if cfg.in_capsule_data_size > 0 {
        sgls |= SGLS_OFFSET;
    }
    put_le32(&mut b, 536, sgls);
    put_padded(&mut b, 768, 256, &cfg.subnqn, 0);
    put_le32(&mut b, 1792, cfg.ioccsz());
    put_le32(&mut b, 1796, 1); // IORCSZ: 16-byte response capsules
    put_le16(&mut b, 1800, 0); // ICDOFF
    put_u8(&mut b, 1802, 0); // FCATT: dynamic controller model
    put_u8(&mut b, 1803, 1); // MSDBD: one SGL descriptor
    put_le16(&mut b, 1804, 1); // OFCS bit 0: Disconnect supported
                               // Power state 0 (bytes 2048..2080): MP 25 W (0x9C4 in 0.01 W), ENLAT,
                               // EXLAT in microseconds.
    put_le16(&mut b, 2048, 0x09C4);
    put_le32(&mut b, 2048 + 4, 0x10);
    put_le32(&mut b, 2048 + 8, 0x4);
    b
}

/// Identify Namespace data structure for the NVM command set (NVM Command
/// Set 1.0 Figure 97): one LBA format with no metadata.
pub fn namespace(ns: &NamespaceInfo) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_DATA_LEN];
    put_le64(&mut b, 0, ns.blocks); // NSZE
    put_le64(&mut b, 8, ns.blocks); // NCAP
    put_le64(&mut b, 16, ns.blocks); // NUSE
    put_u8(&mut b, 25, 0); // NLBAF: one format (0's based)
    put_u8(&mut b, 26, 0); // FLBAS: format 0, no metadata
    put_u8(&mut b, 30, 1); // NMIC: may be attached to several controllers
                           // DLFEAT bit 3: Write Zeroes may deallocate.
    put_u8(&mut b, 33, if ns.discard { 1 << 3 } else { 0 });
    put_le128(
        &mut b,
        48,
        u128::from(ns.blocks) * u128::from(ns.block_size),
    ); // NVMCAP
    put_u8(&mut b, 99, u8::from(ns.read_only)); // NSATTR bit 0: write protected
    put_le32(&mut b, 92, ns.anagrpid); // ANAGRPID
    put(&mut b, 104, &ns.nguid);
    put(&mut b, 120, &ns.eui64);
    // LBAF0: MS = 0 (bytes 0-1), LBADS (byte 2), RP = 0 (byte 3).
    put_u8(&mut b, 130, ns.lbads());
    b
}

/// Active Namespace ID list (CNS 02h): NSIDs greater than `after`, ascending,
/// at most 1024.
pub fn active_ns_list(nsids: impl IntoIterator<Item = u32>, after: u32) -> Vec<u8> {
    let mut list: Vec<u32> = nsids.into_iter().filter(|&n| n > after).collect();
    list.sort_unstable();
    list.dedup();
    let mut b = vec![0u8; IDENTIFY_DATA_LEN];
    for (i, nsid) in list.into_iter().take(IDENTIFY_DATA_LEN / 4).enumerate() {
        put_le32(&mut b, i * 4, nsid);
    }
    b
}

/// Namespace Identification Descriptor list (CNS 03h, Base 2.0 §5.17.2.4):
/// EUI-64, NGUID and UUID when non-zero, and the CSI.
pub fn ns_descriptors(ns: &NamespaceInfo) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_DATA_LEN];
    let mut off = 0usize;
    let mut desc = |b: &mut Vec<u8>, t: u8, id: &[u8]| {
        put(b, off, &[t, id.len() as u8, 0, 0]);
        put(b, off + 4, id);
        off += 4 + id.len();
    };
    if ns.eui64 != [0; 8] {
        desc(&mut b, nidt::EUI64, &ns.eui64);
    }
    if ns.nguid != [0; 16] {
        desc(&mut b, nidt::NGUID, &ns.nguid);
    }
    if ns.uuid != [0; 16] {
        desc(&mut b, nidt::UUID, &ns.uuid);
    }
    desc(&mut b, nidt::CSI, &[CSI_NVM]);
    b
}

/// I/O Command Set Independent Identify Namespace (CNS 08h, Base 2.0
/// Figure 280a): NMIC, NSATTR and NSTAT (namespace ready).
pub fn ns_cs_independent(ns: &NamespaceInfo) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_DATA_LEN];
    put_u8(&mut b, 1, 1); // NMIC
    put_u8(&mut b, 8, u8::from(ns.read_only)); // NSATTR
    put_u8(&mut b, 14, 1); // NSTAT bit 0: namespace ready
    b
}

/// Identify I/O Command Set data structure (CNS 1Ch): vector 0 = NVM only.
pub fn io_command_sets() -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_DATA_LEN];
    put_le64(&mut b, 0, 1);
    b
}
