//! READ CAPACITY (SBC-3 §5.15, §5.16) and REPORT LUNS (SPC-4 §6.33).

use super::cdb::{truncate, Cdb};
use super::sense::Sense;
use super::{LunInfo, Plan};
use crate::wire::put_be32;

/// READ CAPACITY(10): last LBA (0xFFFFFFFF when it does not fit) and
/// block length.
pub(crate) fn read_capacity_10(info: &LunInfo, cdb: Cdb<'_>) -> Plan {
    // PMI (obsolete) without LBA is allowed; LBA without PMI is not.
    if !cdb.bit(8, 0) && cdb.u32(2) != 0 {
        return Plan::Check(Sense::invalid_cdb_field(2, None));
    }
    let last = info.blocks.saturating_sub(1);
    let last = u32::try_from(last).unwrap_or(u32::MAX);
    let mut d = vec![0u8; 8];
    put_be32(&mut d, 0, last);
    put_be32(&mut d, 4, info.block_size);
    Plan::DataIn(d)
}

/// READ CAPACITY(16) parameter data, 32 bytes before truncation.
pub(crate) fn read_capacity_16(info: &LunInfo, cdb: Cdb<'_>) -> Plan {
    let alloc = cdb.u32(10);
    let mut d = vec![0u8; 32];
    crate::wire::put(&mut d, 0, &info.blocks.saturating_sub(1).to_be_bytes());
    put_be32(&mut d, 8, info.block_size);
    // Byte 12: P_TYPE/PROT_EN = 0. Byte 13: P_I_EXPONENT 0, LOGICAL BLOCKS
    // PER PHYSICAL BLOCK EXPONENT. Bytes 14-15: LBPME, LBPRZ, LALBA 0.
    crate::wire::put(&mut d, 13, &[info.physical_block_exponent & 0x0F]);
    if info.thin_provisioning {
        crate::wire::put(&mut d, 14, &[0xC0]);
    }
    Plan::DataIn(truncate(d, alloc))
}

/// SAM-5 §4.7 single-level LUN encoding: peripheral device addressing
/// below 256, flat space addressing above.
pub fn encode_lun(lun: u16) -> [u8; 8] {
    let [hi, lo] = lun.to_be_bytes();
    if lun < 256 {
        [0x00, lo, 0, 0, 0, 0, 0, 0]
    } else {
        [0x40 | (hi & 0x3F), lo, 0, 0, 0, 0, 0, 0]
    }
}

/// REPORT LUNS for the logical units `luns` (answered by any LUN, existing
/// or not). SELECT REPORT 0, 1 (none: no well-known LUs) and 2 are
/// accepted; allocation length below 16 is INVALID FIELD IN CDB.
pub fn report_luns(luns: &[u16], cdb: &[u8]) -> Plan {
    let c = Cdb(cdb);
    let select = c.byte(2);
    let alloc = c.u32(6);
    if alloc < 16 {
        return Plan::Check(Sense::invalid_cdb_field(6, None));
    }
    let list: Vec<u16> = match select {
        0x00 | 0x02 => luns.iter().copied().take(16_000).collect(),
        0x01 => Vec::new(),
        _ => return Plan::Check(Sense::invalid_cdb_field(2, None)),
    };
    let mut d = vec![0u8; 8];
    put_be32(&mut d, 0, u32::try_from(list.len() * 8).unwrap_or(u32::MAX));
    for l in list {
        d.extend_from_slice(&encode_lun(l));
    }
    Plan::DataIn(truncate(d, alloc))
}
