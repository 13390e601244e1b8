//! One image shared by the gateways of a cluster: exactly one of them — the
//! owner — holds the exclusive lock and writes; the others (followers) have
//! the image open without the lock, serve reads and refuse writes; a
//! gateway whose RADOS client was blocklisted (fenced) never writes again.
//!
//! The lock is taken with `rbd_lock_acquire` (librbd's managed mode): the
//! owner refuses to hand it over when another client's write asks for it,
//! so there is no lock ping-pong; it moves only by `take_over` (break the
//! lock of an owner that is gone — `rbd_lock_break` blocklists the old
//! owner's client first, since `rbd_blocklist_on_break_lock` is true by
//! default — then acquire) or by the owner's `release`.

use std::ffi::{c_char, CStr};
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::client::cstr;
use super::ffi::{self, Watcher, LOCK_MODE_EXCLUSIVE};
use super::{Image, RbdError};

/// What this process may do with an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A single gateway (no `[cluster]`): it holds the lock from open to
    /// close, or the image is read-only.
    Solo,
    /// This gateway holds the lock and writes.
    Owner,
    /// Open without the lock: reads only, writes refused.
    Follower,
    /// This gateway lost the lock (its client was blocklisted, or the lock
    /// was broken): it never writes again with this client.
    Fenced,
}

impl Role {
    fn code(self) -> u8 {
        match self {
            Role::Solo => 0,
            Role::Owner => 1,
            Role::Follower => 2,
            Role::Fenced => 3,
        }
    }

    fn from_code(v: u8) -> Role {
        match v {
            0 => Role::Solo,
            1 => Role::Owner,
            2 => Role::Follower,
            _ => Role::Fenced,
        }
    }
}

/// The role cell of an image (read on every write), and whether, as a
/// follower, it last saw another live gateway hold the lock.
#[derive(Debug)]
pub(super) struct RoleCell {
    role: AtomicU8,
    /// A follower's last look at the lock found a live owner (its watch
    /// registered): a refused write then belongs to that owner's path for
    /// good, not to a passing transition. Cleared by every role change.
    peer_owns: AtomicBool,
    /// Role changes so far: what a follower's observer keyed on its role
    /// (the failover monitor's "owner gone since") is still valid for.
    changes: AtomicU64,
}

impl RoleCell {
    pub(super) fn new(r: Role) -> Self {
        RoleCell {
            role: AtomicU8::new(r.code()),
            peer_owns: AtomicBool::new(false),
            changes: AtomicU64::new(0),
        }
    }
}

/// A write refused because this gateway does not hold the image's lock.
/// Carried inside the `io::Error` a refused write returns, so the
/// frontends answer with their path-state status (NVMe ANA, SCSI ALUA)
/// rather than a media error.
#[derive(Debug)]
pub struct NotOwner {
    /// `pool/image`.
    pub image: String,
    /// Fenced (blocklisted / lock lost) rather than a follower.
    pub fenced: bool,
    /// Another live gateway holds the lock (as of this gateway's last
    /// look): the refusal is for good, not a transition in progress (the
    /// lock free, or changing hands).
    pub settled: bool,
}

impl std::fmt::Display for NotOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fenced {
            write!(
                f,
                "rbd image {}: this gateway lost the exclusive lock (fenced); it no longer writes",
                self.image
            )
        } else {
            write!(
                f,
                "rbd image {}: this gateway does not own the image (another gateway holds its \
                 exclusive lock); writes go to the owner",
                self.image
            )
        }
    }
}

impl std::error::Error for NotOwner {}

/// The [`NotOwner`] inside `e`, if `e` is a refused write.
pub fn not_owner(e: &io::Error) -> Option<&NotOwner> {
    e.get_ref()?.downcast_ref::<NotOwner>()
}

/// Who holds an image's lock, and whether that client still watches the
/// image (a client that died or froze stops pinging its watch and the OSD
/// drops it after `osd_client_watch_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockView {
    /// The lock owner's address as librbd reports it, `None` if unlocked.
    pub owner: Option<String>,
    /// Whether a watcher with that address is registered.
    pub owner_watching: bool,
    /// Number of watchers (every client with the image open).
    pub watchers: usize,
}

/// When the steps of a takeover completed.
#[derive(Debug, Clone, Copy)]
pub struct Takeover {
    /// The old owner's client blocklisted and its lock broken (`None`:
    /// the lock had no owner to break).
    pub broken: Option<Instant>,
    /// The lock acquired.
    pub locked: Instant,
}

impl Image {
    /// This gateway's role for the image.
    pub fn role(&self) -> Role {
        Role::from_code(self.role.role.load(Ordering::Acquire))
    }

    /// How many times the role changed since the image was opened (every
    /// takeover, release, acquisition and fencing, whoever made it: the
    /// failover monitor, a host's SET TARGET PORT GROUPS, `ctl`).
    pub fn role_changes(&self) -> u64 {
        self.role.changes.load(Ordering::Acquire)
    }

    fn set_role(&self, r: Role) {
        self.role.peer_owns.store(false, Ordering::Release);
        self.role.role.store(r.code(), Ordering::Release);
        self.role.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Records what a look at the lock found: while this gateway follows,
    /// whether another live gateway (lock owner still watching) holds it.
    /// Right after a release librbd may still list this client as the
    /// owner: its own address never counts as a peer.
    pub fn observe_lock(&self, view: &LockView) {
        let mine = self
            .lock_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let peer = match (&view.owner, &mine) {
            (Some(o), Some(m)) => !same_client(o, m),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let settled = self.role() == Role::Follower && peer && view.owner_watching;
        self.role.peer_owns.store(settled, Ordering::Release);
    }

    /// Installs where a follower's writes go while a live peer holds the
    /// lock (once; later calls are ignored).
    pub fn set_forwarder(&self, f: Arc<dyn crate::forward::Forward>) {
        let _ = self.forwarder.set(f);
    }

    /// Whether a forwarder is installed.
    pub fn has_forwarder(&self) -> bool {
        self.forwarder.get().is_some()
    }

    /// The forwarder to use now: set, this gateway a follower, and its
    /// last look found a live peer holding the lock. Never when fenced (a
    /// fenced gateway's queued writes must not land anywhere) nor while
    /// the lock is free or changing hands.
    pub fn forwarder(&self) -> Option<&Arc<dyn crate::forward::Forward>> {
        let settled = self.role() == Role::Follower && self.role.peer_owns.load(Ordering::Acquire);
        settled.then(|| self.forwarder.get()).flatten()
    }

    /// The refusal a forwarded operation gets when the owner refused it or
    /// the link failed: a transition (`settled` false), so the host
    /// retries; `settled` true when the owner said another gateway owns it.
    pub fn forward_refusal(&self, settled: bool) -> io::Error {
        io::Error::other(NotOwner {
            image: self.name().to_owned(),
            fenced: false,
            settled,
        })
    }

    /// Ok if this gateway may write (solo or owner); otherwise the
    /// [`NotOwner`] error a refused write returns.
    pub fn may_write(&self) -> io::Result<()> {
        match self.role() {
            Role::Solo | Role::Owner => Ok(()),
            r => Err(self.not_owner_error(r == Role::Fenced)),
        }
    }

    pub(super) fn not_owner_error(&self, fenced: bool) -> io::Error {
        io::Error::other(NotOwner {
            image: self.name().to_owned(),
            fenced,
            settled: !fenced && self.role.peer_owns.load(Ordering::Acquire),
        })
    }

    /// Marks this gateway fenced: from now on every write is refused. Never
    /// undone for this image handle (rejoining needs a fresh RADOS client).
    /// Returns whether the role changed.
    pub fn fence(&self, why: &str) -> bool {
        self.role.peer_owns.store(false, Ordering::Release);
        let before = Role::from_code(self.role.role.swap(Role::Fenced.code(), Ordering::AcqRel));
        if before != Role::Fenced {
            self.role.changes.fetch_add(1, Ordering::AcqRel);
            tracing::error!(image = %self.name(), was = ?before, reason = why,
                "rbd exclusive lock lost: this gateway is fenced and writes nothing more");
        }
        before != Role::Fenced
    }

    /// A librbd write result: a blocklisted client (ESHUTDOWN, librados'
    /// EBLOCKLISTED) fences this gateway; a write librbd refused for want
    /// of the lock (EROFS, in a cluster) is a [`NotOwner`] refusal.
    pub(super) fn write_outcome(&self, rc: i64) -> Option<io::Error> {
        if rc == -i64::from(libc::ESHUTDOWN) && self.role() != Role::Solo {
            self.fence("a write failed with ESHUTDOWN (client blocklisted)");
            return Some(self.not_owner_error(true));
        }
        if rc == -i64::from(libc::EROFS) && self.role() != Role::Solo {
            return Some(self.not_owner_error(self.role() == Role::Fenced));
        }
        None
    }

    /// Whether this client lost the lock: librbd says it does not hold it
    /// (`rbd_is_exclusive_lock_owner`, which asserts the lock on the OSD)
    /// *and* the lock's owner is not the address this client had when it
    /// took it (someone broke it, or nobody holds it). librbd reports "not
    /// owner" transiently while it re-acquires its own lock (after a watch
    /// reconnect, for instance); that is not a loss.
    pub fn lost_lock(&self) -> Result<bool, RbdError> {
        match self.holds_lock() {
            Ok(true) => return Ok(false),
            Ok(false) => {}
            // The OSD refuses a blocklisted client's assertion outright.
            Err(RbdError::Image { error, .. }) if error.raw_os_error() == Some(libc::ESHUTDOWN) => {
                return Ok(true)
            }
            Err(e) => return Err(e),
        }
        let owner = self.lock_owners()?.into_iter().next();
        let mine = self
            .lock_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let still_ours = match (&owner, &mine) {
            (Some(o), Some(m)) => same_client(o, m),
            _ => false,
        };
        if still_ours {
            tracing::warn!(image = %self.name(), owner = ?owner,
                "librbd does not report the lock held, but the lock is still this client's: \
                 not fenced");
        }
        Ok(!still_ours)
    }

    /// Whether librbd still holds the exclusive lock for this client.
    pub fn holds_lock(&self) -> Result<bool, RbdError> {
        let mut owner = 0;
        // SAFETY: an open image; `owner` is our local.
        let rc = unsafe { (self.lib().rbd_is_exclusive_lock_owner)(self.handle, &mut owner) };
        if rc < 0 {
            return Err(self.error("asking whether we own the lock of", rc));
        }
        Ok(owner != 0)
    }

    /// The lock owner and the image's watchers.
    pub fn lock_view(&self) -> Result<LockView, RbdError> {
        let owner = self.lock_owners()?.into_iter().next();
        let addrs = self.watcher_addrs()?;
        let owner_watching = owner
            .as_deref()
            .is_some_and(|o| addrs.iter().any(|a| same_client(a, o)));
        Ok(LockView {
            owner,
            owner_watching,
            watchers: addrs.len(),
        })
    }

    /// The addresses of the lock's owners (at most 8), empty when unlocked.
    pub(super) fn lock_owners(&self) -> Result<Vec<String>, RbdError> {
        let mut mode = 0;
        let mut owners: [*mut c_char; 8] = [ptr::null_mut(); 8];
        let mut n: libc::size_t = owners.len();
        // SAFETY: an open image; `owners` has room for `n` pointers, which
        // librbd fills with strings we free with the cleanup call below.
        let rc = unsafe {
            (self.lib().rbd_lock_get_owners)(self.handle, &mut mode, owners.as_mut_ptr(), &mut n)
        };
        if rc == -libc::ENOENT {
            return Ok(Vec::new());
        }
        if rc < 0 {
            return Err(self.error("reading the lock owners of", rc));
        }
        let n = n.min(owners.len());
        let names = owners[..n]
            .iter()
            .filter(|p| !p.is_null())
            .map(|&p| {
                // SAFETY: librbd wrote NUL-terminated strings, alive until
                // the cleanup call below.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            })
            .collect();
        // SAFETY: exactly the pointers and count librbd returned.
        unsafe { (self.lib().rbd_lock_get_owners_cleanup)(owners.as_mut_ptr(), n) };
        Ok(names)
    }

    fn watcher_addrs(&self) -> Result<Vec<String>, RbdError> {
        let mut list: Vec<Watcher> = (0..64)
            .map(|_| Watcher {
                addr: ptr::null_mut(),
                id: 0,
                cookie: 0,
            })
            .collect();
        let mut n: libc::size_t = list.len();
        // SAFETY: an open image; `list` has room for `n` entries, which
        // librbd fills (strings freed by the cleanup call below).
        let rc = unsafe { (self.lib().rbd_watchers_list)(self.handle, list.as_mut_ptr(), &mut n) };
        if rc < 0 {
            return Err(self.error("listing the watchers of", rc));
        }
        let n = n.min(list.len());
        let addrs = list[..n]
            .iter()
            .filter(|w| !w.addr.is_null())
            .map(|w| {
                // SAFETY: librbd wrote NUL-terminated strings, alive until
                // the cleanup call below.
                unsafe { CStr::from_ptr(w.addr) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        // SAFETY: exactly the entries and count librbd returned.
        unsafe { (self.lib().rbd_watchers_list_cleanup)(list.as_mut_ptr(), n) };
        Ok(addrs)
    }

    /// Takes the lock over from `owner` (the address [`Image::lock_view`]
    /// reported), or takes a free lock when `owner` is `None`: the old
    /// owner's client is blocklisted and its lock broken
    /// (`rbd_lock_break`), then the lock is acquired. A lock that another
    /// survivor took first fails with [`RbdError::Locked`].
    pub fn take_over(&self, owner: Option<&str>) -> Result<Takeover, RbdError> {
        let broken = match owner {
            Some(o) => {
                let c = cstr("lock owner", o)?;
                // SAFETY: an open image; librbd copies the owner string.
                let rc = unsafe {
                    (self.lib().rbd_lock_break)(self.handle, LOCK_MODE_EXCLUSIVE, c.as_ptr())
                };
                // ENOENT: the lock went away meanwhile; nothing to break.
                if rc < 0 && rc != -libc::ENOENT {
                    return Err(self.error(&format!("breaking the lock of {o} on"), rc));
                }
                Some(Instant::now())
            }
            None => None,
        };
        self.lock()?;
        self.set_role(Role::Owner);
        Ok(Takeover {
            broken,
            locked: Instant::now(),
        })
    }

    /// Hands ownership back cooperatively: new writes are refused at once
    /// (role Follower), then `rbd_lock_release` — which lets the writes
    /// already inside librbd complete and flushes before the lock goes.
    pub fn release(&self) -> Result<(), RbdError> {
        if self.role() != Role::Owner {
            return Err(RbdError::Invalid(format!(
                "rbd image {}: this gateway is {:?}, not the owner",
                self.name(),
                self.role()
            )));
        }
        self.set_role(Role::Follower);
        // SAFETY: an open image.
        let rc = unsafe { (self.lib().rbd_lock_release)(self.handle) };
        if rc < 0 {
            self.fence("releasing the lock failed");
            return Err(self.error("releasing the lock of", rc));
        }
        Ok(())
    }

    pub(super) fn error(&self, what: &str, rc: i32) -> RbdError {
        RbdError::Image {
            image: self.name().to_owned(),
            what: what.to_owned(),
            error: ffi::errno(rc),
        }
    }
}

/// Whether two RADOS entity addresses name the same client: equal once a
/// messenger-type prefix (`v1:`, `v2:`, `any:`) is dropped.
fn same_client(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        s.split_once(':')
            .filter(|(p, _)| matches!(*p, "v1" | "v2" | "any"))
            .map_or(s, |(_, r)| r)
    }
    bare(a) == bare(b)
}

#[cfg(test)]
mod tests {
    use super::same_client;

    #[test]
    fn addresses_compare_without_messenger_prefix() {
        assert!(same_client("127.0.0.1:0/1234", "127.0.0.1:0/1234"));
        assert!(same_client("v1:127.0.0.1:0/1234", "127.0.0.1:0/1234"));
        assert!(same_client("any:127.0.0.1:0/1234", "v2:127.0.0.1:0/1234"));
        assert!(!same_client("127.0.0.1:0/1234", "127.0.0.1:0/1235"));
    }
}
