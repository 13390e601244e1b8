//! Controller state machine: Connect, the CC / CSTS handshake, Identify and
//! log page byte layouts, features, asynchronous events, keep-alive.

use zctarget_protocol::nvme::discovery::{self, DiscoveryEntry};
use zctarget_protocol::nvme::fabrics::{cc_enable_default, property, Connect, ConnectData};
use zctarget_protocol::nvme::*;

const SUBNQN: &str = "nqn.2024-01.io.zctarget:vol1";
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:1234";

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn ns1() -> NamespaceInfo {
    NamespaceInfo {
        nguid: [0x11; 16],
        uuid: [0x22; 16],
        eui64: [0x33; 8],
        discard: true,
        ..NamespaceInfo::new(1, 2048, 512)
    }
}

fn cfg() -> ControllerConfig {
    ControllerConfig {
        cntlid: 7,
        subnqn: SUBNQN.into(),
        serial: "ZCT0001".into(),
        firmware_rev: "0.1.0".into(),
        namespaces: vec![
            ns1(),
            NamespaceInfo {
                read_only: true,
                ..NamespaceInfo::new(3, 100, 4096)
            },
        ],
        max_nsid: 8,
        max_io_queues: 4,
        max_queue_entries: 128,
        mdts: 5,
        ..ControllerConfig::default()
    }
}

fn disc_cfg() -> ControllerConfig {
    ControllerConfig {
        subnqn: DISCOVERY_NQN.into(),
        is_discovery: true,
        namespaces: vec![],
        ..cfg()
    }
}

fn connect_sqe(qid: u16, sqsize: u16, kato: u32) -> Sqe {
    Connect {
        recfmt: 0,
        qid,
        sqsize,
        cattr: 0,
        kato,
    }
    .to_sqe(1, 1024)
}

fn connect_data(subnqn: &str, cntlid: u16) -> Vec<u8> {
    ConnectData {
        hostid: [9; 16],
        cntlid,
        subnqn: subnqn.into(),
        hostnqn: HOSTNQN.into(),
    }
    .encode()
}

fn prop_set(c: &mut Controller, offset: u32, value: u32) -> Completion {
    let mut s = Sqe::new(0x7F, 2);
    s.nsid = 0x00;
    s.cdw11 = offset;
    s.cdw12 = value;
    c.plan_admin(&s, &[]).completion().unwrap()
}

fn prop_get(c: &mut Controller, size8: bool, offset: u32) -> Completion {
    let mut s = Sqe::new(0x7F, 3);
    s.nsid = 0x04;
    s.cdw10 = u32::from(size8);
    s.cdw11 = offset;
    c.plan_admin(&s, &[]).completion().unwrap()
}

fn connected(cfg: ControllerConfig) -> Controller {
    let subnqn = cfg.subnqn.clone();
    let mut c = Controller::new(cfg);
    let out = c.connect(&connect_sqe(0, 31, 5000), &connect_data(&subnqn, 0xFFFF));
    assert!(out.completion.status.is_success(), "{out:?}");
    c
}

fn enabled(cfg: ControllerConfig) -> Controller {
    let mut c = connected(cfg);
    assert!(prop_set(&mut c, property::CC, cc_enable_default())
        .status
        .is_success());
    assert!(c.is_ready());
    c
}

fn admin(c: &mut Controller, sqe: &Sqe) -> (Completion, Option<Vec<u8>>) {
    match c.plan_admin(sqe, &[]) {
        AdminPlan::Complete { completion, data } => (completion, data),
        AdminPlan::Park => panic!("parked"),
    }
}

fn identify(c: &mut Controller, cns: u8, nsid: u32) -> (Completion, Option<Vec<u8>>) {
    let mut s = Sqe::new(0x06, 10);
    s.nsid = nsid;
    s.cdw10 = u32::from(cns);
    s.dptr = Sgl::transport(4096);
    admin(c, &s)
}

fn get_log(
    c: &mut Controller,
    lid: u8,
    nsid: u32,
    len: u32,
    offset: u64,
    rae: bool,
) -> (Completion, Option<Vec<u8>>) {
    let numd = len / 4 - 1;
    let mut s = Sqe::new(0x02, 11);
    s.nsid = nsid;
    s.cdw10 = u32::from(lid) | (u32::from(rae) << 15) | ((numd & 0xFFFF) << 16);
    s.cdw11 = numd >> 16;
    s.cdw12 = offset as u32;
    s.cdw13 = (offset >> 32) as u32;
    s.dptr = Sgl::transport(len);
    admin(c, &s)
}

fn features(c: &mut Controller, set: bool, cdw10: u32, cdw11: u32) -> Completion {
    let mut s = Sqe::new(if set { 0x09 } else { 0x0A }, 12);
    s.cdw10 = cdw10;
    s.cdw11 = cdw11;
    admin(c, &s).0
}

#[test]
fn cc_csts_handshake() {
    let mut c = connected(cfg());
    let cap = fabrics::property_value(&prop_get(&mut c, true, property::CAP));
    assert_eq!(cap & 0xFFFF, 127, "MQES");
    assert_eq!((cap >> 24) & 0xFF, 15, "TO");
    assert_ne!(cap & (1 << 37), 0, "CSS NVM");
    assert_eq!(prop_get(&mut c, false, property::VS).dw0, 0x0001_0300);
    assert_eq!(prop_get(&mut c, false, property::CSTS).dw0, 0);
    // Admin commands before CC.EN are a command sequence error.
    assert_eq!(identify(&mut c, 1, 0).0.status, Status::CMD_SEQ_ERROR.dnr());
    // Enable.
    prop_set(&mut c, property::CC, cc_enable_default());
    assert_eq!(prop_get(&mut c, false, property::CSTS).dw0, 1, "RDY");
    assert_eq!(
        prop_get(&mut c, false, property::CC).dw0,
        cc_enable_default()
    );
    assert!(identify(&mut c, 1, 0).0.status.is_success());
    // Normal shutdown: SHN = 01b; SHST = 10b, RDY clear.
    prop_set(&mut c, property::CC, cc_enable_default() | (1 << 14));
    assert_eq!(prop_get(&mut c, false, property::CSTS).dw0, 0b1000);
    assert!(c.is_shut_down());
    // Disable and clear SHN: SHST back to 00b.
    prop_set(&mut c, property::CC, 0);
    assert_eq!(prop_get(&mut c, false, property::CSTS).dw0, 0);
    // Re-enable.
    prop_set(&mut c, property::CC, cc_enable_default());
    assert!(c.is_ready());
    // Disable: reset.
    prop_set(&mut c, property::CC, 0);
    assert!(!c.is_ready());
}

#[test]
fn cc_bad_queue_entry_sizes_set_cfs() {
    let mut c = connected(cfg());
    prop_set(&mut c, property::CC, 1 | (7 << 16) | (4 << 20));
    assert_eq!(c.csts(), 0b10, "CFS, not RDY");
    prop_set(&mut c, property::CC, 0);
    prop_set(&mut c, property::CC, 1 | (6 << 16) | (4 << 20) | (1 << 7)); // MPS 8 KiB
    assert!(!c.is_ready());
}

#[test]
fn property_errors() {
    let mut c = connected(cfg());
    assert_eq!(
        prop_get(&mut c, false, property::CAP).status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        prop_get(&mut c, true, property::CC).status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        prop_get(&mut c, false, 0x44).status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        prop_set(&mut c, property::CSTS, 1).status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        prop_set(&mut c, property::NSSR, 0x4E56_4D65).status,
        Status::INVALID_FIELD.dnr()
    );
}

#[test]
fn admin_connect_checks() {
    let mut c = Controller::new(cfg());
    let bad_nqn = c.connect(&connect_sqe(0, 31, 0), &connect_data("nqn.x:other", 0xFFFF));
    assert_eq!(
        bad_nqn.completion.status,
        Status::CONNECT_INVALID_PARAM.dnr()
    );
    assert_eq!(bad_nqn.completion.dw0, (1 << 16) | 256);
    assert!(bad_nqn.queue.is_none());
    let bad_size = c.connect(&connect_sqe(0, 0, 0), &connect_data(SUBNQN, 0xFFFF));
    assert_eq!(bad_size.completion.dw0, 44, "IATTR 0, IPO SQSIZE");
    let too_big = c.connect(&connect_sqe(0, 128, 0), &connect_data(SUBNQN, 0xFFFF));
    assert_eq!(
        too_big.completion.status,
        Status::CONNECT_INVALID_PARAM.dnr()
    );
    let mut fmt = connect_sqe(0, 31, 0);
    fmt.cdw10 |= 1;
    assert_eq!(
        c.connect(&fmt, &connect_data(SUBNQN, 0xFFFF))
            .completion
            .status,
        Status::CONNECT_FORMAT.dnr()
    );
    let static_ctrl = c.connect(&connect_sqe(0, 31, 0), &connect_data(SUBNQN, 3));
    assert_eq!(static_ctrl.completion.dw0, (1 << 16) | 16);
    let short = c.connect(&connect_sqe(0, 31, 0), &[0u8; 100]);
    assert_eq!(short.completion.status, Status::SGL_INVALID_DATA.dnr());
    let ok = c.connect(&connect_sqe(0, 31, 7500), &connect_data(SUBNQN, 0xFFFF));
    assert_eq!(ok.completion, Completion::success(7));
    assert_eq!(ok.queue.unwrap().sq_entries, 32);
    assert_eq!(c.kato_ms(), 8000, "rounded up to whole seconds");
    assert_eq!(c.host().unwrap().0, HOSTNQN);
    let again = c.connect(&connect_sqe(0, 31, 0), &connect_data(SUBNQN, 0xFFFF));
    assert_eq!(again.completion.status, Status::CMD_SEQ_ERROR.dnr());
}

#[test]
fn allowed_hosts() {
    let mut c = Controller::new(ControllerConfig {
        allowed_hosts: vec!["nqn.2014-08.org.nvmexpress:uuid:other".into()],
        ..cfg()
    });
    let r = c.connect(&connect_sqe(0, 31, 0), &connect_data(SUBNQN, 0xFFFF));
    assert_eq!(r.completion.status, Status::CONNECT_INVALID_HOST.dnr());
    assert_eq!(r.completion.dw0, (1 << 16) | 512);
}

/// SPDK's host sends an empty HOSTNQN: admitted where any host is
/// (no ACL), refused by an ACL (Connect Invalid Host); a HOSTNQN that is
/// not UTF-8 is still invalid.
#[test]
fn empty_hostnqn() {
    let with_host = |hostnqn: &str| {
        let mut d = ConnectData::parse(&connect_data(SUBNQN, 0xFFFF)).unwrap();
        d.hostnqn = hostnqn.into();
        d.encode()
    };
    let parsed = ConnectData::parse(&with_host("")).unwrap();
    assert_eq!(parsed.hostnqn, "");
    let mut open = Controller::new(cfg());
    let r = open.connect(&connect_sqe(0, 31, 0), &with_host(""));
    assert!(
        r.completion.status.is_success(),
        "{:?}",
        r.completion.status
    );
    let mut acl = Controller::new(ControllerConfig {
        allowed_hosts: vec![HOSTNQN.into()],
        ..cfg()
    });
    let r = acl.connect(&connect_sqe(0, 31, 0), &with_host(""));
    assert_eq!(r.completion.status, Status::CONNECT_INVALID_HOST.dnr());
    let mut bad = with_host("");
    bad[512] = 0xFF;
    let r = Controller::new(cfg()).connect(&connect_sqe(0, 31, 0), &bad);
    assert_eq!(
        r.completion.dw0,
        (1 << 16) | 512,
        "invalid parameter HOSTNQN"
    );
}

#[test]
fn io_queue_connect() {
    let mut c = connected(cfg());
    // Before CC.EN: sequence error.
    let r = c.connect(&connect_sqe(1, 127, 0), &connect_data(SUBNQN, 7));
    assert_eq!(r.completion.status, Status::CMD_SEQ_ERROR.dnr());
    prop_set(&mut c, property::CC, cc_enable_default());
    let wrong_ctrl = c.connect(&connect_sqe(1, 127, 0), &connect_data(SUBNQN, 8));
    assert_eq!(wrong_ctrl.completion.dw0, (1 << 16) | 16);
    let mut other_host = ConnectData::parse(&connect_data(SUBNQN, 7)).unwrap();
    other_host.hostnqn = "nqn.x:y".into();
    let r = c.connect(&connect_sqe(1, 127, 0), &other_host.encode());
    assert_eq!(r.completion.dw0, (1 << 16) | 512);
    let mut flow = connect_sqe(1, 127, 0);
    flow.cdw11 |= 4 << 16;
    let r = c.connect(&flow, &connect_data(SUBNQN, 7));
    assert_eq!(r.completion, Completion::success(7));
    assert!(r.queue.unwrap().sq_flow_control_disabled);
    let dup = c.connect(&connect_sqe(1, 127, 0), &connect_data(SUBNQN, 7));
    assert_eq!(dup.completion.status, Status::CMD_SEQ_ERROR.dnr());
    assert!(c
        .connect(&connect_sqe(4, 127, 0), &connect_data(SUBNQN, 7))
        .queue
        .is_some());
    let r = c.connect(&connect_sqe(5, 127, 0), &connect_data(SUBNQN, 7));
    assert_eq!(r.completion.dw0, 42, "IPO QID");
    assert_eq!(c.io_queues(), &[1, 4]);
    c.disconnect_io_queue(1);
    assert_eq!(c.io_queues(), &[4]);
}

#[test]
fn identify_controller_layout() {
    let mut c = enabled(cfg());
    let (comp, data) = identify(&mut c, 1, 0);
    assert!(comp.status.is_success());
    let d = data.unwrap();
    assert_eq!(d.len(), 4096);
    assert_eq!(&d[4..24], b"ZCT0001             ");
    assert_eq!(&d[24..32], b"zctarget");
    assert!(d[32..64].iter().all(|&b| b == b' '));
    assert_eq!(&d[64..72], b"0.1.0   ");
    assert_eq!(d[76], 0b11, "CMIC");
    assert_eq!(d[77], 5, "MDTS");
    assert_eq!(le16(&d, 78), 7, "CNTLID");
    assert_eq!(le32(&d, 80), 0x0001_0300, "VER");
    assert_eq!(le32(&d, 92), 1 << 8, "OAES namespace attribute notices");
    assert_eq!(d[111], 1, "CNTRLTYPE I/O");
    assert_eq!(le16(&d, 256), 0, "OACS");
    assert_eq!(d[259], 3, "AERL");
    assert_eq!(d[261], 0b111, "LPA");
    assert_eq!(le16(&d, 320), 10, "KAS");
    assert_eq!(d[512], 0x66, "SQES");
    assert_eq!(d[513], 0x44, "CQES");
    assert_eq!(le16(&d, 514), 128, "MAXCMD");
    assert_eq!(le32(&d, 516), 8, "NN");
    assert_eq!(
        le16(&d, 520),
        0b1000_1101,
        "ONCS: compare, DSM, write zeroes, verify"
    );
    assert_eq!(d[525], 0b111, "VWC");
    assert_eq!(le32(&d, 536), 1 | (1 << 20) | (1 << 21), "SGLS");
    assert_eq!(&d[768..768 + SUBNQN.len()], SUBNQN.as_bytes());
    assert_eq!(d[768 + SUBNQN.len()], 0);
    assert_eq!(le32(&d, 1792), (64 + 8192) / 16, "IOCCSZ");
    assert_eq!(le32(&d, 1796), 1, "IORCSZ");
    assert_eq!(le16(&d, 1800), 0, "ICDOFF");
    assert_eq!(d[1803], 1, "MSDBD");
    assert_eq!(le16(&d, 2048), 0x9C4, "PSD0 MP");
}

#[test]
fn identify_namespace_layout() {
    let mut c = enabled(cfg());
    let d = identify(&mut c, 0, 1).1.unwrap();
    assert_eq!(le64(&d, 0), 2048, "NSZE");
    assert_eq!(le64(&d, 8), 2048, "NCAP");
    assert_eq!(le64(&d, 16), 2048, "NUSE");
    assert_eq!(d[25], 0, "NLBAF");
    assert_eq!(d[26], 0, "FLBAS");
    assert_eq!(d[33], 0x08, "DLFEAT write zeroes deallocates");
    assert_eq!(d[99], 0, "NSATTR");
    assert_eq!(&d[104..120], &[0x11; 16], "NGUID");
    assert_eq!(&d[120..128], &[0x33; 8], "EUI64");
    assert_eq!(le16(&d, 128), 0, "LBAF0 MS");
    assert_eq!(d[130], 9, "LBAF0 LBADS 512");
    let ro = identify(&mut c, 0, 3).1.unwrap();
    assert_eq!(ro[130], 12);
    assert_eq!(ro[99], 1, "write protected");
    // Inactive but valid NSID: zeroes. Beyond NN, 0 or broadcast: invalid.
    let (comp, z) = identify(&mut c, 0, 2);
    assert!(comp.status.is_success());
    assert!(z.unwrap().iter().all(|&b| b == 0));
    assert_eq!(identify(&mut c, 0, 9).0.status, Status::INVALID_NS.dnr());
    assert_eq!(identify(&mut c, 0, 0).0.status, Status::INVALID_NS.dnr());
    assert_eq!(
        identify(&mut c, 0, NSID_ALL).0.status,
        Status::INVALID_NS.dnr()
    );
}

#[test]
fn identify_lists_and_descriptors() {
    let mut c = enabled(cfg());
    let l = identify(&mut c, 2, 0).1.unwrap();
    assert_eq!((le32(&l, 0), le32(&l, 4), le32(&l, 8)), (1, 3, 0));
    let l = identify(&mut c, 2, 1).1.unwrap();
    assert_eq!((le32(&l, 0), le32(&l, 4)), (3, 0));
    assert_eq!(
        identify(&mut c, 2, 0xFFFF_FFFE).0.status,
        Status::INVALID_NS.dnr()
    );
    let d = identify(&mut c, 3, 1).1.unwrap();
    assert_eq!(&d[0..4], &[1, 8, 0, 0]);
    assert_eq!(&d[4..12], &[0x33; 8]);
    assert_eq!(&d[12..16], &[2, 16, 0, 0]);
    assert_eq!(&d[16..32], &[0x11; 16]);
    assert_eq!(&d[32..36], &[3, 16, 0, 0]);
    assert_eq!(&d[36..52], &[0x22; 16]);
    assert_eq!(&d[52..57], &[4, 1, 0, 0, 0]);
    assert!(d[57..].iter().all(|&b| b == 0));
    // Namespace 3 has no identifiers: CSI only.
    let d = identify(&mut c, 3, 3).1.unwrap();
    assert_eq!(&d[0..5], &[4, 1, 0, 0, 0]);
    assert_eq!(identify(&mut c, 3, 2).0.status, Status::INVALID_NS.dnr());
    // CSI-specific structures for NVM: zeroed but valid.
    assert!(identify(&mut c, 5, 1).0.status.is_success());
    assert!(identify(&mut c, 6, 0).0.status.is_success());
    let mut s = Sqe::new(0x06, 1);
    s.cdw10 = 6;
    s.cdw11 = 2 << 24; // CSI ZNS
    s.dptr = Sgl::transport(4096);
    assert_eq!(admin(&mut c, &s).0.status, Status::INVALID_FIELD.dnr());
    let d = identify(&mut c, 8, 3).1.unwrap();
    assert_eq!((d[8], d[14]), (1, 1), "NSATTR ro, NSTAT ready");
    assert_eq!(le64(&identify(&mut c, 0x1C, 0).1.unwrap(), 0), 1);
    assert_eq!(
        identify(&mut c, 0x10, 0).0.status,
        Status::INVALID_FIELD.dnr()
    );
}

#[test]
fn identify_transfer_length_must_match() {
    let mut c = enabled(cfg());
    let mut s = Sqe::new(0x06, 1);
    s.cdw10 = 1;
    s.dptr = Sgl::transport(4095);
    assert_eq!(admin(&mut c, &s).0.status, Status::SGL_INVALID_DATA.dnr());
    s.dptr = Sgl::transport(0);
    assert_eq!(admin(&mut c, &s).0.status, Status::SGL_INVALID_DATA.dnr());
}

#[test]
fn log_pages() {
    let mut c = enabled(cfg());
    c.set_health(HealthCounters {
        bytes_read: 512_001,
        read_commands: 3,
        temperature_kelvin: 300,
        ..HealthCounters::default()
    });
    let (comp, d) = get_log(&mut c, 0x02, NSID_ALL, 512, 0, false);
    assert!(comp.status.is_success());
    let d = d.unwrap();
    assert_eq!(le16(&d, 1), 300);
    assert_eq!(d[3], 100);
    assert_eq!(le64(&d, 32), 2, "data units read rounded up");
    assert_eq!(le64(&d, 64), 3);
    // Partial read at an offset.
    let d = get_log(&mut c, 0x02, NSID_ALL, 8, 32, false).1.unwrap();
    assert_eq!(le64(&d, 0), 2);
    // Firmware slot.
    let d = get_log(&mut c, 0x03, 0, 512, 0, false).1.unwrap();
    assert_eq!(d[0], 1);
    assert_eq!(&d[8..16], b"0.1.0   ");
    // Error log, effects log.
    assert_eq!(
        get_log(&mut c, 0x01, 0, 64, 0, false).1.unwrap(),
        vec![0; 64]
    );
    let e = get_log(&mut c, 0x05, 0, 4096, 0, false).1.unwrap();
    assert_eq!(le32(&e, 6 * 4), 1, "Identify supported");
    assert_eq!(le32(&e, 1024 + 4), 3, "Write: CSUPP | LBCC");
    // Errors: unknown page, misaligned or out-of-range offset, discovery page
    // on an I/O controller, SGL length mismatch.
    assert_eq!(
        get_log(&mut c, 0x42, 0, 512, 0, false).0.status,
        Status::INVALID_LOG_PAGE.dnr()
    );
    assert_eq!(
        get_log(&mut c, 0x70, 0, 1024, 0, false).0.status,
        Status::INVALID_LOG_PAGE.dnr()
    );
    assert_eq!(
        get_log(&mut c, 0x02, 0, 8, 2, false).0.status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        get_log(&mut c, 0x02, 0, 8, 516, false).0.status,
        Status::INVALID_FIELD.dnr()
    );
    let mut s = Sqe::new(0x02, 1);
    s.cdw10 = 0x02 | (127 << 16);
    s.dptr = Sgl::transport(256);
    assert_eq!(admin(&mut c, &s).0.status, Status::SGL_INVALID_DATA.dnr());
    // A huge NUMD is refused before anything is allocated.
    s.cdw10 = 0x02 | (0xFFFF << 16);
    s.cdw11 = 0xFFFF;
    assert_eq!(admin(&mut c, &s).0.status, Status::INVALID_FIELD.dnr());
}

#[test]
fn aer_namespace_change_flow() {
    let mut c = enabled(cfg());
    // Enable namespace attribute notices.
    assert!(features(&mut c, true, 0x0B, 1 << 8).status.is_success());
    let mut aer = Sqe::new(0x0C, 0x40);
    assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
    let done = c.set_namespace(NamespaceInfo::new(2, 10, 512)).unwrap();
    assert_eq!(done.cid, 0x40);
    assert_eq!(done.completion, Completion::success(0x0004_0002));
    // Masked until the log page is read: a second change is recorded only.
    aer.cid = 0x41;
    assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
    assert_eq!(c.remove_namespace(3), None);
    // Read with RAE = 1: list returned and cleared, still masked.
    let d = get_log(&mut c, 0x04, 0, 4096, 0, true).1.unwrap();
    assert_eq!((le32(&d, 0), le32(&d, 4), le32(&d, 8)), (2, 3, 0));
    assert_eq!(c.namespace_changed(2), None);
    // Read with RAE = 0 unmasks; the next change completes the parked AER.
    let d = get_log(&mut c, 0x04, 0, 4096, 0, false).1.unwrap();
    assert_eq!((le32(&d, 0), le32(&d, 4)), (2, 0));
    let done = c.namespace_changed(1).unwrap();
    assert_eq!(done.cid, 0x41);
    // No AER outstanding: the event waits for the next request.
    get_log(&mut c, 0x04, 0, 4096, 0, false);
    assert_eq!(c.namespace_changed(1), None);
    aer.cid = 0x42;
    assert_eq!(
        c.plan_admin(&aer, &[]).completion(),
        Some(Completion::success(0x0004_0002))
    );
}

#[test]
fn aer_disabled_and_limit() {
    let mut c = enabled(cfg());
    let mut aer = Sqe::new(0x0C, 0);
    for cid in 0..4 {
        aer.cid = cid;
        assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
    }
    aer.cid = 4;
    assert_eq!(admin(&mut c, &aer).0.status, Status::ASYNC_LIMIT.dnr());
    // Notices not enabled: nothing completes, but the log records it.
    assert_eq!(c.namespace_changed(1), None);
    assert_eq!(
        le32(&get_log(&mut c, 0x04, 0, 4096, 0, false).1.unwrap(), 0),
        1
    );
    assert_eq!(c.take_parked_aers(), vec![0, 1, 2, 3]);
}

#[test]
fn features_get_set() {
    let mut c = enabled(cfg());
    // Number of queues: allocated = max (4 → 3 0's based) both ways.
    assert_eq!(
        features(&mut c, true, 0x07, 0x0010_0010),
        Completion::success(0x0003_0003)
    );
    assert_eq!(features(&mut c, false, 0x07, 0).dw0, 0x0003_0003);
    assert_eq!(
        features(&mut c, true, 0x07, 0xFFFF).status,
        Status::INVALID_FIELD.dnr()
    );
    // KATO.
    assert!(features(&mut c, true, 0x0F, 30_000).status.is_success());
    assert_eq!(c.kato_ms(), 30_000);
    assert_eq!(features(&mut c, false, 0x0F, 0).dw0, 30_000);
    // Volatile write cache.
    assert_eq!(features(&mut c, false, 0x06, 0).dw0, 1);
    features(&mut c, true, 0x06, 0);
    assert!(!c.write_cache_enabled());
    assert_eq!(
        features(&mut c, false, 0x06 | (1 << 8), 0).dw0,
        1,
        "default"
    );
    assert_eq!(
        features(&mut c, false, 0x06 | (3 << 8), 0).dw0,
        4,
        "changeable"
    );
    // Save bit, unknown features, bad AEC bits, power state.
    assert_eq!(
        features(&mut c, true, 0x06 | (1 << 31), 1).status,
        Status::FEATURE_NOT_SAVEABLE.dnr()
    );
    assert_eq!(
        features(&mut c, true, 0x0E, 0).status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        features(&mut c, true, 0x0B, 1 << 9).status,
        Status::INVALID_FIELD.dnr()
    );
    assert_eq!(
        features(&mut c, true, 0x02, 1).status,
        Status::INVALID_FIELD.dnr()
    );
    assert!(features(&mut c, true, 0x02, 0).status.is_success());
    assert!(features(&mut c, true, 0x01, 0x0303_0303)
        .status
        .is_success());
    assert_eq!(features(&mut c, false, 0x01, 0).dw0, 0x0303_0303);
}

#[test]
fn keep_alive_abort_and_unsupported() {
    let mut c = enabled(cfg());
    let seq = c.keep_alive_seq();
    assert!(admin(&mut c, &Sqe::new(0x18, 1)).0.status.is_success());
    assert_eq!(c.keep_alive_seq(), seq + 1);
    assert_eq!(admin(&mut c, &Sqe::new(0x08, 1)).0, Completion::success(1));
    for op in [0x00, 0x01, 0x04, 0x05, 0x0D, 0x10, 0x80, 0xFF] {
        assert_eq!(
            admin(&mut c, &Sqe::new(op, 1)).0.status,
            Status::INVALID_OPCODE.dnr(),
            "{op:#x}"
        );
    }
    let mut auth = Sqe::new(0x7F, 1);
    auth.nsid = 0x05;
    assert_eq!(admin(&mut c, &auth).0.status, Status::INVALID_OPCODE.dnr());
    let mut fused = Sqe::new(0x18, 1);
    fused.fuse = 1;
    assert_eq!(admin(&mut c, &fused).0.status, Status::INVALID_FIELD.dnr());
}

#[test]
fn discovery_controller() {
    let mut c = Controller::new(disc_cfg());
    // Discovery hosts may ask for no keep-alive: the configured default applies.
    let r = c.connect(&connect_sqe(0, 31, 0), &connect_data(DISCOVERY_NQN, 0xFFFF));
    assert!(r.completion.status.is_success());
    assert_eq!(c.kato_ms(), 120_000);
    // Discovery controllers accept CC without IOSQES/IOCQES.
    prop_set(&mut c, property::CC, 1);
    assert!(c.is_ready());
    let d = identify(&mut c, 1, 0).1.unwrap();
    assert_eq!(d[111], 2, "CNTRLTYPE discovery");
    assert_eq!(le32(&d, 92), 1 << 31);
    assert_eq!(le32(&d, 516), 0, "NN");
    assert_eq!(identify(&mut c, 0, 1).0.status, Status::INVALID_FIELD.dnr());
    assert_eq!(
        get_log(&mut c, 0x02, 0, 512, 0, false).0.status,
        Status::INVALID_LOG_PAGE.dnr()
    );
    assert_eq!(
        features(&mut c, true, 0x07, 0).status,
        Status::INVALID_FIELD.dnr()
    );
    assert!(features(&mut c, true, 0x0B, 1 << 31).status.is_success());
    let mut aer = Sqe::new(0x0C, 9);
    assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
    let e1 = DiscoveryEntry::tcp(1, "192.0.2.10", "4420", SUBNQN, discovery::SUBTYPE_NVM);
    let e2 = DiscoveryEntry::tcp(
        1,
        "192.0.2.10",
        "8009",
        DISCOVERY_NQN,
        discovery::SUBTYPE_CURRENT_DISCOVERY,
    );
    let done = c.set_discovery_entries(vec![e1, e2]).unwrap();
    assert_eq!(done.completion.dw0, 0x0070_F002);
    // Header only, then the whole page.
    let h = get_log(&mut c, 0x70, 0, 1024, 0, true).1.unwrap();
    assert_eq!(le64(&h, 0), 1, "GENCTR");
    assert_eq!(le64(&h, 8), 2, "NUMREC");
    assert_eq!(le16(&h, 16), 0, "RECFMT");
    let p = get_log(&mut c, 0x70, 0, 3072, 0, false).1.unwrap();
    let e = &p[1024..2048];
    assert_eq!(
        &e[0..4],
        &[3, 1, 2, 0b10],
        "TRTYPE TCP, ADRFAM IPv4, SUBTYPE NVM, TREQ"
    );
    assert_eq!(le16(e, 4), 1, "PORTID");
    assert_eq!(le16(e, 6), 0xFFFF, "CNTLID");
    assert_eq!(le16(e, 8), 32, "ASQSZ");
    assert_eq!(&e[32..36], b"4420");
    assert!(e[36..64].iter().all(|&b| b == b' '));
    // Fabrics 1.1 Figure 38 / Linux nvmf_disc_rsp_page_entry: SUBNQN at
    // 256 (NUL padded), TRADDR at 512 (space padded).
    assert_eq!(&e[256..256 + SUBNQN.len()], SUBNQN.as_bytes());
    assert_eq!(e[256 + SUBNQN.len()], 0);
    assert_eq!(&e[512..522], b"192.0.2.10");
    assert_eq!(e[522], b' ');
    assert_eq!(e[768], 0, "TSAS SECTYPE none");
    assert_eq!(p[2048 + 2], 3, "current discovery subsystem");
    // Second entry alone, by offset.
    let p2 = get_log(&mut c, 0x70, 0, 1024, 2048, false).1.unwrap();
    assert_eq!(&p2[..], &p[2048..]);
    // Past the end: invalid field.
    assert_eq!(
        get_log(&mut c, 0x70, 0, 4, 4096, false).0.status,
        Status::INVALID_FIELD.dnr()
    );
    // I/O queues cannot be connected to a discovery controller.
    let r = c.connect(&connect_sqe(1, 31, 0), &connect_data(DISCOVERY_NQN, 1));
    assert_eq!(r.completion.status, Status::CONNECT_INVALID_PARAM.dnr());
    aer.cid = 10;
    assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
}

/// Property Get/Set of registers a host may probe but the controller does
/// not implement answer as Linux nvmet (drivers/nvme/target/fabrics-cmd.c)
/// does: Get of CAP (8 bytes), VS, CC, CSTS and CRTO (4 bytes) succeed;
/// any other offset or size is Invalid Field with DNR; Set takes CC only,
/// 4 bytes.
#[test]
fn unimplemented_properties_answer_like_nvmet() {
    let mut c = connected(cfg());
    let crto = prop_get(&mut c, false, property::CRTO);
    assert!(crto.status.is_success(), "{:?}", crto.status);
    assert_eq!(crto.dw0, 15 | (15 << 16), "CRWMT = CRIMT = CAP.TO");
    let invalid = Status::INVALID_FIELD.dnr();
    // INTMS, INTMC, NSSR, AQA, ASQ, ACQ, CMBLOC, CMBSZ, BPINFO, BPRSEL,
    // BPMBL, CMBMSC, CMBSTS, PMRCAP, PMRCTL, PMRSTS, SQ0TDBL, unaligned.
    for off in [
        0x0C,
        0x10,
        0x20,
        0x24,
        0x28,
        0x30,
        0x38,
        0x3C,
        0x40,
        0x44,
        0x48,
        0x50,
        0x58,
        0xE00,
        0xE04,
        0xE08,
        0x1000,
        0x02,
        0xFFFF_FFFF,
    ] {
        assert_eq!(prop_get(&mut c, false, off).status, invalid, "get {off:#x}");
        assert_eq!(prop_get(&mut c, true, off).status, invalid, "get8 {off:#x}");
        assert_eq!(prop_set(&mut c, off, 1).status, invalid, "set {off:#x}");
    }
    // Implemented registers at the wrong size.
    for off in [property::VS, property::CC, property::CSTS, property::CRTO] {
        assert_eq!(prop_get(&mut c, true, off).status, invalid, "get8 {off:#x}");
    }
    assert_eq!(prop_get(&mut c, false, property::CAP).status, invalid);
    for off in [property::CAP, property::VS, property::CSTS, property::CRTO] {
        assert_eq!(prop_set(&mut c, off, 0).status, invalid, "set {off:#x}");
    }
    // The probes changed nothing.
    assert_eq!(prop_get(&mut c, false, property::CSTS).dw0, 0);
}
