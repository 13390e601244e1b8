//! Asymmetric Namespace Access: Identify Controller (CMIC bit 3, ANATT,
//! ANACAP, ANAGRPMAX, NANAGRPID, MNAN) and Namespace (ANAGRPID), the ANA
//! log page (0Ch) with its change count and RGO, I/O refused on an
//! Inaccessible group, and a property test that the log always describes
//! exactly the configured groups and namespaces.

use proptest::prelude::*;
use zctarget_protocol::nvme::ana::{parse_log_page, AnaGroups, AnaState};
use zctarget_protocol::nvme::fabrics::{cc_enable_default, property, Connect, ConnectData};
use zctarget_protocol::nvme::*;

const SUBNQN: &str = "nqn.2026-12.io.zctarget:mpath";

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn ns(nsid: u32, grp: u32) -> NamespaceInfo {
    NamespaceInfo {
        anagrpid: grp,
        ..NamespaceInfo::new(nsid, 1000, 512)
    }
}

/// Gateway 2 of 3: its group 2 Optimized, the others Non-Optimized and
/// Inaccessible; NSIDs 1 and 3 in group 1, 2 in group 2, 4 in group 3.
fn cfg(ana: Option<AnaGroups>) -> ControllerConfig {
    ControllerConfig {
        subnqn: SUBNQN.into(),
        namespaces: vec![ns(3, 1), ns(1, 1), ns(2, 2), ns(4, 3)],
        max_nsid: 1024,
        ana,
        ..ControllerConfig::default()
    }
}

fn groups() -> AnaGroups {
    AnaGroups::new(vec![
        AnaState::NonOptimized,
        AnaState::Optimized,
        AnaState::Inaccessible,
    ])
}

fn ready(cfg: ControllerConfig) -> Controller {
    let mut c = Controller::new(cfg);
    let data = ConnectData {
        hostid: [1; 16],
        cntlid: 0xFFFF,
        subnqn: SUBNQN.into(),
        hostnqn: "nqn.h:1".into(),
    }
    .encode();
    let conn = Connect {
        recfmt: 0,
        qid: 0,
        sqsize: 31,
        cattr: 0,
        kato: 0,
    }
    .to_sqe(0, 1024);
    assert!(c.connect(&conn, &data).queue.is_some());
    c.property_set(false, property::CC, u64::from(cc_enable_default()))
        .unwrap();
    assert!(c.is_ready());
    c
}

fn admin(c: &mut Controller, s: &Sqe) -> (Status, Vec<u8>) {
    match c.plan_admin(s, &[]) {
        AdminPlan::Complete { completion, data } => (completion.status, data.unwrap_or_default()),
        AdminPlan::Park => panic!("parked"),
    }
}

fn identify(c: &mut Controller, cns: u8, nsid: u32) -> Vec<u8> {
    let mut s = Sqe::new(0x06, 1);
    s.nsid = nsid;
    s.cdw10 = u32::from(cns);
    s.dptr = Sgl::transport(4096);
    let (st, d) = admin(c, &s);
    assert!(st.is_success(), "{st:?}");
    d
}

fn ana_log(c: &mut Controller, len: u32, rgo: bool) -> (Status, Vec<u8>) {
    let numd = len / 4 - 1;
    let mut s = Sqe::new(0x02, 2);
    s.cdw10 = 0x0C | (u32::from(rgo) << 8) | ((numd & 0xFFFF) << 16);
    s.cdw11 = numd >> 16;
    s.dptr = Sgl::transport(len);
    admin(c, &s)
}

fn read(nsid: u32) -> Sqe {
    let mut s = Sqe::new(0x02, 3);
    s.nsid = nsid;
    s.dptr = Sgl::transport(512);
    s
}

#[test]
fn identify_reports_ana_capabilities_and_groups() {
    let mut c = ready(cfg(Some(groups())));
    let id = identify(&mut c, 0x01, 0);
    assert_eq!(id[76], 0b1011, "CMIC: multi-port, multi-controller, ANA");
    assert_eq!(id[342], 10, "ANATT");
    assert_eq!(
        id[343] & 0b111,
        0b111,
        "ANACAP: optimized, non-optimized, inaccessible"
    );
    assert_eq!(
        id[343] & (1 << 6),
        0,
        "ANAGRPID may change: hosts size the log for NSIDs"
    );
    assert_eq!(le32(&id, 344), 3, "ANAGRPMAX");
    assert_eq!(le32(&id, 348), 3, "NANAGRPID");
    assert_eq!(le32(&id, 540), 1024, "MNAN");
    for (nsid, grp) in [(1, 1), (2, 2), (3, 1), (4, 3)] {
        assert_eq!(
            le32(&identify(&mut c, 0x00, nsid), 92),
            grp,
            "ANAGRPID of {nsid}"
        );
    }
    // Without ANA: none of it.
    let mut plain = ready(cfg(None));
    let id = identify(&mut plain, 0x01, 0);
    assert_eq!(id[76], 0b11);
    assert_eq!(
        (id[342], id[343], le32(&id, 344), le32(&id, 348)),
        (0, 0, 0, 0)
    );
    let (st, _) = ana_log(&mut plain, 4096, false);
    assert_eq!(
        (st.sct, st.sc),
        (Sct::CommandSpecific, 0x09),
        "Invalid Log Page"
    );
}

#[test]
fn ana_log_lists_groups_states_and_namespaces() {
    let mut c = ready(cfg(Some(groups())));
    let (st, page) = ana_log(&mut c, 4096, false);
    assert!(st.is_success(), "{st:?}");
    assert_eq!(page.len(), 4096, "zero-filled to the length asked");
    let (chgcnt, d) = parse_log_page(&page);
    assert_eq!(chgcnt, 0);
    let got: Vec<(u32, Result<AnaState, u8>, Vec<u32>)> =
        d.into_iter().map(|g| (g.grpid, g.state, g.nsids)).collect();
    assert_eq!(
        got,
        vec![
            (1, Ok(AnaState::NonOptimized), vec![1, 3]),
            (2, Ok(AnaState::Optimized), vec![2]),
            (3, Ok(AnaState::Inaccessible), vec![4]),
        ]
    );
    // Return Groups Only: the same groups without NSIDs.
    let (_, page) = ana_log(&mut c, 4096, true);
    let (_, d) = parse_log_page(&page);
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|g| g.nsids.is_empty()));
    // A state change moves the change count, in the header and descriptors.
    assert!(c.set_ana_state(1, AnaState::Inaccessible));
    assert!(!c.set_ana_state(1, AnaState::Inaccessible), "no change");
    assert!(!c.set_ana_state(9, AnaState::Optimized), "no such group");
    let (_, page) = ana_log(&mut c, 4096, false);
    let (chgcnt, d) = parse_log_page(&page);
    assert_eq!(chgcnt, 1);
    assert_eq!(d[0].state, Ok(AnaState::Inaccessible));
    assert!(d.iter().all(|g| g.change_count == 1));
}

#[test]
fn io_on_an_inaccessible_group_is_refused_with_path_status() {
    let c = ready(cfg(Some(groups())));
    // Group 1 Non-Optimized and group 2 Optimized: I/O runs.
    assert!(matches!(c.plan_io(&read(1)), IoPlan::Read { .. }));
    assert!(matches!(c.io_view().plan_io(&read(2)), IoPlan::Read { .. }));
    // Group 3 Inaccessible: Asymmetric Access Inaccessible (SCT 3h, SC 02h),
    // retryable on another path (no DNR).
    for plan in [c.plan_io(&read(4)), c.io_view().plan_io(&read(4))] {
        let IoPlan::Error(s) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!((s.sct, s.sc, s.dnr), (Sct::Path, 0x02, false));
    }
    // A later snapshot sees a state change.
    let mut c = c;
    c.set_ana_state(2, AnaState::Inaccessible);
    assert!(matches!(c.io_view().plan_io(&read(2)), IoPlan::Error(_)));
    c.set_ana_state(3, AnaState::Optimized);
    assert!(matches!(c.io_view().plan_io(&read(4)), IoPlan::Read { .. }));
}

fn state() -> impl Strategy<Value = AnaState> {
    prop_oneof![
        Just(AnaState::Optimized),
        Just(AnaState::NonOptimized),
        Just(AnaState::Inaccessible),
        Just(AnaState::PersistentLoss),
        Just(AnaState::Change),
    ]
}

proptest! {
    /// Any groups and any namespace placement: the log parses back to
    /// every group in order with its state, each namespace listed exactly
    /// once under its own group (none under a group that does not exist),
    /// and I/O runs exactly on Optimized and Non-Optimized groups.
    #[test]
    fn log_page_describes_exactly_the_configuration(
        states in prop::collection::vec(state(), 1..8),
        placement in prop::collection::vec(0u32..10, 0..40),
    ) {
        let groups = AnaGroups::new(states.clone());
        let namespaces: Vec<NamespaceInfo> = placement
            .iter()
            .enumerate()
            .map(|(i, g)| ns(i as u32 + 1, *g))
            .collect();
        let page = groups.log_page(&namespaces, false);
        let (_, d) = parse_log_page(&page);
        prop_assert_eq!(d.len(), states.len());
        for (i, g) in d.iter().enumerate() {
            prop_assert_eq!(g.grpid, i as u32 + 1);
            prop_assert_eq!(g.state, Ok(states[i]));
            let want: Vec<u32> = namespaces
                .iter()
                .filter(|n| n.anagrpid == g.grpid)
                .map(|n| n.nsid)
                .collect();
            prop_assert_eq!(&g.nsids, &want);
        }
        for n in &namespaces {
            let runs = matches!(
                groups.state(n.anagrpid),
                Some(AnaState::Optimized | AnaState::NonOptimized)
            );
            prop_assert_eq!(groups.io_refusal(n).is_none(), runs);
        }
    }
}

fn set_aec(c: &mut Controller, bits: u32) -> Status {
    let mut s = Sqe::new(0x09, 7);
    s.cdw10 = 0x0B;
    s.cdw11 = bits;
    admin(c, &s).0
}

#[test]
fn ana_change_raises_an_async_event_when_armed() {
    let mut c = ready(cfg(Some(groups())));
    // OAES bit 11 (ANA Change Notices) next to bit 8.
    let id = identify(&mut c, 1, 0);
    assert_eq!(le32(&id, 92) & (1 << 11 | 1 << 8), 1 << 11 | 1 << 8);
    // Not enabled in Asynchronous Event Configuration: state changes, no
    // event.
    let mut aer = Sqe::new(0x0C, 0x50);
    assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
    assert_eq!(
        c.change_ana_state(1, AnaState::Optimized),
        (true, None),
        "not armed"
    );
    // Armed: the parked AER completes with Notice / ANA Change / log 0Ch.
    assert!(set_aec(&mut c, 1 << 11).is_success());
    let (changed, done) = c.change_ana_state(2, AnaState::Inaccessible);
    assert!(changed);
    let done = done.expect("parked AER completed");
    assert_eq!(done.cid, 0x50);
    assert_eq!(done.completion, Completion::success(0x000C_0302));
    // No change, no event; masked until the log is read with RAE = 0.
    assert_eq!(c.change_ana_state(2, AnaState::Inaccessible), (false, None));
    aer.cid = 0x51;
    assert_eq!(c.plan_admin(&aer, &[]), AdminPlan::Park);
    assert_eq!(c.change_ana_state(2, AnaState::Optimized), (true, None));
    let (_, page) = ana_log(&mut c, 4096, false);
    assert_eq!(parse_log_page(&page).0, 3, "three changes counted");
    let (_, done) = c.change_ana_state(2, AnaState::NonOptimized);
    assert_eq!(done.map(|d| d.cid), Some(0x51));
}
