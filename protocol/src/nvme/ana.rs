//! Asymmetric Namespace Access (Base 2.0 §8.1): ANA groups with an access
//! state each, reported in the ANA log page (0Ch) and enforced on I/O.
//!
//! zctarget numbers one ANA group per gateway of a cluster: a namespace's
//! ANAGRPID is its owner gateway's number, and a gateway reports its own
//! group Optimized and the others in the configured non-owner state, so
//! every gateway presents the same groups with the states of *its* path.

use super::bytes::{put_le16, put_le32, put_le64, put_u8};
use super::controller::NamespaceInfo;
use super::Status;

/// ANA Transition Time reported in Identify Controller (ANATT, seconds).
pub const ANATT_SECS: u8 = 10;
/// ANACAP (Identify Controller byte 343): the states we may report —
/// Optimized (bit 0), Non-Optimized (1), Inaccessible (2), Persistent Loss
/// (3), Change (4). Bit 6 (ANAGRPID never changes while attached) is not
/// claimed, so hosts size the log for the NSID lists.
pub const ANACAP: u8 = 0b1_1111;
/// Length of the log page header.
pub const HEADER_LEN: usize = 16;
/// Length of a group descriptor before its NSID list.
pub const DESCRIPTOR_LEN: usize = 32;
/// LSP bit 0 of Get Log Page 0Ch: Return Groups Only (no NSID lists).
pub const LSP_RGO: u8 = 1;

/// An ANA state (Base 2.0 Figure 224, ANA Group Descriptor byte 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnaState {
    /// 01h: I/O served at full speed.
    Optimized,
    /// 02h: I/O served; the host should prefer an Optimized path.
    NonOptimized,
    /// 03h: I/O refused (Asymmetric Access Inaccessible) until the state
    /// changes.
    Inaccessible,
    /// 04h: I/O refused for good on this path.
    PersistentLoss,
    /// 0Fh: the state is changing (at most ANATT seconds).
    Change,
}

impl AnaState {
    /// The wire value.
    pub const fn code(self) -> u8 {
        match self {
            AnaState::Optimized => 0x01,
            AnaState::NonOptimized => 0x02,
            AnaState::Inaccessible => 0x03,
            AnaState::PersistentLoss => 0x04,
            AnaState::Change => 0x0F,
        }
    }

    /// Decodes a state (low four bits); `None` for reserved values.
    pub const fn from_code(v: u8) -> Option<Self> {
        Some(match v & 0x0F {
            0x01 => AnaState::Optimized,
            0x02 => AnaState::NonOptimized,
            0x03 => AnaState::Inaccessible,
            0x04 => AnaState::PersistentLoss,
            0x0F => AnaState::Change,
            _ => return None,
        })
    }

    /// The status an I/O command on a namespace in this state completes
    /// with, if it may not run (Base 2.0 §8.1.3, Path Related Status).
    pub const fn io_refusal(self) -> Option<Status> {
        match self {
            AnaState::Optimized | AnaState::NonOptimized => None,
            AnaState::Inaccessible => Some(Status::ANA_INACCESSIBLE),
            AnaState::PersistentLoss => Some(Status::ANA_PERSISTENT_LOSS.dnr()),
            AnaState::Change => Some(Status::ANA_TRANSITION),
        }
    }
}

/// The ANA groups a controller reports: group `n` (from 1) is
/// `states[n - 1]`. Part of the controller's configuration; shared by the
/// I/O planning snapshot, which refuses I/O on inaccessible namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnaGroups {
    /// State of each group, by ANAGRPID - 1.
    pub states: Vec<AnaState>,
    /// Change count (CHGCNT): bumped whenever a state changes.
    pub change_count: u64,
}

impl AnaGroups {
    /// Groups 1..=`states.len()` in these states, change count 0.
    pub fn new(states: Vec<AnaState>) -> Self {
        AnaGroups {
            states,
            change_count: 0,
        }
    }

    /// Number of groups (ANAGRPMAX = NANAGRPID).
    pub fn count(&self) -> u32 {
        u32::try_from(self.states.len()).unwrap_or(u32::MAX)
    }

    /// The state of group `grpid`, `None` if there is no such group.
    pub fn state(&self, grpid: u32) -> Option<AnaState> {
        let i = usize::try_from(grpid.checked_sub(1)?).ok()?;
        self.states.get(i).copied()
    }

    /// Sets group `grpid`'s state; the change count moves when it
    /// differs. Returns whether anything changed (false also for a group
    /// that does not exist).
    pub fn set_state(&mut self, grpid: u32, state: AnaState) -> bool {
        let Some(i) = grpid.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return false;
        };
        match self.states.get_mut(i) {
            Some(s) if *s != state => {
                *s = state;
                self.change_count = self.change_count.wrapping_add(1);
                true
            }
            _ => false,
        }
    }

    /// Why an I/O command on `ns` may not run here, if it may not: a
    /// namespace whose group is not Optimized or Non-Optimized (a
    /// namespace outside every group is treated as Inaccessible).
    pub fn io_refusal(&self, ns: &NamespaceInfo) -> Option<Status> {
        match self.state(ns.anagrpid) {
            Some(s) => s.io_refusal(),
            None => Some(Status::ANA_INACCESSIBLE),
        }
    }

    /// The ANA log page (Base 2.0 §5.16.1.13, Figures 222-224): header
    /// (CHGCNT, NGRPS), then one descriptor per group in ANAGRPID order
    /// with its state and, unless `groups_only` (LSP RGO), the NSIDs of
    /// `namespaces` in it, ascending.
    pub fn log_page(&self, namespaces: &[NamespaceInfo], groups_only: bool) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        put_le64(&mut b, 0, self.change_count);
        put_le16(
            &mut b,
            8,
            u16::try_from(self.states.len()).unwrap_or(u16::MAX),
        );
        for (grpid, state) in (1u32..).zip(&self.states) {
            let mut nsids: Vec<u32> = if groups_only {
                Vec::new()
            } else {
                namespaces
                    .iter()
                    .filter(|n| n.anagrpid == grpid)
                    .map(|n| n.nsid)
                    .collect()
            };
            nsids.sort_unstable();
            let at = b.len();
            b.resize(at + DESCRIPTOR_LEN + 4 * nsids.len(), 0);
            put_le32(&mut b, at, grpid);
            put_le32(
                &mut b,
                at + 4,
                u32::try_from(nsids.len()).unwrap_or(u32::MAX),
            );
            put_le64(&mut b, at + 8, self.change_count);
            put_u8(&mut b, at + 16, state.code());
            for (i, nsid) in nsids.iter().enumerate() {
                put_le32(&mut b, at + DESCRIPTOR_LEN + 4 * i, *nsid);
            }
        }
        b
    }
}

/// One group descriptor read back from a log page (hosts and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnaDescriptor {
    /// ANAGRPID.
    pub grpid: u32,
    /// CHGCNT of the descriptor.
    pub change_count: u64,
    /// State (raw code when reserved: `Err`).
    pub state: Result<AnaState, u8>,
    /// NSIDs listed.
    pub nsids: Vec<u32>,
}

/// Parses an ANA log page: (CHGCNT, descriptors). Stops at the first
/// descriptor that does not fit in `page`.
pub fn parse_log_page(page: &[u8]) -> (u64, Vec<AnaDescriptor>) {
    use super::bytes::{le16, le32, le64, u8_at};
    let chgcnt = le64(page, 0);
    let ngrps = le16(page, 8);
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    for _ in 0..ngrps {
        if at + DESCRIPTOR_LEN > page.len() {
            break;
        }
        let n = le32(page, at + 4) as usize;
        let end = at + DESCRIPTOR_LEN + 4 * n;
        if end > page.len() {
            break;
        }
        let code = u8_at(page, at + 16) & 0x0F;
        out.push(AnaDescriptor {
            grpid: le32(page, at),
            change_count: le64(page, at + 8),
            state: AnaState::from_code(code).ok_or(code),
            nsids: (0..n)
                .map(|i| le32(page, at + DESCRIPTOR_LEN + 4 * i))
                .collect(),
        });
        at = end;
    }
    (chgcnt, out)
}
