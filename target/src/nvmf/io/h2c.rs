//! Host data of an I/O queue's writes: one R2T per command, whose transfer
//! tag names the slot, and the H2CData PDUs that answer it, read straight
//! into the slot's leased buffers after the transport's range checks
//! (`H2cTransfer`, sans-IO in the protocol crate).

use zctarget_protocol::nvme::{Completion, Status};
use zctarget_protocol::nvme_tcp::{H2CData, H2cTransfer, PduError};

use super::host_data;
use super::IoCmd;
use crate::admission::HOST_DATA_TIMEOUT;
use crate::nvmf::queue::{Exit, Queue};
use crate::nvmf::reader::{Header, PduReader, ReadError};
use crate::nvmf::MAX_H2C_DATA;

impl Queue {
    pub(in crate::nvmf) async fn on_h2c_data(
        &self,
        reader: &mut PduReader,
        h: Header,
    ) -> anyhow::Result<Option<Exit>> {
        let mut raw = [0u8; 24];
        raw.copy_from_slice(&h.bytes[..24]);
        let d = match H2CData::parse(&raw) {
            Ok(d) => d,
            Err(e) => return self.fatal(e, &h.bytes),
        };
        let Some(io) = self.io.get() else {
            return self.fatal(PduError::InvalidField(8), &h.bytes);
        };
        // The transfer tag names the slot.
        let slot = io.h2c.get(usize::from(d.ttag.wrapping_sub(1)));
        let Some((slot, transfer)) = slot.and_then(|s| Some((s, s.transfer.get()?))) else {
            // No transfer under that tag: a command that asked for no data
            // (CCCID) or the wrong tag for one that did.
            let asked = io
                .h2c
                .iter()
                .any(|s| s.transfer.get().is_some_and(|t| t.cccid() == d.cccid));
            let field = if asked { 10 } else { 8 };
            return self.fatal(PduError::InvalidField(field), &h.bytes);
        };
        let datao = match transfer.accept(&d, h.layout.data_len, MAX_H2C_DATA) {
            Ok(o) => o,
            Err(e) => return self.fatal(e, &h.bytes),
        };
        let taken = slot.payload.borrow_mut().take();
        let Some(mut payload) = taken else {
            return self.fatal(PduError::DataOutOfRange, &h.bytes);
        };
        let r = reader
            .read_data_into(&h, &mut payload, datao as usize)
            .await;
        *slot.payload.borrow_mut() = Some(payload);
        if let Err(e) = r {
            slot.aborted.set(true);
            slot.done.notify_one();
            if matches!(e, ReadError::DataDigest) {
                // The command answers Transient Transport Error.
                tracing::info!(cid = d.cccid, "H2CData digest error; command failed");
                slot.digest_failed.set(true);
                return Ok(None);
            }
            return self.data_error(e, &h, d.cccid);
        }
        let mut transfer = transfer;
        if transfer.received(&d) {
            slot.done.notify_one();
        }
        slot.transfer.set(Some(transfer));
        Ok(None)
    }

    /// Solicits the slot's host data with one R2T and waits for all of it.
    pub(super) async fn fetch_h2c(&self, idx: u16, cmd: &mut IoCmd) -> bool {
        let Some(io) = self.io.get() else {
            return false;
        };
        let slot = &io.h2c[usize::from(idx)];
        let Some(expected) = slot.payload.borrow().as_ref().map(|p| p.len() as u32) else {
            return false;
        };
        let Some((len, _)) = host_data(&cmd.plan) else {
            return false;
        };
        let transfer = H2cTransfer::new(cmd.cid, idx + 1, len.min(expected));
        slot.transfer.set(Some(transfer));
        slot.aborted.set(self.closing.get());
        slot.digest_failed.set(false);
        if self.send_r2t(&transfer).is_err() {
            return false;
        }
        let mut timed_out = false;
        loop {
            let t = slot.transfer.get();
            if t.is_none_or(|t| t.complete()) || slot.aborted.get() {
                break;
            }
            if tokio::time::timeout(HOST_DATA_TIMEOUT, slot.done.notified())
                .await
                .is_err()
            {
                // The queue ends: the reader sees `fatal` and exits.
                self.fatal.replace(format!(
                    "host sent no data for an R2T within {HOST_DATA_TIMEOUT:?}"
                ));
                timed_out = true;
                break;
            }
        }
        slot.transfer.set(None);
        slot.grant.borrow_mut().take();
        let payload = slot.payload.borrow_mut().take();
        if slot.digest_failed.get() {
            cmd.outcome = Some(Completion::status(Status::TRANSIENT_TRANSPORT));
            return true;
        }
        if timed_out || slot.aborted.get() {
            return false;
        }
        cmd.data = payload;
        true
    }
}
