//! Write data: immediate data arrives with the command; unsolicited and
//! solicited Data-Out are checked (ITT, TTT, offset, DataSN) and read
//! straight into the task's leased buffers; a command collects its data
//! burst by burst, leasing what R2Ts ask for before asking (NeedBuffer).

use zctarget_backends::SegmentList;
use zctarget_protocol::iscsi::{DataOut, RejectReason};

use super::connection::Connection;
use super::reader::{Header, PduReader, ReadError};
use super::task::{DataOutState, TaskEntry};
use crate::admission::HOST_DATA_TIMEOUT;

impl Connection {
    /// Collects the write data of a command: immediate data is already in
    /// `state`; unsolicited Data-Out up to FirstBurstLength when InitialR2T
    /// is off; then — once the command's buffers are leased (NeedBuffer,
    /// waited for here, never in the reader) — R2Ts of up to MaxBurstLength
    /// until everything is in. Returns the filled payload, or `None` if the
    /// task was aborted, the data phase broke, or the command was refused
    /// for lack of buffers (`state.busy`).
    pub(crate) async fn collect_write_data(
        &self,
        itt: u32,
        lun: [u8; 8],
        entry: &TaskEntry,
        state: &DataOutState,
    ) -> Option<SegmentList> {
        let expected = state.seq.get().expected();
        let unsolicited_end = if self.params.initial_r2t {
            state.seq.get().received()
        } else {
            self.params.first_burst.min(expected)
        };
        // Wait for the unsolicited burst (the initiator sets F on its last
        // Data-Out).
        if !self.wait_data(itt, entry, state, unsolicited_end).await || state.busy.get() {
            return None;
        }
        let have = state.payload.borrow().as_ref().map_or(0, |p| p.len());
        if have < expected as usize && state.seq.get().received() < expected {
            // NeedBuffer: lease (within the connection's quota) what the
            // command still needs before asking for it; the reader keeps
            // reading meanwhile. A partial lease (immediate data) is bounded
            // by the pool's reserve, not by the quota.
            state.grant.borrow_mut().take();
            let ended = async {
                while !stopped(entry, state) {
                    state.burst_done.notified().await;
                }
            };
            let leased = tokio::select! {
                r = self.admission.lease_solicited(expected as usize - have) => r,
                () = ended => return None,
            };
            match leased {
                Ok((list, grant)) => {
                    let mut payload = state.payload.borrow_mut();
                    let whole = payload.get_or_insert_with(SegmentList::new);
                    for seg in list.into_segments() {
                        whole.push(seg);
                    }
                    *state.grant.borrow_mut() = Some(grant);
                }
                Err(e) => {
                    tracing::warn!(error = %e, itt, "no buffers for write data");
                    return None;
                }
            }
        }
        let mut r2t_sn = 0;
        while !stopped(entry, state) {
            let mut seq = state.seq.get();
            if seq.received() >= seq.expected() {
                break;
            }
            let ttt = self.new_ttt();
            let Some((offset, len)) = seq.solicit(ttt, self.params.max_burst) else {
                break;
            };
            state.seq.set(seq);
            if self.send_r2t(itt, lun, ttt, r2t_sn, offset, len).is_err() {
                return None;
            }
            r2t_sn += 1;
            if !self.wait_data(itt, entry, state, offset + len).await {
                return None;
            }
        }
        if stopped(entry, state) {
            return None;
        }
        // Everything is in: the quota is free for the next command.
        state.grant.borrow_mut().take();
        state.payload.borrow_mut().take()
    }

    /// Waits until `until` bytes of the command's data are in. `false`: the
    /// task was aborted or the data phase broke, or the initiator sent
    /// nothing for [`HOST_DATA_TIMEOUT`] (then the connection ends, which
    /// returns every buffer it held).
    pub(super) async fn wait_data(
        &self,
        itt: u32,
        entry: &TaskEntry,
        state: &DataOutState,
        until: u32,
    ) -> bool {
        while state.seq.get().received() < until && !stopped(entry, state) {
            let burst = state.burst_done.notified();
            if tokio::time::timeout(HOST_DATA_TIMEOUT, burst)
                .await
                .is_err()
            {
                self.fail(format!(
                    "initiator sent no data for ITT {itt:#x} within {HOST_DATA_TIMEOUT:?}"
                ));
                return false;
            }
        }
        !stopped(entry, state)
    }

    pub(super) async fn on_data_out(
        &self,
        reader: &mut PduReader,
        header: &Header,
        dout: DataOut,
    ) -> anyhow::Result<()> {
        let entry = self.tasks.find(dout.itt);
        // Data for an aborted task — still in its slot, or ended and
        // remembered (`Tasks::recently_aborted`) — is read and dropped
        // without an answer: the initiator may still be answering an R2T
        // it had before the abort (RFC 7143 §11.5.1: the target waits for,
        // or discards, the data of outstanding transfer tags of the tasks
        // a task management function aborts), and a Reject would be an
        // answer to a PDU that did nothing wrong.
        let aborted = match entry {
            Some(e) => e.aborted.get(),
            None => self.tasks.recently_aborted(dout.itt),
        };
        if aborted {
            tracing::debug!(itt = dout.itt, "Data-Out for an aborted task; dropped");
            reader.skip_data(dout.data_segment_len).await?;
            return Ok(());
        }
        let state = entry.and_then(|e| e.data_out());
        let Some(state) = state else {
            // RFC 7143 §11.7: Data-Out for an unknown ITT is rejected; the
            // data is discarded.
            tracing::info!(itt = dout.itt, "Data-Out for an unknown task; rejecting");
            reader.skip_data(dout.data_segment_len).await?;
            return self.send_reject(RejectReason::InvalidPduField, &header.bhs);
        };
        // RFC 7143 §11.7: offsets in order within the expected length;
        // §11.7.4: the TTT must be the outstanding R2T's (0xffffffff for
        // unsolicited data); §11.7.5: a DataSN gap or reordering is a
        // protocol error. The PDU is rejected; a wrong TTT or DataSN also
        // ends the command with CHECK CONDITION. The session stays up.
        let end = match state.seq.get().check(&dout) {
            Ok(end) => end,
            Err(e) => {
                reader.skip_data(dout.data_segment_len).await?;
                tracing::info!(
                    itt = dout.itt,
                    ttt = dout.ttt,
                    data_sn = dout.data_sn,
                    offset = dout.buffer_offset,
                    "Data-Out rejected: {e}"
                );
                if e.breaks_command() {
                    state.data_error.set(true);
                    state.burst_done.notify_one();
                }
                return self.send_reject(e.reject_reason(), &header.bhs);
            }
        };
        if state.busy.get() {
            // Refused for lack of buffers: the unsolicited data is drained.
            reader.skip_data(dout.data_segment_len).await?;
        } else {
            let taken = state.payload.borrow_mut().take();
            let Some(mut payload) = taken else {
                // Data nobody asked for (no R2T outstanding yet).
                reader.skip_data(dout.data_segment_len).await?;
                return self.send_reject(RejectReason::InvalidPduField, &header.bhs);
            };
            let r = reader
                .read_data_into(
                    dout.data_segment_len,
                    &mut payload,
                    dout.buffer_offset as usize,
                )
                .await;
            // The task may have been aborted and ended while its data was
            // arriving (a command's fence, `Connection::fenced`, handles
            // abort asks while the reader is inside a PDU): its slot then
            // no longer wants the buffers, which go now.
            if entry.is_some_and(|e| e.itt() == Some(dout.itt)) {
                *state.payload.borrow_mut() = Some(payload);
            }
            match r {
                Ok(()) => {}
                Err(ReadError::DataDigest) => {
                    // ERL 0: a data digest error on Data-Out is fatal for the
                    // command; reject it and abort the task.
                    self.send_reject(RejectReason::DataDigestError, &header.bhs)?;
                    if let Some(e) = entry {
                        e.abort();
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut seq = state.seq.get();
        let burst_over = seq.accept(&dout, end);
        state.seq.set(seq);
        if burst_over {
            state.burst_done.notify_one();
        }
        Ok(())
    }
}

/// Whether a command's data phase is over early: aborted, or broken.
fn stopped(entry: &TaskEntry, state: &DataOutState) -> bool {
    entry.aborted.get() || state.data_error.get()
}
