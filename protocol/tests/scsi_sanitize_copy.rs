//! SANITIZE state, EXTENDED COPY results, ORWRITE and the limits the
//! frontend relies on (transfer length, COMPARE AND WRITE length, UNMAP of
//! zero blocks, physical block exponent).

use zctarget_protocol::scsi::sense::{self};
use zctarget_protocol::scsi::{LogicalUnit, LunInfo, ParamKind, Plan, SanitizeAction, Sense};

const N: u64 = 0x8_0000; // 256 MiB of 512-byte blocks
const PORT_A: &str = "iqn.2024-01.test:a,i,0x400001370000";
const PORT_B: &str = "iqn.2024-01.test:b,i,0x400001370001";

fn info(thin: bool) -> LunInfo {
    let mut i = LunInfo::new(0, N, 512);
    i.thin_provisioning = thin;
    i
}

/// A unit with nexuses 1 (A) and 2 (B), their power-on UAs consumed.
fn lu(thin: bool) -> LogicalUnit {
    let mut l = LogicalUnit::new(info(thin));
    for (n, p) in [(1, PORT_A), (2, PORT_B)] {
        l.nexus_added(n, p);
        assert!(matches!(l.plan(n, p, &[0; 16], 0), Plan::Check(s) if s == sense::POWER_ON_RESET));
    }
    l
}

fn cdb(bytes: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..bytes.len()].copy_from_slice(bytes);
    c
}

fn check(p: Plan) -> Sense {
    match p {
        Plan::Check(s) => s,
        other => panic!("expected CHECK CONDITION, got {other:?}"),
    }
}

fn sixteen(op: u8, lba: u64, n: u32) -> [u8; 16] {
    let mut c = cdb(&[op]);
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}

const TUR: [u8; 16] = [0; 16];

#[test]
fn sanitize_block_erase_holds_the_unit_until_done() {
    let mut l = lu(true);
    let erase = cdb(&[0x48, 0x02]);
    assert_eq!(
        l.plan(1, PORT_A, &erase, 0),
        Plan::Sanitize {
            action: SanitizeAction::BlockErase,
            immed: false
        }
    );
    // Every nexus sees SANITIZE IN PROGRESS; INQUIRY still answers.
    for (n, p) in [(1, PORT_A), (2, PORT_B)] {
        assert_eq!(check(l.plan(n, p, &TUR, 0)), sense::SANITIZE_IN_PROGRESS);
    }
    assert!(matches!(
        l.plan(2, PORT_B, &cdb(&[0x12, 0, 0, 0, 36]), 36),
        Plan::DataIn(_)
    ));
    l.sanitize_done();
    assert_eq!(l.plan(1, PORT_A, &TUR, 0), Plan::Good);
}

#[test]
fn sanitize_overwrite_takes_its_pattern_from_parameter_data() {
    let mut l = lu(false);
    let mut ow = cdb(&[0x48, 0x81]); // IMMED, OVERWRITE
    ow[8] = 8;
    assert_eq!(
        l.plan(1, PORT_A, &ow, 8),
        Plan::NeedParameterData {
            len: 8,
            then: ParamKind::SanitizeOverwrite {
                immed: true,
                ause: false
            }
        }
    );
    let params = [0x81, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]; // INVERT, 1 pass
    let plan = l.with_parameter_data(
        1,
        ParamKind::SanitizeOverwrite {
            immed: true,
            ause: false,
        },
        &params,
    );
    assert_eq!(
        plan,
        Plan::Sanitize {
            action: SanitizeAction::Overwrite {
                pattern: vec![0xde, 0xad, 0xbe, 0xef],
                invert: true,
                count: 1
            },
            immed: true
        }
    );
    assert_eq!(
        check(l.plan(2, PORT_B, &TUR, 0)),
        sense::SANITIZE_IN_PROGRESS
    );
}

#[test]
fn sanitize_reserved_fields_and_write_protection() {
    let mut l = lu(true);
    let mut bad = cdb(&[0x48, 0x42]); // reserved bit 6 of byte 1
    let s = check(l.plan(1, PORT_A, &bad, 0));
    assert_eq!(
        (s.asc, s.field.map(|f| (f.byte, f.bit))),
        (0x24, Some((1, Some(6))))
    );
    for byte in 2..=6 {
        bad = cdb(&[0x48, 0x02]);
        bad[byte] = 1;
        let s = check(l.plan(1, PORT_A, &bad, 0));
        assert_eq!((s.asc, s.field.map(|f| f.byte)), (0x24, Some(byte as u16)));
    }
    // Block erase only on thin volumes.
    let mut thick = lu(false);
    assert_eq!(
        check(thick.plan(1, PORT_A, &cdb(&[0x48, 0x02]), 0)).asc,
        0x24
    );
    // A read-only volume refuses both kinds before any data moves.
    let mut ro_info = info(true);
    ro_info.read_only = true;
    let mut ro = LogicalUnit::new(ro_info);
    ro.nexus_added(1, PORT_A);
    let _ = ro.plan(1, PORT_A, &TUR, 0);
    assert_eq!(
        check(ro.plan(1, PORT_A, &cdb(&[0x48, 0x02]), 0)),
        sense::WRITE_PROTECTED
    );
    let mut ow = cdb(&[0x48, 0x01]);
    ow[8] = 8;
    assert_eq!(check(ro.plan(1, PORT_A, &ow, 8)), sense::WRITE_PROTECTED);
}

#[test]
fn copy_status_belongs_to_the_nexus_and_is_read_once() {
    let mut l = lu(true);
    let mut rcr = cdb(&[0x84, 0x00, 7]); // COPY STATUS, list id 7
    rcr[10..14].copy_from_slice(&64u32.to_be_bytes());
    assert_eq!(check(l.plan(1, PORT_A, &rcr, 64)).asc, 0x24);
    l.copy_done(1, 7, 3, true);
    // Another nexus does not see it.
    assert_eq!(check(l.plan(2, PORT_B, &rcr, 64)).asc, 0x24);
    match l.plan(1, PORT_A, &rcr, 64) {
        Plan::DataIn(d) => assert!(!d.is_empty()),
        other => panic!("expected copy status, got {other:?}"),
    }
    // Held data is discarded once returned.
    assert_eq!(check(l.plan(1, PORT_A, &rcr, 64)).asc, 0x24);
    // And when the nexus goes away.
    l.copy_done(2, 7, 1, false);
    l.nexus_lost(2);
    l.nexus_added(2, PORT_B);
    let _ = l.plan(2, PORT_B, &TUR, 0);
    assert_eq!(check(l.plan(2, PORT_B, &rcr, 64)).asc, 0x24);
}

#[test]
fn transfer_length_limits() {
    let mut l = lu(true);
    let max = info(true).max_transfer_blocks;
    assert!(matches!(
        l.plan(1, PORT_A, &sixteen(0x88, 0, max), max * 512),
        Plan::Read { blocks, .. } if blocks == max
    ));
    let s = check(l.plan(1, PORT_A, &sixteen(0x88, 0, max + 1), 0));
    assert_eq!((s.asc, s.field.map(|f| f.byte)), (0x24, Some(10)));
    let s = check(l.plan(1, PORT_A, &sixteen(0x8A, 0, max + 1), 0));
    assert_eq!(s.asc, 0x24);
    // Out of range wins over too long.
    assert_eq!(
        check(l.plan(1, PORT_A, &sixteen(0x88, N, max + 1), 0)),
        sense::LBA_OUT_OF_RANGE
    );
    // WRITE SAME is limited to what one WRITE could check.
    assert_eq!(info(true).max_write_same_blocks, u64::from(max));
}

#[test]
fn compare_and_write_length_wrapping_to_zero_needs_matching_data_out() {
    let mut l = lu(true);
    let mut c = cdb(&[0x89]);
    c[13] = 0; // what 256 blocks looks like in the one-byte field
    assert_eq!(check(l.plan(1, PORT_A, &c, 256 * 1024)).asc, 0x24);
    assert_eq!(l.plan(1, PORT_A, &c, 0), Plan::Good);
}

#[test]
fn unmap_of_zero_blocks_is_never_out_of_range() {
    let mut l = lu(true);
    let mut d = vec![0u8; 24];
    d[1] = 22;
    d[3] = 16;
    d[8..16].copy_from_slice(&N.to_be_bytes()); // at the end of the medium
    assert_eq!(l.with_parameter_data(1, ParamKind::Unmap, &d), Plan::Good);
    d[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(l.with_parameter_data(1, ParamKind::Unmap, &d), Plan::Good);
    d[16..20].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::Unmap, &d)),
        sense::LBA_OUT_OF_RANGE
    );
}

#[test]
fn orwrite_plans_a_read_modify_write() {
    let mut l = lu(true);
    let mut c = sixteen(0x8B, 10, 4);
    c[1] = 0x08; // FUA
    assert_eq!(
        l.plan(1, PORT_A, &c, 2048),
        Plan::OrWrite {
            lba: 10,
            blocks: 4,
            fua: true
        }
    );
    assert_eq!(
        check(l.plan(1, PORT_A, &sixteen(0x8B, N - 1, 2), 1024)),
        sense::LBA_OUT_OF_RANGE
    );
    let mut ro_info = info(true);
    ro_info.read_only = true;
    let mut ro = LogicalUnit::new(ro_info);
    ro.nexus_added(1, PORT_A);
    let _ = ro.plan(1, PORT_A, &TUR, 0);
    assert_eq!(
        check(ro.plan(1, PORT_A, &sixteen(0x8B, 0, 1), 512)),
        sense::WRITE_PROTECTED
    );
}

#[test]
fn read_capacity_16_reports_the_physical_block_exponent() {
    let mut i = info(true);
    i.physical_block_exponent = 3;
    let mut l = LogicalUnit::new(i);
    l.nexus_added(1, PORT_A);
    let _ = l.plan(1, PORT_A, &TUR, 0);
    let mut c = cdb(&[0x9E, 0x10]);
    c[13] = 32;
    match l.plan(1, PORT_A, &c, 32) {
        Plan::DataIn(d) => assert_eq!(d[13] & 0x0F, 3),
        other => panic!("{other:?}"),
    }
    match lu(true).plan(1, PORT_A, &c, 32) {
        Plan::DataIn(d) => assert_eq!(d[13] & 0x0F, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn supported_opcodes_list_sanitize_by_provisioning() {
    // REPORT SUPPORTED OPERATION CODES, one command with service action.
    let query = |l: &mut LogicalUnit, sa: u8| -> u8 {
        let mut c = cdb(&[0xA3, 0x0C, 0x02, 0x48, 0, sa]);
        c[6..10].copy_from_slice(&64u32.to_be_bytes());
        match l.plan(1, PORT_A, &c, 64) {
            Plan::DataIn(d) => d[1] & 0x07,
            other => panic!("{other:?}"),
        }
    };
    let mut thin = lu(true);
    let mut thick = lu(false);
    assert_eq!(query(&mut thin, 0x01), 0x03);
    assert_eq!(query(&mut thin, 0x02), 0x03);
    assert_eq!(query(&mut thin, 0x1F), 0x03);
    assert_eq!(query(&mut thick, 0x02), 0x01);
    assert_eq!(query(&mut thin, 0x03), 0x01); // CRYPTO ERASE: not supported
}
