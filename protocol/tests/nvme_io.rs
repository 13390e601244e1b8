//! I/O command planning: range edges, MDTS, write protection, SGL length,
//! DSM ranges; and property tests that no SQE or data makes the controller
//! panic.

use proptest::prelude::*;
use zctarget_protocol::nvme::fabrics::{cc_enable_default, property, Connect, ConnectData};
use zctarget_protocol::nvme::*;

const SUBNQN: &str = "nqn.2024-01.io.zctarget:vol1";

fn cfg() -> ControllerConfig {
    ControllerConfig {
        cntlid: 1,
        subnqn: SUBNQN.into(),
        namespaces: vec![
            NamespaceInfo {
                discard: true,
                ..NamespaceInfo::new(1, 1000, 512)
            },
            NamespaceInfo {
                read_only: true,
                ..NamespaceInfo::new(2, 100, 4096)
            },
            NamespaceInfo::new(3, u64::MAX / 512, 512),
        ],
        mdts: 2, // 16 KiB
        in_capsule_data_size: 8192,
        ..ControllerConfig::default()
    }
}

fn ready() -> Controller {
    let mut c = Controller::new(cfg());
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

fn rw(op: u8, nsid: u32, slba: u64, nlb0: u16, sgl: Sgl) -> Sqe {
    let mut s = Sqe::new(op, 1);
    s.nsid = nsid;
    s.cdw10 = slba as u32;
    s.cdw11 = (slba >> 32) as u32;
    s.cdw12 = u32::from(nlb0);
    s.dptr = sgl;
    s
}

#[test]
fn read_write_plans() {
    let c = ready();
    assert_eq!(
        c.plan_io(&rw(0x02, 1, 10, 7, Sgl::transport(4096))),
        IoPlan::Read {
            nsid: 1,
            offset: 5120,
            len: 4096
        }
    );
    let mut w = rw(0x01, 1, 0, 0, Sgl::in_capsule(512));
    w.cdw12 |= 1 << 30;
    assert_eq!(
        c.plan_io(&w),
        IoPlan::Write {
            nsid: 1,
            offset: 0,
            len: 512,
            fua: true,
            in_capsule: true
        }
    );
    assert_eq!(
        c.plan_io(&rw(0x01, 1, 1, 1, Sgl::transport(1024))),
        IoPlan::Write {
            nsid: 1,
            offset: 512,
            len: 1024,
            fua: false,
            in_capsule: false
        }
    );
    assert_eq!(
        c.plan_io(&rw(0x05, 1, 2, 0, Sgl::in_capsule(512))),
        IoPlan::Compare {
            nsid: 1,
            offset: 1024,
            len: 512,
            in_capsule: true
        }
    );
}

#[test]
fn lba_range_edges() {
    let c = ready();
    // Last block: ok. One past: out of range.
    assert!(matches!(
        c.plan_io(&rw(0x02, 1, 999, 0, Sgl::transport(512))),
        IoPlan::Read { .. }
    ));
    assert_eq!(
        c.plan_io(&rw(0x02, 1, 1000, 0, Sgl::transport(512))),
        IoPlan::Error(Status::LBA_OUT_OF_RANGE.dnr())
    );
    assert_eq!(
        c.plan_io(&rw(0x02, 1, 996, 4, Sgl::transport(2560))),
        IoPlan::Error(Status::LBA_OUT_OF_RANGE.dnr())
    );
    // SLBA + NLB overflowing u64.
    assert_eq!(
        c.plan_io(&rw(0x02, 1, u64::MAX, 0, Sgl::transport(512))),
        IoPlan::Error(Status::LBA_OUT_OF_RANGE.dnr())
    );
    // Huge namespace: the byte offset must not overflow.
    assert!(matches!(
        c.plan_io(&rw(0x0C, 3, u64::MAX / 512 - 1, 0, Sgl::transport(0))),
        IoPlan::Verify { .. }
    ));
    // Write Zeroes and Verify check the range too.
    assert_eq!(
        c.plan_io(&rw(0x08, 1, 990, 10, Sgl::transport(0))),
        IoPlan::Error(Status::LBA_OUT_OF_RANGE.dnr())
    );
    let mut wz = rw(0x08, 1, 990, 9, Sgl::transport(0));
    wz.cdw12 |= 1 << 25;
    assert_eq!(
        c.plan_io(&wz),
        IoPlan::WriteZeroes {
            nsid: 1,
            offset: 990 * 512,
            len: 5120,
            deallocate: true,
            fua: false
        }
    );
    assert_eq!(
        c.plan_io(&rw(0x0C, 1, 0, 0xFFFF, Sgl::transport(0))),
        IoPlan::Error(Status::LBA_OUT_OF_RANGE.dnr())
    );
}

#[test]
fn mdts_and_sgl_length() {
    let c = ready();
    // 16 KiB is the limit (MDTS 2).
    assert!(matches!(
        c.plan_io(&rw(0x02, 1, 0, 31, Sgl::transport(16384))),
        IoPlan::Read { .. }
    ));
    assert_eq!(
        c.plan_io(&rw(0x02, 1, 0, 32, Sgl::transport(16896))),
        IoPlan::Error(Status::INVALID_FIELD.dnr())
    );
    assert_eq!(
        c.plan_io(&rw(0x02, 1, 0, 1, Sgl::transport(512))),
        IoPlan::Error(Status::SGL_INVALID_DATA.dnr())
    );
    assert_eq!(
        c.plan_io(&rw(0x01, 1, 0, 0, Sgl::in_capsule(8704))),
        IoPlan::Error(Status::SGL_INVALID_OFFSET.dnr())
    );
    assert_eq!(
        c.plan_io(&rw(0x00, 1, 0, 0, Sgl::transport(512))),
        IoPlan::Error(Status::SGL_INVALID_DATA.dnr())
    );
    assert_eq!(
        c.plan_io(&rw(0x08, 1, 0, 0, Sgl::transport(512))),
        IoPlan::Error(Status::SGL_INVALID_DATA.dnr())
    );
}

#[test]
fn namespace_and_opcode_errors() {
    let c = ready();
    for nsid in [0, 4, 0xFFFF_FFFE, NSID_ALL] {
        assert_eq!(
            c.plan_io(&rw(0x02, nsid, 0, 0, Sgl::transport(512))),
            IoPlan::Error(Status::INVALID_NS.dnr())
        );
    }
    assert_eq!(
        c.plan_io(&rw(0x00, NSID_ALL, 0, 0, Sgl::transport(0))),
        IoPlan::Flush { nsid: NSID_ALL }
    );
    assert_eq!(
        c.plan_io(&rw(0x00, 2, 0, 0, Sgl::transport(0))),
        IoPlan::Flush { nsid: 2 }
    );
    for op in [0x04, 0x0D, 0x11, 0x80] {
        assert_eq!(
            c.plan_io(&rw(op, 1, 0, 0, Sgl::transport(0))),
            IoPlan::Error(Status::INVALID_OPCODE.dnr())
        );
    }
    let mut fused = rw(0x02, 1, 0, 0, Sgl::transport(512));
    fused.fuse = 2;
    assert_eq!(
        c.plan_io(&fused),
        IoPlan::Error(Status::INVALID_FIELD.dnr())
    );
    let mut prp = rw(0x02, 1, 0, 0, Sgl::transport(512));
    prp.psdt = 0;
    assert_eq!(c.plan_io(&prp), IoPlan::Error(Status::INVALID_FIELD.dnr()));
    let mut bad_sgl = rw(0x02, 1, 0, 0, Sgl::transport(512));
    bad_sgl.dptr.id = 0x40; // keyed (RDMA)
    assert_eq!(
        c.plan_io(&bad_sgl),
        IoPlan::Error(Status::SGL_INVALID_TYPE.dnr())
    );
}

#[test]
fn write_protected_namespace() {
    let c = ready();
    assert_eq!(
        c.plan_io(&rw(0x01, 2, 0, 0, Sgl::transport(4096))),
        IoPlan::Error(Status::NS_WRITE_PROTECTED)
    );
    assert_eq!(
        c.plan_io(&rw(0x08, 2, 0, 0, Sgl::transport(0))),
        IoPlan::Error(Status::NS_WRITE_PROTECTED)
    );
    assert!(matches!(
        c.plan_io(&rw(0x02, 2, 99, 0, Sgl::transport(4096))),
        IoPlan::Read { .. }
    ));
    assert!(matches!(
        c.plan_io(&rw(0x05, 2, 0, 0, Sgl::transport(4096))),
        IoPlan::Compare { .. }
    ));
}

#[test]
fn not_ready_and_fabrics_on_io_queue() {
    let mut c = ready();
    let mut disc = Sqe::new(0x7F, 1);
    disc.nsid = 0x08;
    assert_eq!(c.plan_io(&disc), IoPlan::Disconnect);
    disc.nsid = 0x04; // Property Get
    assert_eq!(
        c.plan_io(&disc),
        IoPlan::Error(Status::INVALID_OPCODE.dnr())
    );
    disc.nsid = 0x01;
    assert_eq!(c.plan_io(&disc), IoPlan::Error(Status::CMD_SEQ_ERROR.dnr()));
    c.write_cc(0);
    assert_eq!(
        c.plan_io(&rw(0x02, 1, 0, 0, Sgl::transport(512))),
        IoPlan::Error(Status::CMD_SEQ_ERROR.dnr())
    );
}

fn dsm_range(nlb: u32, slba: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[4..8].copy_from_slice(&nlb.to_le_bytes());
    r[8..16].copy_from_slice(&slba.to_le_bytes());
    r
}

#[test]
fn dataset_management() {
    let c = ready();
    let mut s = rw(0x09, 1, 0, 0, Sgl::in_capsule(32));
    s.cdw10 = 1; // two ranges
    s.cdw11 = 1 << 2; // AD
    s.cdw12 = 0;
    assert_eq!(
        c.plan_io(&s),
        IoPlan::Dsm {
            nsid: 1,
            ranges: 2,
            len: 32,
            in_capsule: true
        }
    );
    // The Linux host sends its whole 4 KiB range page for one range.
    s.cdw10 = 0;
    s.dptr = Sgl::in_capsule(4096);
    assert_eq!(
        c.plan_io(&s),
        IoPlan::Dsm {
            nsid: 1,
            ranges: 1,
            len: 4096,
            in_capsule: true
        }
    );
    s.dptr = Sgl::in_capsule(4112);
    assert_eq!(
        c.plan_io(&s),
        IoPlan::Error(Status::SGL_INVALID_DATA.dnr()),
        "more than 256 ranges"
    );
    s.cdw10 = 1;
    s.dptr = Sgl::in_capsule(32);
    s.cdw11 = 0;
    assert_eq!(c.plan_io(&s), IoPlan::Nop, "no deallocate: nothing to do");
    s.dptr = Sgl::in_capsule(16);
    assert_eq!(c.plan_io(&s), IoPlan::Error(Status::SGL_INVALID_DATA.dnr()));
    let mut data = Vec::new();
    data.extend_from_slice(&dsm_range(8, 0));
    data.extend_from_slice(&dsm_range(0, 5)); // empty: dropped
    data.extend_from_slice(&dsm_range(10, 990)); // ends exactly at the end
    assert_eq!(
        c.dsm_ranges(1, &data).unwrap(),
        vec![
            DsmRange {
                offset: 0,
                len: 4096
            },
            DsmRange {
                offset: 990 * 512,
                len: 5120
            }
        ]
    );
    data.extend_from_slice(&dsm_range(11, 990));
    assert_eq!(c.dsm_ranges(1, &data), Err(Status::LBA_OUT_OF_RANGE.dnr()));
    assert_eq!(
        c.dsm_ranges(1, &data[..20]),
        Err(Status::SGL_INVALID_DATA.dnr())
    );
    assert_eq!(c.dsm_ranges(1, &[]), Err(Status::SGL_INVALID_DATA.dnr()));
    assert_eq!(c.dsm_ranges(9, &data), Err(Status::INVALID_NS.dnr()));
    // Namespace without discard: DSM deallocate is a no-op; read-only: refused.
    let mut s = rw(0x09, 3, 0, 0, Sgl::in_capsule(16));
    s.cdw11 = 1 << 2;
    s.cdw12 = 0;
    assert_eq!(c.plan_io(&s), IoPlan::Nop);
    s.nsid = 2;
    assert_eq!(c.plan_io(&s), IoPlan::Error(Status::NS_WRITE_PROTECTED));
}

fn arb_sqe() -> impl Strategy<Value = [u8; 64]> {
    (
        prop::array::uniform32(any::<u8>()),
        prop::array::uniform32(any::<u8>()),
        0u8..=0x20,
        prop::sample::select(vec![0x00u8, 0x40, 0x41, 0x80]),
        prop::sample::select(vec![0x00u8, 0x01, 0x5A, 0x40, 0x02]),
        any::<bool>(),
    )
        .prop_map(|(a, b, op, flags, sgl_id, fabrics)| {
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&a);
            s[32..].copy_from_slice(&b);
            // Bias towards meaningful opcodes, flags and SGL types.
            s[0] = if fabrics { 0x7F } else { op };
            if fabrics {
                s[4] &= 0x0F;
            } else {
                let nsid = u32::from(s[4] % 5);
                s[4..8].copy_from_slice(&nsid.to_le_bytes());
            }
            s[1] = flags;
            s[39] = sgl_id;
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn plan_never_panics(raw in arb_sqe(), data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let sqe = Sqe::parse(&raw);
        prop_assert_eq!(Sqe::parse(&sqe.encode()), sqe);
        let mut c = ready();
        let _ = c.plan_io(&sqe);
        let _ = c.plan_admin(&sqe, &data);
        let _ = c.connect(&sqe, &data);
        let _ = c.dsm_ranges(1, &data);
        let _ = c.namespace_changed(1);
        let mut fresh = Controller::new(cfg());
        let _ = fresh.plan_admin(&sqe, &data);
        let _ = fresh.connect(&sqe, &data);
        let mut disc = Controller::new(ControllerConfig { is_discovery: true, ..cfg() });
        let _ = disc.plan_admin(&sqe, &data);
    }

    #[test]
    fn fully_random_sqe_never_panics(raw in prop::array::uniform32(any::<u8>()), raw2 in prop::array::uniform32(any::<u8>())) {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&raw);
        b[32..].copy_from_slice(&raw2);
        let sqe = Sqe::parse(&b);
        prop_assert_eq!(sqe.encode(), b);
        let mut c = ready();
        let _ = c.plan_io(&sqe);
        let _ = c.plan_admin(&sqe, &b);
    }

    #[test]
    fn accepted_reads_stay_inside_namespace(slba in 0u64..1100, nlb0 in 0u16..64) {
        let c = ready();
        let len = (u32::from(nlb0) + 1) * 512;
        match c.plan_io(&rw(0x02, 1, slba, nlb0, Sgl::transport(len))) {
            IoPlan::Read { offset, len, .. } => {
                prop_assert!(offset + u64::from(len) <= 1000 * 512);
                prop_assert!(len <= 16384);
            }
            IoPlan::Error(s) => prop_assert!(
                s == Status::LBA_OUT_OF_RANGE.dnr() || s == Status::INVALID_FIELD.dnr()
            ),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    /// The lock-free snapshot I/O queues plan from answers exactly what
    /// the controller would — ready or not, after an admin command that
    /// may have changed it, for any SQE and DSM data.
    #[test]
    fn io_view_plans_like_the_controller(
        raw in arb_sqe(), admin in arb_sqe(), data in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let sqe = Sqe::parse(&raw);
        let mut c = ready();
        for c in [&mut c, &mut Controller::new(cfg())] {
            let _ = c.plan_admin(&Sqe::parse(&admin), &data);
            let view = c.io_view();
            prop_assert_eq!(view.plan_io(&sqe), c.plan_io(&sqe));
            prop_assert_eq!(view.write_cache_enabled(), c.write_cache_enabled());
            prop_assert_eq!(view.dsm_ranges(1, &data), c.dsm_ranges(1, &data));
        }
    }

    #[test]
    fn connect_data_parse_total(data in prop::collection::vec(any::<u8>(), 0..1100)) {
        let _ = ConnectData::parse(&data);
    }
}
