//! An opened RBD image: open (creating it when missing and a size is
//! given), size, and the exclusive lock that makes one daemon its only
//! writer.

use std::ptr;
use std::sync::Arc;

use super::client::{cstr, Ioctx};
use super::ffi::{self, ImageInfo, ImageT, Lib, LOCK_MODE_EXCLUSIVE};
use super::ownership::{Role, RoleCell};
use super::RbdError;

/// How an image opened for writing is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// One gateway: the lock is taken at open (a held lock refuses the
    /// open) and kept until close.
    Exclusive,
    /// A gateway of a cluster: the preferred owner takes the lock at open
    /// when it is free (else follows); the others open it without the lock.
    Cluster {
        /// This gateway is the volume's configured owner.
        preferred: bool,
    },
}

/// An open image. Closing it (drop) waits for its in-flight operations.
pub struct Image {
    lib: &'static Lib,
    pub(super) handle: ImageT,
    /// `pool[/namespace]/image`, for messages.
    name: String,
    size: u64,
    /// Bytes per RADOS object (`1 << order`).
    obj_size: u64,
    /// What this gateway may do with it (see `ownership`).
    pub(super) role: RoleCell,
    /// The lock owner address librbd reported right after this client
    /// took the lock (how it tells its own lock from another client's).
    pub(super) lock_addr: std::sync::Mutex<Option<String>>,
    /// Where a follower's writes go when a live peer owns the image (the
    /// peer link; unset without one).
    pub(super) forwarder: std::sync::OnceLock<Arc<dyn crate::forward::Forward>>,
    /// Dropped after the image is closed (field order).
    _ioctx: Ioctx,
}

// SAFETY: librbd's image handle is thread-safe: I/O may be submitted from any
// thread and completions run on librbd's threads. Only `Drop` closes it, and
// `Drop` has the image to itself.
unsafe impl Send for Image {}
// SAFETY: as above; every method takes `&self` and librbd locks internally.
unsafe impl Sync for Image {}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

impl Image {
    /// Opens `image` in `ioctx`: read-only without a lock, or for writing
    /// as `sharing` says. A missing image is created with `create` bytes
    /// when that is given (and the volume is writable).
    pub fn open(
        ioctx: Ioctx,
        shown: String,
        image: &str,
        create: Option<u64>,
        read_only: bool,
        sharing: Sharing,
    ) -> Result<Image, RbdError> {
        let lib = ioctx.lib();
        let cname = cstr("image", image)?;
        let fail = |what: &str, rc: i32| RbdError::Image {
            image: shown.clone(),
            what: what.to_owned(),
            error: ffi::errno(rc),
        };
        let open = || {
            let mut h: ImageT = ptr::null_mut();
            // SAFETY: a valid ioctx; the out pointer is our local; a NULL
            // snapshot name opens the head; librbd copies the name.
            let rc = unsafe {
                if read_only {
                    (lib.rbd_open_read_only)(ioctx.handle, cname.as_ptr(), &mut h, ptr::null())
                } else {
                    (lib.rbd_open)(ioctx.handle, cname.as_ptr(), &mut h, ptr::null())
                }
            };
            (rc, h)
        };
        let (mut rc, mut handle) = open();
        if rc == -libc::ENOENT {
            match create {
                Some(size) if !read_only => {
                    let mut order = 0;
                    // SAFETY: a valid ioctx; `order` 0 asks for the default
                    // object size; librbd copies the name.
                    let created =
                        unsafe { (lib.rbd_create)(ioctx.handle, cname.as_ptr(), size, &mut order) };
                    if created < 0 && created != -libc::EEXIST {
                        return Err(fail("creating", created));
                    }
                    tracing::info!(image = %shown, size, "rbd image created");
                    (rc, handle) = open();
                }
                _ => {
                    return Err(RbdError::Invalid(format!(
                        "rbd image {shown} does not exist and no size is given to create it"
                    )))
                }
            }
        }
        if rc < 0 {
            return Err(fail("opening", rc));
        }
        // From here on Drop closes the handle on every error path.
        let mut img = Image {
            lib,
            handle,
            name: shown.clone(),
            size: 0,
            obj_size: 0,
            role: RoleCell::new(Role::Solo),
            lock_addr: std::sync::Mutex::new(None),
            forwarder: std::sync::OnceLock::new(),
            _ioctx: ioctx,
        };
        // SAFETY: all-zero is a valid `ImageInfo` (integers and byte arrays).
        let mut info: ImageInfo = unsafe { std::mem::zeroed() };
        // SAFETY: an open image; `info` is our local of the size we pass.
        let rc = unsafe { (lib.rbd_stat)(handle, &mut info, std::mem::size_of::<ImageInfo>()) };
        if rc < 0 {
            return Err(fail("reading the size of", rc));
        }
        img.size = info.size;
        img.obj_size = info.obj_size;
        match (read_only, sharing) {
            (true, _) => {}
            (false, Sharing::Exclusive) => img.lock()?,
            (false, Sharing::Cluster { preferred: true }) => match img.lock() {
                Ok(()) => img.role = RoleCell::new(Role::Owner),
                Err(RbdError::Locked { holder, .. }) => {
                    tracing::warn!(image = %shown, %holder,
                        "rbd image locked by another gateway: following (no failback)");
                    img.role = RoleCell::new(Role::Follower);
                }
                Err(e) => return Err(e),
            },
            (false, Sharing::Cluster { preferred: false }) => {
                img.role = RoleCell::new(Role::Follower);
            }
        }
        // A follower knows from the start whether a live owner holds the
        // lock (the failover monitor keeps it current afterwards).
        if img.role() == Role::Follower {
            if let Ok(view) = img.lock_view() {
                img.observe_lock(&view);
            }
        }
        Ok(img)
    }

    /// Takes the exclusive lock. Acquired explicitly, librbd will not hand
    /// it over when another client asks, so a second writer is refused.
    pub(super) fn lock(&self) -> Result<(), RbdError> {
        // SAFETY: an open image.
        let rc = unsafe { (self.lib.rbd_lock_acquire)(self.handle, LOCK_MODE_EXCLUSIVE) };
        match rc {
            0 => {
                let me = self.lock_owners().ok().and_then(|o| o.into_iter().next());
                *self.lock_addr.lock().unwrap_or_else(|e| e.into_inner()) = me;
                Ok(())
            }
            _ if rc == -libc::EROFS || rc == -libc::EBUSY => Err(RbdError::Locked {
                image: self.name.clone(),
                holder: self.owners().unwrap_or_else(|| "another client".into()),
            }),
            _ if rc == -libc::EINVAL => Err(RbdError::Invalid(format!(
                "rbd image {} cannot be locked (does it lack the exclusive-lock feature?); \
                 zctarget serves an image only while it holds its exclusive lock",
                self.name
            ))),
            _ => Err(RbdError::Image {
                image: self.name.clone(),
                what: "taking the exclusive lock of".into(),
                error: ffi::errno(rc),
            }),
        }
    }

    /// The clients holding the lock, as far as known.
    fn owners(&self) -> Option<String> {
        self.lock_owners()
            .ok()
            .filter(|o| !o.is_empty())
            .map(|o| o.join(", "))
    }

    /// `pool[/namespace]/image`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The image's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per RADOS object.
    pub fn object_size(&self) -> u64 {
        self.obj_size
    }

    pub(super) fn lib(&self) -> &'static Lib {
        self.lib
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the last reference to the image (handles and the volume
        // hold it in an Arc; operations in flight do not, and rbd_close
        // waits for them). Never called on a librbd thread: completion
        // callbacks hold no Image.
        let rc = unsafe { (self.lib.rbd_close)(self.handle) };
        if rc < 0 {
            tracing::warn!(image = %self.name, error = %ffi::errno(rc), "closing rbd image");
        }
    }
}
