//! One daemon per portal and per volume file (issue #11, defect 5): a second
//! zctarget on the same portal or on the same volume file refuses to start
//! (exit non-zero, naming the portal or the file) while the first keeps
//! serving every new connection; `ctl volume add` of a file another daemon
//! serves is refused; a removed volume's file is free again.

use std::os::fd::AsRawFd;
use std::path::Path;

use std::time::Duration;

use zctarget_tests::iscsi::Iscsi;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::records::record;
use zctarget_tests::spec::{spawn, start, Spec, HOST, IQN, NQN};
use zctarget_tests::Daemon;

const BS: usize = 4096;

/// Writes a record only this daemon's file holds to block 0 (FUA).
fn mark(d: &Daemon, writer: u64) -> Vec<u8> {
    let data = record(BS, 0, 7, writer);
    let mut s = Iscsi::login(d.iscsi_port, IQN, "iqn.2026-11.test:marker", BS).expect("login");
    assert_eq!(s.write(0, &data, true).expect("write"), 0, "write status");
    data
}

/// Every one of several fresh connections, through both protocols, reads
/// the daemon's own mark: none of them reached another process.
fn all_connections_reach(d: &Daemon, marked: &[u8]) {
    for i in 0..8 {
        let name = format!("iqn.2026-11.test:probe-{i}");
        let mut s = Iscsi::login(d.iscsi_port, IQN, &name, BS).expect("iSCSI login");
        let (st, data) = s.read(0, 1).expect("iSCSI read");
        assert_eq!(st, 0, "iSCSI read status\n{}", d.log());
        assert!(data == marked, "iSCSI connection {i} read another file");
    }
    for i in 0..4 {
        let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, HOST))
            .expect("NVMe admin queue");
        let mut o = QueueOptions::admin(NQN, HOST);
        o.qid = 1;
        o.cntlid = admin.cntlid;
        let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("NVMe I/O queue");
        assert!(
            r.status().is_success(),
            "NVMe I/O queue {i} joined no controller of this daemon: {:?}",
            r.status()
        );
        let r = io.read(1, 0, 1, BS).expect("NVMe read");
        assert!(r.status().is_success(), "NVMe read: {:?}", r.status());
        assert!(
            r.data == marked,
            "NVMe/TCP connection {i} read another file"
        );
    }
}

/// Waits (bounded) for a daemon that must refuse to start; returns its log.
fn refused(mut d: Daemon, what: &str) -> String {
    let st = d.wait_exit(Duration::from_secs(20));
    let log = d.log();
    match st {
        Some(st) => assert!(!st.success(), "{what}: exit {st:?}\n{log}"),
        None => panic!("{what}: the second daemon came up instead of refusing\n{log}"),
    }
    log
}

fn same_portal(engine: &'static str) {
    let spec = Spec::new(engine);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = start(dir_a.path(), &spec, "first");
    let marked = mark(&first, 1);
    // Its own volume file, the first daemon's portals.
    let second = spawn(
        dir_b.path(),
        &spec,
        "second",
        [first.iscsi_port, first.nvme_port],
    );
    let log = refused(second, "same portal");
    let portal = format!("127.0.0.1:{}", first.iscsi_port);
    assert!(
        log.contains("address already in use") && log.contains(&portal),
        "the refusal must name the portal {portal}:\n{log}"
    );
    assert_eq!(first.child.try_wait().expect("wait"), None, "first died");
    all_connections_reach(&first, &marked);
    first.signal(libc::SIGTERM);
    let st = first.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(st.success(), "{st:?}\n{}", first.log());
}

#[test]
fn second_daemon_on_the_same_portal_refuses_uring() {
    same_portal("uring");
}

#[test]
fn second_daemon_on_the_same_portal_refuses_epoll() {
    same_portal("epoll");
}

/// Whether `path` can be flock'ed exclusively right now (by this process,
/// on a descriptor of its own).
fn lockable(path: &Path) -> bool {
    let f = std::fs::File::open(path).expect("open");
    // SAFETY: flock(2) on a descriptor `f` owns; closing it releases the lock.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn same_file(engine: &'static str) {
    let spec = Spec::new(engine);
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), &spec, "first");
    let marked = mark(&first, 1);
    // Same folder, same data.img; portals of its own.
    let second = spawn(dir.path(), &spec, "second", [0, 0]);
    let log = refused(second, "same file");
    let holder = format!("locked by process {}", first.pid());
    assert!(
        log.contains("data.img") && log.contains(&holder),
        "the refusal must name the file and its holder ({holder}):\n{log}"
    );
    all_connections_reach(&first, &marked);
    assert!(!lockable(&dir.path().join("data.img")), "not locked");
    // A clean stop releases the file: the next daemon serves it.
    first.signal(libc::SIGTERM);
    let st = first.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(st.success(), "{st:?}\n{}", first.log());
    let third = start(dir.path(), &spec, "third");
    all_connections_reach(&third, &marked);
}

#[test]
fn second_daemon_on_the_same_file_refuses_uring() {
    same_file("uring");
}

#[test]
fn second_daemon_on_the_same_file_refuses_epoll() {
    same_file("epoll");
}

#[test]
fn ctl_volume_add_of_a_file_another_daemon_serves_is_refused() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = start(dir_a.path(), &Spec::new("epoll"), "first");
    let marked = mark(&first, 1);
    let mut spec = Spec::new("epoll");
    spec.admin_socket = "admin.sock";
    let second = start(dir_b.path(), &spec, "second");
    // (`start` waited for the admin socket too: it is opened after the
    // portals.)
    let taken = dir_a.path().join("data.img");
    let out = second.ctl(&["volume", "add", "stolen", "--path", taken.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let holder = format!("locked by process {}", first.pid());
    assert!(!out.status.success(), "added: {out:?}");
    assert!(
        err.contains(taken.to_str().unwrap()) && err.contains(&holder),
        "the refusal must name the file and its holder ({holder}): {err}"
    );
    let list = second.ctl(&["volume", "list"]);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("stolen"),
        "{list:?}"
    );
    all_connections_reach(&first, &marked);

    // A volume added live is locked until it is removed.
    let own = dir_b.path().join("own.img");
    let out = second.ctl(&[
        "volume",
        "add",
        "own",
        "--path",
        own.to_str().unwrap(),
        "--size",
        "1MiB",
    ]);
    assert!(out.status.success(), "{out:?}\n{}", second.log());
    assert!(!lockable(&own), "a volume added live is not locked");
    let out = second.ctl(&["volume", "remove", "own"]);
    assert!(out.status.success(), "{out:?}\n{}", second.log());
    assert!(lockable(&own), "a removed volume's file is still locked");
}

/// A volume redefined by a SIGHUP reload (same file, new size) is reopened
/// while the old definition still holds the file's lock: it shares that
/// lock instead of refusing its own daemon, the file stays locked, and the
/// targets that export it follow it to its new slot.
#[test]
fn sighup_redefining_a_volume_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new("epoll");
    let d = start(dir.path(), &spec, "d");
    mark(&d, 1);
    let config = dir.path().join("d.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let edited = text.replace("size = \"8MiB\"", "size = \"16MiB\"");
    assert_ne!(text, edited);
    std::fs::write(&config, edited).expect("edit config");
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !d.log().contains("configuration applied") {
        assert!(
            std::time::Instant::now() < deadline && !d.log().contains("ERROR"),
            "reload did not apply:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.log().contains("volume data redefined"), "{}", d.log());
    assert!(!lockable(&dir.path().join("data.img")), "not locked");
    // The target and subsystem, whose own configuration did not change,
    // now map the redefined volume: I/O works through both protocols (it
    // failed with "volume handle" when they kept the old slot).
    let marked = mark(&d, 2);
    all_connections_reach(&d, &marked);
}
