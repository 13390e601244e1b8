//! MODE SENSE (6/10) and MODE SELECT (6/10) with the caching (0x08),
//! control (0x0A) and informational exceptions (0x1C) pages (SPC-4 §6.11,
//! §6.13, §7.5; SBC-3 §6.5).

use std::collections::VecDeque;

use super::{be16, byte, put, LogicalUnit, Plan, Sense};

const CACHING: u8 = 0x08;
const CONTROL: u8 = 0x0A;
const INFO_EXCEPTIONS: u8 = 0x1C;

/// Page control: current, changeable, default, saved.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageControl {
    Current,
    Changeable,
    Default,
}

fn caching_page(lu: &LogicalUnit, pc: PageControl) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    put(&mut p, 0, &[CACHING, 18]);
    let wce = match pc {
        PageControl::Current => lu.wce,
        PageControl::Changeable => true,
        PageControl::Default => true,
    };
    put(&mut p, 2, &[if wce { 0x04 } else { 0 }]);
    p
}

fn control_page(lu: &LogicalUnit, pc: PageControl) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    put(&mut p, 0, &[CONTROL, 10]);
    let d_sense = match pc {
        PageControl::Current => lu.d_sense,
        PageControl::Changeable => true,
        PageControl::Default => false,
    };
    // GLTSD=1 (no log save), D_SENSE per state.
    let byte2 = 0x02 | if d_sense { 0x04 } else { 0 };
    put(&mut p, 2, &[byte2]);
    if pc != PageControl::Changeable {
        // QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering).
        put(&mut p, 3, &[0x10]);
        // Busy timeout period: unlimited.
        put(&mut p, 8, &[0xFF, 0xFF]);
    }
    p
}

fn ie_page(pc: PageControl) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    put(&mut p, 0, &[INFO_EXCEPTIONS, 10]);
    if pc != PageControl::Changeable {
        // MRIE 0: no reporting.
        put(&mut p, 3, &[0x00]);
    }
    p
}

/// MODE SENSE(6) (0x1A) or (10) (0x5A).
pub(super) fn mode_sense(lu: &LogicalUnit, cdb: &[u8]) -> Result<Plan, Sense> {
    let ten = byte(cdb, 0) == 0x5A;
    let dbd = byte(cdb, 1) & 0x08 != 0;
    let llbaa = ten && byte(cdb, 1) & 0x10 != 0;
    let pc = match byte(cdb, 2) >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => return Err(Sense::new(super::sense::key::ILLEGAL_REQUEST, 0x39, 0x00)),
    };
    let page = byte(cdb, 2) & 0x3f;
    let subpage = byte(cdb, 3);
    if subpage != 0 && subpage != 0xFF {
        return Err(Sense::invalid_field_in_cdb(3, None));
    }
    let mut pages = Vec::new();
    match page {
        CACHING => pages.extend(caching_page(lu, pc)),
        CONTROL => pages.extend(control_page(lu, pc)),
        INFO_EXCEPTIONS => pages.extend(ie_page(pc)),
        0x3F => {
            pages.extend(caching_page(lu, pc));
            pages.extend(control_page(lu, pc));
            pages.extend(ie_page(pc));
        }
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
    }
    let info = lu.info();
    let block_desc: Vec<u8> = if dbd {
        Vec::new()
    } else if llbaa {
        let mut b = vec![0u8; 16];
        put(&mut b, 0, &info.blocks.to_be_bytes());
        put(&mut b, 12, &info.block_size.to_be_bytes());
        b
    } else {
        let mut b = vec![0u8; 8];
        let blocks = u32::try_from(info.blocks).unwrap_or(u32::MAX);
        put(&mut b, 0, &blocks.to_be_bytes());
        put(&mut b, 5, &info.block_size.to_be_bytes()[1..]);
        b
    };
    // Device-specific parameter: WP for read-only volumes, DPOFUA.
    let dsp = if info.read_only { 0x80 } else { 0 } | 0x10;
    let mut d = Vec::new();
    if ten {
        let len = 6 + block_desc.len() + pages.len();
        d.extend_from_slice(&(len as u16).to_be_bytes());
        d.extend_from_slice(&[0, dsp, if llbaa { 1 } else { 0 }, 0]);
        d.extend_from_slice(&(block_desc.len() as u16).to_be_bytes());
    } else {
        let len = 3 + block_desc.len() + pages.len();
        d.extend_from_slice(&[len.min(255) as u8, 0, dsp, block_desc.len() as u8]);
    }
    d.extend(block_desc);
    d.extend(pages);
    let alloc = if ten {
        usize::from(be16(cdb, 7))
    } else {
        usize::from(byte(cdb, 4))
    };
    d.truncate(alloc);
    Ok(Plan::DataIn(d))
}

/// MODE SELECT parameter data: applies changeable bits (WCE, D_SENSE);
/// any other difference from the current values is refused.
pub(super) fn mode_select(
    lu: &mut LogicalUnit,
    nexus: u64,
    ten: bool,
    data: &[u8],
) -> Result<Plan, Sense> {
    let (header_len, bd_len) = if ten {
        (8usize, usize::from(be16(data, 6)))
    } else {
        (4usize, usize::from(byte(data, 3)))
    };
    if data.len() < header_len {
        return Err(Sense::parameter_list_length_error());
    }
    let mut at = header_len + bd_len;
    let mut wce = lu.wce;
    let mut d_sense = lu.d_sense;
    while at < data.len() {
        let code = byte(data, at) & 0x3f;
        let len = usize::from(byte(data, at + 1));
        if at + 2 + len > data.len() {
            return Err(Sense::parameter_list_length_error());
        }
        let page = data.get(at..at + 2 + len).unwrap_or(&[]);
        match code {
            CACHING if len == 18 => wce = byte(page, 2) & 0x04 != 0,
            CONTROL if len == 10 => d_sense = byte(page, 2) & 0x04 != 0,
            INFO_EXCEPTIONS if len == 10 => {}
            _ => return Err(Sense::invalid_field_in_parameter_list(at as u16)),
        }
        at += 2 + len;
    }
    let changed = wce != lu.wce || d_sense != lu.d_sense;
    lu.wce = wce;
    lu.d_sense = d_sense;
    if changed {
        for (n, q) in lu.unit_attention.iter_mut() {
            if *n != nexus {
                push_once(q, Sense::mode_parameters_changed());
            }
        }
    }
    Ok(Plan::Good)
}

fn push_once(q: &mut VecDeque<Sense>, s: Sense) {
    if !q.contains(&s) {
        q.push_back(s);
    }
}
