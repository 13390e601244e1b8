//! `zctarget`: the daemon's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use zctarget::daemon::Daemon;
use zctarget::logging::{self, LogFormat};
use zctarget_config::Config;

/// Zero-copy userspace iSCSI and NVMe/TCP storage target.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format on stderr (RUST_LOG filters).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the target (the default). Without --config: <data-dir>/zctarget.toml
    /// if an earlier run saved changes there, else the embedded default (a
    /// 1 GiB sparse volume in ./zctarget-data/ on 127.0.0.1).
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Folder for the embedded default's volume.
        #[arg(long, default_value = "zctarget-data")]
        data_dir: PathBuf,
    },
    /// Validate a configuration file: exit 0, or exit 2 listing every problem.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Administer a running daemon through its admin socket.
    Ctl(zctarget::ctl::CtlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        config: None,
        data_dir: PathBuf::from("zctarget-data"),
    });
    // `ctl` prints its own results; the daemon's log setup is not for it.
    if !matches!(command, Command::Ctl(_)) {
        logging::init(cli.log_format);
    }
    match command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Ctl(args) => zctarget::ctl::run(args),
        Command::Serve { config, data_dir } => match serve(config.as_deref(), &data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("zctarget: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{}:{e}", file.display());
            }
            ExitCode::from(2)
        }
    }
}

/// File the embedded default's changes are saved to, in the data folder.
const SAVED_CONFIG: &str = "zctarget.toml";

fn serve(config_path: Option<&Path>, data_dir: &Path) -> anyhow::Result<()> {
    let (config, persist_to) = match config_path {
        Some(path) => {
            let config =
                Config::load(path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
            (config, std::path::absolute(path)?)
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let dir = data_dir
                .canonicalize()
                .with_context(|| format!("resolving {}", data_dir.display()))?;
            let saved = dir.join(SAVED_CONFIG);
            let config = if saved.exists() {
                tracing::info!(config = %saved.display(), "using the configuration saved by an earlier run");
                Config::load(&saved).map_err(|e| anyhow::anyhow!("{}:\n{e}", saved.display()))?
            } else {
                Config::embedded_default(&dir)
            };
            (config, saved)
        }
    };
    // Handlers first: a SIGTERM that arrives right after the attach lines
    // are printed must already mean "shut down cleanly".
    let signals = Signals::install()?;
    let admin_socket = config.server.admin_socket.clone();
    let metrics_listen = config.server.metrics_listen;
    let daemon = Daemon::start_with(config, Some(persist_to))?;
    let _admin = match admin_socket {
        Some(path) => match zctarget::admin::server::start(&path, daemon.shared()) {
            Ok(a) => Some(a),
            Err(e) if path == Path::new(zctarget_config::Server::DEFAULT_ADMIN_SOCKET) => {
                tracing::warn!(error = %format!("{e:#}"), "admin API off (set server.admin_socket to a writable path)");
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let _metrics = match metrics_listen {
        Some(addr) => Some(zctarget::metrics::start(addr, daemon.shared())?),
        None => None,
    };
    print_attach_help(&daemon);
    notify(&[sd_notify::NotifyState::Ready]);
    signals.wait(daemon.shared())?;
    notify(&[sd_notify::NotifyState::Stopping]);
    daemon.shutdown()
}

/// Tells systemd (Type=notify) about our state; a no-op outside systemd.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Prints how to attach, on stdout (logs go to stderr).
fn print_attach_help(daemon: &Daemon) {
    let shared = daemon.shared();
    let mut out = String::from("zctarget is serving. Attach with:\n");
    for t in shared.iscsi.targets() {
        for p in &shared.iscsi_portals {
            out += &format!(
                "  iscsiadm -m discovery -t sendtargets -p {p}\n  iscsiadm -m node -T {} -p {p} --login\n",
                t.iqn
            );
        }
    }
    for s in shared.nvmf.subsystems() {
        for p in &shared.nvme_portals {
            out += &format!(
                "  nvme connect -t tcp -a {} -s {} -n {}\n",
                p.ip(),
                p.port(),
                s.nqn
            );
        }
    }
    out += "Stop with Ctrl-C (SIGINT) or SIGTERM.\n";
    print!("{out}");
}

/// SIGINT/SIGTERM/SIGHUP handlers, installed before anything is served.
struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("signal runtime")?;
        let (term, int, hup) = rt.block_on(async {
            anyhow::Ok((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        Ok(Self { rt, term, int, hup })
    }

    /// Blocks until SIGINT or SIGTERM; each SIGHUP re-reads the
    /// configuration file and applies the difference.
    fn wait(self, shared: &std::sync::Arc<zctarget::daemon::Shared>) -> anyhow::Result<()> {
        let Signals {
            rt,
            mut term,
            mut int,
            mut hup,
        } = self;
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT received"); break; }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP received: re-reading the configuration");
                        // systemd ≥ 253 wants the monotonic time with RELOADING=1.
                        match sd_notify::NotifyState::monotonic_usec_now() {
                            Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
                            Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
                        }
                        let shared = std::sync::Arc::clone(shared);
                        let r = tokio::task::spawn_blocking(move || zctarget::live::reload(&shared)).await;
                        match r {
                            Ok(Ok(report)) if report.changes.is_empty() => tracing::info!("configuration unchanged"),
                            Ok(Ok(report)) => tracing::info!(changes = report.changes.len(), "configuration applied"),
                            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "configuration not applied; the daemon keeps running as before"),
                            Err(e) => tracing::error!(error = %e, "reload task failed"),
                        }
                        notify(&[sd_notify::NotifyState::Ready]);
                    }
                }
            }
        });
        Ok(())
    }
}
