//! Persistent reservations (SPC-4 §5.13, PERSISTENT RESERVE IN §6.14,
//! PERSISTENT RESERVE OUT §6.15).
//!
//! Registrations are keyed by initiator port name (the iSCSI
//! `iqn...,i,0x<ISID>` string), so they survive the loss of an I_T nexus
//! (APTPL is not supported: they do not survive a restart).

use super::cdb::be64;
use super::sense::{self, Sense};
use crate::wire::{put, put_be16, put_be32, u8_at};

/// PERSISTENT RESERVE OUT service actions (SPC-4 table 174).
pub mod action {
    /// REGISTER.
    pub const REGISTER: u8 = 0;
    /// RESERVE.
    pub const RESERVE: u8 = 1;
    /// RELEASE.
    pub const RELEASE: u8 = 2;
    /// CLEAR.
    pub const CLEAR: u8 = 3;
    /// PREEMPT.
    pub const PREEMPT: u8 = 4;
    /// PREEMPT AND ABORT.
    pub const PREEMPT_AND_ABORT: u8 = 5;
    /// REGISTER AND IGNORE EXISTING KEY.
    pub const REGISTER_AND_IGNORE: u8 = 6;
    /// REGISTER AND MOVE (not supported).
    pub const REGISTER_AND_MOVE: u8 = 7;
}

/// Persistent reservation types (SPC-4 table 176).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrType {
    /// Write Exclusive.
    WriteExclusive,
    /// Exclusive Access.
    ExclusiveAccess,
    /// Write Exclusive – Registrants Only.
    WriteExclusiveRegistrantsOnly,
    /// Exclusive Access – Registrants Only.
    ExclusiveAccessRegistrantsOnly,
    /// Write Exclusive – All Registrants.
    WriteExclusiveAllRegistrants,
    /// Exclusive Access – All Registrants.
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// All types, in code order.
    pub const ALL: [PrType; 6] = [
        PrType::WriteExclusive,
        PrType::ExclusiveAccess,
        PrType::WriteExclusiveRegistrantsOnly,
        PrType::ExclusiveAccessRegistrantsOnly,
        PrType::WriteExclusiveAllRegistrants,
        PrType::ExclusiveAccessAllRegistrants,
    ];

    /// Decodes a TYPE field.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The TYPE field value.
    pub const fn code(self) -> u8 {
        match self {
            PrType::WriteExclusive => 1,
            PrType::ExclusiveAccess => 3,
            PrType::WriteExclusiveRegistrantsOnly => 5,
            PrType::ExclusiveAccessRegistrantsOnly => 6,
            PrType::WriteExclusiveAllRegistrants => 7,
            PrType::ExclusiveAccessAllRegistrants => 8,
        }
    }

    /// All-registrants types: every registrant is a reservation holder.
    pub const fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants-only or all-registrants types.
    pub const fn registrants_share(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Exclusive access types (reads are restricted too).
    pub const fn exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess
                | PrType::ExclusiveAccessRegistrantsOnly
                | PrType::ExclusiveAccessAllRegistrants
        )
    }
}

/// How a command touches the medium, for the conflict table (SPC-4 §5.13.1
/// table 43, SBC-3 §4.17 table 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Never conflicts (INQUIRY, REPORT LUNS, PR IN/OUT, TEST UNIT READY, ...).
    Allowed,
    /// Reads: conflict under exclusive access types.
    Read,
    /// Writes and other state changes: conflict under every type.
    Write,
}

/// The reservation held on the logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Holder's initiator port name (ignored for all-registrants types).
    pub holder: String,
    /// Reservation type.
    pub pr_type: PrType,
}

/// Persistent reservation state of one logical unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrState {
    /// PRgeneration.
    pub generation: u32,
    /// Registrations, in registration order: (initiator port, key).
    pub registrations: Vec<(String, u64)>,
    /// The reservation, if any.
    pub reservation: Option<Reservation>,
}

/// Result of a successful PERSISTENT RESERVE OUT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProutOutcome {
    /// Unit attentions to establish: (initiator port, sense).
    pub unit_attentions: Vec<(String, Sense)>,
    /// Initiator ports whose registrations were preempted.
    pub preempted: Vec<String>,
}

/// Error of PERSISTENT RESERVE OUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProutError {
    /// RESERVATION CONFLICT status.
    Conflict,
    /// CHECK CONDITION.
    Check(Sense),
}

impl From<Sense> for ProutError {
    fn from(s: Sense) -> Self {
        ProutError::Check(s)
    }
}

impl PrState {
    /// The key `port` is registered with.
    pub fn key_of(&self, port: &str) -> Option<u64> {
        self.registrations
            .iter()
            .find(|(p, _)| p == port)
            .map(|(_, k)| *k)
    }

    /// Whether `port` holds the reservation.
    pub fn is_holder(&self, port: &str) -> bool {
        match &self.reservation {
            Some(r) if r.pr_type.all_registrants() => self.key_of(port).is_some(),
            Some(r) => r.holder == port,
            None => false,
        }
    }

    /// Whether a command of class `access` from `port` conflicts with the
    /// reservation (SPC-4 §5.13.1 table 43). Cheap when nothing is reserved.
    pub fn conflicts(&self, port: &str, access: Access) -> bool {
        let Some(r) = &self.reservation else {
            return false;
        };
        if access == Access::Allowed || self.is_holder(port) {
            return false;
        }
        let registered = self.key_of(port).is_some();
        match access {
            Access::Allowed => false,
            Access::Read => {
                r.pr_type.exclusive_access() && !(r.pr_type.registrants_share() && registered)
            }
            Access::Write => !(r.pr_type.registrants_share() && registered),
        }
    }

    fn ports_except(&self, port: &str) -> Vec<String> {
        self.registrations
            .iter()
            .filter(|(p, _)| p != port)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Removes `port`'s registration; releases the reservation when it
    /// was the holder (or the last all-registrants registrant).
    fn unregister(&mut self, port: &str, out: &mut ProutOutcome) {
        self.registrations.retain(|(p, _)| p != port);
        let release = match &self.reservation {
            Some(r) if r.pr_type.all_registrants() => self.registrations.is_empty(),
            Some(r) => r.holder == port,
            None => false,
        };
        if release {
            if let Some(r) = self.reservation.take() {
                if matches!(
                    r.pr_type,
                    PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly
                ) {
                    for p in self.ports_except(port) {
                        out.unit_attentions.push((p, sense::RESERVATIONS_RELEASED));
                    }
                }
            }
        }
    }

    /// PERSISTENT RESERVE OUT with its 24-byte parameter list (SPC-4
    /// §6.15). `data` has already been checked to be 24 bytes long.
    pub fn reserve_out(
        &mut self,
        port: &str,
        sa: u8,
        scope: u8,
        type_code: u8,
        data: &[u8],
    ) -> Result<ProutOutcome, ProutError> {
        let key = be64(data, 0);
        let sa_key = be64(data, 8);
        let flags = u8_at(data, 20);
        if flags & 0x08 != 0 {
            // SPEC_I_PT: not supported.
            return Err(Sense::invalid_param_field(20, Some(3)).into());
        }
        if flags & 0x01 != 0 {
            // APTPL: not supported.
            return Err(Sense::invalid_param_field(20, Some(0)).into());
        }
        let mut out = ProutOutcome::default();
        let current = self.key_of(port);
        match sa {
            action::REGISTER | action::REGISTER_AND_IGNORE => {
                match current {
                    None => {
                        if sa == action::REGISTER && key != 0 {
                            return Err(ProutError::Conflict);
                        }
                        if sa_key != 0 {
                            self.registrations.push((port.to_owned(), sa_key));
                        }
                    }
                    Some(k) => {
                        if sa == action::REGISTER && k != key {
                            return Err(ProutError::Conflict);
                        }
                        if sa_key == 0 {
                            self.unregister(port, &mut out);
                        } else if let Some(e) =
                            self.registrations.iter_mut().find(|(p, _)| p == port)
                        {
                            e.1 = sa_key;
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
                return Ok(out);
            }
            _ => {}
        }
        // Every other service action requires a matching registration.
        if current != Some(key) {
            return Err(ProutError::Conflict);
        }
        let typed = || -> Result<PrType, ProutError> {
            if scope != 0 {
                return Err(Sense::invalid_cdb_field(2, Some(7)).into());
            }
            PrType::from_code(type_code)
                .ok_or(ProutError::Check(Sense::invalid_cdb_field(2, Some(3))))
        };
        match sa {
            action::RESERVE => {
                let t = typed()?;
                match &self.reservation {
                    None => {
                        self.reservation = Some(Reservation {
                            holder: port.to_owned(),
                            pr_type: t,
                        });
                    }
                    Some(r) if self.is_holder(port) && r.pr_type == t => {}
                    Some(_) => return Err(ProutError::Conflict),
                }
            }
            action::RELEASE => {
                let Some(r) = self.reservation.clone() else {
                    return Ok(out);
                };
                if !self.is_holder(port) {
                    return Ok(out);
                }
                if scope != 0 || type_code != r.pr_type.code() {
                    return Err(sense::INVALID_RELEASE_OF_PR.into());
                }
                self.reservation = None;
                if r.pr_type.registrants_share() {
                    for p in self.ports_except(port) {
                        out.unit_attentions.push((p, sense::RESERVATIONS_RELEASED));
                    }
                }
            }
            action::CLEAR => {
                for p in self.ports_except(port) {
                    out.unit_attentions.push((p, sense::RESERVATIONS_PREEMPTED));
                }
                self.registrations.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
            }
            action::PREEMPT | action::PREEMPT_AND_ABORT => {
                let t = typed()?;
                self.preempt(port, sa_key, t, &mut out)?;
                self.generation = self.generation.wrapping_add(1);
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4)).into()),
        }
        Ok(out)
    }

    /// PREEMPT (SPC-4 §5.13.11.2).
    fn preempt(
        &mut self,
        port: &str,
        sa_key: u64,
        t: PrType,
        out: &mut ProutOutcome,
    ) -> Result<(), ProutError> {
        let remove_key = |this: &mut PrState, out: &mut ProutOutcome, keep_self: bool| -> usize {
            let victims: Vec<String> = this
                .registrations
                .iter()
                .filter(|(p, k)| *k == sa_key && !(keep_self && p == port))
                .map(|(p, _)| p.clone())
                .collect();
            this.registrations
                .retain(|(p, k)| !(*k == sa_key && !(keep_self && p == port)));
            for v in &victims {
                if v != port {
                    out.unit_attentions
                        .push((v.clone(), sense::REGISTRATIONS_PREEMPTED));
                    out.preempted.push(v.clone());
                }
            }
            victims.len()
        };
        match self.reservation.clone() {
            None => {
                if sa_key == 0 {
                    return Err(Sense::invalid_param_field(8, None).into());
                }
                if remove_key(self, out, false) == 0 {
                    return Err(ProutError::Conflict);
                }
            }
            Some(r) if r.pr_type.all_registrants() => {
                if sa_key == 0 {
                    let others = self.ports_except(port);
                    self.registrations.retain(|(p, _)| p == port);
                    for p in others {
                        out.unit_attentions
                            .push((p.clone(), sense::REGISTRATIONS_PREEMPTED));
                        out.preempted.push(p);
                    }
                    self.reservation = Some(Reservation {
                        holder: port.to_owned(),
                        pr_type: t,
                    });
                } else if remove_key(self, out, false) == 0 {
                    return Err(ProutError::Conflict);
                }
            }
            Some(r) => {
                let holder_key = self.key_of(&r.holder);
                if holder_key == Some(sa_key) {
                    remove_key(self, out, true);
                    let type_changed = r.pr_type != t;
                    self.reservation = Some(Reservation {
                        holder: port.to_owned(),
                        pr_type: t,
                    });
                    if type_changed {
                        for p in self.ports_except(port) {
                            out.unit_attentions.push((p, sense::RESERVATIONS_RELEASED));
                        }
                    }
                } else {
                    if sa_key == 0 {
                        return Err(Sense::invalid_param_field(8, None).into());
                    }
                    if remove_key(self, out, false) == 0 {
                        return Err(ProutError::Conflict);
                    }
                }
            }
        }
        Ok(())
    }

    /// PERSISTENT RESERVE IN data (SPC-4 §6.14) for service action `sa`
    /// (0 READ KEYS, 1 READ RESERVATION, 2 REPORT CAPABILITIES, 3 READ FULL
    /// STATUS), before truncation. `relative_port` goes in full status.
    pub fn reserve_in(&self, sa: u8, relative_port: u16) -> Result<Vec<u8>, Sense> {
        let mut d = vec![0u8; 8];
        put_be32(&mut d, 0, self.generation);
        match sa {
            0 => {
                for (_, k) in self.registrations.iter().take(4096) {
                    d.extend_from_slice(&k.to_be_bytes());
                }
            }
            1 => {
                if let Some(r) = &self.reservation {
                    let key = if r.pr_type.all_registrants() {
                        0
                    } else {
                        self.key_of(&r.holder).unwrap_or(0)
                    };
                    let mut e = vec![0u8; 16];
                    put(&mut e, 0, &key.to_be_bytes());
                    put(&mut e, 13, &[r.pr_type.code()]);
                    d.extend_from_slice(&e);
                }
            }
            2 => {
                // LENGTH 8; TMV=1, ALLOW COMMANDS 0; the six type bits.
                let mut c = vec![0u8; 8];
                put_be16(&mut c, 0, 8);
                put(&mut c, 3, &[0x80]);
                put(&mut c, 4, &[0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01]);
                return Ok(c);
            }
            3 => {
                for (p, k) in self.registrations.iter().take(1024) {
                    let mut e = vec![0u8; 24];
                    put(&mut e, 0, &k.to_be_bytes());
                    if let Some(r) = &self.reservation {
                        let holder = r.pr_type.all_registrants() || &r.holder == p;
                        if holder {
                            put(&mut e, 12, &[0x01, r.pr_type.code()]);
                        }
                    }
                    put_be16(&mut e, 18, relative_port);
                    let tid = transport_id(p);
                    put_be32(&mut e, 20, u32::try_from(tid.len()).unwrap_or(0));
                    e.extend_from_slice(&tid);
                    d.extend_from_slice(&e);
                }
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
        }
        let len = u32::try_from(d.len().saturating_sub(8)).unwrap_or(u32::MAX);
        put_be32(&mut d, 4, len);
        Ok(d)
    }
}

/// iSCSI TransportID, format 01b (initiator port name with ISID; SPC-4
/// §7.6.4.6): NUL-terminated, padded to a multiple of four, at least 20.
pub fn transport_id(port: &str) -> Vec<u8> {
    let mut name: Vec<u8> = port.bytes().take(252).collect();
    name.push(0);
    while name.len() % 4 != 0 || name.len() < 16 {
        name.push(0);
    }
    let mut t = vec![0x45, 0];
    t.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
    t.extend_from_slice(&name);
    t
}
