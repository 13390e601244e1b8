//! The standard daemon of the crash-safety, resource-limit, pool-pressure
//! and portal tests: one file-backed volume `data.img` in the test's folder
//! (so a restart finds the same file), exported as LUN 0 of [`IQN`] and
//! namespace 1 of [`NQN`] for [`HOST`], on both protocols.

use std::path::Path;

use crate::daemon::{write_config, Daemon};

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
    /// The volume's keys other than `name` and `block_size`, replacing the
    /// file `data.img` of `volume_size` (e.g. an rbd image).
    pub volume: Option<String>,
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
            volume: None,
        }
    }
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
         [[volumes]]\nname = \"data\"\n{}\nblock_size = {}\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"data\"]\n\n\
         [[nvme_subsystems]]\nnqn = \"{NQN}\"\nnamespaces = [\"data\"]\nhosts = [\"{}\"]\n",
        spec.admin_socket,
        spec.engine,
        spec.buffer_pool,
        spec.extra_server,
        spec.volume.clone().unwrap_or_else(|| format!(
            "path = \"data.img\"\nsize = \"{}\"",
            spec.volume_size
        )),
        spec.block_size,
        spec.nvme_host
    );
    let config = write_config(dir, tag, &cfg);
    Daemon::spawn(
        &config,
        &dir.join(format!("{tag}.log")),
        [iscsi_port, nvme_port],
    )
}
