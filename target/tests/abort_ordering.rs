//! What aborts commands is answered only once they no longer execute: no
//! aborted write lands on the medium after the ABORT TASK SET, PREEMPT AND
//! ABORT, CLEAR TASK SET, LOGICAL UNIT RESET or target reset that aborted
//! it was answered (SAM-5: a task is aborted when it can no longer affect
//! the logical unit — what fencing with persistent reservations relies
//! on) — the last three abort the tasks of every session (every I_T
//! nexus), not only the issuer's. The volume is a memory volume whose
//! writes take a second (`write_delay_ms`), so the aborted write is surely
//! still executing when the abort arrives.

use std::time::Duration;

use zctarget_protocol::iscsi::{NopOut, TaskMgmtFunction, TaskMgmtRequest, BHS_LEN};
use zctarget_tests::iscsi::{Iscsi, OP_R2T, OP_SCSI_RESPONSE};
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:aborts";
const BS: usize = 512;
const DELAY: Duration = Duration::from_millis(1000);

fn start(engine: &str) -> Daemon {
    start_with(engine, 1)
}

/// [`start`] with `reactors` reactor threads (with two, the second
/// session is placed on the other, less loaded one).
fn start_with(engine: &str, reactors: usize) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
         io_engine = \"{engine}\"\nreactors = {reactors}\nbuffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\
         write_delay_ms = {}\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n",
        DELAY.as_millis()
    ))
}

/// Sends a one-block WRITE of `data` at `lba` and its data (the kit logs
/// in with InitialR2T=Yes): when this returns, the write is executing —
/// for [`DELAY`] — and its status has not come. Returns its ITT.
fn executing_write(i: &mut Iscsi, lba: u64, data: &[u8]) -> u32 {
    let cmd = i.command(&i.write_cdb(lba, BS, false), 0, BS as u32);
    i.send_pdu(&cmd.encode(), &[]).expect("send write");
    let r2t = i.next().expect("R2T");
    assert_eq!((r2t.opcode(), r2t.itt()), (OP_R2T, cmd.itt));
    i.data_out(&cmd, &r2t, data).expect("send Data-Out");
    // The data is in; give the command a moment to reach the disk (a
    // small fraction of DELAY).
    std::thread::sleep(Duration::from_millis(150));
    cmd.itt
}

/// Block `lba` now, and again once a write still under way would have
/// landed.
fn now_and_later(i: &mut Iscsi, lba: u64) -> (Vec<u8>, Vec<u8>) {
    let (st, now) = i.read(lba, 1).expect("read");
    assert_eq!(st, 0);
    std::thread::sleep(DELAY + Duration::from_millis(300));
    let (st, later) = i.read(lba, 1).expect("read again");
    assert_eq!(st, 0);
    (now, later)
}

#[test]
fn abort_task_set_is_answered_after_the_aborted_write_stopped() {
    let d = start("uring");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:a", BS).expect("login");
    executing_write(&mut i, 9, &[0x5a; BS]);
    let req = TaskMgmtRequest {
        immediate: true,
        function: TaskMgmtFunction::AbortTaskSet,
        itt: i.next_itt(),
        referenced_task_tag: 0xffff_ffff,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: i.exp_stat_sn,
        ..Default::default()
    };
    i.send_pdu(&req.encode(), &[]).expect("send ABORT TASK SET");
    // The connection goes on while the abort settles: a READ sent after
    // the request is answered before it.
    let read = i.command(&i.read_cdb(20, 1), BS as u32, 0);
    i.send_pdu(&read.encode(), &[]).expect("send READ");
    let first = i.next().expect("first answer");
    assert_eq!(
        first.itt(),
        read.itt,
        "the READ waited for the abort to settle (PDU {:#x} came first)",
        first.opcode()
    );
    let rsp = loop {
        let p = i.next().expect("TMF response");
        if p.itt() != read.itt {
            break p;
        }
    };
    assert_eq!(
        (rsp.opcode(), rsp.itt(), rsp.bhs[2]),
        (0x22, req.itt, 0),
        "Function complete (no status for the aborted write before it)"
    );
    let (now, later) = now_and_later(&mut i, 9);
    assert_eq!(
        now, later,
        "the aborted write landed after ABORT TASK SET was answered"
    );
}

/// Sessions A and B of two initiators.
fn two_sessions(d: &Daemon) -> (Iscsi, Iscsi) {
    let a = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:a", BS).expect("login A");
    let b = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:b", BS).expect("login B");
    (a, b)
}

/// [`two_sessions`] with A's key 0xa and B's key 0xb registered.
fn registered_sessions(d: &Daemon) -> (Iscsi, Iscsi) {
    let (mut a, mut b) = two_sessions(d);
    for (i, key) in [(&mut a, 0xa), (&mut b, 0xb)] {
        let st = i.pr_out(0x00, 0, 0, key).expect("REGISTER");
        assert_eq!(st, 0, "{key:#x} registers");
    }
    (a, b)
}

#[test]
fn preempt_and_abort_is_answered_after_the_preempted_write_stopped() {
    let d = start("epoll");
    let (mut a, mut b) = registered_sessions(&d);
    executing_write(&mut a, 9, &[0xa5; BS]);
    // B fences A: PREEMPT AND ABORT of A's key, Write Exclusive.
    assert_eq!(
        b.pr_out(0x05, 0x01, 0xb, 0xa)
            .expect("PERSISTENT RESERVE OUT"),
        0,
        "PREEMPT AND ABORT"
    );
    let (now, later) = now_and_later(&mut b, 9);
    assert_eq!(
        now, later,
        "A's preempted write landed after PREEMPT AND ABORT was answered"
    );
}

/// Sends the task management `function` on LUN 0 and waits for its
/// answer, which must be "Function complete".
fn task_mgmt(i: &mut Iscsi, function: TaskMgmtFunction) {
    let req = TaskMgmtRequest {
        immediate: true,
        function,
        itt: i.next_itt(),
        referenced_task_tag: 0xffff_ffff,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: i.exp_stat_sn,
        ..Default::default()
    };
    i.send_pdu(&req.encode(), &[])
        .expect("send task management");
    let rsp = i.next().expect("task management response");
    assert_eq!(
        (rsp.opcode(), rsp.itt(), rsp.bhs[2]),
        (0x22, req.itt, 0),
        "{function:?}: Function complete"
    );
}

/// The (ASC, ASCQ) of the unit attention the next TEST UNIT READY of `i`
/// reports — checking first that no status came for the aborted write
/// `aborted_itt` (TAS 0: an aborted command ends without one). Called
/// after the write would have finished, so such a status would come
/// first.
fn unit_attention_after_abort(i: &mut Iscsi, aborted_itt: u32) -> (u8, u8) {
    let tur = i.command(&[0; 6], 0, 0);
    i.send_pdu(&tur.encode(), &[])
        .expect("send TEST UNIT READY");
    let p = i.next().expect("TEST UNIT READY status");
    assert_ne!(
        p.itt(),
        aborted_itt,
        "the aborted write got a status ({:#x})",
        p.bhs[3]
    );
    assert_eq!((p.opcode(), p.itt()), (OP_SCSI_RESPONSE, tur.itt));
    i.exp_stat_sn = p.be32(24).wrapping_add(1);
    assert_eq!(p.bhs[3], 0x02, "CHECK CONDITION (a unit attention)");
    // Fixed-format sense (D_SENSE is off) after the 2-byte length.
    let sense = &p.data[2..];
    assert_eq!((sense[0] & 0x7f, sense[2] & 0x0f), (0x70, 0x06));
    (sense[12], sense[13])
}

/// TEST UNIT READY until GOOD (a pending unit attention consumed).
fn clear_unit_attentions(i: &mut Iscsi) {
    for _ in 0..4 {
        if i.test_unit_ready().expect("TEST UNIT READY") == 0 {
            return;
        }
    }
    panic!("TEST UNIT READY never GOOD");
}

/// Session B's write is executing (a slow volume) when session A sends
/// `function`: once A is answered, B's write no longer lands (the block
/// read right after the answer equals the one read a second later), and
/// B, whose write got no status, learns why from the unit attention `ua`
/// (ASC, ASCQ). `tag` fills the written block.
fn stops_the_other_sessions_write(
    d: &Daemon,
    function: TaskMgmtFunction,
    tag: u8,
    ua: (u8, u8),
) -> (Iscsi, Iscsi) {
    let (mut a, mut b) = two_sessions(d);
    let write = executing_write(&mut b, 9, &[tag; BS]);
    task_mgmt(&mut a, function);
    if function == TaskMgmtFunction::LogicalUnitReset {
        // The issuer sees the reset's unit attention too (`IscsiLun::reset`).
        clear_unit_attentions(&mut a);
    }
    let (now, later) = now_and_later(&mut a, 9);
    assert_eq!(
        now, later,
        "B's write landed after A's {function:?} was answered"
    );
    assert_eq!(
        unit_attention_after_abort(&mut b, write),
        ua,
        "B's unit attention"
    );
    (a, b)
}

#[test]
fn logical_unit_reset_is_answered_after_other_sessions_writes_stopped() {
    let d = start("uring");
    // BUS DEVICE RESET FUNCTION OCCURRED
    stops_the_other_sessions_write(&d, TaskMgmtFunction::LogicalUnitReset, 0xb5, (0x29, 0x03));
}

#[test]
fn clear_task_set_clears_other_sessions_tasks() {
    let d = start("epoll");
    // TAS is 0 in the control mode page: B's cleared write ended without
    // status, and B learns it from COMMANDS CLEARED BY ANOTHER INITIATOR
    // (SAM-5 §5.6).
    let (mut a, mut b) =
        stops_the_other_sessions_write(&d, TaskMgmtFunction::ClearTaskSet, 0xb6, (0x2f, 0x00));
    // Only once; A, whose own request it was, has none.
    assert_eq!(b.test_unit_ready().expect("B: TEST UNIT READY"), 0);
    assert_eq!(a.test_unit_ready().expect("A: TEST UNIT READY"), 0);
}

#[test]
fn target_warm_reset_is_answered_after_other_sessions_writes_stopped() {
    // Two reactors: B's session is told from another thread.
    let d = start_with("uring", 2);
    // POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
    stops_the_other_sessions_write(&d, TaskMgmtFunction::TargetWarmReset, 0xb7, (0x29, 0x00));
}

#[test]
fn data_out_for_an_aborted_write_is_dropped_not_rejected() {
    let d = start("uring");
    let mut i = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-12.test:a", BS).expect("login");
    let cmd = i.command(&i.write_cdb(9, BS, false), 0, BS as u32);
    i.send_pdu(&cmd.encode(), &[]).expect("send write");
    let r2t = i.next().expect("R2T");
    assert_eq!((r2t.opcode(), r2t.itt()), (OP_R2T, cmd.itt));
    // The write waits for its data: ABORT TASK SET ends it at once.
    task_mgmt(&mut i, TaskMgmtFunction::AbortTaskSet);
    // The initiator answers the R2T it had all the same (it may have sent
    // this before it saw the answer): the target drops the data, silently.
    i.data_out(&cmd, &r2t, &[0x5b; BS]).expect("send Data-Out");
    let tur = i.command(&[0; 6], 0, 0);
    i.send_pdu(&tur.encode(), &[])
        .expect("send TEST UNIT READY");
    let p = i.next().expect("TEST UNIT READY status");
    assert_eq!(
        (p.opcode(), p.itt()),
        (OP_SCSI_RESPONSE, tur.itt),
        "the Data-Out of the aborted write was answered (opcode {:#x}, reason {:#x})",
        p.opcode(),
        p.bhs[2]
    );
    assert_eq!(p.bhs[3], 0, "TEST UNIT READY: GOOD");
    i.exp_stat_sn = p.be32(24).wrapping_add(1);
    let (st, block) = i.read(9, 1).expect("read");
    assert_eq!(st, 0);
    assert_eq!(block, vec![0u8; BS], "the aborted write's data landed");
}

/// Sends a one-block WRITE of `data` at `lba` and, answering its R2T, a
/// Data-Out that stops in the middle of its payload: the host paused
/// mid-PDU. The session's reader stays inside that PDU, where it handles
/// no abort asked of the session (it does between PDUs). Returns the
/// WRITE's ITT and the Data-Out's remaining bytes
/// ([`finish_stalled_data_out`]).
fn write_stalled_mid_data_out(i: &mut Iscsi, lba: u64, data: &[u8]) -> (u32, Vec<u8>) {
    let cmd = i.command(&i.write_cdb(lba, BS, false), 0, BS as u32);
    i.send_pdu(&cmd.encode(), &[]).expect("send write");
    let r2t = i.next().expect("R2T");
    assert_eq!((r2t.opcode(), r2t.itt()), (OP_R2T, cmd.itt));
    let dout = i.data_out_for(&cmd, &r2t, data.len());
    let wire = i.pdu_bytes(&dout.encode(), data);
    let (sent, rest) = wire.split_at(BHS_LEN + data.len() / 2);
    i.send_raw(sent).expect("send half a Data-Out");
    // The reader takes the header and starts on the payload.
    std::thread::sleep(Duration::from_millis(100));
    (cmd.itt, rest.to_vec())
}

/// The stalled Data-Out's `rest`, sent together with the first half of a
/// NOP-Out ping: the reader goes from the end of the one PDU straight into
/// the next, which stops half-way, without passing the point between PDUs
/// where it handles asks — as with a host pipelining PDUs over a slow
/// link. Then, once a write that went ahead would have landed, the rest of
/// the ping.
fn finish_stalled_data_out(i: &mut Iscsi, rest: &[u8]) {
    let ping = NopOut {
        immediate: true,
        itt: i.next_itt(),
        ttt: 0xffff_ffff,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: i.exp_stat_sn,
        ..Default::default()
    };
    let ping = i.pdu_bytes(&ping.encode(), &[]);
    let (head, tail) = ping.split_at(BHS_LEN / 2);
    i.send_raw(&[rest, head].concat())
        .expect("send the rest of the Data-Out");
    std::thread::sleep(DELAY + Duration::from_millis(300));
    i.send_raw(tail).expect("send the rest of the ping");
}

/// Block 9, read through `a`, is still zero: B's stalled write did not
/// land after A's `what` was answered.
fn assert_never_landed(a: &mut Iscsi, what: &str) {
    let (st, block) = a.read(9, 1).expect("read");
    assert_eq!(st, 0);
    assert!(
        block.iter().all(|&x| x == 0),
        "B's write, accepted before A's {what}, landed after it was answered \
         (its Data-Out had stalled mid-PDU): the block starts {:02x?}",
        &block[..8]
    );
}

#[test]
fn logical_unit_reset_fences_a_write_whose_data_out_was_stalled() {
    // Two reactors: B's session is asked from another thread.
    let d = start_with("uring", 2);
    let (mut a, mut b) = two_sessions(&d);
    let (write, rest) = write_stalled_mid_data_out(&mut b, 9, &[0xb8; BS]);
    // Answered once B settled or after the bound (OTHERS_SETTLE): B's
    // reader cannot handle the ask while inside the Data-Out.
    task_mgmt(&mut a, TaskMgmtFunction::LogicalUnitReset);
    finish_stalled_data_out(&mut b, &rest);
    clear_unit_attentions(&mut a);
    assert_never_landed(&mut a, "LOGICAL UNIT RESET");
    assert_eq!(
        unit_attention_after_abort(&mut b, write),
        (0x29, 0x03),
        "B: BUS DEVICE RESET FUNCTION OCCURRED"
    );
}

#[test]
fn preempt_and_abort_fences_a_write_whose_data_out_was_stalled() {
    let d = start("epoll");
    let (mut a, mut b) = registered_sessions(&d);
    let (write, rest) = write_stalled_mid_data_out(&mut b, 9, &[0xb9; BS]);
    // A fences B: PREEMPT AND ABORT of B's key, Write Exclusive.
    assert_eq!(
        a.pr_out(0x05, 0x01, 0xa, 0xb)
            .expect("PERSISTENT RESERVE OUT"),
        0,
        "PREEMPT AND ABORT"
    );
    finish_stalled_data_out(&mut b, &rest);
    assert_never_landed(&mut a, "PREEMPT AND ABORT");
    assert_eq!(
        unit_attention_after_abort(&mut b, write),
        (0x2a, 0x05),
        "B: REGISTRATIONS PREEMPTED"
    );
}
