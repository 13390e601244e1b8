//! Unit attention conditions per I_T nexus (SAM-5 §5.14, SPC-4 §5.14).

use std::collections::{HashMap, VecDeque};

use super::sense::Sense;

/// Largest number of pending unit attentions kept per nexus; older
/// duplicates are dropped first (SPC-4 §5.14 lets a device keep fewer).
const MAX_PENDING: usize = 16;

/// Pending unit attention conditions, oldest first, per I_T nexus.
#[derive(Debug, Default, Clone)]
pub(crate) struct UnitAttentions {
    queues: HashMap<u64, VecDeque<Sense>>,
    /// Conditions ever queued (the epoch of `fast::IoState`): a nexus that
    /// found nothing pending at epoch `e` has nothing pending while the
    /// epoch is still `e`.
    epoch: u64,
}

impl UnitAttentions {
    /// Queues `sense` for `nexus` (no duplicates of a pending condition).
    pub(crate) fn push(&mut self, nexus: u64, sense: Sense) {
        self.epoch = self.epoch.wrapping_add(1);
        let q = self.queues.entry(nexus).or_default();
        if q.contains(&sense) {
            return;
        }
        if q.len() >= MAX_PENDING {
            q.pop_front();
        }
        q.push_back(sense);
    }

    /// Queues `sense` for every known nexus except `except`.
    pub(crate) fn push_others(
        &mut self,
        nexuses: impl Iterator<Item = u64>,
        except: Option<u64>,
        sense: Sense,
    ) {
        for n in nexuses {
            if Some(n) != except {
                self.push(n, sense);
            }
        }
    }

    /// Takes the oldest pending condition for `nexus`.
    pub(crate) fn pop(&mut self, nexus: u64) -> Option<Sense> {
        self.queues.get_mut(&nexus).and_then(VecDeque::pop_front)
    }

    /// Whether `nexus` has a pending condition.
    pub(crate) fn pending(&self, nexus: u64) -> bool {
        self.queues.get(&nexus).is_some_and(|q| !q.is_empty())
    }

    /// Conditions ever queued (wrapping).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Forgets `nexus`.
    pub(crate) fn remove(&mut self, nexus: u64) {
        self.queues.remove(&nexus);
    }
}
