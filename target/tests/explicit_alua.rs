//! Explicit ALUA on two gateways sharing one RBD image (issue #13), in the
//! throwaway Ceph cluster (skipped without `ZCTARGET_TEST_CEPH_CONF`):
//! INQUIRY reports TPGS = 11b, and SET TARGET PORT GROUPS moves the
//! image's ownership where a host asks — the owner releases the lock for
//! the named gateway, a follower takes a free lock at once — but never
//! breaks a live owner's lock on a host's word (SET TARGET PORT GROUPS
//! COMMAND FAILED, 04/67/0A). A release names the gateway it is for in
//! the image's metadata, which takes the lock by itself (also `ctl volume
//! release --to`). Every move raises ASYMMETRIC ACCESS STATE CHANGED, and
//! writes follow the owner.

use std::path::Path;
use std::time::{Duration, Instant};

use zctarget_tests::ceph;
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::Daemon;

const IQN: &str = "iqn.2026-12.io.zctarget.test:stpg";
const INITIATOR: &str = "iqn.2026-12.io.zctarget.test:stpg-host";
const BS: usize = 4096;

/// Gateway `me` of `gw-a`, `gw-b` exporting rbd image `image` (configured
/// owner gw-a) over iSCSI, with metrics.
fn gateway(dir: &Path, me: &str, conf: &str, image: &str) -> Daemon {
    gateway_with(dir, me, conf, image, "")
}

/// [`gateway`] with `cluster` added to its `[cluster]` table.
fn gateway_with(dir: &Path, me: &str, conf: &str, image: &str, cluster: &str) -> Daemon {
    Daemon::start_with(
        dir,
        me,
        &format!(
            "[server]\nadmin_socket = \"{me}.sock\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             iscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\nreactors = 1\n\
             buffer_pool = \"16MiB\"\n\n\
             [cluster]\ngateway = \"{me}\"\ngateways = [\"gw-a\", \"gw-b\"]\n\
             takeover_after_ms = 60000\n{cluster}\n\
             [[volumes]]\nname = \"shared\"\nbackend = \"rbd\"\npool = \"rbd\"\n\
             image = \"{image}\"\nsize = \"64MiB\"\nblock_size = 4096\nceph_conf = \"{conf}\"\n\
             owner = \"gw-a\"\n\n\
             [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"shared\"]\n"
        ),
    )
}

/// SET TARGET PORT GROUPS asking `group` Active/optimized: (status, sense
/// key, ASC, ASCQ).
fn stpg(s: &mut Iscsi, group: u16) -> (u8, u8, u8, u8) {
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA4;
    cdb[1] = 0x0A;
    cdb[6..10].copy_from_slice(&8u32.to_be_bytes());
    let mut list = vec![0u8; 8];
    list[6..8].copy_from_slice(&group.to_be_bytes());
    let cmd = s.command(&cdb, 0, 8);
    let (status, _) = s.run(&cmd, &list).expect("stpg");
    sense_of(s, status)
}

fn sense_of(s: &Iscsi, status: u8) -> (u8, u8, u8, u8) {
    if status == 0x02 {
        let d = &s.last_sense;
        (status, d[2] & 0x0F, d[12], d[13])
    } else {
        (status, 0, 0, 0)
    }
}

/// Runs `cdb` (data-in of up to `len`) until it is not a unit attention;
/// returns the data and whether an ASYMMETRIC ACCESS STATE CHANGED
/// attention came first.
fn run_in(s: &mut Iscsi, cdb: &[u8], len: u32) -> (Vec<u8>, bool) {
    let mut changed = false;
    for _ in 0..5 {
        let cmd = s.command(cdb, len, 0);
        let (status, data) = s.run(&cmd, &[]).expect("command");
        match sense_of(s, status) {
            (0, ..) => return (data, changed),
            (2, 0x6, 0x2A, 0x06) => changed = true,
            (2, 0x6, ..) => {}
            other => panic!("{cdb:02x?}: {other:02x?}"),
        }
    }
    panic!("{cdb:02x?}: unit attentions without end");
}

/// Group → state code, from REPORT TARGET PORT GROUPS; and whether a
/// state-changed attention came first.
fn groups(s: &mut Iscsi) -> (Vec<(u16, u8)>, bool) {
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA3;
    cdb[1] = 0x0A;
    cdb[6..10].copy_from_slice(&256u32.to_be_bytes());
    let (d, changed) = run_in(s, &cdb, 256);
    let mut out = Vec::new();
    let mut at = 4;
    while at + 8 <= d.len() {
        out.push((u16::from_be_bytes([d[at + 2], d[at + 3]]), d[at] & 0x0F));
        at += 8 + 4 * usize::from(d[at + 7]);
    }
    (out, changed)
}

/// This gateway's own group's state (`me`: its number).
fn own_state(s: &mut Iscsi, me: u16) -> u8 {
    let (g, _) = groups(s);
    g.iter().find(|(id, _)| *id == me).expect("own group").1
}

/// This nexus's own group state once it reads `want`, or the last one
/// read after 5 s: a gateway publishes its ALUA states just after its lock
/// role changes (the role metric `wait_role` watches comes first).
fn settled_state(s: &mut Iscsi, me: u16, want: u8) -> u8 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = own_state(s, me);
        if st == want || Instant::now() >= deadline {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_ok(s: &mut Iscsi, lba: u64, tag: u8) -> bool {
    for _ in 0..5 {
        let status = s.write(lba, &vec![tag; BS], false).expect("write");
        match sense_of(s, status) {
            (0, ..) => return true,
            (2, 0x6, ..) => continue,
            _ => return false,
        }
    }
    false
}

#[test]
fn set_target_port_groups_moves_ownership_but_never_breaks_a_live_lock() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("stpg");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    assert!(
        a.wait_role("shared", "owner", Duration::from_secs(20)),
        "gw-a owns"
    );
    let mut sa = Iscsi::login(a.iscsi_port, IQN, INITIATOR, BS).expect("login a");
    let mut sb = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login b");
    // Explicit and implicit ALUA.
    for s in [&mut sa, &mut sb] {
        let (inq, _) = run_in(s, &[0x12, 0, 0, 0, 96, 0], 96);
        assert_eq!(inq[5] & 0x30, 0x30, "TPGS = 11b");
    }
    assert_eq!(settled_state(&mut sa, 1, 0x0), 0x0, "gw-a Active/optimized");
    assert_eq!(
        settled_state(&mut sb, 2, 0x1),
        0x1,
        "gw-b Active/non-optimized"
    );

    // A host asking gw-b to own the unit through gw-b, while gw-a is alive
    // and holds the lock: refused, nothing moves.
    assert_eq!(stpg(&mut sb, 2), (2, 0x4, 0x67, 0x0A));
    assert!(a.wait_role("shared", "owner", Duration::from_secs(1)));
    assert!(b.wait_role("shared", "follower", Duration::from_secs(1)));
    // Asking gw-a for the group it already is: GOOD, nothing moves.
    assert_eq!(stpg(&mut sa, 1), (0, 0, 0, 0));
    assert!(a.wait_role("shared", "owner", Duration::from_secs(1)));

    // Through the owner: it releases the lock for gw-b; gw-b, asked right
    // after, takes the free lock at once (no grace to wait).
    assert_eq!(stpg(&mut sa, 2), (0, 0, 0, 0));
    assert!(a.wait_role("shared", "follower", Duration::from_secs(1)));
    let asked = Instant::now();
    assert_eq!(stpg(&mut sb, 2), (0, 0, 0, 0));
    assert!(
        b.wait_role("shared", "owner", Duration::from_secs(1)),
        "gw-b owns"
    );
    println!("gw-b took the released lock in {:?}", asked.elapsed());
    // Every nexus hears of it; the states are swapped.
    let (g, changed) = groups(&mut sa);
    assert!(changed, "ASYMMETRIC ACCESS STATE CHANGED on gw-a's nexus");
    assert_eq!(g.iter().find(|(id, _)| *id == 1).map(|x| x.1), Some(0x1));
    assert_eq!(settled_state(&mut sb, 2, 0x0), 0x0, "gw-b Active/optimized");
    assert!(write_ok(&mut sb, 3, 0xB3), "the new owner writes");

    // Back through gw-b alone: it releases the lock naming gw-a, which —
    // not asked — takes it at its next look; a free lock without a name
    // waits 4 × takeover_after_ms (4 minutes here) before anyone takes it.
    let asked = Instant::now();
    assert_eq!(stpg(&mut sb, 1), (0, 0, 0, 0));
    assert!(
        a.wait_role("shared", "owner", Duration::from_secs(20)),
        "gw-a took the lock gw-b released for it\n--- gw-a:\n{}\n--- gw-b:\n{}",
        a.log(),
        b.log()
    );
    println!(
        "gw-a took the lock released for it in {:?}",
        asked.elapsed()
    );
    assert!(b.wait_role("shared", "follower", Duration::from_secs(1)));
    assert_eq!(
        settled_state(&mut sa, 1, 0x0),
        0x0,
        "gw-a Active/optimized again"
    );
    assert!(write_ok(&mut sa, 4, 0xA4), "gw-a writes again");
    let read = sa.read_cdb(3, 1);
    let (data, _) = run_in(&mut sa, &read, BS as u32);
    assert_eq!(data, vec![0xB3; BS], "gw-b's write is on the image");

    // The operator's one-call failback does the same: `ctl volume release
    // --to gw-b` on the owner; gw-b takes the lock by itself.
    let out = a.ctl(&["volume", "release", "shared", "--to", "gw-b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        b.wait_role("shared", "owner", Duration::from_secs(20)),
        "gw-b owns again"
    );
    assert!(a.wait_role("shared", "follower", Duration::from_secs(1)));
    // A gateway that is not in the cluster is refused.
    let out = b.ctl(&["volume", "release", "shared", "--to", "gw-z"]);
    assert!(!out.status.success());
    assert!(b.wait_role("shared", "owner", Duration::from_secs(1)));

    drop((sa, sb));
    a.stop();
    b.stop();
}

/// With the peer link, a host asking the follower for its own group gets
/// it: the follower asks the live owner over the link to release, then
/// takes the lock (a handover) — still never breaking it.
#[test]
fn with_the_peer_link_a_follower_asked_gets_the_lock_from_the_live_owner() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("stpg-link");
    let ports = [zctarget_tests::free_port(), zctarget_tests::free_port()];
    let secret = dir.path().join("peer.secret");
    std::fs::write(&secret, "stpg-secret\n").expect("secret");
    let cluster = format!(
        "peers = {{ gw-a = \"127.0.0.1:{}\", gw-b = \"127.0.0.1:{}\" }}\n\
         peer_secret_file = \"{}\"\n",
        ports[0],
        ports[1],
        secret.display()
    );
    let a = gateway_with(dir.path(), "gw-a", &conf, &image, &cluster);
    let b = gateway_with(dir.path(), "gw-b", &conf, &image, &cluster);
    assert!(
        a.wait_role("shared", "owner", Duration::from_secs(20)),
        "gw-a owns"
    );
    let end = Instant::now() + Duration::from_secs(10);
    while !b.log().contains("peer link up") {
        assert!(Instant::now() < end, "no peer link:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut sb = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login b");
    let _ = own_state(&mut sb, 2);
    assert_eq!(stpg(&mut sb, 2), (0, 0, 0, 0), "\n{}", b.log());
    assert!(
        b.wait_role("shared", "owner", Duration::from_secs(1)),
        "gw-b owns"
    );
    assert!(
        a.wait_role("shared", "follower", Duration::from_secs(5)),
        "gw-a follows"
    );
    assert!(b.log().contains("handed the lock over"), "{}", b.log());
    assert_eq!(settled_state(&mut sb, 2, 0x0), 0x0, "gw-b Active/optimized");
    assert!(write_ok(&mut sb, 5, 0xB5), "the new owner writes");
    drop(sb);
    a.stop();
    b.stop();
}
