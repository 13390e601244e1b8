//! The gateway-to-gateway peer link (issue #13), two gateways on ONE RBD
//! image in the throwaway Ceph cluster (skipped without
//! `ZCTARGET_TEST_CEPH_CONF`):
//! - a follower's writes (NVMe and iSCSI) and COMPARE AND WRITE are run by
//!   the owner and land; a miscompare is the owner's answer;
//! - a LOGICAL UNIT RESET on one gateway raises the unit attention on the
//!   other's I_T nexus;
//! - a gateway with the wrong peer secret is refused: its writes are not
//!   forwarded (answered 04/0B as without the link);
//! - split brain with the link: writes a follower forwarded to an owner
//!   that froze (SIGSTOP) are answered as a transition, the follower takes
//!   over and writes, and when the frozen owner resumes, the forwarded
//!   writes it then runs never land (it was blocklisted).

use std::path::Path;
use std::time::{Duration, Instant};

use zctarget_protocol::iscsi::{TaskMgmtFunction, TaskMgmtRequest};

use zctarget_tests::ceph;
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-12.io.zctarget.test:peerlink";
const IQN: &str = "iqn.2026-12.io.zctarget.test:peerlink";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const INITIATOR: &str = "iqn.2026-12.io.zctarget.test:initiator";
const BS: usize = 4096;

/// Gateway `me` of `gw-a`, `gw-b` (peer link on `ports`, secret in
/// `secret_file`) exporting rbd image `image`, owned by gw-a.
fn gateway(dir: &Path, me: &str, conf: &str, image: &str, ports: [u16; 2], secret: &str) -> Daemon {
    let secret_file = dir.join(format!("{me}.secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
    Daemon::start_with(
        dir,
        me,
        &format!(
            "[server]\nadmin_socket = \"{me}.sock\"\n\
             iscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = [\"127.0.0.1:0\"]\nreactors = 1\n\
             buffer_pool = \"16MiB\"\n\n\
             [cluster]\ngateway = \"{me}\"\ngateways = [\"gw-a\", \"gw-b\"]\n\
             takeover_after_ms = 1000\n\
             peers = {{ gw-a = \"127.0.0.1:{}\", gw-b = \"127.0.0.1:{}\" }}\n\
             peer_secret_file = \"{}\"\n\n\
             [[volumes]]\nname = \"shared\"\nbackend = \"rbd\"\npool = \"rbd\"\n\
             image = \"{image}\"\nsize = \"64MiB\"\nblock_size = 4096\nceph_conf = \"{conf}\"\n\
             owner = \"gw-a\"\n\n\
             [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"shared\"]\n\n\
             [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"shared\"]\n",
            ports[0],
            ports[1],
            secret_file.display()
        ),
    )
}

fn io_queue(d: &Daemon) -> NvmeQueue {
    let admin =
        NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin queue");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    o.sqsize = 127;
    let (io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    std::mem::forget(admin);
    io
}

/// A block of `tag` bytes carrying its LBA.
fn block(tag: u8, lba: u64) -> Vec<u8> {
    zctarget_tests::tagged_block(tag, lba, BS)
}

use zctarget_tests::nvme_client::succeeded as ok;

/// Waits (bounded) until the follower knows a live peer holds the lock
/// (its monitor's first look), so that writes are forwarded rather than
/// answered as a transition.
fn settle(s: &mut Iscsi) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s.test_unit_ready().expect("tur");
        if st == 0 {
            return;
        }
        assert!(Instant::now() < end, "TEST UNIT READY keeps failing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn caw(s: &mut Iscsi, lba: u64, compare: &[u8], new: &[u8]) -> u8 {
    let mut cdb = vec![0x89, 0];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    let cmd = s.command(&cdb, 0, 2 * BS as u32);
    s.run(&cmd, &[compare, new].concat()).expect("caw").0
}

fn sense(s: &Iscsi) -> (u8, u8, u8) {
    (s.last_sense[2] & 0x0F, s.last_sense[12], s.last_sense[13])
}

#[test]
fn a_followers_writes_are_run_by_the_owner() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("peer-fwd");
    let ports = [zctarget_tests::free_port(), zctarget_tests::free_port()];
    let a = gateway(dir.path(), "gw-a", &conf, &image, ports, "s3cret");
    let b = gateway(dir.path(), "gw-b", &conf, &image, ports, "s3cret");
    for d in [&a, &b] {
        assert!(
            d.wait_log("peer link up", Duration::from_secs(10)),
            "never linked:\n{}",
            d.log()
        );
    }
    let mut sb = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login b");
    let mut sa = Iscsi::login(a.iscsi_port, IQN, INITIATOR, BS).expect("login a");
    settle(&mut sa);
    settle(&mut sb);
    // Wait for the follower's monitor to see the owner's lock (its first
    // look, 200 ms): until then a write is a transition.
    let end = Instant::now() + Duration::from_secs(10);
    while sb.write(3, &block(0xB0, 3), false).expect("write") != 0 {
        assert!(
            Instant::now() < end,
            "follower write never forwarded: {:02x?}\n{}",
            sb.last_sense,
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // iSCSI WRITE through the follower, read back through the owner.
    assert_eq!(sb.write(4, &block(0xB1, 4), true).expect("write"), 0);
    assert_eq!(sa.read(4, 1).expect("read"), (0, block(0xB1, 4)));
    // NVMe WRITE through the follower, read back through the owner.
    let mut bi = io_queue(&b);
    let mut ai = io_queue(&a);
    ok(
        bi.write(1, 5, &block(0xB2, 5), BS, false),
        "follower nvme write",
    );
    let r = ok(ai.read(1, 5, 1, BS), "owner read");
    assert_eq!(r.data, block(0xB2, 5));
    // NVMe Write Zeroes and Dataset Management (deallocate) through the
    // follower: zeroes on the owner.
    ok(ai.write(1, 8, &block(0xA8, 8), BS, false), "owner write");
    ok(ai.write(1, 9, &block(0xA9, 9), BS, false), "owner write");
    ok(bi.write_zeroes(1, 8, 1, false), "follower write zeroes");
    ok(bi.deallocate(1, &[(9, 1)]), "follower deallocate");
    for lba in [8, 9] {
        let r = ok(ai.read(1, lba, 1, BS), "owner read");
        assert!(r.data.iter().all(|&b| b == 0), "lba {lba} not zeroed");
    }
    // COMPARE AND WRITE through the follower: run by the owner.
    assert_eq!(
        caw(&mut sb, 4, &block(0xB1, 4), &block(0xC1, 4)),
        0,
        "{:02x?}",
        sb.last_sense
    );
    assert_eq!(sa.read(4, 1).expect("read"), (0, block(0xC1, 4)));
    // A miscompare is the owner's answer (MISCOMPARE, 0E/1D/00), nothing
    // written.
    assert_eq!(caw(&mut sb, 4, &block(0xB1, 4), &block(0xC2, 4)), 2);
    assert_eq!(sense(&sb), (0x0E, 0x1D, 0x00), "{:02x?}", sb.last_sense);
    assert_eq!(sa.read(4, 1).expect("read"), (0, block(0xC1, 4)));

    // A LOGICAL UNIT RESET on the owner: the follower's nexus gets the
    // BUS DEVICE RESET unit attention (06/29/03) on its next command.
    let itt = sa.next_itt();
    let reset = TaskMgmtRequest {
        immediate: true,
        function: TaskMgmtFunction::LogicalUnitReset,
        lun: [0; 8],
        itt,
        referenced_task_tag: 0xffff_ffff,
        cmd_sn: sa.cmd_sn,
        exp_stat_sn: sa.exp_stat_sn,
        ..Default::default()
    };
    sa.send_pdu(&reset.encode(), &[]).expect("send LU reset");
    let rsp = sa.next().expect("TMF response");
    assert_eq!(rsp.bhs[2], 0, "function complete");
    assert_eq!(
        sb.test_unit_ready().expect("tur"),
        2,
        "UA on the other gateway"
    );
    assert_eq!(sense(&sb), (0x06, 0x29, 0x03), "{:02x?}", sb.last_sense);
    assert_eq!(sb.test_unit_ready().expect("tur"), 0);
    drop((sa, sb));
    for d in [a, b] {
        d.stop();
    }
}

#[test]
fn a_gateway_with_the_wrong_secret_is_refused() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("peer-auth");
    let ports = [zctarget_tests::free_port(), zctarget_tests::free_port()];
    let a = gateway(dir.path(), "gw-a", &conf, &image, ports, "s3cret");
    let b = gateway(dir.path(), "gw-b", &conf, &image, ports, "guess");
    assert!(
        a.wait_log("refused a connection", Duration::from_secs(10)),
        "gw-a did not refuse gw-b:\n{}",
        a.log()
    );
    assert!(!b.log().contains("peer link up"), "{}", b.log());
    assert!(!a.log().contains("peer link up"), "{}", a.log());
    // gw-b's writes are not forwarded: refused as without the link, once
    // the follower saw the owner's lock (04/0B), never written.
    let mut sb = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login b");
    settle(&mut sb);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(sb.write(6, &block(0xD1, 6), false).expect("write"), 2);
        if sense(&sb) == (0x02, 0x04, 0x0B) {
            break;
        }
        assert!(Instant::now() < end, "{:02x?}", sb.last_sense);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut sa = Iscsi::login(a.iscsi_port, IQN, INITIATOR, BS).expect("login a");
    settle(&mut sa);
    assert_eq!(sa.read(6, 1).expect("read"), (0, vec![0; BS]));
    drop((sa, sb));
    for d in [a, b] {
        d.stop();
    }
}

#[test]
fn forwarded_writes_to_a_frozen_owner_never_land_after_the_takeover() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    const N: u64 = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("peer-split");
    let ports = [zctarget_tests::free_port(), zctarget_tests::free_port()];
    let a = gateway(dir.path(), "gw-a", &conf, &image, ports, "s3cret");
    let b = gateway(dir.path(), "gw-b", &conf, &image, ports, "s3cret");
    for d in [&a, &b] {
        assert!(
            d.wait_log("peer link up", Duration::from_secs(10)),
            "{}",
            d.log()
        );
    }
    let mut ai = io_queue(&a);
    let mut bi = io_queue(&b);
    for lba in 0..N {
        ok(
            ai.write(1, lba, &block(0xA0, lba), BS, false),
            "owner write",
        );
    }
    // The follower forwards (once it saw the owner's lock).
    let end = Instant::now() + Duration::from_secs(10);
    while !bi
        .write(1, N, &block(0xB0, N), BS, false)
        .expect("io")
        .status()
        .is_success()
    {
        assert!(Instant::now() < end, "never forwarded:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Freeze the owner, then write through the follower: forwarded, they
    // wait in the frozen owner's socket.
    a.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    for lba in 0..N {
        bi.send_write(lba as u16 + 1, lba, &block(0xDD, lba), BS)
            .expect("send write");
    }
    // The follower sees the owner's watch expire, blocklists it, takes the
    // lock over.
    assert!(
        b.wait_log("took the exclusive lock over", Duration::from_secs(40)),
        "no takeover:\n{}",
        b.log()
    );
    // The forwarded writes get no answer: a transition (the host would
    // retry them on the new owner), once the link heard nothing for 5 s —
    // before their 10 s deadline.
    for _ in 0..N {
        let c = bi
            .next_completion(Duration::from_secs(20))
            .expect("completion");
        assert_eq!(
            (c.status.sct.code(), c.status.sc),
            (3, 0x03),
            "ANA transition: {:?}",
            c.status
        );
    }
    let answered = frozen.elapsed();
    assert!(
        answered < Duration::from_millis(9000),
        "the frozen owner's link was not dropped before the deadline: {answered:?}"
    );
    assert!(b.log().contains("nothing heard for"), "{}", b.log());
    // The survivor writes new data itself.
    for lba in 0..N {
        ok(
            bi.write(1, lba, &block(0x5E, lba), BS, false),
            "survivor write",
        );
    }
    // The frozen owner resumes and runs the forwarded writes it had queued:
    // blocklisted, none lands.
    a.signal(libc::SIGCONT);
    assert!(
        a.wait_log("this gateway is fenced", Duration::from_secs(20)),
        "gw-a not fenced:\n{}",
        a.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    for lba in 0..N {
        let r = ok(bi.read(1, lba, 1, BS), "survivor read");
        assert!(
            r.data == block(0x5E, lba),
            "a write forwarded to the frozen owner landed after the survivor's (lba {lba}: \
             first bytes {:02x?})",
            &r.data[..16]
        );
    }
    drop((ai, bi));
    for d in [a, b] {
        d.stop();
    }
}

#[test]
fn handover_moves_ownership_in_one_call_and_forwarding_follows() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("peer-handover");
    let ports = [zctarget_tests::free_port(), zctarget_tests::free_port()];
    let a = gateway(dir.path(), "gw-a", &conf, &image, ports, "s3cret");
    let b = gateway(dir.path(), "gw-b", &conf, &image, ports, "s3cret");
    for d in [&a, &b] {
        assert!(
            d.wait_log("peer link up", Duration::from_secs(10)),
            "{}",
            d.log()
        );
    }
    let mut ai = io_queue(&a);
    ok(ai.write(1, 1, &block(0xA1, 1), BS, false), "owner write");
    // On the owner itself: refused (it is not a follower).
    let out = a.ctl(&["volume", "handover", "shared"]);
    assert!(!out.status.success(), "handover on the owner succeeded");
    // On gw-b: gw-a releases over the link, gw-b acquires.
    let out = b.ctl(&["volume", "handover", "shared"]);
    assert!(
        out.status.success(),
        "handover failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert!(
        a.log().contains("ownership released on request"),
        "{}",
        a.log()
    );
    assert!(
        b.log().contains("ownership acquired on request"),
        "{}",
        b.log()
    );
    // gw-b writes itself; gw-a, now a follower, forwards to gw-b once its
    // monitor saw gw-b hold the lock.
    let mut bi = io_queue(&b);
    ok(
        bi.write(1, 2, &block(0xB2, 2), BS, false),
        "new owner write",
    );
    let end = Instant::now() + Duration::from_secs(10);
    while !ai
        .write(1, 3, &block(0xA3, 3), BS, false)
        .expect("io")
        .status()
        .is_success()
    {
        assert!(Instant::now() < end, "gw-a never forwarded:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for (lba, tag) in [(1, 0xA1), (2, 0xB2), (3, 0xA3)] {
        let r = ok(bi.read(1, lba, 1, BS), "read");
        assert!(r.data == block(tag, lba), "lba {lba}");
    }
    drop((ai, bi));
    for d in [a, b] {
        d.stop();
    }
}

/// A raw peer-link client: this test plays gateway `gw-b`.
struct RawPeer {
    s: std::net::TcpStream,
    d: zctarget_protocol::peer::Decoder,
}

impl RawPeer {
    fn connect(port: u16) -> Self {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawPeer {
            s,
            d: zctarget_protocol::peer::Decoder::new(),
        }
    }

    fn send(&mut self, tag: u32, f: &zctarget_protocol::peer::Frame) {
        use std::io::Write;
        self.s.write_all(&f.encode(tag)).expect("send");
    }

    /// The next frame; `None` when the gateway closed the connection.
    fn recv(&mut self) -> Option<(u32, zctarget_protocol::peer::Frame)> {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        for _ in 0..1000 {
            let n = self.s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            let mut frames = self.d.push_all(&buf[..n]).ok()?;
            if !frames.is_empty() {
                return Some(frames.remove(0));
            }
        }
        None
    }

    /// The dialer's half of the handshake as `gw-b` with `secret`.
    fn handshake(&mut self, secret: &[u8]) {
        use zctarget_protocol::peer::auth::{self, Side};
        use zctarget_protocol::peer::Frame;
        let mine = [7u8; 32];
        self.send(
            0,
            &Frame::Hello {
                gateway: "gw-b".into(),
                nonce: mine,
            },
        );
        let Some((
            _,
            Frame::Challenge {
                gateway,
                nonce,
                proof,
            },
        )) = self.recv()
        else {
            panic!("no challenge");
        };
        assert!(auth::verify(
            secret,
            Side::Listener,
            "gw-b",
            &gateway,
            &mine,
            &nonce,
            &proof
        ));
        let proof = auth::proof(secret, Side::Dialer, "gw-b", &gateway, &mine, &nonce);
        self.send(0, &Frame::Response { proof });
        assert_eq!(self.recv().map(|f| f.1), Some(Frame::Welcome));
    }
}

#[test]
fn the_owner_runs_forwarded_writes_only_while_it_holds_the_lock_and_only_for_a_peer() {
    use zctarget_protocol::peer::{Frame, Status};
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("peer-gate");
    let ports = [zctarget_tests::free_port(), zctarget_tests::free_port()];
    let a = gateway(dir.path(), "gw-a", &conf, &image, ports, "s3cret");
    let mut ai = io_queue(&a);
    let write = |lba: u64, tag: u8| Frame::Write {
        volume: format!("rbd:rbd//{image}"),
        offset: lba * BS as u64,
        fua: false,
        data: block(tag, lba),
    };
    // Without the handshake: the connection ends, nothing is written.
    let mut raw = RawPeer::connect(ports[0]);
    raw.send(1, &write(1, 0xE1));
    assert_eq!(raw.recv(), None, "an unauthenticated write was answered");
    // With a wrong secret: refused at the handshake.
    let mut raw = RawPeer::connect(ports[0]);
    raw.send(
        0,
        &Frame::Hello {
            gateway: "gw-b".into(),
            nonce: [1; 32],
        },
    );
    let Some((_, Frame::Challenge { .. })) = raw.recv() else {
        panic!("no challenge");
    };
    raw.send(0, &Frame::Response { proof: [0; 32] });
    assert_eq!(raw.recv(), None, "a wrong proof was accepted");
    // Authenticated, while gw-a owns the volume: written.
    let mut raw = RawPeer::connect(ports[0]);
    raw.handshake(b"s3cret");
    raw.send(5, &write(2, 0xE2));
    assert_eq!(raw.recv(), Some((5, Frame::Reply(Status::Ok))));
    assert!(ok(ai.read(1, 2, 1, BS), "read").data == block(0xE2, 2));
    // Released: gw-a no longer writes, a forwarded write included.
    let out = a.ctl(&["volume", "release", "shared"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    raw.send(6, &write(3, 0xE3));
    let Some((6, Frame::Reply(Status::NotOwner { fenced: false, .. }))) = raw.recv() else {
        panic!("a forwarded write to a released gateway was not refused");
    };
    assert!(
        ok(ai.read(1, 1, 3, BS), "read").data
            == [vec![0; BS], block(0xE2, 2), vec![0; BS]].concat(),
        "only the authenticated write while owning landed"
    );
    drop(ai);
    a.stop();
}
