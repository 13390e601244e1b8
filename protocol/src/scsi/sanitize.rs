//! SANITIZE (SBC-3 §5.30).

use super::cdb::Cdb;
use super::sense::Sense;
use super::{LunInfo, ParamKind, Plan};
use crate::wire::{be16, u8_at};

/// What a SANITIZE asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanitizeAction {
    /// Write `pattern` (inverted between passes when `invert`) `count`
    /// times over every block.
    Overwrite {
        /// Initialization pattern (1..=block size bytes), repeated.
        pattern: Vec<u8>,
        /// INVERT: invert the pattern between passes.
        invert: bool,
        /// OVERWRITE COUNT (1..=31).
        count: u8,
    },
    /// Deallocate every block (thin volumes only).
    BlockErase,
    /// Leave the sanitize failure mode.
    ExitFailureMode,
}

impl SanitizeAction {
    /// The service action's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            SanitizeAction::Overwrite { .. } => "overwrite",
            SanitizeAction::BlockErase => "block erase",
            SanitizeAction::ExitFailureMode => "exit failure mode",
        }
    }
}

/// Plans SANITIZE from its CDB (the OVERWRITE pattern comes as parameter
/// data).
/// `swp`: the control mode page's software write protect, which refuses
/// SANITIZE like a read-only volume does.
pub(crate) fn plan(info: &LunInfo, swp: bool, cdb: Cdb<'_>) -> Plan {
    let write_protected = info.read_only || swp;
    // Byte 1 bit 6 and bytes 2..=6 are reserved.
    if cdb.bit(1, 6) {
        return Plan::Check(Sense::invalid_cdb_field(1, Some(6)));
    }
    if let Some(b) = (2..=6u16).find(|&b| cdb.byte(usize::from(b)) != 0) {
        return Plan::Check(Sense::invalid_cdb_field(b, None));
    }
    let immed = cdb.bit(1, 7);
    let ause = cdb.bit(1, 5);
    let len = cdb.u16(7);
    match cdb.service_action() {
        0x01 => {
            if len == 0 {
                return Plan::Check(Sense::invalid_cdb_field(7, None));
            }
            if write_protected {
                return Plan::Check(super::sense::WRITE_PROTECTED);
            }
            Plan::NeedParameterData {
                len: u32::from(len),
                then: ParamKind::SanitizeOverwrite { immed, ause },
            }
        }
        0x02 if info.thin_provisioning => {
            if len != 0 {
                return Plan::Check(Sense::invalid_cdb_field(7, None));
            }
            if write_protected {
                return Plan::Check(super::sense::WRITE_PROTECTED);
            }
            Plan::Sanitize {
                action: SanitizeAction::BlockErase,
                immed,
            }
        }
        0x1F => {
            if len != 0 {
                return Plan::Check(Sense::invalid_cdb_field(7, None));
            }
            Plan::Sanitize {
                action: SanitizeAction::ExitFailureMode,
                immed,
            }
        }
        _ => Plan::Check(Sense::invalid_cdb_field(1, Some(4))),
    }
}

/// Parses the OVERWRITE parameter list (SBC-3 §5.30.2.2).
pub(crate) fn overwrite(info: &LunInfo, data: &[u8]) -> Result<SanitizeAction, Sense> {
    let invert = u8_at(data, 0) & 0x80 != 0;
    let test = (u8_at(data, 0) >> 5) & 0x03;
    let count = u8_at(data, 0) & 0x1F;
    let plen = usize::from(be16(data, 2));
    if data.len() < 4 || test != 0 {
        return Err(Sense::invalid_param_field(0, Some(5)));
    }
    if count == 0 {
        return Err(Sense::invalid_param_field(0, Some(4)));
    }
    if plen == 0 || plen > usize::try_from(info.block_size).unwrap_or(0) || plen + 4 != data.len() {
        return Err(Sense::invalid_param_field(2, None));
    }
    let pattern = data.get(4..).unwrap_or_default().to_vec();
    Ok(SanitizeAction::Overwrite {
        pattern,
        invert,
        count,
    })
}
