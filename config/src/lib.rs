//! zctarget's TOML configuration: schema, defaults and validation.
//!
//! ```toml
//! [server]
//! iscsi_listen = ["127.0.0.1:3260"]
//! nvme_listen = ["127.0.0.1:4420"]
//!
//! [[volumes]]
//! name = "vol0"
//! path = "vol0.img"
//! size = "1GiB"
//!
//! [[iscsi_targets]]
//! iqn = "iqn.2026-11.io.zctarget:vol0"
//! luns = ["vol0"]
//!
//! [[nvme_subsystems]]
//! nqn = "nqn.2026-11.io.zctarget:vol0"
//! namespaces = ["vol0"]
//! ```
//!
//! Parsing happens in two stages: TOML is deserialized into a mirror of the
//! schema whose values carry their source spans (`raw`), then `validate`
//! converts it to [`Config`], collecting *every* semantic problem as a
//! [`ConfigError`] with line, column and field path. Syntax and type errors
//! come from serde, which stops at the first one.

pub mod dhchap;
mod error;
mod model;
pub mod names;
mod raw;
mod size;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::{
    BackendKind, Chap, Cluster, Config, IoEngine, IscsiTarget, NonOwnerState, NvmeHostKey,
    NvmeSubsystem, RbdImage, Server, StatusPolicy, UnknownKeyword, Volume, VolumeMap, ZeroCopyMode,
    ANY, REDACTED,
};
pub use size::{ByteSize, SizeError};

/// Name of the volume (and LUN/namespace) in [`Config::embedded_default`].
pub const DEFAULT_VOLUME: &str = "default";
/// Target name in [`Config::embedded_default`].
pub const DEFAULT_IQN: &str = "iqn.2026-11.io.zctarget:default";
/// Subsystem name in [`Config::embedded_default`].
pub const DEFAULT_NQN: &str = "nqn.2026-11.io.zctarget:default";

impl Config {
    /// Parse and validate TOML text. Relative volume paths are resolved
    /// against `base_dir` (normally the config file's folder). The
    /// filesystem is not touched.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
        validate::build(raw, text, base_dir)
    }

    /// Read and validate the file at `path`; relative volume paths resolve
    /// against the file's (absolute) folder. A read failure is reported as a
    /// single error without location.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::whole_file(format!("cannot read {}: {e}", path.display())))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::from_toml_str(&text, &base)
    }

    /// The configuration used when the daemon starts without a config file:
    /// a 1 GiB sparse file volume `default` at `<data_dir>/default.img`
    /// exported as iSCSI target [`DEFAULT_IQN`] (LUN 0) and NVMe subsystem
    /// [`DEFAULT_NQN`] (NSID 1), listening on 127.0.0.1:3260 and :4420.
    /// `config/examples/default.toml` is the same configuration as a file.
    pub fn embedded_default(data_dir: &Path) -> Config {
        Config {
            server: Server::default(),
            volumes: vec![Volume {
                name: DEFAULT_VOLUME.to_owned(),
                path: Some(data_dir.join("default.img")),
                size: Some(ByteSize::gib(1)),
                block_size: Volume::DEFAULT_BLOCK_SIZE,
                read_only: false,
                direct_io: false,
                preallocate: false,
                write_delay_ms: 0,
                backend: BackendKind::File,
                rbd: None,
                identity: None,
                owner: None,
            }],
            iscsi_targets: vec![IscsiTarget {
                iqn: DEFAULT_IQN.to_owned(),
                alias: None,
                luns: VolumeMap::from_names(VolumeMap::LUN_BASE, [DEFAULT_VOLUME]),
                initiators: vec![ANY.to_owned()],
                chap: None,
                mutual_chap: None,
            }],
            nvme_subsystems: vec![NvmeSubsystem {
                nqn: DEFAULT_NQN.to_owned(),
                namespaces: VolumeMap::from_names(VolumeMap::NSID_BASE, [DEFAULT_VOLUME]),
                hosts: vec![ANY.to_owned()],
                dhchap_hashes: Vec::new(),
                dhchap_dhgroups: Vec::new(),
                host_keys: Vec::new(),
            }],
            cluster: None,
        }
    }

    /// Serialize to TOML that [`Config::from_toml_str`] reads back to an equal
    /// `Config` (given an absolute or identical `base_dir`). Volume paths are
    /// written as stored, i.e. already resolved; non-UTF-8 paths are written
    /// lossily.
    pub fn to_toml_string(&self) -> String {
        // Cannot fail: every field serializes as a string, bool, integer within
        // i64 (see `ser_usize`), array or table, and `Option`s are skipped when
        // `None`; those are exactly the shapes TOML can represent.
        toml::to_string(self).expect("Config always serializes to TOML")
    }

    /// Validate a programmatically built or modified configuration with the
    /// same rules as a file (e.g. before persisting an admin change). Line and
    /// column numbers refer to [`Config::to_toml_string`]'s output.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        Self::from_toml_str(&self.to_toml_string(), Path::new("/")).map(drop)
    }

    /// The volume named `name`.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}
