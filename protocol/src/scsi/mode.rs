//! MODE SENSE / MODE SELECT (SPC-4 §6.9-§6.12) with the caching (SBC-3
//! §6.4.5), control (SPC-4 §7.5.8) and informational exceptions control
//! (SPC-4 §7.5.11) mode pages.

use super::cdb::{truncate, Cdb, MODE_SENSE_10};
use super::sense::{self, Sense};
use super::LunInfo;
use crate::wire::{put, put_be16, put_be32, u8_at};

/// Caching mode page code.
const CACHING: u8 = 0x08;
/// Control mode page code.
const CONTROL: u8 = 0x0A;
/// The control mode page's TAS bit (SPC-4 §7.5.8), fixed at zero: a
/// command aborted by another I_T nexus (CLEAR TASK SET, a reset) ends
/// without status, and — when it was not a reset — its nexus gets COMMANDS
/// CLEARED BY ANOTHER INITIATOR instead (SAM-5 §5.6). One means TASK
/// ABORTED status for each such command, which the iSCSI frontend does not
/// send.
pub(crate) const TAS: bool = false;
/// Informational exceptions control mode page code.
const INFO_EXCEPTIONS: u8 = 0x1C;
/// Pages in the order "return all pages" lists them.
const PAGES: [u8; 3] = [CACHING, CONTROL, INFO_EXCEPTIONS];

/// The changeable mode parameters' current values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeState {
    /// WCE: write cache enabled (caching page).
    pub wce: bool,
    /// D_SENSE: descriptor-format sense (control page).
    pub d_sense: bool,
    /// SWP: software write protect (control page).
    pub swp: bool,
}

impl Default for ModeState {
    fn default() -> Self {
        Self {
            wce: true,
            d_sense: false,
            swp: false,
        }
    }
}

/// Page control (SPC-4 §6.11.1 table 164).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pc {
    Current,
    Changeable,
    Default,
}

/// Page `code` for `pc` (including its two-byte header).
fn page(code: u8, pc: Pc, st: &ModeState) -> Option<Vec<u8>> {
    let st = match pc {
        Pc::Current => *st,
        Pc::Default => ModeState::default(),
        Pc::Changeable => ModeState {
            wce: true,
            d_sense: true,
            swp: true,
        },
    };
    let changeable = pc == Pc::Changeable;
    match code {
        CACHING => {
            let mut p = vec![0u8; 20];
            put(&mut p, 0, &[CACHING, 0x12]);
            if st.wce {
                put(&mut p, 2, &[0x04]);
            }
            Some(p)
        }
        CONTROL => {
            let mut p = vec![0u8; 12];
            put(&mut p, 0, &[CONTROL, 0x0A]);
            // TST 0, D_SENSE; QAM 1 (unrestricted reordering), QERR 0.
            put(&mut p, 2, &[if st.d_sense { 0x04 } else { 0 }]);
            if !changeable {
                put(&mut p, 3, &[0x10]);
                // BUSY TIMEOUT PERIOD: unlimited.
                put_be16(&mut p, 8, 0xFFFF);
            }
            put(&mut p, 4, &[if st.swp { 0x08 } else { 0 }]);
            // TAS (byte 5 bit 6), not changeable: see [`TAS`].
            put(&mut p, 5, &[if TAS && !changeable { 0x40 } else { 0 }]);
            Some(p)
        }
        INFO_EXCEPTIONS => {
            let mut p = vec![0u8; 12];
            put(&mut p, 0, &[INFO_EXCEPTIONS, 0x0A]);
            Some(p)
        }
        _ => None,
    }
}

/// MODE SENSE(6)/(10) parameter data (SPC-4 §7.5.4, §7.5.5).
pub(crate) fn mode_sense(info: &LunInfo, st: &ModeState, cdb: Cdb<'_>) -> Result<Vec<u8>, Sense> {
    let ten = cdb.opcode() == MODE_SENSE_10;
    let dbd = cdb.bit(1, 3);
    let llbaa = ten && cdb.bit(1, 4);
    let pc = match cdb.byte(2) >> 6 {
        0 => Pc::Current,
        1 => Pc::Changeable,
        2 => Pc::Default,
        _ => return Err(sense::SAVING_PARAMETERS_NOT_SUPPORTED),
    };
    let code = cdb.byte(2) & 0x3F;
    let subpage = cdb.byte(3);
    let alloc = if ten {
        u32::from(cdb.u16(7))
    } else {
        u32::from(cdb.byte(4))
    };
    if subpage != 0 && subpage != 0xFF {
        return Err(Sense::invalid_cdb_field(3, None));
    }
    let mut pages = Vec::new();
    if code == 0x3F {
        for c in PAGES {
            if let Some(p) = page(c, pc, st) {
                pages.extend_from_slice(&p);
            }
        }
    } else if subpage == 0 {
        match page(code, pc, st) {
            Some(p) => pages = p,
            None => return Err(Sense::invalid_cdb_field(2, Some(5))),
        }
    } else if PAGES.contains(&code) {
        // All subpages of a page without subpages: the page itself.
        pages = page(code, pc, st).unwrap_or_default();
    } else {
        return Err(Sense::invalid_cdb_field(2, Some(5)));
    }

    // Block descriptor (SPC-4 §7.5.5.2/3, SBC-3 §6.4.2).
    let mut bd = Vec::new();
    if !dbd {
        if llbaa {
            bd = vec![0u8; 16];
            put(&mut bd, 0, &info.blocks.to_be_bytes());
            put_be32(&mut bd, 12, info.block_size);
        } else {
            bd = vec![0u8; 8];
            put_be32(&mut bd, 0, u32::try_from(info.blocks).unwrap_or(u32::MAX));
            crate::wire::put_be24(&mut bd, 5, info.block_size);
        }
    }
    // Device-specific parameter (SBC-3 §6.4.1): WP, DPOFUA.
    let wp = info.read_only || st.swp;
    let dsp = if wp { 0x80 } else { 0 } | 0x10;
    let mut d = if ten {
        let mut h = vec![0u8; 8];
        put(&mut h, 3, &[dsp, if llbaa && !dbd { 0x01 } else { 0 }]);
        put_be16(&mut h, 6, u16::try_from(bd.len()).unwrap_or(0));
        h
    } else {
        vec![0, 0, dsp, u8::try_from(bd.len()).unwrap_or(0)]
    };
    d.extend_from_slice(&bd);
    d.extend_from_slice(&pages);
    if ten {
        let len = u16::try_from(d.len().saturating_sub(2)).unwrap_or(u16::MAX);
        put_be16(&mut d, 0, len);
    } else {
        let len = u8::try_from(d.len().saturating_sub(1)).unwrap_or(u8::MAX);
        put(&mut d, 0, &[len]);
    }
    Ok(truncate(d, alloc))
}

/// Applies a MODE SELECT parameter list to `st` (SPC-4 §6.9, §6.10): only
/// changeable bits may differ from the current values. Returns whether
/// anything changed.
pub(crate) fn mode_select(
    info: &LunInfo,
    st: &mut ModeState,
    ten: bool,
    data: &[u8],
) -> Result<bool, Sense> {
    let hdr = if ten { 8usize } else { 4 };
    if data.len() < hdr {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let (medium, bdl, long) = if ten {
        (
            u8_at(data, 2),
            usize::from(crate::wire::be16(data, 6)),
            u8_at(data, 4) & 1 != 0,
        )
    } else {
        (u8_at(data, 1), usize::from(u8_at(data, 3)), false)
    };
    if medium != 0 {
        return Err(Sense::invalid_param_field(if ten { 2 } else { 1 }, None));
    }
    let bd_size = if long { 16 } else { 8 };
    if bdl != 0 && bdl != bd_size {
        return Err(Sense::invalid_param_field(if ten { 6 } else { 3 }, None));
    }
    if bdl != 0 {
        let Some(bd) = data.get(hdr..hdr + bdl) else {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        };
        let bl = if long {
            crate::wire::be32(bd, 12)
        } else {
            crate::wire::be24(bd, 5)
        };
        if bl != 0 && bl != info.block_size {
            let off = hdr + if long { 12 } else { 5 };
            return Err(Sense::invalid_param_field(
                u16::try_from(off).unwrap_or(0),
                None,
            ));
        }
    }
    let mut new = *st;
    let mut off = hdr + bdl;
    while off < data.len() {
        let code = u8_at(data, off) & 0x3F;
        let spf = u8_at(data, off) & 0x40 != 0;
        let field = |o: usize| u16::try_from(o).unwrap_or(u16::MAX);
        if spf {
            return Err(Sense::invalid_param_field(field(off), Some(6)));
        }
        let Some(cur) = page(code, Pc::Current, st) else {
            return Err(Sense::invalid_param_field(field(off), None));
        };
        let len = usize::from(u8_at(data, off + 1)) + 2;
        if len != cur.len() {
            return Err(Sense::invalid_param_field(field(off + 1), None));
        }
        let Some(p) = data.get(off..off + len) else {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        };
        let mask = page(code, Pc::Changeable, st).unwrap_or_default();
        for i in 2..len {
            let diff = (u8_at(p, i) ^ u8_at(&cur, i)) & !u8_at(&mask, i);
            if diff != 0 {
                return Err(Sense::invalid_param_field(field(off + i), None));
            }
        }
        match code {
            CACHING => new.wce = u8_at(p, 2) & 0x04 != 0,
            CONTROL => {
                new.d_sense = u8_at(p, 2) & 0x04 != 0;
                new.swp = u8_at(p, 4) & 0x08 != 0;
            }
            _ => {}
        }
        off += len;
    }
    let changed = new != *st;
    *st = new;
    Ok(changed)
}
