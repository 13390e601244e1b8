//! An asynchronous NVMe/TCP load generator shaped like SPDK's `perf`: one
//! admin queue (Connect, controller enable, Identify), then `queues` I/O
//! queues — each its own TCP connection joined to the controller by its
//! CNTLID — spread over `threads` threads, each thread driving its queues
//! from one epoll loop (`engine`) with up to `qd` commands in flight per
//! queue. Latency of every command goes into a histogram (`hist`).
//!
//! The binary is `zc-nvme-perf` (`tests/src/bin/zc_nvme_perf.rs`); the
//! integration test `target/tests/nvme_perf.rs` calls [`run`] directly.

mod engine;
mod hist;

use std::time::{Duration, Instant};

use anyhow::Context;
pub use hist::Histogram;
use zctarget_protocol::nvme::fabrics::Connect;

use crate::nvme_client::{NvmeQueue, QueueOptions};

/// Random or sequential offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Rand,
    Seq,
}

/// Reads, writes, or a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rw {
    Read,
    Write,
    Mix,
}

/// Largest queue depth (the target's queues have 128 entries).
pub const MAX_QD: usize = 128;

/// What to run.
#[derive(Debug, Clone)]
pub struct PerfConfig {
    pub addr: String,
    pub nqn: String,
    pub hostnqn: String,
    pub nsid: u32,
    pub threads: usize,
    pub queues: usize,
    pub qd: usize,
    pub pattern: Pattern,
    pub rw: Rw,
    pub mix_read_pct: u8,
    /// Bytes per command (a multiple of the block size).
    pub bs: usize,
    pub run: Duration,
    pub warmup: Duration,
    /// Header and data digests.
    pub digest: bool,
    /// Keep SQ flow control (default: disabled in Connect, as SPDK's host
    /// does, which lets the target end a read with the C2HData SUCCESS flag).
    pub sq_flow_control: bool,
    /// First block addressed.
    pub offset_blocks: u64,
    /// Blocks addressed (default: to the namespace end).
    pub blocks: Option<u64>,
    /// Write the range with an LBA-derived pattern first, then check every
    /// read against it.
    pub verify: bool,
    /// Busy-poll the sockets instead of sleeping in `epoll_wait` (SPDK's
    /// `perf` polls): the target's sends then find the client running and
    /// pay no cross-CPU wake-up. Burns the client's CPU.
    pub poll: bool,
}

impl PerfConfig {
    /// Defaults for `addr` and `nqn`: 4 KiB random reads, 1 thread, 1
    /// queue, QD 32, 10 s, no warm-up.
    pub fn new(addr: &str, nqn: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            nqn: nqn.to_owned(),
            hostnqn: "nqn.2026-11.io.zctarget:perf-host".to_owned(),
            nsid: 1,
            threads: 1,
            queues: 1,
            qd: 32,
            pattern: Pattern::Rand,
            rw: Rw::Read,
            mix_read_pct: 70,
            bs: 4096,
            run: Duration::from_secs(10),
            warmup: Duration::ZERO,
            digest: false,
            sq_flow_control: false,
            offset_blocks: 0,
            blocks: None,
            verify: false,
            poll: false,
        }
    }
}

/// Results of a run.
#[derive(Debug)]
pub struct Report {
    /// The workload, e.g. "randread 4096 B, 2 queues x qd 32, 1 thread".
    pub label: String,
    /// Completions in the measured window.
    pub ios: u64,
    pub reads: u64,
    pub writes: u64,
    /// Completions with a non-zero status (whole run).
    pub errors: u64,
    /// Reads that did not match the written pattern (with `verify`).
    pub verify_failures: u64,
    /// The first failures, described.
    pub error_samples: Vec<String>,
    /// Reads the target ended with the C2HData SUCCESS flag (no CapsuleResp).
    pub c2h_success: u64,
    /// Commands answered with Command Interrupted (the target's retryable
    /// busy) and resubmitted.
    pub busy: u64,
    pub bs: usize,
    /// Measured window (mean over threads).
    pub elapsed: Duration,
    pub latency: Histogram,
}

impl Report {
    /// Commands per second.
    pub fn iops(&self) -> f64 {
        self.ios as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload MB/s (10^6 bytes).
    pub fn mbps(&self) -> f64 {
        self.iops() * self.bs as f64 / 1e6
    }

    fn us(ns: f64) -> f64 {
        ns / 1000.0
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let h = &self.latency;
        let mut s = format!(
            "{}\n{:.1} s: {:.0} IOPS, {:.1} MB/s ({} reads, {} writes)\n\
             latency us: avg {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n\
             errors: {}  verify failures: {}  busy (retried): {}  reads ended by C2HData SUCCESS: {}\n",
            self.label,
            self.elapsed.as_secs_f64(),
            self.iops(),
            self.mbps(),
            self.reads,
            self.writes,
            Self::us(h.mean_ns()),
            Self::us(h.percentile_ns(50.0) as f64),
            Self::us(h.percentile_ns(90.0) as f64),
            Self::us(h.percentile_ns(99.0) as f64),
            Self::us(h.percentile_ns(99.9) as f64),
            Self::us(h.max_ns() as f64),
            self.errors,
            self.verify_failures,
            self.busy,
            self.c2h_success,
        );
        for e in &self.error_samples {
            s.push_str("  ");
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// One JSON object.
    pub fn json(&self) -> serde_json::Value {
        let h = &self.latency;
        let p = |q: f64| Self::us(h.percentile_ns(q) as f64);
        serde_json::json!({
            "workload": self.label,
            "bs": self.bs,
            "seconds": self.elapsed.as_secs_f64(),
            "ios": self.ios,
            "reads": self.reads,
            "writes": self.writes,
            "iops": self.iops(),
            "mbps": self.mbps(),
            "lat_us": {
                "avg": Self::us(h.mean_ns()),
                "p50": p(50.0), "p90": p(90.0), "p99": p(99.0), "p99_9": p(99.9),
                "max": Self::us(h.max_ns() as f64),
            },
            "errors": self.errors,
            "verify_failures": self.verify_failures,
            "c2h_success": self.c2h_success,
            "busy": self.busy,
            "error_samples": self.error_samples,
        })
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Connects, runs (the verify pre-fill first, with `verify`), reports.
pub fn run(cfg: &PerfConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(cfg.threads >= 1, "--threads must be at least 1");
    anyhow::ensure!(
        cfg.queues >= cfg.threads,
        "--queues ({}) must be at least --threads ({})",
        cfg.queues,
        cfg.threads
    );
    anyhow::ensure!((1..=MAX_QD).contains(&cfg.qd), "--qd must be 1..={MAX_QD}");
    anyhow::ensure!(cfg.mix_read_pct <= 100, "--mix-read-pct must be 0..=100");
    let addr = cfg.addr.as_str();
    let mut ao = QueueOptions::admin(&cfg.nqn, &cfg.hostnqn);
    ao.hdgst = cfg.digest;
    ao.ddgst = cfg.digest;
    let mut admin =
        NvmeQueue::admin(addr, &ao).with_context(|| format!("admin queue to {addr}"))?;
    let ctrl = admin.identify(1, 0).context("Identify Controller")?;
    anyhow::ensure!(
        ctrl.status().is_success(),
        "Identify Controller: {:?}",
        ctrl.status()
    );
    let ioccsz = le_u32(&ctrl.data, 1792) as usize;
    let in_capsule = (ioccsz * 16).saturating_sub(64);
    let ns = admin.identify(0, cfg.nsid).context("Identify Namespace")?;
    anyhow::ensure!(
        ns.status().is_success(),
        "Identify Namespace {}: {:?}",
        cfg.nsid,
        ns.status()
    );
    let nsze = u64::from_le_bytes(ns.data[0..8].try_into()?);
    anyhow::ensure!(nsze > 0, "namespace {} is not active", cfg.nsid);
    let flbas = usize::from(ns.data[26] & 0x0f);
    let lba = 1usize << ns.data[128 + flbas * 4 + 2];
    anyhow::ensure!(
        cfg.bs >= lba && cfg.bs % lba == 0,
        "--bs {} is not a multiple of the namespace's {lba}-byte blocks",
        cfg.bs
    );
    let nlb = u32::try_from(cfg.bs / lba)
        .ok()
        .filter(|&n| n <= 65536)
        .context("--bs too large")?;
    let blocks = cfg
        .blocks
        .unwrap_or_else(|| nsze.saturating_sub(cfg.offset_blocks));
    if cfg.offset_blocks + blocks > nsze {
        eprintln!(
            "zc-nvme-perf: blocks {}..{} pass the namespace end ({nsze}): commands there will fail",
            cfg.offset_blocks,
            cfg.offset_blocks + blocks
        );
    }
    let span = blocks / u64::from(nlb);
    anyhow::ensure!(
        span > 0,
        "the range holds no whole command of {} bytes",
        cfg.bs
    );

    // SQSIZE is 0's based: qd + 1 entries, so a full window of qd commands
    // never fills the SQ even with flow control on (128 at most).
    let sqsize = cfg.qd.min(MAX_QD - 1) as u16;
    let mut per_thread: Vec<Vec<engine::Conn>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    let mut maxh2cdata = usize::MAX;
    for q in 0..cfg.queues {
        let mut o = QueueOptions::admin(&cfg.nqn, &cfg.hostnqn);
        o.qid = q as u16 + 1;
        o.cntlid = admin.cntlid;
        o.hdgst = cfg.digest;
        o.ddgst = cfg.digest;
        o.in_capsule = in_capsule;
        o.sqsize = sqsize;
        o.cattr = if cfg.sq_flow_control {
            0
        } else {
            Connect::CATTR_DISABLE_SQ_FLOW
        };
        let (io, r) =
            NvmeQueue::connect(addr, &o).with_context(|| format!("I/O queue {}", o.qid))?;
        anyhow::ensure!(
            r.status().is_success(),
            "I/O queue {} Connect refused: {:?}",
            o.qid,
            r.status()
        );
        maxh2cdata = maxh2cdata.min(io.maxh2cdata.max(4096) as usize);
        let (stream, hdgst, ddgst) = io.into_parts();
        per_thread[q % cfg.threads].push(engine::Conn {
            stream,
            qid: o.qid,
            hdgst,
            ddgst,
        });
    }
    let geo = engine::Geometry {
        nsid: cfg.nsid,
        lba,
        nlb,
        start: cfg.offset_blocks,
        span,
        in_capsule,
        maxh2cdata,
        qd: cfg.qd,
        poll: cfg.poll,
    };
    let threads = cfg.threads as u64;
    let base = engine::Phase {
        pattern: cfg.pattern,
        rw: cfg.rw,
        mix_read_pct: cfg.mix_read_pct,
        verify: cfg.verify,
        seq_start: 0,
        limit: None,
        warmup: cfg.warmup,
        run: cfg.run,
        seed: 0,
    };
    let mut prefill_stats = None;
    if cfg.verify {
        // Every thread writes its share of the range once, sequentially.
        let phases = (0..threads)
            .map(|t| engine::Phase {
                pattern: Pattern::Seq,
                rw: Rw::Write,
                seq_start: span * t / threads,
                limit: Some(span * (t + 1) / threads - span * t / threads),
                warmup: Duration::ZERO,
                run: Duration::from_secs(3600),
                ..base
            })
            .collect();
        let (back, stats) = run_threads(&mut admin, per_thread, &geo, phases)?;
        per_thread = back;
        prefill_stats = Some(stats);
    }
    let phases = (0..threads)
        .map(|t| engine::Phase {
            seq_start: span * t / threads,
            seed: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t + 1) ^ 0x5151,
            ..base
        })
        .collect();
    let (_conns, stats) = run_threads(&mut admin, per_thread, &geo, phases)?;
    let _ = admin.keep_alive();

    let mut report = Report {
        label: format!(
            "{}{} {} B, {} queue(s) x qd {}, {} thread(s){}{}",
            match cfg.pattern {
                Pattern::Rand => "rand",
                Pattern::Seq => "seq",
            },
            match cfg.rw {
                Rw::Read => "read".to_owned(),
                Rw::Write => "write".to_owned(),
                Rw::Mix => format!("rw ({} % reads)", cfg.mix_read_pct),
            },
            cfg.bs,
            cfg.queues,
            cfg.qd,
            cfg.threads,
            if cfg.digest { ", digests" } else { "" },
            if cfg.verify { ", verified" } else { "" },
        ),
        ios: 0,
        reads: 0,
        writes: 0,
        errors: 0,
        verify_failures: 0,
        error_samples: Vec::new(),
        c2h_success: 0,
        busy: 0,
        bs: cfg.bs,
        elapsed: Duration::ZERO,
        latency: Histogram::default(),
    };
    let mut elapsed = Duration::ZERO;
    for s in prefill_stats.iter().flatten().chain(&stats) {
        report.errors += s.errors;
        report.verify_failures += s.verify_failures;
        report.c2h_success += s.success_flag;
        report.busy += s.busy;
        for e in &s.samples {
            if report.error_samples.len() < 10 {
                report.error_samples.push(e.clone());
            }
        }
    }
    for s in &stats {
        report.ios += s.ios;
        report.reads += s.reads;
        report.writes += s.writes;
        report.latency.merge(&s.hist);
        elapsed += s.measured;
    }
    report.elapsed = elapsed / stats.len().max(1) as u32;
    Ok(report)
}

/// Runs one phase per thread, keeping the controller alive from this thread
/// meanwhile; gives the connections back.
fn run_threads(
    admin: &mut NvmeQueue,
    per_thread: Vec<Vec<engine::Conn>>,
    geo: &engine::Geometry,
    phases: Vec<engine::Phase>,
) -> anyhow::Result<(Vec<Vec<engine::Conn>>, Vec<engine::Stats>)> {
    let handles: Vec<_> = per_thread
        .into_iter()
        .zip(phases)
        .enumerate()
        .map(|(t, (conns, phase))| {
            let geo = *geo;
            std::thread::Builder::new()
                .name(format!("perf-{t}"))
                .spawn(move || engine::run(conns, &geo, &phase))
                .context("spawn")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut last_ka = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if last_ka.elapsed() >= Duration::from_secs(5) {
            admin.keep_alive().context("Keep Alive")?;
            last_ka = Instant::now();
        }
    }
    let mut conns = Vec::new();
    let mut stats = Vec::new();
    for (t, h) in handles.into_iter().enumerate() {
        let (c, s) = h
            .join()
            .map_err(|_| anyhow::anyhow!("thread {t} panicked"))?
            .with_context(|| format!("thread {t}"))?;
        conns.push(c);
        stats.push(s);
    }
    Ok((conns, stats))
}
