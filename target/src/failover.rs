//! Ownership of the rbd volumes a `[cluster]` shares, and fenced failover.
//!
//! One thread per gateway watches every shared rbd volume, every
//! [`POLL`]:
//! - **follower**: reads who holds the image's exclusive lock and whether
//!   that client still watches the image header. A client that died or is
//!   frozen stops pinging its watch and the OSD drops it after
//!   `osd_client_watch_timeout` (30 s by default); a lock with no owner, or
//!   whose owner no longer watches, for `cluster.takeover_after_ms` in a
//!   row (a lock nobody holds: [`FREE_LOCK_FACTOR`] times that) — or
//!   whose owner the peer link's heartbeat lost (every peer unreachable
//!   for `takeover_after_ms`, its watch still registered: a hung gateway)
//!   — is taken over: the old owner's client is blocklisted and its lock
//!   broken (`rbd_lock_break`), then the lock is acquired. Only then does
//!   this gateway write. Several survivors may race: one acquires, the
//!   others find it locked again and keep following.
//! - **owner**: checks once a second that librbd still holds the lock;
//!   if not, and the lock is not this client's any more (broken by a
//!   survivor, client blocklisted), the gateway is fenced. A write failing
//!   with ESHUTDOWN (blocklisted) fences it at once, on the reactor.
//! - any role change is published: the ANA groups of every NVMe controller
//!   (ANA Change event) and the ALUA port groups of every LUN (ASYMMETRIC
//!   ACCESS STATE CHANGED unit attention).
//!
//! - **fenced**: after `cluster.rejoin_after_ms` (0: never) the gateway
//!   reopens the volume with a fresh client, as a follower ([`rejoin`],
//!   also `ctl volume rejoin`).
//!
//! Ownership moves back only on request, never by itself: [`move_owner`]
//! (`ctl volume release [--to GATEWAY]` / `acquire`) or a host's SET
//! TARGET PORT GROUPS ([`request_owner`]). A release for a named gateway
//! writes its id into the image's metadata (`rbd::HANDOVER_KEY`); a
//! follower that finds the lock free and itself named takes it at once,
//! one not named waits twice the free lock's grace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zctarget_backends::rbd::{Image, Role};

use crate::daemon::Shared;

/// How often the lock and the watchers are read.
pub const POLL: Duration = Duration::from_millis(200);

/// An owner checks it still holds its lock every this many polls.
const OWNER_CHECK_EVERY: u64 = 5;

/// A lock nobody holds is taken after this many `takeover_after_ms`.
pub const FREE_LOCK_FACTOR: u32 = 4;

/// The monitor thread; stopped (and joined) on drop.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Starts watching the shared rbd volumes of `shared` (a `[cluster]`
    /// only; `None` otherwise).
    pub fn start(shared: &Arc<Shared>) -> anyhow::Result<Option<Monitor>> {
        let Some(cluster) = shared.cluster.clone() else {
            return Ok(None);
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (s, flag) = (Arc::clone(shared), Arc::clone(&stop));
        let after = Duration::from_millis(u64::from(cluster.takeover_after_ms));
        let rejoin_after = (cluster.rejoin_after_ms > 0)
            .then(|| Duration::from_millis(u64::from(cluster.rejoin_after_ms)));
        let thread = std::thread::Builder::new()
            .name("failover".into())
            .spawn(move || run(&s, &flag, after, rejoin_after))
            .map_err(|e| anyhow::anyhow!("spawning the failover thread: {e}"))?;
        Ok(Some(Monitor {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn shared_images(shared: &Shared) -> Vec<(String, Arc<Image>)> {
    shared
        .exports
        .volumes()
        .into_iter()
        .filter_map(|(_, v)| {
            let img = Arc::clone(v.rbd_image()?);
            (img.role() != Role::Solo).then(|| (v.name().to_owned(), img))
        })
        .collect()
}

/// A follower's "owner gone since": when its look first found the lock's
/// owner gone (or the lock free), and the image's role-change count then —
/// the time is only good while the role has not changed since (a takeover
/// by a host's request or `ctl` happens outside the monitor).
type GoneSince = HashMap<String, (u64, Instant)>;

fn run(shared: &Shared, stop: &AtomicBool, after: Duration, rejoin_after: Option<Duration>) {
    let mut dead_since = GoneSince::new();
    let mut fenced_since: HashMap<String, Instant> = HashMap::new();
    // The roles the registries were built with: every change from here on
    // is published and counted.
    let mut seen: HashMap<String, Role> = shared_images(shared)
        .iter()
        .map(|(n, i)| (n.clone(), i.role()))
        .collect();
    for tick in 0u64.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(POLL);
        let images = shared_images(shared);
        for (name, img) in &images {
            match img.role() {
                // One OSD round trip (the lock is asserted): once a second.
                // A write fails with ESHUTDOWN as soon as the client is
                // blocklisted, without waiting for this.
                Role::Owner if tick % OWNER_CHECK_EVERY != 0 => {}
                Role::Owner => match img.lost_lock() {
                    Ok(false) => {}
                    Ok(true) => {
                        img.fence("the exclusive lock is no longer this client's");
                    }
                    Err(e) => tracing::warn!(volume = %name, error = %e, "checking the lock"),
                },
                Role::Follower => {
                    follow(shared, name, img, after, &mut dead_since);
                }
                Role::Fenced => {
                    let since = *fenced_since
                        .entry(name.clone())
                        .or_insert_with(Instant::now);
                    if rejoin_after.is_some_and(|d| since.elapsed() >= d) {
                        // Back as a follower with a fresh client, by itself;
                        // a failure (Ceph unreachable) is retried later.
                        fenced_since.remove(name);
                        match rejoin(shared, name) {
                            Ok(m) => tracing::warn!(volume = %name, role = %m.role,
                                "rejoined by itself after being fenced"),
                            Err(e) => tracing::warn!(volume = %name, error = %format!("{e:#}"),
                                "rejoining after being fenced failed; will retry"),
                        }
                    }
                }
                Role::Solo => {}
            }
            if img.role() != Role::Fenced {
                fenced_since.remove(name);
            }
        }
        let now: HashMap<String, Role> =
            images.iter().map(|(n, i)| (n.clone(), i.role())).collect();
        if now != seen {
            // Fencing by a failed write happens on a reactor: counted here,
            // for both ways.
            for (n, r) in &now {
                if *r == Role::Fenced && seen.get(n).is_some_and(|o| *o != Role::Fenced) {
                    shared.counters.lock_losses.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(volume = %n, "fenced: reporting Inaccessible / Standby");
                }
            }
            publish(shared);
            seen = now;
        }
    }
}

/// A follower's tick: take the lock over once its owner has been gone
/// for `after`.
fn follow(shared: &Shared, name: &str, img: &Image, after: Duration, dead_since: &mut GoneSince) {
    let view = match img.lock_view() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(volume = %name, error = %e, "reading the lock owner");
            return;
        }
    };
    img.observe_lock(&view);
    // The heartbeat: every peer gateway unreachable over the peer link for
    // `after` counts as the owner gone even while its watch lives on.
    let heartbeat_lost = shared
        .peer
        .as_ref()
        .and_then(|l| l.all_peers_unreachable_for())
        .is_some_and(|d| d >= after);
    if view.owner.is_some() && view.owner_watching && !heartbeat_lost {
        dead_since.remove(name);
        return;
    }
    // A free lock (its owner released it on request, or closed the image
    // at a clean shutdown) waits longer than a dead owner's. A release on
    // request names the gateway it is for in the image's metadata: that
    // one takes it at once, the others leave it to that one for longer.
    let grace = if heartbeat_lost {
        // Silence already lasted `after`.
        Duration::ZERO
    } else if view.owner.is_none() {
        let me = shared.cluster.as_ref().map(|c| c.gateway.as_str());
        match img.handover_target() {
            Ok(Some(t)) if Some(t.as_str()) == me => Duration::ZERO,
            Ok(Some(_)) => after * FREE_LOCK_FACTOR * 2,
            Ok(None) => after * FREE_LOCK_FACTOR,
            Err(e) => {
                tracing::warn!(volume = %name, error = %e, "reading the handover name");
                after * FREE_LOCK_FACTOR
            }
        }
    } else {
        after
    };
    // Since this gateway last became a follower, not before: a time
    // noted in an earlier spell of following would skip the grace.
    let changes = img.role_changes();
    let since = match dead_since.get(name) {
        Some(&(c, t)) if c == changes => t,
        _ => {
            let now = Instant::now();
            dead_since.insert(name.to_owned(), (changes, now));
            now
        }
    };
    if since.elapsed() < grace {
        return;
    }
    let decided = Instant::now();
    match img.take_over(view.owner.as_deref()) {
        Ok(t) => {
            dead_since.remove(name);
            clear_handover(name, img);
            let c = &shared.counters;
            c.lock_acquisitions.fetch_add(1, Ordering::Relaxed);
            if view.owner.is_some() {
                c.failovers.fetch_add(1, Ordering::Relaxed);
            }
            let published = publish(shared);
            let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_millis();
            tracing::warn!(
                volume = %name,
                old_owner = view.owner.as_deref().unwrap_or("(none)"),
                owner_gone_ms = ms(since, decided),
                blocklist_ms = t.broken.map_or(0, |b| ms(decided, b)),
                lock_ms = ms(t.broken.unwrap_or(decided), t.locked),
                ana_ms = ms(t.locked, published),
                heartbeat_lost,
                "failover: took the exclusive lock over; this gateway is the owner"
            );
        }
        Err(e) => {
            // Another survivor was faster, or the cluster is unreachable:
            // keep following and look again.
            tracing::warn!(volume = %name, error = %e, "taking the lock over failed");
        }
    }
}

/// The new owner removes the name of the gateway a release was for (best
/// effort: a stale name only delays a later free lock's takeover).
fn clear_handover(volume: &str, img: &Image) {
    if let Err(e) = img.clear_handover() {
        tracing::warn!(volume, error = %e, "clearing the handover name");
    }
}

/// Brings the ANA groups and ALUA port groups in line with the current
/// roles; returns when done.
pub fn publish(shared: &Shared) -> Instant {
    let roles = {
        let cfg = shared.live.lock();
        crate::cluster::Roles::new(shared.cluster.as_ref(), &cfg).observing(&shared.exports)
    };
    if let Some(groups) = roles.ana_groups() {
        for (grpid, state) in shared.nvmf.set_ana_groups(&groups) {
            tracing::info!(group = grpid, state = ?state, "ANA group state changed");
        }
    }
    shared.iscsi.refresh_alua(&shared.exports, &roles);
    Instant::now()
}

/// What [`move_owner`] did.
#[derive(Debug, serde::Serialize)]
pub struct Moved {
    /// The volume.
    pub volume: String,
    /// This gateway's role afterwards.
    pub role: String,
}

/// Cooperative ownership move of `volume`, one gateway's half: `release`
/// (this gateway is the owner: refuse new writes, let librbd drain and
/// release the lock, report the non-owner state; with `to`, for that
/// gateway, which then takes it at its next look — failback in one call)
/// or acquire (this gateway is a follower: take the free lock — never a
/// held one: failback does not break locks).
pub fn move_owner(
    shared: &Shared,
    volume: &str,
    release: bool,
    to: Option<&str>,
) -> anyhow::Result<Moved> {
    let img = shared_images(shared)
        .into_iter()
        .find(|(n, _)| n == volume)
        .map(|(_, i)| i)
        .ok_or_else(|| anyhow::anyhow!("no shared rbd volume named {volume:?}"))?;
    if release {
        if let Some(to) = to {
            let known = shared
                .cluster
                .as_ref()
                .is_some_and(|c| c.gateways.iter().any(|g| g == to) && c.gateway != to);
            if !known {
                anyhow::bail!("{to:?} is not another gateway of this cluster");
            }
            if img.role() == Role::Owner {
                img.name_handover(to)
                    .map_err(|e| anyhow::anyhow!("releasing {volume:?} for {to}: {e}"))?;
            }
        }
        img.release()
            .map_err(|e| anyhow::anyhow!("releasing {volume:?}: {e}"))?;
        shared
            .counters
            .lock_releases
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(volume, "ownership released on request");
    } else {
        if img.role() != Role::Follower {
            anyhow::bail!(
                "{volume:?}: this gateway is {:?}, not a follower",
                img.role()
            );
        }
        let view = img
            .lock_view()
            .map_err(|e| anyhow::anyhow!("{volume:?}: {e}"))?;
        if let Some(o) = view.owner {
            anyhow::bail!("{volume:?} is still locked by {o}: release it on its owner first");
        }
        img.take_over(None)
            .map_err(|e| anyhow::anyhow!("acquiring {volume:?}: {e}"))?;
        clear_handover(volume, &img);
        shared
            .counters
            .lock_acquisitions
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(volume, "ownership acquired on request");
    }
    publish(shared);
    Ok(Moved {
        volume: volume.to_owned(),
        role: format!("{:?}", img.role()).to_lowercase(),
    })
}

/// SET TARGET PORT GROUPS (explicit ALUA) asked for target port group
/// `group` — gateway number `group` — to own shared rbd volume `volume`;
/// this gateway does its part:
/// - its own group: an owner has nothing to do; a follower takes a free
///   lock, or one whose owner stopped watching the image (blocklisted and
///   broken first, as a failover); a lock a live gateway holds is never
///   broken on a host's word: with the peer link the owner is asked to
///   release it (`peer::Link::handover`), without it the command fails;
/// - another group: an owner names that gateway in the image's metadata
///   and releases the lock (drained); the named gateway takes it at its
///   next look, the others leave it to that one; a follower has nothing
///   to do when a live
///   peer holds the lock and there is only one peer, else refused (it
///   cannot make another gateway take the lock).
///
/// Blocking (librbd lock calls): run off the reactor. An error is the
/// reason the command failed (SET TARGET PORT GROUPS COMMAND FAILED).
pub fn request_owner(shared: &Shared, volume: &str, group: u16) -> anyhow::Result<()> {
    let cluster = shared
        .cluster
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("not in a cluster"))?;
    let img = shared_images(shared)
        .into_iter()
        .find(|(n, _)| n == volume)
        .map(|(_, i)| i)
        .ok_or_else(|| anyhow::anyhow!("{volume:?} is not a shared rbd volume"))?;
    let me = cluster.number();
    let role = img.role();
    if role == Role::Fenced {
        anyhow::bail!("{volume:?}: this gateway is fenced (rejoin first)");
    }
    let c = &shared.counters;
    if group == me {
        if role == Role::Owner {
            return Ok(());
        }
        let view = img.lock_view()?;
        img.observe_lock(&view);
        if view.owner.is_some() && view.owner_watching {
            // A live owner's lock is never broken on a host's word; with
            // the peer link the owner is asked to release it (a handover).
            let Some(link) = shared.peer.as_ref() else {
                anyhow::bail!(
                    "{volume:?}: a live gateway holds the lock and there is no peer link to ask \
                     it to release (ctl volume release there)"
                );
            };
            link.handover(shared, volume)?;
            tracing::warn!(
                volume,
                "SET TARGET PORT GROUPS: the owner handed the lock over"
            );
            return Ok(());
        }
        img.take_over(view.owner.as_deref())?;
        clear_handover(volume, &img);
        c.lock_acquisitions.fetch_add(1, Ordering::Relaxed);
        if view.owner.is_some() {
            c.failovers.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            volume,
            old_owner = view.owner.as_deref().unwrap_or("(none)"),
            "SET TARGET PORT GROUPS: took the lock; this gateway is the owner"
        );
    } else if role == Role::Owner {
        let to = usize::from(group)
            .checked_sub(1)
            .and_then(|i| cluster.gateways.get(i))
            .ok_or_else(|| anyhow::anyhow!("no gateway {group}"))?;
        img.name_handover(to)?;
        img.release()?;
        c.lock_releases.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            volume,
            for_gateway = group,
            "SET TARGET PORT GROUPS: released the lock for another gateway"
        );
    } else {
        let view = img.lock_view()?;
        img.observe_lock(&view);
        let peer_owns = view.owner.is_some() && view.owner_watching;
        if !(peer_owns && cluster.gateways.len() == 2) {
            anyhow::bail!(
                "{volume:?}: this gateway follows and cannot make gateway {group} take the lock"
            );
        }
        return Ok(());
    }
    publish(shared);
    Ok(())
}

/// Reopens the shared rbd volume `volume`, fenced on this gateway, with a
/// fresh RADOS client (the old one is blocklisted): it follows (another
/// gateway holds the lock), reads again and reports the non-owner state.
/// The volume gets a new slot; its LUNs and namespaces move to it as when
/// a volume is redefined.
pub fn rejoin(shared: &Shared, volume: &str) -> anyhow::Result<Moved> {
    let (_, img) = shared_images(shared)
        .into_iter()
        .find(|(n, _)| n == volume)
        .ok_or_else(|| anyhow::anyhow!("no shared rbd volume named {volume:?}"))?;
    if img.role() != Role::Fenced {
        anyhow::bail!(
            "{volume:?}: this gateway is {:?}; only a fenced gateway rejoins",
            img.role()
        );
    }
    drop(img);
    // Held until the tables are remapped: no configuration change between.
    let cfg = shared.live.lock();
    let v = cfg
        .volume(volume)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{volume:?} is not configured"))?;
    let fresh = crate::exports::open_volume(&v, shared.cluster.as_ref())?;
    let role = fresh.rbd_image().map(|i| i.role());
    let exports = &shared.exports;
    let old = exports
        .slot_of(volume)
        .ok_or_else(|| anyhow::anyhow!("{volume:?} is not open"))?;
    exports.replace(old, fresh);
    let roles = crate::cluster::Roles::new(shared.cluster.as_ref(), &cfg).observing(exports);
    shared.iscsi.apply(&cfg.iscsi_targets, exports, &roles);
    shared.nvmf.apply(&cfg.nvme_subsystems, exports, &roles);
    drop(cfg);
    publish(shared);
    tracing::warn!(volume, role = ?role, "rejoined with a fresh RADOS client");
    Ok(Moved {
        volume: volume.to_owned(),
        role: format!("{:?}", role.unwrap_or(Role::Solo)).to_lowercase(),
    })
}
