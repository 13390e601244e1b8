//! The shared command engine (`target/src/slots.rs`) seen from an iSCSI
//! initiator: commands reuse their connection's slots and the slots'
//! workers — one worker for a whole run at queue depth 1, not one task per
//! command — and a slot left by an aborted command serves the next command
//! with nothing of the old one (no stale abort, no stale data).
//! (NVMe/TCP's slots are checked under load by `nvme_perf.rs`.)

use std::time::Duration;

use std::time::Instant;

use zctarget_protocol::iscsi::{
    LogoutReason, LogoutRequest, ScsiCommand, TaskMgmtFunction, TaskMgmtRequest, TextRequest,
};
use zctarget_tests::iscsi::{Iscsi, Pdu, OP_R2T, OP_REJECT, OP_SCSI_RESPONSE};
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:engine";
const BS: usize = 512;
/// OPCODE of a Task Management Function Response.
const OP_TMF_RESPONSE: u8 = 0x22;

fn start(engine: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
         io_engine = \"{engine}\"\nreactors = 1\npoison_on_release = true\n\
         metrics_listen = \"127.0.0.1:0\"\nbuffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n"
    ))
}

/// Like [`start`], with two LUNs: 0 (volume "v") and 1 (volume "w").
fn start_two_luns(engine: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
         io_engine = \"{engine}\"\nreactors = 1\npoison_on_release = true\n\
         metrics_listen = \"127.0.0.1:0\"\nbuffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[volumes]]\nname = \"w\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\", \"w\"]\n"
    ))
}

fn block(lba: u64, round: u32) -> Vec<u8> {
    (0..BS)
        .map(|i| (lba as usize * 31 + i * 7 + round as usize) as u8)
        .collect()
}

fn workers(d: &Daemon) -> f64 {
    d.metric("zctarget_command_workers_started_total{protocol=\"iscsi\"}")
        .expect("workers metric")
}

/// Sends an immediate ABORT TASK for the command `(itt, cmd_sn)`; returns
/// the Task Management Function Response code.
fn abort_task(i: &mut Iscsi, itt: u32, cmd_sn: u32) -> u8 {
    let tmf_itt = i.next_itt();
    let tmf = TaskMgmtRequest {
        immediate: true,
        function: TaskMgmtFunction::AbortTask,
        lun: [0; 8],
        itt: tmf_itt,
        referenced_task_tag: itt,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: i.exp_stat_sn,
        ref_cmd_sn: cmd_sn,
        ..Default::default()
    };
    i.send_pdu(&tmf.encode(), &[]).expect("send TMF");
    let rsp = i.next().expect("TMF response");
    assert_eq!((rsp.opcode(), rsp.itt()), (OP_TMF_RESPONSE, tmf_itt));
    rsp.bhs[2]
}

/// A task management request naming LUN `lun` (peripheral addressing)
/// and, for ABORT TASK, the command `reference`; immediate, or with
/// `cmd_sn` (the initiator's CmdSN is not advanced).
fn tmf(
    i: &mut Iscsi,
    function: TaskMgmtFunction,
    lun: u16,
    cmd_sn: Option<u32>,
    reference: Option<&ScsiCommand>,
) -> TaskMgmtRequest {
    let mut l = [0u8; 8];
    l[..2].copy_from_slice(&lun.to_be_bytes());
    TaskMgmtRequest {
        immediate: cmd_sn.is_none(),
        function,
        lun: l,
        itt: i.next_itt(),
        referenced_task_tag: reference.map_or(0xffff_ffff, |c| c.itt),
        cmd_sn: cmd_sn.unwrap_or(i.cmd_sn),
        exp_stat_sn: i.exp_stat_sn,
        ref_cmd_sn: reference.map_or(0, |c| c.cmd_sn),
        ..Default::default()
    }
}

/// Sends a one-block WRITE at `lba` (LUN 0) and reads its R2T: the task
/// is pending, waiting for its data (the kit logs in with InitialR2T=Yes,
/// ImmediateData=No).
fn pending_write(i: &mut Iscsi, lba: u64) -> (ScsiCommand, Pdu) {
    let cmd = i.command(&i.write_cdb(lba, BS, false), 0, BS as u32);
    i.send_pdu(&cmd.encode(), &[]).expect("send write");
    let r2t = i.next().expect("R2T");
    assert_eq!(
        (r2t.opcode(), r2t.itt()),
        (OP_R2T, cmd.itt),
        "the write waits for its data"
    );
    (cmd, r2t)
}

/// Answers the R2T of a [`pending_write`] with `data`; the write's status.
fn finish_write(i: &mut Iscsi, cmd: &ScsiCommand, r2t: &Pdu, data: &[u8]) -> u8 {
    i.data_out(cmd, r2t, data).expect("send Data-Out");
    let rsp = i.next().expect("the write's status");
    assert_eq!((rsp.opcode(), rsp.itt()), (OP_SCSI_RESPONSE, cmd.itt));
    i.exp_stat_sn = rsp.be32(24).wrapping_add(1);
    rsp.bhs[3]
}

/// Asserts that nothing arrives within `wait` (`what` says what must not).
fn nothing_within(i: &mut Iscsi, wait: Duration, what: &str) {
    i.s.set_read_timeout(Some(wait)).expect("timeout");
    match i.recv() {
        Ok(p) => panic!(
            "{what}: PDU opcode {:#x} ITT {:#x} byte 2 {}",
            p.opcode(),
            p.itt(),
            p.bhs[2]
        ),
        Err(e) => assert!(zctarget_tests::iscsi::timed_out(&e), "{e}"),
    }
    i.s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
}

fn slots_are_reused(engine: &str) {
    let d = start(engine);
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    // 300 writes and 300 reads, one at a time.
    for lba in 0..300u64 {
        let data = block(lba, 1);
        assert_eq!(i.write(lba, &data, false).expect("write"), 0, "lba {lba}");
        let (st, back) = i.read(lba, 1).expect("read");
        assert_eq!(st, 0);
        assert_eq!(back, data, "lba {lba} reads back");
    }
    assert_eq!(
        workers(&d),
        1.0,
        "600 commands at depth 1 ran on one slot's worker"
    );
    // Plain READs and WRITEs are planned without the LUN's lock once the
    // nexus confirmed (under it) that no unit attention is pending.
    let locked = d
        .metric("zctarget_scsi_locked_plans_total")
        .expect("locked plans metric");
    assert!(
        locked <= 8.0,
        "{locked} of 600 READ/WRITE commands planned under the LUN lock"
    );
    // A unit attention raised now is still reported on the nexus's next
    // command (LOGICAL UNIT RESET: the issuer's included), then I/O goes on.
    let itt = i.next_itt();
    let reset = TaskMgmtRequest {
        immediate: true,
        function: TaskMgmtFunction::LogicalUnitReset,
        lun: [0; 8],
        itt,
        referenced_task_tag: 0xffff_ffff,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: i.exp_stat_sn,
        ..Default::default()
    };
    i.send_pdu(&reset.encode(), &[]).expect("send LU reset");
    let rsp = i.next().expect("TMF response");
    assert_eq!((rsp.opcode(), rsp.bhs[2]), (OP_TMF_RESPONSE, 0));
    let (st, _) = i.read(3, 1).expect("read after reset");
    assert_eq!(st, 2, "CHECK CONDITION: BUS DEVICE RESET unit attention");
    assert_eq!(i.read(3, 1).expect("read"), (0, block(3, 1)));
    assert!(
        d.metric("zctarget_scsi_locked_plans_total")
            .expect("metric")
            <= locked + 2.0
    );

    // A write that asked for data by R2T, then aborted before its data
    // came: the task ends without status and its slot goes back.
    let cmd = i.command(&i.write_cdb(7, BS, false), 0, BS as u32);
    i.send_pdu(&cmd.encode(), &[]).expect("send write");
    let r2t = i.next().expect("R2T");
    assert_eq!(r2t.opcode(), OP_R2T, "InitialR2T: the write waits for data");
    assert_eq!(
        abort_task(&mut i, cmd.itt, cmd.cmd_sn),
        0,
        "Function Complete"
    );
    // The next commands land in that slot: nothing of the aborted task
    // remains (they complete, with their own data). A missing answer fails
    // within 5 s (NOP-In pings come only after 15 s of silence).
    i.s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    for lba in 0..20u64 {
        let data = block(lba, 2);
        assert_eq!(i.write(lba, &data, true).expect("write"), 0);
        assert_eq!(i.read(lba, 1).expect("read"), (0, data));
    }
    assert!(
        workers(&d) <= 2.0,
        "{} workers: slots are reused after an abort",
        workers(&d)
    );
    // Nothing else arrives for the aborted write (no late status).
    i.s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    match i.recv() {
        Ok(p) => assert_ne!(
            (p.opcode(), p.itt()),
            (OP_SCSI_RESPONSE, cmd.itt),
            "status for an aborted task"
        ),
        Err(e) => assert!(zctarget_tests::iscsi::timed_out(&e), "{e}"),
    }
    drop(i);
    let conns = "zctarget_connections{protocol=\"iscsi\"}";
    d.wait_metric(conns, 0.0, Duration::from_secs(5));
    assert_eq!(
        d.metric("zctarget_command_lifecycle_errors_total"),
        Some(0.0)
    );
}

#[test]
fn iscsi_slots_are_reused_uring() {
    slots_are_reused("uring");
}

#[test]
fn iscsi_slots_are_reused_epoll() {
    slots_are_reused("epoll");
}

/// An ABORT TASK for a write whose status went out already answers "Task
/// does not exist" (RFC 7143 §11.5.1 c): an initiator that saw GOOD must
/// not also see the abort succeed (libiscsi's
/// `iSCSITMF.AbortTaskSimpleAsync` fails on that pair). Then a write
/// still waiting for its data is aborted: "Function complete", no status.
fn abort_after_status(engine: &str) {
    let d = start(engine);
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    let write = i.command(&i.write_cdb(5, BS, false), 0, BS as u32);
    assert_eq!(i.run(&write, &block(5, 3)).expect("write").0, 0);
    assert_eq!(
        abort_task(&mut i, write.itt, write.cmd_sn),
        1,
        "Task does not exist: the write was answered"
    );
    // The ITT is free again: a new write with it is not "task in progress".
    assert_eq!(i.write(6, &block(6, 3), false).expect("write"), 0);
    assert_eq!(i.read(5, 1).expect("read"), (0, block(5, 3)));
}

#[test]
fn abort_after_status_uring() {
    abort_after_status("uring");
}

#[test]
fn abort_after_status_epoll() {
    abort_after_status("epoll");
}

/// Logs in offering ImmediateData and FirstBurstLength `first_burst`,
/// checks the target agreed to both, then sends a WRITE at LBA 64 whose
/// data all rides in the command PDU; returns the session and its ITT.
fn immediate_write(d: &Daemon, first_burst: u32, data: &[u8]) -> (Iscsi, u32) {
    let keys = format!(
        "ImmediateData=Yes\0InitialR2T=Yes\0MaxRecvDataSegmentLength=262144\0\
         MaxBurstLength=1048576\0FirstBurstLength={first_burst}\0"
    );
    let (mut i, answered) =
        Iscsi::login_with(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS, &keys).expect("login");
    assert_eq!(
        answered.get("FirstBurstLength"),
        Some(&first_burst.to_string())
    );
    assert_eq!(
        answered.get("ImmediateData").map(String::as_str),
        Some("Yes")
    );
    let mut cmd = i.command(&i.write_cdb(64, data.len(), false), 0, data.len() as u32);
    cmd.data_segment_len = data.len() as u32;
    i.send_pdu(&cmd.encode(), data).expect("send write");
    (i, cmd.itt)
}

/// FirstBurstLength goes up to the target's MaxRecvDataSegmentLength
/// (256 KiB), as Linux and libiscsi offer: a 128 KiB WRITE then rides
/// whole in its command PDU as immediate data — no R2T round trip, no
/// Data-Out (with the old 64 KiB limit half of it waited for an R2T).
#[test]
fn a_128k_write_rides_in_its_command() {
    const LEN: usize = 128 << 10;
    let d = start("uring");
    let data: Vec<u8> = (0..LEN).map(|k| (k * 13 + k / 512) as u8).collect();
    let (mut i, itt) = immediate_write(&d, 262_144, &data);
    let rsp = i.next().expect("answer");
    assert_eq!(
        (rsp.opcode(), rsp.itt(), rsp.bhs[3]),
        (OP_SCSI_RESPONSE, itt, 0),
        "GOOD status at once, no R2T"
    );
    i.exp_stat_sn = rsp.be32(24).wrapping_add(1);
    let (st, back) = i.read(64, (LEN / BS) as u32).expect("read");
    assert_eq!(st, 0);
    assert!(back == data, "the 128 KiB read back differ");
}

/// Immediate data beyond the negotiated FirstBurstLength breaks RFC 7143
/// §13.14: the command is rejected (its data drained), not executed — the
/// admission quotas are sized for the burst — and the session goes on.
#[test]
fn immediate_data_beyond_the_first_burst_is_rejected() {
    const LEN: usize = 128 << 10;
    let d = start("epoll");
    let (mut i, _) = immediate_write(&d, 65_536, &vec![0x5au8; LEN]);
    let rsp = i.next().expect("answer");
    assert_eq!(
        rsp.opcode(),
        OP_REJECT,
        "128 KiB of immediate data, 64 KiB burst"
    );
    // Nothing was written, and the session still serves commands.
    let (st, back) = i.read(64, (LEN / BS) as u32).expect("read");
    assert_eq!(st, 0);
    assert!(back.iter().all(|&b| b == 0), "the rejected write landed");
    assert_eq!(i.write(64, &block(64, 4), false).expect("write"), 0);
}

/// ABORT TASK names its task by LUN and tag (RFC 7143 §11.5.1; SAM's
/// I_T_L_Q nexus): the Referenced Task Tag of a write pending on LUN 0,
/// sent with LUN 1, names no task of LUN 1 — "Task does not exist" (the
/// write was received: its CmdSN is behind ExpCmdSN) — and the write is
/// left alone: its data goes in and it ends GOOD.
#[test]
fn abort_task_on_another_lun_leaves_the_task_alone() {
    let d = start_two_luns("uring");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    i.s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (write, r2t) = pending_write(&mut i, 9);
    let req = tmf(&mut i, TaskMgmtFunction::AbortTask, 1, None, Some(&write));
    i.send_pdu(&req.encode(), &[]).expect("send TMF");
    let rsp = i.next().expect("TMF response");
    assert_eq!(
        (rsp.opcode(), rsp.itt(), rsp.bhs[2]),
        (OP_TMF_RESPONSE, req.itt, 1),
        "Task does not exist: the referenced task is on LUN 0, not LUN 1"
    );
    assert_eq!(
        finish_write(&mut i, &write, &r2t, &block(9, 5)),
        0,
        "the write on LUN 0 was not aborted"
    );
    assert_eq!(i.read(9, 1).expect("read"), (0, block(9, 5)));
    // The same request naming LUN 0 aborts such a write.
    let (write, _) = pending_write(&mut i, 10);
    assert_eq!(abort_task(&mut i, write.itt, write.cmd_sn), 0);
    nothing_within(
        &mut i,
        Duration::from_millis(300),
        "status for an aborted task",
    );
}

/// A non-immediate task management request whose CmdSN is outside the
/// command window is silently ignored (RFC 7143 §3.2.2.1), as a SCSI
/// command is: an ABORT TASK behind ExpCmdSN or beyond MaxCmdSN gets no
/// answer and leaves the pending write alone; inside the window the same
/// request is carried out. (Immediate requests are not subject to the
/// window: the other tests send theirs immediate.)
#[test]
fn a_task_management_request_outside_the_window_is_ignored() {
    let d = start("epoll");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    i.s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (write, r2t) = pending_write(&mut i, 11);
    let beyond = i.max_cmd_sn.wrapping_add(1);
    for cmd_sn in [write.cmd_sn, i.cmd_sn.wrapping_sub(2), beyond] {
        let req = tmf(
            &mut i,
            TaskMgmtFunction::AbortTask,
            0,
            Some(cmd_sn),
            Some(&write),
        );
        i.send_pdu(&req.encode(), &[]).expect("send TMF");
    }
    nothing_within(
        &mut i,
        Duration::from_millis(500),
        "an answer to a TMF request outside the CmdSN window",
    );
    assert_eq!(
        finish_write(&mut i, &write, &r2t, &block(11, 6)),
        0,
        "the write was not aborted"
    );
    assert_eq!(i.read(11, 1).expect("read"), (0, block(11, 6)));
    // Inside the window: carried out and answered, ExpCmdSN past it.
    let (write, _) = pending_write(&mut i, 12);
    let cmd_sn = i.cmd_sn;
    let req = tmf(
        &mut i,
        TaskMgmtFunction::AbortTask,
        0,
        Some(cmd_sn),
        Some(&write),
    );
    i.cmd_sn = i.cmd_sn.wrapping_add(1);
    i.send_pdu(&req.encode(), &[]).expect("send TMF");
    let rsp = i.next().expect("TMF response");
    assert_eq!(
        (rsp.opcode(), rsp.itt(), rsp.bhs[2], rsp.be32(28)),
        (OP_TMF_RESPONSE, req.itt, 0, cmd_sn.wrapping_add(1)),
        "Function complete; ExpCmdSN past the request"
    );
    nothing_within(
        &mut i,
        Duration::from_millis(300),
        "status for an aborted task",
    );
    assert_eq!(i.write(12, &block(12, 6), false).expect("write"), 0);
}

/// Text and Logout requests, like every non-immediate request, are
/// silently ignored outside the CmdSN window (RFC 7143 §3.2.2.1): no
/// answer, no logout, the session goes on; inside it they are answered.
#[test]
fn text_and_logout_outside_the_window_are_ignored() {
    let d = start("uring");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:init", BS).expect("login");
    let beyond = i.max_cmd_sn.wrapping_add(1);
    let behind = i.cmd_sn.wrapping_sub(1);
    let text = b"SendTargets=All\0";
    for cmd_sn in [beyond, behind] {
        let req = TextRequest {
            final_bit: true,
            data_segment_len: text.len() as u32,
            itt: i.next_itt(),
            ttt: 0xffff_ffff,
            cmd_sn,
            exp_stat_sn: i.exp_stat_sn,
            ..Default::default()
        };
        i.send_pdu(&req.encode(), text).expect("send Text");
        let req = LogoutRequest {
            reason: LogoutReason::CloseSession,
            itt: i.next_itt(),
            cmd_sn,
            exp_stat_sn: i.exp_stat_sn,
            ..Default::default()
        };
        i.send_pdu(&req.encode(), &[]).expect("send Logout");
    }
    nothing_within(
        &mut i,
        Duration::from_millis(500),
        "an answer to a Text or Logout request outside the CmdSN window",
    );
    assert_eq!(i.write(3, &block(3, 1), false).expect("write"), 0);
    assert_eq!(i.read(3, 1).expect("read"), (0, block(3, 1)));
    // Inside the window: answered, and the logout closes the session.
    let req = LogoutRequest {
        reason: LogoutReason::CloseSession,
        itt: i.next_itt(),
        cmd_sn: i.cmd_sn,
        exp_stat_sn: i.exp_stat_sn,
        ..Default::default()
    };
    i.cmd_sn = i.cmd_sn.wrapping_add(1);
    i.send_pdu(&req.encode(), &[]).expect("send Logout");
    let rsp = i.next().expect("Logout Response");
    assert_eq!(
        (rsp.opcode(), rsp.itt(), rsp.bhs[2]),
        (0x26, req.itt, 0),
        "closed successfully"
    );
}

/// PREEMPT AND ABORT (SPC-4 §5.13.11.2.3) from initiator B aborts the
/// tasks of initiator A, whose registration it preempts — A's session on
/// its own connection: A's write waiting for its Data-Out ends at once
/// (its buffers go back to the pool) instead of holding them until A
/// sends data or the 30 s host-data timeout; no status is sent for it.
#[test]
fn preempt_and_abort_ends_a_write_waiting_for_data() {
    const LEASED: &str = "zctarget_pool_leased_bytes";
    const LEN: usize = 64 << 10;
    let d = start("uring");
    let port = d.iscsi_port;
    let mut a = Iscsi::login(port, IQN, "iqn.2026-12.test:a", BS).expect("login A");
    let mut b = Iscsi::login(port, IQN, "iqn.2026-12.test:b", BS).expect("login B");
    for i in [&mut a, &mut b] {
        i.s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
    }
    for (i, key) in [(&mut a, 0xa), (&mut b, 0xb)] {
        let st = i.pr_out(0x00, 0, 0, key).expect("REGISTER");
        assert_eq!(st, 0, "{key:#x} registers");
    }
    let idle = d.wait_metric(LEASED, 0.0, Duration::from_secs(5));
    assert_eq!(idle, Some(0.0), "nothing leased before the write");
    // A's write leases its buffers, then asks for the data by R2T.
    let write = a.command(&a.write_cdb(20, LEN, false), 0, LEN as u32);
    a.send_pdu(&write.encode(), &[]).expect("send write");
    let r2t = a.next().expect("R2T");
    assert_eq!((r2t.opcode(), r2t.itt()), (OP_R2T, write.itt));
    assert!(
        d.metric(LEASED).unwrap_or(0.0) >= LEN as f64,
        "the waiting write holds its buffers"
    );
    // B: PREEMPT AND ABORT of A's key (Write Exclusive).
    assert_eq!(
        b.pr_out(0x05, 0x01, 0xb, 0xa)
            .expect("PERSISTENT RESERVE OUT"),
        0,
        "PREEMPT AND ABORT"
    );
    let t0 = Instant::now();
    let leased = d.wait_metric(LEASED, 0.0, Duration::from_secs(5));
    assert_eq!(
        leased,
        Some(0.0),
        "A's aborted write still holds its buffers {:?} after the preemption",
        t0.elapsed()
    );
    // No status for the aborted write; A's session goes on (its next
    // command reports the preemption's unit attention).
    nothing_within(
        &mut a,
        Duration::from_millis(300),
        "status for an aborted task",
    );
    let st = a.test_unit_ready().expect("TEST UNIT READY");
    assert_eq!(st, 2, "CHECK CONDITION: REGISTRATIONS PREEMPTED");
    assert_eq!(a.write(21, &block(21, 7), false).expect("write"), 0);
    assert_eq!(
        d.metric("zctarget_command_lifecycle_errors_total"),
        Some(0.0)
    );
}
