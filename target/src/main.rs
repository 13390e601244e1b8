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
    /// Run the target (the default). Without --config: the embedded default,
    /// a 1 GiB sparse volume in ./zctarget-data/ on 127.0.0.1.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let command = cli.command.unwrap_or(Command::Serve {
        config: None,
        data_dir: PathBuf::from("zctarget-data"),
    });
    match command {
        Command::CheckConfig { file } => check_config(&file),
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

fn serve(config_path: Option<&Path>, data_dir: &Path) -> anyhow::Result<()> {
    let config = match config_path {
        Some(path) => {
            Config::load(path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let dir = data_dir
                .canonicalize()
                .with_context(|| format!("resolving {}", data_dir.display()))?;
            Config::embedded_default(&dir)
        }
    };
    // Handlers first: a SIGTERM that arrives right after the attach lines
    // are printed must already mean "shut down cleanly".
    let signals = Signals::install()?;
    let daemon = Daemon::start(config)?;
    print_attach_help(&daemon);
    signals.wait()?;
    daemon.shutdown()
}

/// Prints how to attach, on stdout (logs go to stderr).
fn print_attach_help(daemon: &Daemon) {
    let shared = daemon.shared();
    let mut out = String::from("zctarget is serving. Attach with:\n");
    for t in shared.exports.iscsi_targets() {
        for p in &shared.iscsi_portals {
            out += &format!(
                "  iscsiadm -m discovery -t sendtargets -p {p}\n  iscsiadm -m node -T {} -p {p} --login\n",
                t.config.iqn
            );
        }
    }
    for s in shared.exports.nvme_subsystems() {
        for p in &shared.nvme_portals {
            out += &format!(
                "  nvme connect -t tcp -a {} -s {} -n {}\n",
                p.ip(),
                p.port(),
                s.config.nqn
            );
        }
    }
    out += "Stop with Ctrl-C (SIGINT) or SIGTERM.\n";
    print!("{out}");
}

/// SIGINT/SIGTERM handlers, installed before anything is served.
struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("signal runtime")?;
        let (term, int) = rt.block_on(async {
            anyhow::Ok((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        Ok(Self { rt, term, int })
    }

    /// Blocks until SIGINT or SIGTERM.
    fn wait(self) -> anyhow::Result<()> {
        let Signals {
            rt,
            mut term,
            mut int,
        } = self;
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        });
        Ok(())
    }
}
