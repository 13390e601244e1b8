//! A thin, hand-written binding to the parts of librados' and librbd's C API
//! the RBD backend uses, loaded at run time.
//!
//! Why not a crate: `ceph` and `librados` (crates.io) bind RADOS only, not
//! librbd; `ceph-rbd` and `librbd-sys` are years old and have stub or no
//! vectored (`rbd_aio_readv`/`writev`) calls, which are the whole point here
//! (the `SegmentList`'s iovecs go to librbd as they are). The signatures
//! below follow `rados/librados.h` and `rbd/librbd.h` of Ceph 16 (Pacific);
//! every call used exists since Ceph 15 at the latest.
//!
//! Why at run time (`libloading`): the default build, the tests that do not
//! use Ceph and the embedded default configuration must not need librbd. The
//! libraries are opened the first time an RBD volume is opened; a missing
//! library is an error naming the Debian package, never a crash.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use libc::{iovec, size_t, ssize_t};

/// `rados_t`.
pub type RadosT = *mut c_void;
/// `rados_ioctx_t`.
pub type IoctxT = *mut c_void;
/// `rbd_image_t`.
pub type ImageT = *mut c_void;
/// `rbd_completion_t`.
pub type CompletionT = *mut c_void;
/// `rbd_callback_t`.
pub type Callback = unsafe extern "C" fn(c: CompletionT, arg: *mut c_void);

/// `RBD_LOCK_MODE_EXCLUSIVE`.
pub const LOCK_MODE_EXCLUSIVE: c_int = 0;
/// `RBD_FEATURE_FAST_DIFF`: the object map also tracks which objects
/// changed, and `rbd_diff_iterate2(whole_object)` answers from it.
pub const FEATURE_FAST_DIFF: u64 = 1 << 4;
/// `RBD_FLAG_OBJECT_MAP_INVALID | RBD_FLAG_FAST_DIFF_INVALID`.
pub const FLAGS_MAP_INVALID: u64 = 0b11;
/// The callback of `rbd_diff_iterate2`: `(offset, len, exists, arg)`; a
/// negative return stops the iteration with that error.
pub type DiffCallback = unsafe extern "C" fn(u64, size_t, c_int, *mut c_void) -> c_int;

/// `rbd_image_info_t` (librbd.h; the trailing fields are deprecated but
/// still part of the layout `rbd_stat` writes).
#[repr(C)]
pub struct ImageInfo {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; 24],
    pub parent_pool: i64,
    pub parent_name: [c_char; 96],
}

/// `rbd_image_watcher_t`: a client watching the image header (every
/// client that has the image open; a frozen or dead one disappears when
/// the OSD's watch timeout expires).
#[repr(C)]
pub struct Watcher {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

/// The functions, resolved once. The `Library` handles are kept so the
/// pointers stay valid for the life of the process.
pub struct Lib {
    _rados: libloading::Library,
    _rbd: libloading::Library,
    pub rados_create2:
        unsafe extern "C" fn(*mut RadosT, *const c_char, *const c_char, u64) -> c_int,
    pub rados_conf_read_file: unsafe extern "C" fn(RadosT, *const c_char) -> c_int,
    pub rados_conf_set: unsafe extern "C" fn(RadosT, *const c_char, *const c_char) -> c_int,
    pub rados_conf_get: unsafe extern "C" fn(RadosT, *const c_char, *mut c_char, size_t) -> c_int,
    pub rados_connect: unsafe extern "C" fn(RadosT) -> c_int,
    pub rados_shutdown: unsafe extern "C" fn(RadosT),
    pub rados_ioctx_create: unsafe extern "C" fn(RadosT, *const c_char, *mut IoctxT) -> c_int,
    pub rados_ioctx_set_namespace: unsafe extern "C" fn(IoctxT, *const c_char),
    pub rados_ioctx_destroy: unsafe extern "C" fn(IoctxT),
    pub rbd_open: unsafe extern "C" fn(IoctxT, *const c_char, *mut ImageT, *const c_char) -> c_int,
    pub rbd_open_read_only:
        unsafe extern "C" fn(IoctxT, *const c_char, *mut ImageT, *const c_char) -> c_int,
    pub rbd_create: unsafe extern "C" fn(IoctxT, *const c_char, u64, *mut c_int) -> c_int,
    pub rbd_stat: unsafe extern "C" fn(ImageT, *mut ImageInfo, size_t) -> c_int,
    pub rbd_get_features: unsafe extern "C" fn(ImageT, *mut u64) -> c_int,
    pub rbd_get_flags: unsafe extern "C" fn(ImageT, *mut u64) -> c_int,
    pub rbd_diff_iterate2: unsafe extern "C" fn(
        ImageT,
        *const c_char,
        u64,
        u64,
        u8,
        u8,
        DiffCallback,
        *mut c_void,
    ) -> c_int,
    pub rbd_close: unsafe extern "C" fn(ImageT) -> c_int,
    pub rbd_lock_acquire: unsafe extern "C" fn(ImageT, c_int) -> c_int,
    pub rbd_lock_get_owners:
        unsafe extern "C" fn(ImageT, *mut c_int, *mut *mut c_char, *mut size_t) -> c_int,
    pub rbd_lock_get_owners_cleanup: unsafe extern "C" fn(*mut *mut c_char, size_t),
    pub rbd_lock_release: unsafe extern "C" fn(ImageT) -> c_int,
    pub rbd_lock_break: unsafe extern "C" fn(ImageT, c_int, *const c_char) -> c_int,
    pub rbd_is_exclusive_lock_owner: unsafe extern "C" fn(ImageT, *mut c_int) -> c_int,
    pub rbd_metadata_get:
        unsafe extern "C" fn(ImageT, *const c_char, *mut c_char, *mut size_t) -> c_int,
    pub rbd_metadata_set: unsafe extern "C" fn(ImageT, *const c_char, *const c_char) -> c_int,
    pub rbd_metadata_remove: unsafe extern "C" fn(ImageT, *const c_char) -> c_int,
    pub rbd_watchers_list: unsafe extern "C" fn(ImageT, *mut Watcher, *mut size_t) -> c_int,
    pub rbd_watchers_list_cleanup: unsafe extern "C" fn(*mut Watcher, size_t),
    pub rbd_aio_create_completion:
        unsafe extern "C" fn(*mut c_void, Callback, *mut CompletionT) -> c_int,
    pub rbd_aio_get_return_value: unsafe extern "C" fn(CompletionT) -> ssize_t,
    pub rbd_aio_release: unsafe extern "C" fn(CompletionT),
    pub rbd_aio_readv: unsafe extern "C" fn(ImageT, *const iovec, c_int, u64, CompletionT) -> c_int,
    pub rbd_aio_writev:
        unsafe extern "C" fn(ImageT, *const iovec, c_int, u64, CompletionT) -> c_int,
    pub rbd_aio_flush: unsafe extern "C" fn(ImageT, CompletionT) -> c_int,
    pub rbd_aio_discard: unsafe extern "C" fn(ImageT, u64, u64, CompletionT) -> c_int,
    pub rbd_aio_write_zeroes:
        unsafe extern "C" fn(ImageT, u64, size_t, CompletionT, c_int, c_int) -> c_int,
}

/// The Debian package that ships librbd.so.1 (and pulls in librados2).
pub const PACKAGE: &str = "librbd1";

/// The loaded library, or why it could not be loaded (cached: one attempt
/// per process).
pub fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Lib, String> {
    let open = |name: &str| {
        // SAFETY: loading librados/librbd runs their ELF constructors, which
        // only initialise the libraries' own globals; nothing of ours is
        // touched and no other thread can observe a half-loaded library.
        unsafe { libloading::Library::new(name) }.map_err(|e| {
            format!(
                "RBD volumes need {name}, which could not be loaded ({e}); \
                 install the Debian package `{PACKAGE}`"
            )
        })
    };
    let rados = open("librados.so.2")?;
    let rbd = open("librbd.so.1")?;
    macro_rules! sym {
        ($lib:ident, $name:ident) => {
            // SAFETY: the symbol is a function of librados/librbd whose C
            // signature is the field's type (copied from the header named
            // in the module docs); the pointer is kept only inside `Lib`,
            // next to the `Library` that keeps it mapped.
            unsafe { symbol(&$lib, stringify!($lib), stringify!($name)) }?
        };
    }
    Ok(Lib {
        rados_create2: sym!(rados, rados_create2),
        rados_conf_read_file: sym!(rados, rados_conf_read_file),
        rados_conf_set: sym!(rados, rados_conf_set),
        rados_conf_get: sym!(rados, rados_conf_get),
        rados_connect: sym!(rados, rados_connect),
        rados_shutdown: sym!(rados, rados_shutdown),
        rados_ioctx_create: sym!(rados, rados_ioctx_create),
        rados_ioctx_set_namespace: sym!(rados, rados_ioctx_set_namespace),
        rados_ioctx_destroy: sym!(rados, rados_ioctx_destroy),
        rbd_open: sym!(rbd, rbd_open),
        rbd_open_read_only: sym!(rbd, rbd_open_read_only),
        rbd_create: sym!(rbd, rbd_create),
        rbd_stat: sym!(rbd, rbd_stat),
        rbd_get_features: sym!(rbd, rbd_get_features),
        rbd_get_flags: sym!(rbd, rbd_get_flags),
        rbd_diff_iterate2: sym!(rbd, rbd_diff_iterate2),
        rbd_close: sym!(rbd, rbd_close),
        rbd_lock_acquire: sym!(rbd, rbd_lock_acquire),
        rbd_lock_get_owners: sym!(rbd, rbd_lock_get_owners),
        rbd_lock_get_owners_cleanup: sym!(rbd, rbd_lock_get_owners_cleanup),
        rbd_lock_release: sym!(rbd, rbd_lock_release),
        rbd_lock_break: sym!(rbd, rbd_lock_break),
        rbd_is_exclusive_lock_owner: sym!(rbd, rbd_is_exclusive_lock_owner),
        rbd_metadata_get: sym!(rbd, rbd_metadata_get),
        rbd_metadata_set: sym!(rbd, rbd_metadata_set),
        rbd_metadata_remove: sym!(rbd, rbd_metadata_remove),
        rbd_watchers_list: sym!(rbd, rbd_watchers_list),
        rbd_watchers_list_cleanup: sym!(rbd, rbd_watchers_list_cleanup),
        rbd_aio_create_completion: sym!(rbd, rbd_aio_create_completion),
        rbd_aio_get_return_value: sym!(rbd, rbd_aio_get_return_value),
        rbd_aio_release: sym!(rbd, rbd_aio_release),
        rbd_aio_readv: sym!(rbd, rbd_aio_readv),
        rbd_aio_writev: sym!(rbd, rbd_aio_writev),
        rbd_aio_flush: sym!(rbd, rbd_aio_flush),
        rbd_aio_discard: sym!(rbd, rbd_aio_discard),
        rbd_aio_write_zeroes: sym!(rbd, rbd_aio_write_zeroes),
        _rados: rados,
        _rbd: rbd,
    })
}

/// Resolves `name` in `lib` as a `T`.
///
/// # Safety
/// `T` must be the function pointer type of the symbol's C signature, and
/// the result must not outlive `lib`.
unsafe fn symbol<T: Copy>(lib: &libloading::Library, which: &str, name: &str) -> Result<T, String> {
    let cname = format!("{name}\0");
    // SAFETY: forwarded to the caller (the type is the symbol's).
    let s: libloading::Symbol<'_, T> = unsafe { lib.get(cname.as_bytes()) }
        .map_err(|e| format!("lib{which} lacks {name} ({e}); is it older than Ceph 15?"))?;
    Ok(*s)
}

/// A negative errno from librados/librbd as an `io::Error`.
pub fn errno(rc: impl Into<i64>) -> std::io::Error {
    let rc = rc.into();
    std::io::Error::from_raw_os_error(i32::try_from(-rc).unwrap_or(libc::EIO))
}
