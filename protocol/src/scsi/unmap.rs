//! UNMAP (SBC-3 §5.28).

use super::cdb::be64;
use super::rw::check_range;
use super::sense::{self, Sense};
use super::LunInfo;
use crate::wire::{be16, be32};

/// Parses an UNMAP parameter list (SBC-3 §5.28.2) into the non-empty
/// `(lba, blocks)` ranges to deallocate, each range-checked.
pub(crate) fn parse(info: &LunInfo, data: &[u8]) -> Result<Vec<(u64, u32)>, Sense> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.len() < 8 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let data_len = usize::from(be16(data, 0));
    let bd_len = usize::from(be16(data, 2));
    let avail = data.len().saturating_sub(8);
    if data_len.saturating_add(2) > data.len() || bd_len > avail {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if bd_len % 16 != 0 {
        return Err(Sense::invalid_param_field(2, None));
    }
    let count = bd_len / 16;
    if count > usize::try_from(info.max_unmap_descriptors.max(1)).unwrap_or(usize::MAX) {
        return Err(Sense::invalid_param_field(2, None));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let off = 8 + 16 * i;
        let lba = be64(data, off);
        let n = be32(data, off + 8);
        if n > info.max_unmap_blocks.max(1) {
            return Err(Sense::invalid_param_field(
                u16::try_from(off + 8).unwrap_or(0),
                None,
            ));
        }
        // A descriptor of zero blocks deallocates nothing and is not
        // range-checked (SBC-3 §5.28.2: it "shall not be considered an
        // error"), even at or past the end of the medium.
        if n > 0 {
            check_range(info, lba, u64::from(n))?;
            out.push((lba, n));
        }
    }
    Ok(out)
}
