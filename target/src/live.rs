//! Live configuration: a changed configuration (from the admin API or a
//! SIGHUP re-read) is validated, its new volumes are opened, it is
//! persisted atomically, and only then applied to the running daemon.
//!
//! Order of a change, so that a failure leaves nothing half done:
//! 1. validate the whole new configuration (same rules as a file);
//! 2. open every added or redefined volume — a failure here aborts with
//!    nothing changed;
//! 3. write the file (temp file, fsync, rename, fsync the folder);
//! 4. swap the volumes in, update iSCSI targets and NVMe subsystems
//!    (sessions stay; LUN/namespace changes raise the protocols' change
//!    notices), then close the volumes nothing maps any more.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use zctarget_backends::Volume;
use zctarget_config::Config;

use crate::daemon::Shared;

/// The configuration the daemon runs now, and where it is persisted.
pub struct LiveConfig {
    current: Mutex<Config>,
    path: Option<PathBuf>,
}

/// What applying a configuration did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyReport {
    /// One line per change made.
    pub changes: Vec<String>,
    /// `[server]` settings that differ but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

impl LiveConfig {
    /// Wraps the configuration the daemon started with.
    pub fn new(config: Config, path: Option<PathBuf>) -> Self {
        Self {
            current: Mutex::new(config),
            path,
        }
    }

    /// The file changes are persisted to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The current configuration. Holding the guard serialises changes.
    pub fn lock(&self) -> MutexGuard<'_, Config> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A configuration whose new volumes are open, ready to commit.
pub struct Prepared {
    config: Config,
    /// (name, opened volume) for added or redefined volumes.
    opened: Vec<(String, Arc<Volume>)>,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The configuration would be invalid.
    #[error("invalid configuration:\n{0}")]
    Invalid(String),
    /// A volume could not be opened or created.
    #[error("{0:#}")]
    Volume(anyhow::Error),
    /// The configuration file could not be written.
    #[error("persisting the configuration: {0:#}")]
    Persist(anyhow::Error),
}

/// Validates `new` against the running daemon and opens its new volumes.
/// `progress` hears about long volume creations (bytes done, total).
pub fn prepare(
    current: &Config,
    new: Config,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Prepared, ChangeError> {
    new.validate()
        .map_err(|e| ChangeError::Invalid(e.to_string()))?;
    let mut opened = Vec::new();
    for v in &new.volumes {
        if current.volume(&v.name) == Some(v) {
            continue;
        }
        let cluster = current.cluster.as_ref();
        let volume = crate::exports::open_volume_with_progress(v, cluster, &mut |done, total| {
            progress(&v.name, done, total)
        })
        .map_err(ChangeError::Volume)?;
        opened.push((v.name.clone(), volume));
    }
    Ok(Prepared {
        config: new,
        opened,
    })
}

/// Applies a prepared configuration to the running daemon, persisting it
/// first when `persist_to` is given. `current` is replaced on success.
pub fn commit(
    shared: &Shared,
    current: &mut Config,
    prepared: Prepared,
    persist_to: Option<&Path>,
) -> Result<ApplyReport, ChangeError> {
    if let Some(path) = persist_to {
        persist(&prepared.config, path).map_err(ChangeError::Persist)?;
    }
    let Prepared {
        config: new,
        opened,
    } = prepared;
    let mut report = ApplyReport::default();
    if new.server != current.server {
        report.needs_restart = server_differences(&current.server, &new.server);
    }
    if new.cluster != current.cluster {
        report.needs_restart.push("cluster".to_owned());
    }
    let exports = &shared.exports;
    for (name, volume) in opened {
        match exports.slot_of(&name) {
            Some(old) => {
                exports.replace(old, volume);
                report.changes.push(format!("volume {name} redefined"));
            }
            None => {
                exports.add(volume);
                report.changes.push(format!("volume {name} added"));
            }
        }
    }
    describe_changes(
        &mut report.changes,
        "iSCSI target",
        &current.iscsi_targets,
        &new.iscsi_targets,
        |t| &t.iqn,
    );
    describe_changes(
        &mut report.changes,
        "NVMe subsystem",
        &current.nvme_subsystems,
        &new.nvme_subsystems,
        |s| &s.nqn,
    );
    let roles = crate::cluster::Roles::new(shared.cluster.as_ref(), &new).observing(exports);
    shared.iscsi.apply(&new.iscsi_targets, exports, &roles);
    shared.nvmf.apply(&new.nvme_subsystems, exports, &roles);
    for (slot, v) in exports.volumes() {
        if new.volume(v.name()).is_none() {
            exports.remove(slot);
            report.changes.push(format!("volume {} removed", v.name()));
        }
    }
    for line in &report.changes {
        tracing::info!("configuration change: {line}");
    }
    for line in &report.needs_restart {
        tracing::warn!("configuration change needs a restart: {line}");
    }
    *current = new;
    Ok(report)
}

/// "<what> <name> added / updated / removed" for each entry, by name.
fn describe_changes<T: PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
) {
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => out.push(format!("{what} {} added", name(n))),
            Some(o) if o != n => out.push(format!("{what} {} updated", name(n))),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| name(n) == name(o)) {
            out.push(format!("{what} {} removed", name(o)));
        }
    }
}

/// Names of the `[server]` settings that differ.
fn server_differences(a: &zctarget_config::Server, b: &zctarget_config::Server) -> Vec<String> {
    let a = toml::Value::try_from(a).ok();
    let b = toml::Value::try_from(b).ok();
    let (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) = (a, b) else {
        return vec!["server".to_owned()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("server.{k}"))
        .collect()
}

/// Writes `config` to `path` so that a crash leaves either the old or the
/// new file: a temporary file in the same folder, fsync, rename over the
/// old one, fsync the folder (the rename itself must be durable).
pub fn persist(config: &Config, path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .context("configuration path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let text = format!(
        "# Written by zctarget: changes made through `zctarget ctl` are saved here.\n{}",
        config.to_toml_string()
    );
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Re-reads the configuration file and applies the difference (SIGHUP).
/// A file with errors changes nothing.
pub fn reload(shared: &Shared) -> anyhow::Result<ApplyReport> {
    let path = shared
        .live
        .path()
        .context("the daemon runs without a configuration file")?
        .to_path_buf();
    let new = Config::load(&path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
    let mut current = shared.live.lock();
    let prepared = prepare(&current, new, &mut |name, done, total| {
        tracing::info!(volume = name, done, total, "creating volume");
    })?;
    Ok(commit(shared, &mut current, prepared, None)?)
}
