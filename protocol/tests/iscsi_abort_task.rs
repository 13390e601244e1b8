//! ABORT TASK's answer (RFC 7143 §11.5.1), decided sans I/O by
//! `abort_task_response`: an initiator must never see both a task's status
//! and "Function complete" for aborting it.

use proptest::prelude::*;
use zctarget_protocol::iscsi::sequence::CmdWindow;
use zctarget_protocol::iscsi::{
    abort_task_reaches, abort_task_response, TaskMgmtRequest, TaskMgmtResponseCode,
};

fn abort(ref_cmd_sn: u32, cmd_sn: u32) -> TaskMgmtRequest {
    TaskMgmtRequest {
        immediate: true,
        ref_cmd_sn,
        cmd_sn,
        ..Default::default()
    }
}

#[test]
fn a_pending_task_is_aborted() {
    let w = CmdWindow::new(10, 0, 32);
    assert_eq!(
        abort_task_response(true, &abort(9, 10), &w),
        TaskMgmtResponseCode::FunctionComplete
    );
}

#[test]
fn a_task_already_answered_does_not_exist() {
    // The WRITE had CmdSN 9 and was answered; the immediate ABORT TASK
    // carries CmdSN 10 = ExpCmdSN.
    let w = CmdWindow::new(10, 0, 32);
    assert_eq!(
        abort_task_response(false, &abort(9, 10), &w),
        TaskMgmtResponseCode::TaskDoesNotExist
    );
}

#[test]
fn a_command_not_received_yet_counts_as_received() {
    // RefCmdSN 12 inside the window [10, 41] and before the request's own
    // CmdSN 13: rule b), "Function complete".
    let w = CmdWindow::new(10, 0, 32);
    assert_eq!(
        abort_task_response(false, &abort(12, 13), &w),
        TaskMgmtResponseCode::FunctionComplete
    );
    // Inside the window but not before the request: does not exist.
    assert_eq!(
        abort_task_response(false, &abort(12, 12), &w),
        TaskMgmtResponseCode::TaskDoesNotExist
    );
}

#[test]
fn a_task_on_another_lun_is_not_reached() {
    // The pending WRITE (CmdSN 9) is on LUN 0; the ABORT TASK names LUN 1.
    let lun1 = [0, 1, 0, 0, 0, 0, 0, 0];
    let req = TaskMgmtRequest {
        lun: lun1,
        ..abort(9, 10)
    };
    assert!(!abort_task_reaches(&req, [0; 8], true));
    assert!(abort_task_reaches(&req, lun1, true));
    assert!(!abort_task_reaches(&req, lun1, false));
    // The write was received (behind ExpCmdSN): for LUN 1 no such task.
    let w = CmdWindow::new(10, 0, 32);
    assert_eq!(
        abort_task_response(abort_task_reaches(&req, [0; 8], true), &req, &w),
        TaskMgmtResponseCode::TaskDoesNotExist
    );
}

proptest! {
    /// Only a pending task on the request's own LUN is ever reached.
    #[test]
    fn only_the_requests_lun_is_reached(req_lun in any::<[u8; 8]>(), task_lun in any::<[u8; 8]>(),
                                        pending in any::<bool>()) {
        let req = TaskMgmtRequest { lun: req_lun, ..abort(1, 2) };
        prop_assert_eq!(abort_task_reaches(&req, task_lun, pending),
                        pending && req_lun == task_lun);
    }


    /// Across serial-number wrap: a pending task is always aborted; an
    /// ended task whose CmdSN is behind ExpCmdSN (answered) never is.
    #[test]
    fn answered_tasks_never_abort(exp in any::<u32>(), behind in 1u32..1 << 30,
                                   depth in 1u32..512, pending in any::<bool>()) {
        let w = CmdWindow::new(exp, 0, depth);
        let req = abort(exp.wrapping_sub(behind), exp);
        let want = if pending {
            TaskMgmtResponseCode::FunctionComplete
        } else {
            TaskMgmtResponseCode::TaskDoesNotExist
        };
        prop_assert_eq!(abort_task_response(pending, &req, &w), want);
    }
}
