//! SPC-2 RESERVE(6/10) / RELEASE(6/10) (SPC-2 §7.21-§7.24; obsolete in
//! SPC-4 but still used by initiators and tested by libiscsi).

use super::cdb::{Cdb, RESERVE_10};
use super::sense::{Sense, Status};
use super::Plan;

/// RESERVE: the unit becomes reserved to `nexus`, unless another nexus
/// holds it (RESERVATION CONFLICT) or persistent reservations are in use.
pub(crate) fn reserve(holder: &mut Option<u64>, nexus: u64, pr_in_use: bool, cdb: Cdb<'_>) -> Plan {
    // Third-party and extent reservations are not supported.
    let bad = if cdb.opcode() == RESERVE_10 {
        0x13
    } else {
        0x01
    };
    if cdb.byte(1) & bad != 0 {
        return Plan::Check(Sense::invalid_cdb_field(1, None));
    }
    if pr_in_use {
        return Plan::Status(Status::ReservationConflict);
    }
    match holder {
        Some(h) if *h != nexus => Plan::Status(Status::ReservationConflict),
        _ => {
            *holder = Some(nexus);
            Plan::Good
        }
    }
}

/// RELEASE: releases the reservation if `nexus` holds it; otherwise GOOD
/// without effect.
pub(crate) fn release(holder: &mut Option<u64>, nexus: u64, pr_in_use: bool) -> Plan {
    if pr_in_use {
        return Plan::Status(Status::ReservationConflict);
    }
    if *holder == Some(nexus) {
        *holder = None;
    }
    Plan::Good
}
