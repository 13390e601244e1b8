//! INQUIRY standard data (SPC-4 §6.6.2) and the answers for a LUN that does
//! not exist (SPC-4 §6.6.2 peripheral qualifier 011b, SPC-4 §6.33).

use super::cdb::{truncate, Cdb, INQUIRY, REPORT_LUNS, REQUEST_SENSE};
use super::sense::{self, Sense};
use super::{LunInfo, Plan};

/// Version descriptors claimed (SPC-4 §6.6.2 table 145): SAM-5, iSCSI,
/// SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x04C0];

/// Validates the INQUIRY CDB; returns (evpd, page, allocation length).
pub(crate) fn parse(cdb: Cdb<'_>) -> Result<(bool, u8, u16), Sense> {
    let evpd = cdb.bit(1, 0);
    if cdb.byte(1) & 0xFE != 0 {
        // CMDDT (obsolete) or reserved bits.
        return Err(Sense::invalid_cdb_field(1, Some(1)));
    }
    let page = cdb.byte(2);
    if !evpd && page != 0 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    Ok((evpd, page, cdb.u16(3)))
}

/// Standard INQUIRY data, 66 bytes before truncation.
pub(crate) fn standard(info: &LunInfo, qualifier_type: u8) -> Vec<u8> {
    let mut d = vec![0u8; 66];
    if let Some(h) = d.get_mut(..8) {
        // Peripheral qualifier/type; RMB=0; version SPC-4; NormACA=0,
        // HiSup=1, response data format 2; additional length; SCCS..PROTECT
        // all 0; CmdQue=1.
        h.copy_from_slice(&[qualifier_type, 0x00, 0x06, 0x12, 61, 0x00, 0x00, 0x02]);
    }
    if !info.target_port_groups.is_empty() {
        // TPGS = 01b: implicit asymmetric access; 11b: and explicit (SET
        // TARGET PORT GROUPS).
        let tpgs = if info.explicit_alua.is_some() {
            0x30
        } else {
            0x10
        };
        crate::wire::put(&mut d, 5, &[tpgs]);
    }
    crate::wire::put(&mut d, 8, &info.vendor);
    crate::wire::put(&mut d, 16, &info.product);
    crate::wire::put(&mut d, 32, &info.revision);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        crate::wire::put_be16(&mut d, 58 + 2 * i, *v);
    }
    // Make sure identity fields are printable (SPC-4 §4.4.1).
    for b in d.iter_mut().take(36).skip(8) {
        if !(0x20..=0x7E).contains(b) {
            *b = b' ';
        }
    }
    d
}

/// INQUIRY for a LUN that does not exist: standard data with peripheral
/// qualifier 011b / type 1Fh; VPD pages → INVALID FIELD IN CDB.
pub fn inquiry_for_missing_lun(cdb: &[u8]) -> Plan {
    let c = Cdb(cdb);
    match parse(c) {
        Err(s) => Plan::Check(s),
        Ok((true, _, _)) => Plan::Check(Sense::invalid_cdb_field(1, Some(0))),
        Ok((false, _, alloc)) => {
            let mut info = super::LunInfo::new(0, 0, 512);
            info.product = *b"missing LUN     ";
            Plan::DataIn(truncate(standard(&info, 0x7F), u32::from(alloc)))
        }
    }
}

/// Any command addressed to a LUN that does not exist (SPC-4 §4.6.4, SAM-5
/// §5.11): INQUIRY and REPORT LUNS answered, REQUEST SENSE reports LOGICAL
/// UNIT NOT SUPPORTED as data, everything else CHECK CONDITION LOGICAL UNIT
/// NOT SUPPORTED. `luns` are the LUNs that do exist.
pub fn plan_missing_lun(cdb: &[u8], luns: &[u16]) -> Plan {
    match Cdb(cdb).opcode() {
        INQUIRY => inquiry_for_missing_lun(cdb),
        REPORT_LUNS => super::capacity::report_luns(luns, cdb),
        REQUEST_SENSE => {
            let alloc = u32::from(Cdb(cdb).byte(4));
            let data = sense::LOGICAL_UNIT_NOT_SUPPORTED.encode(Cdb(cdb).bit(1, 0));
            Plan::DataIn(truncate(data, alloc))
        }
        _ => Plan::Check(sense::LOGICAL_UNIT_NOT_SUPPORTED),
    }
}
