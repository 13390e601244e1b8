//! The target's sequencing rules in full feature phase, sans I/O (RFC 7143
//! with ErrorRecoveryLevel 0, DataPDUInOrder and DataSequenceInOrder Yes):
//! the command window (CmdSN, ExpCmdSN, MaxCmdSN, StatSN), one write's
//! Data-Out sequence (offsets, TTT, DataSN, R2T bursts) and the split of
//! read data into Data-In PDUs. The daemon asks these what to answer; it
//! only moves the bytes.

use super::{DataOut, RejectReason, RESERVED_TAG};

/// Serial number arithmetic (RFC 1982) on 32-bit sequence numbers.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

/// The session's command window and status numbering (§3.2.2.1, §4.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdWindow {
    exp_cmd_sn: u32,
    depth: u32,
    stat_sn: u32,
}

impl CmdWindow {
    /// A window of `depth` (at least 1) commands starting at `exp_cmd_sn`;
    /// the next status carries `stat_sn`.
    pub fn new(exp_cmd_sn: u32, stat_sn: u32, depth: u32) -> Self {
        Self {
            exp_cmd_sn,
            depth: depth.max(1),
            stat_sn,
        }
    }

    /// Checks a command's CmdSN and advances ExpCmdSN. `false`: outside
    /// the window — the command is silently ignored. Immediate commands
    /// carry the current ExpCmdSN and do not advance it.
    pub fn accept(&mut self, immediate: bool, cmd_sn: u32) -> bool {
        if immediate {
            return true;
        }
        if sn_lt(cmd_sn, self.exp_cmd_sn) || sn_lt(self.max_cmd_sn(), cmd_sn) {
            return false;
        }
        self.exp_cmd_sn = cmd_sn.wrapping_add(1);
        true
    }

    /// ExpCmdSN to report.
    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    /// MaxCmdSN to report.
    pub fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(self.depth - 1)
    }

    /// Takes the StatSN of a status-bearing PDU.
    pub fn take_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = s.wrapping_add(1);
        s
    }

    /// The current StatSN without advancing it (R2T, NOP-In pings).
    pub fn peek_stat_sn(&self) -> u32 {
        self.stat_sn
    }
}

/// Why a Data-Out is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataOutError {
    /// Its data runs past the expected data transfer length.
    #[error("Data-Out beyond the expected length")]
    BeyondExpected,
    /// Its offset is not where the data so far ends (DataPDUInOrder).
    #[error("Data-Out outside the expected range")]
    OutOfOrder,
    /// Its TTT is not the outstanding R2T's (§11.7.4).
    #[error("wrong Target Transfer Tag")]
    WrongTtt,
    /// Its DataSN is not the next of the sequence (§11.7.5).
    #[error("DataSN out of sequence")]
    DataSnGap,
}

impl DataOutError {
    /// The Reject reason the PDU is answered with.
    pub fn reject_reason(self) -> RejectReason {
        match self {
            DataOutError::WrongTtt => RejectReason::InvalidPduField,
            _ => RejectReason::ProtocolError,
        }
    }

    /// The command's data phase is broken: it ends with CHECK CONDITION
    /// instead of executing (the other errors only drop the PDU).
    pub fn breaks_command(self) -> bool {
        matches!(self, DataOutError::WrongTtt | DataOutError::DataSnGap)
    }
}

/// One write command's Data-Out sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOutSeq {
    expected: u32,
    received: u32,
    ttt: u32,
    next_data_sn: u32,
}

impl DataOutSeq {
    /// A write of `expected` bytes with `received` already in (immediate
    /// data); unsolicited Data-Out (TTT 0xffffffff) may follow.
    pub fn new(received: u32, expected: u32) -> Self {
        Self {
            expected,
            received: received.min(expected),
            ttt: RESERVED_TAG,
            next_data_sn: 0,
        }
    }

    /// Checks a Data-Out header; `Ok(end)`: its data ends at `end`.
    pub fn check(&self, d: &DataOut) -> Result<u32, DataOutError> {
        let end = d.buffer_offset.checked_add(d.data_segment_len);
        let end = end
            .filter(|&e| e <= self.expected)
            .ok_or(DataOutError::BeyondExpected)?;
        if d.buffer_offset != self.received {
            return Err(DataOutError::OutOfOrder);
        }
        if d.ttt != self.ttt {
            return Err(DataOutError::WrongTtt);
        }
        if d.data_sn != self.next_data_sn {
            return Err(DataOutError::DataSnGap);
        }
        Ok(end)
    }

    /// Records a checked Data-Out whose data is in; true when its burst is
    /// over (F bit, or all data in).
    pub fn accept(&mut self, d: &DataOut, end: u32) -> bool {
        self.next_data_sn = d.data_sn.wrapping_add(1);
        self.received = end;
        d.final_bit || end >= self.expected
    }

    /// Starts the R2T sequence for the next burst of at most `max_burst`
    /// bytes under `ttt`: its `(offset, length)`, None when all data is in.
    pub fn solicit(&mut self, ttt: u32, max_burst: u32) -> Option<(u32, u32)> {
        if self.received >= self.expected {
            return None;
        }
        self.ttt = ttt;
        self.next_data_sn = 0;
        let len = (self.expected - self.received).min(max_burst.max(1));
        Some((self.received, len))
    }

    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The expected data transfer length.
    pub fn expected(&self) -> u32 {
        self.expected
    }
}

/// One Data-In PDU of a read's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInSegment {
    /// Buffer offset.
    pub offset: u32,
    /// Data segment length.
    pub len: u32,
    /// DataSN.
    pub data_sn: u32,
    /// The last PDU (F bit; the status may ride on it).
    pub last: bool,
}

/// `len` bytes of read data as Data-In PDUs of at most `mrdsl` bytes each
/// (the initiator's MaxRecvDataSegmentLength), DataSN from 0.
pub fn data_in_segments(len: u32, mrdsl: u32) -> impl Iterator<Item = DataInSegment> {
    let mrdsl = mrdsl.max(512);
    let count = len.div_ceil(mrdsl).max(1);
    (0..count).map(move |i| {
        let offset = i * mrdsl;
        DataInSegment {
            offset,
            len: (len - offset).min(mrdsl),
            data_sn: i,
            last: i + 1 == count,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dout(ttt: u32, data_sn: u32, offset: u32, len: u32, final_bit: bool) -> DataOut {
        DataOut {
            final_bit,
            ttt,
            data_sn,
            buffer_offset: offset,
            data_segment_len: len,
            ..DataOut::default()
        }
    }

    proptest! {
        /// A window never accepts a CmdSN twice nor one beyond MaxCmdSN,
        /// and accepts every in-window one in order.
        #[test]
        fn window_accepts_in_order_once(start: u32, depth in 1u32..256, n in 1u32..600) {
            let mut w = CmdWindow::new(start, 0, depth);
            for i in 0..n {
                let sn = start.wrapping_add(i);
                prop_assert!(w.accept(false, sn));
                prop_assert!(!w.accept(false, sn), "a CmdSN accepted twice");
                prop_assert!(!w.accept(false, w.max_cmd_sn().wrapping_add(1)));
                prop_assert_eq!(w.max_cmd_sn().wrapping_sub(w.exp_cmd_sn()), depth - 1);
            }
            prop_assert!(w.accept(true, 12345), "immediate commands pass");
            prop_assert_eq!(w.exp_cmd_sn(), start.wrapping_add(n));
        }

        /// Immediate data, an unsolicited burst and R2T bursts in order
        /// bring in exactly the expected bytes; any wrong DataSN, TTT or
        /// offset is refused without changing the sequence.
        #[test]
        fn data_out_bursts_in_order_complete_the_write(
            expected in 1u32..1_000_000,
            immediate in 0u32..70_000,
            unsolicited in 0u32..70_000,
            max_burst in 512u32..300_000,
            pdu in 512u32..70_000,
            skew in 1u32..1000,
        ) {
            let immediate = immediate.min(expected);
            let mut s = DataOutSeq::new(immediate, expected);
            let unsolicited_end = (immediate + unsolicited).min(expected);
            let mut sn = 0;
            while s.received() < unsolicited_end {
                let off = s.received();
                let n = (unsolicited_end - off).min(pdu);
                let d = dout(RESERVED_TAG, sn, off, n, off + n == unsolicited_end);
                let end = s.check(&d).expect("unsolicited in order");
                s.accept(&d, end);
                sn += 1;
            }
            let mut ttt = 100;
            while let Some((off, len)) = s.solicit(ttt, max_burst) {
                prop_assert_eq!(off, s.received());
                let before = s;
                prop_assert_eq!(
                    s.check(&dout(ttt.wrapping_add(skew), 0, off, 1, false)),
                    Err(DataOutError::WrongTtt)
                );
                prop_assert_eq!(s.check(&dout(ttt, skew, off, 1, false)), Err(DataOutError::DataSnGap));
                prop_assert_eq!(s.check(&dout(ttt, 0, off + skew, 1, false)).err().map(|e| e == DataOutError::OutOfOrder || e == DataOutError::BeyondExpected), Some(true));
                prop_assert_eq!(s, before);
                let mut sn = 0;
                let mut at = off;
                while at < off + len {
                    let n = (off + len - at).min(pdu);
                    let d = dout(ttt, sn, at, n, at + n == off + len);
                    let end = s.check(&d).expect("solicited in order");
                    let burst_over = s.accept(&d, end);
                    prop_assert_eq!(burst_over, end == off + len);
                    at = end;
                    sn += 1;
                }
                ttt += 1;
            }
            prop_assert_eq!(s.received(), expected);
            let past = dout(ttt, 0, expected, 1, true);
            prop_assert_eq!(s.check(&past), Err(DataOutError::BeyondExpected));
        }

        /// Data-In PDUs tile the data exactly, none over MRDSL, DataSN
        /// counting from 0, only the last one final.
        #[test]
        fn data_in_segments_tile_the_data(len in 0u32..4_000_000, mrdsl in 512u32..300_000) {
            let segs: Vec<_> = data_in_segments(len, mrdsl).collect();
            let mut at = 0;
            for (i, s) in segs.iter().enumerate() {
                prop_assert_eq!(s.offset, at);
                prop_assert_eq!(s.data_sn, i as u32);
                prop_assert!(s.len <= mrdsl);
                prop_assert_eq!(s.last, i + 1 == segs.len());
                at += s.len;
            }
            prop_assert_eq!(at, len);
        }
    }

    #[test]
    fn errors_map_to_reject_reasons() {
        assert_eq!(
            DataOutError::WrongTtt.reject_reason(),
            RejectReason::InvalidPduField
        );
        assert_eq!(
            DataOutError::DataSnGap.reject_reason(),
            RejectReason::ProtocolError
        );
        assert!(DataOutError::DataSnGap.breaks_command());
        assert!(!DataOutError::OutOfOrder.breaks_command());
    }
}
