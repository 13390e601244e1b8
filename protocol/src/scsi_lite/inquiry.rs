//! INQUIRY: standard data and VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2
//! (SPC-4 §6.6, §7.8; SBC-3 §6.6).

use super::{
    be16, byte, put, LunInfo, Plan, Sense, MAX_COMPARE_AND_WRITE_BLOCKS, MAX_UNMAP_DESCRIPTORS,
};

const VENDOR: &[u8; 8] = b"ZCTARGET";
const PRODUCT: &[u8; 16] = b"zctarget volume ";
const REVISION: &[u8; 4] = b"0001";

/// INQUIRY for an existing LUN.
pub(super) fn inquiry(info: &LunInfo, cdb: &[u8]) -> Result<Plan, Sense> {
    let evpd = byte(cdb, 1) & 0x01 != 0;
    let page = byte(cdb, 2);
    let alloc = usize::from(be16(cdb, 3));
    if byte(cdb, 1) & 0x02 != 0 {
        // CMDDT (obsolete) set.
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let mut data = if !evpd {
        if page != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        standard(0x00)
    } else {
        match page {
            0x00 => vpd(0x00, &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]),
            0x80 => vpd(0x80, info.serial.as_bytes()),
            0x83 => vpd(0x83, &device_identification(info)),
            0xB0 => vpd(0xB0, &block_limits(info)),
            0xB1 => {
                // Medium rotation rate 1: non-rotating medium.
                let mut p = vec![0u8; 60];
                put(&mut p, 1, &[0x01]);
                vpd(0xB1, &p)
            }
            0xB2 => {
                let mut p = vec![0u8; 4];
                if info.thin {
                    // LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type 2 (thin).
                    put(&mut p, 1, &[0xE4, 0x02]);
                }
                vpd(0xB2, &p)
            }
            _ => return Err(Sense::invalid_field_in_cdb(2, None)),
        }
    };
    data.truncate(alloc);
    Ok(Plan::DataIn(data))
}

/// INQUIRY for a LUN that does not exist: peripheral qualifier 3.
pub(super) fn inquiry_missing(cdb: &[u8]) -> Plan {
    let alloc = usize::from(be16(cdb, 3));
    if byte(cdb, 1) & 0x01 != 0 {
        return Plan::Check(Sense::logical_unit_not_supported());
    }
    let mut d = standard(0x7F);
    d.truncate(alloc);
    Plan::DataIn(d)
}

/// Standard INQUIRY data with `peripheral` in byte 0.
fn standard(peripheral: u8) -> Vec<u8> {
    let mut d = vec![0u8; 66];
    // Peripheral; SPC-4; HiSup + response data format 2; additional length.
    put(&mut d, 0, &[peripheral, 0x00, 0x06, 0x12, 66 - 5]);
    put(&mut d, 7, &[0x02]); // CmdQue
    put(&mut d, 8, VENDOR);
    put(&mut d, 16, PRODUCT);
    put(&mut d, 32, REVISION);
    // Version descriptors: SAM-5 (0x00A0), SPC-4 (0x0460), SBC-3 (0x04C0),
    // iSCSI (0x0960).
    put(
        &mut d,
        58,
        &[0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0, 0x09, 0x60],
    );
    d
}

/// A VPD page: header + payload.
fn vpd(page: u8, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0x00, page];
    d.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// Device identification descriptors: NAA (LU), T10 vendor ID (LU),
/// relative target port, target port group, SCSI name string (target).
fn device_identification(info: &LunInfo) -> Vec<u8> {
    let mut d = Vec::with_capacity(128);
    // NAA, binary, association LU.
    d.extend_from_slice(&[0x01, 0x03, 0x00, 16]);
    d.extend_from_slice(&info.naa);
    // T10 vendor ID, ASCII, association LU.
    let mut t10 = VENDOR.to_vec();
    t10.extend_from_slice(info.serial.as_bytes());
    d.extend_from_slice(&[0x02, 0x01, 0x00, t10.len().min(255) as u8]);
    d.extend_from_slice(t10.get(..255.min(t10.len())).unwrap_or(&[]));
    // Relative target port (iSCSI protocol id 5, PIV), association port.
    d.extend_from_slice(&[0x51, 0x14, 0x00, 4, 0, 0, 0, 1]);
    // Target port group.
    d.extend_from_slice(&[0x51, 0x15, 0x00, 4, 0, 0, 0, 1]);
    // SCSI name string, UTF-8, association target device, NUL-padded to 4.
    let mut name = info.target_name.as_bytes().to_vec();
    name.push(0);
    while name.len() % 4 != 0 {
        name.push(0);
    }
    let name = name.get(..252.min(name.len())).unwrap_or(&[]);
    d.extend_from_slice(&[0x53, 0xA8, 0x00, name.len() as u8]);
    d.extend_from_slice(name);
    d
}

/// Block limits (SBC-3 §6.6.3).
fn block_limits(info: &LunInfo) -> Vec<u8> {
    let mut p = vec![0u8; 60];
    // WSNZ: WRITE SAME with zero blocks is refused.
    put(&mut p, 0, &[0x01]);
    put(&mut p, 1, &[MAX_COMPARE_AND_WRITE_BLOCKS as u8]);
    // Optimal transfer length granularity: 1 block.
    put(&mut p, 2, &1u16.to_be_bytes());
    put(&mut p, 4, &info.max_transfer_blocks.to_be_bytes());
    put(
        &mut p,
        8,
        &(info.max_transfer_blocks.min(1 << 20)).to_be_bytes(),
    );
    if info.thin {
        // Max unmap LBA count and descriptor count.
        put(&mut p, 16, &info.max_transfer_blocks.to_be_bytes());
        put(&mut p, 20, &MAX_UNMAP_DESCRIPTORS.to_be_bytes());
        // Optimal unmap granularity: 1 block.
        put(&mut p, 24, &1u32.to_be_bytes());
    }
    // Maximum WRITE SAME length.
    put(
        &mut p,
        32,
        &u64::from(info.max_transfer_blocks).to_be_bytes(),
    );
    p
}
