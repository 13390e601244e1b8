//! Login state machine tests: full transcripts as open-iscsi and libiscsi
//! send them, failures with their status, C-bit continuation both ways,
//! CHAP (one-way, mutual, failures), and a never-panics property.

use proptest::prelude::*;
use zctarget_protocol::iscsi::chap::{chap_md5, decode_binary, encode_hex, Credentials};
use zctarget_protocol::iscsi::login_fsm::{
    text_response, LoginFsm, LoginOutcome, LoginPolicy, LoginStep, TargetAuth,
};
use zctarget_protocol::iscsi::params::{
    split_pairs, Digest, LoginParams, SessionType, TargetLoginConfig,
};
use zctarget_protocol::iscsi::{LoginRequest, LoginStatus, Stage};

const IQN_I: &str = "iqn.1994-05.com.redhat:client1";
const IQN_T: &str = "iqn.2024-01.io.zctarget:disk0";
const IQN_CHAP: &str = "iqn.2024-01.io.zctarget:secure";
const IQN_MUTUAL: &str = "iqn.2024-01.io.zctarget:mutual";
const IQN_ACL: &str = "iqn.2024-01.io.zctarget:acl";
const ISID: [u8; 6] = [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01];
const ENTROPY: [u8; 17] = [
    0x2a, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe,
    0xfe,
];

struct Policy {
    discovery: Option<TargetAuth>,
}

impl LoginPolicy for Policy {
    fn target(&self, name: &str) -> Option<TargetAuth> {
        match name {
            IQN_T | IQN_ACL => Some(TargetAuth {
                alias: Some("disk0".into()),
                ..TargetAuth::default()
            }),
            IQN_CHAP => Some(TargetAuth {
                chap: Some(Credentials::new("alice", "0123456789ab")),
                ..TargetAuth::default()
            }),
            IQN_MUTUAL => Some(TargetAuth {
                chap: Some(Credentials::new("alice", "0123456789ab")),
                mutual_chap: Some(Credentials::new("target-user", "targetsecret99")),
                alias: None,
            }),
            _ => None,
        }
    }
    fn initiator_allowed(&self, target: &str, _initiator: &str) -> bool {
        target != IQN_ACL
    }
    fn discovery_auth(&self) -> Option<TargetAuth> {
        self.discovery.clone()
    }
}

fn policy() -> Policy {
    Policy { discovery: None }
}

fn req(csg: Stage, nsg: Option<Stage>) -> LoginRequest {
    LoginRequest {
        next_stage: nsg,
        continue_bit: false,
        current_stage: csg,
        version_max: 0,
        version_min: 0,
        total_ahs_len: 0,
        data_segment_len: 0,
        isid: ISID,
        tsih: 0,
        itt: 0x1234_5678,
        cid: 0,
        cmd_sn: 0x0000_0010,
        exp_stat_sn: 0,
    }
}

fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        v.extend_from_slice(k.as_bytes());
        v.push(b'=');
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

fn answers(step: &LoginStep) -> Vec<(String, String)> {
    split_pairs(&step.data)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get(step: &LoginStep, key: &str) -> Option<String> {
    answers(step)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn send(fsm: &mut LoginFsm, r: LoginRequest, pairs: &[(&str, &str)]) -> LoginStep {
    let data = text(pairs);
    let mut r = r;
    r.data_segment_len = data.len() as u32;
    let step = fsm.on_request(&r, &data, &policy());
    assert_eq!(step.response.data_segment_len as usize, step.data.len());
    step
}

fn fsm() -> LoginFsm {
    LoginFsm::new(&TargetLoginConfig::default(), 100, ENTROPY)
}

fn failed(step: &LoginStep) -> LoginStatus {
    match step.outcome {
        LoginOutcome::Failed(s) => {
            assert_eq!(step.response.status, s);
            assert!(step.data.is_empty());
            assert!(!step.response.transit());
            s
        }
        ref other => panic!("expected failure, got {other:?}"),
    }
}

fn complete(step: &LoginStep) -> zctarget_protocol::iscsi::login_fsm::NegotiatedLogin {
    match &step.outcome {
        LoginOutcome::Complete(n) => {
            assert_eq!(step.response.next_stage, Some(Stage::FullFeaturePhase));
            assert!(step.response.status.is_success());
            (**n).clone()
        }
        other => panic!("expected completion, got {other:?} {:?}", answers(step)),
    }
}

fn ok_continue(step: &LoginStep) {
    assert_eq!(
        step.outcome,
        LoginOutcome::Continue,
        "answers {:?}",
        answers(step)
    );
    assert!(step.response.status.is_success());
}

const OPEN_ISCSI_OPS: &[(&str, &str)] = &[
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("DefaultTime2Wait", "2"),
    ("DefaultTime2Retain", "0"),
    ("IFMarker", "No"),
    ("OFMarker", "No"),
    ("ErrorRecoveryLevel", "0"),
    ("InitialR2T", "No"),
    ("ImmediateData", "Yes"),
    ("MaxBurstLength", "16776192"),
    ("FirstBurstLength", "262144"),
    ("MaxOutstandingR2T", "1"),
    ("MaxConnections", "1"),
    ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"),
    ("MaxRecvDataSegmentLength", "262144"),
];

/// open-iscsi, no authentication: security stage with AuthMethod=None,
/// then the operational stage.
#[test]
fn open_iscsi_no_auth_two_requests() {
    let mut f = fsm();
    let s1 = send(
        &mut f,
        req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("InitiatorAlias", "client1"),
            ("TargetName", IQN_T),
            ("SessionType", "Normal"),
            ("AuthMethod", "None"),
        ],
    );
    ok_continue(&s1);
    let r = &s1.response;
    assert_eq!(r.next_stage, Some(Stage::LoginOperationalNegotiation));
    assert_eq!(r.current_stage, Stage::SecurityNegotiation);
    assert!(!r.continue_bit);
    assert_eq!((r.isid, r.tsih, r.itt), (ISID, 0, 0x1234_5678));
    assert_eq!((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn), (100, 0x10, 0x10));
    assert_eq!((r.version_max, r.version_active), (0, 0));
    assert_eq!(
        answers(&s1),
        [
            ("TargetPortalGroupTag".into(), "1".into()),
            ("TargetAlias".into(), "disk0".into()),
            ("AuthMethod".into(), "None".into()),
        ]
    );

    let mut s2 = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        OPEN_ISCSI_OPS,
    );
    let n = complete(&s2);
    assert_eq!(s2.response.stat_sn, 101);
    let expect: Vec<(String, String)> = [
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("ErrorRecoveryLevel", "0"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "1048576"),
        ("FirstBurstLength", "65536"),
        ("MaxOutstandingR2T", "1"),
        ("MaxConnections", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(answers(&s2), expect);
    let p = &n.params;
    assert_eq!(n.session_type, SessionType::Normal);
    assert_eq!(n.initiator_name, IQN_I);
    assert_eq!(n.target_name.as_deref(), Some(IQN_T));
    assert_eq!(n.isid, ISID);
    assert_eq!(n.tsih_requested, 0);
    assert!(!n.authenticated);
    assert_eq!(n.next_stat_sn, 102);
    assert_eq!(n.exp_cmd_sn, 0x10);
    assert!(!p.session.initial_r2t);
    assert!(p.session.immediate_data);
    assert_eq!(p.session.max_burst_length, 1_048_576);
    assert_eq!(p.session.first_burst_length, 65_536);
    assert_eq!(p.session.default_time2retain, 0);
    assert_eq!(p.session.initiator_alias.as_deref(), Some("client1"));
    assert_eq!(p.session.target_alias.as_deref(), Some("disk0"));
    assert_eq!(p.connection.initiator_mrdsl, 262_144);
    assert_eq!(p.connection.target_mrdsl, 262_144);
    assert_eq!(p.connection.header_digest, Digest::None);
    s2.set_tsih(7);
    assert_eq!(s2.response.tsih, 7);
    assert!(f.is_finished());
    // Anything after completion is refused.
    let s3 = send(&mut f, req(Stage::LoginOperationalNegotiation, None), &[]);
    assert_eq!(failed(&s3), LoginStatus::INVALID_DURING_LOGIN);
}

/// libiscsi without a user name: one request straight in the operational
/// stage, in libiscsi's key order.
#[test]
fn libiscsi_no_auth_one_request() {
    let mut f = fsm();
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_T),
            ("SessionType", "Normal"),
            ("HeaderDigest", "None,CRC32C"),
            ("DataDigest", "CRC32C,None"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "262144"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("MaxOutstandingR2T", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("MaxConnections", "1"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ],
    );
    let n = complete(&s);
    assert_eq!(s.response.current_stage, Stage::LoginOperationalNegotiation);
    assert_eq!(get(&s, "TargetPortalGroupTag").as_deref(), Some("1"));
    assert_eq!(get(&s, "HeaderDigest").as_deref(), Some("None"));
    assert_eq!(get(&s, "DataDigest").as_deref(), Some("CRC32C"));
    assert_eq!(get(&s, "FirstBurstLength").as_deref(), Some("65536"));
    assert_eq!(get(&s, "InitialR2T").as_deref(), Some("Yes"));
    assert_eq!(
        get(&s, "MaxRecvDataSegmentLength").as_deref(),
        Some("262144")
    );
    assert_eq!(n.params.connection.data_digest, Digest::Crc32c);
    assert_eq!(n.params.connection.header_digest, Digest::None);
    assert!(n.params.session.initial_r2t);
}

/// The initiator sends no MaxRecvDataSegmentLength: the default applies to
/// it, and the target still declares its own in the final response.
#[test]
fn target_declares_mrdsl_when_initiator_does_not() {
    let mut f = fsm();
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[("InitiatorName", IQN_I), ("TargetName", IQN_T)],
    );
    let n = complete(&s);
    assert_eq!(
        get(&s, "MaxRecvDataSegmentLength").as_deref(),
        Some("262144")
    );
    assert_eq!(n.params.connection.initiator_mrdsl, 8192);
    assert_eq!(n.params.connection.target_mrdsl, 262_144);
    // And it is declared only once when the initiator declares first.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_T),
            ("MaxRecvDataSegmentLength", "65536"),
        ],
    );
    ok_continue(&s);
    assert_eq!(
        get(&s, "MaxRecvDataSegmentLength").as_deref(),
        Some("262144")
    );
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[],
    );
    let n = complete(&s);
    assert!(s.data.is_empty());
    assert_eq!(n.params.connection.initiator_mrdsl, 65_536);
}

#[test]
fn digest_list_selection() {
    let cases = [
        ("None,CRC32C", true, "None"),
        ("CRC32C,None", true, "CRC32C"),
        ("CRC32C", true, "CRC32C"),
        ("CRC32C,None", false, "None"),
        ("CRC32C", false, "Reject"),
        ("FOO,CRC32C", true, "CRC32C"),
        ("FOO", true, "Reject"),
    ];
    for (offer, accept, expect) in cases {
        let cfg = TargetLoginConfig {
            header_digest_crc32c: accept,
            ..TargetLoginConfig::default()
        };
        let mut f = LoginFsm::new(&cfg, 1, ENTROPY);
        let s = send(
            &mut f,
            req(Stage::LoginOperationalNegotiation, None),
            &[
                ("InitiatorName", IQN_I),
                ("TargetName", IQN_T),
                ("HeaderDigest", offer),
            ],
        );
        assert_eq!(
            get(&s, "HeaderDigest").as_deref(),
            Some(expect),
            "{offer} {accept}"
        );
    }
}

/// open-iscsi discovery: AuthMethod=None, then a few operational keys.
#[test]
fn discovery_login_and_send_targets() {
    let mut f = fsm();
    let s1 = send(
        &mut f,
        req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("InitiatorAlias", "client1"),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ],
    );
    ok_continue(&s1);
    assert_eq!(
        answers(&s1),
        [("AuthMethod".to_string(), "None".to_string())]
    );
    let s2 = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("ErrorRecoveryLevel", "0"),
            ("InitialR2T", "No"),
            ("MaxBurstLength", "16776192"),
            ("MaxRecvDataSegmentLength", "32768"),
        ],
    );
    let n = complete(&s2);
    assert_eq!(n.session_type, SessionType::Discovery);
    assert_eq!(n.target_name, None);
    assert_eq!(get(&s2, "InitialR2T").as_deref(), Some("Irrelevant"));
    assert_eq!(get(&s2, "MaxBurstLength").as_deref(), Some("Irrelevant"));
    assert_eq!(get(&s2, "DefaultTime2Retain").as_deref(), Some("0"));
    assert_eq!(n.params.connection.initiator_mrdsl, 32768);

    let mut params = n.params.clone();
    let targets = vec![
        (
            IQN_T.to_string(),
            vec![
                "192.0.2.1:3260,1".to_string(),
                "[2001:db8::1]:3260,1".to_string(),
            ],
        ),
        (IQN_CHAP.to_string(), vec!["192.0.2.1:3260,1".to_string()]),
    ];
    let all = text_response(&mut params, &text(&[("SendTargets", "All")]), &targets).unwrap();
    assert_eq!(
        all,
        text(&[
            ("TargetName", IQN_T),
            ("TargetAddress", "192.0.2.1:3260,1"),
            ("TargetAddress", "[2001:db8::1]:3260,1"),
            ("TargetName", IQN_CHAP),
            ("TargetAddress", "192.0.2.1:3260,1"),
        ])
    );
    let one = text_response(&mut params, &text(&[("SendTargets", IQN_CHAP)]), &targets).unwrap();
    assert_eq!(
        one,
        text(&[
            ("TargetName", IQN_CHAP),
            ("TargetAddress", "192.0.2.1:3260,1")
        ])
    );
    let none = text_response(
        &mut params,
        &text(&[("SendTargets", "iqn.x:none")]),
        &targets,
    );
    assert_eq!(none.unwrap(), Vec::<u8>::new());
    let empty = text_response(&mut params, &text(&[("SendTargets", "")]), &targets).unwrap();
    assert_eq!(empty, text(&[("SendTargets", "Reject")]));
}

#[test]
fn discovery_requires_chap_when_configured() {
    let p = Policy {
        discovery: Some(TargetAuth {
            chap: Some(Credentials::new("disc", "discoverysecret")),
            ..TargetAuth::default()
        }),
    };
    let mut f = fsm();
    let data = text(&[
        ("InitiatorName", IQN_I),
        ("SessionType", "Discovery"),
        ("AuthMethod", "None"),
    ]);
    let s = f.on_request(
        &req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &data,
        &p,
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn text_response_normal_session_and_keys() {
    let mut params = LoginParams::default();
    params.session.target_name = Some(IQN_T.to_string());
    let targets = vec![
        (IQN_T.to_string(), vec!["10.0.0.1:3260,1".to_string()]),
        (IQN_CHAP.to_string(), vec!["10.0.0.1:3260,1".to_string()]),
    ];
    let out = text_response(
        &mut params,
        &text(&[
            ("SendTargets", ""),
            ("MaxRecvDataSegmentLength", "131072"),
            ("MaxBurstLength", "4096"),
            ("X-com.example.foo", "bar"),
        ]),
        &targets,
    )
    .unwrap();
    assert_eq!(
        out,
        text(&[
            ("TargetName", IQN_T),
            ("TargetAddress", "10.0.0.1:3260,1"),
            ("MaxBurstLength", "Reject"),
            ("X-com.example.foo", "NotUnderstood"),
        ])
    );
    assert_eq!(params.connection.initiator_mrdsl, 131_072);
    let all = text_response(&mut params, &text(&[("SendTargets", "All")]), &targets).unwrap();
    assert_eq!(all, text(&[("SendTargets", "Reject")]));
    assert!(text_response(&mut params, b"NoNul=1", &targets).is_err());
}

/// CHAP as libiscsi runs it: AuthMethod with T=1, CHAP_A with T=0, the
/// response with T=1.
fn chap_login(
    target: &str,
    mutual: Option<(u8, Vec<u8>)>,
    password: &str,
) -> (LoginFsm, LoginStep) {
    let mut f = fsm();
    let s1 = send(
        &mut f,
        req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", target),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP,None"),
        ],
    );
    ok_continue(&s1);
    assert_eq!(
        s1.response.next_stage, None,
        "transit refused while CHAP runs"
    );
    assert_eq!(get(&s1, "AuthMethod").as_deref(), Some("CHAP"));
    let s2 = send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", target),
            ("CHAP_A", "5"),
        ],
    );
    ok_continue(&s2);
    assert_eq!(get(&s2, "CHAP_A").as_deref(), Some("5"));
    let id: u8 = get(&s2, "CHAP_I").unwrap().parse().unwrap();
    assert_eq!(id, 0x2a);
    let challenge = decode_binary(&get(&s2, "CHAP_C").unwrap()).unwrap();
    assert_eq!(challenge, [0xfe; 16]);
    let r = chap_md5(id, password.as_bytes(), &challenge);
    // libiscsi sends upper-case hex.
    let r_hex = format!("0x{}", encode_hex(&r)[2..].to_uppercase());
    let mut pairs: Vec<(String, String)> = vec![
        ("InitiatorName".into(), IQN_I.into()),
        ("TargetName".into(), target.into()),
        ("CHAP_N".into(), "alice".into()),
        ("CHAP_R".into(), r_hex),
    ];
    if let Some((mid, mc)) = mutual {
        pairs.push(("CHAP_I".into(), mid.to_string()));
        // Long challenges only fit the text value limit in base64.
        let c = if mc.len() > 1000 {
            format!("0b{}", base64(&mc))
        } else {
            encode_hex(&mc)
        };
        pairs.push(("CHAP_C".into(), c));
    }
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let s3 = send(
        &mut f,
        req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &refs,
    );
    (f, s3)
}

#[test]
fn chap_known_answer() {
    let d = chap_md5(1, b"secretsecret", &(0u8..16).collect::<Vec<_>>());
    assert_eq!(encode_hex(&d), "0x226dc576c33f04ff9c3a200ffe35f442");
    let d = chap_md5(0x2a, b"0123456789ab", &[0xfe; 16]);
    assert_eq!(encode_hex(&d), "0x474d3ecf0bb397db2d163c81bd410dc6");
}

#[test]
fn chap_one_way() {
    let (mut f, s3) = chap_login(IQN_CHAP, None, "0123456789ab");
    ok_continue(&s3);
    assert_eq!(
        s3.response.next_stage,
        Some(Stage::LoginOperationalNegotiation)
    );
    assert!(s3.data.is_empty());
    assert_eq!(f.stage(), Stage::LoginOperationalNegotiation);
    let s4 = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_CHAP),
            ("MaxBurstLength", "262144"),
        ],
    );
    let n = complete(&s4);
    assert!(n.authenticated);
    assert_eq!(n.next_stat_sn, 104);
}

#[test]
fn chap_base64_response_accepted() {
    let mut f = fsm();
    send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_CHAP),
            ("AuthMethod", "CHAP"),
        ],
    );
    // open-iscsi may offer several algorithms (SHA3-256, SHA-256, SHA-1, MD5).
    let s2 = send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[("CHAP_A", "7,6,5")],
    );
    assert_eq!(get(&s2, "CHAP_A").as_deref(), Some("5"));
    let r = chap_md5(0x2a, b"0123456789ab", &[0xfe; 16]);
    let b64 = base64(&r);
    let s3 = send(
        &mut f,
        req(Stage::SecurityNegotiation, Some(Stage::FullFeaturePhase)),
        &[("CHAP_N", "alice"), ("CHAP_R", &format!("0b{b64}"))],
    );
    let n = complete(&s3);
    assert!(n.authenticated);
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn chap_mutual() {
    let mc: Vec<u8> = (0u8..32).collect();
    let (_f, s3) = chap_login(IQN_MUTUAL, Some((7, mc.clone())), "0123456789ab");
    ok_continue(&s3);
    assert_eq!(
        s3.response.next_stage,
        Some(Stage::LoginOperationalNegotiation)
    );
    assert_eq!(get(&s3, "CHAP_N").as_deref(), Some("target-user"));
    let expected = chap_md5(7, b"targetsecret99", &mc);
    assert_eq!(get(&s3, "CHAP_R").unwrap(), encode_hex(&expected));
}

#[test]
fn chap_mutual_failures() {
    // Reflection: the initiator's challenge is the target's own.
    let (_f, s) = chap_login(IQN_MUTUAL, Some((7, vec![0xfe; 16])), "0123456789ab");
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // A challenge over 1024 bytes is refused; 1024 bytes are fine.
    let (_f, s) = chap_login(IQN_MUTUAL, Some((7, vec![1; 1025])), "0123456789ab");
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    let (_f, s) = chap_login(IQN_MUTUAL, Some((7, vec![1; 1024])), "0123456789ab");
    ok_continue(&s);
    // Over the text value limit even in base64: malformed text.
    let (_f, s) = chap_login(IQN_MUTUAL, Some((7, vec![1; 1600])), "0123456789ab");
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // Mutual configured but the initiator does not ask for it.
    let (_f, s) = chap_login(IQN_MUTUAL, None, "0123456789ab");
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // The initiator asks for mutual CHAP the target has no secret for.
    let (_f, s) = chap_login(IQN_CHAP, Some((7, vec![1; 16])), "0123456789ab");
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_wrong_password_and_name() {
    let (_f, s) = chap_login(IQN_CHAP, None, "wrongpassword");
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // Right response, wrong user name.
    let mut f = fsm();
    send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_CHAP),
            ("AuthMethod", "CHAP"),
        ],
    );
    send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[("CHAP_A", "5")],
    );
    let r = chap_md5(0x2a, b"0123456789ab", &[0xfe; 16]);
    let s = send(
        &mut f,
        req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &[("CHAP_N", "mallory"), ("CHAP_R", &encode_hex(&r))],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_protocol_failures() {
    // Target requires CHAP, initiator offers only None.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_CHAP),
            ("AuthMethod", "None"),
        ],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // Initiator skips the security stage of a target that requires CHAP.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[("InitiatorName", IQN_I), ("TargetName", IQN_CHAP)],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // Transit to full feature phase without negotiating AuthMethod.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(Stage::SecurityNegotiation, Some(Stage::FullFeaturePhase)),
        &[("InitiatorName", IQN_I), ("TargetName", IQN_CHAP)],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // No MD5 in CHAP_A.
    let mut f = fsm();
    send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_CHAP),
            ("AuthMethod", "CHAP"),
        ],
    );
    let s = send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[("CHAP_A", "6,7")],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // CHAP_R before any challenge.
    let mut f = fsm();
    send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_CHAP),
            ("AuthMethod", "CHAP"),
        ],
    );
    let s = send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[("CHAP_N", "alice"), ("CHAP_R", "0x00")],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
    // A target without credentials, initiator insists on CHAP.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_T),
            ("AuthMethod", "CHAP"),
        ],
    );
    assert_eq!(failed(&s), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn lookup_and_first_request_failures() {
    let cases: Vec<(Vec<(&str, &str)>, LoginStatus)> = vec![
        (
            vec![
                ("InitiatorName", IQN_I),
                ("TargetName", "iqn.2024-01.io.zctarget:nope"),
            ],
            LoginStatus::NOT_FOUND,
        ),
        (
            vec![("InitiatorName", IQN_I), ("TargetName", IQN_ACL)],
            LoginStatus::AUTHORIZATION_FAILURE,
        ),
        (vec![("TargetName", IQN_T)], LoginStatus::MISSING_PARAMETER),
        (
            vec![("InitiatorName", IQN_I)],
            LoginStatus::MISSING_PARAMETER,
        ),
        (
            vec![
                ("InitiatorName", IQN_I),
                ("TargetName", IQN_T),
                ("SessionType", "Bogus"),
            ],
            LoginStatus::SESSION_TYPE_NOT_SUPPORTED,
        ),
        (
            vec![
                ("InitiatorName", IQN_I),
                ("TargetName", IQN_T),
                ("TargetAlias", "x"),
            ],
            LoginStatus::INITIATOR_ERROR,
        ),
    ];
    for (pairs, status) in cases {
        let mut f = fsm();
        let s = send(
            &mut f,
            req(
                Stage::SecurityNegotiation,
                Some(Stage::LoginOperationalNegotiation),
            ),
            &pairs,
        );
        assert_eq!(failed(&s), status, "{pairs:?}");
        assert_eq!(s.response.itt, 0x1234_5678);
        assert_eq!(s.response.isid, ISID);
    }
}

#[test]
fn bad_version() {
    for (max, min) in [(2u8, 1u8), (0, 1), (5, 3)] {
        let mut f = fsm();
        let mut r = req(
            Stage::SecurityNegotiation,
            Some(Stage::LoginOperationalNegotiation),
        );
        r.version_max = max;
        r.version_min = min;
        let data = text(&[("InitiatorName", IQN_I), ("TargetName", IQN_T)]);
        let s = f.on_request(&r, &data, &policy());
        assert_eq!(failed(&s), LoginStatus::UNSUPPORTED_VERSION);
    }
    // A newer initiator that also speaks version 0 is fine.
    let mut f = fsm();
    let mut r = req(
        Stage::LoginOperationalNegotiation,
        Some(Stage::FullFeaturePhase),
    );
    r.version_max = 3;
    let data = text(&[("InitiatorName", IQN_I), ("TargetName", IQN_T)]);
    complete(&f.on_request(&r, &data, &policy()));
}

fn op_login(pairs: &[(&str, &str)]) -> LoginStep {
    let mut all = vec![("InitiatorName", IQN_I), ("TargetName", IQN_T)];
    all.extend_from_slice(pairs);
    let mut f = fsm();
    send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &all,
    )
}

#[test]
fn unknown_keys_not_understood() {
    let s = op_login(&[
        ("X-com.example.Foo", "1"),
        ("FooBar", "Yes"),
        ("iSERHelloRequired", "Yes"),
        ("RDMAExtensions", "Yes"),
        ("iSCSIProtocolLevel", "2"),
        ("OFMarkInt", "2048~8192"),
    ]);
    complete(&s);
    assert_eq!(
        get(&s, "X-com.example.Foo").as_deref(),
        Some("NotUnderstood")
    );
    assert_eq!(get(&s, "FooBar").as_deref(), Some("NotUnderstood"));
    assert_eq!(get(&s, "iSERHelloRequired").as_deref(), Some("Irrelevant"));
    assert_eq!(get(&s, "RDMAExtensions").as_deref(), Some("No"));
    assert_eq!(get(&s, "iSCSIProtocolLevel").as_deref(), Some("1"));
    assert_eq!(get(&s, "OFMarkInt").as_deref(), Some("Reject"));
}

#[test]
fn out_of_range_values_rejected() {
    let s = op_login(&[
        ("MaxBurstLength", "100"),
        ("MaxRecvDataSegmentLength", "16777216"),
        ("ErrorRecoveryLevel", "3"),
        ("InitialR2T", "maybe"),
        ("MaxConnections", "0"),
        ("DefaultTime2Wait", "3601"),
        ("MaxOutstandingR2T", "-1"),
        ("FirstBurstLength", "0x10000000"),
    ]);
    let n = complete(&s);
    for key in [
        "MaxBurstLength",
        "MaxRecvDataSegmentLength",
        "ErrorRecoveryLevel",
        "InitialR2T",
        "MaxConnections",
        "DefaultTime2Wait",
        "MaxOutstandingR2T",
        "FirstBurstLength",
    ] {
        assert_eq!(get(&s, key).as_deref(), Some("Reject"), "{key}");
    }
    // Defaults stay in force; the target still declares its own MRDSL.
    assert_eq!(n.params.session.max_burst_length, 262_144);
    assert_eq!(n.params.connection.initiator_mrdsl, 8192);
    assert_eq!(n.params.connection.target_mrdsl, 262_144);
    // Hex numbers are numbers.
    let s = op_login(&[("MaxBurstLength", "0x10000")]);
    assert_eq!(get(&s, "MaxBurstLength").as_deref(), Some("65536"));
}

#[test]
fn first_burst_over_max_burst() {
    // FirstBurstLength before MaxBurstLength, and larger: clamped (§13.14).
    let s = op_login(&[("FirstBurstLength", "65536"), ("MaxBurstLength", "4096")]);
    let n = complete(&s);
    assert_eq!(get(&s, "FirstBurstLength").as_deref(), Some("4096"));
    assert_eq!(get(&s, "MaxBurstLength").as_deref(), Some("4096"));
    assert_eq!(n.params.session.first_burst_length, 4096);
    assert_eq!(n.params.session.max_burst_length, 4096);
    // Irrelevant with InitialR2T=Yes and ImmediateData=No.
    let s = op_login(&[
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("FirstBurstLength", "65536"),
    ]);
    assert_eq!(get(&s, "FirstBurstLength").as_deref(), Some("Irrelevant"));
    // A configuration with FirstBurstLength > MaxBurstLength is clamped.
    let cfg = TargetLoginConfig {
        max_burst_length: 8192,
        first_burst_length: 65536,
        ..TargetLoginConfig::default()
    };
    let mut f = LoginFsm::new(&cfg, 0, ENTROPY);
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_T),
            ("FirstBurstLength", "262144"),
        ],
    );
    assert_eq!(get(&s, "FirstBurstLength").as_deref(), Some("8192"));
}

#[test]
fn repeated_and_misplaced_keys() {
    // Twice in one request.
    let s = op_login(&[("MaxBurstLength", "4096"), ("MaxBurstLength", "8192")]);
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // Renegotiated in a later request.
    let mut f = fsm();
    ok_continue(&send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_T),
            ("MaxBurstLength", "4096"),
        ],
    ));
    let s = send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[("MaxBurstLength", "8192")],
    );
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // Names repeated unchanged are fine (libiscsi), changed are not.
    let mut f = fsm();
    send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[("InitiatorName", IQN_I), ("TargetName", IQN_T)],
    );
    let s = send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[("InitiatorName", IQN_I), ("TargetName", IQN_T)],
    );
    ok_continue(&s);
    let s = send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[("TargetName", IQN_CHAP)],
    );
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // Security key in the operational stage.
    let s = op_login(&[("AuthMethod", "None")]);
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // AuthMethod twice across requests.
    let mut f = fsm();
    send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[
            ("InitiatorName", IQN_I),
            ("TargetName", IQN_T),
            ("AuthMethod", "None"),
        ],
    );
    let s = send(
        &mut f,
        req(Stage::SecurityNegotiation, None),
        &[("AuthMethod", "None")],
    );
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn stage_and_header_errors() {
    let base = [("InitiatorName", IQN_I), ("TargetName", IQN_T)];
    // Back to security from operational.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::SecurityNegotiation),
        ),
        &base,
    );
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // CSG changes without a granted transit.
    let mut f = fsm();
    ok_continue(&send(&mut f, req(Stage::SecurityNegotiation, None), &base));
    let s = send(&mut f, req(Stage::LoginOperationalNegotiation, None), &[]);
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // C and T both set.
    let mut f = fsm();
    let mut r = req(
        Stage::LoginOperationalNegotiation,
        Some(Stage::FullFeaturePhase),
    );
    r.continue_bit = true;
    let s = f.on_request(&r, &text(&base), &policy());
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // ISID changes mid-login.
    let mut f = fsm();
    ok_continue(&send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &base,
    ));
    let mut r = req(
        Stage::LoginOperationalNegotiation,
        Some(Stage::FullFeaturePhase),
    );
    r.isid = [9; 6];
    let s = f.on_request(&r, &[], &policy());
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // Malformed text.
    let mut f = fsm();
    let s = f.on_request(
        &req(Stage::SecurityNegotiation, None),
        b"InitiatorName",
        &policy(),
    );
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
    // Caller-side rejection.
    let mut f = fsm();
    let s = f.reject(
        &req(Stage::SecurityNegotiation, None),
        LoginStatus::TOO_MANY_CONNECTIONS,
    );
    assert_eq!(failed(&s), LoginStatus::TOO_MANY_CONNECTIONS);
}

#[test]
fn continuation_from_initiator() {
    let mut data = text(&[("InitiatorName", IQN_I), ("TargetName", IQN_T)]);
    data.extend(text(OPEN_ISCSI_OPS));
    // Split inside a key=value pair.
    let (a, rest) = data.split_at(20);
    let (b, c) = rest.split_at(60);
    let mut f = fsm();
    let mut r = req(Stage::LoginOperationalNegotiation, None);
    r.continue_bit = true;
    for part in [a, b] {
        let s = f.on_request(&r, part, &policy());
        ok_continue(&s);
        assert!(s.data.is_empty());
        assert!(!s.response.continue_bit && !s.response.transit());
    }
    let s = f.on_request(
        &req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        c,
        &policy(),
    );
    let n = complete(&s);
    assert_eq!(n.params.connection.initiator_mrdsl, 262_144);
    assert_eq!(get(&s, "MaxBurstLength").as_deref(), Some("1048576"));
    assert_eq!(s.response.stat_sn, 102);

    // Unbounded continuation is refused.
    let mut f = fsm();
    let chunk = vec![b'a'; 8192];
    let mut last = None;
    for _ in 0..9 {
        let s = f.on_request(&r, &chunk, &policy());
        if let LoginOutcome::Failed(st) = s.outcome {
            last = Some(st);
            break;
        }
    }
    assert_eq!(last, Some(LoginStatus::OUT_OF_RESOURCES));
}

#[test]
fn continuation_to_initiator() {
    // 400 unknown keys make an answer well over 8192 bytes.
    let names: Vec<String> = (0..400)
        .map(|i| format!("X-com.example.key-number-{i:04}"))
        .collect();
    let mut pairs: Vec<(&str, &str)> = vec![("InitiatorName", IQN_I), ("TargetName", IQN_T)];
    pairs.extend(names.iter().map(|n| (n.as_str(), "v")));
    let mut f = fsm();
    let mut s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &pairs,
    );
    let mut all = Vec::new();
    let mut parts = 0;
    while s.response.continue_bit {
        assert_eq!(s.outcome, LoginOutcome::Continue);
        assert!(!s.response.transit());
        assert_eq!(s.data.len(), 8192);
        all.extend_from_slice(&s.data);
        parts += 1;
        s = f.on_request(
            &req(
                Stage::LoginOperationalNegotiation,
                Some(Stage::FullFeaturePhase),
            ),
            &[],
            &policy(),
        );
    }
    all.extend_from_slice(&s.data);
    complete(&s);
    assert!(parts >= 2);
    let got = split_pairs(&all).unwrap();
    let nu = got.iter().filter(|(_, v)| *v == "NotUnderstood").count();
    assert_eq!(nu, 400);
    assert_eq!(got.last().unwrap().0, "MaxRecvDataSegmentLength");

    // A non-empty request while the answer is pending is an error.
    let mut f = fsm();
    let s = send(
        &mut f,
        req(
            Stage::LoginOperationalNegotiation,
            Some(Stage::FullFeaturePhase),
        ),
        &pairs,
    );
    assert!(s.response.continue_bit);
    let s = send(
        &mut f,
        req(Stage::LoginOperationalNegotiation, None),
        &[("MaxBurstLength", "4096")],
    );
    assert_eq!(failed(&s), LoginStatus::INITIATOR_ERROR);
}

fn stage_strategy() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::SecurityNegotiation),
        Just(Stage::LoginOperationalNegotiation),
        Just(Stage::FullFeaturePhase),
    ]
}

fn request_strategy() -> impl Strategy<Value = (LoginRequest, Vec<u8>)> {
    let key = prop_oneof![
        Just("InitiatorName"),
        Just("TargetName"),
        Just("SessionType"),
        Just("AuthMethod"),
        Just("CHAP_A"),
        Just("CHAP_N"),
        Just("CHAP_R"),
        Just("CHAP_I"),
        Just("CHAP_C"),
        Just("MaxBurstLength"),
        Just("FirstBurstLength"),
        Just("HeaderDigest"),
        Just("MaxRecvDataSegmentLength"),
        Just("InitialR2T"),
        Just("X-foo"),
    ];
    let value = prop_oneof![
        Just(IQN_T.to_string()),
        Just(IQN_CHAP.to_string()),
        Just(IQN_I.to_string()),
        Just("CHAP,None".to_string()),
        Just("5".to_string()),
        Just("Discovery".to_string()),
        "[0-9a-zA-Z,=x]{0,12}",
    ];
    let pairs = prop::collection::vec((key, value), 0..8).prop_map(|ps| {
        let mut v = Vec::new();
        for (k, val) in ps {
            v.extend_from_slice(k.as_bytes());
            v.push(b'=');
            v.extend_from_slice(val.as_bytes());
            v.push(0);
        }
        v
    });
    let data = prop_oneof![pairs, prop::collection::vec(any::<u8>(), 0..200)];
    (
        stage_strategy(),
        prop::option::of(stage_strategy()),
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 6]>(),
        any::<u16>(),
        any::<u32>(),
        data,
    )
        .prop_map(|(csg, nsg, cont, vmax, vmin, isid, tsih, sn, data)| {
            let r = LoginRequest {
                next_stage: nsg,
                continue_bit: cont,
                current_stage: csg,
                version_max: vmax % 3,
                version_min: vmin % 2,
                total_ahs_len: 0,
                data_segment_len: data.len() as u32,
                isid: if isid[0] % 4 == 0 { isid } else { ISID },
                tsih: tsih % 2,
                itt: sn,
                cid: 0,
                cmd_sn: sn,
                exp_stat_sn: sn,
            };
            (r, data)
        })
}

proptest! {
    #[test]
    fn never_panics(steps in prop::collection::vec(request_strategy(), 1..8)) {
        let mut f = fsm();
        for (r, data) in &steps {
            let s = f.on_request(r, data, &policy());
            prop_assert_eq!(s.response.data_segment_len as usize, s.data.len());
            prop_assert!(s.data.len() <= 8192);
            if let LoginOutcome::Failed(st) = s.outcome {
                prop_assert!(!st.is_success());
                prop_assert!(f.is_finished());
            }
        }
    }

    #[test]
    fn text_response_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut p = LoginParams::default();
        let _ = text_response(&mut p, &data, &[("iqn.a:b".to_string(), vec!["1.2.3.4:3260,1".to_string()])]);
    }
}
