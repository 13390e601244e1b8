//! NVMe/TCP PDU header tests (TCP Transport Specification 1.0 §3.6).

use proptest::prelude::*;
use zctarget_protocol::nvme_tcp::*;

fn ch(pdu_type: u8, flags: u8, hlen: u8, pdo: u8, plen: u32) -> CommonHeader {
    let mut b = [pdu_type, flags, hlen, pdo, 0, 0, 0, 0];
    b[4..].copy_from_slice(&plen.to_le_bytes());
    CommonHeader::parse(&b).unwrap()
}

#[test]
fn icreq_known_answer() {
    // CH: PDU-Type 0, FLAGS 0, HLEN 128, PDO 0, PLEN 128 (LE); PFV (8-9),
    // HPDA (10), DGST (11), MAXR2T (12-15, LE); 16-127 reserved.
    let mut b = [0u8; IC_LEN];
    b[..16].copy_from_slice(&[
        0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x07, 0x00, 0x01,
        0x00,
    ]);
    let req = ICReq::parse(&b).unwrap();
    assert_eq!(
        req,
        ICReq {
            pfv: 0,
            hpda: 2,
            hdgst_enable: true,
            ddgst_enable: true,
            maxr2t: 0x0001_0007,
        }
    );
    assert_eq!(req.validate(), Ok(()));
    assert_eq!(req.encode(), b);
    let layout = CommonHeader::parse(&b)
        .unwrap()
        .validate(false, false, 128)
        .unwrap();
    assert_eq!((layout.hlen, layout.data_len, layout.plen), (128, 0, 128));
}

#[test]
fn icreq_checks() {
    let good = ICReq::default().encode();
    let mut b = good;
    b[4] = 0x81; // PLEN 129
    assert_eq!(ICReq::parse(&b), Err(PduError::InvalidPlen(129)));
    let mut b = good;
    b[1] = PduFlags::HDGSTF.0;
    assert_eq!(ICReq::parse(&b).unwrap_err().fei(), 1);
    let mut b = good;
    b[0] = 0x01;
    assert_eq!(
        ICReq::parse(&b),
        Err(PduError::UnexpectedPduType(PduType::ICResp))
    );
    let bad_pfv = ICReq {
        pfv: 1,
        ..ICReq::default()
    };
    let e = bad_pfv.validate().unwrap_err();
    assert_eq!((e.fes(), e.fei()), (Some(Fes::UnsupportedParameter), 8));
    let bad_hpda = ICReq {
        hpda: 32,
        ..ICReq::default()
    };
    assert_eq!(bad_hpda.validate().unwrap_err().fei(), 10);
}

#[test]
fn icresp_known_answer() {
    let rsp = ICResp {
        pfv: PFV_1_0,
        cpda: 0,
        hdgst_enable: false,
        ddgst_enable: true,
        maxh2cdata: 0x0002_0000,
    };
    let b = rsp.encode();
    assert_eq!(
        &b[..16],
        &[1, 0, 128, 0, 128, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0x00, 0x02, 0x00]
    );
    assert!(b[16..].iter().all(|&x| x == 0));
    assert_eq!(ICResp::parse(&b), Ok(rsp));
    assert_eq!(rsp.validate(), Ok(()));
    let small = ICResp {
        maxh2cdata: 4092,
        ..rsp
    };
    assert_eq!(small.validate(), Err(PduError::InvalidField(12)));
    let odd = ICResp {
        maxh2cdata: 4097,
        ..rsp
    };
    assert_eq!(odd.validate(), Err(PduError::InvalidField(12)));
}

#[test]
fn capsule_cmd_with_in_capsule_data() {
    let mut sqe = [0u8; SQE_LEN];
    sqe[0] = 0x01; // Write
    sqe[2..4].copy_from_slice(&0x1234u16.to_le_bytes());
    let cmd = CapsuleCmd {
        flags: PduFlags::HDGSTF | PduFlags::DDGSTF,
        pdo: 76,
        plen: 76 + 4096 + 4,
        sqe,
    };
    let b = cmd.encode();
    assert_eq!(&b[..8], &[0x04, 0x03, 72, 76, 0x50, 0x10, 0x00, 0x00]);
    assert_eq!(&b[8..12], &[0x01, 0x00, 0x34, 0x12]);
    assert_eq!(CapsuleCmd::parse(&b), Ok(cmd));
    let layout = cmd.common_header().validate(true, true, 8192).unwrap();
    assert_eq!(
        layout,
        PduLayout {
            hlen: 72,
            header_digest: true,
            data_offset: 76,
            data_len: 4096,
            data_digest: true,
            plen: 4176,
        }
    );
    assert_eq!(layout.pad_len(), 0);
    // Without data: PDO 0, PLEN = HLEN + HDGST, DDGSTF clear (as Linux
    // sends it even with data digests on).
    let bare = ch(4, 0x01, 72, 0, 76).validate(true, true, 8192).unwrap();
    assert_eq!(
        (bare.data_len, bare.data_offset, bare.data_digest),
        (0, 76, false)
    );
}

#[test]
fn capsule_resp_r2t_and_data_known_answers() {
    let mut cqe = [0u8; CQE_LEN];
    cqe[12..14].copy_from_slice(&0x0042u16.to_le_bytes()); // CID
    let rsp = CapsuleResp {
        cqe,
        ..CapsuleResp::default()
    };
    let b = rsp.encode();
    assert_eq!(&b[..8], &[0x05, 0, 24, 0, 24, 0, 0, 0]);
    assert_eq!(b[20], 0x42);
    assert_eq!(CapsuleResp::parse(&b), Ok(rsp));

    let r2t = R2t {
        cccid: 0x0102,
        ttag: 0x0304,
        r2to: 0x0506_0708,
        r2tl: 0x1000,
        ..R2t::default()
    };
    let b = r2t.encode();
    assert_eq!(
        b,
        [
            0x09, 0, 24, 0, 24, 0, 0, 0, 0x02, 0x01, 0x04, 0x03, 0x08, 0x07, 0x06, 0x05, 0x00,
            0x10, 0, 0, 0, 0, 0, 0
        ]
    );
    assert_eq!(R2t::parse(&b), Ok(r2t));

    let h2c = H2CData {
        flags: PduFlags::LAST_PDU,
        pdo: 24,
        plen: 24 + 512,
        cccid: 7,
        ttag: 9,
        datao: 4096,
        datal: 512,
    };
    let b = h2c.encode();
    assert_eq!(&b[..8], &[0x06, 0x04, 24, 24, 0x18, 0x02, 0, 0]);
    assert_eq!(&b[8..20], &[7, 0, 9, 0, 0, 0x10, 0, 0, 0, 2, 0, 0]);
    assert_eq!(H2CData::parse(&b), Ok(h2c));
    let layout = h2c.common_header().validate(false, false, 1 << 20).unwrap();
    assert_eq!(h2c.check_datal(&layout, 4096), Ok(()));
    assert_eq!(
        h2c.check_datal(&layout, 256)
            .map_err(|e| (e.fes(), e.fei())),
        Err((Some(Fes::DataTransferLimitExceeded), 0))
    );
    let lying = H2CData { datal: 511, ..h2c };
    assert_eq!(lying.check_datal(&layout, 4096).unwrap_err().fei(), 16);

    let c2h = C2HData {
        flags: PduFlags::LAST_PDU | PduFlags::SUCCESS,
        pdo: 24,
        plen: 24 + 8,
        cccid: 3,
        datao: 0,
        datal: 8,
    };
    let b = c2h.encode();
    assert_eq!(&b[..12], &[0x07, 0x0c, 24, 24, 32, 0, 0, 0, 3, 0, 0, 0]);
    assert!(c2h.last_pdu() && c2h.success());
    assert_eq!(C2HData::parse(&b), Ok(c2h));
}

/// (header, hdgst, ddgst, max_plen, pda, expected error).
#[test]
fn validate_reports_the_right_fes_and_fei() {
    type Case = (CommonHeader, bool, bool, u32, u8, PduError);
    let cases: Vec<Case> = vec![
        // FLAGS (FEI 1)
        (
            ch(4, 0, 72, 0, 72),
            true,
            false,
            1 << 20,
            0,
            PduError::InvalidFlags(0),
        ),
        (
            ch(0, 1, 128, 0, 128),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidFlags(1),
        ),
        (
            ch(5, 2, 24, 0, 24),
            false,
            true,
            1 << 20,
            0,
            PduError::InvalidFlags(2),
        ),
        (
            ch(7, 0x08, 24, 24, 32),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidFlags(8),
        ),
        (
            ch(6, 0, 24, 24, 32),
            false,
            true,
            1 << 20,
            0,
            PduError::InvalidFlags(0),
        ),
        // HLEN (FEI 2)
        (
            ch(5, 0, 72, 0, 72),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidHlen {
                pdu_type: PduType::CapsuleResp,
                hlen: 72,
            },
        ),
        // PDO (FEI 3)
        (
            ch(6, 0, 24, 20, 40),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidPdo(20),
        ),
        (
            ch(6, 0, 24, 0, 40),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidPdo(0),
        ),
        (
            ch(6, 0, 24, 41, 40),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidPdo(41),
        ),
        (
            ch(6, 0, 24, 28, 40),
            false,
            false,
            1 << 20,
            1,
            PduError::InvalidPdo(28),
        ),
        (
            ch(9, 0, 24, 24, 24),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidPdo(24),
        ),
        // PLEN (FEI 4)
        (
            ch(5, 0, 24, 0, 30),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidPlen(30),
        ),
        (
            ch(4, 0, 72, 0, 70),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidPlen(70),
        ),
        (
            ch(4, 2, 72, 72, 76),
            false,
            true,
            1 << 20,
            0,
            PduError::InvalidPlen(76),
        ),
        (
            ch(4, 2, 72, 0, 72),
            false,
            true,
            1 << 20,
            0,
            PduError::InvalidPlen(72),
        ),
        (
            ch(6, 0, 24, 24, 5000),
            false,
            false,
            4096,
            0,
            PduError::PlenExceedsLimit {
                plen: 5000,
                max: 4096,
            },
        ),
        // TermReq lengths: closed without a reply.
        (
            ch(2, 0, 24, 0, 200),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidTermReqLength(200),
        ),
        (
            ch(2, 0, 24, 0, 23),
            false,
            false,
            1 << 20,
            0,
            PduError::InvalidTermReqLength(23),
        ),
    ];
    for (h, hd, dd, max, pda, want) in cases {
        let got = h.validate_with_pda(hd, dd, max, pda);
        assert_eq!(got, Err(want), "{h:?}");
    }
    let expected_fei = [
        (PduError::InvalidFlags(0), 1),
        (
            PduError::InvalidHlen {
                pdu_type: PduType::R2t,
                hlen: 1,
            },
            2,
        ),
        (PduError::InvalidPdo(0), 3),
        (PduError::InvalidPlen(0), 4),
        (PduError::UnknownPduType(8), 0),
    ];
    for (e, fei) in expected_fei {
        assert_eq!((e.fes(), e.fei()), (Some(Fes::InvalidPduHeaderField), fei));
    }
    assert_eq!(PduError::InvalidTermReqLength(1).fes(), None);
    assert_eq!(PduError::HeaderDigest.fes(), Some(Fes::HeaderDigestError));
    assert_eq!(
        PduError::SequenceError(PduType::ICReq).fes(),
        Some(Fes::PduSequenceError)
    );
    assert_eq!(
        PduError::DataOutOfRange.fes(),
        Some(Fes::DataTransferOutOfRange)
    );
}

#[test]
fn direction_checks() {
    let h = ch(7, 0, 24, 24, 32);
    assert_eq!(
        h.expect_direction(Direction::HostToController),
        Err(PduError::UnexpectedPduType(PduType::C2HData))
    );
    assert_eq!(h.expect_direction(Direction::ControllerToHost), Ok(()));
}

#[test]
fn term_req_carries_the_offending_header() {
    let bad = [0x05u8, 0, 72, 0, 72, 0, 0, 0];
    let err = CommonHeader::parse(&bad)
        .unwrap()
        .validate(false, false, 1 << 20)
        .unwrap_err();
    let t = TermReq::for_error(&err, &bad).unwrap();
    let bytes = t.encode();
    let b = bytes.as_bytes();
    assert_eq!(b.len(), 32);
    assert_eq!(&b[..8], &[0x03, 0, 24, 0, 32, 0, 0, 0]);
    assert_eq!(&b[8..14], &[0x01, 0x00, 0x02, 0x00, 0x00, 0x00]);
    assert!(b[14..24].iter().all(|&x| x == 0));
    assert_eq!(&b[24..], &bad);
    assert_eq!(TermReq::parse(b), Ok(t));
    assert_eq!(t.error_header(), &bad);

    // Headers longer than 128 bytes are cut to 128: PLEN 152.
    let long = [0xabu8; 200];
    let t = TermReq::new(
        Direction::HostToController,
        Fes::HeaderDigestError,
        0,
        &long,
    );
    let bytes = t.encode();
    assert_eq!(bytes.as_bytes().len(), TERM_REQ_MAX_PLEN as usize);
    assert_eq!(bytes.as_bytes()[0], 0x02);
    assert_eq!(t.error_header().len(), TERM_REQ_MAX_DATA);
    // A TermReq shorter than its PLEN is truncated input.
    assert!(matches!(
        TermReq::parse(&bytes.as_bytes()[..100]),
        Err(PduError::Truncated {
            needed: 152,
            got: 100
        })
    ));
    assert_eq!(
        TermReq::for_error(&PduError::InvalidTermReqLength(9), &long),
        None
    );
}

fn any_type() -> impl Strategy<Value = PduType> {
    proptest::sample::select(PduType::ALL.to_vec())
}

/// Sets the CH of `b` to `t` with its HLEN.
fn with_type<const N: usize>(mut b: [u8; N], t: PduType) -> [u8; N] {
    b[0] = t.code();
    b[2] = t.header_len();
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The CH has no reserved bits: parse -> encode is the identity.
    #[test]
    fn common_header_round_trips(t in any_type(), raw in any::<[u8; CH_LEN]>()) {
        let mut b = raw;
        b[0] = t.code();
        let h = CommonHeader::parse(&b).unwrap();
        prop_assert_eq!(h.encode(), b);
        prop_assert_eq!(CommonHeader::parse(&h.encode()).unwrap(), h);
    }

    /// validate never panics, and an accepted header has a consistent
    /// layout.
    #[test]
    fn validate_layout_is_consistent(
        raw in any::<[u8; CH_LEN]>(),
        hd in any::<bool>(),
        dd in any::<bool>(),
        max in any::<u32>(),
        pda in 0u8..32,
    ) {
        let Ok(h) = CommonHeader::parse(&raw) else { return Ok(()) };
        if let Ok(l) = h.validate_with_pda(hd, dd, max, pda) {
            let hd_len = if l.header_digest { 4 } else { 0 };
            let dd_len = if l.data_digest { 4 } else { 0 };
            prop_assert!(l.plen as u64 <= u64::from(max));
            prop_assert_eq!(l.hlen, usize::from(h.pdu_type.header_len()));
            prop_assert!(l.data_offset >= l.hlen + hd_len);
            prop_assert_eq!(l.data_offset + l.data_len + dd_len, l.plen);
            prop_assert_eq!(l.header_digest, hd && h.pdu_type.has_header_digest());
            if l.data_len > 0 && h.pdu_type.has_data() {
                prop_assert_eq!(l.data_digest, dd);
                prop_assert_eq!(l.data_offset % ((usize::from(pda) + 1) * 4), 0);
            }
        }
    }

    #[test]
    fn capsule_cmd_round_trips(raw in any::<[u8; 72]>()) {
        let b = with_type(raw, PduType::CapsuleCmd);
        let p = CapsuleCmd::parse(&b).unwrap();
        prop_assert_eq!(p.encode(), b);
        prop_assert_eq!(CapsuleCmd::parse(&p.encode()).unwrap(), p);
    }

    #[test]
    fn capsule_resp_round_trips(raw in any::<[u8; 24]>()) {
        let b = with_type(raw, PduType::CapsuleResp);
        let p = CapsuleResp::parse(&b).unwrap();
        prop_assert_eq!(p.encode(), b);
        prop_assert_eq!(CapsuleResp::parse(&p.encode()).unwrap(), p);
    }

    #[test]
    fn data_pdus_round_trip(raw in any::<[u8; 24]>()) {
        // Bytes 20-23 are reserved in all three; C2HData also 10-11.
        let mut b = raw;
        b[20..].fill(0);
        let h2c = with_type(b, PduType::H2CData);
        let p = H2CData::parse(&h2c).unwrap();
        prop_assert_eq!(p.encode(), h2c);
        prop_assert_eq!(H2CData::parse(&p.encode()).unwrap(), p);

        let r2t = with_type(b, PduType::R2t);
        let p = R2t::parse(&r2t).unwrap();
        prop_assert_eq!(p.encode(), r2t);
        prop_assert_eq!(R2t::parse(&p.encode()).unwrap(), p);

        let mut c2h = with_type(b, PduType::C2HData);
        c2h[10..12].fill(0);
        let p = C2HData::parse(&c2h).unwrap();
        prop_assert_eq!(p.encode(), c2h);
        prop_assert_eq!(C2HData::parse(&p.encode()).unwrap(), p);
        // Reserved bytes are ignored and written as zero.
        prop_assert_eq!(C2HData::parse(&with_type(raw, PduType::C2HData)).unwrap().encode(), c2h);
    }

    #[test]
    fn ic_pdus_round_trip(
        pfv in any::<u16>(), pda in any::<u8>(), dgst in 0u8..4, word in any::<u32>(),
    ) {
        let req = ICReq { pfv, hpda: pda, hdgst_enable: dgst & 1 != 0, ddgst_enable: dgst & 2 != 0, maxr2t: word };
        prop_assert_eq!(ICReq::parse(&req.encode()), Ok(req));
        let rsp = ICResp { pfv, cpda: pda, hdgst_enable: dgst & 1 != 0, ddgst_enable: dgst & 2 != 0, maxh2cdata: word };
        prop_assert_eq!(ICResp::parse(&rsp.encode()), Ok(rsp));
        // parse -> encode on the valid byte form.
        let b = req.encode();
        prop_assert_eq!(ICReq::parse(&b).unwrap().encode(), b);
    }

    #[test]
    fn term_req_round_trips(
        c2h in any::<bool>(), fes in any::<u16>(), fei in any::<u32>(),
        header in proptest::collection::vec(any::<u8>(), 0..=TERM_REQ_MAX_DATA),
    ) {
        let dir = if c2h { Direction::ControllerToHost } else { Direction::HostToController };
        let t = TermReq::new(dir, Fes::from_code(fes), fei, &header);
        let bytes = t.encode();
        prop_assert_eq!(bytes.as_bytes().len(), 24 + header.len());
        let back = TermReq::parse(bytes.as_bytes()).unwrap();
        prop_assert_eq!(back, t);
        let again = back.encode();
        prop_assert_eq!(again.as_bytes(), bytes.as_bytes());
    }

    /// Arbitrary fixed-size arrays and slices never make a parser panic.
    #[test]
    fn parsers_never_panic(
        a8 in any::<[u8; 8]>(),
        a24 in any::<[u8; 24]>(),
        a72 in any::<[u8; 72]>(),
        a128 in any::<[u8; 128]>(),
        slice in proptest::collection::vec(any::<u8>(), 0..200),
        hd in any::<bool>(), dd in any::<bool>(), max in any::<u32>(), pda in any::<u8>(),
    ) {
        if let Ok(h) = CommonHeader::parse(&a8) {
            let _ = h.validate_with_pda(hd, dd, max, pda);
        }
        let _ = (CapsuleResp::parse(&a24), H2CData::parse(&a24), C2HData::parse(&a24), R2t::parse(&a24));
        let _ = CapsuleCmd::parse(&a72);
        let _ = (ICReq::parse(&a128).map(|r| r.validate()), ICResp::parse(&a128));
        let _ = TermReq::parse(&slice);
        if let Ok(h) = CommonHeader::parse(&slice) {
            let _ = h.validate(hd, dd, max);
        }
    }
}
