//! The logical unit: per-LUN SCSI state and command dispatch.

use std::collections::{HashMap, HashSet};

use super::cdb::*;
use super::fast::{IoPlanner, IoState};
use super::mode::ModeState;
use super::pr::{Access, PrState};
use super::sense::{self, Sense, Status};
use super::unit_attention::UnitAttentions;
use super::xcopy::CopyTarget;
use super::{
    alua, capacity, inquiry, mode, opcodes, reserve, rw, sanitize, vpd, xcopy, LunInfo, ParamKind,
    Plan,
};

mod parameter_data;

/// Kinds of reset (SAM-5 §5.12, §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET task management function.
    LogicalUnit,
    /// TARGET WARM RESET.
    TargetWarm,
    /// TARGET COLD RESET: also drops persistent reservations (no APTPL)
    /// and restores default mode parameters.
    TargetCold,
}

/// One logical unit's SCSI state (SPC-4 / SBC-3), shared by every I_T
/// nexus that addresses it.
#[derive(Debug, Clone)]
pub struct LogicalUnit {
    info: LunInfo,
    /// Initiator port name of each known I_T nexus.
    ports: HashMap<u64, String>,
    /// Every LUN of the target (REPORT LUNS).
    luns: Vec<u16>,
    ua: UnitAttentions,
    mode: ModeState,
    pr: PrState,
    /// SPC-2 RESERVE holder.
    spc2: Option<u64>,
    /// Nexuses with PREVENT ALLOW MEDIUM REMOVAL in effect.
    prevent: HashSet<u64>,
    sanitizing: bool,
    copy_targets: Vec<CopyTarget>,
    /// Last EXTENDED COPY: (list id, segments processed, ok).
    /// Held per I_T nexus (SPC-4 §6.18: results belong to the nexus
    /// that sent the EXTENDED COPY).
    last_copy: HashMap<u64, (u8, u16, bool)>,
}

/// Commands that run despite a pending unit attention (SAM-5 §5.14).
fn ua_exempt(op: u8) -> bool {
    matches!(op, INQUIRY | REPORT_LUNS | REQUEST_SENSE)
}

impl LogicalUnit {
    /// A logical unit in power-on state.
    pub fn new(info: LunInfo) -> Self {
        let copy_targets = vec![CopyTarget {
            naa: info.naa_designator,
            lun: info.lun,
            blocks: info.blocks,
            block_size: info.block_size,
        }];
        Self {
            luns: vec![info.lun],
            info,
            ports: HashMap::new(),
            ua: UnitAttentions::default(),
            mode: ModeState::default(),
            pr: PrState::default(),
            spc2: None,
            prevent: HashSet::new(),
            sanitizing: false,
            copy_targets,
            last_copy: HashMap::new(),
        }
    }

    /// The unit's description.
    pub fn info(&self) -> &LunInfo {
        &self.info
    }

    /// Whether sense data must use descriptor format (control mode page
    /// D_SENSE).
    pub fn descriptor_sense(&self) -> bool {
        self.mode.d_sense
    }

    /// Sense bytes for `s` in the current format.
    pub fn encode_sense(&self, s: &Sense) -> Vec<u8> {
        s.encode(self.mode.d_sense)
    }

    /// Whether the write cache is enabled (caching mode page WCE). When
    /// false every write must be durable before GOOD.
    pub fn write_cache_enabled(&self) -> bool {
        self.mode.wce
    }

    /// Persistent reservation state (read-only view).
    pub fn persistent_reservations(&self) -> &PrState {
        &self.pr
    }

    /// Sets the target's LUN list (REPORT LUNS); other nexuses get
    /// REPORTED LUNS DATA HAS CHANGED when it differs.
    pub fn set_lun_list(&mut self, luns: &[u16]) {
        if self.luns != luns {
            self.luns = luns.to_vec();
            let all: Vec<u64> = self.ports.keys().copied().collect();
            self.ua
                .push_others(all.into_iter(), None, sense::REPORTED_LUNS_DATA_CHANGED);
        }
    }

    /// Replaces the target port groups and their ALUA states (implicit
    /// ALUA: a failover or failback). When they differ every I_T nexus gets
    /// ASYMMETRIC ACCESS STATE CHANGED (SPC-4 §5.15.2.6). Returns whether
    /// anything changed.
    pub fn set_port_groups(&mut self, groups: Vec<super::PortGroup>) -> bool {
        if self.info.target_port_groups == groups {
            return false;
        }
        self.info.target_port_groups = groups;
        let all: Vec<u64> = self.ports.keys().copied().collect();
        self.ua.push_others(
            all.into_iter(),
            None,
            sense::ASYMMETRIC_ACCESS_STATE_CHANGED,
        );
        true
    }

    /// Sets the logical units EXTENDED COPY may reach (default: this one).
    pub fn set_copy_targets(&mut self, targets: Vec<CopyTarget>) {
        self.copy_targets = targets;
    }

    /// A new I_T nexus: it starts with POWER ON, RESET, OR BUS DEVICE
    /// RESET OCCURRED.
    pub fn nexus_added(&mut self, nexus: u64, initiator_port: &str) {
        self.ports.insert(nexus, initiator_port.to_owned());
        self.ua.push(nexus, sense::POWER_ON_RESET);
    }

    /// An I_T nexus went away: its unit attentions, SPC-2 reservation and
    /// medium removal prevention go; PR registrations stay.
    pub fn nexus_lost(&mut self, nexus: u64) {
        self.ua.remove(nexus);
        self.ports.remove(&nexus);
        self.last_copy.remove(&nexus);
        self.prevent.remove(&nexus);
        if self.spc2 == Some(nexus) {
            self.spc2 = None;
        }
    }

    /// A reset from `issuer` (if any): SPC-2 reservation and removal
    /// prevention cleared, unit attention for every other nexus.
    pub fn reset(&mut self, kind: ResetKind, issuer: Option<u64>) {
        self.spc2 = None;
        self.prevent.clear();
        let s = match kind {
            ResetKind::LogicalUnit => sense::BUS_DEVICE_RESET,
            _ => sense::POWER_ON_RESET,
        };
        if kind == ResetKind::TargetCold {
            self.pr = PrState::default();
            self.mode = ModeState::default();
        }
        let all: Vec<u64> = self.ports.keys().copied().collect();
        self.ua.push_others(all.into_iter(), issuer, s);
    }

    /// Another I_T nexus's CLEAR TASK SET aborted commands of `nexus`
    /// (SAM-5 §5.6, §7.4): with TAS zero (`mode::TAS`) they
    /// ended without status, and `nexus` learns it from COMMANDS CLEARED
    /// BY ANOTHER INITIATOR. Resets do not call this: their own unit
    /// attention says it.
    pub fn commands_cleared(&mut self, nexus: u64) {
        if !super::mode::TAS {
            self.ua
                .push(nexus, sense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        }
    }

    /// A SANITIZE finished (or failed): the unit is ready again.
    pub fn sanitize_done(&mut self) {
        self.sanitizing = false;
    }

    /// An EXTENDED COPY finished: remembered for RECEIVE COPY RESULTS.
    pub fn copy_done(&mut self, nexus: u64, list_id: u8, segments_processed: u16, ok: bool) {
        self.last_copy
            .insert(nexus, (list_id, segments_processed, ok));
    }

    fn port(&self, nexus: u64) -> String {
        self.ports
            .get(&nexus)
            .cloned()
            .unwrap_or_else(|| format!("nexus-{nexus}"))
    }

    fn nexuses_of(&self, port: &str) -> Vec<u64> {
        self.ports
            .iter()
            .filter(|(_, p)| p.as_str() == port)
            .map(|(n, _)| *n)
            .collect()
    }

    /// The word a lock-free READ/WRITE planner checks (see
    /// [`super::fast`]); the owner publishes it whenever it lets go of the
    /// unit.
    pub fn io_state(&self) -> IoState {
        // A port that is not Active (ALUA Standby, Unavailable,
        // Transitioning — a failover can move it at run time) refuses
        // READ/WRITE: only the locked planner answers then.
        let active = matches!(
            super::alua::local_state(&self.info),
            None | Some(super::AluaState::ActiveOptimized | super::AluaState::ActiveNonOptimized)
        );
        let eligible =
            active && self.spc2.is_none() && self.pr.reservation.is_none() && !self.sanitizing;
        IoState::new(eligible, self.mode.swp, self.mode.wce, self.ua.epoch())
    }

    /// The word `nexus` (port `initiator_port`) may remember for the
    /// lock-free planner: the current [`io_state`](Self::io_state) when
    /// nothing is pending for it and its port is known, else
    /// `IoState(0)` (never eligible). Asked right after a locked
    /// [`plan`](Self::plan), under the same lock.
    pub fn confirmed_state(&self, nexus: u64, initiator_port: &str) -> IoState {
        let known = initiator_port.is_empty()
            || self.ports.get(&nexus).map(String::as_str) == Some(initiator_port);
        if !known || self.ua.pending(nexus) {
            return IoState::default();
        }
        self.io_state()
    }

    /// A lock-free planner for this unit's plain READs and WRITEs.
    pub fn io_planner(&self) -> IoPlanner {
        IoPlanner::new(self.info.clone())
    }

    /// Whether `nexus` has a unit attention pending.
    pub fn has_unit_attention(&self, nexus: u64) -> bool {
        self.ua.pending(nexus)
    }

    /// Whether any medium-removal prevention is in effect.
    pub fn removal_prevented(&self) -> bool {
        !self.prevent.is_empty()
    }

    /// RESERVATION CONFLICT for a command blocked by an SPC-2 reservation
    /// or a persistent reservation (SPC-4 §5.13.1 table 43, SBC-3 table
    /// 13). Cheap when nothing is reserved.
    pub fn check_reservation(&self, nexus: u64, cdb: &[u8]) -> Option<Status> {
        if self.spc2.is_none() && self.pr.reservation.is_none() {
            return None;
        }
        let c = Cdb(cdb);
        let op = c.opcode();
        if let Some(h) = self.spc2 {
            let allowed = matches!(
                op,
                INQUIRY | REPORT_LUNS | REQUEST_SENSE | RELEASE_6 | RELEASE_10 | MAINTENANCE_IN
            );
            if h != nexus && !allowed {
                return Some(Status::ReservationConflict);
            }
        }
        let port = self.port(nexus);
        if self.pr.conflicts(&port, access_class(c)) {
            return Some(Status::ReservationConflict);
        }
        None
    }

    /// Plans one command from `nexus` (initiator port name
    /// `initiator_port`, e.g. `iqn...,i,0x<ISID>`). `edtl` is the expected
    /// data transfer length from the transport header.
    pub fn plan(&mut self, nexus: u64, initiator_port: &str, cdb: &[u8], edtl: u32) -> Plan {
        if !initiator_port.is_empty()
            && self.ports.get(&nexus).map(String::as_str) != Some(initiator_port)
        {
            self.ports.insert(nexus, initiator_port.to_owned());
        }
        let c = Cdb(cdb);
        let op = c.opcode();
        if !ua_exempt(op) {
            if let Some(ua) = self.ua.pop(nexus) {
                return Plan::Check(ua);
            }
        }
        if let Some(s) = alua::refusal(&self.info, c) {
            return Plan::Check(s);
        }
        if c.control() & 0x04 != 0 {
            // NACA: ACA is not supported (SAM-5 §5.10).
            let byte = u16::try_from(cdb_len(op).saturating_sub(1)).unwrap_or(0);
            return Plan::Check(Sense::invalid_cdb_field(byte, Some(2)));
        }
        if let Some(status) = self.check_reservation(nexus, cdb) {
            return Plan::Status(status);
        }
        if self.sanitizing && !ua_exempt(op) {
            return Plan::Check(sense::SANITIZE_IN_PROGRESS);
        }
        match self.dispatch(nexus, c, edtl) {
            Ok(p) => p,
            Err(s) => Plan::Check(s),
        }
    }

    fn dispatch(&mut self, nexus: u64, c: Cdb<'_>, edtl: u32) -> Result<Plan, Sense> {
        let info = &self.info;
        let swp = self.mode.swp;
        let thin = info.thin_provisioning;
        Ok(match c.opcode() {
            TEST_UNIT_READY => Plan::Good,
            REQUEST_SENSE => {
                let desc = c.bit(1, 0);
                let s = if self.sanitizing {
                    sense::SANITIZE_IN_PROGRESS
                } else {
                    self.ua.pop(nexus).unwrap_or(sense::NO_SENSE)
                };
                Plan::DataIn(truncate(s.encode(desc), u32::from(c.byte(4))))
            }
            INQUIRY => {
                let (evpd, page, alloc) = inquiry::parse(c)?;
                let d = if evpd {
                    vpd::page(info, page)?
                } else {
                    inquiry::standard(info, 0x00)
                };
                Plan::DataIn(truncate(d, u32::from(alloc)))
            }
            MODE_SENSE_6 | MODE_SENSE_10 => Plan::DataIn(mode::mode_sense(info, &self.mode, c)?),
            MODE_SELECT_6 | MODE_SELECT_10 => {
                let ten = c.opcode() == MODE_SELECT_10;
                if !c.bit(1, 4) {
                    return Err(Sense::invalid_cdb_field(1, Some(4)));
                }
                if c.bit(1, 0) {
                    return Err(Sense::invalid_cdb_field(1, Some(0)));
                }
                let len = if ten {
                    u32::from(c.u16(7))
                } else {
                    u32::from(c.byte(4))
                };
                if len == 0 {
                    Plan::Good
                } else {
                    Plan::NeedParameterData {
                        len,
                        then: ParamKind::ModeSelect { ten, sp: false },
                    }
                }
            }
            RESERVE_6 | RESERVE_10 => {
                let in_use = !self.pr.registrations.is_empty();
                reserve::reserve(&mut self.spc2, nexus, in_use, c)
            }
            RELEASE_6 | RELEASE_10 => {
                let in_use = self.pr.reservation.is_some();
                reserve::release(&mut self.spc2, nexus, in_use)
            }
            START_STOP_UNIT => {
                let pc = c.byte(4) >> 4;
                if !matches!(pc, 0 | 1 | 2 | 3 | 7 | 0xA | 0xB) {
                    return Err(Sense::invalid_cdb_field(4, Some(7)));
                }
                Plan::Good
            }
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                if c.byte(4) & 0x03 != 0 {
                    self.prevent.insert(nexus);
                } else {
                    self.prevent.remove(&nexus);
                }
                Plan::Good
            }
            READ_CAPACITY_10 => capacity::read_capacity_10(info, c),
            SERVICE_ACTION_IN_16 => match c.service_action() {
                SA_READ_CAPACITY_16 => capacity::read_capacity_16(info, c),
                SA_GET_LBA_STATUS => {
                    let lba = c.u64(2);
                    if lba >= info.blocks {
                        return Err(sense::LBA_OUT_OF_RANGE);
                    }
                    Plan::GetLbaStatus {
                        lba,
                        alloc_len: c.u32(10),
                    }
                }
                _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
            },
            READ_6 | READ_10 | READ_12 | READ_16 => rw::read_write(info, swp, c, false)?,
            WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 => rw::read_write(info, swp, c, true)?,
            VERIFY_10 | VERIFY_12 | VERIFY_16 => rw::verify(info, c)?,
            WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16 => {
                rw::write_and_verify(info, swp, c)?
            }
            SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 => rw::synchronize_cache(info, c)?,
            PRE_FETCH_10 | PRE_FETCH_16 => rw::pre_fetch(info, c)?,
            WRITE_SAME_10 | WRITE_SAME_16 => rw::write_same(info, swp, c, edtl)?,
            COMPARE_AND_WRITE => rw::compare_and_write(info, swp, c, edtl)?,
            ORWRITE_16 => rw::or_write(info, swp, c)?,
            UNMAP if thin => {
                if c.byte(1) & 0x01 != 0 && !thin {
                    return Err(Sense::invalid_cdb_field(1, Some(0)));
                }
                if info.read_only || swp {
                    return Err(sense::WRITE_PROTECTED);
                }
                match u32::from(c.u16(7)) {
                    0 => Plan::Good,
                    len => Plan::NeedParameterData {
                        len,
                        then: ParamKind::Unmap,
                    },
                }
            }
            SANITIZE => {
                let p = sanitize::plan(info, swp, c);
                if matches!(p, Plan::Sanitize { .. }) {
                    self.sanitizing = true;
                }
                p
            }
            PERSISTENT_RESERVE_IN => {
                let d = self.pr.reserve_in(c.service_action(), info.relative_port)?;
                Plan::DataIn(truncate(d, u32::from(c.u16(7))))
            }
            PERSISTENT_RESERVE_OUT => {
                let sa = c.service_action();
                if sa >= pr_action_limit() {
                    return Err(Sense::invalid_cdb_field(1, Some(4)));
                }
                if c.u32(5) != 24 {
                    return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
                }
                Plan::NeedParameterData {
                    len: 24,
                    then: ParamKind::PersistentReserveOut {
                        service_action: sa,
                        pr_type: c.byte(2) & 0x0F,
                        scope: c.byte(2) >> 4,
                    },
                }
            }
            EXTENDED_COPY => {
                if c.service_action() != 0 {
                    return Err(Sense::invalid_cdb_field(1, Some(4)));
                }
                match c.u32(10) {
                    0 => Plan::Good,
                    len => Plan::NeedParameterData {
                        len,
                        then: ParamKind::ExtendedCopy,
                    },
                }
            }
            RECEIVE_COPY_RESULTS => {
                let alloc = c.u32(10);
                match c.service_action() {
                    0x03 => Plan::DataIn(truncate(
                        xcopy::operating_parameters(info.block_size),
                        alloc,
                    )),
                    // COPY STATUS: the held result is discarded once
                    // returned (SPC-4 §6.18.3).
                    0x00 => match self.last_copy.get(&nexus).copied() {
                        Some((id, n, ok)) if id == c.byte(2) => {
                            self.last_copy.remove(&nexus);
                            Plan::DataIn(truncate(xcopy::copy_status(n, ok), alloc))
                        }
                        _ => return Err(Sense::invalid_cdb_field(2, None)),
                    },
                    _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
                }
            }
            REPORT_LUNS => capacity::report_luns(&self.luns, c.0),
            MAINTENANCE_IN if c.service_action() == SA_REPORT_SUPPORTED_OPCODES => {
                Plan::DataIn(truncate(opcodes::report(c, thin)?, c.u32(6)))
            }
            MAINTENANCE_IN if c.service_action() == alua::SA_REPORT_TARGET_PORT_GROUPS => {
                Plan::DataIn(alua::report_target_port_groups(info, c)?)
            }
            MAINTENANCE_IN => return Err(Sense::invalid_cdb_field(1, Some(4))),
            alua::MAINTENANCE_OUT if c.service_action() == alua::SA_SET_TARGET_PORT_GROUPS => {
                alua::plan_set_target_port_groups(info, c)?
            }
            alua::MAINTENANCE_OUT => return Err(Sense::invalid_cdb_field(1, Some(4))),
            READ_DEFECT_DATA_10 => {
                let mut d = vec![0u8; 4];
                crate::wire::put(&mut d, 1, &[c.byte(2) & 0x1F]);
                Plan::DataIn(truncate(d, u32::from(c.u16(7))))
            }
            READ_DEFECT_DATA_12 => {
                let mut d = vec![0u8; 8];
                crate::wire::put(&mut d, 1, &[c.byte(1) & 0x1F]);
                Plan::DataIn(truncate(d, c.u32(6)))
            }
            _ => return Err(sense::INVALID_COMMAND_OPERATION_CODE),
        })
    }
}

/// Service actions of PERSISTENT RESERVE OUT we accept (0..=6; REGISTER
/// AND MOVE is not supported).
const fn pr_action_limit() -> u8 {
    7
}

/// Conflict class of a command (SPC-4 §5.13.1 table 43, SBC-3 table 13).
pub(crate) fn access_class(c: Cdb<'_>) -> Access {
    match c.opcode() {
        INQUIRY
        | REPORT_LUNS
        | REQUEST_SENSE
        | PERSISTENT_RESERVE_IN
        | PERSISTENT_RESERVE_OUT
        | MAINTENANCE_IN
        | TEST_UNIT_READY
        | READ_CAPACITY_10
        | RECEIVE_COPY_RESULTS => Access::Allowed,
        SERVICE_ACTION_IN_16 if c.service_action() == SA_READ_CAPACITY_16 => Access::Allowed,
        PREVENT_ALLOW_MEDIUM_REMOVAL if c.byte(4) & 0x03 == 0 => Access::Allowed,
        READ_6 | READ_10 | READ_12 | READ_16 | VERIFY_10 | VERIFY_12 | VERIFY_16 | MODE_SENSE_6
        | MODE_SENSE_10 | SERVICE_ACTION_IN_16 | READ_DEFECT_DATA_10 | READ_DEFECT_DATA_12
        | PRE_FETCH_10 | PRE_FETCH_16 => Access::Read,
        _ => Access::Write,
    }
}
