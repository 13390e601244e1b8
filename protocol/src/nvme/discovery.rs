//! Discovery log page (Get Log Page 70h; NVMe over Fabrics 1.1 §5.3,
//! Figures 38-39).
//!
//! A 1024-byte header (GENCTR, NUMREC, RECFMT) followed by one 1024-byte
//! entry per subsystem port the host may connect to.

use super::bytes::{put, put_le16, put_le64, put_padded};

/// Length of the header and of each entry.
pub const RECORD_LEN: usize = 1024;

/// TRTYPE: TCP (Fabrics 1.1 Figure 39, NVMe/TCP 1.0 §4).
pub const TRTYPE_TCP: u8 = 3;
/// ADRFAM: IPv4.
pub const ADRFAM_IPV4: u8 = 1;
/// ADRFAM: IPv6.
pub const ADRFAM_IPV6: u8 = 2;
/// SUBTYPE: referral to a discovery subsystem.
pub const SUBTYPE_DISCOVERY_REFERRAL: u8 = 1;
/// SUBTYPE: NVM subsystem.
pub const SUBTYPE_NVM: u8 = 2;
/// SUBTYPE: the current discovery subsystem.
pub const SUBTYPE_CURRENT_DISCOVERY: u8 = 3;
/// TREQ bits 1:0 = 10b: secure channel not required.
pub const TREQ_SECURE_CHANNEL_NOT_REQUIRED: u8 = 0b10;
/// TREQ bit 2: SQ flow control disable supported.
pub const TREQ_DISABLE_SQFLOW: u8 = 1 << 2;
/// TCP TSAS SECTYPE: no security.
pub const SECTYPE_NONE: u8 = 0;

/// One Discovery Log Page Entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryEntry {
    /// TRTYPE (byte 0).
    pub trtype: u8,
    /// ADRFAM (byte 1).
    pub adrfam: u8,
    /// SUBTYPE (byte 2).
    pub subtype: u8,
    /// TREQ (byte 3).
    pub treq: u8,
    /// PORTID (bytes 4-5).
    pub portid: u16,
    /// CNTLID (bytes 6-7): FFFFh for the dynamic controller model.
    pub cntlid: u16,
    /// ASQSZ (bytes 8-9): maximum admin SQ size.
    pub asqsz: u16,
    /// EFLAGS (bytes 10-11).
    pub eflags: u16,
    /// TRSVCID (bytes 32-63), ASCII, space padded: the TCP port.
    pub trsvcid: String,
    /// TRADDR (bytes 512-767), ASCII, space padded: the address.
    pub traddr: String,
    /// SUBNQN (bytes 256-511), NUL padded.
    pub subnqn: String,
    /// TSAS (bytes 768-1023). For TCP, byte 0 is SECTYPE.
    pub tsas: [u8; 256],
}

impl DiscoveryEntry {
    /// An NVMe/TCP IPv4 entry for `subnqn` at `traddr:trsvcid` with the
    /// usual defaults: secure channel not required, dynamic controller,
    /// SECTYPE none.
    pub fn tcp(portid: u16, traddr: &str, trsvcid: &str, subnqn: &str, subtype: u8) -> Self {
        DiscoveryEntry {
            trtype: TRTYPE_TCP,
            adrfam: if traddr.contains(':') {
                ADRFAM_IPV6
            } else {
                ADRFAM_IPV4
            },
            subtype,
            treq: TREQ_SECURE_CHANNEL_NOT_REQUIRED,
            portid,
            cntlid: 0xFFFF,
            asqsz: 32,
            eflags: 0,
            trsvcid: trsvcid.to_owned(),
            traddr: traddr.to_owned(),
            subnqn: subnqn.to_owned(),
            tsas: [SECTYPE_NONE; 256],
        }
    }

    /// Encodes the 1024-byte entry.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        put(
            &mut b,
            0,
            &[self.trtype, self.adrfam, self.subtype, self.treq],
        );
        put_le16(&mut b, 4, self.portid);
        put_le16(&mut b, 6, self.cntlid);
        put_le16(&mut b, 8, self.asqsz);
        put_le16(&mut b, 10, self.eflags);
        put_padded(&mut b, 32, 32, &self.trsvcid, b' ');
        // Fabrics 1.1 Figure 38 (Linux: struct nvmf_disc_rsp_page_entry):
        // SUBNQN at 256, TRADDR at 512.
        put_padded(&mut b, 256, 256, &self.subnqn, 0);
        put_padded(&mut b, 512, 256, &self.traddr, b' ');
        put(&mut b, 768, &self.tsas);
        b
    }
}

/// The whole Discovery log page: header (GENCTR at 0, NUMREC at 8, RECFMT 0
/// at 16) and the entries from byte 1024 on.
pub fn log_page(genctr: u64, entries: &[DiscoveryEntry]) -> Vec<u8> {
    let mut b = vec![0u8; RECORD_LEN * (entries.len() + 1)];
    put_le64(&mut b, 0, genctr);
    put_le64(&mut b, 8, entries.len() as u64);
    put_le16(&mut b, 16, 0);
    for (i, e) in entries.iter().enumerate() {
        put(&mut b, RECORD_LEN * (i + 1), &e.encode());
    }
    b
}
