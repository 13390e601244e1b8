//! An RBD volume whose Ceph monitor is killed mid-I/O and started again
//! (issue #12), against the throwaway cluster of `tests/ceph/cluster.sh`
//! (its own binary: the monitor's absence would stall the daemon starts of
//! the other RBD tests, which run in parallel threads of one binary).
//!
//! What it shows, with `rados_timeout_secs` configured:
//! - FUA writes go on while the monitor is down (the OSD serves them; a
//!   write that failed would have to be an error answer, never a hang);
//! - a daemon started meanwhile cannot connect and exits after the
//!   configured timeout, with the reason, instead of waiting 300 s;
//! - once the monitor is back, writes go on and a new daemon starts;
//! - every acknowledged write is on the image, read back over both
//!   protocols before and after a restart of the daemon.
//!
//! Skipped, with the reason printed, unless `ZCTARGET_TEST_CEPH_CONF` names
//! the cluster's ceph.conf.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zctarget_tests::ceph::{ceph_conf, image, rbd_spec, start_rbd, Cluster};
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::records::{check_record, record, Found, Rng};
use zctarget_tests::spec::{spawn, HOST, IQN, NQN};
use zctarget_tests::Daemon;

const BS: usize = 4096;
const BLOCKS: u64 = 128;
const WRITERS: u64 = 2;
/// The volume's `rados_timeout_secs`.
const TIMEOUT_SECS: u64 = 4;

/// Phases of the run, in order; outcomes are counted per phase.
const BEFORE: u8 = 0;
const DOWN: u8 = 1;
const BACK: u8 = 2;

#[derive(Default)]
struct Outcomes {
    /// Acknowledged FUA writes per phase.
    acked: [AtomicU64; 3],
    /// Writes answered with an error status per phase.
    failed: [AtomicU64; 3],
    /// Slowest write per phase, in milliseconds (reported, not asserted).
    slowest_ms: [AtomicU64; 3],
}

struct Book {
    acked: Vec<u64>,
    issued: Vec<u64>,
}

fn writer(
    id: u64,
    d: &Daemon,
    book: &Mutex<Book>,
    out: &Outcomes,
    phase: &AtomicU8,
    stop: &AtomicBool,
) -> Result<(), String> {
    // No keep-alive: this admin queue stays silent for the whole run.
    let mut o = QueueOptions::admin(NQN, HOST);
    o.kato_ms = 0;
    let admin = NvmeQueue::admin(d.nvme_addr(), &o).map_err(|e| format!("admin queue: {e}"))?;
    (o.qid, o.cntlid) = (1, admin.cntlid);
    let (mut q, _) =
        NvmeQueue::connect(d.nvme_addr(), &o).map_err(|e| format!("I/O queue: {e}"))?;
    let mut rng = Rng::new(Rng::seed() ^ id);
    let per = BLOCKS / WRITERS;
    let (lo, hi) = (id * per, (id + 1) * per);
    // Bounded: the test stops the writers long before this.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let start = rng.range(lo, hi);
        let n = rng.range(1, 4).min(hi - start);
        let blocks: Vec<(u64, u64)> = {
            let mut b = book.lock().expect("book");
            (start..start + n)
                .map(|i| {
                    b.issued[i as usize] += 1;
                    (i, b.issued[i as usize])
                })
                .collect()
        };
        let data: Vec<u8> = blocks
            .iter()
            .flat_map(|&(b, v)| record(BS, b, v, id))
            .collect();
        let p = phase.load(Ordering::Relaxed) as usize;
        let t = Instant::now();
        // An I/O that hangs past the client's 20 s read timeout is an
        // error here: librbd must answer within rados_timeout_secs.
        let r = q
            .write(1, start, &data, BS, true)
            .map_err(|e| format!("writer {id}: write at {start} got no answer: {e}"))?;
        out.slowest_ms[p].fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
        if r.status().is_success() {
            out.acked[p].fetch_add(1, Ordering::Relaxed);
            let mut b = book.lock().expect("book");
            for (i, v) in blocks {
                b.acked[i as usize] = b.acked[i as usize].max(v);
            }
        } else {
            out.failed[p].fetch_add(1, Ordering::Relaxed);
            eprintln!("writer {id}: write failed in phase {p}: {:?}", r.status());
        }
    }
    Ok(())
}

/// Every block holds a whole record at least as new as acknowledged, the
/// same over NVMe/TCP and iSCSI.
fn verify(d: &Daemon, book: &Book, context: &str) {
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut o = QueueOptions::admin(NQN, HOST);
    (o.qid, o.cntlid) = (1, admin.cntlid);
    let (mut q, _) = NvmeQueue::connect(d.nvme_addr(), &o).expect("I/O queue");
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:mon-verify", BS).expect("login");
    for lba in (0..BLOCKS).step_by(16) {
        let r = q.read(1, lba, 16, BS).expect("read");
        assert!(r.status().is_success(), "{context}: read {:?}", r.status());
        let (st, via_iscsi) = s.read(lba, 16).expect("iSCSI read");
        assert_eq!(st, 0, "{context}: iSCSI read status");
        assert!(
            r.data == via_iscsi,
            "{context}: protocols disagree at {lba}"
        );
        for (i, blk) in r.data.chunks(BS).enumerate() {
            let b = lba as usize + i;
            let got = match check_record(blk, b as u64) {
                Ok(Found::Blank) => 0,
                Ok(Found::Version(v)) => v,
                Err(e) => panic!("{context}: {e}"),
            };
            assert!(
                got >= book.acked[b] && got <= book.issued[b],
                "{context}: block {b} holds version {got}; acknowledged {}, issued {}",
                book.acked[b],
                book.issued[b]
            );
        }
    }
}

/// Waits (bounded) until the writers acknowledged `more` writes in `phase`.
fn wait_acked(out: &Outcomes, phase: u8, more: u64, within: Duration, d: &Daemon) {
    let until = Instant::now() + within;
    while out.acked[phase as usize].load(Ordering::Relaxed) < more {
        assert!(
            Instant::now() < until,
            "fewer than {more} writes acknowledged in phase {phase} (failed: {}):\n{}",
            out.failed[phase as usize].load(Ordering::Relaxed),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The outages of one cluster cannot overlap: the tests take turns.
static ONE_OUTAGE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_OUTAGE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A daemon on image `tag` with `rados_timeout_secs`, its Ceph client
/// connected.
fn serve(dir: &std::path::Path, conf: &str, tag: &str) -> (Daemon, zctarget_tests::spec::Spec) {
    let timeout = format!("rados_timeout_secs = {TIMEOUT_SECS}");
    let spec = rbd_spec("epoll", conf, &image(tag), &timeout);
    let d = start_rbd(dir, &spec, "serve", Duration::ZERO);
    // The Ceph client is connected after the portals are bound.
    let until = Instant::now() + Duration::from_secs(30);
    while !d.log().contains("ceph client connected") {
        assert!(Instant::now() < until, "no Ceph client:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        d.log()
            .contains(&format!("rados_osd_op_timeout={TIMEOUT_SECS}")),
        "the timeout reaches librados:\n{}",
        d.log()
    );
    (d, spec)
}

/// Runs the writers on `d` through `outage` (which gets the phase to set
/// and the outcomes) and stops them; returns the book and the outcomes.
fn with_writers(d: &Daemon, outage: impl FnOnce(&AtomicU8, &Outcomes)) -> (Book, Outcomes) {
    let book = Mutex::new(Book {
        acked: vec![0; BLOCKS as usize],
        issued: vec![0; BLOCKS as usize],
    });
    let out = Outcomes::default();
    let phase = AtomicU8::new(BEFORE);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (book, out, phase, stop) = (&book, &out, &phase, &stop);
                scope.spawn(move || writer(id, d, book, out, phase, stop))
            })
            .collect();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| outage(&phase, &out)));
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer").expect("writer");
        }
        if let Err(p) = r {
            std::panic::resume_unwind(p);
        }
    });
    let n = |a: &[AtomicU64; 3]| a.each_ref().map(|x| x.load(Ordering::Relaxed));
    eprintln!(
        "FUA writes acknowledged before/during/after the outage: {:?}, failed: {:?}, slowest \
         ms: {:?}",
        n(&out.acked),
        n(&out.failed),
        n(&out.slowest_ms)
    );
    (book.into_inner().expect("book"), out)
}

/// Every acknowledged write is there, then again after a clean restart.
fn verify_and_restart(
    mut d: Daemon,
    dir: &std::path::Path,
    spec: &zctarget_tests::spec::Spec,
    book: &Book,
) {
    verify(&d, book, "after the outage");
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(st.success(), "{st:?}\n{}", d.log());
    let d = start_rbd(dir, spec, "restart", Duration::ZERO);
    verify(&d, book, "after a restart");
}

#[test]
fn rbd_monitor_killed_mid_io_and_restarted() {
    let Some(conf) = ceph_conf() else { return };
    let _turn = one_at_a_time();
    let cluster = Cluster::of(&conf);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, spec) = serve(dir.path(), &conf, "mon");
    let timeout = format!("rados_timeout_secs = {TIMEOUT_SECS}");
    let late_spec = rbd_spec("epoll", &conf, &image("mon-late"), &timeout);
    let late_dir = tempfile::tempdir().expect("tempdir");
    let (book, out) = with_writers(&d, |phase, out| {
        wait_acked(out, BEFORE, 50, Duration::from_secs(30), &d);
        let down = cluster.stop_mon();
        phase.store(DOWN, Ordering::Relaxed);
        // A daemon started now cannot reach the monitor: it gives up after
        // rados_timeout_secs with the reason.
        let mut late = spawn(late_dir.path(), &late_spec, "late", [0, 0]);
        let st = late
            .wait_exit(Duration::from_secs(TIMEOUT_SECS * 5 + 30))
            .expect("a daemon without a monitor gives up");
        let refused = late.log();
        assert!(!st.success(), "started without a monitor:\n{refused}");
        assert!(
            refused.contains("connecting to the Ceph cluster") && refused.contains("timed out"),
            "the refusal names the connection timeout:\n{refused}"
        );
        down.start();
        phase.store(BACK, Ordering::Relaxed);
        wait_acked(out, BACK, 50, Duration::from_secs(60), &d);
    });
    let count = |a: &AtomicU64| a.load(Ordering::Relaxed);
    assert!(
        count(&out.acked[DOWN as usize]) > 0,
        "no write completed while the monitor was down"
    );
    let failed: Vec<u64> = out.failed.iter().map(count).collect();
    assert_eq!(
        failed,
        [0, 0, 0],
        "the OSD served every write without the monitor"
    );
    verify_and_restart(d, dir.path(), &spec, &book);
    // And a daemon now starts on the image that could not be opened.
    drop(start_rbd(
        late_dir.path(),
        &late_spec,
        "late-again",
        Duration::ZERO,
    ));
    eprintln!("monitor outage checked in {:?}", t0.elapsed());
}

#[test]
fn rbd_osd_killed_mid_io_writes_fail_after_the_timeout_and_resume() {
    let Some(conf) = ceph_conf() else { return };
    let _turn = one_at_a_time();
    let cluster = Cluster::of(&conf);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, spec) = serve(dir.path(), &conf, "osd");
    let (book, out) = with_writers(&d, |phase, out| {
        wait_acked(out, BEFORE, 50, Duration::from_secs(30), &d);
        let down = cluster.stop_osd();
        phase.store(DOWN, Ordering::Relaxed);
        // Writes in flight and new ones fail with an error answer once
        // rados_osd_op_timeout passed (a hang would trip the writers' 20 s
        // read timeout instead).
        let until = Instant::now() + Duration::from_secs(TIMEOUT_SECS * 5 + 30);
        while out.failed[DOWN as usize].load(Ordering::Relaxed) < WRITERS {
            assert!(
                Instant::now() < until,
                "writes to a dead OSD neither failed nor completed:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        down.start();
        phase.store(BACK, Ordering::Relaxed);
        wait_acked(out, BACK, 50, Duration::from_secs(120), &d);
    });
    assert_eq!(
        out.failed[BACK as usize].load(Ordering::Relaxed),
        0,
        "writes fail only while the OSD is down"
    );
    verify_and_restart(d, dir.path(), &spec, &book);
    eprintln!("OSD outage checked in {:?}", t0.elapsed());
}
