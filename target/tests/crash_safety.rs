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

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zctarget_protocol::nvme::{Cqe, Sgl, Sqe};
use zctarget_protocol::nvme_tcp::{C2HData, CapsuleCmd, CapsuleResp, H2CData, PduFlags, PduType};
use zctarget_tests::iscsi::{Iscsi, OP_DATA_IN, OP_R2T, OP_SCSI_RESPONSE};
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::records::{check_record, describe_block, record, Found, Rng};
use zctarget_tests::spec::{start, Spec, HOST, IQN, NQN};
use zctarget_tests::{is_closed, logs, procfs, Daemon};

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
        if data != bytes[at..at + data.len()] {
            panic!(
                "iSCSI and NVMe/TCP disagree about blocks {lba}..{}\n{}",
                lba + u64::from(n),
                disagreement(
                    d,
                    lba,
                    n,
                    &bytes[at..at + data.len()],
                    &data,
                    &mut io,
                    &mut s
                )
            );
        }
    }
    bytes
}

/// Explains a disagreement between the protocols: per block, what NVMe/TCP
/// and iSCSI returned, what a second read through each returns now, and
/// what the file holds (pread, bypassing the daemon); and who listens on
/// the daemon's ports (another process there would have served some of the
/// connections).
fn disagreement(
    d: &Daemon,
    lba: u64,
    n: u32,
    nvme: &[u8],
    iscsi: &[u8],
    io: &mut NvmeQueue,
    s: &mut Iscsi,
) -> String {
    use std::os::unix::fs::FileExt;
    let nvme_again = io.read(1, lba, n, BS).map(|r| r.data).unwrap_or_default();
    let iscsi_again = s.read(lba, n).map(|(_, data)| data).unwrap_or_default();
    let mut file = vec![0u8; n as usize * BS];
    let file_note = match std::fs::File::open(d.dir().join("data.img"))
        .and_then(|f| f.read_exact_at(&mut file, lba * BS as u64))
    {
        Ok(()) => String::new(),
        Err(e) => format!(" (pread failed: {e})"),
    };
    let show = |bytes: &[u8], i: usize, b: u64| match bytes.get(i * BS..(i + 1) * BS) {
        Some(block) => describe_block(block, b),
        None => "-".to_owned(),
    };
    let mut out = format!(
        "daemon pid {}; listeners on the iSCSI port {}: pids {:?}; on the NVMe/TCP port {}: pids {:?}\n\
         block: NVMe/TCP | iSCSI | NVMe/TCP again | iSCSI again | file{file_note}\n",
        d.pid(),
        d.iscsi_port,
        procfs::port_owners(d.iscsi_port),
        d.nvme_port,
        procfs::port_owners(d.nvme_port),
    );
    for i in 0..n as usize {
        let b = lba + i as u64;
        out += &format!(
            "{b}: {} | {} | {} | {} | {}\n",
            show(nvme, i, b),
            show(iscsi, i, b),
            show(&nvme_again, i, b),
            show(&iscsi_again, i, b),
            show(&file, i, b)
        );
    }
    out
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

// ---------------------------------------------------------------------------
// 2. SIGTERM with many commands in flight.

/// Written during the SIGTERM test: one block per command, in-capsule.
const TERM_WRITE_BLOCKS: u64 = 256;
/// Read during the SIGTERM test: prefilled with version 1, never written.
const TERM_READ_BASE: u64 = 1024;
const TERM_READ_BLOCKS: u64 = 256;
/// Blocks per read command (64 KiB).
const READ_CHUNK: u64 = 16;
/// Commands each pipelined client keeps outstanding.
const NVME_QD: usize = 16;
const ISCSI_QD: usize = 8;
const PIPELINED_NVME: u64 = 3;

#[derive(Debug, Default)]
struct PipeEnd {
    completed: u64,
    /// Completions that arrived after the SIGTERM was sent.
    after_term: u64,
    /// Commands sent but neither completed nor failed when the connection
    /// closed.
    cut: usize,
    closed: bool,
    error: Option<String>,
}

/// A 64 KiB read of the prefilled area must hold version 1 of each block.
fn check_read(lba: u64, data: &[u8]) -> Result<(), String> {
    if data.len() != READ_CHUNK as usize * BS {
        return Err(format!("read at {lba}: {} bytes", data.len()));
    }
    for (i, block) in data.chunks(BS).enumerate() {
        let b = lba + i as u64;
        match check_record(block, b) {
            Ok(Found::Version(1)) => {}
            other => return Err(format!("read at {lba}: block {b}: {other:?}")),
        }
    }
    Ok(())
}

enum Op {
    Read { lba: u64, data: Vec<u8> },
    Write { blocks: Vec<(u64, u64)> },
}

/// Keeps `NVME_QD` commands outstanding on one queue (4 KiB in-capsule
/// writes to `lo..hi`, 64 KiB reads of the prefilled area) until the
/// connection closes or a bound; checks every completion.
fn nvme_pipeline(
    mut q: NvmeQueue,
    (lo, hi): (u64, u64),
    ledger: &Mutex<Ledger>,
    progress: &AtomicU64,
    term: &AtomicBool,
    mut rng: Rng,
) -> PipeEnd {
    let mut end = PipeEnd::default();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut outstanding: HashMap<u16, Op> = HashMap::new();
    let mut next_cid: u16 = 0x100;
    let mut sent = 0u64;
    let fail = |end: &mut PipeEnd, msg: String| end.error = Some(msg);
    'run: while Instant::now() < deadline && sent < 200_000 {
        while outstanding.len() < NVME_QD {
            while outstanding.contains_key(&next_cid) || next_cid == 0 {
                next_cid = next_cid.wrapping_add(1);
            }
            let cid = next_cid;
            next_cid = next_cid.wrapping_add(1);
            // Two outstanding writes of one block may execute in either
            // order: only one at a time per block.
            let b = rng.range(lo, hi);
            let busy = outstanding.values().any(|op| match op {
                Op::Write { blocks } => blocks[0].0 == b,
                Op::Read { .. } => false,
            });
            let (sqe, data, op) = if busy || rng.chance(50) {
                let lba = TERM_READ_BASE + rng.range(0, TERM_READ_BLOCKS - READ_CHUNK);
                let mut sqe = Sqe::new(0x02, cid);
                sqe.nsid = 1;
                sqe.dptr = Sgl::transport((READ_CHUNK as usize * BS) as u32);
                sqe.cdw10 = lba as u32;
                sqe.cdw11 = (lba >> 32) as u32;
                sqe.cdw12 = READ_CHUNK as u32 - 1;
                (sqe, Vec::new(), Op::Read { lba, data: vec![] })
            } else {
                let blocks = ledger.lock().expect("ledger").issue(b, 1);
                let mut sqe = Sqe::new(0x01, cid);
                sqe.nsid = 1;
                sqe.dptr = Sgl::in_capsule(BS as u32);
                sqe.cdw10 = b as u32;
                sqe.cdw11 = (b >> 32) as u32;
                (sqe, records(&blocks, 7), Op::Write { blocks })
            };
            match q.send_capsule(&sqe, &data) {
                Ok(()) => {}
                Err(e) if is_closed(&e) => {
                    end.closed = true;
                    break 'run;
                }
                Err(e) => {
                    fail(&mut end, format!("send: {e}"));
                    break 'run;
                }
            }
            sent += 1;
            outstanding.insert(cid, op);
        }
        let pdu = match q.recv() {
            Ok(p) => p,
            Err(e) if is_closed(&e) => {
                end.closed = true;
                break;
            }
            Err(e) => {
                fail(&mut end, format!("receive (hang?): {e}"));
                break;
            }
        };
        let done = match pdu.ch.pdu_type {
            PduType::C2HData => {
                let d = C2HData::parse(pdu.header[..24].try_into().expect("24 bytes"))
                    .expect("C2HData");
                let Some(Op::Read { data, .. }) = outstanding.get_mut(&d.cccid) else {
                    fail(&mut end, format!("C2HData for CID {} not a read", d.cccid));
                    break;
                };
                if d.datao as usize != data.len() {
                    fail(
                        &mut end,
                        format!("C2HData out of order for CID {}", d.cccid),
                    );
                    break;
                }
                data.extend_from_slice(&pdu.data);
                d.success().then_some(d.cccid)
            }
            PduType::CapsuleResp => {
                let r = CapsuleResp::parse(pdu.header[..24].try_into().expect("24 bytes"))
                    .expect("CapsuleResp");
                let cqe = Cqe::parse(&r.cqe);
                if !cqe.status.is_success() {
                    fail(
                        &mut end,
                        format!("CID {} failed: {:?}", cqe.cid, cqe.status),
                    );
                    break;
                }
                Some(cqe.cid)
            }
            other => {
                fail(&mut end, format!("unexpected PDU {other:?}"));
                break;
            }
        };
        if let Some(cid) = done {
            match outstanding.remove(&cid) {
                None => {
                    fail(
                        &mut end,
                        format!("completion for CID {cid}, not outstanding"),
                    );
                    break;
                }
                Some(Op::Read { lba, data }) => {
                    if let Err(e) = check_read(lba, &data) {
                        fail(&mut end, e);
                        break;
                    }
                }
                Some(Op::Write { blocks }) => ledger.lock().expect("ledger").ack(&blocks),
            }
            end.completed += 1;
            if term.load(Ordering::Relaxed) {
                end.after_term += 1;
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
    if end.error.is_none() && !end.closed {
        end.error = Some("connection still open at the deadline".into());
    }
    end.cut = outstanding.len();
    end
}

/// Keeps `ISCSI_QD` 64 KiB reads of the prefilled area outstanding (within
/// the CmdSN window) until the connection closes or a bound.
fn iscsi_pipeline(mut s: Iscsi, progress: &AtomicU64, term: &AtomicBool, mut rng: Rng) -> PipeEnd {
    let mut end = PipeEnd::default();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut outstanding: HashMap<u32, (u64, Vec<u8>)> = HashMap::new();
    let mut sent = 0u64;
    'run: while Instant::now() < deadline && sent < 200_000 {
        while outstanding.len() < ISCSI_QD && s.window_open() {
            let lba = TERM_READ_BASE + rng.range(0, TERM_READ_BLOCKS - READ_CHUNK);
            let cdb = s.read_cdb(lba, READ_CHUNK as u32);
            let cmd = s.command(&cdb, (READ_CHUNK as usize * BS) as u32, 0);
            match s.send_pdu(&cmd.encode(), &[]) {
                Ok(()) => {}
                Err(e) if is_closed(&e) => {
                    end.closed = true;
                    break 'run;
                }
                Err(e) => {
                    end.error = Some(format!("send: {e}"));
                    break 'run;
                }
            }
            sent += 1;
            outstanding.insert(cmd.itt, (lba, Vec::new()));
        }
        let p = match s.next() {
            Ok(p) => p,
            Err(e) if is_closed(&e) => {
                end.closed = true;
                break;
            }
            Err(e) => {
                end.error = Some(format!("receive (hang?): {e}"));
                break;
            }
        };
        let itt = p.itt();
        let Some((_, data)) = outstanding.get_mut(&itt) else {
            end.error = Some(format!("PDU {:#x} for unknown ITT {itt:#x}", p.opcode()));
            break;
        };
        let status = match p.opcode() {
            OP_DATA_IN => {
                if p.be32(40) as usize != data.len() {
                    end.error = Some(format!("Data-In out of order for ITT {itt:#x}"));
                    break;
                }
                data.extend_from_slice(&p.data);
                (p.bhs[1] & 0x01 != 0).then_some((0, p.bhs[3]))
            }
            OP_SCSI_RESPONSE => Some((p.bhs[2], p.bhs[3])),
            other => {
                end.error = Some(format!("unexpected PDU {other:#x}"));
                break;
            }
        };
        if let Some((response, status)) = status {
            s.exp_stat_sn = p.be32(24).wrapping_add(1);
            let (lba, data) = outstanding.remove(&itt).expect("outstanding");
            if (response, status) != (0, 0) {
                end.error = Some(format!(
                    "read at {lba}: response {response} status {status}"
                ));
                break;
            }
            if let Err(e) = check_read(lba, &data) {
                end.error = Some(e);
                break;
            }
            end.completed += 1;
            if term.load(Ordering::Relaxed) {
                end.after_term += 1;
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
    if end.error.is_none() && !end.closed {
        end.error = Some("connection still open at the deadline".into());
    }
    end.cut = outstanding.len();
    end
}

fn sigterm_in_flight(engine: &'static str) {
    let t0 = Instant::now();
    let seed = Rng::seed();
    eprintln!("[{engine}] SIGTERM with I/O in flight, seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::new(engine);
    let mut d = start(dir.path(), &spec, &format!("{engine}-term"));
    let ledger = Arc::new(Mutex::new(Ledger::new(TERM_WRITE_BLOCKS)));
    let (admin, mut io) = nvme_pair(&d, 1);
    for lba in (TERM_READ_BASE..TERM_READ_BASE + TERM_READ_BLOCKS).step_by(READ_CHUNK as usize) {
        let blocks: Vec<(u64, u64)> = (lba..lba + READ_CHUNK).map(|b| (b, 1)).collect();
        let r = io
            .write(1, lba, &records(&blocks, 0), BS, true)
            .expect("prefill");
        assert!(r.status().is_success(), "prefill: {:?}", r.status());
    }

    let progress = Arc::new(AtomicU64::new(0));
    let term = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let per = TERM_WRITE_BLOCKS / PIPELINED_NVME;
    for id in 0..PIPELINED_NVME {
        let q = nvme_io(&d, admin.cntlid, 2 + id as u16);
        let (ledger, progress, term, tx) = (
            Arc::clone(&ledger),
            Arc::clone(&progress),
            Arc::clone(&term),
            tx.clone(),
        );
        let r = Rng::new(rng.next());
        std::thread::spawn(move || {
            let end = nvme_pipeline(q, (id * per, (id + 1) * per), &ledger, &progress, &term, r);
            let _ = tx.send(("nvme", end));
        });
    }
    for id in 0..2 {
        let name = format!("iqn.2026-11.test:pipeline-{id}");
        let s = Iscsi::login(d.iscsi_port, IQN, &name, BS).expect("login");
        let (progress, term, tx) = (Arc::clone(&progress), Arc::clone(&term), tx.clone());
        let r = Rng::new(rng.next());
        std::thread::spawn(move || {
            let _ = tx.send(("iscsi", iscsi_pipeline(s, &progress, &term, r)));
        });
    }
    let clients = PIPELINED_NVME as usize + 2;
    // SIGTERM once the streams are flowing, at a random moment.
    let flowing = Instant::now() + Duration::from_secs(10);
    while progress.load(Ordering::Relaxed) < 200 && Instant::now() < flowing {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(rng.range(0, 100)));
    term.store(true, Ordering::Relaxed);
    let before_term = progress.load(Ordering::Relaxed);
    let t_term = Instant::now();
    d.signal(libc::SIGTERM);
    let ends = collect(&rx, clients, Duration::from_secs(45), "pipelined clients");
    let clients_done = t_term.elapsed();
    drop((admin, io));
    let st = d
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("daemon still running 30 s after SIGTERM:\n{}", d.log()));
    let exited = t_term.elapsed();
    let log = d.log();
    assert!(st.success(), "exit status {st:?}\n{log}");
    for (kind, e) in &ends {
        assert!(
            e.error.is_none(),
            "[{engine}] {kind} client (seed {seed}): {:?}",
            e.error
        );
        assert!(e.closed, "[{engine}] {kind} client never saw the close");
    }
    assert!(logs::pool_intact(&log), "{log}");
    assert!(!log.contains("leases outstanding"), "{log}");
    assert!(
        !log.contains("still busy after the shutdown grace period"),
        "a connection held shutdown for the whole grace period:\n{log}"
    );

    // Everything acknowledged is on disk after a clean stop; the read-only
    // area is untouched.
    let d = start(dir.path(), &spec, &format!("{engine}-term-restart"));
    let bytes = read_all(&d, TERM_READ_BASE + TERM_READ_BLOCKS);
    let v = verify(
        &bytes[..TERM_WRITE_BLOCKS as usize * BS],
        &ledger.lock().expect("ledger"),
        &format!("[{engine}] after SIGTERM (seed {seed})"),
    );
    let area = &bytes[TERM_READ_BASE as usize * BS..];
    for (i, chunk) in area.chunks(READ_CHUNK as usize * BS).enumerate() {
        let lba = TERM_READ_BASE + i as u64 * READ_CHUNK;
        check_read(lba, chunk).expect("prefilled area");
    }
    let completed: u64 = ends.iter().map(|(_, e)| e.completed).sum();
    let after: u64 = ends.iter().map(|(_, e)| e.after_term).sum();
    let cut: usize = ends.iter().map(|(_, e)| e.cut).sum();
    eprintln!(
        "[{engine}] SIGTERM after {before_term} completions: {completed} commands completed \
         ({after} of them after the SIGTERM), {cut} cut by the close; clients done in {:.2}s, \
         daemon exited 0 in {:.2}s; {} blocks at the acknowledged version, {} newer; total {:.1}s",
        clients_done.as_secs_f64(),
        exited.as_secs_f64(),
        v.at_acked,
        v.newer,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn sigterm_with_io_in_flight_uring() {
    sigterm_in_flight("uring");
}

#[test]
fn sigterm_with_io_in_flight_epoll() {
    sigterm_in_flight("epoll");
}

// ---------------------------------------------------------------------------
// 3. Clients vanishing mid-command.

/// Waits (bounded) until at least one byte can be read from `s`.
fn await_bytes(s: &TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(matches!(s.peek(&mut b), Ok(1)), "no data arrived");
}

/// Closes with a RST (SO_LINGER 0) instead of a FIN.
fn abort(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Waits (bounded) until `f` holds.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn vanishing_clients(engine: &'static str) {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = start(dir.path(), &Spec::new(engine), &format!("{engine}-vanish"));
    // Healthy sessions on both protocols; old data where the broken writes
    // will aim.
    let (mut admin, mut io) = nvme_pair(&d, 1);
    let mut healthy =
        Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:healthy", BS).expect("login");
    let old: Vec<(u64, u64)> = (0..32).map(|b| (b, 1)).collect();
    let old = records(&old, 1);
    assert!(io
        .write(1, 0, &old, BS, true)
        .expect("write")
        .status()
        .is_success());
    // The daemon's descriptors with only the healthy sessions open.
    std::thread::sleep(Duration::from_millis(200));
    let fds = d.fd_count();
    let new: Vec<(u64, u64)> = (0..32).map(|b| (b, 2)).collect();
    let new = records(&new, 2);

    // NVMe/TCP: a write sent through R2T, half its H2CData, then gone.
    let mut q = nvme_io(&d, admin.cntlid, 2);
    let mut sqe = Sqe::new(0x01, 0x51);
    sqe.nsid = 1;
    sqe.dptr = Sgl::transport(64 << 10);
    sqe.cdw12 = 15;
    q.send_capsule(&sqe, &[]).expect("capsule");
    let r2t = q.recv().expect("R2T");
    assert_eq!(r2t.ch.pdu_type, PduType::R2t);
    let h2c = H2CData {
        flags: PduFlags::LAST_PDU,
        pdo: 24,
        plen: 24 + (64 << 10),
        cccid: 0x51,
        ttag: u16::from_le_bytes([r2t.header[10], r2t.header[11]]),
        datao: 0,
        datal: 64 << 10,
    };
    let mut raw = h2c.encode().to_vec();
    raw.extend_from_slice(&new[..32 << 10]);
    q.send_raw(&raw).expect("half H2CData");
    drop(q);

    // NVMe/TCP: an in-capsule write with half its data, then gone (RST).
    let mut q = nvme_io(&d, admin.cntlid, 3);
    let mut sqe = Sqe::new(0x01, 0x52);
    sqe.nsid = 1;
    sqe.dptr = Sgl::in_capsule(8192);
    sqe.cdw12 = 1;
    let capsule = CapsuleCmd {
        flags: PduFlags::empty(),
        pdo: 72,
        plen: 72 + 8192,
        sqe: sqe.encode(),
    };
    let mut raw = capsule.encode().to_vec();
    raw.extend_from_slice(&new[..4096]);
    q.send_raw(&raw).expect("half capsule data");
    std::thread::sleep(Duration::from_millis(50));
    abort(q.stream());
    drop(q);

    // NVMe/TCP: a 1 MiB read, closed before any data is read; and one
    // reset once its data has started to arrive.
    let mut q = nvme_io(&d, admin.cntlid, 4);
    let mut sqe = Sqe::new(0x02, 0x53);
    sqe.nsid = 1;
    sqe.dptr = Sgl::transport(1 << 20);
    sqe.cdw12 = 255;
    q.send_capsule(&sqe, &[]).expect("read");
    drop(q);
    let mut q = nvme_io(&d, admin.cntlid, 5);
    sqe.cid = 0x54;
    q.send_capsule(&sqe, &[]).expect("read");
    await_bytes(q.stream());
    abort(q.stream());
    drop(q);

    // iSCSI: a write with half its solicited Data-Out, then gone.
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:vanish-w", BS).expect("login");
    let cdb = s.write_cdb(16, 64 << 10, true);
    let cmd = s.command(&cdb, 0, 64 << 10);
    s.send_pdu(&cmd.encode(), &[]).expect("command");
    let r2t = s.next().expect("R2T");
    assert_eq!(r2t.opcode(), OP_R2T);
    let dout = zctarget_protocol::iscsi::DataOut {
        final_bit: true,
        data_segment_len: 64 << 10,
        itt: cmd.itt,
        ttt: r2t.be32(20),
        exp_stat_sn: s.exp_stat_sn,
        ..Default::default()
    };
    let mut raw = dout.encode().to_vec();
    raw.extend_from_slice(&new[16 * BS..16 * BS + (32 << 10)]);
    s.s.write_all(&raw).expect("half Data-Out");
    drop(s);

    // iSCSI: a 1 MiB read reset once its data has started to arrive; and a
    // command header cut after 20 bytes.
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:vanish-r", BS).expect("login");
    let cdb = s.read_cdb(0, 256);
    let cmd = s.command(&cdb, 1 << 20, 0);
    s.send_pdu(&cmd.encode(), &[]).expect("command");
    await_bytes(&s.s);
    abort(&s.s);
    drop(s);
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:vanish-h", BS).expect("login");
    let cmd = s.command(&[0; 6], 0, 0);
    s.s.write_all(&cmd.encode()[..20]).expect("partial header");
    drop(s);

    // The healthy sessions never noticed, and no partial write was applied.
    let fresh: Vec<(u64, u64)> = (32..48).map(|b| (b, 3)).collect();
    let fresh = records(&fresh, 3);
    assert!(io
        .write(1, 32, &fresh, BS, false)
        .expect("write")
        .status()
        .is_success());
    assert_eq!(healthy.write(48, &fresh[..8 * BS], true).expect("write"), 0);
    let r = io.read(1, 0, 56, BS).expect("read");
    assert!(r.status().is_success());
    assert!(r.data[..32 * BS] == old[..], "a partial write was applied");
    assert!(r.data[32 * BS..48 * BS] == fresh[..]);
    assert!(r.data[48 * BS..] == fresh[..8 * BS]);
    let (st, data) = healthy.read(0, 48).expect("read");
    assert_eq!(st, 0);
    assert!(data == r.data[..48 * BS]);
    assert!(admin
        .keep_alive()
        .expect("keep alive")
        .status()
        .is_success());

    // Every vanished connection is gone on the daemon's side too, and the
    // pool is full again (a probe queue's end reports it).
    assert!(
        eventually(Duration::from_secs(15), || d.fd_count() <= fds),
        "daemon descriptors: {} now, {fds} before the broken clients\n{}",
        d.fd_count(),
        d.log()
    );
    let mut probe = nvme_io(&d, admin.cntlid, 6);
    assert!(probe
        .disconnect()
        .expect("disconnect")
        .status()
        .is_success());
    drop(probe);
    assert!(
        d.pool_full_after_disconnects(1),
        "pool not full after the broken clients left:\n{}",
        d.log()
    );

    // And the daemon stops cleanly with every chunk back.
    drop((admin, io, healthy));
    let log = d.stop_intact(Duration::from_secs(30));
    assert!(!log.contains("leases outstanding"), "{log}");
    eprintln!(
        "[{engine}] 7 vanishing clients: healthy sessions unaffected, partial writes not applied, \
         descriptors back to {fds}, pool full; {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn clients_vanishing_mid_command_harm_nobody_uring() {
    vanishing_clients("uring");
}

#[test]
fn clients_vanishing_mid_command_harm_nobody_epoll() {
    vanishing_clients("epoll");
}

/// A host that stops reading the data of its reads and whose controller is
/// then torn down (keep-alive timeout): the daemon lets go of the
/// connection — every chunk back, the socket closed — although the host
/// keeps it open.
fn stalled_reader_torn_down(engine: &'static str) {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = start(dir.path(), &Spec::new(engine), &format!("{engine}-stalled"));
    std::thread::sleep(Duration::from_millis(200));
    let fds = d.fd_count();
    let mut o = QueueOptions::admin(NQN, HOST);
    o.kato_ms = 1000;
    let admin = NvmeQueue::admin(d.nvme_addr(), &o).expect("admin");
    let mut q = nvme_io(&d, admin.cntlid, 1);
    // 12 MiB of reads: more than the socket buffers hold; never read.
    for cid in 0..12u16 {
        let mut sqe = Sqe::new(0x02, 0x200 + cid);
        sqe.nsid = 1;
        sqe.dptr = Sgl::transport(1 << 20);
        sqe.cdw12 = 255;
        q.send_capsule(&sqe, &[]).expect("read");
    }
    await_bytes(q.stream());
    // No Keep Alive: the controller goes after 1 s; its I/O queue's
    // commands wait for a release that cannot come.
    let gone = eventually(Duration::from_secs(30), || {
        d.log().contains("exit=ControllerGone") && d.fd_count() <= fds
    });
    let log = d.log();
    assert!(
        gone,
        "[{engine}] the stalled queue was not let go ({} descriptors, {fds} before):\n{log}",
        d.fd_count()
    );
    let line = log
        .lines()
        .find(|l| l.contains("exit=ControllerGone"))
        .expect("queue ended line");
    assert!(line.contains("pool_free=256 pool_total=256"), "{line}");
    let released = t0.elapsed();
    drop((admin, q));
    d.stop_intact(Duration::from_secs(30));
    eprintln!(
        "[{engine}] stalled reader torn down: connection and pool released {:.1}s after start",
        released.as_secs_f64()
    );
}

#[test]
fn stalled_reader_is_let_go_when_its_controller_goes_uring() {
    stalled_reader_torn_down("uring");
}

#[test]
fn stalled_reader_is_let_go_when_its_controller_goes_epoll() {
    stalled_reader_torn_down("epoll");
}
