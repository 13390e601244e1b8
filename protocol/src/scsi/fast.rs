//! Lock-free planning of plain READ and WRITE commands.
//!
//! A [`LogicalUnit`](super::LogicalUnit) is shared by every I_T nexus and
//! its owner keeps it behind a lock. A plain READ or WRITE(6/10/12/16) of
//! a nexus with no unit attention pending, on a unit with no reservation
//! and no SANITIZE in progress, through a port that is ALUA Active, depends
//! only on the unit's geometry in [`LunInfo`] and two mode bits (SWP,
//! WCE). The owner publishes those
//! facts as one [`IoState`] word (an atomic) every time it releases the
//! lock; [`IoPlanner::plan`] plans from it without the lock.
//!
//! Unit attentions are per nexus, so the word carries the unit's
//! unit-attention *epoch* (bumped by every queued condition) instead of
//! per-nexus flags: a nexus remembers the word under which it last found,
//! under the lock, that nothing was pending for it
//! ([`LogicalUnit::confirmed_state`]). While the published word still
//! equals that one, no condition was queued since — for it or anyone — and
//! neither reservations nor mode bits changed, so the lock-free plan is
//! the locked planner's plan. Any other case answers `None`: take the lock.

use super::cdb::{Cdb, READ_10, READ_12, READ_16, READ_6, WRITE_10, WRITE_12, WRITE_16, WRITE_6};
use super::{rw, LunInfo, Plan};

/// What a plain READ/WRITE plan depends on in a unit's mutable state, in
/// one word: eligibility (no reservation of any kind, not sanitizing), the
/// SWP and WCE mode bits, and the unit-attention epoch. `IoState(0)` is
/// never eligible (a nexus that confirmed nothing holds it); neither is a
/// unit whose port is not ALUA Active (its groups change at run time, the
/// planner's copy of the unit's info does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoState(pub u64);

const ELIGIBLE: u64 = 1;
const SWP: u64 = 1 << 1;
const WCE: u64 = 1 << 2;
const EPOCH_SHIFT: u32 = 3;

impl IoState {
    /// Packs the facts (the epoch keeps its low 61 bits).
    pub fn new(eligible: bool, swp: bool, wce: bool, ua_epoch: u64) -> Self {
        let mut w = ua_epoch << EPOCH_SHIFT;
        if eligible {
            w |= ELIGIBLE;
        }
        if swp {
            w |= SWP;
        }
        if wce {
            w |= WCE;
        }
        Self(w)
    }

    /// No reservation is held, no SANITIZE is in progress and this port is
    /// ALUA Active (or the unit has no ALUA).
    pub fn eligible(self) -> bool {
        self.0 & ELIGIBLE != 0
    }

    /// Software write protect (control mode page SWP).
    pub fn swp(self) -> bool {
        self.0 & SWP != 0
    }

    /// Write cache enabled (caching mode page WCE).
    pub fn write_cache(self) -> bool {
        self.0 & WCE != 0
    }
}

/// Plans plain READ/WRITE commands of one unit without its lock; built
/// from the unit ([`LogicalUnit::io_planner`](super::LogicalUnit::io_planner))
/// and immutable afterwards: it reads only the geometry of the unit's
/// [`LunInfo`], which never changes (the ALUA port groups, which do, are
/// in the published word's eligibility).
#[derive(Debug, Clone)]
pub struct IoPlanner {
    info: LunInfo,
}

impl IoPlanner {
    pub(crate) fn new(info: LunInfo) -> Self {
        Self { info }
    }

    /// The plan of `cdb` when it is a plain READ or WRITE that plans to an
    /// I/O (or GOOD for zero blocks) with `published` the unit's current
    /// word and `confirmed` the word this nexus last confirmed (see the
    /// module). `None`: not decidable here — take the lock and ask
    /// [`LogicalUnit::plan`](super::LogicalUnit::plan); errors (range,
    /// protection, ALUA refusals) always go that way.
    pub fn plan(&self, published: IoState, confirmed: IoState, cdb: &[u8]) -> Option<Plan> {
        if published != confirmed || !published.eligible() {
            return None;
        }
        let c = Cdb(cdb);
        let op = c.opcode();
        let write = match op {
            READ_6 | READ_10 | READ_12 | READ_16 => false,
            WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 => true,
            _ => return None,
        };
        if cdb.len() < super::cdb::cdb_len(op) || c.control() & 0x04 != 0 {
            return None;
        }
        rw::read_write(&self.info, published.swp(), c, write).ok()
    }
}
