//! Medium access commands (SBC-3 §5): READ, WRITE, VERIFY, WRITE AND
//! VERIFY, WRITE SAME, COMPARE AND WRITE, SYNCHRONIZE CACHE, PRE-FETCH.

use super::cdb::*;
use super::sense::{self, Sense};
use super::{LunInfo, Plan, MAX_COMPARE_AND_WRITE_BLOCKS};

/// Range check (SBC-3 §4.5): the whole range lies on the medium, and a
/// zero-length range starts at or before the last block. Overflow of
/// `lba + blocks` is out of range.
pub(crate) fn check_range(info: &LunInfo, lba: u64, blocks: u64) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= info.blocks && (blocks > 0 || lba < info.blocks) => Ok(()),
        _ => Err(sense::LBA_OUT_OF_RANGE),
    }
}

/// LBA and transfer length of a 10/12/16-byte medium-access CDB, or of the
/// 6-byte form (21-bit LBA; length 0 means 256 for READ/WRITE(6)).
pub(crate) fn lba_len(cdb: Cdb<'_>) -> (u64, u64) {
    match cdb.opcode() >> 5 {
        0 => {
            let lba = u64::from(cdb.u32(0) & 0x001F_FFFF);
            let n = match cdb.byte(4) {
                0 => 256,
                n => u64::from(n),
            };
            (lba, n)
        }
        1 | 2 => (u64::from(cdb.u32(2)), u64::from(cdb.u16(7))),
        5 => (u64::from(cdb.u32(2)), u64::from(cdb.u32(6))),
        _ => (cdb.u64(2), u64::from(cdb.u32(10))),
    }
}

/// Whether the medium refuses writes (read-only volume or SWP set).
fn write_protected(info: &LunInfo, swp: bool) -> Result<(), Sense> {
    if info.read_only || swp {
        Err(sense::WRITE_PROTECTED)
    } else {
        Ok(())
    }
}

/// RDPROTECT / WRPROTECT / VRPROTECT must be 0: no protection information.
fn no_protect(cdb: Cdb<'_>) -> Result<(), Sense> {
    if cdb.byte(1) & 0xE0 != 0 {
        Err(Sense::invalid_cdb_field(1, Some(7)))
    } else {
        Ok(())
    }
}

/// TRANSFER LENGTH within the advertised MAXIMUM TRANSFER LENGTH (VPD
/// 0xB0; SBC-3 §6.6.4: larger is INVALID FIELD IN CDB).
fn within_max_transfer(info: &LunInfo, cdb: Cdb<'_>, n: u64) -> Result<(), Sense> {
    if info.max_transfer_blocks != 0 && n > u64::from(info.max_transfer_blocks) {
        let byte = match cdb.opcode() >> 5 {
            0 => 4,
            1 | 2 => 7,
            5 => 6,
            _ => 10,
        };
        return Err(Sense::invalid_cdb_field(byte, None));
    }
    Ok(())
}

fn blocks32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// READ(6/10/12/16) and WRITE(6/10/12/16).
pub(crate) fn read_write(
    info: &LunInfo,
    swp: bool,
    cdb: Cdb<'_>,
    write: bool,
) -> Result<Plan, Sense> {
    let six = cdb.opcode() >> 5 == 0;
    let fua = !six && cdb.bit(1, 3);
    if !six {
        no_protect(cdb)?;
    }
    if write {
        write_protected(info, swp)?;
    }
    let (lba, n) = lba_len(cdb);
    check_range(info, lba, n)?;
    within_max_transfer(info, cdb, n)?;
    if n == 0 {
        return Ok(Plan::Good);
    }
    let blocks = blocks32(n);
    Ok(if write {
        Plan::Write { lba, blocks, fua }
    } else {
        Plan::Read { lba, blocks, fua }
    })
}

/// VERIFY(10/12/16) (SBC-3 §5.33-§5.35).
pub(crate) fn verify(info: &LunInfo, cdb: Cdb<'_>) -> Result<Plan, Sense> {
    no_protect(cdb)?;
    let bytchk = (cdb.byte(1) >> 1) & 0x03;
    if bytchk > 1 {
        return Err(Sense::invalid_cdb_field(1, Some(2)));
    }
    let (lba, n) = lba_len(cdb);
    check_range(info, lba, n)?;
    if bytchk == 1 {
        within_max_transfer(info, cdb, n)?;
    }
    if n == 0 {
        return Ok(Plan::Good);
    }
    Ok(Plan::Verify {
        lba,
        blocks: blocks32(n),
        byte_check: bytchk == 1,
    })
}

/// WRITE AND VERIFY(10/12/16) (SBC-3 §5.38-§5.40).
pub(crate) fn write_and_verify(info: &LunInfo, swp: bool, cdb: Cdb<'_>) -> Result<Plan, Sense> {
    no_protect(cdb)?;
    let bytchk = (cdb.byte(1) >> 1) & 0x03;
    if bytchk > 1 {
        return Err(Sense::invalid_cdb_field(1, Some(2)));
    }
    write_protected(info, swp)?;
    let (lba, n) = lba_len(cdb);
    check_range(info, lba, n)?;
    within_max_transfer(info, cdb, n)?;
    if n == 0 {
        return Ok(Plan::Good);
    }
    Ok(Plan::WriteAndVerify {
        lba,
        blocks: blocks32(n),
    })
}

/// WRITE SAME(10/16) (SBC-3 §5.42, §5.43). WSNZ=1 is advertised, so zero
/// blocks is INVALID FIELD IN CDB once the LBA is known to be valid.
pub(crate) fn write_same(
    info: &LunInfo,
    swp: bool,
    cdb: Cdb<'_>,
    edtl: u32,
) -> Result<Plan, Sense> {
    let sixteen = cdb.opcode() == WRITE_SAME_16;
    no_protect(cdb)?;
    let anchor = cdb.bit(1, 4);
    let unmap = cdb.bit(1, 3);
    let ndob = sixteen && cdb.bit(1, 0);
    // PBDATA / LBDATA (obsolete), reserved bit 0 of WRITE SAME(10).
    let bad = if sixteen { 0x06 } else { 0x07 };
    if cdb.byte(1) & bad != 0 {
        return Err(Sense::invalid_cdb_field(1, Some(1)));
    }
    if anchor && (!unmap || !info.thin_provisioning) {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    let (lba, n) = if sixteen {
        (cdb.u64(2), u64::from(cdb.u32(10)))
    } else {
        (u64::from(cdb.u32(2)), u64::from(cdb.u16(7)))
    };
    write_protected(info, swp)?;
    check_range(info, lba, n)?;
    if n == 0 {
        return Err(Sense::invalid_cdb_field(if sixteen { 10 } else { 7 }, None));
    }
    if info.max_write_same_blocks != 0 && n > info.max_write_same_blocks {
        return Err(Sense::invalid_cdb_field(if sixteen { 10 } else { 7 }, None));
    }
    if !ndob && edtl != 0 && edtl != info.block_size {
        return Err(Sense::invalid_cdb_field(if sixteen { 10 } else { 7 }, None));
    }
    Ok(Plan::WriteSame {
        lba,
        blocks: n,
        unmap: unmap && info.thin_provisioning,
        ndob,
    })
}

/// COMPARE AND WRITE (SBC-3 §5.2): NUMBER OF LOGICAL BLOCKS ≤
/// [`MAX_COMPARE_AND_WRITE_BLOCKS`]; data-out must be twice the blocks.
pub(crate) fn compare_and_write(
    info: &LunInfo,
    swp: bool,
    cdb: Cdb<'_>,
    edtl: u32,
) -> Result<Plan, Sense> {
    no_protect(cdb)?;
    if cdb.byte(1) & 0x01 != 0 {
        return Err(Sense::invalid_cdb_field(1, Some(0)));
    }
    let fua = cdb.bit(1, 3);
    let lba = cdb.u64(2);
    let n = u32::from(cdb.byte(13));
    if n > MAX_COMPARE_AND_WRITE_BLOCKS {
        return Err(Sense::invalid_cdb_field(13, None));
    }
    write_protected(info, swp)?;
    check_range(info, lba, u64::from(n))?;
    // The data-out must be exactly twice the blocks; this also catches a
    // length that wrapped the one-byte field (256 blocks reads as 0).
    let want = u64::from(n) * 2 * u64::from(info.block_size);
    if u64::from(edtl) != want {
        return Err(Sense::invalid_cdb_field(13, None));
    }
    if n == 0 {
        return Ok(Plan::Good);
    }
    Ok(Plan::CompareAndWrite {
        lba,
        blocks: n,
        fua,
    })
}

/// ORWRITE(16) (SBC-3 §5.10): OR the data-out into the medium.
pub(crate) fn or_write(info: &LunInfo, swp: bool, cdb: Cdb<'_>) -> Result<Plan, Sense> {
    no_protect(cdb)?;
    let fua = cdb.bit(1, 3);
    write_protected(info, swp)?;
    let (lba, n) = (cdb.u64(2), u64::from(cdb.u32(10)));
    check_range(info, lba, n)?;
    within_max_transfer(info, cdb, n)?;
    if n == 0 {
        return Ok(Plan::Good);
    }
    Ok(Plan::OrWrite {
        lba,
        blocks: blocks32(n),
        fua,
    })
}

/// SYNCHRONIZE CACHE(10/16) (SBC-3 §5.22, §5.23).
pub(crate) fn synchronize_cache(info: &LunInfo, cdb: Cdb<'_>) -> Result<Plan, Sense> {
    let (lba, n) = lba_len(cdb);
    check_range(info, lba, n)?;
    Ok(Plan::SynchronizeCache {
        lba,
        blocks: blocks32(n),
        immed: cdb.bit(1, 1),
    })
}

/// PRE-FETCH(10/16) (SBC-3 §5.8, §5.9).
pub(crate) fn pre_fetch(info: &LunInfo, cdb: Cdb<'_>) -> Result<Plan, Sense> {
    if cdb.byte(1) & 0xFD != 0 {
        return Err(Sense::invalid_cdb_field(1, None));
    }
    let (lba, n) = lba_len(cdb);
    check_range(info, lba, n)?;
    Ok(Plan::PreFetch {
        lba,
        blocks: blocks32(n),
    })
}
