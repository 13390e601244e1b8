//! A logical unit's commands that carry parameter data (MODE SELECT,
//! UNMAP, PERSISTENT RESERVE OUT, SET TARGET PORT GROUPS, EXTENDED COPY,
//! SANITIZE OVERWRITE): the second half of their planning, once the
//! frontend collected the data-out [`Plan::NeedParameterData`] asked for.

use super::LogicalUnit;
use crate::scsi::pr::ProutError;
use crate::scsi::sense::{self, Sense, Status};
use crate::scsi::{alua, mode, sanitize, unmap, xcopy, ParamKind, Plan};

impl LogicalUnit {
    /// Completes a command whose parameter data (`data`, the data-out)
    /// the caller collected after [`Plan::NeedParameterData`].
    pub fn with_parameter_data(&mut self, nexus: u64, kind: ParamKind, data: &[u8]) -> Plan {
        match self.parameter_data(nexus, kind, data) {
            Ok(p) => p,
            Err(s) => Plan::Check(s),
        }
    }

    fn parameter_data(&mut self, nexus: u64, kind: ParamKind, data: &[u8]) -> Result<Plan, Sense> {
        Ok(match kind {
            ParamKind::ModeSelect { ten, sp } => {
                if sp {
                    return Err(Sense::invalid_cdb_field(1, Some(0)));
                }
                if mode::mode_select(&self.info, &mut self.mode, ten, data)? {
                    let all: Vec<u64> = self.ports.keys().copied().collect();
                    self.ua.push_others(
                        all.into_iter(),
                        Some(nexus),
                        sense::MODE_PARAMETERS_CHANGED,
                    );
                }
                Plan::Good
            }
            ParamKind::Unmap => {
                let ranges = unmap::parse(&self.info, data)?;
                if ranges.is_empty() {
                    Plan::Good
                } else {
                    Plan::Unmap(ranges)
                }
            }
            ParamKind::PersistentReserveOut {
                service_action,
                pr_type,
                scope,
            } => {
                if data.len() != 24 {
                    return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
                }
                let port = self.port(nexus);
                match self
                    .pr
                    .reserve_out(&port, service_action, scope, pr_type, data)
                {
                    Err(ProutError::Conflict) => Plan::Status(Status::ReservationConflict),
                    Err(ProutError::Check(s)) => return Err(s),
                    Ok(out) => {
                        for (p, s) in &out.unit_attentions {
                            for n in self.nexuses_of(p) {
                                self.ua.push(n, *s);
                            }
                        }
                        if service_action == crate::scsi::pr::action::PREEMPT_AND_ABORT {
                            Plan::PreemptAndAbort {
                                preempted: out.preempted,
                            }
                        } else {
                            Plan::Good
                        }
                    }
                }
            }
            ParamKind::SetTargetPortGroups => alua::set_target_port_groups(&self.info, data)?,
            ParamKind::ExtendedCopy => {
                let list = xcopy::parse(data, &self.copy_targets)?;
                let writes_self = list.segments.iter().any(|s| s.dst_lun == self.info.lun);
                if writes_self && (self.info.read_only || self.mode.swp) {
                    return Err(sense::WRITE_PROTECTED);
                }
                if list.segments.is_empty() {
                    self.last_copy.insert(nexus, (list.list_id, 0, true));
                    Plan::Good
                } else {
                    let n = u16::try_from(list.segments.len()).unwrap_or(u16::MAX);
                    self.last_copy.insert(nexus, (list.list_id, n, true));
                    Plan::ExtendedCopy {
                        list_id: list.list_id,
                        segments: list.segments,
                    }
                }
            }
            ParamKind::SanitizeOverwrite { immed, .. } => {
                let action = sanitize::overwrite(&self.info, data)?;
                self.sanitizing = true;
                Plan::Sanitize { action, immed }
            }
        })
    }
}
