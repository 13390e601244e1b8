//! Get Log Page (Base 2.0 §5.16) and the log pages an NVMe-oF controller
//! serves: Error Information (01h), SMART / Health Information (02h),
//! Firmware Slot Information (03h), Changed Namespace List (04h), Commands
//! Supported and Effects (05h). The Discovery log page (70h) is in
//! [`super::discovery`].

use super::bytes::{put_le128, put_le16, put_le32, put_padded, put_u8};
use super::controller::HealthCounters;
use super::sqe::{admin_opcode, io_opcode};
use super::{Sqe, Status};

/// Log Page Identifiers (Base 2.0 Figure 202).
pub mod lid {
    /// Error Information.
    pub const ERROR: u8 = 0x01;
    /// SMART / Health Information.
    pub const SMART: u8 = 0x02;
    /// Firmware Slot Information.
    pub const FW_SLOT: u8 = 0x03;
    /// Changed Namespace List.
    pub const CHANGED_NS: u8 = 0x04;
    /// Commands Supported and Effects.
    pub const CMD_EFFECTS: u8 = 0x05;
    /// Asymmetric Namespace Access.
    pub const ANA: u8 = 0x0C;
    /// Discovery (Fabrics 1.1 §5.3).
    pub const DISCOVERY: u8 = 0x70;
}

/// Length of one Error Information entry.
pub const ERROR_ENTRY_LEN: usize = 64;
/// Length of the SMART / Health Information log page.
pub const SMART_LEN: usize = 512;
/// Length of the Firmware Slot Information log page.
pub const FW_SLOT_LEN: usize = 512;
/// Length of the Changed Namespace List log page (1024 NSIDs).
pub const CHANGED_NS_LEN: usize = 4096;
/// Length of the Commands Supported and Effects log page.
pub const CMD_EFFECTS_LEN: usize = 4096;

/// Get Log Page command fields (Base 2.0 Figures 197-200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLogPage {
    /// LID (CDW10 bits 7:0).
    pub lid: u8,
    /// LSP (CDW10 bits 14:8).
    pub lsp: u8,
    /// RAE (CDW10 bit 15): retain the asynchronous event.
    pub rae: bool,
    /// Number of dwords to transfer, 1-based (NUMDU:NUMDL + 1).
    pub numd: u64,
    /// LSI (CDW11 bits 31:16).
    pub lsi: u16,
    /// Byte offset (LPOU:LPOL).
    pub offset: u64,
    /// CSI (CDW14 bits 31:24).
    pub csi: u8,
}

impl GetLogPage {
    /// Reads the fields from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> GetLogPage {
        let numdl = u64::from(sqe.cdw10 >> 16);
        let numdu = u64::from(sqe.cdw11 & 0xFFFF);
        GetLogPage {
            lid: sqe.cdw10 as u8,
            lsp: ((sqe.cdw10 >> 8) & 0x7F) as u8,
            rae: sqe.cdw10 & (1 << 15) != 0,
            numd: ((numdu << 16) | numdl) + 1,
            lsi: (sqe.cdw11 >> 16) as u16,
            offset: u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32),
            csi: (sqe.cdw14 >> 24) as u8,
        }
    }

    /// Transfer length in bytes.
    pub const fn len_bytes(&self) -> u64 {
        self.numd * 4
    }
}

/// Returns `len` bytes of `log` starting at `offset`, zero-filled past the
/// end. The offset must be dword aligned and not beyond the log (Base 2.0
/// §5.16: otherwise Invalid Field in Command).
pub fn window(log: &[u8], offset: u64, len: usize) -> Result<Vec<u8>, Status> {
    if offset % 4 != 0 || offset > log.len() as u64 {
        return Err(Status::INVALID_FIELD.dnr());
    }
    let start = usize::try_from(offset).map_err(|_| Status::INVALID_FIELD.dnr())?;
    let mut out = vec![0u8; len];
    let src = log.get(start..).unwrap_or(&[]);
    let n = src.len().min(len);
    if let (Some(d), Some(s)) = (out.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
    Ok(out)
}

/// Error Information log with `entries` empty entries (Base 2.0 §5.16.1.2).
pub fn error_info(entries: usize) -> Vec<u8> {
    vec![0u8; ERROR_ENTRY_LEN * entries.max(1)]
}

/// Data units (thousands of 512-byte units, rounded up; Base 2.0 Figure 207).
fn data_units(bytes: u64) -> u128 {
    u128::from(bytes).div_ceil(512_000)
}

/// SMART / Health Information log (Base 2.0 §5.16.1.3, Figure 207).
pub fn smart(h: &HealthCounters) -> Vec<u8> {
    let mut b = vec![0u8; SMART_LEN];
    put_u8(&mut b, 0, h.critical_warning);
    put_le16(&mut b, 1, h.temperature_kelvin);
    put_u8(&mut b, 3, 100); // Available Spare
    put_u8(&mut b, 4, 10); // Available Spare Threshold
    put_u8(&mut b, 5, 0); // Percentage Used
    put_le128(&mut b, 32, data_units(h.bytes_read));
    put_le128(&mut b, 48, data_units(h.bytes_written));
    put_le128(&mut b, 64, u128::from(h.read_commands));
    put_le128(&mut b, 80, u128::from(h.write_commands));
    put_le128(&mut b, 112, u128::from(h.power_cycles));
    put_le128(&mut b, 128, u128::from(h.power_on_hours));
    put_le128(&mut b, 144, u128::from(h.unsafe_shutdowns));
    put_le128(&mut b, 160, u128::from(h.media_errors));
    b
}

/// Firmware Slot Information log (Base 2.0 §5.16.1.4): slot 1 active and
/// holding `firmware_rev`.
pub fn firmware_slot(firmware_rev: &str) -> Vec<u8> {
    let mut b = vec![0u8; FW_SLOT_LEN];
    put_u8(&mut b, 0, 1); // AFI: slot 1 active
    put_padded(&mut b, 8, 8, firmware_rev, b' '); // FRS1
    b
}

/// Changed Namespace List log (Base 2.0 §5.16.1.5): up to 1024 NSIDs, or
/// FFFFFFFFh in the first entry when more changed.
pub fn changed_ns(list: &[u32], overflow: bool) -> Vec<u8> {
    let mut b = vec![0u8; CHANGED_NS_LEN];
    if overflow || list.len() > CHANGED_NS_LEN / 4 {
        put_le32(&mut b, 0, super::NSID_ALL);
        return b;
    }
    for (i, nsid) in list.iter().enumerate() {
        put_le32(&mut b, i * 4, *nsid);
    }
    b
}

/// Commands Supported and Effects log (Base 2.0 §5.16.1.6, Figure 210):
/// CSUPP for each supported opcode, LBCC for commands that change data.
pub fn command_effects() -> Vec<u8> {
    const CSUPP: u32 = 1;
    const LBCC: u32 = 1 << 1;
    let mut b = vec![0u8; CMD_EFFECTS_LEN];
    for op in [
        admin_opcode::GET_LOG_PAGE,
        admin_opcode::IDENTIFY,
        admin_opcode::ABORT,
        admin_opcode::SET_FEATURES,
        admin_opcode::GET_FEATURES,
        admin_opcode::ASYNC_EVENT,
        admin_opcode::KEEP_ALIVE,
    ] {
        put_le32(&mut b, usize::from(op) * 4, CSUPP);
    }
    for (op, effects) in [
        (io_opcode::FLUSH, CSUPP),
        (io_opcode::WRITE, CSUPP | LBCC),
        (io_opcode::READ, CSUPP),
        (io_opcode::COMPARE, CSUPP),
        (io_opcode::WRITE_ZEROES, CSUPP | LBCC),
        (io_opcode::DSM, CSUPP | LBCC),
        (io_opcode::VERIFY, CSUPP),
    ] {
        put_le32(&mut b, 1024 + usize::from(op) * 4, effects);
    }
    b
}
