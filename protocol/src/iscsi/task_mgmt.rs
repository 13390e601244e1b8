//! SCSI Task Management Function Request and Response (RFC 7143 §11.5,
//! §11.6).

use super::bhs::{expect_opcode, header, BhsError, Opcode, BHS_LEN, FINAL_BIT, IMMEDIATE_BIT};
use super::sequence::{sn_lt, CmdWindow};
use crate::wire::{array, be24, be32, put, put_be32};

const FUNCTION_MASK: u8 = 0x7F;

code_enum! {
    /// Task management function codes (RFC 7143 §11.5.1).
    pub enum TaskMgmtFunction: u8 {
        /// ABORT TASK.
        AbortTask = 1,
        /// ABORT TASK SET.
        AbortTaskSet = 2,
        /// CLEAR ACA.
        ClearAca = 3,
        /// CLEAR TASK SET.
        ClearTaskSet = 4,
        /// LOGICAL UNIT RESET.
        LogicalUnitReset = 5,
        /// TARGET WARM RESET.
        TargetWarmReset = 6,
        /// TARGET COLD RESET.
        TargetColdReset = 7,
        /// TASK REASSIGN.
        TaskReassign = 8,
    }
}

/// SCSI Task Management Function Request (RFC 7143 §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtRequest {
    /// I bit (§11.2.1.1).
    pub immediate: bool,
    /// Function (§11.5.1); seven bits on the wire.
    pub function: TaskMgmtFunction,
    /// TotalAHSLength in 4-byte words (0 per §11.5).
    pub total_ahs_len: u8,
    /// DataSegmentLength (0 per §11.5).
    pub data_segment_len: u32,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// Referenced Task Tag (§11.5.2): the task to abort.
    pub referenced_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// RefCmdSN (§11.5.3).
    pub ref_cmd_sn: u32,
    /// ExpDataSN (§11.5.4).
    pub exp_data_sn: u32,
}

impl TaskMgmtRequest {
    /// Decodes a Task Management Function Request BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::TaskMgmtRequest)?;
        Ok(TaskMgmtRequest {
            immediate: b[0] & IMMEDIATE_BIT != 0,
            function: TaskMgmtFunction::from_code(b[1] & FUNCTION_MASK),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            lun: array(b, 8),
            itt: be32(b, 16),
            referenced_task_tag: be32(b, 20),
            cmd_sn: be32(b, 24),
            exp_stat_sn: be32(b, 28),
            ref_cmd_sn: be32(b, 32),
            exp_data_sn: be32(b, 36),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::TaskMgmtRequest,
            self.immediate,
            FINAL_BIT | (self.function.code() & FUNCTION_MASK),
            self.total_ahs_len,
            self.data_segment_len,
        );
        put(&mut b, 8, &self.lun);
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 20, self.referenced_task_tag);
        put_be32(&mut b, 24, self.cmd_sn);
        put_be32(&mut b, 28, self.exp_stat_sn);
        put_be32(&mut b, 32, self.ref_cmd_sn);
        put_be32(&mut b, 36, self.exp_data_sn);
        b
    }
}

code_enum! {
    /// Task management Response codes (RFC 7143 §11.6.1).
    pub enum TaskMgmtResponseCode: u8 {
        /// Function complete.
        FunctionComplete = 0,
        /// Task does not exist.
        TaskDoesNotExist = 1,
        /// LUN does not exist.
        LunDoesNotExist = 2,
        /// Task still allegiant.
        TaskStillAllegiant = 3,
        /// Task allegiance reassignment not supported.
        ReassignmentNotSupported = 4,
        /// Task management function not supported.
        FunctionNotSupported = 5,
        /// Function authorization failed.
        AuthorizationFailed = 6,
        /// Function rejected.
        FunctionRejected = 255,
    }
}

/// SCSI Task Management Function Response (RFC 7143 §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtResponse {
    /// Response (§11.6.1).
    pub response: TaskMgmtResponseCode,
    /// TotalAHSLength in 4-byte words (0 per §11.6).
    pub total_ahs_len: u8,
    /// DataSegmentLength (0 per §11.6).
    pub data_segment_len: u32,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl TaskMgmtResponse {
    /// Decodes a Task Management Function Response BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Result<Self, BhsError> {
        expect_opcode(b, Opcode::TaskMgmtResponse)?;
        Ok(TaskMgmtResponse {
            response: TaskMgmtResponseCode::from_code(b[2]),
            total_ahs_len: b[4],
            data_segment_len: be24(b, 5),
            itt: be32(b, 16),
            stat_sn: be32(b, 24),
            exp_cmd_sn: be32(b, 28),
            max_cmd_sn: be32(b, 32),
        })
    }

    /// Encodes the BHS; reserved fields are zero, F is 1.
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut b = header(
            Opcode::TaskMgmtResponse,
            false,
            FINAL_BIT,
            self.total_ahs_len,
            self.data_segment_len,
        );
        b[2] = self.response.code();
        put_be32(&mut b, 16, self.itt);
        put_be32(&mut b, 24, self.stat_sn);
        put_be32(&mut b, 28, self.exp_cmd_sn);
        put_be32(&mut b, 32, self.max_cmd_sn);
        b
    }
}

/// Whether ABORT TASK `req` reaches a task the target holds under its
/// Referenced Task Tag, on LUN field `task_lun`, `pending` (its status not
/// sent yet). A task is named by its I_T_L_Q nexus (SAM-5; RFC 7143
/// §11.5.1, the LUN field of ABORT TASK addresses the referenced task's
/// logical unit): a tag that names a task of another LUN names no task of
/// the request's LUN — that task is left alone, and the answer is
/// [`abort_task_response`] with `pending` false ("Task does not exist" for
/// a command already received).
pub fn abort_task_reaches(req: &TaskMgmtRequest, task_lun: [u8; 8], pending: bool) -> bool {
    pending && task_lun == req.lun
}

/// ABORT TASK's answer (RFC 7143 §11.5.1). `pending`: the referenced task
/// is here and has not had its status sent — aborting it keeps that
/// status back, "Function complete". Otherwise the task already ended (or
/// never came): "Function complete" only when its RefCmdSN is inside the
/// command window (`window`, after accepting the request) and before the
/// request's own CmdSN — a command not received yet, taken as received —
/// and "Task does not exist" for one that was answered, so the initiator
/// never sees both a status and a successful abort of one task.
pub fn abort_task_response(
    pending: bool,
    req: &TaskMgmtRequest,
    window: &CmdWindow,
) -> TaskMgmtResponseCode {
    if pending {
        return TaskMgmtResponseCode::FunctionComplete;
    }
    let r = req.ref_cmd_sn;
    let in_window = !sn_lt(r, window.exp_cmd_sn()) && !sn_lt(window.max_cmd_sn(), r);
    if in_window && sn_lt(r, req.cmd_sn) {
        TaskMgmtResponseCode::FunctionComplete
    } else {
        TaskMgmtResponseCode::TaskDoesNotExist
    }
}
