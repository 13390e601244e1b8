//! Handling one received PDU: completions (CapsuleResp, C2HData with the
//! SUCCESS flag), read data (checked against the pattern with `verify`), and
//! R2Ts answered with H2CData appended to the send buffer.

use anyhow::{bail, Context};
use zctarget_protocol::nvme::{Cqe, Status};
use zctarget_protocol::nvme_tcp::{
    digest, C2HData, CapsuleResp, CommonHeader, H2CData, PduFlags, PduType, R2t,
};

use super::{pattern_word, Queue, Worker};

fn hdr24(pdu: &[u8]) -> anyhow::Result<&[u8; 24]> {
    pdu.get(..24)
        .and_then(|h| h.try_into().ok())
        .context("PDU shorter than its header")
}

impl Queue {
    pub(super) fn handle(
        &mut self,
        w: &mut Worker<'_>,
        ch: CommonHeader,
        pdu: &[u8],
    ) -> anyhow::Result<()> {
        let hlen = usize::from(ch.hlen);
        if ch.flags.contains(PduFlags::HDGSTF) && ch.pdu_type != PduType::C2HTermReq {
            let d = pdu.get(hlen..hlen + 4).context("header digest missing")?;
            let got = digest::from_wire(d.try_into()?);
            anyhow::ensure!(
                got == digest::header_digest(&pdu[..hlen]),
                "bad header digest from the target"
            );
        }
        match ch.pdu_type {
            PduType::CapsuleResp => {
                let r = CapsuleResp::parse(hdr24(pdu)?)
                    .map_err(|e| anyhow::anyhow!("CapsuleResp: {e}"))?;
                let cqe = Cqe::parse(&r.cqe);
                w.complete(self, cqe.cid, cqe.status)
            }
            PduType::C2HData => {
                let d = C2HData::parse(hdr24(pdu)?).map_err(|e| anyhow::anyhow!("C2HData: {e}"))?;
                let pdo = usize::from(d.pdo);
                let len = d.datal as usize;
                let data = pdu
                    .get(pdo..pdo + len)
                    .context("C2HData shorter than DATAL")?;
                if ch.flags.contains(PduFlags::DDGSTF) {
                    let dg = pdu.get(pdo + len..pdo + len + 4).context("data digest")?;
                    anyhow::ensure!(
                        digest::from_wire(dg.try_into()?) == digest::data_digest(data),
                        "bad data digest from the target"
                    );
                }
                let Some(slot) = self
                    .slots
                    .get_mut(usize::from(d.cccid))
                    .filter(|s| s.busy && !s.write)
                else {
                    bail!("C2HData for CID {}, which is not a read in flight", d.cccid);
                };
                anyhow::ensure!(
                    d.datao as usize == slot.received,
                    "C2HData out of order for CID {}",
                    d.cccid
                );
                if w.phase.verify && !slot.bad_data {
                    let lba = w.geo.lba;
                    let base = d.datao as usize;
                    slot.bad_data = data.chunks_exact(8).enumerate().any(|(i, c)| {
                        let o = base + i * 8;
                        let want = pattern_word(slot.slba + (o / lba) as u64, o % lba);
                        c != want.to_le_bytes()
                    });
                }
                slot.received += len;
                if d.success() {
                    w.stats.success_flag += 1;
                    w.complete(self, d.cccid, Status::SUCCESS)?;
                }
                Ok(())
            }
            PduType::R2t => {
                let r = R2t::parse(hdr24(pdu)?).map_err(|e| anyhow::anyhow!("R2T: {e}"))?;
                let Some(slot) = self
                    .slots
                    .get(usize::from(r.cccid))
                    .filter(|s| s.busy && s.write)
                else {
                    bail!("R2T for CID {}, which is not a write in flight", r.cccid);
                };
                let (start, end) = (r.r2to as usize, (r.r2to + r.r2tl) as usize);
                let total = w.geo.nlb as usize * w.geo.lba;
                anyhow::ensure!(end <= total, "R2T beyond the command's data");
                let slba = slot.slba;
                let (hdgst, ddgst) = (self.conn.hdgst, self.conn.ddgst);
                let header_end = 24 + if hdgst { 4 } else { 0 };
                let mut off = start;
                while off < end {
                    let n = w.geo.maxh2cdata.min(end - off);
                    let h = H2CData {
                        flags: PduFlags::empty()
                            .with(PduFlags::HDGSTF, hdgst)
                            .with(PduFlags::DDGSTF, ddgst)
                            .with(PduFlags::LAST_PDU, off + n == end),
                        pdo: header_end as u8,
                        plen: (header_end + n + if ddgst { 4 } else { 0 }) as u32,
                        cccid: r.cccid,
                        ttag: r.ttag,
                        datao: off as u32,
                        datal: n as u32,
                    }
                    .encode();
                    self.wbuf.extend_from_slice(&h);
                    if hdgst {
                        self.wbuf
                            .extend_from_slice(&digest::to_wire(digest::header_digest(&h)));
                    }
                    w.put_data(&mut self.wbuf, slba, off, n, ddgst);
                    off += n;
                }
                Ok(())
            }
            PduType::C2HTermReq => bail!(
                "the target ended the connection (C2HTermReq {:02x?})",
                &pdu[..pdu.len().min(24)]
            ),
            other => bail!("unexpected PDU {other:?}"),
        }
    }
}
