//! The controller's transport sequencing rules, sans I/O: the SQ head
//! pointer it reports (SQHD), one solicited host-to-controller transfer (an
//! R2T and the H2CData PDUs that answer it), and the framing of a C2HData
//! PDU (PDO alignment, PLEN, digest flags). The daemon asks these what to
//! send and whether what arrived is acceptable; it only moves the bytes.

use super::{C2HData, H2CData, PduError, PduFlags, R2t};

/// SQ head pointer (NVMe Base §4.1): advanced once per command fetched,
/// wrapping at the queue size; 0xFFFF in every completion when SQ flow
/// control is disabled (Fabrics Connect CATTR bit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqHead {
    entries: u32,
    head: u32,
    flow_disabled: bool,
}

impl SqHead {
    /// A queue of `entries` (at least 1) entries, head at 0.
    pub fn new(entries: u32, flow_disabled: bool) -> Self {
        Self {
            entries: entries.max(1),
            head: 0,
            flow_disabled,
        }
    }

    /// One more command was fetched.
    pub fn advance(&mut self) {
        self.head = (self.head + 1) % self.entries;
    }

    /// The SQHD field of the next completion.
    pub fn sqhd(&self) -> u16 {
        if self.flow_disabled {
            0xFFFF
        } else {
            self.head as u16
        }
    }

    /// SQ flow control is disabled.
    pub fn flow_disabled(&self) -> bool {
        self.flow_disabled
    }
}

/// One solicited transfer: the R2T asking for all `expected` bytes of
/// command `cccid` under transfer tag `ttag`, and the H2CData PDUs that must
/// answer it in order (TCP Transport 1.0 §3.6.2.8, §3.6.2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2cTransfer {
    cccid: u16,
    ttag: u16,
    expected: u32,
    received: u32,
}

impl H2cTransfer {
    /// A transfer of `expected` bytes for command `cccid`.
    pub fn new(cccid: u16, ttag: u16, expected: u32) -> Self {
        Self {
            cccid,
            ttag,
            expected,
            received: 0,
        }
    }

    /// The R2T soliciting the whole transfer; `hdgst` adds the header
    /// digest's flag and length (the digest itself is the sender's).
    pub fn r2t(&self, hdgst: bool) -> R2t {
        let mut r2t = R2t {
            cccid: self.cccid,
            ttag: self.ttag,
            r2to: 0,
            r2tl: self.expected,
            ..R2t::default()
        };
        if hdgst {
            r2t.flags = r2t.flags.with(PduFlags::HDGSTF, true);
            r2t.plen += 4;
        }
        r2t
    }

    /// Checks an H2CData header against the transfer; `carried` is the
    /// data the PDU really carries and `max_datal` the MAXH2CDATA this
    /// controller announced. `Ok(datao)`: where its data goes. Every error
    /// is fatal to the connection (a C2HTermReq with its FES).
    pub fn accept(&self, d: &H2CData, carried: usize, max_datal: u32) -> Result<u32, PduError> {
        if d.cccid != self.cccid {
            return Err(PduError::InvalidField(8));
        }
        if d.ttag != self.ttag {
            return Err(PduError::InvalidField(10));
        }
        if d.datal as usize != carried || d.datal > max_datal {
            return Err(PduError::DataLimitExceeded {
                datal: d.datal,
                max: max_datal,
            });
        }
        let end = d.datao.checked_add(d.datal);
        if d.datao != self.received || end.is_none_or(|e| e > self.expected) {
            // Outside the R2T's range, or out of order.
            return Err(PduError::DataOutOfRange);
        }
        Ok(d.datao)
    }

    /// Records that an accepted PDU's data is in; true when the transfer
    /// is complete.
    pub fn received(&mut self, d: &H2CData) -> bool {
        self.received = self.received.saturating_add(d.datal).min(self.expected);
        self.complete()
    }

    /// All expected bytes are in.
    pub fn complete(&self) -> bool {
        self.received >= self.expected
    }

    /// The command this transfer belongs to.
    pub fn cccid(&self) -> u16 {
        self.cccid
    }

    /// Bytes solicited.
    pub fn expected(&self) -> u32 {
        self.expected
    }
}

/// How this connection frames C2HData (negotiated in ICReq/ICResp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C2hFraming {
    /// Header digest on.
    pub hdgst: bool,
    /// Data digest on.
    pub ddgst: bool,
    /// The host's PDU data alignment in bytes ((HPDA + 1) × 4).
    pub align: usize,
}

/// A framed C2HData header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C2hHeader {
    /// The 24 header bytes.
    pub bytes: [u8; 24],
    /// Padding between the header (and its digest) and the data, up to PDO.
    pub pad: usize,
}

impl C2hFraming {
    /// The header of one C2HData PDU carrying all `len` bytes of command
    /// `cid`'s data; `success` sets SUCCESS (the completion is then not
    /// sent, allowed only with SQ flow control disabled, §3.6.2.9).
    pub fn header(&self, cid: u16, len: usize, success: bool) -> C2hHeader {
        let header_end: usize = 24 + if self.hdgst { 4 } else { 0 };
        let align = self.align.max(1);
        let pdo = header_end.div_ceil(align) * align;
        let plen = pdo + len + if self.ddgst { 4 } else { 0 };
        let mut flags = PduFlags::LAST_PDU.with(PduFlags::SUCCESS, success);
        if self.hdgst {
            flags = flags.with(PduFlags::HDGSTF, true);
        }
        if self.ddgst {
            flags = flags.with(PduFlags::DDGSTF, true);
        }
        let c2h = C2HData {
            flags,
            pdo: pdo as u8,
            plen: plen as u32,
            cccid: cid,
            datao: 0,
            datal: len as u32,
        };
        C2hHeader {
            bytes: c2h.encode(),
            pad: pdo - header_end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h2c(cccid: u16, ttag: u16, datao: u32, datal: u32) -> H2CData {
        H2CData {
            cccid,
            ttag,
            datao,
            datal,
            ..H2CData::default()
        }
    }

    proptest! {
        /// Any in-order split of the transfer is accepted and completes it
        /// exactly at the last piece.
        #[test]
        fn in_order_pieces_complete_the_transfer(
            cuts in proptest::collection::vec(1u32..4096, 1..20),
        ) {
            let total: u32 = cuts.iter().sum();
            let mut t = H2cTransfer::new(5, 9, total);
            let mut at = 0;
            for (i, n) in cuts.iter().enumerate() {
                let d = h2c(5, 9, at, *n);
                prop_assert_eq!(t.accept(&d, *n as usize, 1 << 20), Ok(at));
                let done = t.received(&d);
                prop_assert_eq!(done, i + 1 == cuts.len());
                at += n;
            }
        }

        /// A piece that skips ahead, goes back, or runs past the end is
        /// refused without changing the transfer.
        #[test]
        fn out_of_order_or_range_is_refused(
            total in 2u32..100_000,
            first in 1u32..100_000,
            skew in 1u32..1000,
        ) {
            let first = first.min(total - 1);
            let mut t = H2cTransfer::new(1, 1, total);
            let d = h2c(1, 1, 0, first);
            prop_assert!(t.accept(&d, first as usize, u32::MAX).is_ok());
            t.received(&d);
            let before = t;
            let ahead = h2c(1, 1, first + skew, 1);
            prop_assert_eq!(t.accept(&ahead, 1, u32::MAX), Err(PduError::DataOutOfRange));
            let back = h2c(1, 1, first.saturating_sub(skew.min(first)), skew.min(first));
            if skew.min(first) > 0 {
                prop_assert_eq!(t.accept(&back, back.datal as usize, u32::MAX), Err(PduError::DataOutOfRange));
            }
            let past = h2c(1, 1, first, total - first + skew);
            prop_assert_eq!(t.accept(&past, past.datal as usize, u32::MAX), Err(PduError::DataOutOfRange));
            prop_assert_eq!(t, before);
        }

        /// SQHD stays below the queue size and returns to 0 after
        /// `entries` commands.
        #[test]
        fn sqhd_wraps_at_the_queue_size(entries in 1u32..1024, steps in 0u32..5000) {
            let mut q = SqHead::new(entries, false);
            for _ in 0..steps {
                q.advance();
                prop_assert!(u32::from(q.sqhd()) < entries);
            }
            prop_assert_eq!(u32::from(q.sqhd()), steps % entries);
        }

        /// PDO is aligned, at or after the header, and PLEN counts exactly
        /// header, padding, data and digest.
        #[test]
        fn c2h_framing_is_aligned_and_consistent(
            hdgst: bool, ddgst: bool, hpda in 0usize..32, len in 0usize..1 << 20, cid: u16,
        ) {
            let f = C2hFraming { hdgst, ddgst, align: (hpda + 1) * 4 };
            let h = f.header(cid, len, false);
            let c = C2HData::parse(&h.bytes).expect("parses");
            let header_end = 24 + if hdgst { 4 } else { 0 };
            prop_assert_eq!(usize::from(c.pdo) % f.align, 0);
            prop_assert_eq!(usize::from(c.pdo), header_end + h.pad);
            prop_assert_eq!(c.plen as usize, usize::from(c.pdo) + len + if ddgst { 4 } else { 0 });
            prop_assert_eq!(c.datal as usize, len);
            prop_assert_eq!(c.cccid, cid);
            prop_assert!(c.flags.contains(PduFlags::LAST_PDU));
        }
    }

    #[test]
    fn wrong_command_or_tag_and_oversized_pieces_are_refused() {
        let t = H2cTransfer::new(3, 4, 8192);
        assert_eq!(
            t.accept(&h2c(2, 4, 0, 512), 512, 8192),
            Err(PduError::InvalidField(8))
        );
        assert_eq!(
            t.accept(&h2c(3, 5, 0, 512), 512, 8192),
            Err(PduError::InvalidField(10))
        );
        // DATAL larger than what the PDU carries, or than MAXH2CDATA.
        assert!(matches!(
            t.accept(&h2c(3, 4, 0, 512), 256, 8192),
            Err(PduError::DataLimitExceeded { .. })
        ));
        assert!(matches!(
            t.accept(&h2c(3, 4, 0, 8192), 8192, 4096),
            Err(PduError::DataLimitExceeded { .. })
        ));
    }

    #[test]
    fn no_flow_control_reports_ffff() {
        let mut q = SqHead::new(32, true);
        q.advance();
        assert_eq!(q.sqhd(), 0xFFFF);
    }

    #[test]
    fn the_r2t_asks_for_everything_once() {
        let t = H2cTransfer::new(7, 2, 65536);
        let r = t.r2t(true);
        assert_eq!((r.cccid, r.ttag, r.r2to, r.r2tl), (7, 2, 0, 65536));
        assert!(r.flags.contains(PduFlags::HDGSTF));
        assert_eq!(r.plen, t.r2t(false).plen + 4);
    }
}
