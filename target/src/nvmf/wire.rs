//! What a queue sends, framed: CapsuleResp, C2HData (control data and read
//! data), R2T and C2HTermReq, queued on the connection's `Outbound`. The
//! framing rules themselves (PDO, PLEN, flags, SQHD) are the protocol
//! crate's (`nvme_tcp::sequence`); this module adds the digests and the
//! payload.

use zctarget_backends::SegmentList;
use zctarget_protocol::nvme::Completion;
use zctarget_protocol::nvme_tcp::digest;
use zctarget_protocol::nvme_tcp::{CapsuleResp, H2cTransfer, PduError, PduFlags, TermReq};

use super::queue::Queue;
use crate::outbound::Outbound;
use crate::zerocopy::Message;

/// Zero bytes for the padding up to PDO.
const PAD: [u8; 128] = [0u8; 128];

/// Sends a C2HTermReq for `error` (when the error has a FES).
pub(super) fn send_term_req(out: &Outbound, error: &PduError, header: &[u8]) {
    if let Some(t) = TermReq::for_error(error, header) {
        let mut msg = out.message(SegmentList::new());
        if msg.push_header(t.encode().as_bytes()).is_ok() {
            out.send(msg);
        }
    }
}

impl Queue {
    /// Appends `bytes` as a header and, with header digests on, its digest.
    fn push_pdu_header(&self, msg: &mut Message, bytes: &[u8]) -> anyhow::Result<()> {
        msg.push_header(bytes)?;
        if self.hdgst {
            msg.push_header(&digest::to_wire(digest::header_digest(bytes)))?;
        }
        Ok(())
    }

    /// Sends a CapsuleResp.
    pub(super) fn send_completion(&self, cid: u16, c: Completion) -> anyhow::Result<()> {
        let qid = self.bound.borrow().as_ref().map_or(0, |b| b.qid);
        let sqhd = self.sqhd.get().sqhd();
        let mut resp = CapsuleResp {
            cqe: c.to_cqe(cid, qid, sqhd).encode(),
            ..CapsuleResp::default()
        };
        if self.hdgst {
            resp.flags = resp.flags.with(PduFlags::HDGSTF, true);
            resp.plen += 4;
        }
        let mut msg = self.out.message(SegmentList::new());
        self.push_pdu_header(&mut msg, &resp.encode())?;
        self.out.send(msg);
        Ok(())
    }

    /// Sends control-path data (Identify, log pages) and then the
    /// completion.
    pub(super) fn send_control_data(
        &self,
        cid: u16,
        bytes: &[u8],
        c: Completion,
    ) -> anyhow::Result<()> {
        let h = self.framing.header(cid, bytes.len(), false);
        let mut msg = self.out.message(SegmentList::new());
        self.push_pdu_header(&mut msg, &h.bytes)?;
        msg.push_header(&PAD[..h.pad])?;
        msg.push_header(bytes)?;
        if self.ddgst {
            msg.push_header(&digest::to_wire(digest::data_digest(bytes)))?;
        }
        self.out.send(msg);
        self.send_completion(cid, c)
    }

    /// The R2T soliciting all of `transfer`.
    pub(super) fn send_r2t(&self, transfer: &H2cTransfer) -> anyhow::Result<()> {
        let mut msg = self.out.message(SegmentList::new());
        self.push_pdu_header(&mut msg, &transfer.r2t(self.hdgst).encode())?;
        self.out.send(msg);
        Ok(())
    }

    /// The C2HData PDU carrying the first `len` bytes of `list` for command
    /// `cid`, SUCCESS set if `success`.
    pub(super) fn read_data_message(
        &self,
        cid: u16,
        list: SegmentList,
        direct: Option<zctarget_backends::DirectRange>,
        len: usize,
        success: bool,
    ) -> anyhow::Result<Message> {
        let h = self.framing.header(cid, len, success);
        let mut msg = self.out.message(list);
        if let Some(direct) = direct {
            anyhow::ensure!(!self.ddgst, "a data digest needs the data in memory");
            msg.from_direct(direct);
        }
        self.push_pdu_header(&mut msg, &h.bytes)?;
        msg.push_header(&PAD[..h.pad])?;
        msg.push_payload(0, len)?;
        if self.ddgst {
            let crc = msg.payload().crc32c_range(0, len);
            msg.push_header(&digest::to_wire(crc))?;
        }
        Ok(msg)
    }
}
