//! Two gateways, one volume (issue #13, first slice: identity and static
//! ANA / ALUA reporting, no failover). Two zctarget processes on their own
//! ports export "the same" volume — two files here, since each file volume
//! takes an exclusive lock; gateway B calls its volume differently and
//! gives it gateway A's identity — and a host sees:
//! - NVMe (in-repo host): equal NGUID, EUI-64, UUID and subsystem serial,
//!   CNTLIDs from each gateway's own block, CMIC with ANA, and the ANA log
//!   page Optimized on the owner, Non-Optimized (or Inaccessible, which
//!   refuses I/O with Asymmetric Access Inaccessible) on the other;
//! - iSCSI (raw initiator): equal VPD 0x80 serial and NAA designator, each
//!   gateway's own relative target port and target port group, REPORT
//!   TARGET PORT GROUPS with the owner's group Active/optimized, and, in
//!   Standby, READ refused with NOT READY 04/0B.

use zctarget_protocol::nvme::ana::{parse_log_page, AnaState};
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions, Reply};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-12.io.zctarget.test:mpath";
const IQN: &str = "iqn.2026-12.io.zctarget.test:mpath";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const INITIATOR: &str = "iqn.2026-12.io.zctarget.test:initiator";
const BS: usize = 512;

/// Gateway `me` (`gw-a` or `gw-b`) of a two-gateway cluster; the volume
/// is owned by gw-a. gw-b names it `shared-b` with the identity `shared`.
fn gateway(dir: &std::path::Path, me: &str, non_owner: &str) -> Daemon {
    let (volume, identity) = if me == "gw-a" {
        ("shared", "")
    } else {
        ("shared-b", "identity = \"shared\"\n")
    };
    Daemon::start_with(
        dir,
        me,
        &format!(
            "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\n\
             nvme_listen = [\"127.0.0.1:0\"]\nreactors = 1\nbuffer_pool = \"8MiB\"\n\n\
             [cluster]\ngateway = \"{me}\"\ngateways = [\"gw-a\", \"gw-b\"]\n\
             non_owner_state = \"{non_owner}\"\n\n\
             [[volumes]]\nname = \"{volume}\"\npath = \"{me}.img\"\nsize = \"4MiB\"\n\
             owner = \"gw-a\"\n{identity}\n\
             [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"{volume}\"]\n\n\
             [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"{volume}\"]\n"
        ),
    )
}

fn ok(r: std::io::Result<Reply>) -> Reply {
    let r = r.expect("command");
    assert!(r.status().is_success(), "status {:?}", r.status());
    r
}

/// What a host learns of namespace 1 through one gateway.
struct NvmePath {
    cntlid: u16,
    serial: Vec<u8>,
    cmic: u8,
    nguid: Vec<u8>,
    eui64: Vec<u8>,
    descriptors: Vec<u8>,
    anagrpid: u32,
    /// (ANAGRPID, state, NSIDs) of every group.
    groups: Vec<(u32, Result<AnaState, u8>, Vec<u32>)>,
    read: Reply,
}

fn nvme_path(d: &Daemon) -> NvmePath {
    let mut admin =
        NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin queue");
    let ctrl = ok(admin.identify(1, 0)).data;
    let ns = ok(admin.identify(0, 1)).data;
    let descriptors = ok(admin.identify(3, 1)).data;
    let log = ok(admin.get_log_page(0x0C, 4096)).data;
    let (_, descs) = parse_log_page(&log);
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    let read = io.read(1, 0, 1, BS).expect("read");
    NvmePath {
        cntlid: u16::from_le_bytes([ctrl[78], ctrl[79]]),
        serial: ctrl[4..24].to_vec(),
        cmic: ctrl[76],
        nguid: ns[104..120].to_vec(),
        eui64: ns[120..128].to_vec(),
        descriptors,
        anagrpid: u32::from_le_bytes(ns[92..96].try_into().unwrap()),
        groups: descs
            .into_iter()
            .map(|g| (g.grpid, g.state, g.nsids))
            .collect(),
        read,
    }
}

/// What an initiator learns of LUN 0 through one gateway.
struct ScsiPath {
    serial: Vec<u8>,
    naa: Vec<u8>,
    /// (relative target port, target port group) from VPD 0x83.
    port: (u16, u16),
    tpgs: u8,
    /// (group, state, preferred, relative ports) from REPORT TARGET PORT GROUPS.
    groups: Vec<(u16, u8, bool, Vec<u16>)>,
    /// READ(10) status and sense.
    read: (u8, Vec<u8>),
}

fn scsi_path(d: &Daemon) -> ScsiPath {
    // The login alone: on a Standby port TEST UNIT READY never succeeds.
    let keys = "ImmediateData=No\0InitialR2T=Yes\0MaxRecvDataSegmentLength=65536\0";
    let (mut s, _) =
        Iscsi::login_only(d.iscsi_port, IQN, INITIATOR, BS, keys, [false, false]).expect("login");
    // The new nexus's power-on unit attention comes first, on any port.
    let (st, _, sense) = s.run_on_lun(0, &[0; 6], 0).expect("tur");
    assert_eq!(
        (st, sense.get(12).copied()),
        (0x02, Some(0x29)),
        "{sense:02x?}"
    );
    let (st, std, _) = s
        .run_on_lun(0, &[0x12, 0, 0, 0, 96, 0], 96)
        .expect("inquiry");
    assert_eq!(st, 0);
    let (st, p80, _) = s
        .run_on_lun(0, &[0x12, 1, 0x80, 0, 255, 0], 255)
        .expect("vpd 80");
    assert_eq!(st, 0);
    let (st, p83, _) = s
        .run_on_lun(0, &[0x12, 1, 0x83, 0, 255, 0], 255)
        .expect("vpd 83");
    assert_eq!(st, 0);
    let mut naa = Vec::new();
    let (mut rel, mut tpg) = (0, 0);
    let mut at = 4;
    while at + 4 <= p83.len() {
        let (kind, len) = (p83[at + 1] & 0x3F, usize::from(p83[at + 3]));
        let id = &p83[at + 4..at + 4 + len];
        match kind {
            0x03 => naa = id.to_vec(),
            0x14 => rel = u16::from_be_bytes([id[2], id[3]]),
            0x15 => tpg = u16::from_be_bytes([id[2], id[3]]),
            _ => {}
        }
        at += 4 + len;
    }
    let rtpg = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];
    let (st, r, _) = s.run_on_lun(0, &rtpg, 1024).expect("rtpg");
    assert_eq!(st, 0);
    let mut groups = Vec::new();
    let mut at = 4;
    while at + 8 <= r.len() {
        let n = usize::from(r[at + 7]);
        let ports = (0..n)
            .map(|i| u16::from_be_bytes([r[at + 10 + 4 * i], r[at + 11 + 4 * i]]))
            .collect();
        groups.push((
            u16::from_be_bytes([r[at + 2], r[at + 3]]),
            r[at] & 0x0F,
            r[at] & 0x80 != 0,
            ports,
        ));
        at += 8 + 4 * n;
    }
    let (st, _, sense) = s
        .run_on_lun(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], BS as u32)
        .expect("read");
    ScsiPath {
        serial: p80[4..].to_vec(),
        naa,
        port: (rel, tpg),
        tpgs: (std[5] >> 4) & 3,
        groups,
        read: (st, sense),
    }
}

#[test]
fn two_gateways_present_one_volume_with_owner_optimized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = gateway(dir.path(), "gw-a", "non_optimized");
    let b = gateway(dir.path(), "gw-b", "non_optimized");

    let (na, nb) = (nvme_path(&a), nvme_path(&b));
    assert_ne!(na.nguid, vec![0; 16]);
    assert_eq!(na.nguid, nb.nguid, "NGUID equal on both gateways");
    assert_eq!(na.eui64, nb.eui64, "EUI-64 equal");
    assert_eq!(
        na.descriptors, nb.descriptors,
        "NGUID/UUID/EUI-64 descriptors equal"
    );
    assert_eq!(na.serial, nb.serial, "subsystem serial equal");
    assert_eq!(na.cmic & 0b1010, 0b1010, "multi-controller, ANA reporting");
    assert!((1..=4000).contains(&na.cntlid), "gw-a CNTLID {}", na.cntlid);
    assert!(
        (4001..=8000).contains(&nb.cntlid),
        "gw-b CNTLID {}",
        nb.cntlid
    );
    assert_eq!((na.anagrpid, nb.anagrpid), (1, 1), "the owner's group");
    assert_eq!(
        na.groups,
        vec![
            (1, Ok(AnaState::Optimized), vec![1]),
            (2, Ok(AnaState::NonOptimized), vec![])
        ]
    );
    assert_eq!(
        nb.groups,
        vec![
            (1, Ok(AnaState::NonOptimized), vec![1]),
            (2, Ok(AnaState::Optimized), vec![])
        ]
    );
    assert!(na.read.status().is_success() && nb.read.status().is_success());

    let (sa, sb) = (scsi_path(&a), scsi_path(&b));
    assert!(!sa.serial.is_empty());
    assert_eq!(sa.serial, sb.serial, "VPD 0x80 serial equal");
    assert_eq!(sa.naa.len(), 16);
    assert_eq!(sa.naa, sb.naa, "NAA designator equal");
    assert_eq!((sa.tpgs, sb.tpgs), (1, 1), "implicit ALUA");
    assert_eq!(
        (sa.port, sb.port),
        ((1, 1), (2, 2)),
        "each gateway its own port and group"
    );
    let want = vec![(1, 0x0, true, vec![1]), (2, 0x1, false, vec![2])];
    assert_eq!(
        sa.groups, want,
        "owner Active/optimized, other Active/non-optimized"
    );
    assert_eq!(sb.groups, want, "both gateways report the same groups");
    assert_eq!((sa.read.0, sb.read.0), (0, 0));
}

#[test]
fn non_owner_inaccessible_refuses_io_on_both_protocols() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = gateway(dir.path(), "gw-a", "inaccessible");
    let b = gateway(dir.path(), "gw-b", "inaccessible");

    let (na, nb) = (nvme_path(&a), nvme_path(&b));
    assert_eq!(na.groups[0].1, Ok(AnaState::Optimized));
    assert_eq!(nb.groups[0].1, Ok(AnaState::Inaccessible));
    assert!(na.read.status().is_success());
    let s = nb.read.status();
    assert_eq!(
        (s.sct.code(), s.sc),
        (3, 0x02),
        "Asymmetric Access Inaccessible"
    );

    let (sa, sb) = (scsi_path(&a), scsi_path(&b));
    assert_eq!(sb.groups[1].1, 0x2, "Standby");
    assert_eq!(sa.read.0, 0);
    assert_eq!(sb.read.0, 0x02, "CHECK CONDITION");
    // Fixed or descriptor format: key NOT READY, ASC/ASCQ 04/0B.
    let s = &sb.read.1;
    let (key, asc, ascq) = if s[0] & 0x7F >= 0x72 {
        (s[1] & 0x0F, s[2], s[3])
    } else {
        (s[2] & 0x0F, s[12], s[13])
    };
    assert_eq!((key, asc, ascq), (0x2, 0x04, 0x0B));
}
