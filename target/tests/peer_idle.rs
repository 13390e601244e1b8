//! An idle gateway with a peer link sleeps: two gateways (memory volumes,
//! no Ceph needed) with `cluster.peers` set, their links up and nothing to
//! do. The peer link's thread then wakes only for the heartbeat — a Ping
//! after 1 s of silence and the peer's Pong — not for timers polling its
//! volume table, its stop flag or its answer deadlines (once ~25 wake-ups
//! a second: a 100 ms install loop, a 100 ms sweep per link, a 200 ms
//! accept timeout).

use std::path::Path;
use std::time::Duration;

use zctarget_tests::{free_port, Daemon};

fn gateway(dir: &Path, me: &str, a: u16, b: u16) -> Daemon {
    let secret = dir.join(format!("{me}.secret"));
    std::fs::write(&secret, "idle-secret\n").expect("secret");
    Daemon::start_with(
        dir,
        me,
        &format!(
            "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
             reactors = 1\nbuffer_pool = \"16MiB\"\n\n\
             [cluster]\ngateway = \"{me}\"\ngateways = [\"gw-a\", \"gw-b\"]\n\
             peers = {{ gw-a = \"127.0.0.1:{a}\", gw-b = \"127.0.0.1:{b}\" }}\n\
             peer_secret_file = \"{}\"\n\n\
             [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\n\
             [[iscsi_targets]]\niqn = \"iqn.2026-12.io.zctarget.test:idle\"\nluns = [\"v\"]\n",
            secret.display()
        ),
    )
}

/// Voluntary context switches of `pid`'s thread named `name`.
fn thread_switches(pid: libc::pid_t, name: &str) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = task.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("status");
        return status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches");
    }
    panic!("no thread named {name} in {pid}");
}

#[test]
fn an_idle_peer_link_sleeps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (free_port(), free_port());
    let gw_a = gateway(dir.path(), "gw-a", a, b);
    let gw_b = gateway(dir.path(), "gw-b", a, b);
    for d in [&gw_a, &gw_b] {
        assert!(
            d.wait_log("peer link up", Duration::from_secs(20)),
            "link never came up:\n{}",
            d.log()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = thread_switches(gw_a.pid(), "peer-link");
    std::thread::sleep(Duration::from_secs(4));
    let woke = thread_switches(gw_a.pid(), "peer-link") - before;
    eprintln!("peer link thread: {woke} wake-ups in 4 s");
    // The heartbeat: about one Ping out and one Pong in per second on the
    // dialled link, one Ping in and one Pong out on the accepted one.
    assert!(
        woke <= 24,
        "the idle peer link thread woke {woke} times in 4 s"
    );
    assert!(woke >= 1, "no heartbeat in 4 s ({woke} wake-ups)");
}
