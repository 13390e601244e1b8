//! iSCSI BHS and typed PDU tests: known answers built from RFC 7143 field
//! offsets, and property tests driven by an independent table of the
//! fields each PDU defines (everything else is reserved).

use proptest::prelude::*;
use zctarget_protocol::iscsi::*;

/// Builds a BHS from (offset, bytes) pieces.
fn bhs(pieces: &[(usize, &[u8])]) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    for (off, bytes) in pieces {
        b[*off..*off + bytes.len()].copy_from_slice(bytes);
    }
    b
}

#[test]
fn login_request_known_answer() {
    // RFC 7143 §11.12: byte 0 = .1 000011 (I=1, opcode 0x03); byte 1 =
    // T C . . CSG NSG; Version-max, Version-min; TotalAHSLength;
    // DataSegmentLength; ISID (8-13); TSIH (14-15); ITT (16-19); CID
    // (20-21); CmdSN (24-27); ExpStatSN (28-31).
    let b = bhs(&[
        (0, &[0x43, 0x87, 0x00, 0x00]),
        (4, &[0x00, 0x00, 0x01, 0x23]),
        (8, &[0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]),
        (14, &[0x00, 0x07]),
        (16, &[0x11, 0x22, 0x33, 0x44]),
        (20, &[0x00, 0x01]),
        (24, &[0x00, 0x00, 0x00, 0x10]),
        (28, &[0x00, 0x00, 0x00, 0x20]),
    ]);
    let h = Bhs::from_bytes(&b).unwrap();
    assert_eq!(h.opcode(), Opcode::LoginRequest);
    assert!(h.immediate());
    assert!(h.final_bit());
    assert_eq!(h.data_segment_len(), 0x123);
    assert_eq!(h.itt(), 0x1122_3344);
    assert_eq!(h.pdu_len(false, false), 48 + 0x124);

    let req = LoginRequest::parse(&b).unwrap();
    assert_eq!(
        req,
        LoginRequest {
            next_stage: Some(Stage::FullFeaturePhase),
            continue_bit: false,
            current_stage: Stage::LoginOperationalNegotiation,
            version_max: 0,
            version_min: 0,
            total_ahs_len: 0,
            data_segment_len: 0x123,
            isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
            tsih: 7,
            itt: 0x1122_3344,
            cid: 1,
            cmd_sn: 0x10,
            exp_stat_sn: 0x20,
        }
    );
    assert!(req.transit());
    assert_eq!(req.encode(), b);
    assert_eq!(Pdu::parse(&b), Ok(Pdu::LoginRequest(req)));
}

#[test]
fn login_request_stages() {
    let mut b = LoginRequest::default().encode();
    assert_eq!(&b[..2], &[0x43, 0x00]);
    // C bit and CSG=0 with T clear: NSG bits are reserved and ignored.
    b[1] = 0x40 | 0x02;
    let r = LoginRequest::parse(&b).unwrap();
    assert!(r.continue_bit && r.next_stage.is_none());
    assert_eq!(r.current_stage, Stage::SecurityNegotiation);
    // CSG 2 is reserved.
    b[1] = 0x08;
    assert_eq!(LoginRequest::parse(&b), Err(BhsError::ReservedStage(2)));
    // NSG 2 with T set is reserved.
    b[1] = 0x82;
    assert_eq!(LoginRequest::parse(&b), Err(BhsError::ReservedStage(2)));
    assert_eq!(
        BhsError::ReservedStage(2).reject_reason(),
        RejectReason::InvalidPduField
    );
}

#[test]
fn login_response_known_answer() {
    let rsp = LoginResponse {
        next_stage: Some(Stage::FullFeaturePhase),
        continue_bit: false,
        current_stage: Stage::LoginOperationalNegotiation,
        version_max: 0,
        version_active: 0,
        total_ahs_len: 0,
        data_segment_len: 5,
        isid: [1, 2, 3, 4, 5, 6],
        tsih: 0x0102,
        itt: 9,
        stat_sn: 0x0a0b_0c0d,
        exp_cmd_sn: 2,
        max_cmd_sn: 3,
        status: LoginStatus::AUTHENTICATION_FAILURE,
    };
    let b = rsp.encode();
    let want = bhs(&[
        (0, &[0x23, 0x87, 0, 0, 0, 0, 0, 5]),
        (8, &[1, 2, 3, 4, 5, 6, 0x01, 0x02]),
        (16, &[0, 0, 0, 9]),
        (24, &[0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 2, 0, 0, 0, 3]),
        (36, &[0x02, 0x01]),
    ]);
    assert_eq!(b, want);
    assert_eq!(LoginResponse::parse(&b), Ok(rsp));
}

#[test]
fn login_status_codes() {
    let table: [(LoginStatus, u16); 18] = [
        (LoginStatus::SUCCESS, 0x0000),
        (LoginStatus::TARGET_MOVED_TEMPORARILY, 0x0101),
        (LoginStatus::TARGET_MOVED_PERMANENTLY, 0x0102),
        (LoginStatus::INITIATOR_ERROR, 0x0200),
        (LoginStatus::AUTHENTICATION_FAILURE, 0x0201),
        (LoginStatus::AUTHORIZATION_FAILURE, 0x0202),
        (LoginStatus::NOT_FOUND, 0x0203),
        (LoginStatus::TARGET_REMOVED, 0x0204),
        (LoginStatus::UNSUPPORTED_VERSION, 0x0205),
        (LoginStatus::TOO_MANY_CONNECTIONS, 0x0206),
        (LoginStatus::MISSING_PARAMETER, 0x0207),
        (LoginStatus::CANT_INCLUDE_IN_SESSION, 0x0208),
        (LoginStatus::SESSION_TYPE_NOT_SUPPORTED, 0x0209),
        (LoginStatus::SESSION_DOES_NOT_EXIST, 0x020a),
        (LoginStatus::INVALID_DURING_LOGIN, 0x020b),
        (LoginStatus::TARGET_ERROR, 0x0300),
        (LoginStatus::SERVICE_UNAVAILABLE, 0x0301),
        (LoginStatus::OUT_OF_RESOURCES, 0x0302),
    ];
    for (status, code) in table {
        assert_eq!(status.code(), code);
        assert_eq!(status.class, (code >> 8) as u8);
        assert_eq!(status.is_success(), code == 0);
    }
}

/// RFC 3720 Appendix B.4, "iSCSI Read PDU": a SCSI Command for READ(10) of
/// two blocks, and its header CRC `56 3a 96 d9`.
const RFC3720_READ_PDU: [u8; 48] = [
    0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn rfc3720_read_command_known_answer() {
    let cmd = ScsiCommand::parse(&RFC3720_READ_PDU).unwrap();
    assert!(!cmd.immediate && cmd.final_bit && cmd.read && !cmd.write);
    assert_eq!(cmd.attr, TaskAttribute::Untagged);
    assert_eq!(cmd.itt, 0x1400_0000);
    assert_eq!(cmd.expected_data_transfer_len, 1024);
    assert_eq!(cmd.cmd_sn, 0x14);
    assert_eq!(cmd.exp_stat_sn, 0x18);
    assert_eq!(cmd.cdb[0], 0x28);
    assert_eq!(cmd.cdb[8], 0x02);
    assert_eq!(cmd.encode(), RFC3720_READ_PDU);
    let crc = digest::header_digest(&RFC3720_READ_PDU, &[]);
    assert_eq!(crc, 0xd996_3a56);
    assert_eq!(digest::to_wire(crc), [0x56, 0x3a, 0x96, 0xd9]);
}

#[test]
fn fixed_fields_are_written() {
    // Reject and Asynchronous Message carry ITT 0xffffffff (§11.17, §11.9).
    assert_eq!(&Reject::default().encode()[16..20], &[0xff; 4]);
    assert_eq!(&AsyncMessage::default().encode()[16..20], &[0xff; 4]);
    // F is 1 in single-PDU messages.
    for b in [
        NopOut::default().encode(),
        NopIn::default().encode(),
        R2t::default().encode(),
        ScsiResponse::default().encode(),
        LogoutRequest::default().encode(),
        TaskMgmtRequest::default().encode(),
    ] {
        assert_eq!(b[1] & 0x80, 0x80, "{b:02x?}");
    }
}

#[test]
fn typed_parsers_reject_other_opcodes() {
    let b = NopIn::default().encode();
    assert_eq!(
        NopOut::parse(&b),
        Err(BhsError::OpcodeMismatch {
            expected: Opcode::NopOut,
            found: 0x20
        })
    );
    assert!(ScsiCommand::parse(&b).is_err());
    let mut unknown = b;
    unknown[0] = 0x07;
    assert_eq!(Pdu::parse(&unknown), Err(BhsError::UnknownOpcode(0x07)));
    assert_eq!(
        BhsError::UnknownOpcode(7).reject_reason(),
        RejectReason::CommandNotSupported
    );
}

#[test]
fn code_enums_keep_unknown_values() {
    assert_eq!(RejectReason::from_code(0x09), RejectReason::InvalidPduField);
    assert_eq!(RejectReason::from_code(0x42), RejectReason::Unknown(0x42));
    assert_eq!(RejectReason::Unknown(0x42).code(), 0x42);
    let mut b = TaskMgmtRequest::default().encode();
    b[1] = 0x80 | 0x7f;
    let tmf = TaskMgmtRequest::parse(&b).unwrap();
    assert_eq!(tmf.function, TaskMgmtFunction::Unknown(0x7f));
    assert_eq!(tmf.encode(), b);
}

/// Which parts of a BHS an opcode defines, per the RFC 7143 §11 figures.
struct Layout {
    /// Byte 0 I bit is a field (true) or reserved/fixed (false).
    immediate: bool,
    /// Byte 0 I bit is fixed to 1 (Login Request).
    immediate_fixed: bool,
    /// Byte 1: bits that are fields.
    byte1_mask: u8,
    /// Byte 1: bits fixed to 1.
    byte1_fixed: u8,
    /// Byte ranges 2..48 that are fields (TotalAHSLength and
    /// DataSegmentLength are always fields).
    fields: &'static [(usize, usize)],
    /// ITT fixed to 0xffffffff.
    itt_all_ones: bool,
}

const fn layout(
    immediate: bool,
    byte1_mask: u8,
    byte1_fixed: u8,
    fields: &'static [(usize, usize)],
) -> Layout {
    Layout {
        immediate,
        immediate_fixed: false,
        byte1_mask,
        byte1_fixed,
        fields,
        itt_all_ones: false,
    }
}

fn layout_of(op: Opcode) -> Layout {
    use Opcode::*;
    match op {
        NopOut => layout(true, 0, 0x80, &[(8, 32)]),
        ScsiCommand => layout(true, 0xE7, 0, &[(8, 48)]),
        TaskMgmtRequest => layout(true, 0x7F, 0x80, &[(8, 40)]),
        LoginRequest => Layout {
            immediate_fixed: true,
            ..layout(false, 0xCF, 0, &[(2, 4), (8, 22), (24, 32)])
        },
        TextRequest => layout(true, 0xC0, 0, &[(8, 32)]),
        DataOut => layout(false, 0x80, 0, &[(8, 24), (28, 32), (36, 44)]),
        LogoutRequest => layout(true, 0x7F, 0x80, &[(16, 22), (24, 32)]),
        SnackRequest => layout(false, 0x0F, 0x80, &[(8, 24), (28, 32), (40, 48)]),
        NopIn => layout(false, 0, 0x80, &[(8, 36)]),
        ScsiResponse => layout(false, 0x1E, 0x80, &[(2, 4), (16, 48)]),
        TaskMgmtResponse => layout(false, 0, 0x80, &[(2, 3), (16, 20), (24, 36)]),
        LoginResponse => layout(false, 0xCF, 0, &[(2, 4), (8, 20), (24, 38)]),
        TextResponse => layout(false, 0xC0, 0, &[(8, 36)]),
        DataIn => layout(false, 0xC7, 0, &[(3, 4), (8, 48)]),
        LogoutResponse => layout(false, 0, 0x80, &[(2, 3), (16, 20), (24, 36), (40, 44)]),
        R2t => layout(false, 0, 0x80, &[(8, 48)]),
        AsyncMessage => Layout {
            itt_all_ones: true,
            ..layout(false, 0, 0x80, &[(8, 16), (24, 44)])
        },
        Reject => Layout {
            itt_all_ones: true,
            ..layout(false, 0, 0x80, &[(2, 3), (24, 40)])
        },
    }
}

/// Turns random bytes into a valid BHS for `op`: reserved fields zero,
/// fixed fields set, login stages legal.
fn canonical(op: Opcode, raw: [u8; BHS_LEN]) -> [u8; BHS_LEN] {
    let l = layout_of(op);
    let mut b = [0u8; BHS_LEN];
    let i_bit = if l.immediate_fixed || (l.immediate && raw[0] & 0x40 != 0) {
        0x40
    } else {
        0
    };
    b[0] = op.code() | i_bit;
    b[1] = (raw[1] & l.byte1_mask) | l.byte1_fixed;
    b[4..8].copy_from_slice(&raw[4..8]);
    for &(start, end) in l.fields {
        b[start..end].copy_from_slice(&raw[start..end]);
    }
    if l.itt_all_ones {
        b[16..20].copy_from_slice(&[0xff; 4]);
    }
    if matches!(op, Opcode::LoginRequest | Opcode::LoginResponse) {
        let legal = |s: u8| if s == 2 { 3 } else { s };
        let csg = legal((b[1] >> 2) & 3);
        let nsg = if b[1] & 0x80 != 0 { legal(b[1] & 3) } else { 0 };
        b[1] = (b[1] & 0xC0) | (csg << 2) | nsg;
    }
    b
}

fn any_opcode() -> impl Strategy<Value = Opcode> {
    proptest::sample::select(Opcode::ALL.to_vec())
}

/// Each typed parser by opcode, as (parse, encode) through `Pdu`.
fn typed_round_trip(op: Opcode, b: &[u8; BHS_LEN]) -> [u8; BHS_LEN] {
    macro_rules! rt {
        ($t:ty) => {{
            let p = <$t>::parse(b).unwrap();
            let e = p.encode();
            assert_eq!(<$t>::parse(&e).unwrap(), p);
            e
        }};
    }
    match op {
        Opcode::NopOut => rt!(NopOut),
        Opcode::ScsiCommand => rt!(ScsiCommand),
        Opcode::TaskMgmtRequest => rt!(TaskMgmtRequest),
        Opcode::LoginRequest => rt!(LoginRequest),
        Opcode::TextRequest => rt!(TextRequest),
        Opcode::DataOut => rt!(DataOut),
        Opcode::LogoutRequest => rt!(LogoutRequest),
        Opcode::SnackRequest => rt!(SnackRequest),
        Opcode::NopIn => rt!(NopIn),
        Opcode::ScsiResponse => rt!(ScsiResponse),
        Opcode::TaskMgmtResponse => rt!(TaskMgmtResponse),
        Opcode::LoginResponse => rt!(LoginResponse),
        Opcode::TextResponse => rt!(TextResponse),
        Opcode::DataIn => rt!(DataIn),
        Opcode::LogoutResponse => rt!(LogoutResponse),
        Opcode::R2t => rt!(R2t),
        Opcode::AsyncMessage => rt!(AsyncMessage),
        Opcode::Reject => rt!(Reject),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// parse -> encode reproduces every valid BHS exactly, for every
    /// opcode, and encode -> parse gives back the same typed PDU.
    #[test]
    fn valid_bhs_round_trips(op in any_opcode(), raw in any::<[u8; BHS_LEN]>()) {
        let b = canonical(op, raw);
        let pdu = Pdu::parse(&b).unwrap();
        prop_assert_eq!(pdu.opcode(), op);
        prop_assert_eq!(pdu.encode(), b);
        prop_assert_eq!(Pdu::parse(&pdu.encode()).unwrap(), pdu);
        prop_assert_eq!(typed_round_trip(op, &b), b);
        let h = Bhs::from_bytes(&b).unwrap();
        prop_assert_eq!(h.opcode(), op);
        prop_assert_eq!(h.pdu().unwrap(), pdu);
    }

    /// Reserved bits never survive: encode(parse(x)) == canonical(x).
    #[test]
    fn reserved_fields_are_ignored_and_zeroed(op in any_opcode(), raw in any::<[u8; BHS_LEN]>()) {
        let mut b = raw;
        b[0] = (raw[0] & 0xC0) | op.code();
        match Pdu::parse(&b) {
            Ok(pdu) => prop_assert_eq!(pdu.encode(), canonical(op, b)),
            // Only a reserved login stage may fail to decode.
            Err(e) => prop_assert_eq!(e, BhsError::ReservedStage(2)),
        }
    }

    /// No byte pattern makes any parser panic.
    #[test]
    fn parsers_never_panic(raw in any::<[u8; BHS_LEN]>()) {
        let _ = Bhs::from_bytes(&raw).map(|h| (h.pdu(), h.pdu_len(true, true)));
        let _ = Pdu::parse(&raw);
        let _ = (NopOut::parse(&raw), ScsiCommand::parse(&raw), LoginRequest::parse(&raw));
        let _ = (LoginResponse::parse(&raw), DataIn::parse(&raw), Reject::parse(&raw));
    }

    /// Slices of any length: short ones are Truncated, never a panic.
    #[test]
    fn bhs_parse_of_slices(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
        match Bhs::parse(&raw) {
            Err(BhsError::Truncated(n)) => prop_assert!(raw.len() < BHS_LEN && n == raw.len()),
            Err(BhsError::UnknownOpcode(_)) => prop_assert!(raw.len() >= BHS_LEN),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
            Ok(h) => prop_assert_eq!(&h.as_bytes()[..], &raw[..BHS_LEN]),
        }
    }
}
