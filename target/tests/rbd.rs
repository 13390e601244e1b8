//! RBD volumes end to end (issue #12) against a throwaway Ceph cluster
//! (`tests/ceph/cluster.sh`, started by `tests/run.sh`), with the in-repo
//! NVMe/TCP host and the minimal iSCSI initiator:
//!
//! - round trips over both protocols on both engines: writes, reads, FUA,
//!   flush / SYNCHRONIZE CACHE, deallocate and UNMAP reading back zeroes,
//!   Write Zeroes, NVMe Compare and SCSI COMPARE AND WRITE;
//! - a second daemon on the same image is refused (exclusive lock), and a
//!   clean stop hands the image over at once;
//! - kill -9 during FUA writes, restart: every acknowledged write is on the
//!   image (both engines: the completion path back to the reactor differs).
//!
//! COMPARE AND WRITE contention of four libiscsi clients on an RBD image is
//! `tests/iscsi/stress.sh --ceph-conf` (run by `tests/run.sh`, both
//! engines); the monitor or OSD lost mid-I/O is `rbd_outage.rs`.
//!
//! Skipped, with the reason printed, unless `ZCTARGET_TEST_CEPH_CONF` names
//! the cluster's ceph.conf.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use zctarget_protocol::nvme::Status;
use zctarget_tests::ceph::{ceph_conf, image, rbd_spec, start_rbd};
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions, Reply};
use zctarget_tests::records::{check_record, record, Found, Rng};
use zctarget_tests::spec::{spawn, HOST, IQN, NQN};
use zctarget_tests::{is_closed, Daemon};

const BS: usize = 4096;

fn ok(r: std::io::Result<Reply>) -> Reply {
    let r = r.expect("command");
    assert!(r.status().is_success(), "status {:?}", r.status());
    r
}

fn nvme_pair(d: &Daemon, qid: u16) -> (NvmeQueue, NvmeQueue) {
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let io = nvme_io(d, admin.cntlid, qid);
    (admin, io)
}

fn nvme_io(d: &Daemon, cntlid: u16, qid: u16) -> NvmeQueue {
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = qid;
    o.cntlid = cntlid;
    let (io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("I/O queue");
    assert!(r.status().is_success(), "I/O Connect: {:?}", r.status());
    io
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

// ---------------------------------------------------------------------------
// Round trips.

fn round_trip(engine: &'static str) {
    let Some(conf) = ceph_conf() else { return };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(&format!("rt-{engine}"));
    let d = start_rbd(
        dir.path(),
        &rbd_spec(engine, &conf, &img, ""),
        engine,
        Duration::ZERO,
    );

    // NVMe/TCP: writes (in-capsule and by R2T), FUA, reads, flush.
    let (mut admin, mut io) = nvme_pair(&d, 1);
    let a = pattern(8 * BS, 1);
    ok(io.write(1, 0, &a, BS, false));
    assert_eq!(ok(io.read(1, 0, 8, BS)).data, a, "NVMe write/read");
    let b = pattern(64 * BS, 2);
    ok(io.write(1, 1000, &b, BS, true));
    assert_eq!(ok(io.read(1, 1000, 64, BS)).data, b, "NVMe FUA write/read");
    ok(io.flush(1));
    // Deallocate and Write Zeroes read back zeroes, around kept data.
    ok(io.write(1, 200, &vec![0x5A; 16 * BS], BS, false));
    ok(io.deallocate(1, &[(204, 2)]));
    ok(io.write_zeroes(1, 210, 3, false));
    let back = ok(io.read(1, 200, 16, BS)).data;
    for (i, blk) in back.chunks(BS).enumerate() {
        let zero = matches!(i, 4 | 5 | 10..=12);
        let want = if zero { 0 } else { 0x5A };
        assert!(
            blk.iter().all(|&x| x == want),
            "block {} after dealloc/zeroes",
            200 + i
        );
    }
    // Compare: equal, then different.
    assert!(io
        .compare(1, 0, &a[..BS], BS)
        .expect("compare")
        .status()
        .is_success());
    let r = io.compare(1, 0, &pattern(BS, 9), BS).expect("compare");
    let kind = |s: Status| (s.sct.code(), s.sc);
    assert_eq!(kind(r.status()), kind(Status::COMPARE_FAILURE));

    // iSCSI sees the same image.
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:rbd", BS).expect("login");
    let (st, data) = s.read(0, 8).expect("read");
    assert_eq!((st, data == a), (0, true), "iSCSI reads NVMe's write");
    let c = pattern(4 * BS, 3);
    assert_eq!(s.write(300, &c, true).expect("write FUA"), 0);
    assert_eq!(s.sync_cache().expect("sync cache"), 0);
    assert_eq!(
        ok(io.read(1, 300, 4, BS)).data,
        c,
        "NVMe reads iSCSI's write"
    );
    // COMPARE AND WRITE: matching, then miscompare (CHECK CONDITION).
    let new = pattern(BS, 4);
    let caw = |lba: u64| {
        let mut cdb = vec![0x89, 0];
        cdb.extend_from_slice(&lba.to_be_bytes());
        cdb.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        cdb
    };
    let cmd = s.command(&caw(300), 0, 2 * BS as u32);
    let st = s.run(&cmd, &[&c[..BS], &new[..]].concat()).expect("caw").0;
    assert_eq!(st, 0, "COMPARE AND WRITE with matching data");
    assert_eq!(s.read(300, 1).expect("read").1, new);
    let cmd = s.command(&caw(300), 0, 2 * BS as u32);
    let st = s.run(&cmd, &[&c[..BS], &c[..BS]].concat()).expect("caw").0;
    assert_eq!(
        st, 0x02,
        "COMPARE AND WRITE miscompare is a CHECK CONDITION"
    );
    assert_eq!(
        s.read(300, 1).expect("read").1,
        new,
        "miscompare wrote nothing"
    );
    // UNMAP one block in the middle.
    let mut params = vec![0, 22, 0, 16, 0, 0, 0, 0];
    params.extend_from_slice(&301u64.to_be_bytes());
    params.extend_from_slice(&1u32.to_be_bytes());
    params.extend_from_slice(&[0; 4]);
    let cmd = s.command(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], 0, 24);
    assert_eq!(s.run(&cmd, &params).expect("unmap").0, 0, "UNMAP");
    let (_, data) = s.read(300, 3).expect("read");
    assert_eq!(&data[..BS], &new[..]);
    assert!(
        data[BS..2 * BS].iter().all(|&x| x == 0),
        "UNMAP reads back zeroes"
    );
    assert_eq!(&data[2 * BS..], &c[2 * BS..3 * BS]);

    // Thin provisioning: LBPME and LBPRZ in READ CAPACITY (16); GET LBA
    // STATUS from the object map (4 MiB objects: 1024 blocks each). Blocks
    // 0..1064 were written (objects 0 and 1), nothing after.
    let cmd = s.command(
        &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        32,
        0,
    );
    let (st, cap) = s.run(&cmd, &[]).expect("read capacity 16");
    assert_eq!(st, 0);
    assert_eq!(cap[14] & 0xC0, 0xC0, "LBPME and LBPRZ");
    let cmd = s.command(
        &[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        256,
        0,
    );
    let (st, lba_status) = s.run(&cmd, &[]).expect("get lba status");
    assert_eq!(st, 0, "GET LBA STATUS");
    let descriptors: Vec<(u64, u32, u8)> = lba_status[8..]
        .chunks(16)
        .map(|d| {
            let lba = u64::from_be_bytes(d[..8].try_into().expect("8"));
            let n = u32::from_be_bytes(d[8..12].try_into().expect("4"));
            (lba, n, d[12] & 0xF)
        })
        .collect();
    let blocks = 64 << 20 >> 12;
    assert_eq!(
        descriptors,
        [(0, 2048, 0), (2048, blocks - 2048, 1)],
        "mapped objects 0 and 1, the rest deallocated"
    );
    // NVMe: Identify Namespace DLFEAT bit 3 (deallocate in Write Zeroes).
    let ns = ok(admin.identify(0, 1)).data;
    assert_eq!(ns[33] & 0x08, 0x08, "DLFEAT");
    eprintln!(
        "[{engine}] rbd round trips over NVMe/TCP and iSCSI in {:?}",
        t0.elapsed()
    );
}

#[test]
fn rbd_round_trips_uring() {
    round_trip("uring");
}

#[test]
fn rbd_round_trips_epoll() {
    round_trip("epoll");
}

// ---------------------------------------------------------------------------
// Exclusive ownership.

#[test]
fn rbd_second_daemon_is_refused() {
    let Some(conf) = ceph_conf() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image("owner");
    let spec = rbd_spec("epoll", &conf, &img, "");
    let mut first = start_rbd(dir.path(), &spec, "first", Duration::ZERO);
    let (_admin, mut io) = nvme_pair(&first, 1);
    ok(io.write(1, 0, &pattern(BS, 5), BS, true));

    let t = Instant::now();
    let mut second = spawn(dir.path(), &spec, "second", [0, 0]);
    let st = second
        .wait_exit(Duration::from_secs(30))
        .expect("the second daemon exits");
    let log = second.log();
    assert!(
        !st.success(),
        "second daemon on a locked image: {st:?}\n{log}"
    );
    assert!(
        log.contains("is locked by"),
        "refusal names the lock:\n{log}"
    );
    eprintln!("second daemon refused in {:?}", t.elapsed());
    // The first one is unharmed.
    assert_eq!(ok(io.read(1, 0, 1, BS)).data, pattern(BS, 5));
    drop(io);

    // A clean stop releases the lock: the next daemon starts at once.
    first.signal(libc::SIGTERM);
    let st = first.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(st.success(), "{st:?}\n{}", first.log());
    let third = start_rbd(dir.path(), &spec, "third", Duration::ZERO);
    let (_admin, mut io) = nvme_pair(&third, 1);
    assert_eq!(ok(io.read(1, 0, 1, BS)).data, pattern(BS, 5));
}

#[test]
fn rbd_ctl_volume_add() {
    let Some(conf) = ceph_conf() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image("ctl");
    let mut spec = rbd_spec("epoll", &conf, &img, "");
    let socket = dir.path().join("admin.sock");
    spec.admin_socket = Box::leak(socket.display().to_string().into_boxed_str());
    let d = start_rbd(dir.path(), &spec, "ctl", Duration::ZERO);
    let up = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < up, "no admin socket:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let ctl = |args: &[&str]| {
        let out = d.ctl(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let new = format!("{img}-added");
    let (done, out) = ctl(&[
        "volume",
        "add",
        "added",
        "--backend",
        "rbd",
        "--pool",
        "rbd",
        "--image",
        &new,
        "--size",
        "16MiB",
        "--ceph-conf",
        &conf,
        "--rados-timeout-secs",
        "7",
    ]);
    assert!(done, "ctl volume add --backend rbd: {out}\n{}", d.log());
    let (_, list) = ctl(&["volume", "list"]);
    assert!(list.contains(&format!("rbd:rbd/{new}")), "{list}");
    // The timeout reached the new (unshared: another timeout) Ceph client
    // and the saved configuration.
    assert!(d.log().contains("rados_osd_op_timeout=7"), "{}", d.log());
    let saved = std::fs::read_to_string(d.config_path()).expect("config");
    assert!(saved.contains("rados_timeout_secs = 7"), "{saved}");
    // The same image twice: the second opener is refused by the lock.
    let (done, out) = ctl(&[
        "volume",
        "add",
        "again",
        "--backend",
        "rbd",
        "--pool",
        "rbd",
        "--image",
        &img,
        "--ceph-conf",
        &conf,
    ]);
    assert!(!done && out.contains("is locked by"), "{out}");
    let (done, out) = ctl(&["volume", "add", "half", "--backend", "rbd", "--pool", "rbd"]);
    assert!(!done && out.contains("needs --pool and --image"), "{out}");
    let (done, out) = ctl(&["volume", "add", "f", "--path", "f.img", "--pool", "rbd"]);
    assert!(!done && out.contains("apply to rbd volumes"), "{out}");
}

// ---------------------------------------------------------------------------
// kill -9 during FUA writes.

const KILL_BLOCKS: u64 = 192;
const WRITERS: u64 = 3;
const CYCLES: usize = 3;

/// Writes FUA versions of blocks `lo..hi` until the connection dies or a
/// bound; each acknowledged version goes into `acked`.
fn fua_writer(
    id: u64,
    (nvme_port, iscsi_port, cntlid): (u16, u16, u16),
    (lo, hi): (u64, u64),
    acked: &Mutex<Vec<u64>>,
    issued: &Mutex<Vec<u64>>,
    count: &AtomicU64,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut rng = Rng::new(Rng::seed() ^ id);
    let mut nvme = (id < WRITERS - 1).then(|| {
        let mut o = QueueOptions::admin(NQN, HOST);
        (o.qid, o.cntlid) = (2 + id as u16, cntlid);
        NvmeQueue::connect(("127.0.0.1", nvme_port), &o)
            .expect("I/O queue")
            .0
    });
    let mut iscsi = nvme.is_none().then(|| {
        Iscsi::login(iscsi_port, IQN, &format!("iqn.2026-11.test:w{id}"), BS).expect("login")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut writes = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let start = rng.range(lo, hi);
        let n = rng.range(1, 4).min(hi - start);
        let blocks: Vec<(u64, u64)> = {
            let mut iss = issued.lock().expect("issued");
            (start..start + n)
                .map(|b| {
                    iss[b as usize] += 1;
                    (b, iss[b as usize])
                })
                .collect()
        };
        let data: Vec<u8> = blocks
            .iter()
            .flat_map(|&(b, v)| record(BS, b, v, id))
            .collect();
        let r = match (&mut nvme, &mut iscsi) {
            (Some(q), _) => q
                .write(1, start, &data, BS, true)
                .map(|r| r.status().is_success()),
            (_, Some(s)) => s.write(start, &data, true).map(|st| st == 0),
            _ => unreachable!(),
        };
        match r {
            Ok(true) => {
                writes += 1;
                let mut a = acked.lock().expect("acked");
                for (b, v) in blocks {
                    a[b as usize] = a[b as usize].max(v);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => return Err(format!("writer {id}: FUA write failed")),
            Err(e) if is_closed(&e) => break,
            Err(e) => return Err(format!("writer {id}: {e}")),
        }
    }
    Ok(writes)
}

/// Every block holds a whole record at least as new as acknowledged.
fn verify(d: &Daemon, acked: &[u64], issued: &[u64], context: &str) -> (u64, u64) {
    let (_admin, mut io) = nvme_pair(d, 1);
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:verifier", BS).expect("login");
    let (mut at_acked, mut newer) = (0, 0);
    for lba in (0..KILL_BLOCKS).step_by(16) {
        let bytes = ok(io.read(1, lba, 16, BS)).data;
        let (st, via_iscsi) = s.read(lba, 16).expect("iSCSI read");
        assert_eq!(st, 0);
        assert!(bytes == via_iscsi, "{context}: protocols disagree at {lba}");
        for (i, blk) in bytes.chunks(BS).enumerate() {
            let b = lba as usize + i;
            let got = match check_record(blk, b as u64) {
                Ok(Found::Blank) => 0,
                Ok(Found::Version(v)) => v,
                Err(e) => panic!("{context}: {e}"),
            };
            assert!(
                got >= acked[b] && got <= issued[b],
                "{context}: block {b} holds version {got}; acknowledged {}, issued {}",
                acked[b],
                issued[b]
            );
            if got == acked[b] {
                at_acked += 1;
            } else {
                newer += 1;
            }
        }
    }
    (at_acked, newer)
}

#[test]
fn rbd_kill9_during_fua_writes_loses_nothing_acknowledged_uring() {
    kill9_during_fua_writes("uring");
}

#[test]
fn rbd_kill9_during_fua_writes_loses_nothing_acknowledged_epoll() {
    kill9_during_fua_writes("epoll");
}

fn kill9_during_fua_writes(engine: &'static str) {
    let Some(conf) = ceph_conf() else { return };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = rbd_spec(engine, &conf, &image(&format!("kill-{engine}")), "");
    let acked = Arc::new(Mutex::new(vec![0u64; KILL_BLOCKS as usize]));
    let issued = Arc::new(Mutex::new(vec![0u64; KILL_BLOCKS as usize]));
    let mut rng = Rng::new(Rng::seed());
    let per = KILL_BLOCKS / WRITERS;
    let (mut writes, mut restarts) = (0, Duration::ZERO);
    for cycle in 0..=CYCLES {
        let t = Instant::now();
        // The killed daemon's lock lasts until its watch expires.
        let mut d = start_rbd(
            dir.path(),
            &spec,
            &format!("c{cycle}"),
            Duration::from_secs(45),
        );
        restarts += t.elapsed();
        let context = format!("after kill -9 #{cycle}");
        let acked_now = acked.lock().expect("acked").clone();
        let issued_now = issued.lock().expect("issued").clone();
        let (at, newer) = verify(&d, &acked_now, &issued_now, &context);
        eprintln!("{context}: {at} blocks at the acknowledged version, {newer} newer");
        if cycle == CYCLES {
            d.signal(libc::SIGTERM);
            let st = d.wait_exit(Duration::from_secs(30)).expect("exit");
            assert!(st.success(), "{st:?}\n{}", d.log());
            break;
        }
        let (admin, _io) = nvme_pair(&d, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            for id in 0..WRITERS {
                let (acked, issued, count, stop, tx) = (&acked, &issued, &count, &stop, tx.clone());
                let ports = (d.nvme_port, d.iscsi_port, admin.cntlid);
                scope.spawn(move || {
                    let r = fua_writer(
                        id,
                        ports,
                        (id * per, (id + 1) * per),
                        acked,
                        issued,
                        count,
                        stop,
                    );
                    let _ = tx.send(r);
                });
            }
            let flowing = Instant::now() + Duration::from_secs(5);
            while count.load(Ordering::Relaxed) < 20 && Instant::now() < flowing {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.range(0, 200)));
            d.kill9();
            stop.store(true, Ordering::Relaxed);
        });
        drop(tx);
        for r in rx.iter() {
            writes += r.expect("writer");
        }
        assert!(
            count.load(Ordering::Relaxed) > 0,
            "no write before the kill"
        );
    }
    eprintln!(
        "[{engine}] {CYCLES} kill -9 cycles in {:?}: {writes} FUA writes acknowledged, all on \
         the image; restarts (waiting for the dead client's lock) took {restarts:?}",
        t0.elapsed()
    );
}
