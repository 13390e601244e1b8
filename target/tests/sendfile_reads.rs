//! Reads of at least 64 KiB from a volume file in memory (tmpfs) leave by
//! `sendfile` — the page-cache pages go to the socket by reference — not
//! by a `preadv` into leased buffers and a copying `sendmsg`. Counted
//! through the metrics (never timed): `zctarget_sendfile_sent_bytes_total`
//! grows by exactly the large reads' bytes and not at all for small reads
//! or with a data digest, whose bytes must be in memory; the data is
//! checked byte for byte, also when the socket fills (a host that pauses
//! reading, so `sendfile` writes part of a range and resumes), on both
//! engines and both protocols.

use std::time::Duration;

use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:sendfile";
const NQN: &str = "nqn.2026-12.io.zctarget.test:sendfile";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const BS: usize = 512;
const VOLUME: usize = 8 << 20;
const MIB: usize = 1 << 20;

/// A daemon whose volume file lives on tmpfs (`/dev/shm`); `None` (with a
/// printed reason) where there is no tmpfs there.
fn start(engine: &str) -> Option<(Daemon, tempfile::TempDir)> {
    let tmpfs = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/dev/shm") && l.contains(" tmpfs "));
    if !tmpfs {
        eprintln!("skipped: /dev/shm is not a tmpfs");
        return None;
    }
    let shm = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
    let path = shm.path().join("v.img");
    let d = Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\n\
         nvme_listen = [\"127.0.0.1:0\"]\nio_engine = \"{engine}\"\nreactors = 1\n\
         metrics_listen = \"127.0.0.1:0\"\nbuffer_pool = \"64MiB\"\n\n\
         [[volumes]]\nname = \"v\"\npath = \"{}\"\nsize = \"8MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"v\"]\nhosts = [\"{HOST}\"]\n",
        path.display()
    ));
    Some((d, shm))
}

fn metric(d: &Daemon, series: &str) -> f64 {
    d.metric(series)
        .unwrap_or_else(|| panic!("metric {series}"))
}

fn sendfile_bytes(d: &Daemon) -> f64 {
    metric(d, "zctarget_sendfile_sent_bytes_total")
}

fn pattern() -> Vec<u8> {
    (0..VOLUME)
        .map(|x| ((x / BS) as u8).wrapping_mul(31) ^ (x as u8).wrapping_mul(7))
        .collect()
}

/// (offset, length) of the reads checked one at a time: large ones of
/// several sizes and alignments, and one small one that is copied.
const READS: [(usize, usize); 5] = [
    (0, 128 << 10),
    (3 * BS, 64 << 10),
    (MIB + 7 * BS, MIB),
    (VOLUME - (256 << 10), 256 << 10),
    (5 * BS, 4096),
];

fn large_bytes() -> usize {
    READS.iter().filter(|r| r.1 >= 64 << 10).map(|r| r.1).sum()
}

fn nvme_reads_go_by_sendfile(engine: &str) {
    let Some((d, _shm)) = start(engine) else {
        return;
    };
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    let data = pattern();
    for (k, chunk) in data.chunks(MIB).enumerate() {
        let r = io
            .write(1, (k * MIB / BS) as u64, chunk, BS, false)
            .expect("write");
        assert!(r.status().is_success(), "write {k}: {:?}", r.status());
    }

    // One at a time.
    let before = sendfile_bytes(&d);
    for &(off, len) in &READS {
        let r = io
            .read(1, (off / BS) as u64, (len / BS) as u32, BS)
            .expect("read");
        assert!(r.status().is_success(), "{:?}", r.status());
        assert!(r.data == data[off..off + len], "read at {off}+{len}");
    }
    assert_eq!(
        sendfile_bytes(&d) - before,
        large_bytes() as f64,
        "bytes sent by sendfile: every read of 64 KiB and more, nothing of the 4 KiB one"
    );

    // Sixteen 1 MiB reads queued at once to a host that pauses reading:
    // the socket fills inside a file range, which resumes where it
    // stopped once there is room.
    let before = sendfile_bytes(&d);
    let full_before = metric(&d, "zctarget_sendmsg_would_block_total");
    let reads: Vec<(u16, usize, usize)> = (0..16usize)
        .map(|k| {
            let off = (k * 5 * (64 << 10)) % (VOLUME - MIB + 1) / BS * BS;
            (0x5000 + k as u16, off, MIB)
        })
        .collect();
    let got = io
        .reads_at_once(1, BS, &reads, Duration::from_millis(300))
        .expect("reads at once");
    for (&(cid, off, _), got) in reads.iter().zip(&got) {
        assert!(got[..] == data[off..off + MIB], "read {cid:#x} at {off}");
    }
    assert_eq!(sendfile_bytes(&d) - before, (16 * MIB) as f64);
    let full = metric(&d, "zctarget_sendmsg_would_block_total") - full_before;
    assert!(full <= 1.0, "{full} sends found the socket full");

    // With a data digest the bytes must be in memory: read as before.
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 2;
    o.cntlid = admin.cntlid;
    o.ddgst = true;
    let (mut dq, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("digest queue");
    assert!(r.status().is_success(), "{:?}", r.status());
    let before = sendfile_bytes(&d);
    let r = dq.read(1, 0, (MIB / BS) as u32, BS).expect("read");
    assert!(r.status().is_success(), "{:?}", r.status());
    assert!(r.data == data[..MIB], "digest read");
    assert_eq!(sendfile_bytes(&d), before, "sendfile with a data digest");
    drop((io, dq, admin));
    d.wait_metric(
        "zctarget_connections{protocol=\"nvme_tcp\"}",
        0.0,
        Duration::from_secs(5),
    );
    assert!(d.pool_full_after_disconnects(1), "pool not intact");
}

fn iscsi_reads_go_by_sendfile(engine: &str) {
    let Some((d, _shm)) = start(engine) else {
        return;
    };
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    let data = pattern();
    for (k, chunk) in data.chunks(256 << 10).enumerate() {
        let st = i
            .write((k * (256 << 10) / BS) as u64, chunk, false)
            .expect("write");
        assert_eq!(st, 0, "write {k}");
    }
    let before = sendfile_bytes(&d);
    for &(off, len) in &READS {
        let (st, back) = i.read((off / BS) as u64, (len / BS) as u32).expect("read");
        assert_eq!(st, 0);
        assert!(back == data[off..off + len], "read at {off}+{len}");
    }
    assert_eq!(
        sendfile_bytes(&d) - before,
        large_bytes() as f64,
        "bytes sent by sendfile: every read of 64 KiB and more, nothing of the 4 KiB one"
    );

    // Eight 1 MiB reads to an initiator that pauses reading.
    let before = sendfile_bytes(&d);
    let offs: Vec<usize> = (0..8usize)
        .map(|k| (k * 3 * (64 << 10)) % (VOLUME - MIB + 1) / BS * BS)
        .collect();
    let lbas: Vec<u64> = offs.iter().map(|&o| (o / BS) as u64).collect();
    let got = i
        .reads_at_once(&lbas, MIB, Duration::from_millis(300))
        .expect("reads at once");
    for (k, g) in got.iter().enumerate() {
        assert!(g[..] == data[offs[k]..offs[k] + MIB], "read {k}");
    }
    assert_eq!(sendfile_bytes(&d) - before, (8 * MIB) as f64);

    // A session with a data digest reads into memory.
    let (mut dg, _) = Iscsi::login_only(
        d.iscsi_port,
        IQN,
        "iqn.2026-12.test:digest",
        BS,
        "ImmediateData=No\0InitialR2T=Yes\0MaxRecvDataSegmentLength=65536\0\
         MaxBurstLength=262144\0FirstBurstLength=65536\0",
        [true, true],
    )
    .expect("digest login");
    assert!(dg.data_digest, "data digest negotiated");
    for _ in 0..3 {
        if dg.test_unit_ready().expect("TUR") == 0 {
            break;
        }
    }
    let before = sendfile_bytes(&d);
    let (st, back) = dg.read(0, (MIB / BS) as u32).expect("digest read");
    assert_eq!(st, 0);
    assert!(back == data[..MIB], "digest read");
    assert_eq!(sendfile_bytes(&d), before, "sendfile with a data digest");
}

#[test]
fn nvme_reads_go_by_sendfile_uring() {
    nvme_reads_go_by_sendfile("uring");
}

#[test]
fn nvme_reads_go_by_sendfile_epoll() {
    nvme_reads_go_by_sendfile("epoll");
}

#[test]
fn iscsi_reads_go_by_sendfile_uring() {
    iscsi_reads_go_by_sendfile("uring");
}

#[test]
fn iscsi_reads_go_by_sendfile_epoll() {
    iscsi_reads_go_by_sendfile("epoll");
}
