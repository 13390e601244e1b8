//! Reactor placement weighs live work first (`placement::Board::place`): a
//! reactor serving one busy I/O queue gets the next connection after a
//! reactor serving two idle ones. Then work, not connections: with
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

/// Two reactors, one NVMe/TCP portal, a memory namespace.
fn nvme_daemon() -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         iscsi_listen = []\nnvme_listen = [\"127.0.0.1:0\"]\nreactors = 2\n\
         buffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"m\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"m\"]\nhosts = [\"{HOST}\"]\n"
    ))
}

#[test]
fn io_queues_spread_over_reactors_whatever_the_admin_queue() {
    let d = nvme_daemon();
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

/// Connects an I/O queue of `admin`'s controller and says which reactor
/// serves it (the one whose work grew).
fn io_queue(d: &Daemon, admin: &NvmeQueue, qid: u16) -> (NvmeQueue, usize) {
    let before = per_reactor(d, "zctarget_reactor_work");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = qid;
    o.cntlid = admin.cntlid;
    let (q, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    let after = per_reactor(d, "zctarget_reactor_work");
    let grew: Vec<usize> = (0..2).filter(|&r| after[r] > before[r]).collect();
    assert_eq!(grew.len(), 1, "work {before:?} -> {after:?}");
    (q, grew[0])
}

#[test]
fn a_busy_queue_outweighs_idle_ones() {
    let d = nvme_daemon();
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin");
    // Three I/O queues: one reactor serves two, the other one.
    let mut queues: Vec<(NvmeQueue, usize)> = (1..=3).map(|q| io_queue(&d, &admin, q)).collect();
    let on = |r: usize| queues.iter().filter(|(_, at)| *at == r).count();
    let lone = if on(0) == 1 { 0 } else { 1 };
    let pair = 1 - lone;
    assert_eq!((on(lone), on(pair)), (1, 2));
    // The lone queue reads without pause; the pair sits idle.
    let i = queues.iter().position(|(_, at)| *at == lone).unwrap();
    let (mut busy, _) = queues.swap_remove(i);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(30);
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < end
            {
                let r = busy.read(1, reads % 64, 8, 512).expect("read");
                assert!(r.status().is_success(), "{:?}", r.status());
                reads += 1;
            }
            reads
        })
    };
    // The new queues' first seconds pass; then only the lone one is busy.
    let settled = d.wait_metric(
        &series("zctarget_reactor_busy_work", pair),
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(settled, Some(0.0), "the idle pair stayed busy");
    assert_eq!(
        d.metric(&series("zctarget_reactor_busy_work", lone)),
        Some(1.0),
        "the reading queue is not busy"
    );
    // Work alone (1 against 2) would put the next queue with the busy one.
    let (_q4, at) = io_queue(&d, &admin, 4);
    assert_eq!(at, pair, "the new queue joined the busy reactor");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);
    drop(queues);
    drop(_q4);
    drop(admin);
    wait_idle(&d);
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
fn iscsi_discovery_weighs_nothing_and_an_idle_session_is_not_busy() {
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
    let mut normal = Iscsi::login(d.iscsi_port, IQN, INITIATOR, 512).expect("login");
    assert_eq!(work(&d), 1.0, "a normal session weighs one");
    let conns = per_reactor(&d, "zctarget_reactor_connections");
    assert_eq!(conns[0] + conns[1], 2.0, "{conns:?}");
    // Idle once no longer new (a TEST UNIT READY now and then, as a
    // multipath path checker sends, does not count), busy again under
    // reads.
    let busy = || {
        per_reactor(&d, "zctarget_reactor_busy_work")
            .iter()
            .sum::<f64>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while busy() != 0.0 && std::time::Instant::now() < deadline {
        assert_eq!(normal.test_unit_ready().expect("TUR"), 0);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(busy(), 0.0, "an idle session stayed busy");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut reads = 0;
    while busy() != 1.0 && std::time::Instant::now() < deadline {
        assert_eq!(normal.read(reads % 64, 8).expect("read").0, 0);
        reads += 1;
    }
    assert_eq!(busy(), 1.0, "a reading session is not busy ({reads} reads)");
    drop(normal);
    drop(disc);
    wait_idle(&d);
    d.stop();
}
