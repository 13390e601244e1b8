//! Reads sent from where the volume keeps its data instead of through a
//! copy into leased buffers first (`block::direct_read`), counted through
//! the metrics (never timed), on both engines and both protocols:
//!
//! - **a file in memory** (tmpfs): reads of at least 64 KiB leave by
//!   `sendfile` — the page-cache pages go to the socket by reference —
//!   `zctarget_sendfile_sent_bytes_total` grows by exactly their bytes,
//!   not at all for smaller reads;
//! - **a memory volume** (the RAM disk): every read whose send copies (on
//!   loopback `zerocopy = "auto"` copies) leaves from the store, the
//!   copying `sendmsg`'s iovecs pointing into it —
//!   `zctarget_store_queued_bytes_total` grows by exactly the reads' bytes;
//!   with `zerocopy = "always"` it does not grow: such reads are leased
//!   and the leases sent zero-copy (the store itself never is, see
//!   `MemoryRange`).
//!
//! Neither with a data digest, whose bytes must be in userspace. The data
//! is checked byte for byte: after a rewrite, when the socket fills inside
//! a range (a host that pauses reading, so the send stops part-way and
//! resumes), and through the digest path.

use std::time::Duration;

use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:direct";
const NQN: &str = "nqn.2026-12.io.zctarget.test:direct";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const BS: usize = 512;
const VOLUME: usize = 8 << 20;
const MIB: usize = 1 << 20;

/// Where the volume keeps its data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A file on tmpfs: large reads by `sendfile`.
    TmpfsFile,
    /// A memory volume: every copied read from its store.
    Memory,
}

impl Kind {
    fn metric(self) -> &'static str {
        match self {
            Kind::TmpfsFile => "zctarget_sendfile_sent_bytes_total",
            Kind::Memory => "zctarget_store_queued_bytes_total",
        }
    }

    /// Whether a read of `len` bytes leaves directly.
    fn direct(self, len: usize) -> bool {
        match self {
            Kind::TmpfsFile => len >= 64 << 10,
            Kind::Memory => true,
        }
    }
}

/// A daemon serving one 8 MiB volume of `kind`, with `zerocopy` mode;
/// `None` (with a printed reason) where `/dev/shm` is not a tmpfs.
fn start(engine: &str, kind: Kind, zerocopy: &str) -> Option<(Daemon, Option<tempfile::TempDir>)> {
    let (volume, dir) = match kind {
        Kind::Memory => ("backend = \"memory\"".to_owned(), None),
        Kind::TmpfsFile => {
            let tmpfs = std::fs::read_to_string("/proc/mounts")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some("/dev/shm") && l.contains(" tmpfs "));
            if !tmpfs {
                eprintln!("skipped: /dev/shm is not a tmpfs");
                return None;
            }
            let shm = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
            let path = format!("path = \"{}\"", shm.path().join("v.img").display());
            (path, Some(shm))
        }
    };
    let d = Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\n\
         nvme_listen = [\"127.0.0.1:0\"]\nio_engine = \"{engine}\"\nreactors = 1\n\
         metrics_listen = \"127.0.0.1:0\"\nbuffer_pool = \"64MiB\"\nzerocopy = \"{zerocopy}\"\n\n\
         [[volumes]]\nname = \"v\"\n{volume}\nsize = \"8MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"v\"]\nhosts = [\"{HOST}\"]\n"
    ));
    Some((d, dir))
}

fn sent(d: &Daemon, kind: Kind) -> f64 {
    d.metric(kind.metric())
        .unwrap_or_else(|| panic!("metric {}", kind.metric()))
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..VOLUME)
        .map(|x| ((x / BS) as u8).wrapping_mul(31) ^ (x as u8).wrapping_mul(7) ^ seed)
        .collect()
}

/// (offset, length) of the reads checked one at a time: several sizes
/// and alignments, a small one among them.
const READS: [(usize, usize); 5] = [
    (5 * BS, 4096),
    (0, 128 << 10),
    (3 * BS, 64 << 10),
    (MIB + 7 * BS, MIB),
    (VOLUME - (256 << 10), 256 << 10),
];

/// Bytes of [`READS`] that leave directly from `kind`.
fn direct_bytes(kind: Kind) -> f64 {
    READS
        .iter()
        .filter(|r| kind.direct(r.1))
        .map(|r| r.1)
        .sum::<usize>() as f64
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

/// Each of [`READS`], one at a time, checked against `data`.
fn nvme_check_reads(io: &mut NvmeQueue, data: &[u8]) {
    for &(off, len) in &READS {
        let r = io
            .read(1, (off / BS) as u64, (len / BS) as u32, BS)
            .expect("read");
        assert!(r.status().is_success(), "{:?}", r.status());
        assert!(r.data == data[off..off + len], "read at {off}+{len}");
    }
}

fn nvme_reads(engine: &str, kind: Kind) {
    let Some((d, _dir)) = start(engine, kind, "auto") else {
        return;
    };
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut io = nvme_io(&d, 1, admin.cntlid, false);
    // Twice, with different data: a read sees the write before it.
    for seed in [0u8, 0xa5] {
        let data = pattern(seed);
        nvme_write_all(&mut io, &data);
        let before = sent(&d, kind);
        nvme_check_reads(&mut io, &data);
        assert_eq!(
            sent(&d, kind) - before,
            direct_bytes(kind),
            "bytes sent directly: every read's that may"
        );
    }
    let data = pattern(0xa5);

    // Sixteen 1 MiB reads queued at once to a host that pauses reading: the
    // socket fills inside a range, which resumes where it stopped.
    let before = sent(&d, kind);
    let full_before = d
        .metric("zctarget_sendmsg_would_block_total")
        .expect("would-block metric");
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
    assert_eq!(sent(&d, kind) - before, (16 * MIB) as f64);
    let full = d
        .metric("zctarget_sendmsg_would_block_total")
        .expect("would-block metric")
        - full_before;
    assert!(full <= 1.0, "{full} sends found the socket full");

    // With a data digest the bytes must be in userspace: leased and copied.
    let mut dq = nvme_io(&d, 2, admin.cntlid, true);
    let before = sent(&d, kind);
    let r = dq.read(1, 0, (MIB / BS) as u32, BS).expect("read");
    assert!(r.status().is_success(), "{:?}", r.status());
    assert!(r.data == data[..MIB], "digest read");
    assert_eq!(sent(&d, kind), before, "sent directly with a data digest");
    drop((io, dq, admin));
    d.wait_metric(
        "zctarget_connections{protocol=\"nvme_tcp\"}",
        0.0,
        Duration::from_secs(5),
    );
    assert!(d.pool_full_after_disconnects(1), "pool not intact");
}

fn iscsi_reads(engine: &str, kind: Kind) {
    let Some((d, _dir)) = start(engine, kind, "auto") else {
        return;
    };
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    let data = pattern(0x5a);
    for (k, chunk) in data.chunks(256 << 10).enumerate() {
        let st = i
            .write((k * (256 << 10) / BS) as u64, chunk, false)
            .expect("write");
        assert_eq!(st, 0, "write {k}");
    }
    let before = sent(&d, kind);
    for &(off, len) in &READS {
        let (st, back) = i.read((off / BS) as u64, (len / BS) as u32).expect("read");
        assert_eq!(st, 0);
        assert!(back == data[off..off + len], "read at {off}+{len}");
    }
    assert_eq!(sent(&d, kind) - before, direct_bytes(kind));

    // Eight 1 MiB reads to an initiator that pauses reading.
    let before = sent(&d, kind);
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
    assert_eq!(sent(&d, kind) - before, (8 * MIB) as f64);

    // A session with a data digest reads into leased buffers.
    let mut dg = Iscsi::login_with_digests(d.iscsi_port, IQN, "iqn.2026-12.test:digest", BS)
        .expect("digest login");
    let before = sent(&d, kind);
    let (st, back) = dg.read(0, (MIB / BS) as u32).expect("digest read");
    assert_eq!(st, 0);
    assert!(back == data[..MIB], "digest read");
    assert_eq!(sent(&d, kind), before, "sent directly with a data digest");
}

/// Zero-copy sends never reference a memory volume's store: its reads go
/// through leases.
fn nvme_zero_copy_reads_are_leased(engine: &str) {
    let Some((d, _)) = start(engine, Kind::Memory, "always") else {
        return;
    };
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut io = nvme_io(&d, 1, admin.cntlid, false);
    let data = pattern(0x3c);
    nvme_write_all(&mut io, &data);
    let zero_copy = |d: &Daemon| {
        d.metric("zctarget_zerocopy_sends_total")
            .expect("zero-copy sends")
    };
    let (before, zc_before) = (sent(&d, Kind::Memory), zero_copy(&d));
    nvme_check_reads(&mut io, &data);
    assert_eq!(
        sent(&d, Kind::Memory),
        before,
        "a zero-copy send from the store"
    );
    let zc = zero_copy(&d) - zc_before;
    assert!(
        zc >= READS.len() as f64,
        "{zc} zero-copy sends for the reads"
    );
}

#[test]
fn nvme_reads_go_by_sendfile_uring() {
    nvme_reads("uring", Kind::TmpfsFile);
}

#[test]
fn nvme_reads_go_by_sendfile_epoll() {
    nvme_reads("epoll", Kind::TmpfsFile);
}

#[test]
fn iscsi_reads_go_by_sendfile_uring() {
    iscsi_reads("uring", Kind::TmpfsFile);
}

#[test]
fn iscsi_reads_go_by_sendfile_epoll() {
    iscsi_reads("epoll", Kind::TmpfsFile);
}

#[test]
fn nvme_reads_leave_from_the_store_uring() {
    nvme_reads("uring", Kind::Memory);
}

#[test]
fn nvme_reads_leave_from_the_store_epoll() {
    nvme_reads("epoll", Kind::Memory);
}

#[test]
fn iscsi_reads_leave_from_the_store_uring() {
    iscsi_reads("uring", Kind::Memory);
}

#[test]
fn iscsi_reads_leave_from_the_store_epoll() {
    iscsi_reads("epoll", Kind::Memory);
}

#[test]
fn nvme_zero_copy_reads_are_leased_uring() {
    nvme_zero_copy_reads_are_leased("uring");
}
