//! Buffer admission under a pool far smaller than the load (issue #10's
//! hold-and-wait defect): with `buffer_pool = "4MiB"`, several clients
//! doing 1 MiB writes at queue depth 32 — over iSCSI (immediate and
//! unsolicited data, and R2T-only) and over NVMe/TCP (R2T/H2CData) — keep
//! completing writes, retry only what the target asks them to retry
//! (TASK SET FULL, Command Interrupted), read back what they wrote, and
//! the daemon stops at once on SIGTERM with its pool intact. A host that
//! sends write commands and never their data does not starve the others.
//!
//! On the old code (reader leasing write buffers before reading on) every
//! scenario here wedges: no write completes and SIGTERM needs the grace.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use zctarget_protocol::iscsi::{DataOut, RESERVED_TAG};
use zctarget_protocol::nvme::{Cqe, Sgl, Sqe, Status};
use zctarget_protocol::nvme_tcp::{CapsuleResp, PduType, R2t};
use zctarget_tests::iscsi::{self, Iscsi};
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::spec::{self, Spec, HOST, IQN, NQN};
use zctarget_tests::Daemon;

const BS: usize = 4096;
const IO: usize = 1 << 20;
const QD: usize = 32;
/// How long each client drives writes.
const RUN: Duration = Duration::from_secs(4);
/// Bound on the whole scenario: a wedged target fails here, not by hanging.
const WEDGE: Duration = Duration::from_secs(20);

/// The scenarios run one at a time: each loads both cores on its own, and
/// five at once on a 2-core machine measure the machine, not the target.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec(engine: &'static str, clients: usize) -> Spec {
    let mut s = Spec::new(engine);
    s.buffer_pool = "4MiB";
    // One private region of QD slots of 1 MiB per client.
    s.volume_size = if clients <= 4 { "128MiB" } else { "256MiB" };
    s
}

/// Block `i` of a slot written by `client` with sequence number `seq`.
fn pattern(client: usize, slot: usize, seq: u64) -> Vec<u8> {
    let mut v = vec![0u8; IO];
    for (i, block) in v.chunks_mut(BS).enumerate() {
        let tag = [client as u64, slot as u64, seq, i as u64];
        for (j, word) in block.chunks_mut(8).enumerate() {
            word.copy_from_slice(&(tag[j % 4] ^ (j as u64).rotate_left(17)).to_le_bytes());
        }
    }
    v
}

fn slot_lba(client: usize, slot: usize) -> u64 {
    ((client * QD + slot) * (IO / BS)) as u64
}

/// What a client achieved.
#[derive(Debug, Default)]
struct Tally {
    good: u64,
    retried: u64,
    /// Last sequence number written GOOD per slot.
    last: HashMap<usize, u64>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// --- iSCSI -------------------------------------------------------------------

/// Pipelined 1 MiB WRITE(16)s on one session. `unsolicited`: log in with
/// ImmediateData=Yes and InitialR2T=No (libiscsi's defaults), else with
/// neither (every byte on R2T, as open-iscsi without immediate data).
fn iscsi_writer(port: u16, client: usize, unsolicited: bool) -> io::Result<Tally> {
    let keys = if unsolicited {
        "ImmediateData=Yes\0InitialR2T=No\0MaxRecvDataSegmentLength=262144\0\
         MaxBurstLength=262144\0FirstBurstLength=262144\0"
    } else {
        "ImmediateData=No\0InitialR2T=Yes\0MaxRecvDataSegmentLength=262144\0\
         MaxBurstLength=262144\0FirstBurstLength=65536\0"
    };
    let name = format!("iqn.2026-11.io.zctarget.test:pressure-{client}");
    let (mut c, answered) = Iscsi::login_with(port, IQN, &name, BS, keys)?;
    let num = |k: &str, default: usize| {
        answered
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let target_mrdsl = num("MaxRecvDataSegmentLength", 8192);
    let first_burst = num("FirstBurstLength", 65536);
    let immediate = answered.get("ImmediateData").map(String::as_str) == Some("Yes");
    let initial_r2t = answered.get("InitialR2T").map(String::as_str) != Some("No");
    // (zctarget answers InitialR2T=Yes: unsolicited Data-Out is sent only
    // where the target allows it.)
    assert_eq!(immediate, unsolicited, "negotiated {answered:?}");

    let mut tally = Tally::default();
    // ITT -> (slot, seq, data)
    let mut outstanding: HashMap<u32, (usize, u64, Vec<u8>)> = HashMap::new();
    let mut free_slots: Vec<usize> = (0..QD).collect();
    let mut seq = 0u64;
    // Queue depth as Linux's SCSI midlayer tracks it: TASK SET FULL lowers
    // it to what the target holds, GOODs raise it again.
    let mut depth = QD;
    let end = Instant::now() + RUN;
    loop {
        while Instant::now() < end && c.window_open() && outstanding.len() < depth {
            let Some(slot) = free_slots.pop() else { break };
            seq += 1;
            let data = pattern(client, slot, seq);
            let cdb = c.write_cdb(slot_lba(client, slot), IO, false);
            let cmd = c.command(&cdb, 0, IO as u32);
            let imm = if immediate {
                target_mrdsl.min(first_burst).min(IO)
            } else {
                0
            };
            let mut bhs = cmd;
            bhs.data_segment_len = imm as u32;
            c.send_pdu(&bhs.encode(), &data[..imm])?;
            if !initial_r2t {
                // Unsolicited Data-Out up to FirstBurstLength.
                let burst_end = first_burst.min(IO);
                send_data_out(
                    &mut c,
                    cmd.itt,
                    RESERVED_TAG,
                    &data,
                    imm,
                    burst_end,
                    target_mrdsl,
                )?;
            }
            outstanding.insert(cmd.itt, (slot, seq, data));
        }
        if outstanding.is_empty() {
            return Ok(tally);
        }
        let p = c.next()?;
        match p.opcode() {
            iscsi::OP_R2T => {
                let itt = p.itt();
                let ttt = p.be32(20);
                let offset = p.be32(40) as usize;
                let len = p.be32(44) as usize;
                let Some((_, _, data)) = outstanding.get(&itt) else {
                    return Err(invalid(format!("R2T for unknown ITT {itt:#x}")));
                };
                let data = data.clone();
                send_data_out(&mut c, itt, ttt, &data, offset, offset + len, target_mrdsl)?;
            }
            iscsi::OP_SCSI_RESPONSE => {
                c.exp_stat_sn = p.be32(24).wrapping_add(1);
                let itt = p.itt();
                let Some((slot, s, _)) = outstanding.remove(&itt) else {
                    return Err(invalid(format!("response for unknown ITT {itt:#x}")));
                };
                free_slots.push(slot);
                match p.bhs[3] {
                    0x00 => {
                        tally.good += 1;
                        tally.last.insert(slot, s);
                        if tally.good % 4 == 0 {
                            depth = (depth + 1).min(QD);
                        }
                    }
                    // TASK SET FULL / BUSY: the target asked for a retry.
                    0x28 | 0x08 => {
                        tally.retried += 1;
                        depth = outstanding.len().max(1);
                    }
                    st => return Err(invalid(format!("write status {st:#x}"))),
                }
            }
            other => return Err(invalid(format!("unexpected PDU {other:#x}"))),
        }
    }
}

/// Sends `data[from..to]` as Data-Out PDUs of at most `mrdsl` bytes for
/// task `itt` (LUN 0) under `ttt`, DataSN from 0, F on the last.
fn send_data_out(
    c: &mut Iscsi,
    itt: u32,
    ttt: u32,
    data: &[u8],
    from: usize,
    to: usize,
    mrdsl: usize,
) -> io::Result<()> {
    let mut off = from;
    let mut data_sn = 0;
    while off < to {
        let n = mrdsl.min(to - off);
        let d = DataOut {
            final_bit: off + n == to,
            itt,
            ttt,
            exp_stat_sn: c.exp_stat_sn,
            data_sn,
            buffer_offset: off as u32,
            data_segment_len: n as u32,
            ..Default::default()
        };
        c.send_pdu(&d.encode(), &data[off..off + n])?;
        off += n;
        data_sn += 1;
    }
    Ok(())
}

fn iscsi_verify(port: u16, client: usize, tally: &Tally) -> io::Result<()> {
    let name = format!("iqn.2026-11.io.zctarget.test:pressure-check-{client}");
    let mut c = Iscsi::login(port, IQN, &name, BS)?;
    for (&slot, &seq) in &tally.last {
        let (st, data) = c.read(slot_lba(client, slot), (IO / BS) as u32)?;
        assert_eq!(st, 0, "read status");
        assert!(
            data == pattern(client, slot, seq),
            "client {client} slot {slot}: not the last write acknowledged (seq {seq})"
        );
    }
    Ok(())
}

// --- NVMe/TCP ----------------------------------------------------------------

fn nvme_io_queue(port: u16, cntlid: u16) -> io::Result<NvmeQueue> {
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = cntlid;
    let (q, r) = NvmeQueue::connect(("127.0.0.1", port), &o)?;
    if !r.status().is_success() {
        return Err(invalid(format!("I/O queue Connect: {:?}", r.status())));
    }
    Ok(q)
}

/// Pipelined 1 MiB Writes (R2T + H2CData) on one I/O queue.
fn nvme_writer(port: u16, client: usize) -> io::Result<Tally> {
    let admin = NvmeQueue::admin(("127.0.0.1", port), &QueueOptions::admin(NQN, HOST))?;
    let mut q = nvme_io_queue(port, admin.cntlid)?;
    let mut tally = Tally::default();
    let mut outstanding: HashMap<u16, (usize, u64, Vec<u8>)> = HashMap::new();
    // The queue was connected with 32 entries: at most 31 outstanding.
    let mut free_slots: Vec<usize> = (0..QD - 1).collect();
    let mut seq = 0u64;
    let mut next_cid = 0x100u16;
    let end = Instant::now() + RUN;
    loop {
        while Instant::now() < end {
            let Some(slot) = free_slots.pop() else { break };
            seq += 1;
            next_cid = next_cid.wrapping_add(1).max(0x100);
            let data = pattern(client, slot, seq);
            let mut sqe = Sqe::new(0x01, next_cid);
            sqe.nsid = 1;
            sqe.dptr = Sgl::transport(IO as u32);
            let slba = slot_lba(client, slot);
            sqe.cdw10 = slba as u32;
            sqe.cdw11 = (slba >> 32) as u32;
            sqe.cdw12 = (IO / BS) as u32 - 1;
            q.send_capsule(&sqe, &[])?;
            outstanding.insert(next_cid, (slot, seq, data));
        }
        if outstanding.is_empty() {
            return Ok(tally);
        }
        let pdu = q.recv()?;
        match pdu.ch.pdu_type {
            PduType::R2t => {
                let r = R2t::parse(
                    pdu.header[..24]
                        .try_into()
                        .map_err(|_| invalid("R2T".into()))?,
                )
                .map_err(|e| invalid(e.to_string()))?;
                let Some((_, _, data)) = outstanding.get(&r.cccid) else {
                    return Err(invalid(format!("R2T for unknown CID {}", r.cccid)));
                };
                let data = data.clone();
                q.answer_r2t(&r, &data)?;
            }
            PduType::CapsuleResp => {
                let r = CapsuleResp::parse(
                    pdu.header[..24]
                        .try_into()
                        .map_err(|_| invalid("resp".into()))?,
                )
                .map_err(|e| invalid(e.to_string()))?;
                let cqe = Cqe::parse(&r.cqe);
                let Some((slot, s, _)) = outstanding.remove(&cqe.cid) else {
                    return Err(invalid(format!("completion for unknown CID {}", cqe.cid)));
                };
                free_slots.push(slot);
                if cqe.status.is_success() {
                    tally.good += 1;
                    tally.last.insert(slot, s);
                } else if cqe.status == Status::CMD_INTERRUPTED {
                    tally.retried += 1;
                } else {
                    return Err(invalid(format!("write status {:?}", cqe.status)));
                }
            }
            other => return Err(invalid(format!("unexpected PDU {other:?}"))),
        }
    }
}

fn nvme_verify(port: u16, client: usize, tally: &Tally) -> io::Result<()> {
    let admin = NvmeQueue::admin(("127.0.0.1", port), &QueueOptions::admin(NQN, HOST))?;
    let mut q = nvme_io_queue(port, admin.cntlid)?;
    for (&slot, &seq) in &tally.last {
        let r = q.read(1, slot_lba(client, slot), (IO / BS) as u32, BS)?;
        assert!(r.status().is_success(), "read {:?}", r.status());
        assert!(
            r.data == pattern(client, slot, seq),
            "client {client} slot {slot}: not the last write acknowledged (seq {seq})"
        );
    }
    Ok(())
}

// --- scenarios ---------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Client {
    IscsiUnsolicited,
    IscsiSolicited,
    Nvme,
}

/// Runs `clients` writers at once against one daemon; every one must
/// complete writes, and the whole run must end within [`WEDGE`].
fn pressure(engine: &'static str, clients: &[Client]) {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut d = spec::start(dir.path(), &spec(engine, clients.len()), "pressure");
    let (iscsi, nvme) = (d.iscsi_port, d.nvme_port);
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, &kind) in clients.iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = match kind {
                Client::IscsiUnsolicited => iscsi_writer(iscsi, i, true),
                Client::IscsiSolicited => iscsi_writer(iscsi, i, false),
                Client::Nvme => nvme_writer(nvme, i),
            };
            let _ = tx.send((i, kind, r));
        });
    }
    drop(tx);
    let mut results = Vec::new();
    for _ in clients {
        let left = WEDGE.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok((i, kind, Ok(t))) => results.push((i, kind, t)),
            Ok((i, kind, Err(e))) => panic!("client {i} ({kind:?}) failed: {e}\n{}", d.log()),
            Err(_) => panic!("writers wedged: not done within {WEDGE:?}\n{}", d.log()),
        }
    }
    for (i, kind, t) in &results {
        eprintln!(
            "{engine} client {i} {kind:?}: {} writes GOOD, {} retried",
            t.good, t.retried
        );
        assert!(
            t.good >= 4,
            "client {i} ({kind:?}) completed {} writes\n{}",
            t.good,
            d.log()
        );
        match kind {
            Client::Nvme => nvme_verify(nvme, *i, t).unwrap(),
            _ => iscsi_verify(iscsi, *i, t).unwrap(),
        }
    }
    stop_promptly(&mut d);
}

/// SIGTERM: exit 0 well within the 20 s grace, every chunk back.
fn stop_promptly(d: &mut Daemon) {
    let t = Instant::now();
    d.stop_intact(Duration::from_secs(15));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn iscsi_writers_keep_completing_with_a_4mib_pool_uring() {
    use Client::*;
    pressure(
        "uring",
        &[IscsiUnsolicited, IscsiUnsolicited, IscsiSolicited],
    );
}

#[test]
fn iscsi_writers_keep_completing_with_a_4mib_pool_epoll() {
    use Client::*;
    pressure("epoll", &[IscsiUnsolicited, IscsiSolicited, IscsiSolicited]);
}

#[test]
fn nvme_and_iscsi_writers_keep_completing_with_a_4mib_pool_uring() {
    use Client::*;
    pressure("uring", &[Nvme, Nvme, IscsiUnsolicited]);
}

#[test]
fn nvme_writers_keep_completing_with_a_4mib_pool_epoll() {
    use Client::*;
    pressure("epoll", &[Nvme, Nvme, Nvme]);
}

/// A host that sends write commands and never their data holds at most
/// its connection's quota: another host's writes keep completing.
#[test]
fn a_host_that_never_sends_its_data_starves_nobody() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut d = spec::start(dir.path(), &spec("uring", 2), "hostile");
    // Hostile: QD 32 of 1 MiB writes, R2T only, Data-Out never sent.
    let mut hostile = Iscsi::login(
        d.iscsi_port,
        IQN,
        "iqn.2026-11.io.zctarget.test:hostile",
        BS,
    )
    .unwrap();
    for slot in 0..QD {
        let cdb = hostile.write_cdb(slot_lba(0, slot), IO, false);
        let cmd = hostile.command(&cdb, 0, IO as u32);
        hostile.send_pdu(&cmd.encode(), &[]).unwrap();
    }
    // Likewise over NVMe/TCP.
    let admin =
        NvmeQueue::admin(("127.0.0.1", d.nvme_port), &QueueOptions::admin(NQN, HOST)).unwrap();
    let mut hq = nvme_io_queue(d.nvme_port, admin.cntlid).unwrap();
    for i in 0..(QD - 1) as u16 {
        let mut sqe = Sqe::new(0x01, 0x200 + i);
        sqe.nsid = 1;
        sqe.dptr = Sgl::transport(IO as u32);
        sqe.cdw12 = (IO / BS) as u32 - 1;
        hq.send_capsule(&sqe, &[]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let good = iscsi_writer(d.iscsi_port, 1, false).unwrap();
    assert!(good.good >= 4, "good host starved: {good:?}\n{}", d.log());
    iscsi_verify(d.iscsi_port, 1, &good).unwrap();
    let good = nvme_writer(d.nvme_port, 2).unwrap();
    assert!(good.good >= 4, "good host starved: {good:?}\n{}", d.log());
    drop(hostile);
    drop(hq);
    drop(admin);
    stop_promptly(&mut d);
}
