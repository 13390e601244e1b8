//! A quick end-to-end check of an NVMe/TCP target with the in-repo host:
//! the discovery controller's log must list the subsystem; then an admin
//! queue to the subsystem (controller enabled), Identify Controller and
//! Identify Namespace 1, an I/O queue, one 4 KiB write of fresh random data
//! and a read back that must return it. Prints a short summary; exits
//! non-zero on any failure. Used by tests/container/podman.sh against a
//! target in a container.
//!
//!   zc-nvme-probe --addr 127.0.0.1:4420 --nqn NQN [--hostnqn H] [--offset BYTES]

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use zctarget_tests::nvme_client::{
    parse_discovery_log, NvmeQueue, QueueOptions, Reply, DISCOVERY_NQN,
};

/// Bytes written and read back.
const PROBE_LEN: usize = 4096;

/// One end-to-end check of an NVMe/TCP target.
#[derive(clap::Parser)]
struct Args {
    /// Target address.
    #[arg(long, default_value = "127.0.0.1:4420")]
    addr: String,
    /// Subsystem NQN.
    #[arg(long)]
    nqn: String,
    /// Host NQN.
    #[arg(long, default_value = "nqn.2026-11.io.zctarget:probe-host")]
    hostnqn: String,
    /// Byte offset of the block written and read back.
    #[arg(long, default_value_t = 1 << 20)]
    offset: u64,
}

/// A completed command with a successful status.
fn ok(what: &str, r: std::io::Result<Reply>) -> anyhow::Result<Reply> {
    let r = r.with_context(|| what.to_owned())?;
    ensure!(r.status().is_success(), "{what}: {:?}", r.status());
    Ok(r)
}

/// An ASCII field of an Identify page, trimmed.
fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// Random-looking bytes that start with a token the caller can look for.
fn payload(token: &str) -> Vec<u8> {
    let mut data = vec![0u8; PROBE_LEN];
    let mut x = 0x9e37_79b9_7f4a_7c15u64
        ^ token
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data[..token.len()].copy_from_slice(token.as_bytes());
    data
}

fn main() -> ExitCode {
    match probe() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zc-nvme-probe: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn probe() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let addr = a.addr.as_str();

    // Discovery.
    let mut disc = NvmeQueue::admin(addr, &QueueOptions::admin(DISCOVERY_NQN, &a.hostnqn))
        .context("discovery controller")?;
    let page = ok("discovery Get Log Page", disc.get_log_page(0x70, 4096))?.data;
    let (genctr, recs) = parse_discovery_log(&page);
    let listed: Vec<String> = recs
        .iter()
        .filter(|r| r.subnqn == a.nqn)
        .map(|r| format!("{}:{}", r.traddr, r.trsvcid))
        .collect();
    println!(
        "discovery: {} record(s), generation {genctr}; {} at {}",
        recs.len(),
        a.nqn,
        if listed.is_empty() {
            "-".to_owned()
        } else {
            listed.join(", ")
        }
    );
    ensure!(
        !listed.is_empty(),
        "the discovery log does not list {}",
        a.nqn
    );
    drop(disc);

    // Admin queue, controller and namespace.
    let mut admin =
        NvmeQueue::admin(addr, &QueueOptions::admin(&a.nqn, &a.hostnqn)).context("admin queue")?;
    let ctrl = ok("Identify Controller", admin.identify(1, 0))?.data;
    ensure!(ctrl.len() >= 4096, "short Identify Controller data");
    let subnqn = ascii(&ctrl[768..1024]);
    ensure!(
        subnqn == a.nqn,
        "Identify Controller SUBNQN is {subnqn:?}, not {:?}",
        a.nqn
    );
    let namespaces = le32(&ctrl, 516);
    let ioccsz = le32(&ctrl, 1792) as usize;
    println!(
        "controller {}: model {:?}, serial {:?}, firmware {:?}, {namespaces} namespace(s)",
        admin.cntlid,
        ascii(&ctrl[24..64]),
        ascii(&ctrl[4..24]),
        ascii(&ctrl[64..72]),
    );
    ensure!(namespaces >= 1, "the controller reports no namespaces");
    let ns = ok("Identify Namespace 1", admin.identify(0, 1))?.data;
    ensure!(ns.len() >= 4096, "short Identify Namespace data");
    let nsze = le64(&ns, 0);
    let flbas = usize::from(ns[26] & 0x0f);
    let lbads = ns[128 + flbas * 4 + 2];
    ensure!(
        (9..=16).contains(&lbads),
        "unexpected LBA data size 2^{lbads}"
    );
    let bs = 1usize << lbads;
    println!(
        "namespace 1: {nsze} blocks of {bs} bytes ({} MiB)",
        (nsze * bs as u64) >> 20
    );
    ensure!(
        a.offset % bs as u64 == 0,
        "--offset {} is not a multiple of the block size {bs}",
        a.offset
    );
    let slba = a.offset / bs as u64;
    let blocks = (PROBE_LEN / bs).max(1);
    ensure!(
        slba + blocks as u64 <= nsze,
        "--offset {} is beyond the namespace",
        a.offset
    );

    // One I/O queue: write, read back, compare.
    let mut o = QueueOptions::admin(&a.nqn, &a.hostnqn);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    if ioccsz >= 4 {
        o.in_capsule = ioccsz * 16 - 64;
    }
    let (mut io, r) = NvmeQueue::connect(addr, &o).context("I/O queue")?;
    ensure!(
        r.status().is_success(),
        "I/O queue Connect: {:?}",
        r.status()
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("zc-nvme-probe:{:x}:{nanos:x}", std::process::id());
    let data = payload(&token);
    ok("Write", io.write(1, slba, &data, bs, true))?;
    let back = ok("Read", io.read(1, slba, blocks as u32, bs))?.data;
    ensure!(
        back.len() == data.len(),
        "Read returned {} bytes, expected {}",
        back.len(),
        data.len()
    );
    if let Some(at) = back.iter().zip(&data).position(|(x, y)| x != y) {
        anyhow::bail!("read-back differs from the written data at byte {at}");
    }
    ok("Flush", io.flush(1))?;
    ok("Keep Alive", admin.keep_alive())?;
    println!(
        "wrote and read back {PROBE_LEN} bytes at offset {} (LBA {slba}): identical; token {token}",
        a.offset
    );
    println!("nvme probe ok");
    Ok(())
}
