//! The peer link's heartbeat as a takeover condition (issue #13): two
//! gateways on ONE RBD image in the throwaway Ceph cluster (skipped
//! without `ZCTARGET_TEST_CEPH_CONF`). The follower reaches the owner's
//! peer port through a relay the test controls; the relay then goes
//! silent — the owner's process, RADOS session and watch all stay alive,
//! as with a gateway that hangs or is cut off from its peers. The follower
//! drops the silent link, and once every peer has been unreachable for
//! `takeover_after_ms` it blocklists the owner and takes the lock over;
//! the owner, blocklisted, is fenced and never writes again — until, after
//! `rejoin_after_ms`, it reopens the image with a fresh client by itself,
//! as a follower forwarding to the new owner.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zctarget_tests::ceph;
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:heartbeat";
const INITIATOR: &str = "iqn.2026-12.io.zctarget.test:hb-host";
const BS: usize = 4096;

/// Gateway `me` of `gw-a`, `gw-b`: listens for peers on `listen` (port 0:
/// any), dials `other` for the other gateway.
fn gateway(dir: &Path, me: &str, conf: &str, image: &str, listen: u16, other: u16) -> Daemon {
    let secret = dir.join(format!("{me}.secret"));
    std::fs::write(&secret, "hb-secret\n").expect("secret");
    let (a, b) = if me == "gw-a" {
        (listen, other)
    } else {
        (other, listen)
    };
    Daemon::start_with(
        dir,
        me,
        &format!(
            "[server]\nadmin_socket = \"{me}.sock\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             iscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\nreactors = 1\n\
             buffer_pool = \"16MiB\"\n\n\
             [cluster]\ngateway = \"{me}\"\ngateways = [\"gw-a\", \"gw-b\"]\n\
             takeover_after_ms = 500\nrejoin_after_ms = 1000\n\
             peers = {{ gw-a = \"127.0.0.1:{a}\", gw-b = \"127.0.0.1:{b}\" }}\n\
             peer_secret_file = \"{}\"\n\n\
             [[volumes]]\nname = \"shared\"\nbackend = \"rbd\"\npool = \"rbd\"\n\
             image = \"{image}\"\nsize = \"64MiB\"\nblock_size = 4096\nceph_conf = \"{conf}\"\n\
             owner = \"gw-a\"\n\n\
             [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"shared\"]\n",
            secret.display()
        ),
    )
}

/// A TCP relay to `target` that stops carrying bytes (connections stay
/// open, new ones are accepted and left unanswered) once `silent` is set.
fn relay(target: u16, silent: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("relay listener");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().take(64) {
            let Ok(c) = c else { continue };
            if silent.load(Ordering::Acquire) {
                held.push(c);
                continue;
            }
            let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    c.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                ),
                (up, c),
            ] {
                let silent = Arc::clone(&silent);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    from.set_read_timeout(Some(Duration::from_millis(100))).ok();
                    // Bounded: at most ~2 minutes of relaying.
                    for _ in 0..1200 {
                        if silent.load(Ordering::Acquire) {
                            // Hold the connection open, carry nothing.
                            std::thread::sleep(Duration::from_secs(60));
                            return;
                        }
                        match from.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => {
                                if to.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        }
    });
    port
}

/// The port `d` logged its peer listener on.
fn peer_port(d: &Daemon) -> u16 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let log = d.log();
        if let Some(p) = log
            .lines()
            .filter(|l| l.contains("listening") && l.contains("protocol=peer"))
            .find_map(|l| {
                l.rsplit_once("portal=127.0.0.1:")
                    .map(|(_, r)| r.to_owned())
            })
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
        {
            return p;
        }
        assert!(Instant::now() < end, "no peer listener logged:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_silent_owner_is_taken_over_while_its_watch_lives() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("heartbeat");
    // gw-a first (port 0 for its peer listener; its dialer to gw-b retries
    // until gw-b is up), then the relay to it, then gw-b dialing the relay.
    let b_port = zctarget_tests::free_port();
    let a = gateway(dir.path(), "gw-a", &conf, &image, 0, b_port);
    let silent = Arc::new(AtomicBool::new(false));
    let relayed = relay(peer_port(&a), Arc::clone(&silent));
    let b = gateway(dir.path(), "gw-b", &conf, &image, b_port, relayed);
    assert!(a.wait_role("shared", "owner", Duration::from_secs(20)));
    assert!(
        b.wait_log("peer link up", Duration::from_secs(10)),
        "{}",
        b.log()
    );
    // The owner writes; the follower keeps following while it hears it.
    let mut sa = Iscsi::login(a.iscsi_port, IQN, INITIATOR, BS).expect("login a");
    let _ = sa.test_unit_ready();
    assert_eq!(sa.write(1, &vec![0xA1; BS], false).expect("write"), 0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(b.wait_role("shared", "follower", Duration::from_secs(1)));

    // Silence on the link only: gw-a's process and watch live on.
    silent.store(true, Ordering::Release);
    let cut = Instant::now();
    assert!(
        b.wait_role("shared", "owner", Duration::from_secs(25)),
        "gw-b did not take over a silent owner:\n{}",
        b.log()
    );
    println!(
        "gw-b took over {:?} after the link went silent",
        cut.elapsed()
    );
    assert!(b.log().contains("heartbeat_lost=true"), "{}", b.log());
    // gw-a was blocklisted: its next write fails, it is fenced and never
    // writes again (the block keeps gw-b's data).
    let mut sb = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login b");
    let _ = sb.test_unit_ready();
    let mut st = sb.write(1, &vec![0xB1; BS], false).expect("write b");
    if st != 0 {
        // The takeover's unit attention first.
        st = sb.write(1, &vec![0xB1; BS], false).expect("write b");
    }
    assert_eq!(st, 0, "the new owner writes");
    let _ = sa.write(1, &vec![0xA2; BS], false);
    let _ = sa.write(1, &vec![0xA2; BS], false);
    assert!(
        a.wait_role("shared", "fenced", Duration::from_secs(20)),
        "gw-a fenced:\n{}",
        a.log()
    );
    let read = sb.read_cdb(1, 1);
    let cmd = sb.command(&read, BS as u32, 0);
    let (status, data) = sb.run(&cmd, &[]).expect("read");
    assert_eq!(status, 0);
    assert_eq!(
        data,
        vec![0xB1; BS],
        "the fenced owner's write never landed"
    );

    // After rejoin_after_ms the fenced gateway reopens the image with a
    // fresh client by itself, as a follower, and forwards its hosts'
    // writes to the new owner again (once its link is heard again).
    assert!(
        a.wait_role("shared", "follower", Duration::from_secs(20)),
        "gw-a did not rejoin by itself:\n{}",
        a.log()
    );
    silent.store(false, Ordering::Release);
    let mut landed = false;
    for _ in 0..150 {
        if sa.write(2, &vec![0xA3; BS], false).expect("write a") == 0 {
            landed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        landed,
        "gw-a's write was not forwarded after the rejoin:\n{}",
        a.log()
    );
    let read = sb.read_cdb(2, 1);
    let cmd = sb.command(&read, BS as u32, 0);
    let (status, data) = sb.run(&cmd, &[]).expect("read");
    assert_eq!((status, data), (0, vec![0xA3; BS]), "forwarded to gw-b");
    drop((sa, sb));
    a.stop();
    b.stop();
}
