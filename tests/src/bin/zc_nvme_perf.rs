//! Asynchronous NVMe/TCP load generator, shaped like SPDK's `perf`: each
//! thread drives several I/O queues (one TCP connection each) from one
//! epoll loop with up to `--qd` commands in flight per queue, and reports
//! IOPS, MB/s and latency percentiles (see `zctarget_tests::perf`).
//!
//!   zc-nvme-perf --addr 127.0.0.1:4420 --nqn NQN --queues 2 --qd 32 \
//!                --pattern rand --rw read --bs 4096 --seconds 10 [--json]

use std::time::Duration;

use zctarget_tests::perf::{self, Pattern, PerfConfig, Rw};

#[derive(Clone, Copy, clap::ValueEnum)]
enum PatternArg {
    Rand,
    Seq,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RwArg {
    Read,
    Write,
    Mix,
}

/// Load generator for an NVMe/TCP target.
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
    /// Namespace ID.
    #[arg(long, default_value_t = 1)]
    nsid: u32,
    /// Threads, each with its own event loop; queues are dealt round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// I/O queues in all (one TCP connection each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    queues: u16,
    /// Commands in flight per queue.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=128))]
    qd: u16,
    /// Offsets.
    #[arg(long, value_enum, default_value = "rand")]
    pattern: PatternArg,
    /// Reads, writes, or a mix (see --mix-read-pct).
    #[arg(long, value_enum, default_value = "read")]
    rw: RwArg,
    /// Percentage of reads with --rw mix.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    mix_read_pct: u8,
    /// Bytes per command (a multiple of the namespace block size).
    #[arg(long, default_value_t = 4096)]
    bs: usize,
    /// Measured duration in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Warm-up before measuring, in seconds.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Enable header and data digests.
    #[arg(long)]
    digest: bool,
    /// Keep SQ flow control on (by default Connect disables it, as SPDK's
    /// host does; the target may then end reads with C2HData SUCCESS).
    #[arg(long)]
    sq_flow_control: bool,
    /// First block addressed.
    #[arg(long, default_value_t = 0)]
    offset_blocks: u64,
    /// Blocks addressed from --offset-blocks (default: to the namespace end).
    #[arg(long)]
    blocks: Option<u64>,
    /// Write the range with an LBA-derived pattern first, then check every
    /// read (use a small range: --blocks).
    #[arg(long)]
    verify: bool,
    /// Busy-poll the sockets, as SPDK's perf does, instead of sleeping
    /// until they are ready: the client's CPU stays at 100 %.
    #[arg(long)]
    poll: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let mut cfg = PerfConfig::new(&a.addr, &a.nqn);
    cfg.hostnqn = a.hostnqn;
    cfg.nsid = a.nsid;
    cfg.threads = a.threads.into();
    cfg.queues = a.queues.into();
    cfg.qd = a.qd.into();
    cfg.pattern = match a.pattern {
        PatternArg::Rand => Pattern::Rand,
        PatternArg::Seq => Pattern::Seq,
    };
    cfg.rw = match a.rw {
        RwArg::Read => Rw::Read,
        RwArg::Write => Rw::Write,
        RwArg::Mix => Rw::Mix,
    };
    cfg.mix_read_pct = a.mix_read_pct;
    cfg.bs = a.bs;
    cfg.run = Duration::from_secs(a.seconds);
    cfg.warmup = Duration::from_secs(a.warmup);
    cfg.digest = a.digest;
    cfg.sq_flow_control = a.sq_flow_control;
    cfg.offset_blocks = a.offset_blocks;
    cfg.blocks = a.blocks;
    cfg.verify = a.verify;
    cfg.poll = a.poll;
    let r = perf::run(&cfg)?;
    if a.json {
        println!("{}", r.json());
    } else {
        print!("{}", r.text());
    }
    if r.errors > 0 || r.verify_failures > 0 {
        std::process::exit(2);
    }
    Ok(())
}
