//! The throwaway Ceph cluster of the RBD tests (`tests/ceph/cluster.sh`,
//! started by `tests/run.sh`, which exports its ceph.conf as
//! `ZCTARGET_TEST_CEPH_CONF`) and daemons serving RBD images on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::spec::{spawn, Spec};
use crate::Daemon;

/// The cluster's ceph.conf, or `None` (with the reason printed: the test
/// is then skipped) when `ZCTARGET_TEST_CEPH_CONF` is unset.
pub fn ceph_conf() -> Option<String> {
    match std::env::var("ZCTARGET_TEST_CEPH_CONF") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!(
                "skipped: ZCTARGET_TEST_CEPH_CONF is not set (tests/run.sh starts a Ceph \
                 cluster with tests/ceph/cluster.sh and sets it)"
            );
            None
        }
    }
}

/// A fresh image name per test and process.
pub fn image(tag: &str) -> String {
    format!("zc-{tag}-{}", std::process::id())
}

/// The standard daemon ([`Spec`]) with a 64 MiB RBD image of 4 KiB blocks
/// instead of its file; `extra` adds keys to the volume's table.
pub fn rbd_spec(engine: &'static str, conf: &str, image: &str, extra: &str) -> Spec {
    let mut s = Spec::new(engine);
    s.block_size = 4096;
    s.volume = Some(format!(
        "backend = \"rbd\"\npool = \"rbd\"\nimage = \"{image}\"\nsize = \"64MiB\"\n\
         ceph_conf = \"{conf}\"\n{extra}"
    ));
    s
}

/// Starts a daemon; while the image is still locked by a killed
/// predecessor (its watch has not expired yet) the daemon refuses to
/// start, so this retries for up to `patience`.
pub fn start_rbd(dir: &Path, spec: &Spec, tag: &str, patience: Duration) -> Daemon {
    let deadline = Instant::now() + patience;
    for attempt in 0.. {
        let mut d = spawn(dir, spec, &format!("{tag}-{attempt}"), [0, 0]);
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = d.child.try_wait() {
                let log = d.log();
                assert!(
                    log.contains("is locked by") && Instant::now() < deadline,
                    "daemon exited ({st:?}):\n{log}"
                );
                break;
            }
            if listening(&d) {
                d.wait_listening();
                return d;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    unreachable!()
}

fn listening(d: &Daemon) -> bool {
    d.log()
        .lines()
        .filter(|l| l.contains(" listening "))
        .count()
        >= 2
}

/// `tests/ceph/cluster.sh` acting on the cluster whose ceph.conf is `conf`
/// (the script's `DIR` is the conf's folder): the monitor is stopped and
/// started by the PID the script recorded.
pub struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    /// The cluster of `conf`.
    pub fn of(conf: &str) -> Self {
        let dir = Path::new(conf).parent().expect("ceph.conf has a folder");
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn run(&self, what: &str) -> Result<(), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceph/cluster.sh");
        let out = Command::new("timeout")
            .args(["90", "bash"])
            .arg(&script)
            .arg(what)
            .env("DIR", &self.dir)
            .env("CEPH_CONF", self.dir.join("ceph.conf"))
            .output()
            .map_err(|e| format!("cluster.sh {what}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "cluster.sh {what}: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Kills the monitor (SIGKILL, as a crash). The returned guard starts
    /// it again when dropped, however the test ends (panics included),
    /// unless [`Down::start`] already did.
    pub fn stop_mon(&self) -> Down<'_> {
        self.stop("mon")
    }

    /// Kills the OSD, like [`Cluster::stop_mon`].
    pub fn stop_osd(&self) -> Down<'_> {
        self.stop("osd")
    }

    fn stop(&self, which: &'static str) -> Down<'_> {
        let down = Down(self, which, true);
        self.run(&format!("stop-{which}"))
            .unwrap_or_else(|e| panic!("{e}"));
        down
    }
}

/// A daemon (`mon` or `osd`) stopped by [`Cluster::stop_mon`] or
/// [`Cluster::stop_osd`].
pub struct Down<'a>(&'a Cluster, &'static str, bool);

impl Down<'_> {
    /// Starts the daemon again on its data and waits until it answers.
    pub fn start(mut self) {
        self.2 = false;
        self.0
            .run(&format!("start-{}", self.1))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if self.2 {
            if let Err(e) = self.0.run(&format!("start-{}", self.1)) {
                eprintln!("{e}");
            }
        }
    }
}
