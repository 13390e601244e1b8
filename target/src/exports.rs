//! What the daemon exports: opened volumes, and the iSCSI targets and NVMe
//! subsystems that map them.

use std::sync::Arc;

use anyhow::Context;
use zctarget_backends::{BackendKind, Volume, VolumeSpec};
use zctarget_config::{self as config, Config};

/// An iSCSI target and its LUNs (indices into [`Exports::volumes`]).
#[derive(Debug, Clone)]
pub struct IscsiTargetExport {
    /// The configuration entry.
    pub config: config::IscsiTarget,
    /// LUN n → volume index.
    pub luns: Vec<usize>,
}

/// An NVMe subsystem and its namespaces (NSID n+1 → volume index).
#[derive(Debug, Clone)]
pub struct NvmeSubsystemExport {
    /// The configuration entry.
    pub config: config::NvmeSubsystem,
    /// Namespace n (NSID n+1) → volume index.
    pub namespaces: Vec<usize>,
}

/// Volumes and their exports.
pub struct Exports {
    volumes: Vec<Arc<Volume>>,
    iscsi_targets: Vec<IscsiTargetExport>,
    nvme_subsystems: Vec<NvmeSubsystemExport>,
}

impl Exports {
    /// Opens (creating sparse files where needed) every configured volume.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let mut volumes = Vec::with_capacity(config.volumes.len());
        for v in &config.volumes {
            let spec = VolumeSpec {
                name: v.name.clone(),
                kind: match v.backend {
                    config::BackendKind::File => BackendKind::File,
                    config::BackendKind::Null => BackendKind::Null,
                    config::BackendKind::Memory => BackendKind::Memory,
                },
                path: v.path.clone(),
                size: v.size.map(|s| s.0),
                block_size: v.block_size,
                read_only: v.read_only,
                direct_io: v.direct_io,
            };
            let volume =
                Volume::open(&spec).with_context(|| format!("opening volume {:?}", v.name))?;
            tracing::info!(
                volume = %v.name,
                capacity = volume.info().capacity,
                block_size = volume.info().block_size,
                read_only = volume.info().read_only,
                "volume open"
            );
            volumes.push(volume);
        }
        let index_of = |name: &str| -> anyhow::Result<usize> {
            volumes
                .iter()
                .position(|v| v.name() == name)
                .with_context(|| format!("no volume named {name:?}"))
        };
        let iscsi_targets = config
            .iscsi_targets
            .iter()
            .map(|t| {
                Ok(IscsiTargetExport {
                    config: t.clone(),
                    luns: t
                        .luns
                        .iter()
                        .map(|l| index_of(l))
                        .collect::<anyhow::Result<_>>()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let nvme_subsystems = config
            .nvme_subsystems
            .iter()
            .map(|s| {
                Ok(NvmeSubsystemExport {
                    config: s.clone(),
                    namespaces: s
                        .namespaces
                        .iter()
                        .map(|n| index_of(n))
                        .collect::<anyhow::Result<_>>()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            volumes,
            iscsi_targets,
            nvme_subsystems,
        })
    }

    /// Every volume.
    pub fn volumes(&self) -> &[Arc<Volume>] {
        &self.volumes
    }

    /// Every iSCSI target.
    pub fn iscsi_targets(&self) -> &[IscsiTargetExport] {
        &self.iscsi_targets
    }

    /// The iSCSI target named `iqn`.
    pub fn iscsi_target(&self, iqn: &str) -> Option<&IscsiTargetExport> {
        self.iscsi_targets.iter().find(|t| t.config.iqn == iqn)
    }

    /// Every NVMe subsystem.
    pub fn nvme_subsystems(&self) -> &[NvmeSubsystemExport] {
        &self.nvme_subsystems
    }

    /// The NVMe subsystem named `nqn`.
    pub fn nvme_subsystem(&self, nqn: &str) -> Option<&NvmeSubsystemExport> {
        self.nvme_subsystems.iter().find(|s| s.config.nqn == nqn)
    }
}
