//! System calls per command, counted through the metrics (never timed):
//!
//! - send side: under the default strict status policy, a read whose data
//!   goes by copy (below `zerocopy_threshold`, or on a route where the
//!   kernel copies) leaves with its status in the same `sendmsg` — iSCSI
//!   folds the status into the last Data-In, NVMe/TCP queues the
//!   CapsuleResp right behind the C2HData (or, with SQ flow control
//!   disabled, sets its SUCCESS flag) — instead of a second `sendmsg`
//!   once the data's release woke the command again;
//! - `auto` zero-copy mode never uses `MSG_ZEROCOPY` towards a loopback
//!   peer (the kernel copies there anyway);
//! - a `sendmsg` that filled the socket is followed by a wait for room,
//!   not by a `sendmsg` that says `EAGAIN` — also with `zerocopy =
//!   "always"`, where completion notifications that arrive while the
//!   socket is full raise a lone `EPOLLERR` (which the runtime reports as
//!   a "write closed" it never clears);
//! - receive side (`target/src/sockio.rs`): a `recv` that drained the
//!   socket clears its readiness, so the next wait does not begin with a
//!   `recv` that says `EAGAIN`; small writes (4 KiB of immediate data) are
//!   read through the read-ahead window, many per `recv`, instead of one
//!   `recv` plus one `readv` per two commands.

use std::io::Write;
use std::time::Duration;

use zctarget_tests::iscsi::{Iscsi, OP_DATA_IN, OP_SCSI_RESPONSE};
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:batching";
const NQN: &str = "nqn.2026-12.io.zctarget.test:batching";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const BS: usize = 512;
const READS: u64 = 64;

fn start(engine: &str) -> Daemon {
    start_with(engine, "auto")
}

fn start_with(engine: &str, zerocopy: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nzerocopy = \"{zerocopy}\"\n\
         nvme_listen = [\"127.0.0.1:0\"]\nio_engine = \"{engine}\"\nreactors = 1\n\
         metrics_listen = \"127.0.0.1:0\"\nbuffer_pool = \"64MiB\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"v\"]\nhosts = [\"{HOST}\"]\n"
    ))
}

fn copy_sends(d: &Daemon) -> f64 {
    d.metric("zctarget_copy_sends_total")
        .expect("copy sends metric")
}

fn metric(d: &Daemon, series: &str) -> f64 {
    d.metric(series)
        .unwrap_or_else(|| panic!("metric {series}"))
}

fn iscsi_status_rides_on_data_in(engine: &str) {
    let d = start(engine);
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    assert_eq!(i.test_unit_ready().expect("TUR"), 0);
    // One READ: one Data-In carrying the status (S bit), and nothing else
    // for it — the next PDU answers the next command.
    let cmd = i.command(&i.read_cdb(5, 1), BS as u32, 0);
    i.send_pdu(&cmd.encode(), &[]).expect("send read");
    let din = i.next().expect("Data-In");
    assert_eq!((din.opcode(), din.itt()), (OP_DATA_IN, cmd.itt));
    assert_eq!(din.bhs[1] & 0x81, 0x81, "final Data-In with status");
    assert_eq!(din.bhs[3], 0, "GOOD");
    i.exp_stat_sn = din.be32(24).wrapping_add(1);
    let tur = i.command(&[0; 6], 0, 0);
    i.send_pdu(&tur.encode(), &[]).expect("send TUR");
    let rsp = i.next().expect("TUR response");
    assert_eq!(
        (rsp.opcode(), rsp.itt()),
        (OP_SCSI_RESPONSE, tur.itt),
        "no separate SCSI Response for the read"
    );
    i.exp_stat_sn = rsp.be32(24).wrapping_add(1);
    // At depth 1 each read is then one sendmsg, not two; and each command
    // one recv that drains the socket, never a second one finding nothing.
    let before = copy_sends(&d);
    let idle_before = metric(&d, "zctarget_socket_recv_would_block_total");
    for lba in 0..READS {
        assert_eq!(i.read(lba, 1).expect("read").0, 0);
    }
    let calls = copy_sends(&d) - before;
    assert!(
        calls < 1.5 * READS as f64,
        "{calls} sendmsg calls for {READS} reads at depth 1"
    );
    let idle = metric(&d, "zctarget_socket_recv_would_block_total") - idle_before;
    assert!(
        idle < READS as f64 / 2.0,
        "{idle} recv calls found nothing in {READS} commands at depth 1"
    );
}

/// 32 WRITEs of 4 KiB with immediate data, sent in one go: read through
/// the window, a few per `recv`.
fn iscsi_small_writes_share_recvs(engine: &str) {
    const N: usize = 32;
    const LEN: usize = 4096;
    let d = start(engine);
    let (mut i, _) = Iscsi::login_with(
        d.iscsi_port,
        IQN,
        "iqn.2026-12.test:init",
        BS,
        "ImmediateData=Yes\0InitialR2T=No\0MaxRecvDataSegmentLength=65536\0\
         MaxBurstLength=262144\0FirstBurstLength=65536\0",
    )
    .expect("login");
    let mut wire = Vec::new();
    let mut itts = Vec::new();
    for k in 0..N {
        let cdb = i.write_cdb((k * LEN / BS) as u64, LEN, false);
        let mut cmd = i.command(&cdb, 0, LEN as u32);
        cmd.data_segment_len = LEN as u32;
        itts.push(cmd.itt);
        wire.extend_from_slice(&cmd.encode());
        wire.extend(std::iter::repeat_n(k as u8, LEN));
    }
    let before = metric(&d, "zctarget_socket_recv_calls_total");
    i.s.write_all(&wire).expect("send the writes");
    let mut done = 0;
    while done < N {
        let rsp = i.next().expect("SCSI Response");
        assert_eq!(rsp.opcode(), OP_SCSI_RESPONSE);
        assert!(itts.contains(&rsp.itt()));
        assert_eq!(rsp.bhs[3], 0, "GOOD");
        i.exp_stat_sn = rsp.be32(24).wrapping_add(1);
        done += 1;
    }
    let calls = metric(&d, "zctarget_socket_recv_calls_total") - before;
    assert!(
        calls < (N / 2) as f64,
        "{calls} receive calls for {N} 4 KiB writes sent at once"
    );
    // The data landed where it belongs.
    for k in [0, 7, N - 1] {
        let (st, back) = i
            .read((k * LEN / BS) as u64, (LEN / BS) as u32)
            .expect("read");
        assert_eq!(st, 0);
        assert!(back.iter().all(|&b| b == k as u8), "write {k} reads back");
    }
}

fn nvme_completion_follows_data(engine: &str) {
    let d = start(engine);
    let mut admin =
        NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    let _ = admin.keep_alive();
    let before = copy_sends(&d);
    for lba in 0..READS {
        let r = io.read(1, lba, 1, BS).expect("read");
        assert!(r.status().is_success(), "{:?}", r.status());
        assert_eq!(r.data.len(), BS);
    }
    let calls = copy_sends(&d) - before;
    assert!(
        calls < 1.5 * READS as f64,
        "{calls} sendmsg calls for {READS} reads at depth 1"
    );
    drop(io);
    drop(admin);
    d.wait_metric(
        "zctarget_connections{protocol=\"nvme_tcp\"}",
        0.0,
        Duration::from_secs(5),
    );
}

#[test]
fn iscsi_strict_copied_read_is_one_send_uring() {
    iscsi_status_rides_on_data_in("uring");
}

#[test]
fn iscsi_strict_copied_read_is_one_send_epoll() {
    iscsi_status_rides_on_data_in("epoll");
}

/// Eight 1 MiB READs while the initiator reads nothing for a while, then
/// drains: a `sendmsg` that filled the socket is followed by a wait for
/// room, never by a `sendmsg` that only says `EAGAIN`.
fn iscsi_full_socket_waits_for_room(engine: &str) {
    const N: usize = 8;
    const LEN: usize = 1 << 20;
    let d = start(engine);
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    let partial_before = metric(&d, "zctarget_sendmsg_partial_total");
    let full_before = metric(&d, "zctarget_sendmsg_would_block_total");
    let lbas: Vec<u64> = (0..N).map(|k| ((k % 4) * LEN / BS) as u64).collect();
    // Long enough for the target to fill the socket and wait. (Were the
    // data sent zero-copy, the status would come on its own once the
    // kernel released the pages.)
    let got = i
        .reads_at_once(&lbas, LEN, Duration::from_millis(300))
        .expect("reads at once");
    assert!(got.iter().all(|g| g.len() == LEN));
    let partial = metric(&d, "zctarget_sendmsg_partial_total") - partial_before;
    let full = metric(&d, "zctarget_sendmsg_would_block_total") - full_before;
    assert!(partial >= 1.0, "8 MiB never filled the socket?");
    // `auto` mode on loopback sends by copy from the start (the kernel
    // would copy anyway; see `ZeroCopyPolicy::for_peer`).
    assert_eq!(
        d.metric("zctarget_zerocopy_sends_total"),
        Some(0.0),
        "zero-copy sends to a loopback peer in auto mode"
    );
    assert!(
        full <= 1.0,
        "{full} sendmsg calls found the socket full ({partial} partial writes)"
    );
}

/// `zerocopy = "always"` on loopback: rounds of READs (1 MiB and 128 KiB)
/// to an initiator that pauses reading, so the socket fills and the
/// kernel's completion notifications (loopback copies, and notifies when
/// the peer's window lets the data out) arrive while it is full. Each one
/// is a lone `EPOLLERR`, which mio reports as "write closed" and tokio
/// never clears; the writer must still wait for room instead of retrying
/// `sendmsg` on a full socket. The data must be intact and every buffer
/// must return to the pool.
fn iscsi_zerocopy_full_socket_waits_for_room(engine: &str) {
    const ROUNDS: usize = 3;
    const BIG: usize = 1 << 20;
    const SMALL: usize = 128 << 10;
    const VOLUME: usize = 4 << 20;
    let mut d = start_with(engine, "always");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    // A pattern that differs per 512-byte block, so a misplaced or reused
    // buffer shows.
    let pattern: Vec<u8> = (0..VOLUME)
        .map(|x| ((x / BS) as u8).wrapping_mul(31) ^ (x as u8))
        .collect();
    for (k, chunk) in pattern.chunks(BIG).enumerate() {
        let st = i.write((k * BIG / BS) as u64, chunk, false).expect("write");
        assert_eq!(st, 0, "write {k}");
    }
    let full_before = metric(&d, "zctarget_sendmsg_would_block_total");
    let partial_before = metric(&d, "zctarget_sendmsg_partial_total");
    let zc_before = metric(&d, "zctarget_zerocopy_sends_total");
    let mut reads = 0usize;
    for round in 0..ROUNDS {
        // Eight 1 MiB and eight 128 KiB reads at offsets that vary per round.
        let mut cmds = Vec::new();
        for k in 0..16 {
            let len = if k % 2 == 0 { BIG } else { SMALL };
            let off = ((k * 3 + round) * SMALL) % (VOLUME - len + 1);
            let off = off / BS * BS;
            let cmd = i.command(
                &i.read_cdb((off / BS) as u64, (len / BS) as u32),
                len as u32,
                0,
            );
            i.send_pdu(&cmd.encode(), &[]).expect("send read");
            cmds.push((cmd.itt, off, len, Vec::with_capacity(len)));
        }
        reads += cmds.len();
        // Read nothing for a while: the target fills the socket and waits.
        std::thread::sleep(Duration::from_millis(300));
        let mut done = 0;
        while done < cmds.len() {
            let pdu = i.next().expect("Data-In or SCSI Response");
            let c = cmds.iter_mut().find(|c| c.0 == pdu.itt()).expect("our ITT");
            let status = match pdu.opcode() {
                OP_DATA_IN => {
                    let at = pdu.be32(40) as usize;
                    assert_eq!(at, c.3.len(), "Data-In in order");
                    c.3.extend_from_slice(&pdu.data);
                    pdu.bhs[1] & 0x01 != 0
                }
                op => {
                    assert_eq!(op, OP_SCSI_RESPONSE);
                    true
                }
            };
            if status {
                assert_eq!(pdu.bhs[3], 0, "GOOD");
                i.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                done += 1;
            }
        }
        for (itt, off, len, got) in &cmds {
            assert_eq!(got.len(), *len, "read {itt:#x} length");
            assert!(
                got[..] == pattern[*off..off + len],
                "read {itt:#x} at {off} returned other data"
            );
        }
    }
    let full = metric(&d, "zctarget_sendmsg_would_block_total") - full_before;
    let partial = metric(&d, "zctarget_sendmsg_partial_total") - partial_before;
    let zc = metric(&d, "zctarget_zerocopy_sends_total") - zc_before;
    let rearms = d
        .metric("zctarget_zerocopy_room_rearms_total")
        .unwrap_or(0.0);
    eprintln!(
        "{engine}: {full} EAGAIN sendmsg, {partial} partial, {zc} zero-copy sends, \
         {rearms} writability watches registered, {reads} reads"
    );
    assert!(zc > 0.0, "zerocopy = \"always\" sent nothing zero-copy");
    assert!(
        partial >= ROUNDS as f64,
        "{partial} partial writes: never full?"
    );
    assert!(
        full <= ROUNDS as f64,
        "{full} sendmsg calls found the socket full in {ROUNDS} paused rounds \
         ({reads} reads, {partial} partial writes)"
    );
    drop(i);
    assert!(
        d.pool_full_after_disconnects(1),
        "buffers still leased after the session ended:\n{}",
        d.log()
    );
    d.stop_intact(Duration::from_secs(10));
}

#[test]
fn iscsi_zerocopy_full_socket_waits_for_room_uring() {
    iscsi_zerocopy_full_socket_waits_for_room("uring");
}

#[test]
fn iscsi_zerocopy_full_socket_waits_for_room_epoll() {
    iscsi_zerocopy_full_socket_waits_for_room("epoll");
}

/// The same over NVMe/TCP: rounds of READs (1 MiB and 128 KiB) queued at
/// once, the host paused, then drained; C2HData and CapsuleResp matched by
/// command id.
fn nvme_zerocopy_full_socket_waits_for_room(engine: &str) {
    const ROUNDS: usize = 3;
    const BIG: usize = 1 << 20;
    const SMALL: usize = 128 << 10;
    const VOLUME: usize = 4 << 20;
    let mut d = start_with(engine, "always");
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    let pattern: Vec<u8> = (0..VOLUME)
        .map(|x| ((x / BS) as u8).wrapping_mul(29) ^ (x as u8))
        .collect();
    for (k, chunk) in pattern.chunks(BIG).enumerate() {
        let r = io
            .write(1, (k * BIG / BS) as u64, chunk, BS, false)
            .expect("write");
        assert!(r.status().is_success(), "write {k}: {:?}", r.status());
    }
    let full_before = metric(&d, "zctarget_sendmsg_would_block_total");
    let partial_before = metric(&d, "zctarget_sendmsg_partial_total");
    let zc_before = metric(&d, "zctarget_zerocopy_sends_total");
    for round in 0..ROUNDS {
        let reads: Vec<(u16, usize, usize)> = (0..16usize)
            .map(|k| {
                let len = if k % 2 == 0 { BIG } else { SMALL };
                let off = ((k * 3 + round) * SMALL) % (VOLUME - len + 1) / BS * BS;
                (0x4000 + (round * 16 + k) as u16, off, len)
            })
            .collect();
        let got = io
            .reads_at_once(1, BS, &reads, Duration::from_millis(300))
            .expect("reads at once");
        for (&(cid, off, len), got) in reads.iter().zip(&got) {
            assert_eq!(got.len(), len, "read {cid:#x} length");
            assert!(
                got[..] == pattern[off..off + len],
                "read {cid:#x} at {off} returned other data"
            );
        }
    }
    let full = metric(&d, "zctarget_sendmsg_would_block_total") - full_before;
    let partial = metric(&d, "zctarget_sendmsg_partial_total") - partial_before;
    let zc = metric(&d, "zctarget_zerocopy_sends_total") - zc_before;
    let rearms = d
        .metric("zctarget_zerocopy_room_rearms_total")
        .unwrap_or(0.0);
    eprintln!(
        "nvme {engine}: {full} EAGAIN sendmsg, {partial} partial, {zc} zero-copy sends, \
         {rearms} writability watches registered"
    );
    assert!(zc > 0.0, "zerocopy = \"always\" sent nothing zero-copy");
    assert!(
        partial >= ROUNDS as f64,
        "{partial} partial writes: never full?"
    );
    assert!(
        full <= ROUNDS as f64,
        "{full} sendmsg calls found the socket full in {ROUNDS} paused rounds \
         ({partial} partial writes)"
    );
    drop(io);
    drop(admin);
    assert!(
        d.pool_full_after_disconnects(2),
        "buffers still leased after the queues ended:\n{}",
        d.log()
    );
    d.stop_intact(Duration::from_secs(10));
}

#[test]
fn nvme_zerocopy_full_socket_waits_for_room_uring() {
    nvme_zerocopy_full_socket_waits_for_room("uring");
}

#[test]
fn nvme_zerocopy_full_socket_waits_for_room_epoll() {
    nvme_zerocopy_full_socket_waits_for_room("epoll");
}

#[test]
fn iscsi_full_socket_waits_for_room_uring() {
    iscsi_full_socket_waits_for_room("uring");
}

#[test]
fn iscsi_full_socket_waits_for_room_epoll() {
    iscsi_full_socket_waits_for_room("epoll");
}

#[test]
fn iscsi_small_writes_share_recvs_uring() {
    iscsi_small_writes_share_recvs("uring");
}

#[test]
fn iscsi_small_writes_share_recvs_epoll() {
    iscsi_small_writes_share_recvs("epoll");
}

#[test]
fn nvme_strict_copied_read_is_one_send_uring() {
    nvme_completion_follows_data("uring");
}

#[test]
fn nvme_strict_copied_read_is_one_send_epoll() {
    nvme_completion_follows_data("epoll");
}
