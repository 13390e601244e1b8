//! Known-answer tests for the SCSI layer (SPC-4 / SBC-3 byte layouts).

use zctarget_protocol::scsi::sense::{self, Status};
use zctarget_protocol::scsi::{
    encode_lba_status, inquiry_for_missing_lun, miscompare_sense, report_luns, LogicalUnit,
    LunInfo, ParamKind, Plan, ResetKind, Sense,
};

const N: u64 = 0x20_0000; // 1 GiB of 512-byte blocks
const PORT: &str = "iqn.2024-01.test:host,i,0x400001370000";

fn info() -> LunInfo {
    let mut i = LunInfo::new(0, N, 512);
    i.thin_provisioning = true;
    i.unit_serial = "SER123".into();
    i.naa_designator = [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    i.target_name = "iqn.2024-01.test:tgt".into();
    i
}

/// A unit with nexus 1 logged in and its power-on UA consumed.
fn lu() -> LogicalUnit {
    let mut l = LogicalUnit::new(info());
    l.nexus_added(1, PORT);
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

fn check(p: Plan) -> Sense {
    match p {
        Plan::Check(s) => s,
        other => panic!("expected CHECK CONDITION, got {other:?}"),
    }
}

fn r16(lba: u64, n: u32) -> [u8; 16] {
    let mut c = cdb(&[0x88]);
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}

fn r10(op: u8, lba: u32, n: u16) -> [u8; 16] {
    let mut c = cdb(&[op]);
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&n.to_be_bytes());
    c
}

#[test]
fn lba_out_of_range_fixed_sense_bytes() {
    let want = [
        0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0,
    ];
    assert_eq!(sense::LBA_OUT_OF_RANGE.fixed_format(), want);
}

#[test]
fn invalid_field_sense_has_field_pointer() {
    let s = Sense::invalid_cdb_field(2, Some(5));
    let f = s.fixed_format();
    assert_eq!(f[15], 0x80 | 0x40 | 0x08 | 5);
    assert_eq!(&f[16..18], &[0, 2]);
    let d = s.descriptor_format();
    assert_eq!(&d[..4], &[0x72, 0x05, 0x24, 0x00]);
    assert_eq!(d[7] as usize, d.len() - 8);
}

#[test]
fn miscompare_info() {
    let f = miscompare_sense(0x1234).fixed_format();
    assert_eq!(f[0], 0xF0);
    assert_eq!(&f[3..7], &[0, 0, 0x12, 0x34]);
    assert_eq!((f[2], f[12], f[13]), (0x0E, 0x1D, 0x00));
}

#[test]
fn read_capacity_16_for_1gib() {
    let mut l = lu();
    let d = data(l.plan(
        1,
        PORT,
        &cdb(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32]),
        0,
    ));
    let mut want = vec![0u8; 32];
    want[..8].copy_from_slice(&(N - 1).to_be_bytes());
    want[8..12].copy_from_slice(&512u32.to_be_bytes());
    want[14] = 0xC0; // LBPME, LBPRZ
    assert_eq!(d, want);
    // Allocation length truncates.
    let d = data(l.plan(
        1,
        PORT,
        &cdb(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12]),
        0,
    ));
    assert_eq!(d.len(), 12);
}

#[test]
fn read_capacity_10_saturates() {
    let mut i = info();
    i.blocks = 1 << 40;
    let mut l = LogicalUnit::new(i);
    let d = data(l.plan(9, PORT, &cdb(&[0x25]), 0));
    assert_eq!(d, vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
}

#[test]
fn standard_inquiry() {
    let mut l = lu();
    let d = data(l.plan(1, PORT, &cdb(&[0x12, 0, 0, 1, 4]), 0));
    assert!(d.len() >= 36);
    assert_eq!(d[0], 0x00);
    assert_eq!(d[2], 0x06);
    assert_eq!(d[3] & 0x0F, 2);
    assert_eq!(d[3] & 0x10, 0x10, "HiSup");
    assert_eq!(d[4] as usize, d.len() - 5);
    assert_eq!(d[7] & 0x02, 0x02, "CmdQue");
    assert_eq!(&d[8..16], b"ZCTARGET");
    // Allocation length truncates.
    assert_eq!(data(l.plan(1, PORT, &cdb(&[0x12, 0, 0, 0, 5]), 0)).len(), 5);
    // EVPD=0 with a page code.
    let s = check(l.plan(1, PORT, &cdb(&[0x12, 0, 0x80, 0, 255]), 0));
    assert_eq!((s.key, s.asc), (5, 0x24));
}

#[test]
fn vpd_pages() {
    let mut l = lu();
    let d = data(l.plan(1, PORT, &cdb(&[0x12, 1, 0x00, 0, 255]), 0));
    assert_eq!(d[1], 0);
    let pages = &d[4..4 + d[3] as usize];
    for p in [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2] {
        assert!(pages.contains(&p), "page {p:#x}");
    }
    let d = data(l.plan(1, PORT, &cdb(&[0x12, 1, 0x80, 0, 255]), 0));
    assert_eq!(&d[4..], b"SER123");
    // Block limits.
    let d = data(l.plan(1, PORT, &cdb(&[0x12, 1, 0xB0, 0, 255]), 0));
    assert_eq!(d.len(), 64);
    assert_eq!(d[3], 0x3C);
    assert_eq!(d[4] & 1, 1, "WSNZ");
    assert_eq!(d[5], 128);
    assert!(u32::from_be_bytes(d[20..24].try_into().unwrap()) > 0);
    // Provisioning.
    let d = data(l.plan(1, PORT, &cdb(&[0x12, 1, 0xB2, 0, 255]), 0));
    assert_eq!(d[5] & 0xE0, 0xE0);
    assert_eq!(d[6] & 0x07, 2);
    // Unknown page.
    let s = check(l.plan(1, PORT, &cdb(&[0x12, 1, 0xC7, 0, 255]), 0));
    assert_eq!(s.asc, 0x24);
}

#[test]
fn vpd_83_designators() {
    let mut l = lu();
    let d = data(l.plan(1, PORT, &cdb(&[0x12, 1, 0x83, 0, 255]), 0));
    let len = u16::from_be_bytes([d[2], d[3]]) as usize;
    assert_eq!(len, d.len() - 4);
    let mut off = 4;
    let mut found = Vec::new();
    while off < d.len() {
        let (assoc, ty, l) = (
            (d[off + 1] >> 4) & 3,
            d[off + 1] & 0x0F,
            d[off + 3] as usize,
        );
        found.push((assoc, ty, d[off + 4..off + 4 + l].to_vec()));
        off += 4 + l;
    }
    assert_eq!(off, d.len());
    assert!(found.contains(&(0, 3, info().naa_designator.to_vec())));
    assert!(found
        .iter()
        .any(|(a, t, v)| *a == 0 && *t == 1 && v.starts_with(b"ZCTARGET")));
    assert!(found.contains(&(1, 4, vec![0, 0, 0, 1])));
    assert!(found.iter().any(|(a, t, _)| *a == 1 && *t == 5));
    let name = found.iter().find(|(a, t, _)| *a == 2 && *t == 8).unwrap();
    assert!(name.2.starts_with(b"iqn.2024-01.test:tgt\0"));
    assert_eq!(name.2.len() % 4, 0);
}

#[test]
fn report_luns_encoding() {
    let d = data(report_luns(
        &[0, 5, 300],
        &cdb(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
    ));
    assert_eq!(&d[..8], &[0, 0, 0, 24, 0, 0, 0, 0]);
    assert_eq!(&d[8..16], &[0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&d[16..18], &[0, 5]);
    assert_eq!(&d[24..26], &[0x41, 0x2C]);
    let s = check(report_luns(&[0], &cdb(&[0xA0, 0, 7, 0, 0, 0, 0, 0, 1, 0])));
    assert_eq!(s.asc, 0x24);
}

#[test]
fn missing_lun() {
    let d = data(inquiry_for_missing_lun(&cdb(&[0x12, 0, 0, 0, 36])));
    assert_eq!(d[0], 0x7F);
    assert_eq!(d.len(), 36);
    assert!(matches!(
        zctarget_protocol::scsi::plan_missing_lun(&cdb(&[0x00]), &[0]),
        Plan::Check(s) if s == sense::LOGICAL_UNIT_NOT_SUPPORTED
    ));
}

#[test]
fn read_write_range_edges() {
    let mut l = lu();
    assert_eq!(
        l.plan(1, PORT, &r16(N - 1, 1), 512),
        Plan::Read {
            lba: N - 1,
            blocks: 1,
            fua: false
        }
    );
    assert_eq!(
        check(l.plan(1, PORT, &r16(N, 1), 512)),
        sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        check(l.plan(1, PORT, &r16(N - 1, 2), 1024)),
        sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        check(l.plan(1, PORT, &r16(u64::MAX, 2), 1024)),
        sense::LBA_OUT_OF_RANGE
    );
    // Zero blocks: GOOD, unless the LBA is past the end.
    assert_eq!(l.plan(1, PORT, &r16(0, 0), 0), Plan::Good);
    assert_eq!(
        check(l.plan(1, PORT, &r16(N + 1, 0), 0)),
        sense::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        check(l.plan(1, PORT, &r10(0x28, 0xFFFF_FFFF, 0), 0)),
        sense::LBA_OUT_OF_RANGE
    );
    // READ(6): length 0 means 256.
    assert_eq!(
        l.plan(1, PORT, &cdb(&[0x08, 0, 0, 0, 0]), 0),
        Plan::Read {
            lba: 0,
            blocks: 256,
            fua: false
        }
    );
    // FUA / WRPROTECT.
    let mut w = r10(0x2A, 7, 2);
    w[1] = 0x08;
    assert_eq!(
        l.plan(1, PORT, &w, 1024),
        Plan::Write {
            lba: 7,
            blocks: 2,
            fua: true
        }
    );
    w[1] = 0x20;
    assert_eq!(check(l.plan(1, PORT, &w, 1024)).asc, 0x24);
}

#[test]
fn read_only_writes() {
    let mut i = info();
    i.read_only = true;
    let mut l = LogicalUnit::new(i);
    assert_eq!(
        check(l.plan(1, PORT, &r10(0x2A, 0, 1), 512)),
        sense::WRITE_PROTECTED
    );
    assert!(matches!(
        l.plan(1, PORT, &r10(0x28, 0, 1), 512),
        Plan::Read { .. }
    ));
    let d = data(l.plan(1, PORT, &cdb(&[0x1A, 0, 0x3F, 0, 255]), 0));
    assert_eq!(d[2] & 0x80, 0x80, "WP");
}

#[test]
fn verify_and_write_verify() {
    let mut l = lu();
    let mut v = r10(0x2F, 3, 4);
    v[1] = 0x02;
    assert_eq!(
        l.plan(1, PORT, &v, 2048),
        Plan::Verify {
            lba: 3,
            blocks: 4,
            byte_check: true
        }
    );
    v[1] = 0x00;
    assert_eq!(
        l.plan(1, PORT, &v, 0),
        Plan::Verify {
            lba: 3,
            blocks: 4,
            byte_check: false
        }
    );
    v[1] = 0x20;
    assert_eq!(check(l.plan(1, PORT, &v, 0)).asc, 0x24);
    assert_eq!(
        l.plan(1, PORT, &r10(0x2E, 3, 4), 2048),
        Plan::WriteAndVerify { lba: 3, blocks: 4 }
    );
}

#[test]
fn write_same() {
    let mut l = lu();
    let mut ws = r10(0x41, 0, 8);
    ws[1] = 0x08;
    assert_eq!(
        l.plan(1, PORT, &ws, 512),
        Plan::WriteSame {
            lba: 0,
            blocks: 8,
            unmap: true,
            ndob: false
        }
    );
    // Zero blocks with WSNZ=1.
    assert_eq!(check(l.plan(1, PORT, &r10(0x41, 0, 0), 512)).asc, 0x24);
    // Zero blocks past the end is out of range first.
    assert_eq!(
        check(l.plan(1, PORT, &r10(0x41, (N + 1) as u32, 0), 512)),
        sense::LBA_OUT_OF_RANGE
    );
    // ANCHOR without UNMAP.
    let mut a = r10(0x41, 0, 1);
    a[1] = 0x10;
    assert_eq!(check(l.plan(1, PORT, &a, 512)).asc, 0x24);
    // Over the maximum write same length.
    let mut big = cdb(&[0x93]);
    big[10..14].copy_from_slice(&65537u32.to_be_bytes());
    assert_eq!(check(l.plan(1, PORT, &big, 512)).asc, 0x24);
    // NDOB on WRITE SAME(16).
    let mut nd = cdb(&[0x93, 0x09]);
    nd[13] = 4;
    assert_eq!(
        l.plan(1, PORT, &nd, 0),
        Plan::WriteSame {
            lba: 0,
            blocks: 4,
            unmap: true,
            ndob: true
        }
    );
}

#[test]
fn compare_and_write() {
    let mut l = lu();
    let mut c = cdb(&[0x89]);
    c[2..10].copy_from_slice(&5u64.to_be_bytes());
    c[13] = 2;
    assert_eq!(
        l.plan(1, PORT, &c, 2048),
        Plan::CompareAndWrite {
            lba: 5,
            blocks: 2,
            fua: false
        }
    );
    assert_eq!(check(l.plan(1, PORT, &c, 1024)).asc, 0x24);
    c[13] = 129;
    assert_eq!(check(l.plan(1, PORT, &c, 129 * 1024)).asc, 0x24);
}

#[test]
fn unmap_parameter_list() {
    let mut l = lu();
    let p = l.plan(1, PORT, &cdb(&[0x42, 0, 0, 0, 0, 0, 0, 0, 40]), 40);
    assert_eq!(
        p,
        Plan::NeedParameterData {
            len: 40,
            then: ParamKind::Unmap
        }
    );
    let mut d = vec![0u8; 40];
    d[1] = 38;
    d[3] = 32;
    d[8..16].copy_from_slice(&10u64.to_be_bytes());
    d[16..20].copy_from_slice(&5u32.to_be_bytes());
    d[24..32].copy_from_slice(&100u64.to_be_bytes()); // zero-length: skipped
    assert_eq!(
        l.with_parameter_data(1, ParamKind::Unmap, &d),
        Plan::Unmap(vec![(10, 5)])
    );
    // Descriptor out of range.
    d[24..32].copy_from_slice(&(N - 1).to_be_bytes());
    d[32..36].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::Unmap, &d)),
        sense::LBA_OUT_OF_RANGE
    );
    // Header claims more than was sent.
    d[3] = 48;
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::Unmap, &d)),
        sense::PARAMETER_LIST_LENGTH_ERROR
    );
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::Unmap, &d[..5])),
        sense::PARAMETER_LIST_LENGTH_ERROR
    );
}

#[test]
fn unit_attention_order_and_exemptions() {
    let mut l = LogicalUnit::new(info());
    l.nexus_added(1, PORT);
    l.nexus_added(2, "iqn.other,i,0x1");
    // INQUIRY is exempt and does not consume.
    assert!(matches!(
        l.plan(1, PORT, &cdb(&[0x12, 0, 0, 0, 36]), 0),
        Plan::DataIn(_)
    ));
    l.set_lun_list(&[0, 1]);
    assert_eq!(check(l.plan(1, PORT, &cdb(&[0]), 0)), sense::POWER_ON_RESET);
    // REQUEST SENSE returns (and consumes) the next one.
    let d = data(l.plan(1, PORT, &cdb(&[0x03, 0, 0, 0, 18]), 0));
    assert_eq!((d[2], d[12], d[13]), (6, 0x3F, 0x0E));
    assert_eq!(l.plan(1, PORT, &cdb(&[0]), 0), Plan::Good);
    let d = data(l.plan(1, PORT, &cdb(&[0x03, 0, 0, 0, 18]), 0));
    assert_eq!((d[2], d[12]), (0, 0));
    // Reset: the other nexus gets a UA, the issuer does not.
    l.reset(ResetKind::LogicalUnit, Some(1));
    assert_eq!(l.plan(1, PORT, &cdb(&[0]), 0), Plan::Good);
    assert_eq!(
        check(l.plan(2, "iqn.other,i,0x1", &cdb(&[0]), 0)),
        sense::POWER_ON_RESET
    );
}

#[test]
fn spc2_reserve_release() {
    let mut l = lu();
    let other = "iqn.other,i,0x1";
    l.nexus_added(2, other);
    l.plan(2, other, &cdb(&[0]), 0);
    assert_eq!(l.plan(1, PORT, &cdb(&[0x16]), 0), Plan::Good);
    assert_eq!(l.plan(1, PORT, &cdb(&[0x16]), 0), Plan::Good);
    assert_eq!(
        l.plan(2, other, &cdb(&[0x16]), 0),
        Plan::Status(Status::ReservationConflict)
    );
    assert_eq!(
        l.plan(2, other, &r10(0x28, 0, 1), 512),
        Plan::Status(Status::ReservationConflict)
    );
    assert!(matches!(
        l.plan(2, other, &cdb(&[0x12, 0, 0, 0, 36]), 0),
        Plan::DataIn(_)
    ));
    assert_eq!(l.plan(2, other, &cdb(&[0x17]), 0), Plan::Good);
    assert_eq!(
        l.plan(2, other, &cdb(&[0]), 0),
        Plan::Status(Status::ReservationConflict)
    );
    l.nexus_lost(1);
    assert_eq!(l.plan(2, other, &cdb(&[0]), 0), Plan::Good);
    assert_eq!(l.plan(2, other, &cdb(&[0x16]), 0), Plan::Good);
    l.reset(ResetKind::LogicalUnit, None);
    l.plan(2, other, &cdb(&[0]), 0);
    assert_eq!(l.plan(2, other, &cdb(&[0]), 0), Plan::Good);
}

#[test]
fn report_supported_opcodes() {
    let mut l = lu();
    let all = data(l.plan(
        1,
        PORT,
        &cdb(&[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
        0,
    ));
    let len = u32::from_be_bytes(all[..4].try_into().unwrap()) as usize;
    assert_eq!(len, all.len() - 4);
    let mut off = 4;
    let mut n = 0;
    while off < all.len() {
        let (op, sa, servactv) = (
            all[off],
            u16::from_be_bytes([all[off + 2], all[off + 3]]),
            all[off + 5] & 1,
        );
        assert!(servactv == 1 || sa == 0);
        // One command: reporting option 1 or 2.
        let opt = if servactv == 1 { 2 } else { 1 };
        let one = data(l.plan(
            1,
            PORT,
            &cdb(&[
                0xA3,
                0x0C,
                opt,
                op,
                (sa >> 8) as u8,
                sa as u8,
                0,
                0,
                0xFF,
                0xFF,
            ]),
            0,
        ));
        assert_eq!(one[1] & 7, 3, "opcode {op:#x}");
        assert_eq!(one[4], op);
        let wrong = if servactv == 1 { 1 } else { 2 };
        let s = check(l.plan(
            1,
            PORT,
            &cdb(&[
                0xA3,
                0x0C,
                wrong,
                op,
                (sa >> 8) as u8,
                sa as u8,
                0,
                0,
                0xFF,
                0xFF,
            ]),
            0,
        ));
        assert_eq!(s.asc, 0x24);
        off += 8;
        n += 1;
    }
    assert!(n > 40);
    // RCTD: each descriptor carries a timeouts descriptor of length 0x0A.
    let all = data(l.plan(
        1,
        PORT,
        &cdb(&[0xA3, 0x0C, 0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
        0,
    ));
    assert_eq!(all[4 + 5] & 2, 2);
    assert_eq!(&all[12..14], &[0, 0x0A]);
    // READ(10) usage data has DPO and FUA.
    let one = data(l.plan(
        1,
        PORT,
        &cdb(&[0xA3, 0x0C, 1, 0x28, 0, 0, 0, 0, 0xFF, 0xFF]),
        0,
    ));
    assert_eq!(one[5] & 0x18, 0x18);
}

#[test]
fn unsupported_opcode() {
    let mut l = lu();
    assert_eq!(
        check(l.plan(1, PORT, &cdb(&[0xC0]), 0)),
        sense::INVALID_COMMAND_OPERATION_CODE
    );
}

#[test]
fn lba_status_encoding() {
    let d = encode_lba_status(0, &[(0, 8, 0), (8, 4, 1)], 1024);
    assert_eq!(d.len(), 40);
    assert_eq!(&d[..4], &[0, 0, 0, 36]);
    assert_eq!(&d[24..32], &8u64.to_be_bytes());
    assert_eq!(d[36], 1);
    let mut l = lu();
    let mut c = cdb(&[0x9E, 0x12]);
    c[2..10].copy_from_slice(&N.to_be_bytes());
    c[13] = 24;
    assert_eq!(check(l.plan(1, PORT, &c, 0)), sense::LBA_OUT_OF_RANGE);
    c[2..10].copy_from_slice(&(N - 1).to_be_bytes());
    assert_eq!(
        l.plan(1, PORT, &c, 0),
        Plan::GetLbaStatus {
            lba: N - 1,
            alloc_len: 24
        }
    );
}

#[test]
fn extended_copy_parse() {
    let mut l = lu();
    let naa = info().naa_designator;
    let mut d = vec![0u8; 16 + 32 + 28];
    d[0] = 1;
    d[3] = 32;
    d[11] = 28;
    let t = &mut d[16..48];
    t[0] = 0xE4;
    t[4] = 0x01;
    t[5] = 0x03;
    t[7] = 16;
    t[8..24].copy_from_slice(&naa);
    t[29..32].copy_from_slice(&[0, 2, 0]);
    let s = &mut d[48..76];
    s[0] = 0x02;
    s[3] = 0x18;
    s[10..12].copy_from_slice(&16u16.to_be_bytes());
    s[12..20].copy_from_slice(&0u64.to_be_bytes());
    s[20..28].copy_from_slice(&100u64.to_be_bytes());
    let p = l.with_parameter_data(1, ParamKind::ExtendedCopy, &d);
    match p {
        Plan::ExtendedCopy { list_id, segments } => {
            assert_eq!(list_id, 1);
            assert_eq!(segments.len(), 1);
            assert_eq!(
                (segments[0].src_lba, segments[0].dst_lba, segments[0].blocks),
                (0, 100, 16)
            );
        }
        other => panic!("{other:?}"),
    }
    // Truncated list.
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::ExtendedCopy, &d[..75])),
        sense::PARAMETER_LIST_LENGTH_ERROR
    );
    // Unknown target descriptor type.
    let mut bad = d.clone();
    bad[16] = 0xE0;
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::ExtendedCopy, &bad)).ascq,
        0x07
    );
    // Destination index out of range.
    let mut bad = d.clone();
    bad[48 + 7] = 1;
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::ExtendedCopy, &bad)).key,
        0x0A
    );
    // Beyond the end.
    let mut bad = d.clone();
    bad[68..76].copy_from_slice(&(N - 1).to_be_bytes());
    assert_eq!(
        check(l.with_parameter_data(1, ParamKind::ExtendedCopy, &bad)).key,
        0x0A
    );
    // Operating parameters.
    let op = data(l.plan(
        1,
        PORT,
        &cdb(&[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]),
        0,
    ));
    assert!(u32::from_be_bytes(op[..4].try_into().unwrap()) >= 40);
}

#[test]
fn commands_cleared_by_another_initiator_with_tas_zero() {
    let mut l = lu();
    let other = "iqn.other,i,0x1";
    l.nexus_added(2, other);
    l.plan(2, other, &cdb(&[0]), 0);
    // The control mode page reports TAS 0: commands aborted by another
    // I_T nexus end without status (SAM-5 §5.6).
    let d = data(l.plan(1, PORT, &cdb(&[0x1A, 0, 0x0A, 0, 255]), 0));
    let page = &d[4 + usize::from(d[3])..];
    assert_eq!(page[0] & 0x3f, 0x0A);
    assert_eq!(page[5] & 0x40, 0, "TAS");
    // So a nexus whose commands another one's CLEAR TASK SET cleared is
    // told by a unit attention, once; the others are not.
    l.commands_cleared(2);
    assert_eq!(
        check(l.plan(2, other, &cdb(&[0]), 0)),
        sense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR
    );
    assert_eq!(l.plan(2, other, &cdb(&[0]), 0), Plan::Good);
    assert_eq!(l.plan(1, PORT, &cdb(&[0]), 0), Plan::Good);
}
