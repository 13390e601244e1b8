//! Asynchronous events (Base 2.0 §5.2): the Asynchronous Event Requests a
//! controller parks, the events it raises when namespaces, ANA states or
//! the discovery log change, and the masking of an event type until the
//! host reads its log page.

use super::*;

/// A parked Asynchronous Event Request to complete now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AerCompletion {
    /// CID of the parked request.
    pub cid: u16,
    /// Its completion (DW0: event type, information and log page).
    pub completion: Completion,
}

/// Asynchronous event types we raise (Base 2.0 Figure 149).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aen {
    NsAttr,
    Discovery,
    AnaChange,
}

impl Aen {
    /// DW0: bits 2:0 type (2h Notice), bits 15:8 information, bits 23:16
    /// log page identifier (Base 2.0 Figure 148).
    pub(super) fn dw0(self) -> u32 {
        match self {
            Aen::NsAttr => 0x2 | (u32::from(lid::CHANGED_NS) << 16),
            Aen::Discovery => 0x2 | (0xF0 << 8) | (u32::from(lid::DISCOVERY) << 16),
            // Notice, information 03h (ANA Change), log page 0Ch.
            Aen::AnaChange => 0x2 | (0x03 << 8) | (u32::from(lid::ANA) << 16),
        }
    }

    fn config_bit(self) -> u32 {
        match self {
            Aen::NsAttr => AEC_NS_ATTR,
            Aen::Discovery => AEC_DISCOVERY,
            Aen::AnaChange => AEC_ANA_CHANGE,
        }
    }
}

impl Controller {
    pub(super) fn unmask(&mut self, ev: Aen) {
        self.masked.retain(|&m| m != ev);
    }

    /// Raises `ev` if the host enabled it and it is not masked (an event of
    /// a type stays masked until the host reads its log page with RAE = 0,
    /// Base 2.0 §5.2).
    fn raise(&mut self, ev: Aen) -> Option<AerCompletion> {
        if self.features.async_event_config & ev.config_bit() == 0 || self.masked.contains(&ev) {
            return None;
        }
        self.masked.push(ev);
        match self.parked_aers.pop_front() {
            Some(cid) => Some(AerCompletion {
                cid,
                completion: Completion::success(ev.dw0()),
            }),
            None => {
                self.pending_events.push_back(ev);
                None
            }
        }
    }

    /// Records that namespace `nsid` changed (attached, detached, resized)
    /// for the Changed Namespace List and raises a Namespace Attribute
    /// Changed notice. Returns the parked AER to complete, if any.
    pub fn namespace_changed(&mut self, nsid: u32) -> Option<AerCompletion> {
        if !self.changed_ns.contains(&nsid) {
            if self.changed_ns.len() >= log_page::CHANGED_NS_LEN / 4 {
                self.changed_overflow = true;
            } else {
                self.changed_ns.push(nsid);
                self.changed_ns.sort_unstable();
            }
        }
        self.raise(Aen::NsAttr)
    }

    /// Adds or replaces a namespace (same NSID) and raises the notice.
    pub fn set_namespace(&mut self, ns: NamespaceInfo) -> Option<AerCompletion> {
        let nsid = ns.nsid;
        match self.cfg.namespaces.iter_mut().find(|n| n.nsid == nsid) {
            Some(slot) => *slot = ns,
            None => self.cfg.namespaces.push(ns),
        }
        self.namespace_changed(nsid)
    }

    /// Sets ANA group `grpid`'s state (the log page's change count moves;
    /// I/O planning snapshots taken afterwards enforce it). Returns
    /// whether it changed.
    pub fn set_ana_state(&mut self, grpid: u32, state: AnaState) -> bool {
        self.cfg
            .ana
            .as_mut()
            .is_some_and(|a| a.set_state(grpid, state))
    }

    /// [`Controller::set_ana_state`], raising an ANA Change notice when
    /// the state changed (if the host enabled it in Asynchronous Event
    /// Configuration and has read the ANA log since the last one). Returns
    /// (changed, the parked AER to complete).
    pub fn change_ana_state(
        &mut self,
        grpid: u32,
        state: AnaState,
    ) -> (bool, Option<AerCompletion>) {
        if !self.set_ana_state(grpid, state) {
            return (false, None);
        }
        (true, self.raise(Aen::AnaChange))
    }

    /// Removes a namespace and raises the notice.
    pub fn remove_namespace(&mut self, nsid: u32) -> Option<AerCompletion> {
        self.cfg.namespaces.retain(|n| n.nsid != nsid);
        self.namespace_changed(nsid)
    }

    /// Replaces the Discovery log page entries (discovery controllers),
    /// bumps GENCTR and raises a Discovery Log Page Change notice.
    pub fn set_discovery_entries(&mut self, entries: Vec<DiscoveryEntry>) -> Option<AerCompletion> {
        self.discovery_entries = entries;
        self.genctr = self.genctr.wrapping_add(1);
        if self.cfg.is_discovery {
            self.raise(Aen::Discovery)
        } else {
            None
        }
    }

    /// CIDs of the parked AERs, removed (for teardown: they complete with
    /// Command Aborted due to SQ Deletion, or simply vanish with the
    /// connection).
    pub fn take_parked_aers(&mut self) -> Vec<u16> {
        self.parked_aers.drain(..).collect()
    }
}
