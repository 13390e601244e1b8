//! Explicit ALUA: INQUIRY TPGS = 11b, and SET TARGET PORT GROUPS (SPC-4
//! §6.45) naming the group that owns the unit — the CDB's checks, the
//! parameter list's (unknown group, two owners, a state a group cannot
//! take, a list that is not whole descriptors), and a property test that
//! any list is answered without panicking, with a move only to a group the
//! list asked Active/optimized.

use proptest::prelude::*;
use zctarget_protocol::scsi::sense::{self, Sense};
use zctarget_protocol::scsi::{AluaState, LogicalUnit, LunInfo, ParamKind, Plan, PortGroup};

const PORT: &str = "iqn.2024-01.test:host,i,0x400001370000";
const AO: u8 = 0x0;
const AN: u8 = 0x1;
const STANDBY: u8 = 0x2;

/// Gateway `me` of 3, owned by gateway 1, the others Active/non-optimized;
/// `explicit`: SET TARGET PORT GROUPS supported.
fn lu(me: u16, explicit: bool) -> LogicalUnit {
    let mut i = LunInfo::new(0, 2048, 512);
    i.relative_port = me;
    i.target_port_group = me;
    i.target_port_groups = (1..=3)
        .map(|g| PortGroup {
            id: g,
            state: if g == 1 {
                AluaState::ActiveOptimized
            } else {
                AluaState::ActiveNonOptimized
            },
            preferred: g == 1,
            relative_ports: vec![g],
        })
        .collect();
    i.explicit_alua = explicit.then_some(AluaState::ActiveNonOptimized);
    let mut l = LogicalUnit::new(i);
    l.nexus_added(1, PORT);
    assert!(matches!(l.plan(1, PORT, &[0; 16], 0), Plan::Check(s) if s == sense::POWER_ON_RESET));
    l
}

fn stpg_cdb(len: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xA4;
    c[1] = 0x0A;
    c[6..10].copy_from_slice(&len.to_be_bytes());
    c
}

fn list(descriptors: &[(u8, u16)]) -> Vec<u8> {
    let mut d = vec![0u8; 4];
    for &(state, group) in descriptors {
        d.extend_from_slice(&[state, 0]);
        d.extend_from_slice(&group.to_be_bytes());
    }
    d
}

/// The plan for an STPG carrying `descriptors`, through the CDB and the
/// parameter data as a frontend runs it.
fn stpg(l: &mut LogicalUnit, descriptors: &[(u8, u16)]) -> Plan {
    let data = list(descriptors);
    let len = u32::try_from(data.len()).expect("len");
    match l.plan(1, PORT, &stpg_cdb(len), len) {
        Plan::NeedParameterData {
            len: want,
            then: ParamKind::SetTargetPortGroups,
        } => {
            assert_eq!(want, len);
            l.with_parameter_data(1, ParamKind::SetTargetPortGroups, &data)
        }
        other => other,
    }
}

fn check(p: Plan) -> Sense {
    match p {
        Plan::Check(s) => s,
        other => panic!("expected CHECK CONDITION, got {other:?}"),
    }
}

/// (key, asc, ascq, SKSV field pointer) of a sense.
fn parts(s: Sense) -> (u8, u8, u8, Option<u16>) {
    let d = s.encode(false);
    let pointer = (d[15] & 0x80 != 0).then(|| u16::from_be_bytes([d[16], d[17]]));
    (d[2] & 0x0F, d[12], d[13], pointer)
}

#[test]
fn inquiry_reports_explicit_alua_only_when_supported() {
    for (explicit, tpgs) in [(false, 0x10), (true, 0x30)] {
        let mut l = lu(2, explicit);
        let mut c = [0u8; 6];
        c[0] = 0x12;
        c[4] = 96;
        let Plan::DataIn(d) = l.plan(1, PORT, &c, 96) else {
            panic!("inquiry")
        };
        assert_eq!(d[5] & 0x30, tpgs, "explicit {explicit}");
    }
}

#[test]
fn without_explicit_alua_the_command_is_refused() {
    let mut l = lu(2, false);
    let s = check(l.plan(1, PORT, &stpg_cdb(8), 8));
    assert_eq!(parts(s), (0x5, 0x24, 0x00, Some(1)), "INVALID FIELD IN CDB");
}

#[test]
fn the_cdb_checks_the_parameter_list_length() {
    let mut l = lu(2, true);
    assert_eq!(l.plan(1, PORT, &stpg_cdb(0), 0), Plan::Good);
    for bad in [2, 6, 4 + 4 * 256] {
        let s = check(l.plan(1, PORT, &stpg_cdb(bad), bad));
        assert_eq!(s, sense::PARAMETER_LIST_LENGTH_ERROR, "length {bad}");
    }
    // Another MAINTENANCE OUT service action: INVALID FIELD IN CDB.
    let mut c = stpg_cdb(8);
    c[1] = 0x06;
    assert_eq!(parts(check(l.plan(1, PORT, &c, 8))).1, 0x24);
}

#[test]
fn asking_a_group_active_optimized_moves_ownership_there() {
    // Sent to a non-owner (gateway 2) for itself, and to the owner for
    // another gateway.
    for me in [2, 1] {
        let mut l = lu(me, true);
        assert_eq!(
            stpg(&mut l, &[(AO, 2)]),
            Plan::SetTargetPortGroups { group: 2 }
        );
        // With the others' states as they will be (non-owner: AN).
        assert_eq!(
            stpg(&mut l, &[(AN, 1), (AO, 3), (AN, 2)]),
            Plan::SetTargetPortGroups { group: 3 }
        );
        // The same group twice.
        assert_eq!(
            stpg(&mut l, &[(AO, 3), (AO, 3)]),
            Plan::SetTargetPortGroups { group: 3 }
        );
        // Asking the current owner: the caller finds nothing to do.
        assert_eq!(
            stpg(&mut l, &[(AO, 1)]),
            Plan::SetTargetPortGroups { group: 1 }
        );
    }
}

#[test]
fn states_a_group_cannot_take_are_invalid_fields() {
    let mut l = lu(2, true);
    let invalid = |l: &mut LogicalUnit, d: &[(u8, u16)], byte: u16| {
        let s = check(stpg(l, d));
        assert_eq!(
            parts(s),
            (0x5, 0x26, 0x00, Some(byte)),
            "{d:?}: ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST at byte {byte}"
        );
    };
    // A group that does not exist.
    invalid(&mut l, &[(AO, 9)], 6);
    // Two owners.
    invalid(&mut l, &[(AO, 2), (AO, 3)], 8);
    // A non-owner asked Standby while non-owners report AN.
    invalid(&mut l, &[(AO, 2), (STANDBY, 1)], 8);
    // The new owner asked another state too.
    invalid(&mut l, &[(AO, 2), (AN, 2)], 8);
    // Without a new owner, a change of a group's state.
    invalid(&mut l, &[(AN, 1)], 4);
    // Transitioning, offline and reserved states cannot be asked for.
    for state in [0x4, 0xE, 0xF] {
        invalid(&mut l, &[(state, 3)], 4);
    }
}

#[test]
fn a_list_that_changes_nothing_is_good() {
    let mut l = lu(3, true);
    assert_eq!(stpg(&mut l, &[]), Plan::Good);
    assert_eq!(stpg(&mut l, &[(AN, 2), (AN, 3)]), Plan::Good);
}

#[test]
fn a_standby_port_takes_the_command() {
    let mut i = LunInfo::new(0, 2048, 512);
    i.target_port_group = 2;
    i.target_port_groups = vec![
        PortGroup {
            id: 1,
            state: AluaState::ActiveOptimized,
            preferred: true,
            relative_ports: vec![1],
        },
        PortGroup {
            id: 2,
            state: AluaState::Standby,
            preferred: false,
            relative_ports: vec![2],
        },
    ];
    i.explicit_alua = Some(AluaState::Standby);
    let mut l = LogicalUnit::new(i);
    l.nexus_added(1, PORT);
    let _ = l.plan(1, PORT, &[0; 16], 0);
    assert_eq!(
        stpg(&mut l, &[(AO, 2), (STANDBY, 1)]),
        Plan::SetTargetPortGroups { group: 2 }
    );
}

proptest! {
    /// Any parameter list: an answer, never a panic; a move only to a
    /// group that exists and that a descriptor asked Active/optimized.
    #[test]
    fn any_list_is_answered(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut l = lu(2, true);
        match l.with_parameter_data(1, ParamKind::SetTargetPortGroups, &data) {
            Plan::Good | Plan::Check(_) => {}
            Plan::SetTargetPortGroups { group } => {
                prop_assert!((1..=3).contains(&group));
                let named = data.get(4..).unwrap_or_default().chunks_exact(4)
                    .any(|d| d[0] & 0x0F == AO && u16::from_be_bytes([d[2], d[3]]) == group);
                prop_assert!(named);
            }
            other => prop_assert!(false, "unexpected plan {other:?}"),
        }
    }
}
