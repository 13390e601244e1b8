//! Crash safety and restarts (issue #5), against the real daemon binary on a
//! file-backed volume, on both I/O engines:
//!
//! - SIGKILL during a stream of writes, restart on the same file, many
//!   cycles: every block read back is a whole self-describing record, of a
//!   version at least the last one acknowledged as durable (FUA write, or a
//!   plain write followed by a completed flush) and at most the last one
//!   issued.
//! - SIGTERM with many commands in flight: every command either completes
//!   successfully with the right data or its connection closes; no client
//!   hangs; the daemon exits 0 with its buffer pool intact, and every
//!   acknowledged write is on disk after the restart.
//! - Clients vanishing mid-command (half the write data, or a read never
//!   read): other sessions keep working, the partial write is not applied,
//!   the pool and the file descriptors come back.

#[allow(dead_code)]
#[path = "../../tests/src/nvme_client.rs"]
mod nvme_client;

#[allow(dead_code)]
mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::iscsi::Iscsi;
use common::{check_record, is_closed, record, start, Daemon, Found, Rng, Spec, HOST, IQN, NQN};
use nvme_client::{NvmeQueue, QueueOptions};

/// Logical block size of the test volume: one self-describing record.
const BS: usize = 4096;

// ---------------------------------------------------------------------------
// Shared pieces.

/// Per block: the last version issued and the last acknowledged (as
/// durable, for the kill -9 test; at all, for the SIGTERM test).
struct Ledger {
    issued: Vec<u64>,
    acked: Vec<u64>,
}

impl Ledger {
    fn new(blocks: u64) -> Self {
        Self {
            issued: vec![0; blocks as usize],
            acked: vec![0; blocks as usize],
        }
    }

    /// Issues the next version of `start..start+n`.
    fn issue(&mut self, start: u64, n: u64) -> Vec<(u64, u64)> {
        (start..start + n)
            .map(|b| {
                self.issued[b as usize] += 1;
                (b, self.issued[b as usize])
            })
            .collect()
    }

    fn ack(&mut self, blocks: &[(u64, u64)]) {
        for &(b, v) in blocks {
            let a = &mut self.acked[b as usize];
            *a = (*a).max(v);
        }
    }
}

fn records(blocks: &[(u64, u64)], writer: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(blocks.len() * BS);
    for &(b, v) in blocks {
        data.extend_from_slice(&record(BS, b, v, writer));
    }
    data
}

/// An admin queue plus one I/O queue on a fresh controller.
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

/// Reads blocks `0..blocks` through NVMe/TCP and through iSCSI; both must
/// return the same bytes.
fn read_all(d: &Daemon, blocks: u64) -> Vec<u8> {
    const STEP: u64 = 16;
    let (_admin, mut io) = nvme_pair(d, 1);
    let mut bytes = Vec::with_capacity(blocks as usize * BS);
    for lba in (0..blocks).step_by(STEP as usize) {
        let n = STEP.min(blocks - lba) as u32;
        let r = io.read(1, lba, n, BS).expect("NVMe read");
        assert!(r.status().is_success(), "NVMe read: {:?}", r.status());
        bytes.extend_from_slice(&r.data);
    }
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:verifier", BS).expect("login");
    for lba in (0..blocks).step_by(STEP as usize) {
        let n = STEP.min(blocks - lba) as u32;
        let (st, data) = s.read(lba, n).expect("iSCSI read");
        assert_eq!(st, 0, "iSCSI read status");
        let at = lba as usize * BS;
        assert!(
            data == bytes[at..at + data.len()],
            "iSCSI and NVMe/TCP disagree about blocks {lba}..{}",
            lba + u64::from(n)
        );
    }
    bytes
}

/// What a verification found.
#[derive(Debug, Default, Clone, Copy)]
struct Verified {
    blank: u64,
    /// Holding exactly the last acknowledged version.
    at_acked: u64,
    /// Holding a later version: its write was not acknowledged (as durable)
    /// before the daemon died, and landed anyway.
    newer: u64,
}

/// Every block must be a whole record of a version in
/// `acked[b]..=issued[b]`.
fn verify(bytes: &[u8], ledger: &Ledger, context: &str) -> Verified {
    let mut v = Verified::default();
    let mut problems = Vec::new();
    for (b, block) in bytes.chunks(BS).enumerate() {
        let (issued, acked) = (ledger.issued[b], ledger.acked[b]);
        match check_record(block, b as u64) {
            Err(e) => problems.push(e),
            Ok(found) => {
                let got = match found {
                    Found::Blank => 0,
                    Found::Version(n) => n,
                };
                if got < acked {
                    problems.push(format!(
                        "block {b}: version {got} on disk, but {acked} was acknowledged (LOST)"
                    ));
                } else if got > issued {
                    problems.push(format!(
                        "block {b}: version {got} on disk, only {issued} ever issued"
                    ));
                } else if found == Found::Blank {
                    v.blank += 1;
                } else if got == acked {
                    v.at_acked += 1;
                } else {
                    v.newer += 1;
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{context}: {} bad blocks:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    v
}

/// Waits for `n` results on `rx`, at most `within`.
fn collect<T>(rx: &mpsc::Receiver<T>, n: usize, within: Duration, what: &str) -> Vec<T> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => out.push(r),
            Err(_) => panic!(
                "{what}: only {} of {n} threads ended within {within:?}",
                out.len()
            ),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 1. SIGKILL during writes, restart, verify — many cycles.

/// Blocks written and checked (1 MiB), split evenly between the writers.
const KILL_BLOCKS: u64 = 256;
const NVME_WRITERS: u64 = 3;
/// Three NVMe/TCP writers and one iSCSI writer.
const WRITERS: u64 = NVME_WRITERS + 1;
const CYCLES: usize = 20;

/// A writer's transport.
trait Dev: Send {
    /// Ok(Ok) acknowledged, Ok(Err) failed with a status, Err transport.
    fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> io::Result<Result<(), String>>;
    fn flush(&mut self) -> io::Result<Result<(), String>>;
}

struct NvmeDev(NvmeQueue);

impl Dev for NvmeDev {
    fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> io::Result<Result<(), String>> {
        let r = self.0.write(1, lba, data, BS, fua)?;
        Ok(if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("{:?}", r.status()))
        })
    }
    fn flush(&mut self) -> io::Result<Result<(), String>> {
        let r = self.0.flush(1)?;
        Ok(if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("{:?}", r.status()))
        })
    }
}

struct IscsiDev(Iscsi);

impl Dev for IscsiDev {
    fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> io::Result<Result<(), String>> {
        let st = self.0.write(lba, data, fua)?;
        Ok(if st == 0 {
            Ok(())
        } else {
            Err(format!("SCSI status {st:#x}"))
        })
    }
    fn flush(&mut self) -> io::Result<Result<(), String>> {
        let st = self.0.sync_cache()?;
        Ok(if st == 0 {
            Ok(())
        } else {
            Err(format!("SCSI status {st:#x}"))
        })
    }
}

#[derive(Debug, Default)]
struct WriterEnd {
    writes: u64,
    fua: u64,
    flushes: u64,
    error: Option<String>,
}

/// Writes versions of blocks `lo..hi` (1–4 blocks per command, half of them
/// FUA, plain ones flushed now and then) until the connection dies, `stop`,
/// or a bound. Durable acknowledgements go to the ledger.
fn writer(
    id: u64,
    mut dev: Box<dyn Dev>,
    (lo, hi): (u64, u64),
    ledger: &Mutex<Ledger>,
    acks: &AtomicU64,
    stop: &AtomicBool,
    mut rng: Rng,
) -> WriterEnd {
    let mut end = WriterEnd::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending: Vec<(u64, u64)> = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && end.writes < 50_000 {
        let start = rng.range(lo, hi);
        let n = rng.range(1, 5).min(hi - start);
        let blocks = ledger.lock().expect("ledger").issue(start, n);
        let fua = rng.chance(50);
        match dev.write(start, &records(&blocks, id), fua) {
            Ok(Ok(())) => {
                end.writes += 1;
                if fua {
                    end.fua += 1;
                    ledger.lock().expect("ledger").ack(&blocks);
                    acks.fetch_add(1, Ordering::Relaxed);
                } else {
                    pending.extend_from_slice(&blocks);
                }
            }
            Ok(Err(status)) => {
                end.error = Some(format!("writer {id}: write failed: {status}"));
                break;
            }
            Err(e) if is_closed(&e) => break,
            Err(e) => {
                end.error = Some(format!("writer {id}: write: {e}"));
                break;
            }
        }
        if !pending.is_empty() && rng.chance(35) {
            match dev.flush() {
                Ok(Ok(())) => {
                    end.flushes += 1;
                    ledger.lock().expect("ledger").ack(&pending);
                    acks.fetch_add(1, Ordering::Relaxed);
                    pending.clear();
                }
                Ok(Err(status)) => {
                    end.error = Some(format!("writer {id}: flush failed: {status}"));
                    break;
                }
                Err(e) if is_closed(&e) => break,
                Err(e) => {
                    end.error = Some(format!("writer {id}: flush: {e}"));
                    break;
                }
            }
        }
    }
    end
}

fn kill9_cycles(engine: &'static str) {
    let t0 = Instant::now();
    let seed = Rng::seed();
    eprintln!("[{engine}] kill -9 cycles, seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::new(engine);
    let ledger = Arc::new(Mutex::new(Ledger::new(KILL_BLOCKS)));
    let per = KILL_BLOCKS / WRITERS;
    let (mut cycles, mut writes, mut fua, mut flushes) = (0, 0, 0, 0);
    let mut totals = Verified::default();
    for cycle in 0..CYCLES {
        // Bounded in wall time as well as in count.
        if t0.elapsed() > Duration::from_secs(40) {
            break;
        }
        let mut d = start(dir.path(), &spec, &format!("{engine}-{cycle}"));
        if cycle > 0 {
            let bytes = read_all(&d, KILL_BLOCKS);
            let v = verify(
                &bytes,
                &ledger.lock().expect("ledger"),
                &format!("[{engine}] after kill -9 #{cycle} (seed {seed})"),
            );
            totals.blank += v.blank;
            totals.at_acked += v.at_acked;
            totals.newer += v.newer;
        }
        let (admin, _io) = nvme_pair(&d, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        for id in 0..WRITERS {
            let dev: Box<dyn Dev> = if id < NVME_WRITERS {
                Box::new(NvmeDev(nvme_io(&d, admin.cntlid, 2 + id as u16)))
            } else {
                let name = format!("iqn.2026-11.test:writer-{id}");
                Box::new(IscsiDev(
                    Iscsi::login(d.iscsi_port, IQN, &name, BS).expect("login"),
                ))
            };
            let (ledger, acks, stop, tx) = (
                Arc::clone(&ledger),
                Arc::clone(&acks),
                Arc::clone(&stop),
                tx.clone(),
            );
            let wrng = Rng::new(rng.next());
            let range = (id * per, (id + 1) * per);
            std::thread::spawn(move || {
                let end = writer(id, dev, range, &ledger, &acks, &stop, wrng);
                let _ = tx.send(end);
            });
        }
        // Kill at a random moment once the stream is flowing.
        let flowing = Instant::now() + Duration::from_secs(5);
        while acks.load(Ordering::Relaxed) < 4 && Instant::now() < flowing {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, 300)));
        d.kill9();
        let ends = collect(&rx, WRITERS as usize, Duration::from_secs(15), "writers");
        stop.store(true, Ordering::Relaxed);
        for e in &ends {
            assert!(e.error.is_none(), "[{engine}] seed {seed}: {:?}", e.error);
            writes += e.writes;
            fua += e.fua;
            flushes += e.flushes;
        }
        assert!(
            ends.iter().map(|e| e.writes).sum::<u64>() > 0,
            "[{engine}] cycle {cycle}: no write completed before the kill"
        );
        cycles += 1;
    }
    assert!(
        cycles >= 4,
        "[{engine}] only {cycles} cycles in the time budget"
    );
    // Last restart: verify, then a clean stop.
    let mut d = start(dir.path(), &spec, &format!("{engine}-final"));
    let bytes = read_all(&d, KILL_BLOCKS);
    let v = verify(
        &bytes,
        &ledger.lock().expect("ledger"),
        &format!("[{engine}] after the last kill -9 (seed {seed})"),
    );
    totals.blank += v.blank;
    totals.at_acked += v.at_acked;
    totals.newer += v.newer;
    d.signal(libc::SIGTERM);
    let st = d
        .wait_exit(Duration::from_secs(30))
        .expect("exit after SIGTERM");
    assert!(st.success(), "{st:?}\n{}", d.log());
    eprintln!(
        "[{engine}] {cycles} kill -9 cycles in {:.1}s: {writes} writes acknowledged \
         ({fua} FUA, {flushes} flushes); blocks checked: {} at the acknowledged version, \
         {} newer (a write not acknowledged as durable landed), {} never written",
        t0.elapsed().as_secs_f64(),
        totals.at_acked,
        totals.newer,
        totals.blank
    );
}

#[test]
fn kill9_during_writes_loses_nothing_acknowledged_uring() {
    kill9_cycles("uring");
}

#[test]
fn kill9_during_writes_loses_nothing_acknowledged_epoll() {
    kill9_cycles("epoll");
}
