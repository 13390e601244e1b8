//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! fuzz harnesses on stable Rust, so every input the fuzzers kept is
//! re-checked by the ordinary test run.
//!
//! `cargo test -p zctarget-protocol --test fuzz_corpus -- --ignored` writes
//! the hand-made seed inputs (`seed-*` files) back into the corpus.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::{Path, PathBuf};

use zctarget_protocol::iscsi::{self, text::TextWriter};
use zctarget_protocol::nvme_tcp;

type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 6] = [
    ("iscsi_bhs", harness::iscsi_bhs),
    ("iscsi_text", harness::iscsi_text),
    ("nvme_tcp_pdu", harness::nvme_tcp_pdu),
    ("nvme_capsule", harness::nvme_capsule),
    ("nvme_auth", harness::nvme_auth),
    ("peer_frame", harness::peer_frame),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_replays_through_its_own_target() {
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 10,
            "{target}: only {} corpus files",
            files.len()
        );
        for (path, bytes) in &files {
            let result = std::panic::catch_unwind(|| run(bytes));
            assert!(result.is_ok(), "{target} failed on {}", path.display());
        }
    }
}

#[test]
fn corpus_replays_through_every_target() {
    for (source, _) in TARGETS {
        for (path, bytes) in corpus(source) {
            for (target, run) in TARGETS {
                let result = std::panic::catch_unwind(|| run(&bytes));
                assert!(result.is_ok(), "{target} failed on {}", path.display());
            }
        }
    }
}

#[test]
fn seeds_include_valid_pdus() {
    // The seeds are there to steer the fuzzers to valid PDUs: make sure
    // they still decode.
    let bhs_ok = corpus("iscsi_bhs")
        .iter()
        .filter(|(_, b)| iscsi::Bhs::parse(b).and_then(|h| h.pdu()).is_ok())
        .count();
    assert!(bhs_ok >= iscsi::Opcode::ALL.len(), "{bhs_ok}");
    let text_ok = corpus("iscsi_text")
        .iter()
        .filter(|(_, b)| iscsi::text::parse(b).is_ok_and(|p| p.count() > 0))
        .count();
    assert!(text_ok >= 3, "{text_ok}");
    let nvme_ok = corpus("nvme_tcp_pdu")
        .iter()
        .filter(|(_, b)| {
            nvme_tcp::CommonHeader::parse(b)
                .and_then(|h| h.validate(false, false, u32::MAX))
                .is_ok()
        })
        .count();
    assert!(nvme_ok >= nvme_tcp::PduType::ALL.len(), "{nvme_ok}");
}

type Seed = (&'static str, String, Vec<u8>);

/// Hand-made valid inputs for each target.
fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    iscsi_seeds(&mut out);
    nvme_tcp_seeds(&mut out);
    nvme_capsule_seeds(&mut out);
    nvme_auth_seeds(&mut out);
    peer_seeds(&mut out);
    out
}

/// One peer link frame of each kind.
fn peer_seeds(out: &mut Vec<Seed>) {
    use zctarget_protocol::peer::{Frame, SharedUa, Status};
    let mut add = adder(out);
    let v = || "rbd:rbd//img".to_owned();
    let frames = [
        (
            "hello",
            Frame::Hello {
                gateway: "gw-b".into(),
                nonce: [7; 32],
            },
        ),
        (
            "challenge",
            Frame::Challenge {
                gateway: "gw-a".into(),
                nonce: [8; 32],
                proof: [9; 32],
            },
        ),
        ("response", Frame::Response { proof: [10; 32] }),
        ("welcome", Frame::Welcome),
        (
            "write",
            Frame::Write {
                volume: v(),
                offset: 4096,
                fua: true,
                data: vec![0x5a; 512],
            },
        ),
        (
            "write-zeroes",
            Frame::WriteZeroes {
                volume: v(),
                offset: 0,
                len: 8192,
            },
        ),
        (
            "discard",
            Frame::Discard {
                volume: v(),
                offset: 512,
                len: 1024,
            },
        ),
        ("flush", Frame::Flush { volume: v() }),
        ("release", Frame::Release { volume: v() }),
        (
            "caw",
            Frame::CompareAndWrite {
                volume: v(),
                offset: 0,
                fua: false,
                compare: vec![1; 512],
                data: vec![2; 512],
            },
        ),
        (
            "ua",
            Frame::UnitAttention {
                volume: v(),
                ua: SharedUa::LuReset,
            },
        ),
        ("ping", Frame::Ping),
        ("pong", Frame::Pong),
        (
            "reply-not-owner",
            Frame::Reply(Status::NotOwner {
                fenced: false,
                settled: true,
            }),
        ),
        ("reply-miscompare", Frame::Reply(Status::Miscompare(17))),
    ];
    let mut all = Vec::new();
    for (i, (name, f)) in frames.into_iter().enumerate() {
        let b = f.encode(i as u32);
        all.extend_from_slice(&b);
        add("peer_frame", name, b);
    }
    add("peer_frame", "stream", all);
}

/// SQEs the frontend plans, each with the data that would follow it.
fn nvme_capsule_seeds(out: &mut Vec<Seed>) {
    use zctarget_protocol::nvme::fabrics::{Connect, ConnectData};
    use zctarget_protocol::nvme::{Sgl, Sqe};
    let mut add = adder(out);
    let with = |sqe: Sqe, data: &[u8]| {
        let mut b = sqe.encode().to_vec();
        b.extend_from_slice(data);
        b
    };
    let io = |opcode: u8, slba: u64, nlb: u32, sgl: Sgl| {
        let mut s = Sqe::new(opcode, 7);
        s.nsid = 1;
        s.dptr = sgl;
        s.cdw10 = slba as u32;
        s.cdw11 = (slba >> 32) as u32;
        s.cdw12 = nlb;
        s
    };
    add(
        "nvme_capsule",
        "read",
        with(io(0x02, 8, 7, Sgl::transport(4096)), &[]),
    );
    add(
        "nvme_capsule",
        "write-in-capsule",
        with(io(0x01, 0, 0, Sgl::in_capsule(512)), &[0x5a; 512]),
    );
    add(
        "nvme_capsule",
        "write-r2t",
        with(io(0x01, 100, 255, Sgl::transport(131_072)), &[]),
    );
    add(
        "nvme_capsule",
        "write-ro-ns",
        with(
            {
                let mut s = io(0x01, 0, 0, Sgl::in_capsule(4096));
                s.nsid = 2;
                s
            },
            &[1; 4096],
        ),
    );
    add(
        "nvme_capsule",
        "compare",
        with(io(0x05, 0, 0, Sgl::in_capsule(512)), &[0; 512]),
    );
    add(
        "nvme_capsule",
        "flush",
        with(io(0x00, 0, 0, Sgl::transport(0)), &[]),
    );
    add(
        "nvme_capsule",
        "write-zeroes-deac",
        with(io(0x08, 0, 7 | (1 << 25), Sgl::transport(0)), &[]),
    );
    let mut dsm = io(0x09, 0, 0, Sgl::in_capsule(32));
    dsm.cdw10 = 1;
    dsm.cdw11 = 1 << 2;
    let mut ranges = Vec::new();
    for (slba, n) in [(0u64, 8u32), (4096, 16)] {
        ranges.extend_from_slice(&0u32.to_le_bytes());
        ranges.extend_from_slice(&n.to_le_bytes());
        ranges.extend_from_slice(&slba.to_le_bytes());
    }
    add("nvme_capsule", "dsm-deallocate", with(dsm, &ranges));
    let mut identify = Sqe::new(0x06, 1);
    identify.dptr = Sgl::transport(4096);
    identify.cdw10 = 1;
    add("nvme_capsule", "identify-ctrl", with(identify, &[]));
    let mut log = Sqe::new(0x02, 2);
    log.nsid = 0xFFFF_FFFF;
    log.dptr = Sgl::transport(512);
    log.cdw10 = 0x02 | (127 << 16);
    add("nvme_capsule", "get-log-smart", with(log, &[]));
    add("nvme_capsule", "keep-alive", with(Sqe::new(0x18, 3), &[]));
    let cd = ConnectData {
        hostid: [2; 16],
        cntlid: 0xFFFF,
        subnqn: "nqn.2026-11.io.zctarget:fuzz".into(),
        hostnqn: "nqn.2026-11.io.zctarget:host".into(),
    }
    .encode();
    let connect = Connect {
        recfmt: 0,
        qid: 1,
        sqsize: 31,
        cattr: 0,
        kato: 0,
    };
    add(
        "nvme_capsule",
        "connect-io",
        with(connect.to_sqe(4, 1024), &cd),
    );
    let mut prop = Sqe::new(0x7F, 5);
    prop.nsid = 0x04;
    prop.cdw10 = 1;
    add("nvme_capsule", "property-get-cap", with(prop, &[]));
}

/// One valid message of each DH-HMAC-CHAP kind, and a bidirectional
/// exchange's Reply and Success1.
fn nvme_auth_seeds(out: &mut Vec<Seed>) {
    use zctarget_protocol::nvme::auth::message::{Challenge, Failure, Message, Success1};
    use zctarget_protocol::nvme::auth::DhchapKey;
    use zctarget_protocol::nvme::auth::{dh::DhGroup, AuthController, AuthHost, AuthPolicy};
    let mut add = adder(out);
    let mut rng = rand::rngs::mock::StepRng::new(7, 0x9E37_79B9_7F4A_7C15);
    let key = DhchapKey::new(None, &[0x42; 32]).unwrap();
    let (hostnqn, subnqn) = (
        "nqn.2026-11.io.zctarget:host",
        "nqn.2026-11.io.zctarget:fuzz",
    );
    let mut policy = AuthPolicy::new(key.clone(), Some(key.clone()));
    policy.dhgroups = vec![DhGroup::Null];
    let mut c = AuthController::new(policy, hostnqn, subnqn, &mut rng);
    let mut h = AuthHost::new(hostnqn, subnqn, key.clone(), Some(key));
    let negotiate = h.negotiate(1);
    c.send(&negotiate);
    let challenge = c.receive(&mut rng).data;
    let reply = h.reply(&challenge, &mut rng).unwrap();
    c.send(&reply);
    let success1 = c.receive(&mut rng).data;
    let success2 = h.success1(&success1).unwrap().unwrap();
    add("nvme_auth", "negotiate", negotiate);
    add("nvme_auth", "challenge-null", challenge);
    add("nvme_auth", "reply-bidirectional", reply);
    add("nvme_auth", "success1-rvalid", success1);
    add("nvme_auth", "success2", success2);
    let ch = Challenge {
        tid: 1,
        hash: 1,
        dhgroup: 1,
        seqnum: 5,
        challenge: vec![0xC1; 32],
        dh_value: vec![0xD1; 256],
    };
    add(
        "nvme_auth",
        "challenge-ffdhe2048",
        Message::Challenge(ch).encode(),
    );
    let s1 = Success1 {
        tid: 1,
        rvalid: false,
        response: vec![0; 48],
    };
    add("nvme_auth", "success1", Message::Success1(s1).encode());
    let f = Failure {
        tid: 1,
        code: 1,
        explanation: 7,
    };
    add("nvme_auth", "failure1", Message::Failure1(f).encode());
    add("nvme_auth", "failure2", Message::Failure2(f).encode());
    add(
        "nvme_auth",
        "truncated-reply",
        vec![1, 2, 0, 0, 1, 0, 32, 0],
    );
}

fn adder(out: &mut Vec<Seed>) -> impl FnMut(&'static str, &str, Vec<u8>) + '_ {
    |target, name, bytes| out.push((target, format!("seed-{name}"), bytes))
}

fn iscsi_seeds(out: &mut Vec<Seed>) {
    use iscsi::*;
    let mut add = adder(out);

    // iSCSI: one BHS per opcode, plus a login with its text.
    let login_text = {
        let mut buf = vec![0u8; 256];
        let mut w = TextWriter::new(&mut buf, 256);
        w.push("InitiatorName", "iqn.1994-05.com.redhat:seed")
            .unwrap();
        w.push("SessionType", "Normal").unwrap();
        w.push("TargetName", "iqn.2024-01.dev.zctarget:vol0")
            .unwrap();
        w.push("AuthMethod", "None").unwrap();
        w.push_u64("MaxRecvDataSegmentLength", 262_144).unwrap();
        w.as_bytes().to_vec()
    };
    let login = LoginRequest {
        next_stage: Some(Stage::FullFeaturePhase),
        current_stage: Stage::LoginOperationalNegotiation,
        data_segment_len: login_text.len() as u32,
        isid: [0x80, 0, 0x02, 0x3d, 0, 0],
        itt: 1,
        cid: 0,
        cmd_sn: 1,
        ..LoginRequest::default()
    };
    let mut with_text = login.encode().to_vec();
    with_text.extend_from_slice(&login_text);
    with_text.extend_from_slice(iscsi::digest::padding(login_text.len()));
    add("iscsi_bhs", "login-with-text", with_text);
    let cmd = ScsiCommand {
        final_bit: true,
        write: true,
        attr: TaskAttribute::Simple,
        data_segment_len: 512,
        itt: 2,
        expected_data_transfer_len: 4096,
        cmd_sn: 2,
        cdb: [0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0],
        ..ScsiCommand::default()
    };
    let pdus = [
        Pdu::NopOut(NopOut {
            itt: 3,
            ttt: RESERVED_TAG,
            ..NopOut::default()
        }),
        Pdu::ScsiCommand(cmd),
        Pdu::TaskMgmtRequest(TaskMgmtRequest {
            function: TaskMgmtFunction::AbortTask,
            ..TaskMgmtRequest::default()
        }),
        Pdu::LoginRequest(login),
        Pdu::TextRequest(TextRequest {
            final_bit: true,
            ttt: RESERVED_TAG,
            ..TextRequest::default()
        }),
        Pdu::DataOut(DataOut {
            final_bit: true,
            data_segment_len: 4096,
            buffer_offset: 512,
            ..DataOut::default()
        }),
        Pdu::LogoutRequest(LogoutRequest {
            immediate: true,
            ..LogoutRequest::default()
        }),
        Pdu::SnackRequest(SnackRequest {
            snack_type: SnackType::Status,
            ..SnackRequest::default()
        }),
        Pdu::NopIn(NopIn {
            itt: RESERVED_TAG,
            ttt: 7,
            ..NopIn::default()
        }),
        Pdu::ScsiResponse(ScsiResponse {
            status: 0x02,
            data_segment_len: 20,
            ..ScsiResponse::default()
        }),
        Pdu::TaskMgmtResponse(TaskMgmtResponse::default()),
        Pdu::LoginResponse(LoginResponse {
            status: LoginStatus::NOT_FOUND,
            ..LoginResponse::default()
        }),
        Pdu::TextResponse(TextResponse {
            final_bit: true,
            ..TextResponse::default()
        }),
        Pdu::DataIn(DataIn {
            final_bit: true,
            status_present: true,
            data_segment_len: 4096,
            ..DataIn::default()
        }),
        Pdu::LogoutResponse(LogoutResponse {
            time2wait: 2,
            time2retain: 20,
            ..LogoutResponse::default()
        }),
        Pdu::R2t(R2t {
            ttt: 9,
            desired_data_transfer_len: 65536,
            ..R2t::default()
        }),
        Pdu::AsyncMessage(AsyncMessage {
            async_event: AsyncEvent::LogoutRequest,
            ..AsyncMessage::default()
        }),
        Pdu::Reject(Reject {
            reason: RejectReason::InvalidPduField,
            data_segment_len: 48,
            ..Reject::default()
        }),
    ];
    for p in pdus {
        add(
            "iscsi_bhs",
            &format!("{:?}", p.opcode()).to_lowercase(),
            p.encode().to_vec(),
        );
    }

    // Text.
    add("iscsi_text", "login-keys", login_text);
    add(
        "iscsi_text",
        "chap",
        b"CHAP_A=5\0CHAP_I=1\0CHAP_C=0x0123456789abcdef\0".to_vec(),
    );
    add("iscsi_text", "sendtargets", b"SendTargets=All\0".to_vec());
    add(
        "iscsi_text",
        "extension",
        b"X-com.example.k=v\0X#Reg=1\0".to_vec(),
    );
    add("iscsi_text", "empty-value", b"TargetAlias=\0".to_vec());
    add(
        "iscsi_text",
        "utf8",
        "InitiatorAlias=bücher\0".as_bytes().to_vec(),
    );
    add("iscsi_text", "no-equals", b"NoEquals\0".to_vec());
    add("iscsi_text", "unterminated", b"A=1\0B=2".to_vec());
    add("iscsi_text", "empty-pair", b"A=1\0\0".to_vec());
    add("iscsi_text", "bad-utf8", b"A=\xff\0".to_vec());
}

fn nvme_tcp_seeds(out: &mut Vec<Seed>) {
    use nvme_tcp::*;
    let mut add = adder(out);
    add(
        "nvme_tcp_pdu",
        "icreq",
        ICReq {
            hdgst_enable: true,
            ..ICReq::default()
        }
        .encode()
        .to_vec(),
    );
    add(
        "nvme_tcp_pdu",
        "icresp",
        ICResp {
            maxh2cdata: 131_072,
            ..ICResp::default()
        }
        .encode()
        .to_vec(),
    );
    let mut sqe = [0u8; SQE_LEN];
    sqe[0] = 0x7f; // Fabrics
    sqe[4] = 0x01; // Connect
    let mut capsule = CapsuleCmd {
        flags: PduFlags::empty(),
        pdo: 72,
        plen: 72 + 1024,
        sqe,
    }
    .encode()
    .to_vec();
    capsule.extend_from_slice(&[0u8; 1024]);
    add("nvme_tcp_pdu", "capsulecmd-connect", capsule);
    add(
        "nvme_tcp_pdu",
        "capsulecmd-bare",
        CapsuleCmd::default().encode().to_vec(),
    );
    add(
        "nvme_tcp_pdu",
        "capsuleresp",
        CapsuleResp::default().encode().to_vec(),
    );
    let mut h2c = H2CData {
        flags: PduFlags::LAST_PDU,
        pdo: 24,
        plen: 24 + 64,
        cccid: 1,
        ttag: 1,
        datao: 0,
        datal: 64,
    }
    .encode()
    .to_vec();
    h2c.extend_from_slice(&[0x5a; 64]);
    add("nvme_tcp_pdu", "h2cdata", h2c);
    let mut c2h = C2HData {
        flags: PduFlags::LAST_PDU | PduFlags::SUCCESS,
        pdo: 24,
        plen: 24 + 32,
        cccid: 2,
        datao: 0,
        datal: 32,
    }
    .encode()
    .to_vec();
    c2h.extend_from_slice(&[0xa5; 32]);
    add("nvme_tcp_pdu", "c2hdata", c2h);
    add(
        "nvme_tcp_pdu",
        "r2t",
        R2t {
            r2tl: 4096,
            ..R2t::default()
        }
        .encode()
        .to_vec(),
    );
    let bad = [0x05u8, 0, 72, 0, 72, 0, 0, 0];
    let term = TermReq::new(
        Direction::ControllerToHost,
        Fes::InvalidPduHeaderField,
        2,
        &bad,
    );
    add(
        "nvme_tcp_pdu",
        "c2htermreq",
        term.encode().as_bytes().to_vec(),
    );
    let term = TermReq::new(
        Direction::HostToController,
        Fes::HeaderDigestError,
        0,
        &[0u8; 24],
    );
    add(
        "nvme_tcp_pdu",
        "h2ctermreq",
        term.encode().as_bytes().to_vec(),
    );
}

#[test]
#[ignore = "writes the seed corpus"]
fn write_seed_corpus() {
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn seeds_pass_their_harness() {
    for (target, name, bytes) in seeds() {
        let run = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        let result = std::panic::catch_unwind(|| run(&bytes));
        assert!(result.is_ok(), "{target}/{name}");
    }
}
