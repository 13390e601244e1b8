//! Reactor placement weighs work, not connections (`reactor::place`): with
//! two reactors, a controller's two I/O queues land on different reactors
//! although its admin queue — which carries no I/O — was accepted first,
//! and the per-reactor metrics (`zctarget_reactor_work`,
//! `zctarget_reactor_connections`) say so and go back to zero. An iSCSI
//! discovery session weighs nothing, a normal one weighs one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions, DISCOVERY_NQN};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-11.io.zctarget.test:placement";
const HOST: &str = "nqn.2026-11.io.zctarget.test:host-a";
const IQN: &str = "iqn.2026-11.io.zctarget.test:placement";
const INITIATOR: &str = "iqn.2026-11.io.zctarget.test:initiator";
/// Rounds of admin + two I/O queues: which reactor wins an `accept` is up
/// to the kernel, so a policy counting connections would pass a round by
/// luck about half the time.
const ROUNDS: usize = 6;

fn series(name: &str, reactor: usize) -> String {
    format!("{name}{{reactor=\"{reactor}\"}}")
}

fn per_reactor(d: &Daemon, name: &str) -> [f64; 2] {
    [0, 1].map(|r| d.metric(&series(name, r)).expect(name))
}

fn wait_idle(d: &Daemon) {
    for r in 0..2 {
        let v = d.wait_metric(
            &series("zctarget_reactor_connections", r),
            0.0,
            Duration::from_secs(10),
        );
        assert_eq!(v, Some(0.0), "reactor {r} kept its connections");
        assert_eq!(d.metric(&series("zctarget_reactor_work", r)), Some(0.0));
    }
}

#[test]
fn io_queues_spread_over_reactors_whatever_the_admin_queue() {
    let d = Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         iscsi_listen = []\nnvme_listen = [\"127.0.0.1:0\"]\nreactors = 2\n\
         buffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"m\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"m\"]\nhosts = [\"{HOST}\"]\n"
    ));
    for round in 0..ROUNDS {
        let admin =
            NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
        assert_eq!(
            per_reactor(&d, "zctarget_reactor_work"),
            [0.0, 0.0],
            "round {round}: an admin queue weighs nothing"
        );
        let mut io = Vec::new();
        for qid in [1, 2] {
            let mut o = QueueOptions::admin(NQN, HOST);
            o.qid = qid;
            o.cntlid = admin.cntlid;
            let (q, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
            assert!(r.status().is_success(), "{:?}", r.status());
            io.push(q);
        }
        assert_eq!(
            per_reactor(&d, "zctarget_reactor_work"),
            [1.0, 1.0],
            "round {round}: both I/O queues on one reactor"
        );
        // A discovery controller carries no work either.
        let disc = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(DISCOVERY_NQN, HOST))
            .expect("discovery");
        assert_eq!(per_reactor(&d, "zctarget_reactor_work"), [1.0, 1.0]);
        let conns = per_reactor(&d, "zctarget_reactor_connections");
        assert_eq!(conns[0] + conns[1], 4.0, "round {round}: {conns:?}");
        assert_eq!(
            d.metric("zctarget_connections{protocol=\"nvme_tcp\"}"),
            Some(4.0)
        );
        drop(io);
        drop(admin);
        drop(disc);
        wait_idle(&d);
    }
    d.stop();
}

fn work(d: &Daemon) -> f64 {
    per_reactor(d, "zctarget_reactor_work").iter().sum()
}

/// The summed work once it reads `want` (the login response may go out just
/// before the session says what it carries), or what it read last after 10 s.
fn work_settles(d: &Daemon, want: f64) -> f64 {
    let mut last = work(d);
    for _ in 0..200 {
        if last == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        last = work(d);
    }
    last
}

/// A discovery session's login (RFC 7143 §6.3: SessionType=Discovery, no
/// TargetName), straight to full feature phase; panics unless accepted.
fn discovery_login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let text = format!(
        "InitiatorName={INITIATOR}\0SessionType=Discovery\0HeaderDigest=None\0\
         DataDigest=None\0"
    );
    let mut bhs = [0u8; 48];
    bhs[0] = 0x40 | 0x03; // immediate Login Request
    bhs[1] = 0x80 | (1 << 2) | 3; // T, operational -> full feature phase
    bhs[5..8].copy_from_slice(&(text.len() as u32).to_be_bytes()[1..]);
    bhs[8] = 0x80; // ISID type: random
    bhs[16..20].copy_from_slice(&1u32.to_be_bytes()); // ITT
    bhs[24..28].copy_from_slice(&1u32.to_be_bytes()); // CmdSN
    let mut pdu = bhs.to_vec();
    pdu.extend_from_slice(text.as_bytes());
    pdu.resize(pdu.len().next_multiple_of(4), 0);
    s.write_all(&pdu).expect("send login");
    let mut rsp = [0u8; 48];
    s.read_exact(&mut rsp).expect("login response");
    assert_eq!(rsp[0] & 0x3f, 0x23, "Login Response");
    assert_eq!((rsp[36], rsp[37]), (0, 0), "discovery login refused");
    assert_eq!(rsp[1] & 0x83, 0x83, "not in full feature phase");
    let len = u32::from_be_bytes([0, rsp[5], rsp[6], rsp[7]]) as usize;
    let mut data = vec![0u8; len.next_multiple_of(4)];
    s.read_exact(&mut data).expect("login response data");
    s
}

#[test]
fn iscsi_discovery_sessions_weigh_nothing() {
    let d = Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         iscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\nreactors = 2\n\
         buffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"m\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"m\"]\n"
    ));
    let disc = discovery_login(d.iscsi_port);
    assert_eq!(
        work_settles(&d, 0.0),
        0.0,
        "a discovery session weighs nothing"
    );
    let normal = Iscsi::login(d.iscsi_port, IQN, INITIATOR, 512).expect("login");
    assert_eq!(work(&d), 1.0, "a normal session weighs one");
    let conns = per_reactor(&d, "zctarget_reactor_connections");
    assert_eq!(conns[0] + conns[1], 2.0, "{conns:?}");
    drop(normal);
    drop(disc);
    wait_idle(&d);
    d.stop();
}
