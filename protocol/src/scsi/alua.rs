//! Asymmetric logical unit access (SPC-4 §5.15): the target port groups
//! of a logical unit exported by several gateways, their access states,
//! REPORT TARGET PORT GROUPS (§6.37), the check that refuses commands a
//! port in Standby or Unavailable may not run (§5.15.2.4), and — explicit
//! ALUA — SET TARGET PORT GROUPS (§6.45), which here names the group that
//! owns the unit: one group is Active/optimized, every other one reports
//! the same non-owner state, so the only change a host can ask for is
//! which group that one is.

use super::cdb::*;
use super::sense::{self, Sense};
use super::{LunInfo, ParamKind, Plan};
use crate::wire::{put, put_be16, put_be32};

/// MAINTENANCE IN: REPORT TARGET PORT GROUPS.
pub const SA_REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
/// MAINTENANCE OUT (SET TARGET PORT GROUPS, ...).
pub const MAINTENANCE_OUT: u8 = 0xA4;
/// MAINTENANCE OUT: SET TARGET PORT GROUPS.
pub const SA_SET_TARGET_PORT_GROUPS: u8 = 0x0A;
/// Longest SET TARGET PORT GROUPS parameter list taken: the header and
/// 255 descriptors (a cluster has at most 16 groups; a longer list names
/// some twice).
const MAX_STPG_LIST: u32 = 4 + 4 * 255;
/// SEND DIAGNOSTIC.
const SEND_DIAGNOSTIC: u8 = 0x1D;
/// RECEIVE DIAGNOSTIC RESULTS.
const RECEIVE_DIAGNOSTIC: u8 = 0x1C;
/// WRITE BUFFER.
const WRITE_BUFFER: u8 = 0x3B;
/// READ BUFFER(10).
const READ_BUFFER: u8 = 0x3C;
/// LOG SELECT.
const LOG_SELECT: u8 = 0x4C;
/// LOG SENSE.
const LOG_SENSE: u8 = 0x4D;

/// An asymmetric access state (SPC-4 table 150).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AluaState {
    /// 0h Active/optimized.
    ActiveOptimized,
    /// 1h Active/non-optimized: every command runs, possibly slower.
    ActiveNonOptimized,
    /// 2h Standby: only commands that manage the unit run.
    Standby,
    /// 3h Unavailable: only INQUIRY, REPORT LUNS and the like run.
    Unavailable,
    /// Fh Transitioning between states.
    Transitioning,
}

impl AluaState {
    /// The wire value.
    pub const fn code(self) -> u8 {
        match self {
            AluaState::ActiveOptimized => 0x0,
            AluaState::ActiveNonOptimized => 0x1,
            AluaState::Standby => 0x2,
            AluaState::Unavailable => 0x3,
            AluaState::Transitioning => 0xF,
        }
    }
}

/// One target port group (one gateway): its id, state and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroup {
    /// TARGET PORT GROUP identifier.
    pub id: u16,
    /// Its asymmetric access state for this logical unit.
    pub state: AluaState,
    /// PREF: the preferred group (the owner).
    pub preferred: bool,
    /// Relative target port identifiers of its ports.
    pub relative_ports: Vec<u16>,
}

/// States we may report (REPORT TARGET PORT GROUPS byte 1): T_SUP, U_SUP,
/// S_SUP, AN_SUP, AO_SUP.
const SUPPORTED_STATES: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;
/// STATUS CODE 02h: altered by implicit asymmetric access behaviour.
const STATUS_IMPLICIT: u8 = 0x02;

/// The access state of the port the command arrived on, `None` without
/// ALUA.
pub fn local_state(info: &LunInfo) -> Option<AluaState> {
    info.target_port_groups
        .iter()
        .find(|g| g.id == info.target_port_group)
        .map(|g| g.state)
}

/// The sense a command gets because of the port's access state (SPC-4
/// §5.15.2.4.4-6; the lists Linux's LIO allows), or `None` when it may
/// run.
pub fn refusal(info: &LunInfo, c: Cdb<'_>) -> Option<Sense> {
    let state = local_state(info)?;
    let op = c.opcode();
    let rtpg = op == MAINTENANCE_IN && c.service_action() == SA_REPORT_TARGET_PORT_GROUPS;
    let always = rtpg || matches!(op, INQUIRY | REPORT_LUNS | REQUEST_SENSE | MAINTENANCE_OUT);
    match state {
        AluaState::ActiveOptimized | AluaState::ActiveNonOptimized => None,
        AluaState::Standby => {
            let allowed = always
                || matches!(
                    op,
                    LOG_SELECT
                        | LOG_SENSE
                        | MODE_SELECT_6
                        | MODE_SELECT_10
                        | MODE_SENSE_6
                        | MODE_SENSE_10
                        | RECEIVE_DIAGNOSTIC
                        | SEND_DIAGNOSTIC
                        | READ_CAPACITY_10
                        | PERSISTENT_RESERVE_IN
                        | PERSISTENT_RESERVE_OUT
                        | READ_BUFFER
                        | WRITE_BUFFER
                )
                || (op == SERVICE_ACTION_IN_16 && c.service_action() == SA_READ_CAPACITY_16);
            (!allowed).then_some(sense::TARGET_PORT_STANDBY)
        }
        AluaState::Unavailable => {
            let allowed = always
                || matches!(
                    op,
                    RECEIVE_DIAGNOSTIC | SEND_DIAGNOSTIC | READ_BUFFER | WRITE_BUFFER
                );
            (!allowed).then_some(sense::TARGET_PORT_UNAVAILABLE)
        }
        AluaState::Transitioning => (!always).then_some(sense::ALUA_TRANSITION),
    }
}

/// REPORT TARGET PORT GROUPS parameter data (SPC-4 §6.37): the length
/// header (or, with PARAMETER DATA FORMAT 001b, the extended header with
/// the implicit transition time), then one descriptor per group.
pub fn report_target_port_groups(info: &LunInfo, c: Cdb<'_>) -> Result<Vec<u8>, Sense> {
    if info.target_port_groups.is_empty() {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    let extended = match c.byte(1) >> 5 {
        0 => false,
        1 => true,
        _ => return Err(Sense::invalid_cdb_field(1, Some(7))),
    };
    let mut d = vec![0u8; if extended { 8 } else { 4 }];
    if extended {
        // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0 (unspecified).
        put(&mut d, 4, &[0x10, 0]);
    }
    for g in &info.target_port_groups {
        let at = d.len();
        d.resize(at + 8 + 4 * g.relative_ports.len(), 0);
        let pref = if g.preferred { 0x80 } else { 0 };
        put(&mut d, at, &[pref | g.state.code(), SUPPORTED_STATES]);
        put_be16(&mut d, at + 2, g.id);
        put(&mut d, at + 5, &[STATUS_IMPLICIT]);
        let count = u8::try_from(g.relative_ports.len()).unwrap_or(u8::MAX);
        put(&mut d, at + 7, &[count]);
        for (i, port) in g.relative_ports.iter().enumerate() {
            put_be16(&mut d, at + 8 + 4 * i + 2, *port);
        }
    }
    let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    put_be32(&mut d, 0, len);
    Ok(truncate(d, c.u32(6)))
}

/// SET TARGET PORT GROUPS (SPC-4 §6.45), the CDB: the parameter list to
/// collect. Refused (INVALID FIELD IN CDB) without explicit ALUA; a
/// parameter list length of 0 is GOOD, a list that is not whole
/// descriptors or too long is PARAMETER LIST LENGTH ERROR.
pub fn plan_set_target_port_groups(info: &LunInfo, c: Cdb<'_>) -> Result<Plan, Sense> {
    if info.target_port_groups.is_empty() || info.explicit_alua.is_none() {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    let len = c.u32(6);
    if len == 0 {
        return Ok(Plan::Good);
    }
    if len < 4 || (len - 4) % 4 != 0 || len > MAX_STPG_LIST {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    Ok(Plan::NeedParameterData {
        len,
        then: ParamKind::SetTargetPortGroups,
    })
}

/// SET TARGET PORT GROUPS, the parameter list: a 4-byte header, then
/// descriptors of 4 bytes (state in byte 0 bits 3..0, group in bytes 2-3).
/// One group may be asked Active/optimized: ownership moves there
/// ([`Plan::SetTargetPortGroups`]). Any other state asked of a group must
/// be the one it will report afterwards — the non-owner state for groups
/// that will not own the unit, or its current state when no group is
/// named — else INVALID FIELD IN PARAMETER LIST (SPC-4: an unsupported
/// state or combination), as is a group that does not exist. No
/// Active/optimized descriptor and nothing to change: GOOD.
pub fn set_target_port_groups(info: &LunInfo, data: &[u8]) -> Result<Plan, Sense> {
    let Some(non_owner) = info.explicit_alua else {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    };
    if data.len() < 4 || (data.len() - 4) % 4 != 0 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let field = |at: usize, bit| Sense::invalid_param_field(u16::try_from(at).unwrap_or(0), bit);
    // (descriptor offset, group, state code), every group known.
    let mut asked = Vec::new();
    let mut owner: Option<u16> = None;
    let descriptors = data.get(4..).unwrap_or_default();
    for (i, d) in descriptors.chunks_exact(4).enumerate() {
        let at = 4 + 4 * i;
        let &[state, _, hi, lo] = d else {
            continue;
        };
        let (id, state) = (u16::from_be_bytes([hi, lo]), state & 0x0F);
        if !info.target_port_groups.iter().any(|g| g.id == id) {
            return Err(field(at + 2, None));
        }
        if state == AluaState::ActiveOptimized.code() {
            if owner.is_some_and(|o| o != id) {
                // Two owners asked for.
                return Err(field(at, Some(3)));
            }
            owner = Some(id);
        }
        asked.push((at, id, state));
    }
    for &(at, id, state) in &asked {
        if state == AluaState::ActiveOptimized.code() {
            continue;
        }
        let after = match owner {
            Some(o) if o == id => return Err(field(at, Some(3))),
            Some(_) => non_owner,
            None => info
                .target_port_groups
                .iter()
                .find(|g| g.id == id)
                .map_or(non_owner, |g| g.state),
        };
        if state != after.code() {
            return Err(field(at, Some(3)));
        }
    }
    Ok(owner.map_or(Plan::Good, |group| Plan::SetTargetPortGroups { group }))
}
