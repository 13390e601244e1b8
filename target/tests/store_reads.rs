//! Reads from a memory volume leave straight from its store — the iovecs
//! of the copying `sendmsg` point into the RAM disk — not through a copy
//! into leased buffers first. Counted through the metrics (never timed):
//! `zctarget_store_queued_bytes_total` grows by exactly the reads' bytes
//! when the send copies (loopback: `zerocopy = "auto"` copies), and not at
//! all with a data digest (the bytes must be in userspace) or when the
//! payload goes `MSG_ZEROCOPY` (the kernel would read the store after
//! `sendmsg` returned, possibly after a later write changed it). The data
//! is checked byte for byte: after rewrites, when the socket fills inside
//! a range (a host that pauses reading), on both engines and protocols.

use std::time::Duration;

use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:store";
const NQN: &str = "nqn.2026-12.io.zctarget.test:store";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const BS: usize = 512;
const VOLUME: usize = 8 << 20;
const MIB: usize = 1 << 20;

fn start(engine: &str, zerocopy: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\n\
         nvme_listen = [\"127.0.0.1:0\"]\nio_engine = \"{engine}\"\nreactors = 1\n\
         metrics_listen = \"127.0.0.1:0\"\nbuffer_pool = \"64MiB\"\nzerocopy = \"{zerocopy}\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"8MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"v\"]\nhosts = [\"{HOST}\"]\n"
    ))
}

fn store_bytes(d: &Daemon) -> f64 {
    d.metric("zctarget_store_queued_bytes_total")
        .expect("metric zctarget_store_queued_bytes_total")
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..VOLUME)
        .map(|x| ((x / BS) as u8).wrapping_mul(31) ^ (x as u8).wrapping_mul(7) ^ seed)
        .collect()
}

/// (offset, length) of the reads checked one at a time.
const READS: [(usize, usize); 5] = [
    (5 * BS, 4096),
    (0, 128 << 10),
    (3 * BS, 64 << 10),
    (MIB + 7 * BS, MIB),
    (VOLUME - (256 << 10), 256 << 10),
];

fn read_bytes() -> usize {
    READS.iter().map(|r| r.1).sum()
}

fn nvme_io(d: &Daemon, qid: u16, cntlid: u16, ddgst: bool) -> NvmeQueue {
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = qid;
    o.cntlid = cntlid;
    o.ddgst = ddgst;
    let (io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    io
}

fn nvme_write_all(io: &mut NvmeQueue, data: &[u8]) {
    for (k, chunk) in data.chunks(MIB).enumerate() {
        let r = io
            .write(1, (k * MIB / BS) as u64, chunk, BS, false)
            .expect("write");
        assert!(r.status().is_success(), "write {k}: {:?}", r.status());
    }
}

fn nvme_reads_leave_from_the_store(engine: &str) {
    let d = start(engine, "auto");
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut io = nvme_io(&d, 1, admin.cntlid, false);
    // Twice, with different data: a read sees the write before it.
    for seed in [0u8, 0xa5] {
        let data = pattern(seed);
        nvme_write_all(&mut io, &data);
        let before = store_bytes(&d);
        for &(off, len) in &READS {
            let r = io
                .read(1, (off / BS) as u64, (len / BS) as u32, BS)
                .expect("read");
            assert!(r.status().is_success(), "{:?}", r.status());
            assert!(r.data == data[off..off + len], "read at {off}+{len}");
        }
        assert_eq!(
            store_bytes(&d) - before,
            read_bytes() as f64,
            "bytes sent from the store: every read's"
        );
    }
    let data = pattern(0xa5);

    // Sixteen 1 MiB reads queued at once to a host that pauses reading: the
    // socket fills inside a range, which resumes where it stopped.
    let before = store_bytes(&d);
    let reads: Vec<(u16, usize, usize)> = (0..16usize)
        .map(|k| {
            let off = (k * 5 * (64 << 10) + 3 * BS) % (VOLUME - MIB + 1) / BS * BS;
            (0x5000 + k as u16, off, MIB)
        })
        .collect();
    let got = io
        .reads_at_once(1, BS, &reads, Duration::from_millis(300))
        .expect("reads at once");
    for (&(cid, off, _), got) in reads.iter().zip(&got) {
        assert!(got[..] == data[off..off + MIB], "read {cid:#x} at {off}");
    }
    assert_eq!(store_bytes(&d) - before, (16 * MIB) as f64);

    // With a data digest the bytes must be in userspace: leased and copied.
    let mut dq = nvme_io(&d, 2, admin.cntlid, true);
    let before = store_bytes(&d);
    let r = dq.read(1, 0, (MIB / BS) as u32, BS).expect("read");
    assert!(r.status().is_success(), "{:?}", r.status());
    assert!(r.data == data[..MIB], "digest read");
    assert_eq!(store_bytes(&d), before, "store send with a data digest");
    drop((io, dq, admin));
    d.wait_metric(
        "zctarget_connections{protocol=\"nvme_tcp\"}",
        0.0,
        Duration::from_secs(5),
    );
    assert!(d.pool_full_after_disconnects(1), "pool not intact");
}

/// Zero-copy sends never reference the store: the reads go through leases.
fn nvme_zero_copy_reads_are_leased(engine: &str) {
    let d = start(engine, "always");
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut io = nvme_io(&d, 1, admin.cntlid, false);
    let data = pattern(0x3c);
    nvme_write_all(&mut io, &data);
    let (before, zc_before) = (
        store_bytes(&d),
        d.metric("zctarget_zerocopy_sends_total")
            .expect("zero-copy sends"),
    );
    for &(off, len) in &READS {
        let r = io
            .read(1, (off / BS) as u64, (len / BS) as u32, BS)
            .expect("read");
        assert!(r.status().is_success(), "{:?}", r.status());
        assert!(r.data == data[off..off + len], "read at {off}+{len}");
    }
    assert_eq!(store_bytes(&d), before, "a zero-copy send from the store");
    let zc = d
        .metric("zctarget_zerocopy_sends_total")
        .expect("zero-copy sends")
        - zc_before;
    assert!(
        zc >= READS.len() as f64,
        "{zc} zero-copy sends for the reads"
    );
}

fn iscsi_reads_leave_from_the_store(engine: &str) {
    let d = start(engine, "auto");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    let data = pattern(0x5a);
    for (k, chunk) in data.chunks(256 << 10).enumerate() {
        let st = i
            .write((k * (256 << 10) / BS) as u64, chunk, false)
            .expect("write");
        assert_eq!(st, 0, "write {k}");
    }
    let before = store_bytes(&d);
    for &(off, len) in &READS {
        let (st, back) = i.read((off / BS) as u64, (len / BS) as u32).expect("read");
        assert_eq!(st, 0);
        assert!(back == data[off..off + len], "read at {off}+{len}");
    }
    assert_eq!(store_bytes(&d) - before, read_bytes() as f64);

    // Eight 1 MiB reads to an initiator that pauses reading.
    let before = store_bytes(&d);
    let offs: Vec<usize> = (0..8usize)
        .map(|k| (k * 3 * (64 << 10) + BS) % (VOLUME - MIB + 1) / BS * BS)
        .collect();
    let lbas: Vec<u64> = offs.iter().map(|&o| (o / BS) as u64).collect();
    let got = i
        .reads_at_once(&lbas, MIB, Duration::from_millis(300))
        .expect("reads at once");
    for (k, g) in got.iter().enumerate() {
        assert!(g[..] == data[offs[k]..offs[k] + MIB], "read {k}");
    }
    assert_eq!(store_bytes(&d) - before, (8 * MIB) as f64);

    // A session with a data digest reads into leased buffers.
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
    let before = store_bytes(&d);
    let (st, back) = dg.read(0, (MIB / BS) as u32).expect("digest read");
    assert_eq!(st, 0);
    assert!(back == data[..MIB], "digest read");
    assert_eq!(store_bytes(&d), before, "store send with a data digest");
}

#[test]
fn nvme_reads_leave_from_the_store_uring() {
    nvme_reads_leave_from_the_store("uring");
}

#[test]
fn nvme_reads_leave_from_the_store_epoll() {
    nvme_reads_leave_from_the_store("epoll");
}

#[test]
fn nvme_zero_copy_reads_are_leased_uring() {
    nvme_zero_copy_reads_are_leased("uring");
}

#[test]
fn iscsi_reads_leave_from_the_store_uring() {
    iscsi_reads_leave_from_the_store("uring");
}

#[test]
fn iscsi_reads_leave_from_the_store_epoll() {
    iscsi_reads_leave_from_the_store("epoll");
}
