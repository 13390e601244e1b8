//! EXTENDED COPY (LID1, SPC-4 §6.4) and RECEIVE COPY RESULTS (SPC-4
//! §6.18): block → block segments between logical units of this target,
//! identified by their NAA designators (identification descriptor target
//! descriptors, type E4h).

use super::cdb::be64;
use super::sense::{self, Sense};
use crate::wire::{be16, be32, put, put_be16, put_be32, u8_at};

/// MAXIMUM TARGET DESCRIPTOR COUNT.
pub const MAX_TARGET_DESCRIPTORS: u16 = 2;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 8;
/// MAXIMUM DESCRIPTOR LIST LENGTH.
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 1024;
/// MAXIMUM SEGMENT LENGTH (bytes).
pub const MAX_SEGMENT_BYTES: u32 = 64 << 20;

/// A logical unit a copy may read or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTarget {
    /// Its NAA designator (VPD 0x83).
    pub naa: [u8; 16],
    /// LUN number.
    pub lun: u16,
    /// Capacity in blocks.
    pub blocks: u64,
    /// Block size.
    pub block_size: u32,
}

/// One block → block copy to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySegment {
    /// Source LUN.
    pub src_lun: u16,
    /// First source block.
    pub src_lba: u64,
    /// Destination LUN.
    pub dst_lun: u16,
    /// First destination block.
    pub dst_lba: u64,
    /// Number of blocks (same block size on both sides).
    pub blocks: u32,
}

/// A parsed parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyList {
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// Segments, in order.
    pub segments: Vec<CopySegment>,
}

fn field(o: usize) -> u16 {
    u16::try_from(o).unwrap_or(u16::MAX)
}

/// Parses an EXTENDED COPY (LID1) parameter list against the copy
/// `targets` this logical unit can reach.
pub fn parse(data: &[u8], targets: &[CopyTarget]) -> Result<CopyList, Sense> {
    if data.len() < 16 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let list_id = u8_at(data, 0);
    let tdl = usize::from(be16(data, 2));
    let sdl = usize::try_from(be32(data, 8)).unwrap_or(usize::MAX);
    let inline = usize::try_from(be32(data, 12)).unwrap_or(usize::MAX);
    let total = tdl.saturating_add(sdl);
    if total > usize::try_from(MAX_DESCRIPTOR_LIST_LENGTH).unwrap_or(0) {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if 16usize.saturating_add(total).saturating_add(inline) > data.len() {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if inline != 0 {
        return Err(Sense::invalid_param_field(12, None));
    }
    if tdl % 32 != 0 {
        return Err(Sense::invalid_param_field(2, None));
    }
    if tdl / 32 > usize::from(MAX_TARGET_DESCRIPTORS) {
        return Err(sense::TOO_MANY_TARGET_DESCRIPTORS);
    }
    // Target descriptors: resolve each to a LUN (None: not reachable).
    let mut resolved: Vec<Option<&CopyTarget>> = Vec::new();
    for i in 0..tdl / 32 {
        let off = 16 + 32 * i;
        let d = data.get(off..off + 32).unwrap_or_default();
        if u8_at(d, 0) != 0xE4 {
            return Err(sense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE.with_field(
                false,
                field(off),
                None,
            ));
        }
        if u8_at(d, 1) & 0x1F != 0 {
            // Peripheral device type other than direct access.
            return Err(Sense::invalid_param_field(field(off + 1), None));
        }
        let desig_type = u8_at(d, 5) & 0x0F;
        let len = usize::from(u8_at(d, 7));
        let id = d.get(8..8 + len.min(20)).unwrap_or_default();
        let t = if desig_type == 3 {
            targets.iter().find(|t| t.naa.as_slice() == id)
        } else {
            None
        };
        resolved.push(t);
    }
    // Segment descriptors.
    let mut segments = Vec::new();
    let mut off = 16 + tdl;
    let end = 16 + tdl + sdl;
    while off < end {
        let kind = u8_at(data, off);
        let dlen = usize::from(be16(data, off + 2)) + 4;
        if kind != 0x02 {
            return Err(sense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE.with_field(
                false,
                field(off),
                None,
            ));
        }
        if dlen != 28 || off + dlen > end {
            return Err(Sense::invalid_param_field(field(off + 2), None));
        }
        if segments.len() >= usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(sense::TOO_MANY_SEGMENT_DESCRIPTORS);
        }
        let src = usize::from(be16(data, off + 4));
        let dst = usize::from(be16(data, off + 6));
        let blocks = u32::from(be16(data, off + 10));
        let src_lba = be64(data, off + 12);
        let dst_lba = be64(data, off + 20);
        let (Some(Some(s)), Some(Some(d))) = (resolved.get(src), resolved.get(dst)) else {
            return Err(sense::COPY_TARGET_NOT_REACHABLE);
        };
        let in_range = |t: &CopyTarget, lba: u64| {
            lba.checked_add(u64::from(blocks))
                .is_some_and(|e| e <= t.blocks)
        };
        if s.block_size != d.block_size || !in_range(s, src_lba) || !in_range(d, dst_lba) {
            return Err(sense::COPY_ABORTED);
        }
        if blocks > 0 {
            segments.push(CopySegment {
                src_lun: s.lun,
                src_lba,
                dst_lun: d.lun,
                dst_lba,
                blocks,
            });
        }
        off += dlen;
    }
    Ok(CopyList { list_id, segments })
}

/// RECEIVE COPY RESULTS, OPERATING PARAMETERS (SPC-4 §6.18.4).
pub fn operating_parameters(block_size: u32) -> Vec<u8> {
    let mut d = vec![0u8; 46];
    put_be32(&mut d, 0, 42);
    put_be16(&mut d, 8, MAX_TARGET_DESCRIPTORS);
    put_be16(&mut d, 10, MAX_SEGMENT_DESCRIPTORS);
    put_be32(&mut d, 12, MAX_DESCRIPTOR_LIST_LENGTH);
    put_be32(&mut d, 16, MAX_SEGMENT_BYTES);
    put_be16(&mut d, 34, 1); // total concurrent copies
    put(&mut d, 36, &[1]); // maximum concurrent copies
    let gran = u8::try_from(block_size.max(1).trailing_zeros()).unwrap_or(0);
    put(&mut d, 37, &[gran]);
    put(&mut d, 43, &[2, 0x02, 0xE4]);
    d
}

/// RECEIVE COPY RESULTS, COPY STATUS (SPC-4 §6.18.3) for a completed list.
pub fn copy_status(segments_processed: u16, ok: bool) -> Vec<u8> {
    let mut d = vec![0u8; 12];
    put_be32(&mut d, 0, 8);
    // COPY MANAGER STATUS: 0 completed without errors, 1 with errors.
    put(&mut d, 4, &[if ok { 0 } else { 1 }]);
    put_be16(&mut d, 5, segments_processed);
    d
}
