//! REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35).

use super::cdb::*;
use super::sense::Sense;
use crate::wire::{put, put_be16, put_be32};

/// One supported command: opcode, service action (when `servactv`) and the
/// CDB usage bitmap (first byte is the opcode).
pub(crate) struct Supported {
    pub opcode: u8,
    pub sa: Option<u8>,
    pub usage: &'static [u8],
}

const fn c(opcode: u8, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        sa: None,
        usage,
    }
}

const fn s(opcode: u8, sa: u8, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        sa: Some(sa),
        usage,
    }
}

/// The command table, in opcode order.
pub(crate) const COMMANDS: &[Supported] = &[
    c(TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0x07]),
    c(REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xFF, 0x07]),
    c(READ_6, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x07]),
    c(WRITE_6, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x07]),
    c(INQUIRY, &[0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x07]),
    c(MODE_SELECT_6, &[0x15, 0x11, 0, 0, 0xFF, 0x07]),
    c(RESERVE_6, &[0x16, 0, 0, 0, 0, 0x07]),
    c(RELEASE_6, &[0x17, 0, 0, 0, 0, 0x07]),
    c(MODE_SENSE_6, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x07]),
    c(START_STOP_UNIT, &[0x1B, 0x01, 0, 0x0F, 0xF7, 0x07]),
    c(PREVENT_ALLOW_MEDIUM_REMOVAL, &[0x1E, 0, 0, 0, 0x03, 0x07]),
    c(
        READ_CAPACITY_10,
        &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0x07],
    ),
    c(
        READ_10,
        &[0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(
        WRITE_10,
        &[0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(
        WRITE_AND_VERIFY_10,
        &[0x2E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(
        VERIFY_10,
        &[0x2F, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(
        PRE_FETCH_10,
        &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(
        SYNCHRONIZE_CACHE_10,
        &[0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(
        READ_DEFECT_DATA_10,
        &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    c(
        WRITE_SAME_10,
        &[0x41, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07],
    ),
    c(UNMAP, &[0x42, 0x01, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0x07]),
    s(
        SANITIZE,
        0x01,
        &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        SANITIZE,
        0x02,
        &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        SANITIZE,
        0x1F,
        &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    c(
        MODE_SELECT_10,
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    c(RESERVE_10, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0x07]),
    c(RELEASE_10, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0x07]),
    c(
        MODE_SENSE_10,
        &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_IN,
        0x00,
        &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_IN,
        0x01,
        &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_IN,
        0x02,
        &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_IN,
        0x03,
        &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x00,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x01,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x02,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x03,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x04,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x05,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        PERSISTENT_RESERVE_OUT,
        0x06,
        &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07],
    ),
    s(
        EXTENDED_COPY,
        0x00,
        &[
            0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07,
        ],
    ),
    s(
        RECEIVE_COPY_RESULTS,
        0x00,
        &[
            0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07,
        ],
    ),
    s(
        RECEIVE_COPY_RESULTS,
        0x03,
        &[
            0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07,
        ],
    ),
    c(
        READ_16,
        &[
            0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        COMPARE_AND_WRITE,
        &[
            0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x3F, 0x07,
        ],
    ),
    c(
        WRITE_16,
        &[
            0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        ORWRITE_16,
        &[
            0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        WRITE_AND_VERIFY_16,
        &[
            0x8E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        VERIFY_16,
        &[
            0x8F, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        PRE_FETCH_16,
        &[
            0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        SYNCHRONIZE_CACHE_16,
        &[
            0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    c(
        WRITE_SAME_16,
        &[
            0x93, 0x19, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x3F, 0x07,
        ],
    ),
    s(
        SERVICE_ACTION_IN_16,
        SA_READ_CAPACITY_16,
        &[
            0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07,
        ],
    ),
    s(
        SERVICE_ACTION_IN_16,
        SA_GET_LBA_STATUS,
        &[
            0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x07,
        ],
    ),
    c(
        REPORT_LUNS,
        &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07],
    ),
    s(
        MAINTENANCE_IN,
        SA_REPORT_SUPPORTED_OPCODES,
        &[
            0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07,
        ],
    ),
    c(
        READ_12,
        &[
            0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07,
        ],
    ),
    c(
        WRITE_12,
        &[
            0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07,
        ],
    ),
    c(
        WRITE_AND_VERIFY_12,
        &[
            0xAE, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07,
        ],
    ),
    c(
        VERIFY_12,
        &[
            0xAF, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07,
        ],
    ),
    c(
        READ_DEFECT_DATA_12,
        &[0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07],
    ),
];

/// Whether `opcode` (with service action `sa` for commands that have one)
/// is in the table. `thin`: UNMAP and SANITIZE BLOCK ERASE are only
/// supported on thin volumes.
pub(crate) fn lookup(opcode: u8, sa: u8, thin: bool) -> Option<&'static Supported> {
    COMMANDS
        .iter()
        .filter(|e| thin || !needs_thin(e))
        .find(|e| e.opcode == opcode && e.sa.is_none_or(|s| s == sa))
}

/// Commands that deallocate: offered only on thin-provisioned volumes.
fn needs_thin(e: &Supported) -> bool {
    e.opcode == UNMAP || (e.opcode == SANITIZE && e.sa == Some(0x02))
}

/// Whether any entry has `opcode` with a service action.
fn has_service_actions(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|e| e.opcode == opcode && e.sa.is_some())
}

/// Command timeouts descriptor (SPC-4 §6.35.4): length 0x0A, no timeouts.
const TIMEOUTS: [u8; 12] = [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// REPORT SUPPORTED OPERATION CODES parameter data, before truncation.
pub(crate) fn report(cdb: Cdb<'_>, thin: bool) -> Result<Vec<u8>, Sense> {
    let rctd = cdb.bit(2, 7);
    let options = cdb.byte(2) & 0x07;
    let req_op = cdb.byte(3);
    let req_sa = cdb.u16(4);
    match options {
        0 => {
            let mut d = vec![0u8; 4];
            for e in COMMANDS.iter().filter(|e| thin || !needs_thin(e)) {
                let mut desc = vec![0u8; 8];
                put(&mut desc, 0, &[e.opcode]);
                if let Some(sa) = e.sa {
                    put_be16(&mut desc, 2, u16::from(sa));
                }
                let flags = if e.sa.is_some() { 0x01 } else { 0 } | if rctd { 0x02 } else { 0 };
                put(&mut desc, 5, &[flags]);
                put_be16(&mut desc, 6, u16::try_from(e.usage.len()).unwrap_or(0));
                d.extend_from_slice(&desc);
                if rctd {
                    d.extend_from_slice(&TIMEOUTS);
                }
            }
            let len = u32::try_from(d.len().saturating_sub(4)).unwrap_or(u32::MAX);
            put_be32(&mut d, 0, len);
            Ok(d)
        }
        1..=3 => {
            let sa_u8 = u8::try_from(req_sa).ok();
            let entry = match options {
                1 => {
                    if has_service_actions(req_op) {
                        return Err(Sense::invalid_cdb_field(3, None));
                    }
                    lookup(req_op, 0, thin)
                }
                2 => {
                    if !has_service_actions(req_op) {
                        return Err(Sense::invalid_cdb_field(3, None));
                    }
                    sa_u8.and_then(|sa| lookup(req_op, sa, thin))
                }
                _ => match sa_u8 {
                    Some(sa) if has_service_actions(req_op) => lookup(req_op, sa, thin),
                    Some(0) => lookup(req_op, 0, thin),
                    _ => None,
                },
            };
            let mut d = vec![0u8; 4];
            if let Some(e) = entry {
                // SUPPORT 011b: supported as in the standard.
                put(&mut d, 1, &[0x03 | if rctd { 0x80 } else { 0 }]);
                put_be16(&mut d, 2, u16::try_from(e.usage.len()).unwrap_or(0));
                d.extend_from_slice(e.usage);
                if rctd {
                    d.extend_from_slice(&TIMEOUTS);
                }
            } else {
                // SUPPORT 001b: not supported.
                put(&mut d, 1, &[0x01]);
            }
            Ok(d)
        }
        _ => Err(Sense::invalid_cdb_field(2, Some(2))),
    }
}
