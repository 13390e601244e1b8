//! Live administration (issue #5): `zctarget ctl` against a running daemon
//! changes exports live — an NVMe host sees a new namespace through an
//! Asynchronous Event and can use it, loses a removed one — the changes
//! are persisted so a restart comes back the same, SIGHUP applies an
//! edited file, refusals change nothing, and the metrics endpoint counts
//! the I/O.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zctarget_protocol::nvme::{Cqe, Sqe};
use zctarget_protocol::nvme_tcp::{CapsuleResp, PduType};
use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue as Queue, QueueOptions};
use zctarget_tests::Daemon;

const NQN: &str = "nqn.2026-11.io.zctarget.test:admin";
const IQN: &str = "iqn.2026-11.io.zctarget.test:admin";
const HOST: &str = "nqn.2026-11.io.zctarget.test:host";
const BS: usize = 512;

/// Starts the daemon on `dir/zctarget.toml`, written first if it does not
/// exist yet (a restart reads the file the daemon persisted).
fn start(dir: &Path, engine: &str) -> Daemon {
    let config = dir.join("zctarget.toml");
    if !config.exists() {
        let text = format!(
            "[server]\nadmin_socket = \"admin.sock\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             iscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = [\"127.0.0.1:0\"]\n\
             io_engine = \"{engine}\"\nreactors = 2\nbuffer_pool = \"16MiB\"\n\n\
             [[volumes]]\nname = \"base\"\npath = \"base.img\"\nsize = \"8MiB\"\n\n\
             [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"base\"]\n\n\
             [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"base\"]\n"
        );
        std::fs::write(&config, text).expect("config");
    }
    Daemon::start(&config, &dir.join("daemon.log"))
}

/// `zctarget ctl` through the daemon's admin socket.
trait Admin {
    fn socket(&self) -> PathBuf;
    /// `ctl` that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String;
    /// `ctl --json` result.
    fn json(&self, args: &[&str]) -> serde_json::Value;
}

impl Admin for Daemon {
    fn socket(&self) -> PathBuf {
        self.dir().join("admin.sock")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("json")
    }
}

fn admin_queue(port: u16) -> Queue {
    Queue::admin(("127.0.0.1", port), &QueueOptions::admin(NQN, HOST)).expect("admin")
}

/// An I/O queue; each call takes a new QID (a closed queue's QID may still
/// be in use until the daemon has seen the close).
fn io_queue(port: u16, cntlid: u16) -> Queue {
    static NEXT_QID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let mut o = QueueOptions::admin(NQN, HOST);
    o.qid = NEXT_QID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 8 + 1;
    o.cntlid = cntlid;
    let (q, r) = Queue::connect(("127.0.0.1", port), &o).expect("io queue");
    assert!(
        r.status().is_success(),
        "connect qid {}: {:?}",
        o.qid,
        r.status()
    );
    q
}

/// Active namespace list (Identify CNS 02h).
fn active_nsids(q: &mut Queue) -> Vec<u32> {
    let r = q.identify(0x02, 0).expect("identify");
    r.data
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
        .take_while(|&n| n != 0)
        .collect()
}

/// Enables Namespace Attribute notices and posts an AER; returns its CID.
fn arm_aer(q: &mut Queue) -> u16 {
    let mut sf = Sqe::new(0x09, 0x700); // Set Features
    sf.cdw10 = 0x0B; // Asynchronous Event Configuration
    sf.cdw11 = 1 << 8; // Namespace Attribute Notices
    assert!(q
        .command(sf, &[], 0)
        .expect("set features")
        .status()
        .is_success());
    let aer = Sqe::new(0x0C, 0x701); // Asynchronous Event Request
    q.send_capsule(&aer, &[]).expect("AER");
    aer.cid
}

/// Waits for the completion of `cid` (an AER): its Dword 0.
fn aer_completion(q: &mut Queue, cid: u16) -> u32 {
    let pdu = q.recv().expect("AER completion");
    assert_eq!(pdu.ch.pdu_type, PduType::CapsuleResp);
    let r = CapsuleResp::parse(pdu.header[..24].try_into().expect("24")).expect("resp");
    let cqe = Cqe::parse(&r.cqe);
    assert_eq!(cqe.cid, cid);
    assert!(cqe.status.is_success());
    cqe.dw0
}

fn live_changes(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), engine);

    // Refusals change nothing: unknown volume, invalid name, in-use removal.
    let before = std::fs::read_to_string(dir.path().join("zctarget.toml")).expect("cfg");
    let out = d.ctl(&["iscsi", "lun", "add", IQN, "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = d.ctl(&["iscsi", "target", "add", "not-an-iqn"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-iqn"));
    let out = d.ctl(&["volume", "remove", "base"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported as"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("zctarget.toml")).expect("cfg"),
        before,
        "a refused change must not touch the file"
    );

    // A host connected before the change.
    let mut admin = admin_queue(d.nvme_port);
    let cntlid = admin.cntlid;
    assert_eq!(active_nsids(&mut admin), [1]);
    let aer = arm_aer(&mut admin);

    // A preallocated volume reports its progress to the operator.
    let out = d.ctl(&["volume", "add", "big", "--size", "2GiB", "--preallocate"]);
    assert!(out.status.success(), "{out:?}");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("creating big") && progress.contains("100%"),
        "{progress}"
    );
    let allocated = std::os::unix::fs::MetadataExt::blocks(
        &std::fs::metadata(dir.path().join("big.img")).expect("big.img"),
    ) * 512;
    assert!(
        allocated >= 2 << 30,
        "preallocated, not sparse: {allocated}"
    );
    d.ok(&["volume", "remove", "big"]);

    // Add a volume and attach it as NSID 3 while the host is connected.
    let out = d.ok(&["volume", "add", "extra", "--size", "4MiB"]);
    assert!(out.contains("volume extra added"), "{out}");
    let out = d.ok(&["nvme", "namespace", "add", NQN, "extra", "--nsid", "3"]);
    assert!(out.contains("NSID 3"), "{out}");
    let dw0 = aer_completion(&mut admin, aer);
    assert_eq!(dw0 & 0x7, 0x2, "Notice event type: {dw0:#x}");
    assert_eq!((dw0 >> 16) & 0xff, 0x04, "log page: Changed Namespace List");
    let log = admin.get_log_page(0x04, 4096).expect("changed ns log");
    assert_eq!(&log.data[..8], &[3, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(active_nsids(&mut admin), [1, 3]);

    // The new namespace does I/O (on both reactors' queues).
    for _ in 0..2 {
        let mut io = io_queue(d.nvme_port, cntlid);
        let data: Vec<u8> = (0..8 * BS).map(|i| (i * 7 % 251) as u8).collect();
        assert!(io
            .write(3, 10, &data, BS, true)
            .expect("write")
            .status()
            .is_success());
        let r = io.read(3, 10, 8, BS).expect("read");
        assert!(r.status().is_success());
        assert_eq!(r.data, data);
    }

    // The sessions/controllers listing shows the host with its queues.
    let controllers = d.json(&["controller", "list"]);
    let row = controllers
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["cntlid"] == cntlid)
        .expect("our controller listed");
    assert_eq!(row["host"], HOST);
    assert!(row["address"]
        .as_str()
        .unwrap_or("")
        .starts_with("127.0.0.1:"));

    // Metrics count the I/O on the new volume.
    let (code, _) = d.http_get("/readyz");
    assert_eq!(code, 200);
    let writes = d
        .metric("zctarget_volume_writes_total{volume=\"extra\"}")
        .expect("writes metric");
    assert!(writes >= 2.0, "writes {writes}");
    assert!(d
        .metric("zctarget_volume_write_latency_seconds_count{volume=\"extra\"}")
        .is_some_and(|n| n >= 2.0));

    // Every family the issue asks for is exported, typed, with help text.
    let (_, body) = d.http_get("/metrics");
    for family in [
        "zctarget_volume_reads_total",
        "zctarget_volume_writes_total",
        "zctarget_volume_read_bytes_total",
        "zctarget_volume_write_bytes_total",
        "zctarget_volume_read_latency_seconds",
        "zctarget_volume_write_latency_seconds",
        "zctarget_iscsi_sessions",
        "zctarget_nvme_controllers",
        "zctarget_connections",
        "zctarget_commands_in_flight",
        "zctarget_zerocopy_sends_total",
        "zctarget_zerocopy_notifications_total",
        "zctarget_zerocopy_copied_notifications_total",
        "zctarget_zerocopy_fallbacks_total",
        "zctarget_pool_leased_bytes",
        "zctarget_pool_chunks",
        "zctarget_pool_backpressure_waits_total",
        "zctarget_protocol_errors_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{body}"
        );
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "{family} help missing"
        );
    }
    // The admin queue is open (the I/O queues above are closed).
    assert!(d
        .metric("zctarget_connections{protocol=\"nvme_tcp\"}")
        .is_some_and(|n| n >= 1.0));
    assert!(
        body.contains("zctarget_volume_write_latency_seconds_bucket{volume=\"extra\",le=\"+Inf\"}")
    );

    // Remove the namespace: the host is told, I/O to it fails cleanly.
    let aer = arm_aer_again(&mut admin);
    d.ok(&["nvme", "namespace", "remove", NQN, "3"]);
    let dw0 = aer_completion(&mut admin, aer);
    assert_eq!((dw0 >> 16) & 0xff, 0x04);
    assert_eq!(active_nsids(&mut admin), [1]);
    let mut io = io_queue(d.nvme_port, cntlid);
    let r = io.read(3, 0, 1, BS).expect("read");
    assert!(
        !r.status().is_success(),
        "read of a removed namespace succeeded"
    );
    assert!(io.read(1, 0, 1, BS).expect("read").status().is_success());

    // iSCSI: a logged-in initiator learns of a LUN added at a chosen number
    // (REPORTED LUNS DATA HAS CHANGED), can use it, and of its removal.
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.io.zctarget.test:ini", BS)
        .expect("iSCSI login");
    let tur = [0u8; 6];
    assert_eq!(s.run_on_lun(0, &tur, 0).expect("TUR").0, 0);
    d.ok(&["iscsi", "lun", "add", IQN, "extra", "--lun", "4"]);
    let (st, _, sense) = s.run_on_lun(0, &tur, 0).expect("TUR");
    assert_eq!(st, 2, "CHECK CONDITION after the LUN map changed");
    assert_eq!(
        (sense[2] & 0xf, sense[12], sense[13]),
        (6, 0x3f, 0x0e),
        "{sense:02x?}"
    );
    let report_luns = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let (st, data, _) = s.run_on_lun(0, &report_luns, 256).expect("REPORT LUNS");
    assert_eq!(st, 0);
    assert_eq!(
        u32::from_be_bytes(data[..4].try_into().expect("4")),
        16,
        "two LUNs"
    );
    assert_eq!(&data[8..10], &[0, 0]);
    assert_eq!(&data[16..18], &[0, 4]);
    // LUN 4 holds what the NVMe host wrote at LBA 10 (same volume).
    let read16 = |lba: u64, blocks: u32| {
        let mut c = vec![0x88, 0];
        c.extend_from_slice(&lba.to_be_bytes());
        c.extend_from_slice(&blocks.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c
    };
    let (st, _, sense) = s
        .run_on_lun(4, &read16(10, 8), 8 * BS as u32)
        .expect("read");
    assert_eq!(
        (st, sense.get(2).map(|k| k & 0xf)),
        (2, Some(6)),
        "a new LUN starts with a reset UA"
    );
    let (st, data, _) = s
        .run_on_lun(4, &read16(10, 8), 8 * BS as u32)
        .expect("read");
    assert_eq!(st, 0);
    let expected: Vec<u8> = (0..8 * BS).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(data, expected);
    // The session is listed with its initiator and address.
    let sessions = d.json(&["session", "list"]);
    let row = sessions
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["initiator"] == "iqn.2026-11.io.zctarget.test:ini")
        .expect("session listed");
    assert_eq!(row["target"], IQN);
    let tsih = row["tsih"].as_u64().expect("tsih").to_string();
    d.ok(&["iscsi", "lun", "remove", IQN, "4"]);
    let (st, _, sense) = s.run_on_lun(0, &tur, 0).expect("TUR");
    assert_eq!((st, sense[12], sense[13]), (2, 0x3f, 0x0e));
    let (st, _, sense) = s.run_on_lun(4, &read16(0, 1), BS as u32).expect("read");
    assert_eq!(
        (st, sense[2] & 0xf, sense[12]),
        (2, 5, 0x25),
        "LOGICAL UNIT NOT SUPPORTED"
    );
    d.ok(&["session", "disconnect", &tsih]);
    assert!(
        s.run_on_lun(0, &tur, 0).is_err(),
        "a disconnected session is closed"
    );

    // ACL and CHAP changes apply to logins from now on, and a session the
    // new ACL no longer allows is ended.
    let mut other = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.io.zctarget.test:other", BS)
        .expect("login while any initiator may");
    d.ok(&[
        "iscsi",
        "initiator",
        "add",
        IQN,
        "iqn.2026-11.io.zctarget.test:only",
    ]);
    d.ok(&["iscsi", "initiator", "remove", IQN, "*"]);
    assert!(
        other.run_on_lun(0, &tur, 0).is_err(),
        "a session the ACL no longer allows is ended"
    );
    assert!(
        Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.io.zctarget.test:other", BS).is_err(),
        "a login the ACL no longer allows is refused"
    );
    let mut only = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.io.zctarget.test:only", BS)
        .expect("allowed initiator");
    assert_eq!(only.run_on_lun(0, &tur, 0).expect("TUR").0, 0);
    // The secret from a file (not on the command line); a file that is
    // not one line is refused and nothing changes.
    let secret = d.dir().join("chap.secret");
    std::fs::write(&secret, "0123456789ab\n").expect("secret file");
    let bad = d.dir().join("bad.secret");
    std::fs::write(&bad, "0123456789ab\nsecond line\n").expect("secret file");
    let bad_out = d.ctl(&[
        "iscsi",
        "chap",
        "set",
        IQN,
        "--username",
        "u",
        "--secret-file",
        bad.to_str().expect("utf-8"),
    ]);
    assert!(!bad_out.status.success(), "a two-line secret file accepted");
    d.ok(&[
        "iscsi",
        "chap",
        "set",
        IQN,
        "--username",
        "u",
        "--secret-file",
        secret.to_str().expect("utf-8"),
    ]);
    let shown = d.ctl(&["config"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(!shown.contains("0123456789ab"), "secret shown: {shown}");
    assert!(
        Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.io.zctarget.test:only", BS).is_err(),
        "CHAP now required"
    );
    assert_eq!(
        only.run_on_lun(0, &tur, 0).expect("TUR").0,
        0,
        "existing session kept"
    );
    d.ok(&["iscsi", "chap", "clear", IQN]);
    d.ok(&["iscsi", "initiator", "add", IQN, "*"]);
    drop(only);

    // Map it again at LUN 4, then persist-and-restart.
    d.ok(&["iscsi", "lun", "add", IQN, "extra", "--lun", "4"]);
    d.ok(&[
        "nvme",
        "host",
        "add",
        NQN,
        "nqn.2026-11.io.zctarget.test:other",
    ]);
    let targets = d.json(&["iscsi", "target", "list"]);
    assert_eq!(targets[0]["luns"][1]["lun"], 4);

    // Disconnect the controller from the admin side: its queues close.
    d.ok(&["controller", "disconnect", &cntlid.to_string()]);
    assert!(admin.closed_within(Duration::from_secs(10)));
    drop(io);

    let before = d.json(&["config", "show"]);
    d.stop();
    let d = start(dir.path(), engine);
    let after = d.json(&["config", "show"]);
    assert_eq!(
        before["toml"], after["toml"],
        "restart must come back as it was"
    );
    let targets = d.json(&["iscsi", "target", "list"]);
    assert_eq!(targets[0]["luns"][1]["volume"], "extra");
    let subsystems = d.json(&["nvme", "subsystem", "list"]);
    assert_eq!(subsystems[0]["hosts"].as_array().map(Vec::len), Some(2));

    // SIGHUP applies an edited file: attach `extra` as NSID 2 by hand.
    let path = dir.path().join("zctarget.toml");
    let text = std::fs::read_to_string(&path).expect("cfg");
    let edited = text.replace(
        "namespaces = [\"base\"]",
        "namespaces = [\"base\", \"extra\"]",
    );
    assert_ne!(text, edited, "config layout changed: {text}");
    std::fs::write(&path, edited).expect("edit");
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.json(&["nvme", "subsystem", "list"]);
        if s[0]["namespaces"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP not applied:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut admin = admin_queue(d.nvme_port);
    assert_eq!(active_nsids(&mut admin), [1, 2]);

    // Removing the volume with --force unmaps it everywhere.
    d.ok(&["volume", "remove", "extra", "--force"]);
    assert_eq!(active_nsids(&mut admin), [1]);
    let volumes = d.json(&["volume", "list"]);
    assert_eq!(volumes.as_array().map(Vec::len), Some(1));
    d.stop();
}

fn arm_aer_again(q: &mut Queue) -> u16 {
    // The event type stays masked until the log page is read (done above).
    let aer = Sqe::new(0x0C, 0x702);
    q.send_capsule(&aer, &[]).expect("AER");
    aer.cid
}

#[test]
fn live_changes_uring() {
    live_changes("uring");
}

#[test]
fn live_changes_epoll() {
    live_changes("epoll");
}

#[test]
fn admin_socket_is_private_and_speaks_json_rpc() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), "epoll");
    let mode = std::fs::metadata(d.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"nope\"}\nnot json\n")
        .expect("send");
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).expect("read");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32601);
    line.clear();
    std::io::BufRead::read_line(&mut r, &mut line).expect("read");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["error"]["code"], -32700);
    d.stop();
    assert!(
        !dir.path().join("admin.sock").exists(),
        "socket removed at exit"
    );
}

/// An I/O queue plans from its controller's snapshot (no lock per
/// command): a namespace added or removed live reaches queues that were
/// already open at once — before the host sends any admin command that
/// would refresh the snapshot as a side effect.
#[test]
fn namespace_changes_reach_open_io_queues_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), "uring");
    let admin = admin_queue(d.nvme_port);
    let mut io = io_queue(d.nvme_port, admin.cntlid);
    d.ok(&["volume", "add", "extra", "--size", "4MiB"]);
    d.ok(&["nvme", "namespace", "add", NQN, "extra", "--nsid", "3"]);
    let data: Vec<u8> = (0..4 * BS).map(|i| (i * 13 % 251) as u8).collect();
    let w = io.write(3, 4, &data, BS, false).expect("write");
    assert!(
        w.status().is_success(),
        "write to the new namespace: {:?}",
        w.status()
    );
    let r = io.read(3, 4, 4, BS).expect("read");
    assert!(r.status().is_success());
    assert_eq!(r.data, data);
    d.ok(&["nvme", "namespace", "remove", NQN, "3"]);
    let r = io.read(3, 4, 4, BS).expect("read");
    assert_eq!(
        r.status(),
        zctarget_protocol::nvme::Status::INVALID_NS.dnr(),
        "a removed namespace is Invalid Namespace at once"
    );
    assert!(io.read(1, 0, 1, BS).expect("read").status().is_success());
    drop(admin);
}
