//! One running `zctarget serve` owned by a test or a benchmark.
//!
//! Every portal is configured as port 0: the daemon binds it and logs the
//! address (`listening protocol=… portal=…`), which is where [`Daemon`]
//! learns its ports. A port picked by the test and released before the
//! daemon binds it could be handed to another daemon in between (the
//! `nvme_listen == iscsi_listen` flake of issue #11).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::logs;

/// How long start-up may take before a test fails with the log.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a clean stop (SIGTERM, SIGINT) may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `zctarget` binary next to the running test or benchmark (cargo puts
/// integration tests in `<target>/debug/deps/`, binaries in
/// `<target>/debug/`), or `$ZCTARGET_BIN`.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ZCTARGET_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join("zctarget");
    assert!(
        p.exists(),
        "{} not built (cargo builds it for zctarget's own tests; else set ZCTARGET_BIN)",
        p.display()
    );
    p
}

/// What start-up waits for, read from the configuration file.
#[derive(Debug, Default)]
struct Expect {
    iscsi: bool,
    nvme: bool,
    metrics: bool,
    admin_socket: Option<PathBuf>,
}

impl Expect {
    fn of(config: &Path) -> Self {
        let Ok(c) = zctarget_config::Config::load(config) else {
            return Self::default();
        };
        Self {
            iscsi: !c.server.iscsi_listen.is_empty(),
            nvme: !c.server.nvme_listen.is_empty(),
            metrics: c.server.metrics_listen.is_some(),
            admin_socket: c.server.admin_socket,
        }
    }
}

/// A running daemon, killed (our own child, by its handle) and reaped on
/// drop. Its ports are 0 until [`Daemon::wait_listening`] learnt them.
pub struct Daemon {
    pub child: Child,
    pub iscsi_port: u16,
    pub nvme_port: u16,
    pub metrics_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    started: Instant,
    expect: Expect,
    /// A folder the daemon owns (removed after the child is reaped).
    tmp: Option<tempfile::TempDir>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Spawns `zctarget serve --config <config>` with `RUST_LOG=info` (or
    /// `$ZC_TEST_LOG`, e.g. `debug`, when set) and
    /// its log in `log`, and returns at once. Ports given as 0 in the
    /// configuration are learnt by [`Daemon::wait_listening`].
    pub fn spawn(config: &Path, log: &Path, [iscsi_port, nvme_port]: [u16; 2]) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("ZC_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn zctarget");
        let mut d = Self::adopt(child);
        d.iscsi_port = iscsi_port;
        d.nvme_port = nvme_port;
        d.expect = Expect::of(config);
        d.config_path = config.to_path_buf();
        d.log_path = log.to_path_buf();
        d
    }

    /// A daemon the caller spawned itself (other arguments, environment or
    /// stdio): killed on drop, signalled and awaited like the others; no
    /// log file, no ports, nothing to wait for at start.
    pub fn adopt(child: Child) -> Self {
        Self {
            child,
            iscsi_port: 0,
            nvme_port: 0,
            metrics_port: 0,
            config_path: PathBuf::new(),
            log_path: PathBuf::new(),
            started: Instant::now(),
            expect: Expect::default(),
            tmp: None,
        }
    }

    /// [`spawn`](Self::spawn) on `config`, then waits until it listens.
    pub fn start(config: &Path, log: &Path) -> Self {
        let mut d = Self::spawn(config, log, [0, 0]);
        d.wait_listening();
        d
    }

    /// Writes `text` as `<dir>/<tag>.toml` and starts the daemon on it,
    /// logging to `<dir>/<tag>.log`.
    pub fn start_with(dir: &Path, tag: &str, text: &str) -> Self {
        let config = write_config(dir, tag, text);
        Self::start(&config, &dir.join(format!("{tag}.log")))
    }

    /// [`start_with`](Self::start_with) in a fresh temporary folder that
    /// the daemon owns (`daemon.toml`, `daemon.log`).
    pub fn start_temp(text: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = Self::start_with(tmp.path(), "daemon", text);
        d.tmp = Some(tmp);
        d
    }

    /// Waits (bounded) until the daemon listens on every portal, metrics
    /// endpoint and admin socket its configuration names, learning ports
    /// given as 0 from its log; panics with the log if it exits first.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("daemon exited during start-up ({st:?}):\n{}", self.log());
            }
            let log = self.log();
            if self.iscsi_port == 0 {
                self.iscsi_port = logs::listening_port(&log, "iscsi").unwrap_or(0);
            }
            if self.nvme_port == 0 {
                self.nvme_port = logs::listening_port(&log, "nvme-tcp").unwrap_or(0);
            }
            if self.metrics_port == 0 {
                self.metrics_port = logs::metrics_port(&log).unwrap_or(0);
            }
            let up = |want: bool, port: u16| {
                !want || (port != 0 && TcpStream::connect(("127.0.0.1", port)).is_ok())
            };
            let admin = self
                .expect
                .admin_socket
                .as_ref()
                .is_none_or(|s| s.exists() || log.contains("admin API off"));
            if up(self.expect.iscsi, self.iscsi_port)
                && up(self.expect.nvme, self.nvme_port)
                && up(self.expect.metrics, self.metrics_port)
                && admin
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The folder holding the daemon's configuration and log.
    pub fn dir(&self) -> &Path {
        self.config_path.parent().expect("config in a folder")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn nvme_addr(&self) -> (&'static str, u16) {
        ("127.0.0.1", self.nvme_port)
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Time since spawn.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// The log so far ("" when it is not in a file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL (through the child handle: our own process only), reaped.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let st = self.child.wait().expect("wait");
        assert!(!st.success(), "daemon survived SIGKILL: {st:?}");
    }

    /// Sends `sig` to our child.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on the child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill({sig})");
    }

    /// Waits (bounded) for the daemon to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded by [`STOP_TIMEOUT`]) for the daemon to exit after
    /// `what` (a signal sent already); it must exit 0.
    pub fn expect_clean_exit(&mut self, what: &str) {
        match self.wait_exit(STOP_TIMEOUT) {
            Some(st) => assert!(st.success(), "exit after {what}: {st:?}\n{}", self.log()),
            None => panic!("daemon did not exit after {what}:\n{}", self.log()),
        }
    }

    /// SIGTERM, then a bounded wait for exit 0.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        self.expect_clean_exit("SIGTERM");
    }

    /// SIGTERM, then a bounded wait (`within`) for exit 0 with "buffer pool
    /// intact" in the log; returns the log for further checks.
    pub fn stop_intact(&mut self, within: Duration) -> String {
        self.signal(libc::SIGTERM);
        let st = self.wait_exit(within).expect("daemon did not exit");
        let log = self.log();
        assert!(st.success(), "{st:?}\n{log}");
        assert!(logs::pool_intact(&log), "pool not intact:\n{log}");
        log
    }

    /// Runs `zctarget ctl --socket <admin socket> args`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let socket = self.expect.admin_socket.as_ref().expect("admin_socket set");
        Command::new(bin())
            .arg("ctl")
            .arg("--socket")
            .arg(socket)
            .args(args)
            .output()
            .expect("run ctl")
    }

    /// `GET path` from the metrics endpoint: status code and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (code, body)
    }

    /// Value of the metric line `name{labels}`.
    /// Polls `series` until it reads `value` or `limit` passes; the last
    /// value read.
    pub fn wait_metric(&self, series: &str, value: f64, limit: Duration) -> Option<f64> {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.metric(series);
            if v == Some(value) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `limit`) until the daemon's log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `limit`) until this gateway's role for the shared
    /// rbd volume `volume` is `role` (owner, follower, fenced), by the
    /// `zctarget_volume_lock_role` metric.
    pub fn wait_role(&self, volume: &str, role: &str, limit: Duration) -> bool {
        let series = format!("zctarget_volume_lock_role{{volume=\"{volume}\",role=\"{role}\"}}");
        self.wait_metric(&series, 1.0, limit) == Some(1.0)
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// VmRSS of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        crate::procfs::rss_kib(self.pid())
    }

    /// Open file descriptors of the daemon.
    pub fn fd_count(&self) -> usize {
        crate::procfs::fd_count(self.pid())
    }

    /// Waits (bounded) until the last line reporting the pool after a
    /// connection ended reports every chunk free, and at least `min_lines`
    /// such lines exist (see [`logs::pool_full_after_disconnects`]).
    pub fn pool_full_after_disconnects(&self, min_lines: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if logs::pool_full_after_disconnects(&self.log(), min_lines) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Writes `text` as `<dir>/<tag>.toml`.
pub fn write_config(dir: &Path, tag: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, text).expect("config");
    path
}
