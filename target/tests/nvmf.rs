//! The NVMe/TCP frontend end to end with the in-repo host
//! (`tests/src/nvme_client.rs`): discovery, Connect with the host ACL,
//! controller enable, Identify, I/O of every size path (in-capsule, R2T,
//! several H2CData, MDTS), Compare, Write Zeroes, deallocate, flush,
//! read-only namespaces, digests, malformed PDUs, keep-alive expiry — on
//! both engines. The Linux host runs in `tests/vm/zctarget-nvme.sh`.

use std::time::Duration;

use zctarget_protocol::nvme::Status;
use zctarget_tests::nvme_client::{
    self, parse_discovery_log, NvmeQueue, QueueOptions, DISCOVERY_NQN,
};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-11.io.zctarget.test:nvmf";
const HOST: &str = "nqn.2026-11.io.zctarget.test:host-a";
const STRANGER: &str = "nqn.2026-11.io.zctarget.test:stranger";
const BS: usize = 512;

fn start(engine: &str, policy: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = []\nnvme_listen = [\"127.0.0.1:0\"]\n\
         io_engine = \"{engine}\"\nstatus_policy = \"{policy}\"\nreactors = 2\n\
         poison_on_release = true\nbuffer_pool = \"32MiB\"\n\n\
         [[volumes]]\nname = \"data\"\npath = \"data.img\"\nsize = \"32MiB\"\n\n\
         [[volumes]]\nname = \"ro\"\nbackend = \"memory\"\nsize = \"4MiB\"\nread_only = true\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"data\", \"ro\"]\nhosts = [\"{HOST}\"]\n"
    ))
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Status type and code, without DNR/More/CRD.
trait Kind {
    fn kind(&self) -> (u8, u8);
}

impl Kind for Status {
    fn kind(&self) -> (u8, u8) {
        (self.sct.code(), self.sc)
    }
}

fn ok(r: std::io::Result<nvme_client::Reply>) -> nvme_client::Reply {
    let r = r.expect("command");
    assert!(r.status().is_success(), "status {:?}", r.status());
    r
}

fn status(r: std::io::Result<nvme_client::Reply>) -> Status {
    r.expect("command").status()
}

fn full_path(engine: &str, policy: &str) {
    let d = start(engine, policy);

    // Discovery: the allowed host sees the subsystem on the listener; a
    // stranger sees nothing.
    let mut disc = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(DISCOVERY_NQN, HOST))
        .expect("discovery");
    let page = ok(disc.get_log_page(0x70, 4096)).data;
    let (_gen, recs) = parse_discovery_log(&page);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].subnqn, NQN);
    assert_eq!(recs[0].traddr, "127.0.0.1");
    assert_eq!(recs[0].trsvcid, d.nvme_port.to_string());
    assert_eq!((recs[0].trtype, recs[0].adrfam, recs[0].subtype), (3, 1, 2));
    drop(disc);
    let mut disc = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(DISCOVERY_NQN, STRANGER))
        .expect("discovery");
    let page = ok(disc.get_log_page(0x70, 4096)).data;
    assert!(parse_discovery_log(&page).1.is_empty());
    drop(disc);

    // The host ACL.
    let (_q, r) =
        NvmeQueue::connect(d.nvme_addr(), &QueueOptions::admin(NQN, STRANGER)).expect("connect");
    assert_eq!(
        r.status().kind(),
        Status::CONNECT_INVALID_HOST.kind(),
        "{:?}",
        r.status()
    );
    let (_q, r) = NvmeQueue::connect(
        d.nvme_addr(),
        &QueueOptions::admin("nqn.2026-11.io.zctarget.test:nope", HOST),
    )
    .expect("connect");
    assert!(!r.status().is_success());

    // Admin queue, controller enabled, identify.
    let mut admin =
        NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let ctrl = ok(admin.identify(1, 0)).data;
    assert_eq!(ctrl.len(), 4096);
    let subnqn = String::from_utf8_lossy(&ctrl[768..1024])
        .trim_end_matches('\0')
        .to_owned();
    assert_eq!(subnqn, NQN);
    assert_eq!(ctrl[77], 8, "MDTS");
    let ns = ok(admin.identify(0, 1)).data;
    assert_eq!(
        u64::from_le_bytes(ns[0..8].try_into().unwrap()),
        (32 << 20) / BS as u64
    );
    let list = ok(admin.identify(2, 0)).data;
    assert_eq!(&list[0..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
    // Identifiers are stable: a second controller reports the same NGUID.
    let desc = ok(admin.identify(3, 1)).data;
    assert_ne!(&desc[..4], &[0, 0, 0, 0]);

    // I/O queue on the same controller.
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());

    for (i, len) in [512usize, 4096, 8192, 64 << 10, 300 << 10, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, i as u64);
        let lba = (i as u64) * 4096;
        ok(io.write(1, lba, &data, BS, i % 2 == 0));
        let back = ok(io.read(1, lba, (len / BS) as u32, BS)).data;
        assert!(back == data, "{len} bytes did not read back");
    }
    // Beyond MDTS (1 MiB).
    let too_big = pattern((1 << 20) + 4096, 9);
    assert!(!status(io.read(1, 0, ((1 << 20) / BS + 8) as u32, BS)).is_success());
    assert!(!status(io.write(1, 0, &too_big, BS, false)).is_success());
    // Out of range.
    let blocks = (32u64 << 20) / BS as u64;
    assert_eq!(
        status(io.read(1, blocks - 1, 2, BS)).kind(),
        Status::LBA_OUT_OF_RANGE.kind()
    );

    // Compare: equal, then different.
    // (LBA 4096 holds the 4 KiB written with seed 1 above.)
    let data = pattern(4096, 1);
    assert!(status(io.compare(1, 4096, &data, BS)).is_success());
    let other = pattern(4096, 77);
    assert_eq!(
        status(io.compare(1, 4096, &other, BS)).kind(),
        Status::COMPARE_FAILURE.kind()
    );

    // Write Zeroes and deallocate read back as zeroes; flush.
    ok(io.write_zeroes(1, 0, 8, false));
    assert!(ok(io.read(1, 0, 8, BS)).data.iter().all(|&b| b == 0));
    ok(io.deallocate(1, &[(4096, 16), (8192, 8)]));
    assert!(ok(io.read(1, 4096, 16, BS)).data.iter().all(|&b| b == 0));
    ok(io.flush(1));

    // The read-only namespace refuses writes.
    let s = status(io.write(2, 0, &pattern(4096, 3), BS, false));
    assert!(
        s.kind() == Status::NS_WRITE_PROTECTED.kind() || s.kind() == Status::READ_ONLY_RANGE.kind(),
        "{s:?}"
    );
    ok(io.read(2, 0, 8, BS));

    // The SMART / Health log counts what the host did.
    let smart = ok(admin.get_log_page(0x02, 512)).data;
    let units_read = u128::from_le_bytes(smart[32..48].try_into().unwrap());
    let reads = u128::from_le_bytes(smart[64..80].try_into().unwrap());
    let writes = u128::from_le_bytes(smart[80..96].try_into().unwrap());
    assert!(units_read >= 3, "data units read {units_read}");
    assert!(reads >= 6 && writes >= 6, "reads {reads} writes {writes}");

    // A second I/O queue, then disconnect both.
    o.qid = 2;
    let (mut io2, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io2");
    assert!(r.status().is_success());
    ok(io2.read(1, 0, 8, BS));
    ok(io2.disconnect());
    ok(io.disconnect());
    ok(admin.keep_alive());
    drop(io2);
    drop(io);
    drop(admin);
    assert!(
        d.pool_full_after_disconnects(1),
        "pool not full after disconnect:\n{}",
        d.log()
    );
}

#[test]
fn uring_strict_full_path() {
    full_path("uring", "strict");
}

#[test]
fn epoll_eager_full_path() {
    full_path("epoll", "eager");
}

#[test]
fn digests_round_trip() {
    let d = start("uring", "strict");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.hdgst = true;
    o.ddgst = true;
    let mut admin = NvmeQueue::admin(d.nvme_addr(), &o).expect("admin");
    ok(admin.identify(1, 0));
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io");
    assert!(r.status().is_success());
    for (i, len) in [4096usize, 256 << 10].into_iter().enumerate() {
        let data = pattern(len, 40 + i as u64);
        ok(io.write(1, 100, &data, BS, false));
        assert!(ok(io.read(1, 100, (len / BS) as u32, BS)).data == data);
    }
}

#[test]
fn malformed_pdus_end_only_their_connection() {
    let d = start("uring", "strict");
    let mut admin =
        NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut good, _) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io");
    ok(good.write(1, 0, &pattern(4096, 1), BS, false));

    let expect_term = |q: &mut NvmeQueue, fes: u16| {
        let pdu = q.recv().expect("C2HTermReq");
        assert_eq!(
            pdu.ch.pdu_type,
            zctarget_protocol::nvme_tcp::PduType::C2HTermReq
        );
        let got = u16::from_le_bytes([pdu.header[8], pdu.header[9]]);
        assert_eq!(got, fes);
        assert!(q.closed_within(Duration::from_secs(5)));
    };

    // Unknown PDU type: FES 01h (invalid PDU header field).
    let mut q = NvmeQueue::open(d.nvme_addr(), false, false).expect("open");
    q.send_raw(&[0x0A, 0, 8, 0, 8, 0, 0, 0]).expect("send");
    expect_term(&mut q, 1);

    // HLEN wrong for a CapsuleCmd.
    let mut q = NvmeQueue::open(d.nvme_addr(), false, false).expect("open");
    let mut bad = vec![0u8; 72];
    bad[0] = 0x04;
    bad[2] = 60;
    bad[4] = 72;
    q.send_raw(&bad).expect("send");
    expect_term(&mut q, 1);

    // H2CData for a command that asked for none.
    o.qid = 2;
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io2");
    assert!(r.status().is_success());
    let mut h2c = vec![0u8; 24];
    h2c[0] = 0x06;
    h2c[1] = 0x04;
    h2c[2] = 24;
    h2c[3] = 24;
    h2c[4..8].copy_from_slice(&(24u32 + 512).to_le_bytes());
    h2c[8..10].copy_from_slice(&999u16.to_le_bytes());
    h2c[16..20].copy_from_slice(&512u32.to_le_bytes());
    h2c.extend_from_slice(&[0u8; 512]);
    q.send_raw(&h2c).expect("send");
    expect_term(&mut q, 1);

    // H2CData beyond the R2T's range: FES 04h.
    o.qid = 5;
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io5");
    assert!(r.status().is_success());
    let mut sqe = zctarget_protocol::nvme::Sqe::new(0x01, 90);
    sqe.nsid = 1;
    sqe.dptr = zctarget_protocol::nvme::Sgl::transport(16384);
    sqe.cdw12 = 31;
    q.send_capsule(&sqe, &[]).expect("send");
    let r2t = q.recv().expect("R2T");
    assert_eq!(r2t.ch.pdu_type, zctarget_protocol::nvme_tcp::PduType::R2t);
    let ttag = u16::from_le_bytes([r2t.header[10], r2t.header[11]]);
    let h2c = zctarget_protocol::nvme_tcp::H2CData {
        flags: zctarget_protocol::nvme_tcp::PduFlags::LAST_PDU,
        pdo: 24,
        plen: 24 + 8192,
        cccid: 90,
        ttag,
        datao: 12288,
        datal: 8192,
    };
    q.send_pdu(&h2c.encode(), &[0u8; 8192]).expect("send");
    expect_term(&mut q, 4);

    // PDO inside the header (PDO/PLEN mismatch): FES 01h.
    let mut q = NvmeQueue::open(d.nvme_addr(), false, false).expect("open");
    let capsule = zctarget_protocol::nvme_tcp::CapsuleCmd {
        flags: zctarget_protocol::nvme_tcp::PduFlags::empty(),
        pdo: 40,
        plen: 72 + 512,
        sqe: zctarget_protocol::nvme::Sqe::new(0x01, 91).encode(),
    };
    let mut raw = capsule.encode().to_vec();
    raw.extend_from_slice(&[0u8; 512]);
    q.send_raw(&raw).expect("send");
    expect_term(&mut q, 1);

    // Wrong header digest: FES 03h.
    let mut hd = QueueOptions::admin(NQN, HOST);
    hd.hdgst = true;
    hd.qid = 3;
    hd.cntlid = admin.cntlid;
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &hd).expect("io3");
    assert!(r.status().is_success());
    let mut sqe = zctarget_protocol::nvme::Sqe::new(0x00, 77);
    sqe.nsid = 1;
    let capsule = zctarget_protocol::nvme_tcp::CapsuleCmd {
        flags: zctarget_protocol::nvme_tcp::PduFlags::HDGSTF,
        pdo: 0,
        plen: 76,
        sqe: sqe.encode(),
    };
    let mut raw = capsule.encode().to_vec();
    raw.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    q.send_raw(&raw).expect("send");
    expect_term(&mut q, 3);

    // A command before Connect: Command Sequence Error, connection stays.
    let mut q = NvmeQueue::open(d.nvme_addr(), false, false).expect("open");
    let s = status(q.flush(1));
    assert_eq!(s.kind(), Status::CMD_SEQ_ERROR.kind());

    // Wrong data digest on in-capsule write data: the command fails with a
    // transient transport error and nothing is written.
    let mut dd = QueueOptions::admin(NQN, HOST);
    dd.ddgst = true;
    dd.qid = 4;
    dd.cntlid = admin.cntlid;
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &dd).expect("io4");
    assert!(r.status().is_success());
    let mut sqe = zctarget_protocol::nvme::Sqe::new(0x01, 78);
    sqe.nsid = 1;
    sqe.dptr = zctarget_protocol::nvme::Sgl::in_capsule(4096);
    sqe.cdw12 = 7;
    let capsule = zctarget_protocol::nvme_tcp::CapsuleCmd {
        flags: zctarget_protocol::nvme_tcp::PduFlags::DDGSTF,
        pdo: 72,
        plen: 72 + 4096 + 4,
        sqe: sqe.encode(),
    };
    let mut raw = capsule.encode().to_vec();
    raw.extend_from_slice(&pattern(4096, 66));
    raw.extend_from_slice(&[1, 2, 3, 4]);
    q.send_raw(&raw).expect("send");
    let pdu = q.recv().expect("response");
    let cqe = zctarget_protocol::nvme::Cqe::parse(pdu.header[8..24].try_into().unwrap());
    assert_eq!(cqe.status.kind(), Status::TRANSIENT_TRANSPORT.kind());
    assert!(ok(q.read(1, 0, 8, BS)).data == pattern(4096, 1));

    // The first I/O queue and the admin queue never noticed.
    assert!(ok(good.read(1, 0, 8, BS)).data == pattern(4096, 1));
    ok(admin.keep_alive());
}

#[test]
fn silent_host_is_torn_down_after_keep_alive_timeout() {
    let d = start("epoll", "strict");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.kato_ms = 1000;
    let mut admin = NvmeQueue::admin(d.nvme_addr(), &o).expect("admin");
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io");
    assert!(r.status().is_success());
    ok(io.read(1, 0, 1, BS));
    // No Keep Alive: both queues close within a few seconds.
    assert!(
        admin.closed_within(Duration::from_secs(6)),
        "admin queue still open:\n{}",
        d.log()
    );
    assert!(
        io.closed_within(Duration::from_secs(3)),
        "I/O queue still open"
    );
    assert!(d.log().contains("keep-alive timeout"));
    // The controller is gone: an I/O queue cannot join it any more.
    o.qid = 2;
    let (_q, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("connect");
    assert!(!r.status().is_success());
}

/// The next CapsuleResp's status (a hostile host's view).
fn next_status(q: &mut NvmeQueue) -> Status {
    let pdu = q.recv().expect("response");
    assert_eq!(
        pdu.ch.pdu_type,
        zctarget_protocol::nvme_tcp::PduType::CapsuleResp,
        "expected a CapsuleResp"
    );
    let r = zctarget_protocol::nvme_tcp::CapsuleResp::parse(
        pdu.header[..24].try_into().expect("24 bytes"),
    )
    .expect("CapsuleResp");
    zctarget_protocol::nvme::Cqe::parse(&r.cqe).status
}

/// In-capsule data must be exactly what the SGL describes, and the SGL
/// exactly the transfer (issue #11, defect 7): anything else is Data SGL
/// Length Invalid and nothing reaches the volume.
#[test]
fn in_capsule_data_must_match_its_sgl() {
    use zctarget_protocol::nvme::{Sgl, Sqe};
    let d = start("uring", "strict");
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut q, _) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io");
    let before = pattern(4096, 5);
    ok(q.write(1, 64, &before, BS, false));
    let junk = pattern(8192, 6);
    // (blocks, SGL, descriptor kind, bytes carried)
    let cases = [
        (8u32, 4096u32, true, 1024usize),
        (8, 4096, true, 1225),
        (8, 4096, true, 8192),
        (1, 512, true, 1024),
        (2, 512, true, 512),
        (8, 4096, false, 1024),
    ];
    for (i, &(blocks, sgl, in_capsule, carried)) in cases.iter().enumerate() {
        let mut sqe = Sqe::new(0x01, 0x300 + i as u16);
        sqe.nsid = 1;
        sqe.dptr = if in_capsule {
            Sgl::in_capsule(sgl)
        } else {
            Sgl::transport(sgl)
        };
        sqe.cdw10 = 64;
        sqe.cdw12 = blocks - 1;
        q.send_capsule(&sqe, &junk[..carried]).expect("send");
        let st = next_status(&mut q);
        assert_eq!(
            st.kind(),
            (0, 0x0F),
            "case {i} ({blocks} blocks, SGL {sgl}, carried {carried}): {st:?}"
        );
        assert!(st.dnr, "case {i}: must not be retried");
    }
    // Nothing was written; the queue still works.
    assert_eq!(ok(q.read(1, 64, 8, BS)).data, before);
    ok(q.write(1, 64, &junk[..4096], BS, false));
    assert_eq!(ok(q.read(1, 64, 8, BS)).data, junk[..4096].to_vec());
}
