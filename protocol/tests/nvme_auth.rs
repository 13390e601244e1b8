//! DH-HMAC-CHAP: a known vector computed independently
//! (`tests/vectors/dhchap.py`, Python's hashlib/hmac/pow), complete
//! transactions between the controller state machine and the host side
//! for every hash and group, and every failure the controller must
//! answer with AUTH_Failure1 and its reason.

use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use zctarget_protocol::nvme::auth::dh::{DhGroup, KeyPair};
use zctarget_protocol::nvme::auth::message::{self, Challenge, Failure, Message, Reply};
use zctarget_protocol::nvme::auth::response::Exchange;
use zctarget_protocol::nvme::auth::{
    reason, After, AuthController, AuthHost, AuthPolicy, DhchapKey, HashId, HostError, SendOutcome,
};

const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
const SUBNQN: &str = "nqn.2026-12.io.zctarget:vector";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn host_key() -> DhchapKey {
    DhchapKey::new(Some(HashId::Sha256), &(0u8..32).collect::<Vec<_>>()).unwrap()
}

fn ctrl_key() -> DhchapKey {
    DhchapKey::new(Some(HashId::Sha384), &(32u8..80).collect::<Vec<_>>()).unwrap()
}

#[test]
fn known_vector_from_an_independent_implementation() {
    let ctrl = KeyPair::from_exponent(DhGroup::Ffdhe2048, &[0x11; 32]).unwrap();
    let host = KeyPair::from_exponent(DhGroup::Ffdhe2048, &[0x22; 32]).unwrap();
    assert_eq!(
        hex(&Sha256::digest(ctrl.public())),
        "fa569bcaabef1d8f1f54479063612a15752ef5594fc9c4ff99cc74e552549a52"
    );
    let sk = ctrl.session_key(&host.public()).unwrap();
    assert_eq!(sk, host.session_key(&ctrl.public()).unwrap());
    assert_eq!(
        hex(&Sha256::digest(&sk)),
        "5a4b3ee2e31ff42c6cb608d5704f824ecf16e46605ccff5acd511373f59a3411"
    );
    let c1: Vec<u8> = (0..48).map(|i| 0xA0 + (i % 16)).collect();
    let c2: Vec<u8> = (0..48).map(|i| 0x50 + (i % 16)).collect();
    let mut x = Exchange {
        hash: HashId::Sha384,
        session_key: Some(&sk),
        tid: 0x42,
        hostnqn: HOSTNQN,
        subnqn: SUBNQN,
    };
    let kh = host_key().transformed(HOSTNQN);
    let kc = ctrl_key().transformed(SUBNQN);
    assert_eq!(
        hex(&x.host_response(&kh, &c1, 0x01020304)),
        "0b3dcf682cb5e7e89c3f1fa70290f82a479b34ccc80fb0581762e6aed4c2288805372404db39b0bf4aaa73c0cff89cac"
    );
    assert_eq!(
        hex(&x.ctrl_response(&kc, &c2, 0x0BADF00D)),
        "0ca057386fac8447979d8d34303432e6c818a03a4d38d0d44c46c9ccf88d8b88993e401615e9cb6316fadfab41d9d7d7"
    );
    x.session_key = None;
    assert_eq!(
        hex(&x.host_response(&kh, &c1, 0x01020304)),
        "fb338b10af58c5b444ad4164e6de49745a52151268ca54d7fb5a6ceb298fc29e47a2af315abc391536499d7a1984f059"
    );
}

fn controller(policy: AuthPolicy, rng: &mut StdRng) -> AuthController {
    AuthController::new(policy, HOSTNQN, SUBNQN, rng)
}

/// Runs one transaction; returns the host's result and the controller's.
fn run(
    ctrl: &mut AuthController,
    host: &mut AuthHost,
    tid: u16,
    rng: &mut StdRng,
) -> Result<(), HostError> {
    assert_eq!(ctrl.send(&host.negotiate(tid)), SendOutcome::Continue);
    let challenge = ctrl.receive(rng);
    let reply = match host.reply(&challenge.data, rng) {
        Ok(r) => r,
        Err(e) => {
            assert!(matches!(challenge.then, After::Terminate(_)));
            return Err(e);
        }
    };
    assert_eq!(ctrl.send(&reply), SendOutcome::Continue);
    let s1 = ctrl.receive(rng);
    match host.success1(&s1.data)? {
        None => assert_eq!(s1.then, After::Authenticated),
        Some(s2) => {
            assert_eq!(s1.then, After::Continue);
            assert!(!ctrl.authenticated() || tid > 1);
            assert_eq!(ctrl.send(&s2), SendOutcome::Authenticated);
        }
    }
    assert!(ctrl.authenticated());
    Ok(())
}

#[test]
fn every_hash_and_group_authenticates_both_ways() {
    let mut rng = StdRng::seed_from_u64(1);
    for hash in HashId::ALL {
        for group in DhGroup::ALL {
            for bidi in [false, true] {
                let ck = bidi.then(ctrl_key);
                let mut policy = AuthPolicy::new(host_key(), ck.clone());
                policy.hashes = vec![hash];
                policy.dhgroups = vec![group];
                let mut c = controller(policy, &mut rng);
                let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), ck);
                run(&mut c, &mut h, 1, &mut rng).unwrap();
                assert_eq!(c.negotiated(), (hash, group));
            }
        }
    }
}

#[test]
fn reauthentication_restarts_with_a_new_transaction() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut c = controller(AuthPolicy::new(host_key(), Some(ctrl_key())), &mut rng);
    let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), Some(ctrl_key()));
    run(&mut c, &mut h, 1, &mut rng).unwrap();
    run(&mut c, &mut h, 2, &mut rng).unwrap();
    // A Negotiate in the middle of a transaction restarts it too.
    c.send(&h.negotiate(3));
    let _ = c.receive(&mut rng);
    run(&mut c, &mut h, 4, &mut rng).unwrap();
}

/// Expects the next AUTH_Receive to be Failure1 with `explanation`.
fn expect_failure(c: &mut AuthController, rng: &mut StdRng, tid: u16, explanation: u8) {
    let out = c.receive(rng);
    assert_eq!(
        out.then,
        After::Terminate(explanation),
        "{}",
        reason::describe(explanation)
    );
    assert_eq!(
        Message::parse(&out.data),
        Ok(Message::Failure1(Failure {
            tid,
            code: 1,
            explanation
        }))
    );
}

fn parse_challenge(b: &[u8]) -> Challenge {
    match Message::parse(b).unwrap() {
        Message::Challenge(c) => c,
        m => panic!("{m:?}"),
    }
}

fn parse_reply(b: &[u8]) -> Reply {
    match Message::parse(b).unwrap() {
        Message::Reply(r) => r,
        m => panic!("{m:?}"),
    }
}

fn started(bidi: bool, rng: &mut StdRng) -> (AuthController, AuthHost, Vec<u8>) {
    let ck = bidi.then(ctrl_key);
    let mut c = controller(AuthPolicy::new(host_key(), ck.clone()), rng);
    let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), ck);
    c.send(&h.negotiate(7));
    let challenge = c.receive(rng).data;
    let reply = h.reply(&challenge, rng).unwrap();
    (c, h, reply)
}

#[test]
fn wrong_host_secret_fails() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut c = controller(AuthPolicy::new(host_key(), None), &mut rng);
    let wrong = DhchapKey::new(Some(HashId::Sha256), &[9; 32]).unwrap();
    let mut h = AuthHost::new(HOSTNQN, SUBNQN, wrong, None);
    c.send(&h.negotiate(5));
    let ch = c.receive(&mut rng).data;
    c.send(&h.reply(&ch, &mut rng).unwrap());
    expect_failure(&mut c, &mut rng, 5, reason::FAILED);
    assert!(!c.authenticated());
}

#[test]
fn wrong_controller_secret_is_detected_by_the_host() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut c = controller(AuthPolicy::new(host_key(), Some(ctrl_key())), &mut rng);
    let other = DhchapKey::new(None, &[3; 48]).unwrap();
    let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), Some(other));
    assert_eq!(
        run(&mut c, &mut h, 1, &mut rng),
        Err(HostError::ControllerMismatch)
    );
    let f2 = h.failure2(reason::FAILED);
    assert!(matches!(
        c.send(&f2),
        SendOutcome::HostFailed(Failure { explanation: 1, .. })
    ));
}

#[test]
fn bidirectional_request_without_a_controller_secret_fails() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut c = controller(AuthPolicy::new(host_key(), None), &mut rng);
    let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), Some(ctrl_key()));
    c.send(&h.negotiate(1));
    let ch = c.receive(&mut rng).data;
    c.send(&h.reply(&ch, &mut rng).unwrap());
    expect_failure(&mut c, &mut rng, 1, reason::FAILED);
}

#[test]
fn truncated_messages_are_incorrect_payload() {
    let mut rng = StdRng::seed_from_u64(6);
    let (mut c, _h, reply) = started(false, &mut rng);
    c.send(&reply[..reply.len() - 1]);
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_PAYLOAD);
    // A truncated Negotiate.
    let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), None);
    let n = h.negotiate(8);
    c.send(&n[..40]);
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_PAYLOAD);
}

#[test]
fn out_of_order_messages_are_incorrect_message() {
    let mut rng = StdRng::seed_from_u64(7);
    // Success2 instead of the Reply.
    let (mut c, _h, _reply) = started(true, &mut rng);
    c.send(&Message::Success2 { tid: 7 }.encode());
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_MESSAGE);
    // A Reply before any challenge.
    let (_, _, reply) = started(false, &mut rng);
    let mut c = controller(AuthPolicy::new(host_key(), None), &mut rng);
    c.send(&reply);
    expect_failure(&mut c, &mut rng, 0, reason::INCORRECT_MESSAGE);
    // AUTH_Receive while the controller waits for the Reply.
    let (mut c, _h, _reply) = started(false, &mut rng);
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_MESSAGE);
    // A message the controller never receives (a Challenge) or unknown.
    let (mut c, _h, _reply) = started(false, &mut rng);
    c.send(
        &Message::Challenge(Challenge {
            tid: 7,
            ..Challenge::default()
        })
        .encode(),
    );
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_MESSAGE);
    let (mut c, _h, _reply) = started(false, &mut rng);
    c.send(&[1, 0x42, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_MESSAGE);
}

#[test]
fn wrong_transaction_id_is_incorrect_payload() {
    let mut rng = StdRng::seed_from_u64(8);
    let (mut c, _h, reply) = started(false, &mut rng);
    let mut r = parse_reply(&reply);
    r.tid = 8;
    c.send(&Message::Reply(r).encode());
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_PAYLOAD);
}

#[test]
fn replayed_reply_is_refused() {
    let mut rng = StdRng::seed_from_u64(9);
    let (mut c, mut h, reply) = started(true, &mut rng);
    c.send(&reply);
    let s1 = c.receive(&mut rng).data;
    let s2 = h.success1(&s1).unwrap().unwrap();
    assert_eq!(c.send(&s2), SendOutcome::Authenticated);
    // The same Reply again, after success: out of order.
    c.send(&reply);
    expect_failure(&mut c, &mut rng, 7, reason::INCORRECT_MESSAGE);
    // Replayed into a new transaction with the same T_ID: the challenge
    // differs, the response does not match.
    let (mut c, mut h, reply) = started(false, &mut rng);
    c.send(&reply);
    assert_eq!(c.receive(&mut rng).then, After::Authenticated);
    c.send(&h.negotiate(7));
    let _ = c.receive(&mut rng);
    c.send(&reply);
    expect_failure(&mut c, &mut rng, 7, reason::FAILED);
}

#[test]
fn reused_sequence_number_is_refused() {
    let mut rng = StdRng::seed_from_u64(10);
    let (mut c, mut h, reply) = started(true, &mut rng);
    let s2 = parse_reply(&reply).seqnum;
    c.send(&reply);
    let s1 = c.receive(&mut rng).data;
    c.send(&h.success1(&s1).unwrap().unwrap());
    // Next transaction: a correct response but the old S2.
    c.send(&h.negotiate(7));
    let ch = c.receive(&mut rng).data;
    let mut r = parse_reply(&h.reply(&ch, &mut rng).unwrap());
    r.seqnum = s2;
    c.send(&Message::Reply(r).encode());
    expect_failure(&mut c, &mut rng, 7, reason::FAILED);
}

#[test]
fn unusable_negotiation_answers_with_the_reason() {
    let mut rng = StdRng::seed_from_u64(11);
    type Edit = fn(&mut message::Negotiate);
    let cases: [(Edit, u8); 4] = [
        (|n| n.sc_c = 1, reason::CONCAT_MISMATCH),
        (|n| n.protocols[0].authid = 2, reason::NOT_USABLE),
        (|n| n.protocols[0].hashes = vec![9], reason::HASH_UNUSABLE),
        (
            |n| n.protocols[0].dhgroups = vec![9],
            reason::DHGROUP_UNUSABLE,
        ),
    ];
    for (edit, why) in cases {
        let mut c = controller(AuthPolicy::new(host_key(), None), &mut rng);
        let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), None);
        let Message::Negotiate(mut n) = Message::parse(&h.negotiate(3)).unwrap() else {
            unreachable!()
        };
        edit(&mut n);
        c.send(&Message::Negotiate(n).encode());
        expect_failure(&mut c, &mut rng, 3, why);
    }
}

#[test]
fn bad_dh_values_are_refused() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut policy = AuthPolicy::new(host_key(), None);
    policy.dhgroups = vec![DhGroup::Ffdhe2048];
    for (dh, why) in [
        (vec![0u8; 256], reason::DHGROUP_UNUSABLE),
        (vec![5u8; 100], reason::INCORRECT_PAYLOAD),
        (Vec::new(), reason::INCORRECT_PAYLOAD),
    ] {
        let mut c = controller(policy.clone(), &mut rng);
        let mut h = AuthHost::new(HOSTNQN, SUBNQN, host_key(), None);
        c.send(&h.negotiate(2));
        let ch = c.receive(&mut rng).data;
        assert_eq!(parse_challenge(&ch).dh_value.len(), 256);
        let mut r = parse_reply(&h.reply(&ch, &mut rng).unwrap());
        r.dh_value = dh;
        c.send(&Message::Reply(r).encode());
        expect_failure(&mut c, &mut rng, 2, why);
    }
}
