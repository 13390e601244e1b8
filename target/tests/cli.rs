//! The `zctarget` binary: check-config exit codes, serve with a config,
//! attach instructions, clean login refusal, SIGTERM → exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use zctarget_tests::Daemon;

const BIN: &str = env!("CARGO_BIN_EXE_zctarget");

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

#[test]
fn check_config_accepts_valid_and_lists_every_problem_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = write(
        dir.path(),
        "ok.toml",
        "[[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"1MiB\"\n",
    );
    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(&ok)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = write(
        dir.path(),
        "bad.toml",
        "[[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"1000\"\nblock_size = 4096\n\n\
         [[iscsi_targets]]\niqn = \"not-an-iqn\"\nluns = [\"missing\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // Three problems, each with file:line:column and the field path.
    assert!(err.contains("iscsi_targets[0].iqn"), "{err}");
    assert!(err.contains("iscsi_targets[0].luns[0]"), "{err}");
    assert!(err.contains("volumes[0].size"), "{err}");
    assert!(err.contains("bad.toml:8:"), "iqn location missing: {err}");
    assert!(err.contains("bad.toml:9:"), "lun location missing: {err}");
}

/// Starts `zctarget serve --config` on free ports and returns it with the
/// attach text it printed (which names the ports).
fn serve(dir: &std::path::Path, extra: &str) -> (Daemon, String) {
    let cfg = write(
        dir,
        "serve.toml",
        &format!(
            "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = [\"127.0.0.1:0\"]\nreactors = 2\n{extra}\n\
             [[volumes]]\nname = \"vol0\"\npath = \"vol0.img\"\nsize = \"64MiB\"\n\n\
             [[iscsi_targets]]\niqn = \"iqn.2026-11.io.zctarget:t\"\nluns = [\"vol0\"]\n\n\
             [[nvme_subsystems]]\nnqn = \"nqn.2026-11.io.zctarget:t\"\nnamespaces = [\"vol0\"]\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    (Daemon::adopt(child), text)
}

fn port_after(text: &str, marker: &str) -> u16 {
    let at = text.find(marker).expect("marker in attach text") + marker.len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("port")
}

#[test]
fn serve_prints_attach_lines_answers_logins_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut daemon, text) = serve(dir.path(), "");
    assert!(
        text.contains("iscsiadm -m node -T iqn.2026-11.io.zctarget:t"),
        "{text}"
    );
    assert!(text.contains("nvme connect -t tcp -a 127.0.0.1"), "{text}");
    assert!(text.contains("-n nqn.2026-11.io.zctarget:t"), "{text}");
    // The volume was created sparse.
    let meta = std::fs::metadata(dir.path().join("vol0.img")).expect("volume file");
    assert_eq!(meta.len(), 64 << 20);
    let iscsi_port = port_after(&text, "-p 127.0.0.1:");

    // A Login Request without InitiatorName is refused with a Login
    // Response "initiator error / missing parameter" (RFC 7143 §11.13.5,
    // class 2 detail 7), echoing ITT and ISID — then the connection closes.
    let mut s = TcpStream::connect(("127.0.0.1", iscsi_port)).expect("connect iscsi");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut login = [0u8; 48];
    login[0] = 0x43; // immediate + Login Request
    login[1] = 0x81; // T, CSG=0 (security), NSG=1
    login[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
    login[16..20].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    s.write_all(&login).expect("send login");
    let mut rsp = [0u8; 48];
    s.read_exact(&mut rsp).expect("login response");
    assert_eq!(rsp[0] & 0x3f, 0x23);
    assert_eq!(&rsp[8..14], &login[8..14]);
    assert_eq!(&rsp[16..20], &login[16..20]);
    assert_eq!((rsp[36], rsp[37]), (2, 7));

    // SIGTERM: exit 0 promptly.
    daemon.signal(libc::SIGTERM);
    daemon.expect_clean_exit("SIGTERM");
}

#[test]
fn serve_fails_clearly_on_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(dir.path(), "bad.toml", "[server]\nbogus = 1\n");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
}

/// `zctarget` with no arguments serves the embedded default: a 1 GiB sparse
/// volume in ./zctarget-data/, iSCSI on 127.0.0.1:3260 and NVMe/TCP on
/// 127.0.0.1:4420, printing how to attach. Run in a private network
/// namespace so the fixed ports are free whatever the host runs.
#[test]
fn no_arguments_serves_the_embedded_default_in_a_private_netns() {
    let probe = Command::new("unshare").args(["--net", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot create a network namespace (needs root and unshare)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = format!("ip link set lo up && exec {BIN}");
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    let mut daemon = Daemon::adopt(child);
    assert!(
        text.contains("iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260"),
        "{text}"
    );
    assert!(
        text.contains(
            "iscsiadm -m node -T iqn.2026-11.io.zctarget:default -p 127.0.0.1:3260 --login"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "nvme connect -t tcp -a 127.0.0.1 -s 4420 -n nqn.2026-11.io.zctarget:default"
        ),
        "{text}"
    );
    let img = dir.path().join("zctarget-data").join("default.img");
    let meta = std::fs::metadata(&img).expect("default volume created");
    assert_eq!(meta.len(), 1 << 30);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "default volume is sparse");
    // SIGINT (Ctrl-C) stops it cleanly. `sh` exec'd into zctarget, so the
    // child's PID is the daemon's.
    daemon.signal(libc::SIGINT);
    daemon.expect_clean_exit("SIGINT");
}

/// systemd's notify protocol (the unit is `Type=notify`): READY=1 once the
/// listeners accept, RELOADING=1 then READY=1 around a SIGHUP re-read,
/// STOPPING=1 at SIGTERM — read here from a datagram socket named by
/// NOTIFY_SOCKET, as systemd would. Logs are JSON with `--log-format json`.
#[test]
fn serve_speaks_the_systemd_notify_protocol_and_logs_json() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let cfg = write(
        dir.path(),
        "n.toml",
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
         reactors = 1\n\n[[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"1MiB\"\n",
    );
    let log = std::fs::File::create(dir.path().join("log.json")).expect("log");
    let child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut daemon = Daemon::adopt(child);
    let next = || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1\n");
    daemon.signal(libc::SIGHUP);
    let reloading = next();
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert_eq!(next(), "READY=1\n");
    daemon.signal(libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1\n");
    daemon.expect_clean_exit("SIGTERM");
    let text = std::fs::read_to_string(dir.path().join("log.json")).expect("log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{text}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
    assert!(text.contains("SIGHUP received"), "{text}");
}
