//! The live volume table: every open volume in a numbered slot.
//!
//! Slots are never reused, so a number held by a LUN, a namespace or a
//! reactor's handle cache always means the same volume (or, once removed,
//! nothing). The table is locked only when a volume is added or removed and
//! when a reactor opens its handle for a slot the first time; commands use
//! the reactor's cached handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use zctarget_backends::rbd::RbdSpec;
use zctarget_backends::{BackendKind, Volume, VolumeSpec};
use zctarget_config as config;

/// Opened volumes by slot.
#[derive(Default)]
pub struct Exports {
    slots: RwLock<Vec<Option<Arc<Volume>>>>,
    /// Bumped on every removal, so reactors drop handles of removed slots.
    generation: AtomicU64,
    /// Poked whenever a volume is added or replaced (a reload, a rejoin):
    /// the peer link's thread, its one listener, installs forwarders then
    /// instead of looking on a timer.
    added: tokio::sync::Notify,
}

impl Exports {
    /// Opens (creating sparse files where needed) every configured volume.
    pub fn open(cfg: &config::Config) -> anyhow::Result<Self> {
        let exports = Self::default();
        for v in &cfg.volumes {
            exports.add(open_volume(v, cfg.cluster.as_ref())?);
        }
        Ok(exports)
    }

    /// Adds an opened volume; returns its slot.
    pub fn add(&self, volume: Arc<Volume>) -> usize {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        slots.push(Some(volume));
        let slot = slots.len() - 1;
        drop(slots);
        self.added.notify_one();
        slot
    }

    /// Puts `volume` in a new slot in place of the one in `old` (a
    /// redefined volume), in one step so lookups by name never miss.
    pub fn replace(&self, old: usize, volume: Arc<Volume>) -> usize {
        let (new, previous) = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            slots.push(Some(volume));
            let previous = slots.get_mut(old).and_then(Option::take);
            (slots.len() - 1, previous)
        };
        self.generation.fetch_add(1, Ordering::Release);
        self.added.notify_one();
        if let Some(v) = previous {
            if let Err(e) = v.sync() {
                tracing::warn!(volume = v.name(), error = %e, "flush on replacement failed");
            }
        }
        new
    }

    /// Removes the volume in `slot` (flushing it); in-flight commands keep
    /// their handles until they finish.
    pub fn remove(&self, slot: usize) -> Option<Arc<Volume>> {
        let removed = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            slots.get_mut(slot).and_then(Option::take)
        };
        self.generation.fetch_add(1, Ordering::Release);
        if let Some(v) = &removed {
            if let Err(e) = v.sync() {
                tracing::warn!(volume = v.name(), error = %e, "flush on removal failed");
            }
        }
        removed
    }

    /// The volume in `slot`.
    pub fn get(&self, slot: usize) -> Option<Arc<Volume>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.get(slot).cloned().flatten()
    }

    /// The slot of the volume named `name`.
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.name() == name))
    }

    /// Every open volume with its slot.
    pub fn volumes(&self) -> Vec<(usize, Arc<Volume>)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, Arc::clone(v.as_ref()?))))
            .collect()
    }

    /// Resolves after a volume was added or replaced since the last call
    /// returned (one listener: a poke while nobody waits is kept for it).
    pub async fn added(&self) {
        self.added.notified().await;
    }

    /// Changes whenever a volume is removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Opens (creating if needed) the volume a config entry describes; in a
/// `cluster` an rbd volume is shared with the other gateways.
pub fn open_volume(
    v: &config::Volume,
    cluster: Option<&config::Cluster>,
) -> anyhow::Result<Arc<Volume>> {
    open_volume_with_progress(v, cluster, &mut |done, total| {
        tracing::info!(volume = %v.name, done, total, "preallocating");
    })
}

/// Bytes allocated per step when preallocating (one progress report each).
const PREALLOCATE_STEP: u64 = 1 << 30;

/// [`open_volume`], reporting (bytes done, total) while a `preallocate`d
/// file is being allocated.
pub fn open_volume_with_progress(
    v: &config::Volume,
    cluster: Option<&config::Cluster>,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<Arc<Volume>> {
    if let (true, Some(path), Some(size)) = (v.preallocate, &v.path, v.size) {
        if !path.exists() {
            preallocate(path, size.0, progress)
                .with_context(|| format!("preallocating {}", path.display()))?;
        }
    }
    let spec = VolumeSpec {
        name: v.name.clone(),
        kind: match v.backend {
            config::BackendKind::File => BackendKind::File,
            config::BackendKind::Null => BackendKind::Null,
            config::BackendKind::Memory => BackendKind::Memory,
            config::BackendKind::Rbd => BackendKind::Rbd,
        },
        path: v.path.clone(),
        size: v.size.map(|s| s.0),
        block_size: v.block_size,
        read_only: v.read_only,
        direct_io: v.direct_io,
        write_delay: std::time::Duration::from_millis(u64::from(v.write_delay_ms)),
        rbd: v.rbd.as_ref().map(|r| RbdSpec {
            pool: r.pool.clone(),
            namespace: r.namespace.clone(),
            image: r.image.clone(),
            ceph_conf: r.ceph_conf.clone(),
            ceph_user: r.ceph_user.clone(),
            keyring: r.keyring.clone(),
            rados_timeout_secs: r.rados_timeout_secs,
            sharing: match cluster {
                None => zctarget_backends::rbd::Sharing::Exclusive,
                Some(c) => zctarget_backends::rbd::Sharing::Cluster {
                    preferred: v.owner.as_ref().or(c.gateways.first()) == Some(&c.gateway),
                },
            },
        }),
    };
    let volume = Volume::open(&spec).with_context(|| format!("opening volume {:?}", v.name))?;
    tracing::info!(
        volume = %v.name,
        capacity = volume.info().capacity,
        block_size = volume.info().block_size,
        read_only = volume.info().read_only,
        "volume open"
    );
    Ok(volume)
}

/// Creates `path` with `size` bytes allocated, in steps so progress can be
/// shown. On failure the partial file is removed.
fn preallocate(
    path: &std::path::Path,
    size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut done = 0u64;
    progress(0, size);
    while done < size {
        let step = PREALLOCATE_STEP.min(size - done);
        let (Ok(offset), Ok(len)) = (i64::try_from(done), i64::try_from(step)) else {
            break;
        };
        // SAFETY: plain syscall on a file descriptor `file` owns for the
        // duration of the call; no memory is shared with the kernel.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
        done += step;
        progress(done, size);
    }
    file.sync_all()?;
    Ok(())
}
