//! Fuzz harness bodies, shared by the cargo-fuzz targets in
//! `fuzz_targets/` and by `protocol/tests/fuzz_corpus.rs`, which replays the
//! committed corpus on stable Rust.
//!
//! Each function feeds arbitrary bytes to the parsers and checks the
//! invariants that must hold for any input: no panic, and whatever decodes
//! re-encodes to something that decodes to the same value.

// Each fuzz target uses one of these functions.
#![allow(dead_code)]

use zctarget_protocol::iscsi::{self, text, Bhs, Pdu, BHS_LEN};
use zctarget_protocol::nvme_tcp::{
    self, C2HData, CapsuleCmd, CapsuleResp, CommonHeader, Direction, H2CData, ICReq, ICResp,
    PduType, R2t, TermReq, CH_LEN,
};

/// iSCSI: a BHS, its typed PDU, and (for Login and Text PDUs) the text in
/// its data segment.
pub fn iscsi_bhs(data: &[u8]) {
    let Ok(h) = Bhs::parse(data) else { return };
    for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
        let len = h.pdu_len(hd, dd);
        assert!(len >= BHS_LEN + h.ahs_len_bytes());
        assert_eq!(len % 4, 0);
    }
    let _ = iscsi::digest::header_digest(h.as_bytes(), data.get(BHS_LEN..).unwrap_or(&[]));
    let Ok(pdu) = h.pdu() else { return };
    assert_eq!(pdu.opcode(), h.opcode());
    let encoded = pdu.encode();
    let again = Pdu::parse(&encoded).expect("an encoded PDU decodes");
    assert_eq!(again, pdu);
    assert_eq!(again.encode(), encoded);
    // Common fields survive the round trip.
    let eh = Bhs::from_bytes(&encoded).expect("an encoded BHS decodes");
    assert_eq!(eh.data_segment_len(), h.data_segment_len());
    assert_eq!(eh.total_ahs_len(), h.total_ahs_len());

    if matches!(
        pdu,
        Pdu::LoginRequest(_) | Pdu::LoginResponse(_) | Pdu::TextRequest(_) | Pdu::TextResponse(_)
    ) {
        let start = BHS_LEN + h.ahs_len_bytes();
        let end = start.saturating_add(h.data_segment_len() as usize);
        if let Some(segment) = data.get(start..end) {
            iscsi_text(segment);
        }
    }
}

/// iSCSI login/text key=value data.
pub fn iscsi_text(data: &[u8]) {
    match text::parse(data) {
        Ok(pairs) => {
            // Valid text re-encodes byte for byte under the same bound.
            let mut buf = vec![0u8; data.len()];
            let mut w = text::TextWriter::new(&mut buf, data.len());
            for (k, v) in pairs.clone() {
                w.push(k, v).expect("a parsed pair re-encodes");
                assert!(pairs.get(k).is_some());
            }
            assert_eq!(w.as_bytes(), data);
        }
        Err(_) => {
            // Whatever the writer accepts from the raw bytes parses back.
            let s = String::from_utf8_lossy(data);
            let (k, v) = s.split_once('=').unwrap_or((&s, ""));
            let mut buf = [0u8; 4096];
            let mut w = text::TextWriter::new(&mut buf, 4096);
            if w.push(k, v).is_ok() {
                let back: Vec<_> = text::parse(w.as_bytes())
                    .expect("written text parses")
                    .collect();
                assert_eq!(back, [(k, v)]);
            }
        }
    }
}

fn header<const N: usize>(data: &[u8]) -> Option<[u8; N]> {
    data.get(..N)?.try_into().ok()
}

/// Checks encode -> parse of a typed NVMe/TCP header.
macro_rules! round_trip {
    ($t:ty, $n:expr, $data:expr) => {
        if let Some(b) = header::<{ $n }>($data) {
            if let Ok(p) = <$t>::parse(&b) {
                let e = p.encode();
                assert_eq!(<$t>::parse(&e), Ok(p));
            }
        }
    };
}

/// NVMe/TCP: common header validation under every digest setting, the
/// typed header for its PDU type, and TermReqs.
pub fn nvme_tcp_pdu(data: &[u8]) {
    let Ok(ch) = CommonHeader::parse(data) else {
        return;
    };
    assert_eq!(
        ch.encode().as_slice(),
        data.get(..CH_LEN).unwrap_or_default()
    );
    let _ = ch.expect_direction(Direction::HostToController);
    let max = data.get(CH_LEN).map_or(u32::MAX, |&m| u32::from(m) << 8);
    for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
        for pda in [0u8, 1, 31, 255] {
            match ch.validate_with_pda(hd, dd, max, pda) {
                Ok(l) => {
                    let hd_len = if l.header_digest { 4 } else { 0 };
                    let dd_len = if l.data_digest { 4 } else { 0 };
                    assert_eq!(l.data_offset + l.data_len + dd_len, l.plen);
                    assert!(l.data_offset >= l.hlen + hd_len);
                    assert!(l.plen as u64 <= u64::from(max));
                    let _ = l.pad_len();
                }
                Err(e) => {
                    if let Some(t) = TermReq::for_error(&e, data) {
                        let bytes = t.encode();
                        assert_eq!(TermReq::parse(bytes.as_bytes()), Ok(t));
                    }
                }
            }
        }
    }
    match ch.pdu_type {
        PduType::ICReq => {
            if let Some(b) = header::<128>(data) {
                if let Ok(r) = ICReq::parse(&b) {
                    let _ = r.validate();
                    assert_eq!(ICReq::parse(&r.encode()), Ok(r));
                }
            }
        }
        PduType::ICResp => round_trip!(ICResp, 128, data),
        PduType::CapsuleCmd => round_trip!(CapsuleCmd, 72, data),
        PduType::CapsuleResp => round_trip!(CapsuleResp, 24, data),
        PduType::H2CData => {
            round_trip!(H2CData, 24, data);
            if let (Some(b), Ok(l)) = (header::<24>(data), ch.validate(false, false, u32::MAX)) {
                if let Ok(p) = H2CData::parse(&b) {
                    let _ = p.check_datal(&l, 4096);
                }
            }
        }
        PduType::C2HData => round_trip!(C2HData, 24, data),
        PduType::R2t => round_trip!(R2t, 24, data),
        PduType::H2CTermReq | PduType::C2HTermReq => {
            if let Ok(t) = TermReq::parse(data) {
                let bytes = t.encode();
                assert_eq!(TermReq::parse(bytes.as_bytes()), Ok(t));
                // The carried header is the received data, byte for byte.
                let n = t.plen() as usize;
                assert_eq!(Some(t.error_header()), data.get(24..n));
            }
        }
    }
    let _ = nvme_tcp::digest::header_digest(data);
}

/// NVMe: an SQE (64 bytes) and in-capsule data, decoded and planned the way
/// the frontend does — data pointer, Fabrics fields, and admin and I/O
/// planning on a connected, enabled controller with two namespaces.
pub fn nvme_capsule(data: &[u8]) {
    use zctarget_protocol::nvme::fabrics::{self, Connect, ConnectData};
    use zctarget_protocol::nvme::{Controller, ControllerConfig, NamespaceInfo, Sqe};
    let Some(raw) = data.get(..64).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return;
    };
    let rest = data.get(64..).unwrap_or_default();
    let sqe = Sqe::parse(&raw);
    assert_eq!(Sqe::parse(&sqe.encode()), sqe);
    let _ = sqe.data_pointer(8192);
    let _ = sqe.check_flags();
    if sqe.is_fabrics() {
        let _ = fabrics::FabricsCommand::parse(&sqe);
        let _ = ConnectData::parse(rest);
    }
    let mut ro = NamespaceInfo::new(2, 1 << 20, 4096);
    ro.read_only = true;
    let cfg = ControllerConfig {
        subnqn: "nqn.2026-11.io.zctarget:fuzz".into(),
        namespaces: vec![NamespaceInfo::new(1, 1 << 16, 512), ro],
        ..ControllerConfig::default()
    };
    let mut ctrl = Controller::new(cfg);
    let connect = Connect {
        recfmt: 0,
        qid: 0,
        sqsize: 31,
        cattr: 0,
        kato: 0,
    };
    let cd = ConnectData {
        hostid: [1; 16],
        cntlid: 0xFFFF,
        subnqn: "nqn.2026-11.io.zctarget:fuzz".into(),
        hostnqn: "nqn.2026-11.io.zctarget:host".into(),
    }
    .encode();
    let _ = ctrl.connect(&connect.to_sqe(1, cd.len() as u32), &cd);
    ctrl.write_cc(1 | (6 << 16) | (4 << 20));
    let _ = ctrl.plan_io(&sqe);
    let _ = ctrl.plan_admin(&sqe, rest);
    if let Ok(ranges) = ctrl.dsm_ranges(1, rest) {
        assert!(ranges.iter().all(|r| r.offset + r.len <= (1 << 16) * 512));
    }
}

/// NVMe in-band authentication: the DH-HMAC-CHAP message codec (what
/// decodes re-encodes to the same message) and the controller's
/// transaction state machine fed the bytes at every step (never a panic;
/// a Failure1 always carries one of the reason code explanations).
pub fn nvme_auth(data: &[u8]) {
    use zctarget_protocol::nvme::auth::{
        dh::DhGroup, After, AuthController, AuthHost, AuthPolicy, DhchapKey, Message,
    };
    if let Ok(m) = Message::parse(data) {
        let e = m.encode();
        assert_eq!(Message::parse(&e), Ok(m.clone()));
        assert_eq!(Message::parse(&e).map(|m| m.encode()), Ok(e));
    }
    let mut rng = rand::rngs::mock::StepRng::new(7, 0x9E37_79B9_7F4A_7C15);
    let Ok(key) = DhchapKey::new(None, &[0x42; 32]) else {
        return;
    };
    let mut policy = AuthPolicy::new(key.clone(), Some(key.clone()));
    policy.dhgroups = vec![DhGroup::Null];
    let (hostnqn, subnqn) = (
        "nqn.2026-11.io.zctarget:host",
        "nqn.2026-11.io.zctarget:fuzz",
    );
    for step in 0..3 {
        let mut c = AuthController::new(policy.clone(), hostnqn, subnqn, &mut rng);
        let mut h = AuthHost::new(hostnqn, subnqn, key.clone(), Some(key.clone()));
        if step >= 1 {
            c.send(&h.negotiate(1));
            let challenge = c.receive(&mut rng).data;
            if step == 2 {
                let Ok(reply) = h.reply(&challenge, &mut rng) else {
                    panic!("the host answers a valid challenge");
                };
                c.send(&reply);
                let _ = c.receive(&mut rng);
            }
        }
        c.send(data);
        let out = c.receive(&mut rng);
        if let After::Terminate(why) = out.then {
            assert!((1..=7).contains(&why), "reason {why}");
            assert!(matches!(
                Message::parse(&out.data),
                Ok(Message::Failure1(_))
            ));
        }
    }
}

/// The peer link: bytes fed to the frame decoder in two pieces (the split
/// taken from the first byte); every frame decoded re-encodes to the bytes
/// it came from, and a whole stream decodes the same in one piece.
pub fn peer_frame(data: &[u8]) {
    use zctarget_protocol::peer::Decoder;
    let (cut, rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c), r),
        None => return,
    };
    let cut = cut.min(rest.len());
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    let mut ok = true;
    for piece in [&rest[..cut], &rest[cut..]] {
        match d.push_all(piece) {
            Ok(f) => frames.extend(f),
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    let again: Vec<u8> = frames.iter().flat_map(|(t, f)| f.encode(*t)).collect();
    assert!(
        rest.starts_with(&again),
        "decoded frames re-encode to their bytes"
    );
    if ok {
        let whole = Decoder::new()
            .push_all(rest)
            .expect("one piece decodes like two");
        assert_eq!(whole, frames);
    }
}
