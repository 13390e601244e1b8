//! Implicit ALUA: INQUIRY TPGS, VPD 0x83 relative target port and target
//! port group, REPORT TARGET PORT GROUPS byte layout, and which commands a
//! port in Standby / Unavailable / Transitioning refuses (with NOT READY,
//! LOGICAL UNIT NOT ACCESSIBLE 04/0B, 04/0C, 04/0A) — plus a property test
//! that an Active port never refuses anything and a Standby port refuses
//! exactly the commands outside SPC-4's list.

use proptest::prelude::*;
use zctarget_protocol::scsi::sense::{self, Status};
use zctarget_protocol::scsi::{AluaState, LogicalUnit, LunInfo, Plan, PortGroup};

const PORT: &str = "iqn.2024-01.test:host,i,0x400001370000";

fn groups(owner: u16, other: AluaState) -> Vec<PortGroup> {
    (1..=3)
        .map(|g| PortGroup {
            id: g,
            state: if g == owner {
                AluaState::ActiveOptimized
            } else {
                other
            },
            preferred: g == owner,
            relative_ports: vec![g],
        })
        .collect()
}

/// The unit as gateway `me` of 3 presents it, owned by gateway 1.
fn lu(me: u16, other: AluaState) -> LogicalUnit {
    let mut i = LunInfo::new(0, 2048, 512);
    i.unit_serial = "SER".into();
    i.relative_port = me;
    i.target_port_group = me;
    i.target_port_groups = groups(1, other);
    let mut l = LogicalUnit::new(i);
    l.nexus_added(1, PORT);
    // The power-on unit attention comes first, even on a Standby port.
    assert!(matches!(l.plan(1, PORT, &[0; 16], 0), Plan::Check(s) if s == sense::POWER_ON_RESET));
    l
}

fn cdb(bytes: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..bytes.len()].copy_from_slice(bytes);
    c
}

fn data(p: Plan) -> Vec<u8> {
    match p {
        Plan::DataIn(d) => d,
        other => panic!("expected data-in, got {other:?}"),
    }
}

fn rtpg(extended: bool, alloc: u32) -> [u8; 16] {
    let mut c = cdb(&[0xA3, 0x0A | if extended { 0x20 } else { 0 }]);
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

const READ_10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const WRITE_10: [u8; 10] = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];

#[test]
fn inquiry_reports_implicit_alua_and_this_gateways_port() {
    let mut l = lu(2, AluaState::ActiveNonOptimized);
    let std = data(l.plan(1, PORT, &cdb(&[0x12, 0, 0, 0, 96]), 0));
    assert_eq!(std[5] & 0x30, 0x10, "TPGS = 01b (implicit)");
    let vpd = data(l.plan(1, PORT, &cdb(&[0x12, 1, 0x83, 0, 255]), 0));
    // Find the relative target port (type 4) and target port group (5)
    // designators, both associated with the target port.
    let mut at = 4;
    let mut found = Vec::new();
    while at + 4 <= vpd.len() {
        let (assoc_type, len) = (vpd[at + 1], usize::from(vpd[at + 3]));
        if matches!(assoc_type & 0x3F, 0x14 | 0x15) {
            let id = u16::from_be_bytes([vpd[at + 6], vpd[at + 7]]);
            found.push((assoc_type & 0x0F, id));
        }
        at += 4 + len;
    }
    assert_eq!(found, vec![(4, 2), (5, 2)]);
    // Without groups: TPGS 00b and REPORT TARGET PORT GROUPS unsupported.
    let mut plain = LogicalUnit::new(LunInfo::new(0, 2048, 512));
    plain.nexus_added(1, PORT);
    let _ = plain.plan(1, PORT, &[0; 16], 0);
    let std = data(plain.plan(1, PORT, &cdb(&[0x12, 0, 0, 0, 96]), 0));
    assert_eq!(std[5] & 0x30, 0);
    let Plan::Check(s) = plain.plan(1, PORT, &rtpg(false, 256), 256) else {
        panic!("RTPG without ALUA must fail")
    };
    assert_eq!((s.key, s.asc), (0x5, 0x24));
}

#[test]
fn report_target_port_groups_layout() {
    let mut l = lu(2, AluaState::Standby);
    let d = data(l.plan(1, PORT, &rtpg(false, 1024), 1024));
    assert_eq!(
        u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize,
        d.len() - 4
    );
    assert_eq!(d.len(), 4 + 3 * 12);
    let mut at = 4;
    for (g, state, pref) in [(1u16, 0x0, true), (2, 0x2, false), (3, 0x2, false)] {
        assert_eq!(d[at] & 0x0F, state, "group {g} state");
        assert_eq!(d[at] & 0x80 != 0, pref, "group {g} PREF");
        assert_eq!(d[at + 1] & 0x0F, 0x0F, "AO, AN, S, U supported");
        assert_eq!(u16::from_be_bytes([d[at + 2], d[at + 3]]), g);
        assert_eq!(d[at + 7], 1, "one port");
        assert_eq!(
            u16::from_be_bytes([d[at + 10], d[at + 11]]),
            g,
            "relative port"
        );
        at += 12;
    }
    // Extended header: format 001b, then the same descriptors.
    let e = data(l.plan(1, PORT, &rtpg(true, 1024), 1024));
    assert_eq!(e[4] & 0x70, 0x10);
    assert_eq!(&e[8..], &d[4..]);
    assert_eq!(
        u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize,
        e.len() - 4
    );
    // Truncated to the allocation length.
    assert_eq!(
        data(l.plan(1, PORT, &rtpg(false, 10), 10)),
        d[..10].to_vec()
    );
    // A reserved format is refused.
    let mut bad = rtpg(false, 64);
    bad[1] |= 0x40;
    assert!(matches!(l.plan(1, PORT, &bad, 64), Plan::Check(s) if s.asc == 0x24));
}

#[test]
fn standby_and_unavailable_ports_refuse_io_with_not_ready() {
    for (other, sense) in [
        (AluaState::Standby, sense::TARGET_PORT_STANDBY),
        (AluaState::Unavailable, sense::TARGET_PORT_UNAVAILABLE),
        (AluaState::Transitioning, sense::ALUA_TRANSITION),
    ] {
        assert_eq!((sense.key, sense.asc), (0x2, 0x04));
        // Gateway 2: not the owner.
        let mut l = lu(2, other);
        for c in [&READ_10[..], &WRITE_10[..], &[0x00; 6][..]] {
            assert_eq!(
                l.plan(1, PORT, &cdb(c), 512),
                Plan::Check(sense),
                "{other:?} {c:02x?}"
            );
        }
        // What the initiator needs to find a path still works.
        assert!(matches!(
            l.plan(1, PORT, &cdb(&[0x12, 0, 0, 0, 96]), 0),
            Plan::DataIn(_)
        ));
        assert!(matches!(
            l.plan(1, PORT, &rtpg(false, 256), 256),
            Plan::DataIn(_)
        ));
        assert!(matches!(
            l.plan(1, PORT, &cdb(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 256),
            Plan::DataIn(_)
        ));
        // READ CAPACITY only in Standby.
        let cap = l.plan(1, PORT, &cdb(&[0x25]), 8);
        assert_eq!(
            matches!(cap, Plan::DataIn(_)),
            other == AluaState::Standby,
            "{other:?}"
        );
        // Gateway 1 owns the unit: Active/optimized, I/O planned.
        let mut owner = lu(1, other);
        assert!(matches!(
            owner.plan(1, PORT, &cdb(&READ_10), 512),
            Plan::Read { .. }
        ));
        assert!(matches!(
            owner.plan(1, PORT, &cdb(&WRITE_10), 512),
            Plan::Write { .. }
        ));
    }
    // Active/non-optimized: everything runs.
    let mut l = lu(3, AluaState::ActiveNonOptimized);
    assert!(matches!(
        l.plan(1, PORT, &cdb(&READ_10), 512),
        Plan::Read { .. }
    ));
    assert_eq!(
        l.plan(1, PORT, &cdb(&[0x00; 6]), 0).immediate_status(),
        Some(Status::Good)
    );
}

/// SPC-4 §5.15.2.4.4 (as Linux's LIO reads it): what a Standby port runs.
fn standby_allows(c: &[u8; 16]) -> bool {
    match c[0] {
        0x12 | 0x4C | 0x4D | 0x15 | 0x55 | 0x1A | 0x5A | 0xA0 | 0x1C | 0x1D | 0x25 | 0x03
        | 0x5E | 0x5F | 0x3C | 0x3B | 0xA4 => true,
        0x9E => c[1] & 0x1F == 0x10,
        0xA3 => c[1] & 0x1F == 0x0A,
        _ => false,
    }
}

proptest! {
    #[test]
    fn access_state_gates_exactly_the_listed_commands(
        bytes in prop::collection::vec(any::<u8>(), 16),
        standby in any::<bool>(),
    ) {
        let c: [u8; 16] = bytes.try_into().unwrap();
        let other = if standby { AluaState::Standby } else { AluaState::ActiveNonOptimized };
        let mut l = lu(2, other);
        let refused = l.plan(1, PORT, &c, 4096) == Plan::Check(sense::TARGET_PORT_STANDBY);
        if standby {
            prop_assert_eq!(refused, !standby_allows(&c), "{:02x?}", c);
        } else {
            prop_assert!(!refused);
        }
    }
}

#[test]
fn a_port_group_change_raises_the_asymmetric_access_unit_attention() {
    // Gateway 2, Standby, takes over: its group becomes Active/optimized.
    let mut l = lu(2, AluaState::Standby);
    l.nexus_added(7, "iqn.other,i,0x2");
    assert!(
        matches!(l.plan(7, "iqn.other,i,0x2", &[0; 16], 0), Plan::Check(s) if s == sense::POWER_ON_RESET)
    );
    assert!(
        !l.set_port_groups(groups(1, AluaState::Standby)),
        "same groups"
    );
    assert!(l.set_port_groups(groups(2, AluaState::Standby)));
    for (nexus, port) in [(1, PORT), (7, "iqn.other,i,0x2")] {
        let p = l.plan(nexus, port, &cdb(&READ_10), 512);
        assert_eq!(p, Plan::Check(sense::ASYMMETRIC_ACCESS_STATE_CHANGED));
        assert_eq!(
            (
                sense::ASYMMETRIC_ACCESS_STATE_CHANGED.key,
                sense::ASYMMETRIC_ACCESS_STATE_CHANGED.asc,
                sense::ASYMMETRIC_ACCESS_STATE_CHANGED.ascq
            ),
            (0x06, 0x2A, 0x06)
        );
        // Reported once; the port now serves I/O.
        assert!(!matches!(
            l.plan(nexus, port, &cdb(&READ_10), 512),
            Plan::Check(_)
        ));
    }
}
