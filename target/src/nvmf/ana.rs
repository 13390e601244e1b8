//! Run-time ANA state changes (failover): the registry's groups — what new
//! controllers start with — and every live I/O controller's, each raising
//! an ANA Change asynchronous event when its host armed one.

use zctarget_protocol::nvme::ana::AnaGroups;

use super::NvmfRegistry;

impl NvmfRegistry {
    /// The ANA groups new controllers start with (`[cluster]` only).
    pub fn ana_groups(&self) -> Option<AnaGroups> {
        self.ana.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves the ANA groups to `wanted`'s states. Every live I/O
    /// controller gets the changed groups (its change count moves, its I/O
    /// snapshot is replaced, and a parked AER completes with ANA Change if
    /// the host enabled the notice). Returns the (group, old, new) changes.
    pub fn set_ana_groups(
        &self,
        wanted: &AnaGroups,
    ) -> Vec<(u32, zctarget_protocol::nvme::ana::AnaState)> {
        let mut changes = Vec::new();
        // Held throughout (lock order: groups, then the controller table):
        // a controller being created copies the groups either before this
        // change or after it is registered, never in between.
        let mut ana = self.ana.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = ana.as_mut() else {
            return changes;
        };
        for (i, &state) in wanted.states.iter().enumerate() {
            let grpid = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if current.set_state(grpid, state) {
                changes.push((grpid, state));
            }
        }
        if changes.is_empty() {
            return changes;
        }
        for e in self.controllers_where(|e| e.subsystem.is_some()) {
            let mut ctrl = e.ctrl.lock().unwrap_or_else(|e| e.into_inner());
            for &(grpid, state) in &changes {
                let (_, event) = ctrl.change_ana_state(grpid, state);
                e.post_event(event);
            }
            e.refresh_io_view(&ctrl);
        }
        changes
    }
}
