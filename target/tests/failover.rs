//! Two gateways on ONE RBD image (issue #13, second slice), in the
//! throwaway Ceph cluster (skipped without `ZCTARGET_TEST_CEPH_CONF`):
//! - the owner holds the exclusive lock and writes; the other gateway
//!   follows: it reads, and refuses writes with the path's answer (NVMe
//!   Asymmetric Access Transition, SCSI NOT READY 04/0B — 04/0A while the
//!   lock is free or changing hands);
//! - split brain: the owner is frozen (SIGSTOP) with writes queued; the
//!   survivor sees its watch expire, blocklists it, takes the lock, turns
//!   Optimized (ANA Change event, ALUA unit attention) and writes; after
//!   SIGCONT none of the frozen owner's writes lands and it reports
//!   Inaccessible; the failover timeline is printed;
//! - failback: `ctl volume release` on the owner, `ctl volume acquire` on
//!   the other gateway.

use std::path::Path;
use std::time::{Duration, Instant};

use zctarget_protocol::nvme::ana::{parse_log_page, AnaState};
use zctarget_protocol::nvme::Sqe;
use zctarget_tests::ceph;
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions, Reply};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-12.io.zctarget.test:failover";
const IQN: &str = "iqn.2026-12.io.zctarget.test:failover";
const HOST: &str = "nqn.2026-12.io.zctarget.test:host";
const INITIATOR: &str = "iqn.2026-12.io.zctarget.test:initiator";
const BS: usize = 4096;
/// Blocks the split-brain test writes.
const BLOCKS: u64 = 32;

/// Gateway `me` of `gw-a`, `gw-b` exporting rbd image `image` (owned by
/// gw-a) over NVMe/TCP and iSCSI, with an admin socket and metrics.
fn gateway(dir: &Path, me: &str, conf: &str, image: &str) -> Daemon {
    gateway_as(dir, me, me, conf, image)
}

/// [`gateway`] with its files (config, log, admin socket) named `tag`.
fn gateway_as(dir: &Path, tag: &str, me: &str, conf: &str, image: &str) -> Daemon {
    Daemon::start_with(
        dir,
        tag,
        &format!(
            "[server]\nadmin_socket = \"{tag}.sock\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             iscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = [\"127.0.0.1:0\"]\nreactors = 1\n\
             buffer_pool = \"16MiB\"\n\n\
             [cluster]\ngateway = \"{me}\"\ngateways = [\"gw-a\", \"gw-b\"]\n\
             non_owner_state = \"non_optimized\"\ntakeover_after_ms = 500\n\
             rejoin_after_ms = 0\n\n\
             [[volumes]]\nname = \"shared\"\nbackend = \"rbd\"\npool = \"rbd\"\n\
             image = \"{image}\"\nsize = \"64MiB\"\nblock_size = 4096\nceph_conf = \"{conf}\"\n\
             owner = \"gw-a\"\n\n\
             [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"shared\"]\n\n\
             [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"shared\"]\n"
        ),
    )
}

fn queues(d: &Daemon) -> (NvmeQueue, NvmeQueue) {
    let admin =
        NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST)).expect("admin queue");
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = 1;
    o.cntlid = admin.cntlid;
    o.sqsize = 127;
    let (io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("io connect");
    assert!(r.status().is_success(), "{:?}", r.status());
    (admin, io)
}

/// State of ANA group 1 (the volume's: gw-a is its configured owner).
fn group1(admin: &mut NvmeQueue) -> Result<AnaState, u8> {
    let log = admin.get_log_page(0x0C, 4096).expect("ana log").data;
    let (_, groups) = parse_log_page(&log);
    groups.iter().find(|g| g.grpid == 1).expect("group 1").state
}

/// A block of `tag` bytes carrying its LBA.
fn block(tag: u8, lba: u64) -> Vec<u8> {
    zctarget_tests::tagged_block(tag, lba, BS)
}

use zctarget_tests::nvme_client::succeeded as ok;

/// (SCT, SC) of a completion.
fn path_status(r: &Reply) -> (u8, u8) {
    let s = r.status();
    (s.sct.code(), s.sc)
}

#[test]
fn follower_reads_and_refuses_writes_with_its_path_state() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("fo-follow");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    let (mut aa, mut ai) = queues(&a);
    let (mut ba, mut bi) = queues(&b);
    assert_eq!(group1(&mut aa), Ok(AnaState::Optimized));
    assert_eq!(group1(&mut ba), Ok(AnaState::NonOptimized));
    // The owner writes; the follower reads it back (no lock needed).
    ok(ai.write(1, 5, &block(0xA1, 5), BS, false), "owner write");
    let r = ok(bi.read(1, 5, 1, BS), "follower read");
    assert_eq!(r.data, block(0xA1, 5));
    // The follower refuses writes: Asymmetric Access Transition (SCT 3h,
    // SC 03h), retryable on the owner's path.
    let r = bi.write(1, 6, &block(0xB1, 6), BS, false).expect("io");
    assert_eq!(path_status(&r), (3, 0x03), "{:?}", r.status());
    assert!(!r.status().dnr);
    // ... and over iSCSI: a live owner holds the lock, so the write goes to
    // its path at once: NOT READY, TARGET PORT IN STANDBY STATE (04/0B;
    // 04/0A, transition, would have Linux retry it here).
    let mut s = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login");
    assert_eq!(s.write(6, &block(0xB2, 6), false).expect("write"), 0x02);
    assert_eq!(
        (s.last_sense[2] & 0x0F, s.last_sense[12], s.last_sense[13]),
        (0x02, 0x04, 0x0B),
        "{:02x?}",
        s.last_sense
    );
    // COMPARE AND WRITE likewise (its own write path).
    let mut caw = vec![0x89, 0];
    caw.extend_from_slice(&7u64.to_be_bytes());
    caw.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    let cmd = s.command(&caw, 0, 2 * BS as u32);
    let data = [vec![0; BS], block(0xB3, 7)].concat();
    assert_eq!(s.run(&cmd, &data).expect("caw").0, 0x02);
    assert_eq!(
        (s.last_sense[2] & 0x0F, s.last_sense[12], s.last_sense[13]),
        (0x02, 0x04, 0x0B),
        "{:02x?}",
        s.last_sense
    );
    // Nothing of the follower's landed; and a live owner keeps its lock
    // (its watch is there) past takeover_after_ms.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ok(ai.read(1, 6, 1, BS), "read").data, vec![0; BS]);
    assert_eq!(ok(ai.read(1, 7, 1, BS), "read").data, vec![0; BS]);
    assert_eq!(
        b.metric("zctarget_volume_lock_role{volume=\"shared\",role=\"follower\"}"),
        Some(1.0)
    );
    assert_eq!(
        a.metric("zctarget_volume_lock_role{volume=\"shared\",role=\"owner\"}"),
        Some(1.0)
    );
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The `key=value` of the survivor's takeover log line.
fn field(log: &str, key: &str) -> String {
    log.lines()
        .find(|l| l.contains("took the exclusive lock over"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

#[test]
fn split_brain_frozen_owner_is_fenced_and_never_writes_after_the_survivor() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("fo-split");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    let (aa, mut ai) = queues(&a);
    let (mut ba, mut bi) = queues(&b);
    // The host arms ANA Change notices on gw-b and parks an AER there.
    let mut aec = Sqe::new(0x09, 0x300);
    aec.cdw10 = 0x0B;
    aec.cdw11 = 1 << 11;
    ok(ba.command(aec, &[], 0), "set AEC");
    assert_eq!(group1(&mut ba), Ok(AnaState::NonOptimized));
    ba.send_capsule(&Sqe::new(0x0C, 0x301), &[]).expect("AER");
    let mut s = Iscsi::login(b.iscsi_port, IQN, INITIATOR, BS).expect("login");
    // Old data everywhere, through the owner.
    for lba in 0..BLOCKS {
        ok(ai.write(1, lba, &block(0x01, lba), BS, false), "old write");
    }
    // Writes in flight, then frozen, then more queued in its socket.
    let mut cid = 0x100;
    for lba in 0..BLOCKS / 2 {
        ai.send_write(cid, lba, &block(0xDD, lba), BS)
            .expect("send write");
        cid += 1;
    }
    a.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    for lba in BLOCKS / 2..BLOCKS {
        ai.send_write(cid, lba, &block(0xDD, lba), BS)
            .expect("send write");
        cid += 1;
    }
    // gw-b sees the owner's watch expire, blocklists it, takes the lock
    // and raises ANA Change on the parked AER.
    let aen = ba
        .next_completion(Duration::from_secs(40))
        .expect("ANA change AER");
    let aen_at = frozen.elapsed();
    assert_eq!((aen.cid, aen.dw0), (0x301, 0x000C_0302), "{aen:?}");
    assert_eq!(group1(&mut ba), Ok(AnaState::Optimized));
    // The survivor writes the new pattern.
    let mut first_io = None;
    for lba in 0..BLOCKS {
        ok(
            bi.write(1, lba, &block(0x0E, lba), BS, false),
            "survivor write",
        );
        first_io.get_or_insert_with(|| frozen.elapsed());
    }
    // iSCSI on gw-b: the ALUA change is reported, then writes run.
    let (st, _, sense) = s.run_on_lun(0, &[0; 6], 0).expect("tur");
    assert_eq!(
        (
            st,
            sense.get(2).map(|k| k & 0x0F),
            sense.get(12),
            sense.get(13)
        ),
        (0x02, Some(0x06), Some(&0x2A), Some(&0x06)),
        "{sense:02x?}"
    );
    assert_eq!(s.write(BLOCKS, &block(0x0F, BLOCKS), false).expect("w"), 0);
    // The frozen owner resumes: its queued and in-flight writes fail.
    a.signal(libc::SIGCONT);
    let resumed = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..BLOCKS {
        match ai.next_completion(Duration::from_secs(15)) {
            Some(c) => statuses.push((c.status.sct.code(), c.status.sc)),
            None => break,
        }
    }
    // Fenced, and the change published (ANA groups, ALUA ports, counters).
    let fenced = a.wait_metric(
        "zctarget_ana_group_state{group=\"1\",state=\"inaccessible\"}",
        1.0,
        Duration::from_secs(20),
    );
    assert_eq!(fenced, Some(1.0), "gw-a not fenced:\n{}", a.log());
    let fenced_at = resumed.elapsed();
    // Give a late write every chance to land, then read back.
    std::thread::sleep(Duration::from_secs(2));
    for lba in 0..BLOCKS {
        let r = ok(bi.read(1, lba, 1, BS), "read back");
        assert_eq!(
            r.data[..16],
            block(0x0E, lba)[..16],
            "LBA {lba}: a write of the frozen owner landed after the survivor's \
             (frozen owner's completions: {statuses:?})"
        );
    }
    // The old owner reports the group Inaccessible.
    let (mut aa2, _) = queues(&a);
    assert_eq!(group1(&mut aa2), Ok(AnaState::Inaccessible));
    assert_eq!(b.metric("zctarget_failovers_total"), Some(1.0));
    assert_eq!(b.metric("zctarget_lock_acquisitions_total"), Some(1.0));
    assert_eq!(a.metric("zctarget_lock_losses_total"), Some(1.0));
    assert_eq!(
        a.metric("zctarget_volume_lock_role{volume=\"shared\",role=\"fenced\"}"),
        Some(1.0)
    );
    assert_eq!(
        b.metric("zctarget_ana_group_state{group=\"1\",state=\"optimized\"}"),
        Some(1.0)
    );
    assert_eq!(
        a.metric("zctarget_ana_group_state{group=\"1\",state=\"inaccessible\"}"),
        Some(1.0)
    );
    assert_eq!(
        a.metric("zctarget_alua_port_state{volume=\"shared\",state=\"Standby\"}"),
        Some(1.0)
    );
    let blog = b.log();
    // The fenced gateway rejoins only with a fresh RADOS client (a
    // restart), and then follows: no automatic failback.
    drop((aa, aa2, ai));
    let mut a = a;
    a.kill9();
    let a = gateway_as(dir.path(), "gw-a2", "gw-a", &conf, &image);
    let (mut aa3, mut ai3) = queues(&a);
    assert_eq!(group1(&mut aa3), Ok(AnaState::NonOptimized));
    let r = ai3.write(1, 0, &block(0xDD, 0), BS, false).expect("io");
    assert_eq!(path_status(&r), (3, 0x03), "{:?}", r.status());
    let back = ok(ai3.read(1, 0, 1, BS), "read").data;
    assert_eq!(back[..16], block(0x0E, 0)[..16]);
    let num = |k: &str| field(&blog, k).parse::<u128>().unwrap_or(0);
    let (gone, bl, lock, ana) = (
        num("owner_gone_ms"),
        num("blocklist_ms"),
        num("lock_ms"),
        num("ana_ms"),
    );
    let aen_ms = ms(aen_at);
    let decided = aen_ms.saturating_sub(bl + lock + ana);
    eprintln!(
        "failover timeline, t=0 at SIGSTOP of the owner (osd_client_watch_timeout 5 s, \
         takeover_after_ms 500, poll 200 ms):\n\
         \x20 owner's watch expired, first seen gone  ~{} ms\n\
         \x20 takeover decided                        {decided} ms (+{gone})\n\
         \x20 blocklist + lock break                  +{} ms\n\
         \x20 lock acquired                           +{} ms\n\
         \x20 ANA/ALUA states published               +{} ms\n\
         \x20 ANA Change AER completed at the host     {aen_ms} ms\n\
         \x20 first write completed on the survivor    {} ms\n\
         \x20 frozen owner after SIGCONT: fenced and published within {} ms; its {} writes completed {:?}",
        decided.saturating_sub(gone),
        bl,
        lock,
        ana,
        first_io.map_or(0, ms),
        ms(fenced_at),
        statuses.len(),
        statuses
    );
}

fn ctl(d: &Daemon, args: &[&str]) -> (bool, String) {
    let out = d.ctl(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn explicit_failback_moves_ownership_cooperatively() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("fo-back");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    let (mut aa, mut ai) = queues(&a);
    let (mut ba, mut bi) = queues(&b);
    ok(ai.write(1, 0, &block(0x0A, 0), BS, false), "owner write");
    // The lock is held: acquiring is refused, nothing breaks it.
    let (done, text) = ctl(&b, &["volume", "acquire", "shared"]);
    assert!(!done && text.contains("still locked"), "{text}");
    // gw-a releases: it refuses writes from then on and reports the
    // non-owner state; gw-b acquires and becomes Optimized.
    let mut s = Iscsi::login(a.iscsi_port, IQN, INITIATOR, BS).expect("login");
    let sense = |s: &Iscsi| (s.last_sense[2] & 0x0F, s.last_sense[12], s.last_sense[13]);
    let (done, text) = ctl(&a, &["volume", "release", "shared"]);
    assert!(done, "{text}");
    let r = ai.write(1, 1, &block(0x0B, 1), BS, false).expect("io");
    assert_eq!(path_status(&r), (3, 0x03), "{:?}", r.status());
    // The lock is free: over iSCSI a transition, retried where it is
    // (after the ASYMMETRIC ACCESS STATE CHANGED unit attention).
    assert_eq!(s.write(1, &block(0x0B, 1), false).expect("write"), 0x02);
    assert_eq!(sense(&s), (0x06, 0x2A, 0x06), "{:02x?}", s.last_sense);
    assert_eq!(s.write(1, &block(0x0B, 1), false).expect("write"), 0x02);
    assert_eq!(sense(&s), (0x02, 0x04, 0x0A), "{:02x?}", s.last_sense);
    let (done, text) = ctl(&b, &["volume", "acquire", "shared"]);
    assert!(done && text.contains("owner"), "{text}");
    // Once gw-a's monitor sees gw-b hold it: Standby, go to gw-b's path
    // (bounded wait for the monitor's next look, 200 ms apart).
    let mut settled = None;
    for _ in 0..50 {
        assert_eq!(s.write(1, &block(0x0B, 1), false).expect("write"), 0x02);
        if sense(&s) == (0x02, 0x04, 0x0B) {
            settled = Some(sense(&s));
            break;
        }
        // (gw-b's acquisition is another state change: one more UA)
        assert!(
            [(0x02, 0x04, 0x0A), (0x06, 0x2A, 0x06)].contains(&sense(&s)),
            "{:02x?}",
            s.last_sense
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        settled,
        Some((0x02, 0x04, 0x0B)),
        "the old owner kept answering transition"
    );
    assert_eq!(group1(&mut aa), Ok(AnaState::NonOptimized));
    assert_eq!(group1(&mut ba), Ok(AnaState::Optimized));
    ok(
        bi.write(1, 1, &block(0x0C, 1), BS, false),
        "new owner write",
    );
    assert_eq!(ok(bi.read(1, 0, 1, BS), "read").data, block(0x0A, 0));
    assert_eq!(ok(ai.read(1, 1, 1, BS), "read").data, block(0x0C, 1));
    // No automatic failback: gw-a, the configured owner, stays a follower.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(group1(&mut aa), Ok(AnaState::NonOptimized));
    assert_eq!(a.metric("zctarget_lock_releases_total"), Some(1.0));
    assert_eq!(b.metric("zctarget_lock_acquisitions_total"), Some(1.0));
    assert_eq!(b.metric("zctarget_failovers_total"), Some(0.0));
}

#[test]
fn an_idle_owner_taken_over_while_frozen_reports_inaccessible() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("fo-idle");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    let (mut ba, _bi) = queues(&b);
    // No write in flight: the owner can only learn it lost the lock from
    // its own check.
    a.signal(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(30);
    while group1(&mut ba) != Ok(AnaState::Optimized) {
        assert!(Instant::now() < deadline, "no takeover:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    a.signal(libc::SIGCONT);
    // Fenced, and the change published (ANA groups, ALUA ports, counters).
    let fenced = a.wait_metric(
        "zctarget_ana_group_state{group=\"1\",state=\"inaccessible\"}",
        1.0,
        Duration::from_secs(20),
    );
    assert_eq!(fenced, Some(1.0), "gw-a not fenced:\n{}", a.log());
    let (mut aa, mut ai) = queues(&a);
    assert_eq!(group1(&mut aa), Ok(AnaState::Inaccessible));
    let r = ai.write(1, 0, &block(0xDD, 0), BS, false).expect("io");
    assert_eq!(path_status(&r), (3, 0x02), "{:?}", r.status());
    // Rejoining needs a fresh RADOS client: the gateway then follows.
    let (_bi2, mut bw) = queues(&b);
    ok(bw.write(1, 3, &block(0x0E, 3), BS, false), "survivor write");
    let (done, text) = ctl(&a, &["volume", "rejoin", "shared"]);
    assert!(done && text.contains("follower"), "{text}");
    let (mut aa, mut ai) = queues(&a);
    assert_eq!(group1(&mut aa), Ok(AnaState::NonOptimized));
    assert_eq!(ok(ai.read(1, 3, 1, BS), "read").data, block(0x0E, 3));
    let r = ai.write(1, 3, &block(0xDD, 3), BS, false).expect("io");
    assert_eq!(path_status(&r), (3, 0x03), "{:?}", r.status());
    // Only a fenced gateway rejoins.
    let (done, text) = ctl(&a, &["volume", "rejoin", "shared"]);
    assert!(!done && text.contains("only a fenced gateway"), "{text}");
}

#[test]
fn a_cleanly_stopped_owner_is_replaced_without_fencing() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("fo-stop");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    let (mut ba, mut bi) = queues(&b);
    // A clean shutdown closes the image, which releases the lock: nobody
    // is blocklisted, and after 4 x takeover_after_ms the follower takes
    // the free lock.
    a.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while group1(&mut ba) != Ok(AnaState::Optimized) {
        assert!(Instant::now() < deadline, "no takeover:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(
        bi.write(1, 0, &block(0x0E, 0), BS, false),
        "new owner write",
    );
    assert_eq!(b.metric("zctarget_failovers_total"), Some(0.0));
    assert_eq!(b.metric("zctarget_lock_acquisitions_total"), Some(1.0));
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("took the exclusive lock over"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("old_owner=\"(none)\""), "{line}");
    // The free lock's longer grace: 4 x takeover_after_ms.
    assert!(
        field(&log, "owner_gone_ms").parse::<u64>().unwrap_or(0) >= 2000,
        "{line}"
    );
}

/// A release for another gateway is that gateway's to take: the releaser
/// leaves the free lock alone for 8 × takeover_after_ms, however the
/// lock came to it. Before, the monitor's "owner gone since" of a lock it
/// had once seen free outlived a takeover made elsewhere (a host's SET
/// TARGET PORT GROUPS, `ctl volume acquire`), so a later release for the
/// other gateway found an old timestamp and the releaser took the lock
/// straight back — in the VM's dm-multipath failback, gw-b reclaimed the
/// lock it had released for gw-a, whose path then never turned optimized.
#[test]
fn a_release_for_another_gateway_is_not_taken_back() {
    let Some(conf) = ceph::ceph_conf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = ceph::image("fo-handback");
    let a = gateway(dir.path(), "gw-a", &conf, &image);
    let b = gateway(dir.path(), "gw-b", &conf, &image);
    assert!(a.wait_role("shared", "owner", Duration::from_secs(20)));
    assert!(b.wait_role("shared", "follower", Duration::from_secs(20)));
    // gw-a lets the lock go without naming anyone: gw-b's monitor sees it
    // free (a look every 200 ms; it would take it after 4 × 500 ms) ...
    let (done, text) = ctl(&a, &["volume", "release", "shared"]);
    assert!(done, "{text}");
    std::thread::sleep(Duration::from_millis(600));
    // ... and gw-b takes it on request instead, before that.
    let (done, text) = ctl(&b, &["volume", "acquire", "shared"]);
    assert!(done && text.contains("owner"), "{text}");
    // Longer than a named release's grace for the others (8 × 500 ms).
    std::thread::sleep(Duration::from_millis(4500));
    // gw-b releases for gw-a while gw-a is frozen (it cannot take the lock
    // yet): gw-b must leave it free for gw-a.
    a.signal(libc::SIGSTOP);
    let (done, text) = ctl(&b, &["volume", "release", "shared", "--to", "gw-a"]);
    assert!(done, "{text}");
    let retaken = b.wait_role("shared", "owner", Duration::from_secs(2));
    a.signal(libc::SIGCONT);
    assert!(
        !retaken,
        "gw-b took back the lock it released for gw-a:\n{}",
        b.log()
    );
    assert!(
        a.wait_role("shared", "owner", Duration::from_secs(10)),
        "gw-a did not take the lock released for it:\n{}",
        a.log()
    );
    assert!(b.wait_role("shared", "follower", Duration::from_secs(1)));
}
