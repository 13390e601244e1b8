//! Persistent reservation conflict table (SPC-4 §5.13.1 table 43), MODE
//! SENSE/SELECT round trip, and no-panic properties of the SCSI layer.

use proptest::prelude::*;
use zctarget_protocol::scsi::pr::{action, Access, PrState};
use zctarget_protocol::scsi::sense::{self, Status};
use zctarget_protocol::scsi::{LogicalUnit, LunInfo, ParamKind, Plan, PrType};

const A: &str = "iqn.a,i,0x1";
const B: &str = "iqn.b,i,0x2";
const C: &str = "iqn.c,i,0x3";

fn params(key: u64, sa_key: u64) -> [u8; 24] {
    let mut d = [0u8; 24];
    d[..8].copy_from_slice(&key.to_be_bytes());
    d[8..16].copy_from_slice(&sa_key.to_be_bytes());
    d
}

/// Expected outcome from the SPC-4 table: (read allowed, write allowed)
/// for a registered non-holder and for a non-registrant.
fn expected(t: PrType, registered: bool) -> (bool, bool) {
    use PrType::*;
    match t {
        WriteExclusive => (true, false),
        ExclusiveAccess => (false, false),
        WriteExclusiveRegistrantsOnly | WriteExclusiveAllRegistrants => (true, registered),
        ExclusiveAccessRegistrantsOnly | ExclusiveAccessAllRegistrants => (registered, registered),
    }
}

#[test]
fn conflict_table() {
    for t in PrType::ALL {
        let mut pr = PrState::default();
        pr.reserve_out(A, action::REGISTER, 0, 0, &params(0, 0xA))
            .unwrap();
        pr.reserve_out(B, action::REGISTER_AND_IGNORE, 0, 0, &params(0, 0xB))
            .unwrap();
        pr.reserve_out(A, action::RESERVE, 0, t.code(), &params(0xA, 0))
            .unwrap();
        // Holder: everything allowed.
        assert!(!pr.conflicts(A, Access::Read));
        assert!(!pr.conflicts(A, Access::Write));
        for (port, registered) in [(B, true), (C, false)] {
            let (r, w) = expected(t, registered);
            assert_eq!(!pr.conflicts(port, Access::Read), r, "{t:?} {port} read");
            assert_eq!(!pr.conflicts(port, Access::Write), w, "{t:?} {port} write");
            assert!(!pr.conflicts(port, Access::Allowed));
        }
        // READ RESERVATION reports the type; key 0 for all-registrants.
        let d = pr.reserve_in(1, 1).unwrap();
        assert_eq!(d[7], 16);
        assert_eq!(d[21] & 0x0F, t.code());
        let key = u64::from_be_bytes(d[8..16].try_into().unwrap());
        assert_eq!(key, if t.all_registrants() { 0 } else { 0xA });
        // Release with the wrong type.
        let other = PrType::ALL.iter().find(|o| **o != t).unwrap().code();
        assert!(pr
            .reserve_out(A, action::RELEASE, 0, other, &params(0xA, 0))
            .is_err());
        pr.reserve_out(A, action::RELEASE, 0, t.code(), &params(0xA, 0))
            .unwrap();
        assert!(!pr.conflicts(C, Access::Write));
    }
}

#[test]
fn register_rules_and_generation() {
    let mut pr = PrState::default();
    // REGISTER with a non-zero key while unregistered: conflict.
    assert!(pr
        .reserve_out(A, action::REGISTER, 0, 0, &params(5, 6))
        .is_err());
    pr.reserve_out(A, action::REGISTER, 0, 0, &params(0, 6))
        .unwrap();
    assert_eq!(pr.generation, 1);
    // Wrong key.
    assert!(pr
        .reserve_out(A, action::REGISTER, 0, 0, &params(7, 8))
        .is_err());
    pr.reserve_out(A, action::REGISTER, 0, 0, &params(6, 8))
        .unwrap();
    assert_eq!(pr.key_of(A), Some(8));
    // RESERVE needs the right key.
    assert!(pr
        .reserve_out(A, action::RESERVE, 0, 1, &params(6, 0))
        .is_err());
    // Unregistering the holder releases the reservation.
    pr.reserve_out(A, action::RESERVE, 0, 1, &params(8, 0))
        .unwrap();
    pr.reserve_out(A, action::REGISTER, 0, 0, &params(8, 0))
        .unwrap();
    assert!(pr.reservation.is_none());
    assert!(pr.registrations.is_empty());
    // APTPL is refused.
    let mut p = params(0, 1);
    p[20] = 1;
    assert!(pr.reserve_out(A, action::REGISTER, 0, 0, &p).is_err());
    // READ KEYS / REPORT CAPABILITIES.
    pr.reserve_out(B, action::REGISTER, 0, 0, &params(0, 0xBB))
        .unwrap();
    let d = pr.reserve_in(0, 1).unwrap();
    assert_eq!(&d[4..8], &[0, 0, 0, 8]);
    assert_eq!(&d[8..16], &0xBBu64.to_be_bytes());
    let c = pr.reserve_in(2, 1).unwrap();
    assert_eq!(&c[..2], &[0, 8]);
    assert_eq!((c[4], c[5]), (0xEA, 0x01));
    assert!(pr.reserve_in(4, 1).is_err());
}

#[test]
fn preempt_and_clear() {
    let mut pr = PrState::default();
    pr.reserve_out(A, action::REGISTER, 0, 0, &params(0, 0xA))
        .unwrap();
    pr.reserve_out(B, action::REGISTER, 0, 0, &params(0, 0xB))
        .unwrap();
    pr.reserve_out(B, action::RESERVE, 0, 3, &params(0xB, 0))
        .unwrap();
    // A preempts B: B's registration removed, A holds.
    let out = pr
        .reserve_out(A, action::PREEMPT, 0, 1, &params(0xA, 0xB))
        .unwrap();
    assert_eq!(out.preempted, vec![B.to_string()]);
    assert!(pr.is_holder(A));
    assert_eq!(pr.key_of(B), None);
    // Preempting a key nobody has: conflict.
    assert!(pr
        .reserve_out(A, action::PREEMPT, 0, 1, &params(0xA, 0x99))
        .is_err());
    pr.reserve_out(B, action::REGISTER, 0, 0, &params(0, 0xB))
        .unwrap();
    let out = pr
        .reserve_out(A, action::CLEAR, 0, 0, &params(0xA, 0))
        .unwrap();
    assert_eq!(
        out.unit_attentions,
        vec![(B.to_string(), sense::RESERVATIONS_PREEMPTED)]
    );
    assert!(pr.registrations.is_empty() && pr.reservation.is_none());
}

#[test]
fn prout_through_the_unit() {
    let mut l = LogicalUnit::new(LunInfo::new(0, 1000, 512));
    let mut cdb = [0u8; 16];
    cdb[0] = 0x5F;
    cdb[1] = action::REGISTER;
    cdb[8] = 24;
    let Plan::NeedParameterData { len: 24, then } = l.plan(1, A, &cdb, 24) else {
        panic!()
    };
    assert_eq!(l.with_parameter_data(1, then, &params(0, 0xA)), Plan::Good);
    cdb[1] = action::RESERVE;
    cdb[2] = 3; // exclusive access
    let Plan::NeedParameterData { then, .. } = l.plan(1, A, &cdb, 24) else {
        panic!()
    };
    assert_eq!(l.with_parameter_data(1, then, &params(0xA, 0)), Plan::Good);
    let mut read = [0u8; 16];
    read[0] = 0x28;
    read[8] = 1;
    assert_eq!(
        l.plan(2, B, &read, 512),
        Plan::Status(Status::ReservationConflict)
    );
    assert!(matches!(l.plan(1, A, &read, 512), Plan::Read { .. }));
    // Bad parameter list length.
    cdb[8] = 23;
    assert_eq!(
        l.plan(1, A, &cdb, 23),
        Plan::Check(sense::PARAMETER_LIST_LENGTH_ERROR)
    );
    // REGISTER AND MOVE is not supported.
    cdb[1] = 7;
    cdb[8] = 24;
    assert!(matches!(l.plan(1, A, &cdb, 24), Plan::Check(s) if s.asc == 0x24));
}

fn mode_sense(l: &mut LogicalUnit, nexus: u64, pc_page: u8, dbd: bool) -> Vec<u8> {
    let cdb = [
        0x1A,
        if dbd { 0x08 } else { 0 },
        pc_page,
        0,
        255,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    match l.plan(nexus, A, &cdb, 0) {
        Plan::DataIn(d) => d,
        p => panic!("{p:?}"),
    }
}

#[test]
fn mode_sense_select_round_trip() {
    let mut l = LogicalUnit::new(LunInfo::new(0, 1000, 512));
    l.nexus_added(2, B);
    let all = mode_sense(&mut l, 1, 0x3F, false);
    assert_eq!(all[0] as usize, all.len() - 1);
    assert_eq!(all[3], 8);
    assert_eq!(&all[4..8], &1000u32.to_be_bytes());
    assert_eq!(all[2] & 0x10, 0x10, "DPOFUA");
    // Changeable control page has SWP and D_SENSE.
    let ch = mode_sense(&mut l, 1, 0x40 | 0x0A, true);
    assert_eq!(&ch[4..6], &[0x0A, 0x0A]);
    assert_eq!(ch[6] & 0x04, 0x04);
    assert_eq!(ch[8] & 0x08, 0x08);
    // Saved values are not supported.
    let cdb = [
        0x1A,
        0,
        0xC0 | 0x08,
        0,
        255,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    assert_eq!(
        l.plan(1, A, &cdb, 0),
        Plan::Check(sense::SAVING_PARAMETERS_NOT_SUPPORTED)
    );
    // Select: set SWP and D_SENSE on the current control page.
    let cur = mode_sense(&mut l, 1, 0x0A, true);
    let mut sel = vec![0u8; 4];
    sel.extend_from_slice(&cur[4..]);
    sel[4 + 2] |= 0x04;
    sel[4 + 4] |= 0x08;
    let kind = ParamKind::ModeSelect {
        ten: false,
        sp: false,
    };
    assert_eq!(l.with_parameter_data(1, kind, &sel), Plan::Good);
    assert!(l.descriptor_sense());
    let after = mode_sense(&mut l, 1, 0x0A, true);
    assert_eq!(&after[4..], &sel[4..]);
    assert_eq!(after[2] & 0x80, 0x80, "WP follows SWP");
    // Writes are now refused; the other nexus learns of the change.
    let mut w = [0u8; 16];
    w[0] = 0x2A;
    w[8] = 1;
    assert_eq!(l.plan(1, A, &w, 512), Plan::Check(sense::WRITE_PROTECTED));
    assert_eq!(
        l.plan(2, B, &[0; 16], 0),
        Plan::Check(sense::POWER_ON_RESET)
    );
    assert_eq!(
        l.plan(2, B, &[0; 16], 0),
        Plan::Check(sense::MODE_PARAMETERS_CHANGED)
    );
    // A non-changeable bit (QERR) is refused.
    let mut bad = sel.clone();
    bad[4 + 3] |= 0x02;
    assert!(matches!(l.with_parameter_data(1, kind, &bad), Plan::Check(s) if s.asc == 0x26));
    // Caching page WCE off.
    let cache = mode_sense(&mut l, 1, 0x08, true);
    let mut sel = vec![0u8; 4];
    sel.extend_from_slice(&cache[4..]);
    sel[6] &= !0x04;
    assert_eq!(l.with_parameter_data(1, kind, &sel), Plan::Good);
    assert!(!l.write_cache_enabled());
}

fn kinds() -> impl Strategy<Value = ParamKind> {
    prop_oneof![
        Just(ParamKind::Unmap),
        Just(ParamKind::ExtendedCopy),
        any::<bool>().prop_map(|ten| ParamKind::ModeSelect { ten, sp: false }),
        (0u8..8, 0u8..16, 0u8..4).prop_map(|(service_action, pr_type, scope)| {
            ParamKind::PersistentReserveOut {
                service_action,
                pr_type,
                scope,
            }
        }),
        Just(ParamKind::SanitizeOverwrite {
            immed: false,
            ause: false
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn plan_never_panics(cdb in proptest::collection::vec(any::<u8>(), 0..20), edtl in any::<u32>(), thin in any::<bool>()) {
        let mut info = LunInfo::new(0, 1 << 20, 512);
        info.thin_provisioning = thin;
        let mut l = LogicalUnit::new(info);
        let _ = l.plan(1, A, &cdb, edtl);
        let _ = zctarget_protocol::scsi::plan_missing_lun(&cdb, &[0, 1]);
    }

    #[test]
    fn known_opcodes_never_panic(op in prop::sample::select(vec![
        0x00u8, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A, 0x2E,
        0x2F, 0x34, 0x35, 0x37, 0x41, 0x42, 0x48, 0x55, 0x56, 0x57, 0x5A, 0x5E, 0x5F, 0x83, 0x84,
        0x88, 0x89, 0x8A, 0x8E, 0x8F, 0x90, 0x91, 0x93, 0x9E, 0xA0, 0xA3, 0xA8, 0xAA, 0xAE, 0xAF, 0xB7]),
        rest in proptest::array::uniform15(any::<u8>()), edtl in any::<u32>())
    {
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        cdb[1..].copy_from_slice(&rest);
        let mut info = LunInfo::new(0, 1 << 20, 512);
        info.thin_provisioning = true;
        let mut l = LogicalUnit::new(info);
        if let Plan::DataIn(d) = l.plan(1, A, &cdb, edtl) {
            prop_assert!(d.len() <= 1 << 20);
        }
    }

    #[test]
    fn parameter_data_never_panics(kind in kinds(), data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut info = LunInfo::new(0, 1 << 20, 512);
        info.thin_provisioning = true;
        let mut l = LogicalUnit::new(info);
        let _ = l.with_parameter_data(1, kind, &data);
    }
}
