//! One load-generator thread: an epoll loop over its queues' non-blocking
//! sockets.
//!
//! Why a hand-written loop and not tokio or mio: the work per event is
//! "parse every complete PDU in the receive buffer, answer each with the next
//! capsule appended to the send buffer, write the send buffer once" — a
//! future per queue would add wakers and an executor between the socket and
//! that loop without saving any code, and mio is not a dependency of the
//! workspace while `libc`'s three epoll calls are. Per command there is no
//! allocation and no task: a command is a slot in a fixed array (its index
//! is the CID), its capsule is appended to the queue's send buffer, and one
//! `write` carries every capsule queued since the last one; one `read`
//! fills a large buffer that is parsed for as many PDUs as it holds.
//!
//! Write data is copied into the send buffer after its header (an iovec
//! path would avoid it for large writes; one memcpy is cheap next to the
//! syscalls it batches, and it keeps the send path one buffer).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zctarget_protocol::nvme::{io_opcode, Sct, Sgl, Sqe, Status};
use zctarget_protocol::nvme_tcp::{digest, CapsuleCmd, CommonHeader, PduFlags};

use super::hist::Histogram;
use super::{Pattern, Rw};

mod pdu;

/// A connected I/O queue, ready to be driven.
pub struct Conn {
    pub stream: TcpStream,
    pub qid: u16,
    pub hdgst: bool,
    pub ddgst: bool,
}

/// What the namespace and controller allow.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub nsid: u32,
    /// Logical block size.
    pub lba: usize,
    /// Blocks per command.
    pub nlb: u32,
    /// First block of the range.
    pub start: u64,
    /// Commands that fit in the range.
    pub span: u64,
    /// In-capsule data limit (IOCCSZ × 16 − 64).
    pub in_capsule: usize,
    /// MAXH2CDATA from the ICResp.
    pub maxh2cdata: usize,
    /// Commands in flight per queue.
    pub qd: usize,
    /// `epoll_wait` never sleeps (see `PerfConfig::poll`).
    pub poll: bool,
}

/// One phase of work for one thread.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub pattern: Pattern,
    pub rw: Rw,
    pub mix_read_pct: u8,
    /// Write the LBA-derived pattern, check it on reads.
    pub verify: bool,
    /// Where the sequential cursor starts (in commands).
    pub seq_start: u64,
    /// Stop submitting after this many commands.
    pub limit: Option<u64>,
    pub warmup: Duration,
    pub run: Duration,
    pub seed: u64,
}

/// A thread's results.
#[derive(Debug, Default)]
pub struct Stats {
    /// Completions inside the measured window.
    pub ios: u64,
    pub reads: u64,
    pub writes: u64,
    /// Completions with a non-zero status (whole run, warm-up included).
    pub errors: u64,
    /// Reads whose data did not match the pattern (whole run).
    pub verify_failures: u64,
    /// Commands the target answered with Command Interrupted (retryable
    /// busy), resubmitted (whole run).
    pub busy: u64,
    /// Reads ended by the C2HData SUCCESS flag instead of a CapsuleResp
    /// (whole run).
    pub success_flag: u64,
    /// The first few failures, described.
    pub samples: Vec<String>,
    pub hist: Histogram,
    pub measured: Duration,
}

const MAX_SAMPLES: usize = 10;
const PATTERN_SEED: u64 = 0x7a63_7467_7065_7266;

/// The 8-byte word at byte `at` (a multiple of 8) of block `lba`.
#[inline]
fn pattern_word(lba: u64, at: usize) -> u64 {
    lba.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (at as u64) ^ PATTERN_SEED
}

#[derive(Clone, Copy, Default)]
struct Slot {
    busy: bool,
    write: bool,
    slba: u64,
    submitted: Option<Instant>,
    received: usize,
    bad_data: bool,
}

struct Queue {
    conn: Conn,
    idx: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    want_out: bool,
    slots: Vec<Slot>,
    free: Vec<u16>,
    inflight: usize,
}

/// The thread's state outside its queues.
struct Worker<'a> {
    geo: &'a Geometry,
    phase: &'a Phase,
    rng: u64,
    seq: u64,
    submitted: u64,
    submitting: bool,
    measuring: bool,
    stats: Stats,
    fill: Vec<u8>,
}

fn epoll_mod(ep: i32, fd: i32, idx: usize, out: bool, add: bool) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | if out { libc::EPOLLOUT } else { 0 }) as u32,
        u64: idx as u64,
    };
    let op = if add {
        libc::EPOLL_CTL_ADD
    } else {
        libc::EPOLL_CTL_MOD
    };
    // SAFETY: `ep` and `fd` are open descriptors owned by this thread; `ev`
    // lives across the call.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

struct Epoll(i32);

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this guard owns, once.
        unsafe { libc::close(self.0) };
    }
}

/// Drives `conns` through `phase`; gives the connections back for a
/// following phase.
pub fn run(conns: Vec<Conn>, geo: &Geometry, phase: &Phase) -> anyhow::Result<(Vec<Conn>, Stats)> {
    // SAFETY: plain syscall; the result is checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error()).context("epoll_create1");
    }
    let ep = Epoll(ep);
    let max_pdu = geo.nlb as usize * geo.lba + 256;
    let mut queues = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        conn.stream.set_nonblocking(true).context("non-blocking")?;
        epoll_mod(ep.0, conn.stream.as_raw_fd(), i, false, true).context("epoll_ctl")?;
        queues.push(Queue {
            conn,
            idx: i,
            rbuf: vec![0; (4 * max_pdu).max(256 * 1024)],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(geo.qd * (128 + geo.in_capsule.min(max_pdu))),
            wpos: 0,
            want_out: false,
            slots: vec![Slot::default(); geo.qd],
            free: (0..geo.qd as u16).rev().collect(),
            inflight: 0,
        });
    }
    let mut w = Worker {
        geo,
        phase,
        rng: phase.seed | 1,
        seq: phase.seq_start % geo.span.max(1),
        submitted: 0,
        submitting: true,
        measuring: phase.warmup.is_zero(),
        stats: Stats::default(),
        fill: vec![0x5a; geo.nlb as usize * geo.lba],
    };
    let start = Instant::now();
    let warm_end = start + phase.warmup;
    let end = warm_end + phase.run;
    let mut measure_start = start;
    for q in queues.iter_mut() {
        while w.submit(q)? {}
        q.flush(ep.0)?;
    }
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let wait_ms = if geo.poll { 0 } else { 100 };
    loop {
        let now = Instant::now();
        if !w.measuring && w.submitting && now >= warm_end {
            w.stats = Stats {
                errors: w.stats.errors,
                verify_failures: w.stats.verify_failures,
                success_flag: w.stats.success_flag,
                busy: w.stats.busy,
                samples: std::mem::take(&mut w.stats.samples),
                ..Stats::default()
            };
            w.measuring = true;
            measure_start = now;
        }
        if w.submitting && now >= end {
            w.submitting = false;
        }
        if !w.submitting && w.measuring {
            w.measuring = false;
            w.stats.measured = now.saturating_duration_since(measure_start);
        }
        if !w.submitting && queues.iter().all(|q| q.inflight == 0) {
            break;
        }
        if !w.submitting && now > end + Duration::from_secs(10) {
            let left: usize = queues.iter().map(|q| q.inflight).sum();
            bail!("{left} commands still in flight 10 s after the end of the run");
        }
        // SAFETY: `events` is a valid array of its length for the kernel to
        // fill; `ep` is open.
        let n =
            unsafe { libc::epoll_wait(ep.0, events.as_mut_ptr(), events.len() as i32, wait_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("epoll_wait");
        }
        for ev in &events[..n as usize] {
            let q = &mut queues[ev.u64 as usize];
            if ev.events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                q.on_readable(&mut w)
                    .with_context(|| format!("I/O queue {}", q.conn.qid))?;
            }
        }
        for q in queues.iter_mut() {
            if q.wpos < q.wbuf.len() {
                q.flush(ep.0)
                    .with_context(|| format!("I/O queue {} send", q.conn.qid))?;
            }
        }
    }
    if w.stats.measured.is_zero() {
        w.stats.measured = Instant::now().saturating_duration_since(measure_start);
    }
    let conns = queues
        .into_iter()
        .map(|q| {
            let _ = q.conn.stream.set_nonblocking(false);
            q.conn
        })
        .collect();
    Ok((conns, w.stats))
}

impl Worker<'_> {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Appends `len` bytes of write data for the command at `slba`, from
    /// byte `off` of its buffer, with its data digest when negotiated.
    fn put_data(&self, out: &mut Vec<u8>, slba: u64, off: usize, len: usize, ddgst: bool) {
        let at = out.len();
        if self.phase.verify {
            let lba = self.geo.lba;
            out.reserve(len);
            for o in (off..off + len).step_by(8) {
                let word = pattern_word(slba + (o / lba) as u64, o % lba);
                out.extend_from_slice(&word.to_le_bytes());
            }
        } else {
            out.extend_from_slice(&self.fill[off..off + len]);
        }
        if ddgst {
            let crc = digest::data_digest(&out[at..]);
            out.extend_from_slice(&digest::to_wire(crc));
        }
    }

    /// Queues one more command on `q` if the phase and the queue depth allow.
    fn submit(&mut self, q: &mut Queue) -> anyhow::Result<bool> {
        if !self.submitting || q.inflight >= self.geo.qd {
            return Ok(false);
        }
        if self.phase.limit.is_some_and(|l| self.submitted >= l) {
            self.submitting = false;
            return Ok(false);
        }
        if q.free.is_empty() {
            return Ok(false);
        }
        let write = match self.phase.rw {
            Rw::Read => false,
            Rw::Write => true,
            Rw::Mix => (self.next_rand() % 100) as u8 >= self.phase.mix_read_pct,
        };
        let idx = match self.phase.pattern {
            Pattern::Rand => self.next_rand() % self.geo.span,
            Pattern::Seq => {
                let i = self.seq;
                self.seq = (self.seq + 1) % self.geo.span;
                i
            }
        };
        let slba = self.geo.start + idx * u64::from(self.geo.nlb);
        self.submitted += 1;
        self.submit_at(q, write, slba);
        Ok(true)
    }

    /// Queues a read or write of one command's blocks at `slba` on `q`,
    /// which has a free slot.
    fn submit_at(&mut self, q: &mut Queue, write: bool, slba: u64) {
        let Some(cid) = q.free.pop() else {
            return;
        };
        let len = self.geo.nlb as usize * self.geo.lba;
        let mut sqe = Sqe::new(
            if write {
                io_opcode::WRITE
            } else {
                io_opcode::READ
            },
            cid,
        );
        sqe.nsid = self.geo.nsid;
        sqe.cdw10 = slba as u32;
        sqe.cdw11 = (slba >> 32) as u32;
        sqe.cdw12 = self.geo.nlb - 1;
        let in_capsule = write && len <= self.geo.in_capsule;
        sqe.dptr = if in_capsule {
            Sgl::in_capsule(len as u32)
        } else {
            Sgl::transport(len as u32)
        };
        let (hdgst, ddgst) = (q.conn.hdgst, q.conn.ddgst);
        let header_end = 72 + if hdgst { 4 } else { 0 };
        let mut c = CapsuleCmd {
            sqe: sqe.encode(),
            flags: PduFlags::empty().with(PduFlags::HDGSTF, hdgst),
            ..CapsuleCmd::default()
        };
        c.plen = header_end as u32;
        if in_capsule {
            c.pdo = header_end as u8;
            c.flags = c.flags.with(PduFlags::DDGSTF, ddgst);
            c.plen += (len + if ddgst { 4 } else { 0 }) as u32;
        }
        let hdr = c.encode();
        q.wbuf.extend_from_slice(&hdr);
        if hdgst {
            q.wbuf
                .extend_from_slice(&digest::to_wire(digest::header_digest(&hdr)));
        }
        if in_capsule {
            self.put_data(&mut q.wbuf, slba, 0, len, ddgst);
        }
        q.slots[usize::from(cid)] = Slot {
            busy: true,
            write,
            slba,
            submitted: Some(Instant::now()),
            received: 0,
            bad_data: false,
        };
        q.inflight += 1;
    }

    fn sample(&mut self, s: String) {
        if self.stats.samples.len() < MAX_SAMPLES {
            self.stats.samples.push(s);
        }
    }

    /// Retires `cid` with `status`, then refills the queue.
    fn complete(&mut self, q: &mut Queue, cid: u16, status: Status) -> anyhow::Result<()> {
        let Some(slot) = q.slots.get_mut(usize::from(cid)).filter(|s| s.busy) else {
            bail!("completion for CID {cid}, which is not in flight");
        };
        let s = std::mem::take(slot);
        q.inflight -= 1;
        q.free.push(cid);
        let what = if s.write { "write" } else { "read" };
        let len = self.geo.nlb as usize * self.geo.lba;
        if status.sct == Sct::Generic && status.sc == Status::CMD_INTERRUPTED.sc && !status.dnr {
            // The target's retryable "busy" (no buffers for the data now):
            // the same command again, as a host would; not an I/O done.
            self.stats.busy += 1;
            // A pre-fill (limited phase) must write every block it owns.
            if self.submitting || self.phase.limit.is_some() {
                self.submit_at(q, s.write, s.slba);
            }
            return Ok(());
        }
        if !status.is_success() {
            self.stats.errors += 1;
            self.sample(format!(
                "queue {} cid {cid} {what} slba {} nlb {}: status SCT {:?} SC {:#04x}{}",
                q.conn.qid,
                s.slba,
                self.geo.nlb,
                status.sct,
                status.sc,
                if status.dnr { " DNR" } else { "" }
            ));
        } else if !s.write && s.received != len {
            self.stats.errors += 1;
            self.sample(format!(
                "queue {} cid {cid} read slba {}: {} of {len} bytes received",
                q.conn.qid, s.slba, s.received
            ));
        } else if s.bad_data {
            self.stats.verify_failures += 1;
            self.sample(format!(
                "queue {} cid {cid} read slba {}: data differs from the pattern",
                q.conn.qid, s.slba
            ));
        }
        if self.measuring {
            self.stats.ios += 1;
            if s.write {
                self.stats.writes += 1;
            } else {
                self.stats.reads += 1;
            }
            if let Some(t) = s.submitted {
                self.stats.hist.record(t.elapsed().as_nanos() as u64);
            }
        }
        self.submit(q)?;
        Ok(())
    }
}

impl Queue {
    /// Reads what the socket has and handles every complete PDU.
    fn on_readable(&mut self, w: &mut Worker<'_>) -> anyhow::Result<()> {
        loop {
            if self.rend == self.rbuf.len() {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
                if self.rend == self.rbuf.len() {
                    let n = self.rbuf.len() * 2;
                    self.rbuf.resize(n, 0);
                }
            }
            match (&self.conn.stream).read(&mut self.rbuf[self.rend..]) {
                Ok(0) => bail!("the target closed the connection"),
                Ok(n) => {
                    self.rend += n;
                    let full = self.rend == self.rbuf.len();
                    self.parse(w)?;
                    if !full {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("recv"),
            }
        }
    }

    fn parse(&mut self, w: &mut Worker<'_>) -> anyhow::Result<()> {
        while self.rend - self.rstart >= 8 {
            let ch = CommonHeader::parse(&self.rbuf[self.rstart..self.rend])
                .map_err(|e| anyhow::anyhow!("bad PDU header: {e}"))?;
            let plen = ch.plen as usize;
            anyhow::ensure!(plen >= 8, "PLEN {plen}");
            if self.rend - self.rstart < plen {
                if plen > self.rbuf.len() {
                    self.rbuf.resize(plen.next_power_of_two(), 0);
                }
                break;
            }
            let at = self.rstart;
            self.rstart += plen;
            // The PDU is copied out of the borrow of `rbuf` only as far as
            // its header; data is checked in place.
            let rbuf = std::mem::take(&mut self.rbuf);
            let r = self.handle(w, ch, &rbuf[at..at + plen]);
            self.rbuf = rbuf;
            r?;
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        Ok(())
    }

    /// Writes the send buffer; what the socket does not take waits for
    /// EPOLLOUT.
    fn flush(&mut self, ep: i32) -> anyhow::Result<()> {
        while self.wpos < self.wbuf.len() {
            match (&self.conn.stream).write(&self.wbuf[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.want_out {
                        epoll_mod(ep, self.conn.stream.as_raw_fd(), self.idx, true, false)?;
                        self.want_out = true;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("send"),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.want_out {
            epoll_mod(ep, self.conn.stream.as_raw_fd(), self.idx, false, false)?;
            self.want_out = false;
        }
        Ok(())
    }
}
