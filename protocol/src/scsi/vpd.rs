//! Vital product data pages (SPC-4 §7.8, SBC-3 §6.5).

use super::sense::Sense;
use super::LunInfo;
use super::MAX_COMPARE_AND_WRITE_BLOCKS;
use crate::wire::{put, put_be16, put_be32};

/// Pages we answer, in ascending order (SPC-4 §7.8.13).
pub(crate) const SUPPORTED: [u8; 7] = [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2];

/// The VPD page `page`, or INVALID FIELD IN CDB.
pub(crate) fn page(info: &LunInfo, page: u8) -> Result<Vec<u8>, Sense> {
    let body = match page {
        0x00 => SUPPORTED.to_vec(),
        0x80 => unit_serial(info),
        0x83 => device_identification(info),
        0x86 => extended_inquiry(),
        0xB0 => block_limits(info),
        0xB1 => block_device_characteristics(),
        0xB2 => logical_block_provisioning(info),
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    };
    let mut d = vec![0u8, page, 0, 0];
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    put_be16(&mut d, 2, len);
    d.extend_from_slice(&body);
    Ok(d)
}

/// Unit Serial Number (SPC-4 §7.8.15): printable ASCII.
fn unit_serial(info: &LunInfo) -> Vec<u8> {
    info.unit_serial
        .bytes()
        .filter(|b| (0x20..=0x7E).contains(b))
        .take(250)
        .collect()
}

/// One designation descriptor (SPC-4 §7.8.6.1).
fn designator(out: &mut Vec<u8>, proto_codeset: u8, piv_assoc_type: u8, id: &[u8]) {
    let len = u8::try_from(id.len()).unwrap_or(u8::MAX);
    out.extend_from_slice(&[proto_codeset, piv_assoc_type, 0, len]);
    out.extend_from_slice(id.get(..usize::from(len)).unwrap_or(id));
}

/// Device Identification (SPC-4 §7.8.6): NAA (LU), T10 vendor ID (LU),
/// relative target port and target port group (target port), SCSI name
/// string (target device).
fn device_identification(info: &LunInfo) -> Vec<u8> {
    let mut d = Vec::with_capacity(128);
    // NAA, binary, associated with the logical unit.
    designator(&mut d, 0x01, 0x03, &info.naa_designator);
    // T10 vendor ID: vendor + serial, ASCII.
    let mut t10 = info.vendor.to_vec();
    t10.extend(unit_serial(info).into_iter().take(64));
    designator(&mut d, 0x02, 0x01, &t10);
    // Relative target port identifier, iSCSI, PIV=1, target port.
    let [hi, lo] = info.relative_port.to_be_bytes();
    designator(&mut d, 0x51, 0x94, &[0, 0, hi, lo]);
    // Target port group.
    let [hi, lo] = info.target_port_group.to_be_bytes();
    designator(&mut d, 0x51, 0x95, &[0, 0, hi, lo]);
    // SCSI name string, UTF-8, target device: NUL-terminated, padded to 4.
    if !info.target_name.is_empty() {
        let mut name: Vec<u8> = info.target_name.bytes().take(223).collect();
        name.push(0);
        while name.len() % 4 != 0 {
            name.push(0);
        }
        designator(&mut d, 0x53, 0xA8, &name);
    }
    d
}

/// Extended INQUIRY Data (SPC-4 §7.8.7): HEADSUP/ORDSUP/SIMPSUP, no
/// protection, V_SUP (volatile cache).
fn extended_inquiry() -> Vec<u8> {
    let mut d = vec![0u8; 60];
    put(&mut d, 1, &[0x07, 0x01]);
    d
}

/// Block Limits (SBC-3 §6.5.3).
fn block_limits(info: &LunInfo) -> Vec<u8> {
    let mut d = vec![0u8; 60];
    put(&mut d, 0, &[0x01]); // WSNZ: WRITE SAME with 0 blocks is refused.
    put(
        &mut d,
        1,
        &[u8::try_from(MAX_COMPARE_AND_WRITE_BLOCKS).unwrap_or(u8::MAX)],
    );
    put_be16(&mut d, 2, 1); // optimal transfer length granularity
    put_be32(&mut d, 4, info.max_transfer_blocks);
    put_be32(&mut d, 8, info.optimal_transfer_blocks);
    if info.thin_provisioning {
        put_be32(&mut d, 16, info.max_unmap_blocks.max(1));
        put_be32(&mut d, 20, info.max_unmap_descriptors.max(1));
        put_be32(&mut d, 24, 1); // optimal unmap granularity
        put_be32(&mut d, 28, 0x8000_0000); // UGAVALID, alignment 0
    }
    put(&mut d, 32, &info.max_write_same_blocks.to_be_bytes());
    d
}

/// Block Device Characteristics (SBC-3 §6.5.2): non-rotating medium;
/// WABEREQ 01b: after a SANITIZE BLOCK ERASE reads succeed (deallocated
/// blocks read as zeroes).
fn block_device_characteristics() -> Vec<u8> {
    let mut d = vec![0u8; 60];
    put_be16(&mut d, 0, 1);
    put(&mut d, 3, &[0x40]);
    d
}

/// Logical Block Provisioning (SBC-3 §6.5.4).
fn logical_block_provisioning(info: &LunInfo) -> Vec<u8> {
    if info.thin_provisioning {
        // LBPU, LBPWS, LBPWS10, LBPRZ=1, ANC_SUP; provisioning type 2 (thin).
        vec![0x00, 0x80 | 0x40 | 0x20 | 0x04 | 0x02, 0x02, 0x00]
    } else {
        vec![0x00, 0x00, 0x00, 0x00]
    }
}
