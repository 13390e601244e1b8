//! A small NVMe/TCP load generator on the in-repo host: one admin queue,
//! then `--queues` I/O queues, each driven by its own thread with one
//! command in flight (so the queue depth is the number of queues), random
//! reads (or writes) of `--bs` bytes for `--seconds`. Reports IOPS and
//! throughput. There is no packaged userspace NVMe/TCP initiator to compare
//! with; this measures the target with a simple, honest client.
//!
//!   zc-nvme-perf --addr 127.0.0.1:4420 --nqn NQN [--hostnqn H] [--queues 8]
//!                [--bs 4096] [--seconds 10] [--write] [--blocks N]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};

/// Load generator for an NVMe/TCP target, on the in-repo host.
#[derive(clap::Parser)]
struct Args {
    /// Target address.
    #[arg(long, default_value = "127.0.0.1:4420")]
    addr: String,
    /// Subsystem NQN.
    #[arg(long)]
    nqn: String,
    /// Host NQN.
    #[arg(long, default_value = "nqn.2026-11.io.zctarget:perf-host")]
    hostnqn: String,
    /// I/O queues (= queue depth: one command in flight per queue).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    queues: u16,
    /// Bytes per command.
    #[arg(long, default_value_t = 4096)]
    bs: usize,
    /// Duration.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(..=3600))]
    seconds: u64,
    /// Random writes instead of reads.
    #[arg(long)]
    write: bool,
    /// Blocks of the namespace to address (default: all).
    #[arg(long)]
    blocks: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let mut admin = NvmeQueue::admin(a.addr.as_str(), &QueueOptions::admin(&a.nqn, &a.hostnqn))
        .context("admin queue")?;
    let ns = admin.identify(0, 1)?;
    let nsze = u64::from_le_bytes(ns.data[0..8].try_into()?);
    let flbas = usize::from(ns.data[26] & 0x0f);
    let lbads = ns.data[128 + flbas * 4 + 2];
    let lba = 1usize << lbads;
    let per_io = (a.bs / lba).max(1) as u32;
    let span = a.blocks.unwrap_or(nsze).min(nsze) / u64::from(per_io);
    anyhow::ensure!(span > 0, "namespace too small");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for q in 1..=a.queues {
        let mut o = QueueOptions::admin(&a.nqn, &a.hostnqn);
        o.qid = q;
        o.cntlid = admin.cntlid;
        let (mut io, r) = NvmeQueue::connect(a.addr.as_str(), &o).context("I/O queue")?;
        anyhow::ensure!(
            r.status().is_success(),
            "I/O queue {q} refused: {:?}",
            r.status()
        );
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        let write = a.write;
        let data = vec![0x5au8; per_io as usize * lba];
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(q);
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let slba = (x % span) * u64::from(per_io);
                let r = if write {
                    io.write(1, slba, &data, lba, false)?
                } else {
                    io.read(1, slba, per_io, lba)?
                };
                anyhow::ensure!(r.status().is_success(), "I/O failed: {:?}", r.status());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(a.seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let n = done.load(Ordering::Relaxed) as f64;
    let bytes = n * (per_io as f64) * lba as f64;
    println!(
        "{} {} B x {} queues (qd {}), {:.1} s: {:.0} IOPS, {:.1} MB/s",
        if a.write { "write" } else { "read" },
        per_io as usize * lba,
        a.queues,
        a.queues,
        elapsed,
        n / elapsed,
        bytes / elapsed / 1e6
    );
    let _ = admin.keep_alive();
    Ok(())
}
