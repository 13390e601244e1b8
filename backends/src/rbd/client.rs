//! Ceph clients (`rados_t`): one per (ceph.conf, user, keyring, timeout), shared by
//! every RBD volume that names the same three, since a client per volume
//! does not scale (each has its own monitor session, messenger threads and
//! OSD connections).

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::ptr;
use std::sync::{Arc, Mutex, Weak};

use super::ffi::{self, IoctxT, Lib, RadosT};
use super::RbdError;

/// Which Ceph client a volume uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// The ceph.conf to read (`None`: librados' default search).
    pub ceph_conf: Option<PathBuf>,
    /// The cephx user without `client.` (`admin` by default).
    pub user: String,
    /// Keyring file overriding the conf's.
    pub keyring: Option<PathBuf>,
    /// Sets `client_mount_timeout`, `rados_mon_op_timeout` and
    /// `rados_osd_op_timeout` (seconds) when given.
    pub timeout_secs: Option<u32>,
}

/// The librados options a client's `timeout_secs` sets: waiting for the
/// monitors when connecting, and for monitor and OSD operations (librbd's
/// I/O is OSD operations: an operation not answered in time completes with
/// ETIMEDOUT instead of waiting for the cluster to come back).
const TIMEOUTS: [&str; 3] = [
    "client_mount_timeout",
    "rados_mon_op_timeout",
    "rados_osd_op_timeout",
];

/// A connected Ceph client. Shut down when the last volume using it is gone.
pub struct Cluster {
    lib: &'static Lib,
    handle: RadosT,
    key: ClientKey,
}

// SAFETY: a `rados_t` is documented thread-safe (librados serialises access
// internally); we never hand out the raw handle outside this module's types.
unsafe impl Send for Cluster {}
// SAFETY: as above, every librados call on it may come from any thread.
unsafe impl Sync for Cluster {}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("key", &self.key).finish()
    }
}

/// Options every client gets, whatever the conf says:
/// - the image cache off, so a FUA write is a plain write and flush is
///   `rbd_aio_flush`;
/// - partial discards really zeroing (the default skips a discard smaller
///   than an object's allocation unit and old data would read back);
/// - writes copied at submission (librbd's default, pinned here). The
///   zero-copy alternative (`false`) wraps our iovecs and delays the
///   completion until the messenger dropped its last reference to them.
///   Measured with librbd 16.2 (`copy_check.rs`): it does reference our
///   memory, but in half the runs a lone write then did not complete
///   within 5 s, so a command could hang on an idle client.
const FORCED: &[(&str, &str)] = &[
    ("rbd_cache", "false"),
    ("rbd_skip_partial_discard", "false"),
    ("rbd_disable_zero_copy_writes", "true"),
];

fn registry() -> &'static Mutex<HashMap<ClientKey, Weak<Cluster>>> {
    static R: std::sync::OnceLock<Mutex<HashMap<ClientKey, Weak<Cluster>>>> =
        std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

impl Cluster {
    /// The live client for `key`, or a new connected one.
    pub fn get(key: &ClientKey) -> Result<Arc<Cluster>, RbdError> {
        let lib = ffi::lib().map_err(RbdError::Library)?;
        // Held across the connect so two volumes of one client never race
        // to create two.
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = reg.get(key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(Self::connect(lib, key, &[])?);
        reg.insert(key.clone(), Arc::downgrade(&c));
        Ok(c)
    }

    /// A new client of its own, shared with no other volume: a shared
    /// image of a cluster gets one, so that a blocklist (which fences a
    /// whole client) fences exactly that volume, and rejoining after one
    /// gets a fresh client.
    pub fn unshared(key: &ClientKey) -> Result<Arc<Cluster>, RbdError> {
        let lib = ffi::lib().map_err(RbdError::Library)?;
        Self::connect(lib, key, &[]).map(Arc::new)
    }

    /// A new, unshared client with `extra` options set after the forced
    /// ones (tests).
    #[cfg(test)]
    pub(super) fn private(
        key: &ClientKey,
        extra: &[(&str, &str)],
    ) -> Result<Arc<Cluster>, RbdError> {
        let lib = ffi::lib().map_err(RbdError::Library)?;
        Self::connect(lib, key, extra).map(Arc::new)
    }

    fn connect(
        lib: &'static Lib,
        key: &ClientKey,
        extra: &[(&str, &str)],
    ) -> Result<Cluster, RbdError> {
        let fail = |what: &str, rc: i32| RbdError::Client {
            what: format!("{what} (client.{}, {})", key.user, conf_name(key)),
            error: ffi::errno(rc),
        };
        let cname = cstr("cluster name", "ceph")?;
        let user = cstr("ceph_user", &format!("client.{}", key.user))?;
        let mut handle: RadosT = ptr::null_mut();
        // SAFETY: the out pointer is our local; the strings outlive the call
        // (librados copies them).
        let rc = unsafe { (lib.rados_create2)(&mut handle, cname.as_ptr(), user.as_ptr(), 0) };
        if rc < 0 {
            return Err(fail("creating the Ceph client", rc));
        }
        // From here on `cluster`'s Drop shuts the handle down on every error.
        let cluster = Cluster {
            lib,
            handle,
            key: key.clone(),
        };
        let conf = match &key.ceph_conf {
            Some(p) => Some(cstr("ceph_conf", &p.to_string_lossy())?),
            None => None,
        };
        // SAFETY: `handle` is a created, unconnected client; a NULL path
        // means librados' default search; the string outlives the call.
        let rc = unsafe {
            (lib.rados_conf_read_file)(handle, conf.as_ref().map_or(ptr::null(), |c| c.as_ptr()))
        };
        if rc < 0 {
            return Err(fail("reading the Ceph configuration", rc));
        }
        let mut options: Vec<(&str, String)> = FORCED
            .iter()
            .chain(extra)
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        if let Some(k) = &key.keyring {
            options.push(("keyring", k.to_string_lossy().into_owned()));
        }
        if let Some(secs) = key.timeout_secs {
            options.extend(TIMEOUTS.iter().map(|k| (*k, secs.to_string())));
        }
        for (k, v) in options {
            let (ck, cv) = (cstr("option", k)?, cstr(k, &v)?);
            // SAFETY: as above; librados copies the option's value.
            let rc = unsafe { (lib.rados_conf_set)(handle, ck.as_ptr(), cv.as_ptr()) };
            if rc < 0 {
                return Err(fail(&format!("setting {k}={v}"), rc));
            }
        }
        // SAFETY: a configured, unconnected client.
        let rc = unsafe { (lib.rados_connect)(handle) };
        if rc < 0 {
            return Err(fail("connecting to the Ceph cluster", rc));
        }
        // What is in effect (an option librbd does not know is refused by
        // conf_set above; this shows the values after the conf was read).
        let effective: Vec<String> = FORCED
            .iter()
            .map(|(k, _)| *k)
            .chain(TIMEOUTS)
            .map(|k| format!("{k}={}", cluster.conf_get(k).unwrap_or_else(|| "?".into())))
            .collect();
        tracing::info!(
            user = %key.user,
            conf = %conf_name(key),
            options = %effective.join(" "),
            "ceph client connected"
        );
        Ok(cluster)
    }

    /// The value of a configuration option.
    pub fn conf_get(&self, option: &str) -> Option<String> {
        let name = cstr("option", option).ok()?;
        let mut buf = [0u8; 256];
        // SAFETY: a created client; librados writes at most `buf.len()`
        // bytes, NUL-terminated, into our local buffer.
        let rc = unsafe {
            (self.lib.rados_conf_get)(
                self.handle,
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if rc < 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Some(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// An I/O context on `pool` (and `namespace`).
    pub fn ioctx(self: &Arc<Self>, pool: &str, namespace: Option<&str>) -> Result<Ioctx, RbdError> {
        let cpool = cstr("pool", pool)?;
        let mut io: IoctxT = ptr::null_mut();
        // SAFETY: a connected client; the out pointer is our local.
        let rc = unsafe { (self.lib.rados_ioctx_create)(self.handle, cpool.as_ptr(), &mut io) };
        if rc < 0 {
            return Err(RbdError::Client {
                what: format!("opening pool {pool}"),
                error: ffi::errno(rc),
            });
        }
        let ioctx = Ioctx {
            cluster: Arc::clone(self),
            handle: io,
        };
        if let Some(ns) = namespace {
            let cns = cstr("namespace", ns)?;
            // SAFETY: a valid ioctx; librados copies the name.
            unsafe { (self.lib.rados_ioctx_set_namespace)(io, cns.as_ptr()) };
        }
        Ok(ioctx)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the last reference: every Ioctx (and so every image) holds
        // an Arc of this client, so none is left using the handle.
        unsafe { (self.lib.rados_shutdown)(self.handle) };
    }
}

/// A pool (and namespace) of one client.
pub struct Ioctx {
    cluster: Arc<Cluster>,
    pub(super) handle: IoctxT,
}

// SAFETY: an ioctx may be used from any thread (librados locks internally);
// it is only read after creation.
unsafe impl Send for Ioctx {}
// SAFETY: as above.
unsafe impl Sync for Ioctx {}

impl Ioctx {
    pub(super) fn lib(&self) -> &'static Lib {
        self.cluster.lib
    }
}

impl Drop for Ioctx {
    fn drop(&mut self) {
        // SAFETY: images opened on this ioctx hold it (Image owns its
        // Ioctx and closes the image first), so nothing uses it any more.
        unsafe { (self.cluster.lib.rados_ioctx_destroy)(self.handle) };
    }
}

fn conf_name(key: &ClientKey) -> String {
    key.ceph_conf
        .as_ref()
        .map_or_else(|| "default ceph.conf".into(), |p| p.display().to_string())
}

pub(super) fn cstr(what: &str, s: &str) -> Result<CString, RbdError> {
    CString::new(s).map_err(|_| RbdError::Invalid(format!("{what} {s:?} contains a NUL byte")))
}
