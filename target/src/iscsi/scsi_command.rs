//! SCSI Command PDUs: CmdSN and ITT checks, buffer admission for the data
//! the initiator sends unasked, then the command takes a slot of the shared
//! engine (`crate::slots`) and runs on that slot's worker.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use zctarget_protocol::iscsi::{RejectReason, ScsiCommand};

use super::connection::{Connection, Residual};
use super::reader::{Header, PduReader};
use super::steps::IscsiCmd;
use crate::slots;

impl Connection {
    pub(super) async fn on_scsi_command(
        self: &Rc<Self>,
        reader: &mut PduReader,
        header: &Header,
        cmd: ScsiCommand,
    ) -> anyhow::Result<()> {
        // The fence's mark (`Connection::fenced`), taken before the
        // immediate data is read — the reader may stall inside it, and an
        // abort asked meanwhile must still reach this command: one atomic
        // load per command, no lock.
        let asked = self.session_info.events.asked();
        let data_len = cmd.data_segment_len;
        if !self.accept_cmd_sn(cmd.immediate, cmd.cmd_sn) {
            reader.skip_data(data_len).await?;
            return Ok(());
        }
        if self.tasks.find(cmd.itt).is_some() {
            reader.skip_data(data_len).await?;
            return self.send_reject(RejectReason::TaskInProgress, &header.bhs);
        }
        if self.slots.busy() == self.slots.len() {
            // More commands than the CmdSN window allows cannot pass
            // accept_cmd_sn; immediate ones can: the task set is full.
            reader.skip_data(data_len).await?;
            let st = zctarget_protocol::scsi::Status::TaskSetFull.code();
            let residual = Residual::of(cmd.expected_data_transfer_len, 0);
            return self.send_scsi_response(cmd.itt, st, &[], residual);
        }
        // Immediate data only if negotiated, and never more than
        // FirstBurstLength (RFC 7143 §13.14): the burst the admission and
        // quotas were sized for.
        let immediate_ok =
            data_len == 0 || (self.params.immediate_data && data_len <= self.params.first_burst);
        if !immediate_ok
            || data_len > cmd.expected_data_transfer_len
            || (data_len > 0 && !cmd.write)
        {
            reader.skip_data(data_len).await?;
            return self.send_reject(RejectReason::ProtocolError, &header.bhs);
        }
        let lun = u64::from_be_bytes(cmd.lun);
        let wants_data = cmd.write && cmd.expected_data_transfer_len > 0;
        let mut data_out = None;
        if wants_data {
            let edtl = cmd.expected_data_transfer_len;
            // Nor more than the pool could ever grant at once.
            let max = super::exec::MAX_TRANSFER_BYTES
                .min(u32::try_from(self.admission.max_solicited()).unwrap_or(u32::MAX));
            if edtl > max {
                reader.skip_data(data_len).await?;
                return super::exec::reject_too_large(self, &cmd);
            }
            // Data the initiator sends unasked (immediate, unsolicited) is
            // already on the wire: buffers now, or the data is drained and
            // the command answered TASK SET FULL. Data asked for by R2T is
            // leased by the command's task (NeedBuffer), never here.
            let unasked = data_len > 0 || !self.params.initial_r2t;
            let mut payload = None;
            let mut grant = None;
            let mut busy = false;
            if unasked {
                let whole = self
                    .admission
                    .try_now(edtl as usize, data_len == edtl)
                    .unwrap_or(None);
                // Else only the immediate data, from the pool's reserve; the
                // task leases the rest before its R2Ts (NeedBuffer).
                let part = || {
                    let rest = (edtl - data_len) as usize;
                    let aligned = data_len as usize % zctarget_backends::POOL_ALIGN == 0;
                    if data_len == 0 || !aligned || rest > self.admission.max_solicited() {
                        return None;
                    }
                    self.admission
                        .try_partial(data_len as usize)
                        .unwrap_or(None)
                };
                match whole.or_else(part) {
                    Some((p, g)) => {
                        payload = Some(p);
                        grant = Some(g);
                    }
                    None => busy = true,
                }
            }
            match payload.as_mut() {
                Some(p) if data_len > 0 => reader.read_data_into(data_len, p, 0).await?,
                _ => reader.skip_data(data_len).await?,
            }
            if busy {
                self.reactor.shared.pool.note_backpressure();
                tracing::debug!(
                    itt = cmd.itt,
                    edtl,
                    "no buffers for unsolicited data: TASK SET FULL"
                );
            }
            data_out = Some((payload, grant, busy, data_len, edtl));
        }
        self.session_info.in_flight.fetch_add(1, Ordering::Relaxed);
        self.session_info.commands.fetch_add(1, Ordering::Relaxed);
        let itt = cmd.itt;
        match self.slots.start(IscsiCmd::new(cmd)) {
            Ok((idx, spawn)) => {
                // Set up before the worker can run (no await until then).
                let task = self.tasks.slot(idx);
                task.begin(itt, lun, asked);
                if let Some((payload, grant, busy, received, expected)) = data_out {
                    task.expect_data(payload, grant, busy, received, expected);
                }
                if spawn {
                    let workers = &self.reactor.shared.counters.command_workers;
                    workers[0].fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_local(worker(Rc::clone(self), idx));
                }
            }
            // Checked above; the connection is closing.
            Err(_) => {
                self.session_info.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// A slot's worker: runs the slot's commands until the connection closes.
async fn worker(conn: Rc<Connection>, idx: u16) {
    while let Some(cmd) = conn.slots.next(idx).await {
        let host_data = conn.tasks.slot(idx).data_out().is_some();
        let reads = cmd.cmd.read && !cmd.cmd.write;
        slots::drive(&conn, &conn.slots, idx, cmd, host_data, reads).await;
        conn.tasks.end(idx);
        conn.session_info.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
