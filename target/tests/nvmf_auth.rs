//! NVMe in-band authentication (DH-HMAC-CHAP) end to end with the in-repo
//! host (`tests/src/nvme_auth.rs`): Connect asks for authentication
//! (AUTHREQ.ATR) for hosts with a `dhchap_key`; admin and I/O queues
//! authenticate, one way and both ways, with each hash and with the null,
//! ffdhe2048 and larger groups; re-authentication on established queues;
//! every refusal (wrong host secret, wrong controller secret, no secret,
//! truncated, out-of-order, wrong transaction id, replayed reply) ends
//! only that queue with the reason while another host keeps doing I/O;
//! failures are counted; `ctl nvme host add --dhchap-key` sets and rotates
//! secrets live; `config show` never shows them.

use std::time::Duration;

use zctarget_protocol::nvme::auth::dh::DhGroup;
use zctarget_protocol::nvme::auth::message::{Failure, Message};
use zctarget_protocol::nvme::auth::{reason, DhchapKey, HashId, HostError};
use zctarget_protocol::nvme::Status;
use zctarget_tests::nvme_auth::{required, AuthFailure, Dhchap, AUTH_RECEIVE_LEN};
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-12.io.zctarget.test:auth";
const OPEN: &str = "nqn.2026-12.io.zctarget.test:open";
const UNI: &str = "nqn.2026-12.io.zctarget.test:uni";
const BIDI: &str = "nqn.2026-12.io.zctarget.test:bidi";
const SHA384_NULL: &str = "nqn.2026-12.io.zctarget.test:sha384-null";
const SHA512_4096: &str = "nqn.2026-12.io.zctarget.test:sha512-4096";
const LIVE: &str = "nqn.2026-12.io.zctarget.test:live";
const BS: usize = 512;

fn key(seed: u8, transform: Option<HashId>, len: usize) -> String {
    let bytes: Vec<u8> = (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    DhchapKey::new(transform, &bytes).unwrap().format()
}

fn uni_key() -> String {
    key(1, Some(HashId::Sha256), 32)
}
fn bidi_key() -> String {
    key(2, None, 48)
}
fn bidi_ctrl_key() -> String {
    key(3, Some(HashId::Sha512), 64)
}
fn other_key() -> String {
    key(4, Some(HashId::Sha384), 48)
}

fn start() -> Daemon {
    start_on("auto")
}

fn start_on(engine: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nio_engine = \"{engine}\"\nadmin_socket = \"admin.sock\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         iscsi_listen = []\nnvme_listen = [\"127.0.0.1:0\"]\nreactors = 2\nbuffer_pool = \"16MiB\"\n\
         login_timeout_secs = 2\n\n\
         [[volumes]]\nname = \"data\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"data\"]\nhosts = [\n\
         \"{OPEN}\",\n\
         {{ nqn = \"{UNI}\", dhchap_key = \"{}\" }},\n\
         {{ nqn = \"{BIDI}\", dhchap_key = \"{}\", dhchap_ctrl_key = \"{}\" }},\n\
         {{ nqn = \"{SHA384_NULL}\", dhchap_key = \"{}\", dhchap_hashes = [\"sha384\"], dhchap_dhgroups = [\"null\"] }},\n\
         {{ nqn = \"{SHA512_4096}\", dhchap_key = \"{}\", dhchap_hashes = [\"sha512\"], dhchap_dhgroups = [\"ffdhe4096\"] }},\n\
         ]\n",
        uni_key(),
        bidi_key(),
        bidi_ctrl_key(),
        uni_key(),
        bidi_key(),
    ))
}

fn opts(host: &str, d: Option<Dhchap>) -> QueueOptions {
    let mut o = QueueOptions::admin(NQN, host);
    o.dhchap = d;
    o
}

/// Status type and code, without DNR.
fn kind(s: Status) -> (u8, u8) {
    (s.sct.code(), s.sc)
}

/// A write and read back of one block on `q`.
fn io_round_trip(q: &mut NvmeQueue, lba: u64, seed: u8) {
    let data: Vec<u8> = (0..BS).map(|i| (i as u8) ^ seed).collect();
    let w = q.write(1, lba, &data, BS, false).expect("write");
    assert!(w.status().is_success(), "write {:?}", w.status());
    let r = q.read(1, lba, 1, BS).expect("read");
    assert!(r.status().is_success(), "read {:?}", r.status());
    assert_eq!(r.data, data);
}

/// An authenticated admin queue, then an I/O queue that authenticates
/// too; returns both and what each negotiated.
fn connect(d: &Daemon, host: &str, secrets: &Dhchap) -> (NvmeQueue, NvmeQueue, (HashId, DhGroup)) {
    let admin = NvmeQueue::admin(d.nvme_addr(), &opts(host, Some(secrets.clone())))
        .expect("authenticated admin queue");
    let mut o = opts(host, None);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("I/O Connect");
    assert!(
        r.status().is_success() && required(&r),
        "{:?} dw0 {:#x}",
        r.status(),
        r.cqe.dw0
    );
    // Before authenticating, I/O is refused with Authentication Required.
    let data = vec![0u8; BS];
    let refused = io.write(1, 0, &data, BS, false).expect("write");
    assert_eq!(kind(refused.status()), (1, 0x91), "{:?}", refused.status());
    let negotiated = io
        .authenticate(secrets, NQN, host, 9)
        .expect("AUTH commands")
        .unwrap_or_else(|e| panic!("{host}: I/O queue authentication: {e}"));
    (admin, io, negotiated)
}

#[test]
fn hosts_authenticate_with_each_hash_and_group_both_ways() {
    // The FFDHE steps run on the blocking pool: both engines' runtimes.
    for engine in ["uring", "epoll"] {
        let d = start_on(engine);
        each_hash_and_group(&d);
        d.stop();
    }
}

fn each_hash_and_group(d: &Daemon) {
    let uni = Dhchap::new(&uni_key(), None);
    let (_a, mut io, n) = connect(d, UNI, &uni);
    assert_eq!(n, (HashId::Sha256, DhGroup::Ffdhe2048));
    io_round_trip(&mut io, 1, 0x11);

    let bidi = Dhchap::new(&bidi_key(), Some(&bidi_ctrl_key()));
    let (_b, mut io, n) = connect(d, BIDI, &bidi);
    assert_eq!(n, (HashId::Sha256, DhGroup::Ffdhe2048));
    io_round_trip(&mut io, 2, 0x22);

    let (_c, mut io, n) = connect(d, SHA384_NULL, &Dhchap::new(&uni_key(), None));
    assert_eq!(n, (HashId::Sha384, DhGroup::Null));
    io_round_trip(&mut io, 3, 0x33);

    let (_e, mut io, n) = connect(d, SHA512_4096, &Dhchap::new(&bidi_key(), None));
    assert_eq!(n, (HashId::Sha512, DhGroup::Ffdhe4096));
    io_round_trip(&mut io, 4, 0x44);

    // The host chooses what it offers: ffdhe8192 and SHA-384 only.
    let mut big = Dhchap::new(&bidi_key(), Some(&bidi_ctrl_key()));
    big.hashes = vec![HashId::Sha384];
    big.dhgroups = vec![DhGroup::Ffdhe8192];
    let (_f, mut io, n) = connect(d, BIDI, &big);
    assert_eq!(n, (HashId::Sha384, DhGroup::Ffdhe8192));
    io_round_trip(&mut io, 5, 0x55);

    // Hosts without a secret are not asked.
    let (open, r) = NvmeQueue::connect(d.nvme_addr(), &opts(OPEN, None)).unwrap();
    assert!(r.status().is_success() && !required(&r));
    drop(open);
}

#[test]
fn reauthentication_on_established_queues() {
    let d = start();
    let bidi = Dhchap::new(&bidi_key(), Some(&bidi_ctrl_key()));
    let (mut admin, mut io, _) = connect(&d, BIDI, &bidi);
    for tid in 20..23 {
        for q in [&mut admin, &mut io] {
            q.authenticate(&bidi, NQN, BIDI, tid)
                .unwrap()
                .unwrap_or_else(|e| panic!("re-authentication {tid}: {e}"));
        }
        io_round_trip(&mut io, 10 + u64::from(tid), tid as u8);
    }
    assert!(admin.keep_alive().unwrap().status().is_success());
    d.stop();
}

/// An open host that keeps working while others fail.
fn bystander(d: &Daemon) -> NvmeQueue {
    let admin = NvmeQueue::admin(d.nvme_addr(), &opts(OPEN, None)).expect("open host");
    let mut o = opts(OPEN, None);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (io, r) = NvmeQueue::connect(d.nvme_addr(), &o).unwrap();
    assert!(r.status().is_success());
    std::mem::forget(admin); // keep its connection open for the test
    io
}

/// A queue of `host` with its Negotiate sent and the challenge read.
fn challenged(
    d: &Daemon,
    host: &str,
    secrets: &Dhchap,
) -> (NvmeQueue, zctarget_protocol::nvme::auth::AuthHost, Vec<u8>) {
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &opts(host, None)).unwrap();
    assert!(required(&r));
    let mut h = secrets.host(NQN, host);
    assert!(q.auth_send(&h.negotiate(5)).unwrap().status().is_success());
    let challenge = q.auth_receive(AUTH_RECEIVE_LEN).unwrap();
    assert!(challenge.status().is_success());
    let reply = h.reply(&challenge.data, &mut rand::thread_rng()).unwrap();
    (q, h, reply)
}

/// The controller answers AUTH_Receive with Failure1 `why`, then closes.
fn expect_failure1(q: &mut NvmeQueue, tid: u16, why: u8) {
    let r = q.auth_receive(AUTH_RECEIVE_LEN).expect("AUTH_Receive");
    assert!(r.status().is_success());
    assert_eq!(
        Message::parse(&r.data),
        Ok(Message::Failure1(Failure {
            tid,
            code: 1,
            explanation: why
        })),
        "{}",
        reason::describe(why)
    );
    assert!(
        q.closed_within(Duration::from_secs(10)),
        "queue not ended after Failure1"
    );
}

#[test]
fn refusals_end_only_their_queue() {
    let d = start();
    let mut other = bystander(&d);
    let uni = Dhchap::new(&uni_key(), None);

    // Wrong host secret.
    let wrong = Dhchap::new(&other_key(), None);
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &opts(UNI, None)).unwrap();
    assert!(required(&r));
    match q.authenticate(&wrong, NQN, UNI, 3).unwrap() {
        Err(AuthFailure::Host(HostError::Refused(f))) => assert_eq!(f.explanation, reason::FAILED),
        other => panic!("wrong secret: {other:?}"),
    }
    assert!(q.closed_within(Duration::from_secs(10)));
    io_round_trip(&mut other, 1, 1);

    // Wrong controller secret: the host detects it, sends Failure2, and
    // the controller ends the queue.
    let wrong_ctrl = Dhchap::new(&bidi_key(), Some(&other_key()));
    let (mut q, _) = NvmeQueue::connect(d.nvme_addr(), &opts(BIDI, None)).unwrap();
    match q.authenticate(&wrong_ctrl, NQN, BIDI, 4).unwrap() {
        Err(AuthFailure::Host(HostError::ControllerMismatch)) => {}
        other => panic!("wrong controller secret: {other:?}"),
    }
    assert!(q.closed_within(Duration::from_secs(10)));
    io_round_trip(&mut other, 2, 2);

    // No secret where one is configured: every command but Fabrics ones
    // is refused with Authentication Required.
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &opts(UNI, None)).unwrap();
    assert!(required(&r));
    assert_eq!(kind(q.identify(1, 0).unwrap().status()), (1, 0x91));
    assert_eq!(kind(q.keep_alive().unwrap().status()), (1, 0x91));
    assert!(q.property_get(0x08, false).is_ok());

    // Truncated Reply.
    let (mut q, _h, reply) = challenged(&d, UNI, &uni);
    assert!(q
        .auth_send(&reply[..reply.len() - 3])
        .unwrap()
        .status()
        .is_success());
    expect_failure1(&mut q, 5, reason::INCORRECT_PAYLOAD);

    // Out of order: Success2 where the Reply is expected.
    let (mut q, _h, _reply) = challenged(&d, UNI, &uni);
    q.auth_send(&Message::Success2 { tid: 5 }.encode()).unwrap();
    expect_failure1(&mut q, 5, reason::INCORRECT_MESSAGE);

    // Wrong transaction id in the Reply.
    let (mut q, _h, reply) = challenged(&d, UNI, &uni);
    let Message::Reply(mut r) = Message::parse(&reply).unwrap() else {
        panic!()
    };
    r.tid = 6;
    q.auth_send(&Message::Reply(r).encode()).unwrap();
    expect_failure1(&mut q, 5, reason::INCORRECT_PAYLOAD);

    // Replayed Reply after a successful transaction.
    let (mut q, _h, reply) = challenged(&d, UNI, &uni);
    assert!(q.auth_send(&reply).unwrap().status().is_success());
    let s1 = q.auth_receive(AUTH_RECEIVE_LEN).unwrap();
    assert!(matches!(Message::parse(&s1.data), Ok(Message::Success1(_))));
    assert!(q.property_get(0x08, false).is_ok());
    let ka = q.keep_alive().unwrap().status();
    assert_ne!(kind(ka), (1, 0x91), "the queue is authenticated");
    q.auth_send(&reply).unwrap();
    expect_failure1(&mut q, 5, reason::INCORRECT_MESSAGE);

    io_round_trip(&mut other, 3, 3);
    let failed = d
        .metric("zctarget_protocol_errors_total{protocol=\"nvme_tcp\",kind=\"auth_failed\"}")
        .unwrap_or(0.0);
    assert_eq!(
        failed, 5.0,
        "wrong secret, truncated, out of order, wrong T_ID, replay"
    );
    let host_failed = d
        .metric("zctarget_protocol_errors_total{protocol=\"nvme_tcp\",kind=\"auth_host_failure\"}");
    assert_eq!(host_failed, Some(1.0));
    let log = d.log();
    for secret in [uni_key(), bidi_key(), bidi_ctrl_key()] {
        let b64 = &secret[10..30];
        assert!(!log.contains(b64), "a secret is in the log");
    }
    d.stop();
}

/// A slow host (Linux in a TCG guest takes seconds for an ffdhe6144 or
/// ffdhe8192 value) may spend longer than KATO between the Challenge and
/// its Reply: the keep-alive timer must not tear the controller down while
/// the admin queue authenticates.
#[test]
fn keep_alive_waits_for_authentication() {
    let d = start();
    let mut o = opts(BIDI, None);
    o.kato_ms = 500;
    let (mut q, r) = NvmeQueue::connect(d.nvme_addr(), &o).unwrap();
    assert!(required(&r));
    let secrets = Dhchap::new(&bidi_key(), Some(&bidi_ctrl_key()));
    let mut h = secrets.host(NQN, BIDI);
    assert!(q.auth_send(&h.negotiate(1)).unwrap().status().is_success());
    let challenge = q.auth_receive(AUTH_RECEIVE_LEN).unwrap().data;
    // 3 x KATO, within the 2 s authentication deadline of this daemon.
    std::thread::sleep(Duration::from_millis(1500));
    let reply = h.reply(&challenge, &mut rand::thread_rng()).unwrap();
    let sent = q.auth_send(&reply);
    assert!(sent.is_ok(), "{sent:?}\n{}", d.log());
    assert!(sent.unwrap().status().is_success());
    let s1 = q.auth_receive(AUTH_RECEIVE_LEN).unwrap().data;
    let s2 = h
        .success1(&s1)
        .expect("controller response")
        .expect("success2");
    assert!(q.auth_send(&s2).unwrap().status().is_success());
    // Authenticated, and the controller is still there.
    let ka = q.keep_alive().expect("the queue is alive").status();
    assert_ne!(kind(ka), (1, 0x91), "the queue is authenticated");
    assert!(!d.log().contains("keep-alive timeout"), "{}", d.log());
    d.stop();
}

#[test]
fn abandoned_transactions_end_the_queue() {
    let d = start();
    let mut other = bystander(&d);
    // Connected, never authenticated.
    let (mut idle, r) = NvmeQueue::connect(d.nvme_addr(), &opts(UNI, None)).unwrap();
    assert!(required(&r));
    // A transaction left after the challenge.
    let (mut half, _h, _reply) = challenged(&d, UNI, &Dhchap::new(&uni_key(), None));
    // An authenticated queue is not affected.
    let (_a, mut io, _) = connect(&d, UNI, &Dhchap::new(&uni_key(), None));
    assert!(
        idle.closed_within(Duration::from_secs(10)),
        "idle queue kept"
    );
    assert!(
        half.closed_within(Duration::from_secs(10)),
        "half-done queue kept"
    );
    io_round_trip(&mut io, 20, 20);
    io_round_trip(&mut other, 21, 21);
    let timeouts =
        d.metric("zctarget_protocol_errors_total{protocol=\"nvme_tcp\",kind=\"auth_timeout\"}");
    assert_eq!(timeouts, Some(2.0));
    d.stop();
}

#[test]
fn ctl_sets_and_rotates_secrets_live() {
    let d = start();
    let first = key(7, None, 32);
    let out = d.ctl(&["nvme", "host", "add", NQN, LIVE, "--dhchap-key", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets = Dhchap::new(&first, None);
    let (_a, mut io, _) = connect(&d, LIVE, &secrets);

    // A mistyped secret is refused with the reason, not echoed.
    let mut bad = key(8, None, 32);
    bad.replace_range(12..14, "zz");
    let out = d.ctl(&["nvme", "host", "add", NQN, LIVE, "--dhchap-key", &bad]);
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains(&bad[10..40]), "{err}");

    // Rotation: new connections need the new secret; the old queue stays.
    // The new secret comes from a file, never on the command line.
    let second = key(9, Some(HashId::Sha256), 32);
    let file = d.dir().join("host.key");
    std::fs::write(&file, format!("{second}\n")).expect("key file");
    let file = file.to_str().expect("utf-8 path");
    let out = d.ctl(&["nvme", "host", "add", NQN, LIVE, "--dhchap-key-file", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    io_round_trip(&mut io, 7, 7);
    let (mut q, _) = NvmeQueue::connect(d.nvme_addr(), &opts(LIVE, None)).unwrap();
    assert!(q.authenticate(&secrets, NQN, LIVE, 1).unwrap().is_err());
    let (_b, mut io2, _) = connect(&d, LIVE, &Dhchap::new(&second, None));
    io_round_trip(&mut io2, 8, 8);

    let list = d.ctl(&["nvme", "subsystem", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("DHCHAP_HOSTS") && list.contains(LIVE),
        "{list}"
    );
    assert!(!list.contains(&second[10..40]), "{list}");
    assert!(d.log().contains("queue authenticated"), "no success logged");

    // config show redacts; the file keeps the secret.
    let show = d.ctl(&["config", "show"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains(&second[10..40]), "{text}");
    let file = std::fs::read_to_string(d.config_path()).unwrap();
    assert!(file.contains(&second), "{file}");
    d.stop();
}
