//! The asynchronous NVMe/TCP load generator (`tests/src/perf/`, binary
//! `zc-nvme-perf`) against the real daemon: it completes I/O at queue
//! depths above 1 on several queues with no error and every read matching what was
//! written — reads and writes, in-capsule and R2T sizes, strict and eager
//! status (eager with SQ flow control disabled ends reads with the C2HData
//! SUCCESS flag), both engines, sleeping or busy-polling — and it counts and reports commands the
//! target fails. Runs are ~1 s each; nothing here asserts a speed.

use std::time::Duration;

use zctarget_tests::perf::{self, Pattern, PerfConfig, Rw};
use zctarget_tests::spec::{self, Spec, HOST, NQN};
use zctarget_tests::Daemon;

/// 8 MiB volume of 4096-byte blocks.
const BLOCKS: u64 = 2048;

fn config(d: &Daemon) -> PerfConfig {
    let mut c = PerfConfig::new(&format!("127.0.0.1:{}", d.nvme_port), NQN);
    c.hostnqn = HOST.to_owned();
    c.queues = 2;
    c.qd = 16;
    c.run = Duration::from_millis(700);
    c
}

fn check_clean(r: &perf::Report, what: &str) {
    assert_eq!(r.errors, 0, "{what}: {}", r.text());
    assert_eq!(r.verify_failures, 0, "{what}: {}", r.text());
    assert!(r.ios > 100, "{what}: too few I/Os: {}", r.text());
}

fn workloads(engine: &'static str, policy: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = Spec::new(engine);
    spec.extra_server = format!("status_policy = \"{policy}\"\nmetrics_listen = \"127.0.0.1:0\"");
    let d = spec::start(dir.path(), &spec, "perf");
    // In-capsule writes (4 KiB), R2T writes (64 KiB), mixed with verified
    // reads over the whole volume; then sequential reads on two threads.
    let (mut ios, mut slots_used) = (0, 0);
    for (bs, rw) in [(4096, Rw::Mix), (65536, Rw::Mix), (16384, Rw::Write)] {
        let mut c = config(&d);
        slots_used += c.threads * c.queues * c.qd;
        c.bs = bs;
        c.rw = rw;
        c.mix_read_pct = 50;
        c.verify = true;
        let r = perf::run(&c).expect("perf run");
        check_clean(&r, &format!("{engine}/{policy} bs {bs}"));
        ios += r.ios;
        if rw == Rw::Mix {
            assert!(r.reads > 0 && r.writes > 0, "{}", r.text());
            // With SQ flow control disabled (the default) reads end with
            // the SUCCESS flag: under eager status always, under strict
            // when the data goes by copy, as on loopback (see
            // `strict_zero_copy_reads_end_with_a_capsule_response`).
            assert!(r.c2h_success > 0, "{policy}: {}", r.text());
        }
    }
    let mut c = config(&d);
    c.threads = 2;
    c.queues = 4;
    c.pattern = Pattern::Seq;
    c.verify = true;
    c.blocks = Some(256);
    c.sq_flow_control = true;
    // The client busy-polls its sockets (as SPDK's perf does) here.
    c.poll = true;
    slots_used += c.threads * c.queues * c.qd;
    let r = perf::run(&c).expect("perf run");
    check_clean(&r, "two threads, flow control on");
    ios += r.ios;
    check_engine(&d, ios, slots_used as u64);
}

/// The command engine reuses its slots: a worker is started per slot the
/// host's queue depth reaches, not per command, and no command's lifecycle
/// went wrong.
fn check_engine(d: &Daemon, ios: u64, slots_used: u64) {
    let workers = d
        .metric("zctarget_command_workers_started_total{protocol=\"nvme_tcp\"}")
        .expect("workers metric") as u64;
    assert!(
        ios > 4 * slots_used,
        "too few I/Os ({ios}) to tell workers from commands"
    );
    assert!(
        (1..=slots_used).contains(&workers),
        "{workers} workers started for {ios} commands at most {slots_used} in flight"
    );
    // Lifecycle errors are added up when a queue ends.
    let conns = "zctarget_connections{protocol=\"nvme_tcp\"}";
    d.wait_metric(conns, 0.0, Duration::from_secs(5));
    assert_eq!(
        d.metric("zctarget_command_lifecycle_errors_total"),
        Some(0.0)
    );
}

#[test]
fn uring_strict_completes_io_at_depth() {
    workloads("uring", "strict");
}

#[test]
fn epoll_eager_completes_io_at_depth() {
    workloads("epoll", "eager");
}

/// Strict status with zero-copy sends: a read's completion waits for the
/// kernel's release of its pages, so it never rides on the C2HData as the
/// SUCCESS flag, even with SQ flow control disabled.
#[test]
fn strict_zero_copy_reads_end_with_a_capsule_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = Spec::new("uring");
    spec.extra_server = "status_policy = \"strict\"\nzerocopy = \"always\"".into();
    let d = spec::start(dir.path(), &spec, "perf-strict-zc");
    let mut c = config(&d);
    c.rw = Rw::Read;
    c.run = Duration::from_millis(300);
    let r = perf::run(&c).expect("perf run");
    check_clean(&r, "strict zero-copy reads");
    assert_eq!(r.c2h_success, 0, "{}", r.text());
}

/// Under a QD 32 load of 4 KiB reads and writes on a disk file (not
/// tmpfs, which is copied on the reactor), a uring reactor does nearly all
/// its disk I/O with registered (fixed) buffers: with the default 256 MiB
/// pool only its first 1024 of 4096 chunks are registered, and leases come
/// from that range first (`PREFERRED_CHUNKS`).
#[test]
fn uring_disk_io_uses_registered_buffers_under_load() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut spec = Spec::new("uring");
    spec.buffer_pool = "256MiB";
    spec.extra_server = "metrics_listen = \"127.0.0.1:0\"".into();
    let d = spec::start(dir.path(), &spec, "perf-fixed");
    let mut c = config(&d);
    c.qd = 32;
    c.rw = Rw::Mix;
    c.mix_read_pct = 70;
    let r = perf::run(&c).expect("perf run");
    check_clean(&r, "QD 32 mix");
    let get = |what: &str| {
        d.metric(&format!(
            "zctarget_volume_ring_{what}_total{{volume=\"data\"}}"
        ))
        .unwrap_or_else(|| panic!("no ring_{what} metric"))
    };
    let (fixed, unfixed) = (get("fixed"), get("unfixed"));
    eprintln!("{} I/Os: {fixed} fixed, {unfixed} plain", r.ios);
    assert!(
        fixed + unfixed >= r.ios as f64,
        "every I/O went to the ring: {fixed} + {unfixed} < {}",
        r.ios
    );
    assert!(
        unfixed <= (fixed + unfixed) / 100.0,
        "{unfixed} of {} disk I/Os used a plain buffer",
        fixed + unfixed
    );
}

/// A pool far smaller than the data in flight: the target answers some
/// in-capsule writes with Command Interrupted (its retryable busy); the
/// generator counts and resubmits them, and every block still verifies.
#[test]
fn busy_target_is_retried_not_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = Spec::new("uring");
    spec.buffer_pool = "1MiB";
    let d = spec::start(dir.path(), &spec, "perf-busy");
    let mut c = config(&d);
    c.queues = 4;
    c.qd = 64;
    c.rw = Rw::Mix;
    c.mix_read_pct = 20;
    c.verify = true;
    let r = perf::run(&c).expect("perf run");
    check_clean(&r, "small pool");
    eprintln!("busy answers: {}", r.busy);
}

#[test]
fn failed_commands_are_counted_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = spec::start(dir.path(), &Spec::new("epoll"), "perf-errors");
    // 64 blocks from 8 before the end: 8 of every 64 commands are in range.
    let mut c = config(&d);
    c.offset_blocks = BLOCKS - 8;
    c.blocks = Some(64);
    c.run = Duration::from_millis(500);
    let r = perf::run(&c).expect("perf run");
    assert!(r.errors > 0, "no error reported: {}", r.text());
    assert!(r.ios > r.errors / 2, "{}", r.text());
    assert!(
        r.error_samples
            .iter()
            .any(|s| s.contains("SC 0x80") && s.contains("read")),
        "LBA Out of Range not described: {:?}",
        r.error_samples
    );
    // Writes past the end fail the same way, by R2T and in capsule.
    for bs in [4096, 65536] {
        let mut c = config(&d);
        c.rw = Rw::Write;
        c.bs = bs;
        c.offset_blocks = BLOCKS - 8;
        c.blocks = Some(64);
        c.run = Duration::from_millis(300);
        let r = perf::run(&c).expect("perf run");
        assert!(r.errors > 0, "bs {bs}: no error reported: {}", r.text());
    }
}
