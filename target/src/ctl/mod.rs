//! `zctarget ctl`: the admin API from the command line. Tables for people
//! by default, the raw JSON result with `--json`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::Value;

use crate::admin::client;

mod render;
mod request;

use render::render;
use request::request;

/// `zctarget ctl` arguments.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The daemon's admin socket.
    #[arg(long, default_value = zctarget_config::Server::DEFAULT_ADMIN_SOCKET)]
    socket: PathBuf,
    /// Print the JSON result instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Engine, portals, pool, session and controller counts.
    Status,
    /// The running configuration (CHAP secrets hidden), or re-read the file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Backing volumes.
    Volume {
        #[command(subcommand)]
        action: VolumeAction,
    },
    /// iSCSI targets, LUNs, initiator ACLs, CHAP.
    Iscsi {
        #[command(subcommand)]
        action: IscsiAction,
    },
    /// NVMe subsystems, namespaces, host ACLs.
    Nvme {
        #[command(subcommand)]
        action: NvmeAction,
    },
    /// iSCSI sessions.
    Session {
        #[command(subcommand)]
        action: SessionAction,
    },
    /// NVMe controllers.
    Controller {
        #[command(subcommand)]
        action: ControllerAction,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print the running configuration as TOML.
    Show,
    /// Re-read the configuration file and apply the difference (as SIGHUP).
    Reload,
}

#[derive(Subcommand, Debug)]
enum VolumeAction {
    /// List volumes and where they are exported.
    List,
    /// Create (or open an existing) volume.
    Add {
        /// Volume name.
        name: String,
        /// Backing file or block device (default: <name>.img next to the config file).
        #[arg(long)]
        path: Option<String>,
        /// Size, e.g. 10GiB (needed to create a file, and for null/memory).
        #[arg(long)]
        size: Option<String>,
        /// Logical block size: 512 or 4096.
        #[arg(long)]
        block_size: Option<u32>,
        /// file, null, memory or rbd.
        #[arg(long)]
        backend: Option<String>,
        #[command(flatten)]
        rbd: Box<RbdArgs>,
        /// Refuse writes.
        #[arg(long)]
        read_only: bool,
        /// Open with O_DIRECT.
        #[arg(long)]
        direct_io: bool,
        /// Allocate the whole file now instead of leaving it sparse.
        #[arg(long)]
        preallocate: bool,
    },
    /// Remove a volume (refused while exported, unless --force).
    Remove {
        /// Volume name.
        name: String,
        /// Also unmap it from every target and subsystem.
        #[arg(long)]
        force: bool,
    },
    /// Failback, first half, on the owner gateway of a shared rbd volume:
    /// stop writing, drain, release the exclusive lock, report the
    /// non-owner state.
    Release {
        /// Volume name.
        name: String,
        /// The gateway the lock is for: it takes the lock at its next look
        /// (failback in one call); without it, `volume acquire` there.
        #[arg(long)]
        to: Option<String>,
    },
    /// Failback, second half, on the gateway that is to own the volume:
    /// take the lock the owner released and report Optimized.
    Acquire {
        /// Volume name.
        name: String,
    },
    /// On the gateway that is to own a shared rbd volume, with the peer
    /// link: the owner releases it over the link, then this gateway
    /// acquires it (release and acquire in one call).
    Handover {
        /// Volume name.
        name: String,
    },
    /// On a gateway fenced for a shared rbd volume: reopen it with a fresh
    /// Ceph client, as a follower.
    Rejoin {
        /// Volume name.
        name: String,
    },
}

/// Where an `--backend rbd` volume's image lives.
#[derive(Args, Debug)]
struct RbdArgs {
    /// RBD pool (rbd volumes).
    #[arg(long)]
    pool: Option<String>,
    /// RBD image; created with --size when missing (rbd volumes).
    #[arg(long)]
    image: Option<String>,
    /// RADOS namespace in the pool (rbd volumes).
    #[arg(long)]
    namespace: Option<String>,
    /// ceph.conf (default: librados' search, e.g. /etc/ceph/ceph.conf).
    #[arg(long)]
    ceph_conf: Option<String>,
    /// cephx user id without `client.` (default: admin).
    #[arg(long)]
    ceph_user: Option<String>,
    /// Keyring overriding the conf's.
    #[arg(long)]
    keyring: Option<String>,
    /// Seconds the Ceph client waits for the cluster (connect, monitor and
    /// OSD operations) before failing with ETIMEDOUT (default: the conf's).
    #[arg(long)]
    rados_timeout_secs: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum IscsiAction {
    /// Targets.
    Target {
        #[command(subcommand)]
        action: TargetAction,
    },
    /// LUN maps.
    Lun {
        #[command(subcommand)]
        action: LunAction,
    },
    /// Initiator ACL.
    Initiator {
        #[command(subcommand)]
        action: AclAction,
    },
    /// CHAP credentials.
    Chap {
        #[command(subcommand)]
        action: ChapAction,
    },
}

#[derive(Subcommand, Debug)]
enum TargetAction {
    /// List targets.
    List,
    /// Add a target.
    Add {
        /// Target name (iqn./eui./naa.).
        iqn: String,
        /// TargetAlias.
        #[arg(long)]
        alias: Option<String>,
        /// Allowed initiator (repeat; default "*": any).
        #[arg(long = "initiator")]
        initiators: Vec<String>,
    },
    /// Remove a target (refused with sessions, unless --force).
    Remove {
        /// Target name.
        iqn: String,
        /// End its sessions.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LunAction {
    /// Map a volume as a LUN (the lowest free number unless --lun).
    Add {
        /// Target name.
        iqn: String,
        /// Volume name.
        volume: String,
        /// LUN number.
        #[arg(long)]
        lun: Option<u32>,
    },
    /// Unmap a LUN.
    Remove {
        /// Target name.
        iqn: String,
        /// LUN number.
        lun: u32,
    },
}

#[derive(Subcommand, Debug)]
enum AclAction {
    /// Allow a name.
    Add {
        /// Target IQN / subsystem NQN.
        owner: String,
        /// Initiator name / host NQN ("*": any).
        name: String,
    },
    /// Disallow a name (its sessions / controllers end).
    Remove {
        /// Target IQN / subsystem NQN.
        owner: String,
        /// Initiator name / host NQN.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum ChapAction {
    /// Require CHAP (or, with --mutual, authenticate the target too).
    Set {
        /// Target name.
        iqn: String,
        /// CHAP user name.
        #[arg(long)]
        username: String,
        /// Secret, 12..255 bytes (visible to other local users in the
        /// process list: prefer --secret-file).
        #[arg(
            long,
            required_unless_present = "secret_file",
            conflicts_with = "secret_file"
        )]
        secret: Option<String>,
        /// Read the secret from this file (one line; a trailing newline is
        /// dropped).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Set the target's credentials for mutual CHAP.
        #[arg(long)]
        mutual: bool,
    },
    /// Stop requiring CHAP (or only drop mutual CHAP).
    Clear {
        /// Target name.
        iqn: String,
        /// Only mutual CHAP.
        #[arg(long)]
        mutual: bool,
    },
}

#[derive(Subcommand, Debug)]
enum NvmeAction {
    /// Subsystems.
    Subsystem {
        #[command(subcommand)]
        action: SubsystemAction,
    },
    /// Namespaces.
    Namespace {
        #[command(subcommand)]
        action: NamespaceAction,
    },
    /// Host ACL and in-band authentication secrets.
    Host {
        #[command(subcommand)]
        action: NvmeHostAction,
    },
}

#[derive(Subcommand, Debug)]
enum NvmeHostAction {
    /// Allow a host; with --dhchap-key it must authenticate (DH-HMAC-CHAP).
    /// Adding an allowed host with a key sets or rotates its secrets for
    /// new connections.
    #[command(group(ArgGroup::new("host_key").args(["dhchap_key", "dhchap_key_file"])))]
    #[command(group(ArgGroup::new("ctrl_key")
        .args(["dhchap_ctrl_key", "dhchap_ctrl_key_file"])
        .requires("host_key")))]
    Add {
        /// Subsystem NQN.
        owner: String,
        /// Host NQN ("*": any).
        name: String,
        /// Host secret, `DHHC-1:xx:<base64>:` (`nvme gen-dhchap-key`;
        /// visible in the process list: prefer --dhchap-key-file).
        #[arg(long)]
        dhchap_key: Option<String>,
        /// Read the host secret from this file.
        #[arg(long)]
        dhchap_key_file: Option<PathBuf>,
        /// Controller secret, for bidirectional authentication (needs a
        /// host secret).
        #[arg(long)]
        dhchap_ctrl_key: Option<String>,
        /// Read the controller secret from this file.
        #[arg(long)]
        dhchap_ctrl_key_file: Option<PathBuf>,
    },
    /// Disallow a host (its controllers end) and drop its secrets.
    Remove {
        /// Subsystem NQN.
        owner: String,
        /// Host NQN.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum SubsystemAction {
    /// List subsystems.
    List,
    /// Add a subsystem.
    Add {
        /// Subsystem NQN.
        nqn: String,
        /// Allowed host NQN (repeat; default "*": any).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Remove a subsystem (refused with controllers, unless --force).
    Remove {
        /// Subsystem NQN.
        nqn: String,
        /// Disconnect its controllers.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum NamespaceAction {
    /// Attach a volume as a namespace (the lowest free NSID unless --nsid).
    Add {
        /// Subsystem NQN.
        nqn: String,
        /// Volume name.
        volume: String,
        /// NSID.
        #[arg(long)]
        nsid: Option<u32>,
    },
    /// Detach a namespace.
    Remove {
        /// Subsystem NQN.
        nqn: String,
        /// NSID.
        nsid: u32,
    },
}

#[derive(Subcommand, Debug)]
enum SessionAction {
    /// List iSCSI sessions.
    List,
    /// End a session.
    Disconnect {
        /// Its TSIH.
        tsih: u16,
    },
}

#[derive(Subcommand, Debug)]
enum ControllerAction {
    /// List NVMe controllers.
    List,
    /// Tear a controller down (every queue closes).
    Disconnect {
        /// Its CNTLID.
        cntlid: u16,
    },
}

/// Which table to print a result as.
enum View {
    Status,
    Text(&'static str),
    Table(&'static [&'static str]),
    Changes,
}

/// Runs `zctarget ctl`: exit 0 on success, 1 when the daemon refused, 2
/// when it could not be reached.
pub fn run(mut args: CtlArgs) -> ExitCode {
    if let Err(e) = read_secret_files(&mut args.command) {
        eprintln!("zctarget ctl: {e:#}");
        return ExitCode::from(2);
    }
    let (method, params, view) = request(args.command);
    let mut progress = |p: &Value| {
        let done = p.get("done").and_then(Value::as_u64).unwrap_or(0);
        let total = p.get("total").and_then(Value::as_u64).unwrap_or(0).max(1);
        let volume = p.get("volume").and_then(Value::as_str).unwrap_or("");
        eprint!(
            "\rcreating {volume}: {:3}% ({done} of {total} bytes)",
            done * 100 / total
        );
        if done >= total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    };
    match client::call(&args.socket, method, params, &mut progress) {
        Err(e) => {
            eprintln!("zctarget ctl: {e:#}");
            ExitCode::from(2)
        }
        Ok(Err(e)) => {
            eprintln!("zctarget ctl: {method}: {}", e.message);
            ExitCode::from(1)
        }
        Ok(Ok(result)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
            } else {
                print!("{}", render(&view, &result));
            }
            ExitCode::SUCCESS
        }
    }
}

/// Fills the secrets given as files (`--secret-file`, `--dhchap-key-file`,
/// `--dhchap-ctrl-key-file`) into their values, so that no secret needs to
/// appear on a command line.
fn read_secret_files(c: &mut CtlCommand) -> anyhow::Result<()> {
    fn read(value: &mut Option<String>, file: &Option<PathBuf>) -> anyhow::Result<()> {
        let Some(path) = file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret file {}", path.display()))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        anyhow::ensure!(
            !line.is_empty() && !line.contains('\n'),
            "the secret file {} must hold one non-empty line",
            path.display()
        );
        *value = Some(line.to_owned());
        Ok(())
    }
    match c {
        CtlCommand::Iscsi {
            action:
                IscsiAction::Chap {
                    action:
                        ChapAction::Set {
                            secret,
                            secret_file,
                            ..
                        },
                },
        } => read(secret, secret_file),
        CtlCommand::Nvme {
            action:
                NvmeAction::Host {
                    action:
                        NvmeHostAction::Add {
                            dhchap_key,
                            dhchap_key_file,
                            dhchap_ctrl_key,
                            dhchap_ctrl_key_file,
                            ..
                        },
                },
        } => {
            read(dhchap_key, dhchap_key_file)?;
            read(dhchap_ctrl_key, dhchap_ctrl_key_file)
        }
        _ => Ok(()),
    }
}
