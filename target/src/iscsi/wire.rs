//! What an iSCSI connection sends, framed: SCSI Response, Data-In (split
//! at the initiator's MaxRecvDataSegmentLength, status folded into the last
//! one per the status policy), R2T, Reject and control PDUs, with digests
//! and padding, queued on the connection's `Outbound`.

use zctarget_backends::SegmentList;
use zctarget_protocol::iscsi::sequence::data_in_segments;
use zctarget_protocol::iscsi::{
    digest, DataIn, R2t, Reject, RejectReason, ScsiResponse, BHS_LEN, RESERVED_TAG,
};

use super::connection::Connection;

impl Connection {
    /// Appends one BHS (with its header digest) to a message.
    pub(crate) fn push_bhs(
        &self,
        msg: &mut crate::zerocopy::Message,
        bhs: &[u8; BHS_LEN],
    ) -> anyhow::Result<()> {
        msg.push_header(bhs)?;
        if self.params.header_digest {
            msg.push_header(&digest::to_wire(digest::header_digest(bhs, &[])))?;
        }
        Ok(())
    }

    /// Appends padding and, when data digests are on, `crc` (the digest of
    /// the data segment, padding included) after `len` bytes of data.
    pub(super) fn push_trailer(
        &self,
        msg: &mut crate::zerocopy::Message,
        len: usize,
        crc: u32,
    ) -> anyhow::Result<()> {
        msg.push_header(digest::padding(len))?;
        if self.params.data_digest && len > 0 {
            msg.push_header(&digest::to_wire(crc))?;
        }
        Ok(())
    }

    /// Sends a PDU whose data segment (if any) is control data.
    pub fn send_control(&self, bhs: [u8; BHS_LEN], data: &[u8]) -> anyhow::Result<()> {
        let mut msg = self.out.message(SegmentList::new());
        self.push_bhs(&mut msg, &bhs)?;
        if !data.is_empty() {
            msg.push_header(data)?;
            let crc = if self.params.data_digest {
                digest::data_digest(data)
            } else {
                0
            };
            self.push_trailer(&mut msg, data.len(), crc)?;
        }
        self.out.send(msg);
        Ok(())
    }

    /// Sends a SCSI Response. `sense` (fixed or descriptor format) goes in
    /// the data segment with its 2-byte length.
    pub fn send_scsi_response(
        &self,
        itt: u32,
        status: u8,
        sense: &[u8],
        residual: Residual,
    ) -> anyhow::Result<()> {
        let mut data = [0u8; 2 + 252];
        let n = sense.len().min(252);
        data[..2].copy_from_slice(&(n as u16).to_be_bytes());
        data[2..2 + n].copy_from_slice(&sense[..n]);
        let data_len = if n > 0 { 2 + n } else { 0 };
        let rsp = ScsiResponse {
            residual_overflow: residual.overflow,
            residual_underflow: residual.underflow,
            residual_count: residual.count,
            response: zctarget_protocol::iscsi::response::COMMAND_COMPLETED,
            status,
            data_segment_len: data_len as u32,
            itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rsp.encode(), &data[..data_len])
    }

    /// Sends `len` bytes of `payload` as Data-In PDUs (each within the
    /// initiator's MaxRecvDataSegmentLength). With `status`, the last Data-In
    /// carries it (S bit), and nobody waits for the pages' release (they
    /// return to the pool when it comes); without, returns the future of the
    /// release.
    pub fn send_data_in(
        &self,
        itt: u32,
        lun: [u8; 8],
        payload: SegmentList,
        len: usize,
        status: Option<(u8, Residual)>,
    ) -> anyhow::Result<Option<crate::outbound::Released>> {
        self.send_data_in_from(itt, lun, payload, None, len, status)
    }

    /// [`send_data_in`](Self::send_data_in) with the data from `direct`
    /// when given (`payload` is then empty; no data digest).
    pub fn send_data_in_from(
        &self,
        itt: u32,
        lun: [u8; 8],
        payload: SegmentList,
        direct: Option<zctarget_backends::DirectRange>,
        len: usize,
        status: Option<(u8, Residual)>,
    ) -> anyhow::Result<Option<crate::outbound::Released>> {
        let mut msg = self.out.message(payload);
        if let Some(direct) = direct {
            if self.params.data_digest {
                anyhow::bail!("a data digest needs the data in memory");
            }
            msg.from_direct(direct);
        }
        for seg in data_in_segments(len as u32, self.params.initiator_mrdsl) {
            let (offset, n) = (seg.offset as usize, seg.len as usize);
            let mut din = DataIn {
                final_bit: seg.last,
                lun,
                itt,
                ttt: RESERVED_TAG,
                exp_cmd_sn: self.exp_cmd_sn(),
                max_cmd_sn: self.max_cmd_sn(),
                data_sn: seg.data_sn,
                buffer_offset: seg.offset,
                data_segment_len: seg.len,
                ..Default::default()
            };
            if seg.last {
                if let Some((st, residual)) = status {
                    din.status_present = true;
                    din.status = st;
                    din.stat_sn = self.take_stat_sn();
                    din.residual_overflow = residual.overflow;
                    din.residual_underflow = residual.underflow;
                    din.residual_count = residual.count;
                }
            }
            self.push_bhs(&mut msg, &din.encode())?;
            msg.push_payload(offset, n)?;
            let crc = if self.params.data_digest {
                super::reader::payload_digest(msg.payload(), offset, n)
            } else {
                0
            };
            self.push_trailer(&mut msg, n, crc)?;
        }
        if status.is_some() {
            self.out.send(msg);
            return Ok(None);
        }
        Ok(Some(self.out.send_tracked(msg)))
    }

    /// Sends an R2T for `[offset, offset + len)` of command `itt`.
    pub(super) fn send_r2t(
        &self,
        itt: u32,
        lun: [u8; 8],
        ttt: u32,
        r2t_sn: u32,
        offset: u32,
        len: u32,
    ) -> anyhow::Result<()> {
        let r2t = R2t {
            lun,
            itt,
            ttt,
            stat_sn: self.peek_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            r2t_sn,
            buffer_offset: offset,
            desired_data_transfer_len: len,
            ..Default::default()
        };
        self.send_control(r2t.encode(), &[])
    }

    /// Sends a Reject carrying the offending header.
    pub(crate) fn send_reject(
        &self,
        reason: RejectReason,
        bad: &[u8; BHS_LEN],
    ) -> anyhow::Result<()> {
        self.reactor
            .shared
            .counters
            .protocol_error(crate::daemon::Protocol::Iscsi, reject_kind(reason));
        let rej = Reject {
            reason,
            data_segment_len: BHS_LEN as u32,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rej.encode(), bad)
    }
}

/// Residual fields of a SCSI Response / final Data-In.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residual {
    /// More data was expected than transferred.
    pub underflow: bool,
    /// More data would have been transferred.
    pub overflow: bool,
    /// The residual count.
    pub count: u32,
}

impl Residual {
    /// Residual for a transfer of `actual` bytes against `expected`.
    pub fn of(expected: u32, actual: u32) -> Self {
        use std::cmp::Ordering::*;
        match actual.cmp(&expected) {
            Equal => Self::default(),
            Less => Self {
                underflow: true,
                overflow: false,
                count: expected - actual,
            },
            Greater => Self {
                underflow: false,
                overflow: true,
                count: actual - expected,
            },
        }
    }
}

/// Metric label for a Reject reason.
fn reject_kind(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::DataDigestError => "data_digest",
        RejectReason::CommandNotSupported => "command_not_supported",
        RejectReason::InvalidPduField => "invalid_pdu_field",
        RejectReason::TaskInProgress => "task_in_progress",
        RejectReason::ProtocolError => "protocol_error",
        _ => "reject_other",
    }
}
