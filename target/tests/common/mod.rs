//! Helpers shared by the crash-safety and resource-limit tests: spawning the
//! real `zctarget` binary on a file-backed volume (and restarting it on the
//! same files), signals, its log, its RSS, self-describing data blocks, and
//! a minimal synchronous iSCSI initiator (`iscsi`).
//!
//! Every test crate using this also includes the NVMe/TCP host as
//! `nvme_client` (see `target/tests/nvmf.rs`).

pub mod iscsi;

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_zctarget");
pub const NQN: &str = "nqn.2026-11.io.zctarget.test:crash";
pub const IQN: &str = "iqn.2026-11.io.zctarget.test:crash";
pub const HOST: &str = "nqn.2026-11.io.zctarget.test:crash-host";

/// How a daemon is configured.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `io_engine`: "uring" or "epoll".
    pub engine: &'static str,
    /// Size of the file-backed volume `data.img`.
    pub volume_size: &'static str,
    /// Logical block size of the volume.
    pub block_size: u32,
    /// `buffer_pool`.
    pub buffer_pool: &'static str,
    /// More `[server]` lines.
    pub extra_server: String,
    /// `admin_socket` ("" = none).
    pub admin_socket: &'static str,
    /// The NVMe subsystem's `hosts` ACL entry ("*": any host).
    pub nvme_host: &'static str,
}

impl Spec {
    pub fn new(engine: &'static str) -> Self {
        Self {
            engine,
            volume_size: "8MiB",
            block_size: 4096,
            buffer_pool: "16MiB",
            extra_server: String::new(),
            admin_socket: "",
            nvme_host: HOST,
        }
    }
}

/// A running daemon (killed on drop). The data directory belongs to the
/// test, so a restart finds the same volume file.
pub struct Daemon {
    pub child: Child,
    pub iscsi_port: u16,
    pub nvme_port: u16,
    log_path: PathBuf,
    started: Instant,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Kills only our own child (by its handle), then reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports: all bound at once before any is
/// released, so the kernel cannot hand out the same one twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// Starts `zctarget serve` in `dir` (volume `data.img`, exported as LUN 0
/// of [`IQN`] and namespace 1 of [`NQN`]) on fresh loopback ports, and waits
/// (bounded) until both listeners accept. `tag` names the log file.
///
/// The daemon binds port 0 itself and the ports are read from its log: a
/// port picked by the test and released before the daemon binds it could
/// be handed to a daemon of a concurrently running test in between.
pub fn start(dir: &Path, spec: &Spec, tag: &str) -> Daemon {
    let mut d = spawn(dir, spec, tag, [0, 0]);
    d.wait_listening();
    d
}

/// Spawns `zctarget serve` like [`start`] on the given ports (0: any), and
/// returns at once (ports still 0 are learnt by [`Daemon::wait_listening`]).
pub fn spawn(dir: &Path, spec: &Spec, tag: &str, [iscsi_port, nvme_port]: [u16; 2]) -> Daemon {
    let cfg = format!(
        "[server]\nadmin_socket = \"{}\"\niscsi_listen = [\"127.0.0.1:{iscsi_port}\"]\nnvme_listen = [\"127.0.0.1:{nvme_port}\"]\n\
         io_engine = \"{}\"\nreactors = 2\npoison_on_release = true\nbuffer_pool = \"{}\"\n{}\n\
         [[volumes]]\nname = \"data\"\npath = \"data.img\"\nsize = \"{}\"\nblock_size = {}\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"data\"]\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"data\"]\nhosts = [\"{}\"]\n",
        spec.admin_socket,
        spec.engine,
        spec.buffer_pool,
        spec.extra_server,
        spec.volume_size,
        spec.block_size,
        spec.nvme_host
    );
    let cfg_path = dir.join(format!("{tag}.toml"));
    std::fs::write(&cfg_path, cfg).expect("config");
    let log_path = dir.join(format!("{tag}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
    let started = Instant::now();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn zctarget");
    Daemon {
        child,
        iscsi_port,
        nvme_port,
        log_path,
        started,
    }
}

/// Waits (bounded) for a daemon started with port 0 for `protocol`
/// ("iscsi", "nvme-tcp") to log the port it bound and to accept on it;
/// panics with the log if it exits first. Letting the daemon pick avoids
/// the race of a port picked by the test, released, and handed to another
/// test's daemon before this one binds it.
pub fn wait_logged_port(child: &mut Child, log_path: &Path, protocol: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if let Ok(Some(st)) = child.try_wait() {
            panic!("daemon exited during start-up ({st:?}):\n{log}");
        }
        if let Some(port) = logged_port(&log, protocol) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        assert!(Instant::now() < deadline, "daemon did not listen:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The port of the daemon's `protocol` listener, from its "listening" log
/// line (`protocol=iscsi portal=127.0.0.1:3260`).
fn logged_port(log: &str, protocol: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains(" listening ") && l.contains(&format!("protocol={protocol} ")))
        .find_map(|l| {
            let portal = l.split("portal=").nth(1)?.split_whitespace().next()?;
            portal.rsplit(':').next()?.parse().ok()
        })
}

/// Errors meaning "the connection went away" (daemon killed, or it closed
/// the connection) rather than a protocol violation or a hang.
pub fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    ) && !e.to_string().contains("C2HTermReq")
}

impl Daemon {
    /// Waits (bounded) until the daemon listens on both portals, learning
    /// ports it was given as 0 from its log; panics with the log if it
    /// exits first.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("daemon exited during start-up ({st:?}):\n{}", self.log());
            }
            let log = self.log();
            if self.iscsi_port == 0 {
                self.iscsi_port = logged_port(&log, "iscsi").unwrap_or(0);
            }
            if self.nvme_port == 0 {
                self.nvme_port = logged_port(&log, "nvme-tcp").unwrap_or(0);
            }
            let up = |port: u16| port != 0 && TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.iscsi_port) && up(self.nvme_port) {
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

    /// The folder holding the daemon's configuration, log and volume.
    pub fn dir(&self) -> &Path {
        self.log_path.parent().expect("log in a folder")
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

    /// VmRSS of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors of the daemon.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits (bounded) until the last line reporting the pool after a
    /// connection ended ("queue ended" for NVMe/TCP, "session ended" for
    /// iSCSI) reports every chunk free, and `min_lines` such lines exist.
    pub fn pool_full_after_disconnects(&self, min_lines: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = self.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("queue ended") || l.contains("session ended"))
                .collect();
            if lines.len() >= min_lines {
                if let Some(line) = lines.last() {
                    let field = |name: &str| {
                        line.split(name)
                            .nth(1)
                            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                            .and_then(|n| n.parse::<u64>().ok())
                    };
                    if let (Some(f), Some(t)) = (field("pool_free="), field("pool_total=")) {
                        if f == t {
                            return true;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Raises this process's soft RLIMIT_NOFILE to at least `want` (up to the
/// hard limit); children (the daemon) inherit it. Returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct on our stack.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        if r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
        }
    }
    r.rlim_cur
}

// ---------------------------------------------------------------------------
// Self-describing blocks.

pub const MAGIC: &[u8; 8] = b"ZCRASH01";

/// A block's content for `(block, version)`: magic, block number, version,
/// writer, a pattern derived from them, and a CRC32C over everything before
/// the last 4 bytes.
pub fn record(bs: usize, block: u64, version: u64, writer: u64) -> Vec<u8> {
    let mut b = vec![0u8; bs];
    b[0..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&block.to_le_bytes());
    b[16..24].copy_from_slice(&version.to_le_bytes());
    b[24..32].copy_from_slice(&writer.to_le_bytes());
    let mut x = (block << 32 ^ version).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in b[32..bs - 4].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    let crc = crc32c::crc32c(&b[..bs - 4]);
    b[bs - 4..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// What a block on disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Never written (all zeroes): version 0.
    Blank,
    /// A whole record of this version.
    Version(u64),
}

/// Decodes the block `block` read back; `Err` says why it is not a whole
/// record of that block (torn, foreign, corrupt).
pub fn check_record(bytes: &[u8], block: u64) -> Result<Found, String> {
    let bs = bytes.len();
    if bytes.iter().all(|&b| b == 0) {
        return Ok(Found::Blank);
    }
    if &bytes[0..8] != MAGIC {
        return Err(format!(
            "block {block}: no magic (first bytes {:02x?})",
            &bytes[..16]
        ));
    }
    let crc = u32::from_le_bytes(bytes[bs - 4..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..bs - 4]) != crc {
        return Err(format!(
            "block {block}: checksum mismatch (torn or corrupt)"
        ));
    }
    let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    if at(8) != block {
        return Err(format!("block {block}: holds block {}", at(8)));
    }
    let version = at(16);
    if record(bs, block, version, at(24)) != bytes {
        return Err(format!(
            "block {block}: pattern mismatch at version {version}"
        ));
    }
    Ok(Found::Version(version))
}

/// One block as a short description: "v<version> w<writer>", "blank" or
/// why it is not a record (for failure reports).
pub fn describe_block(bytes: &[u8], block: u64) -> String {
    match check_record(bytes, block) {
        Ok(Found::Blank) => "blank".to_owned(),
        Ok(Found::Version(v)) => {
            let writer = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
            format!("v{v} w{writer}")
        }
        Err(e) => e,
    }
}

/// PIDs of the processes holding a listening TCP socket on `port` (from
/// /proc/net/tcp{,6} and /proc/*/fd; for failure reports).
pub fn port_owners(port: u16) -> Vec<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if *state == "0A" && p == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let fds = std::fs::read_dir(entry.path().join("fd"));
        let holds = fds.into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// A small xorshift generator (seeded per test, printed, so a failure can
/// be replayed by hand).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A seed from `ZC_TEST_SEED` (to replay a failure), else from the
    /// clock.
    pub fn seed() -> u64 {
        if let Some(seed) = std::env::var("ZC_TEST_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return seed;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
