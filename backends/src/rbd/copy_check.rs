//! Which librbd write path do we get: a copy of our iovecs at submission,
//! or librbd referencing our memory until it completes? Measured, not
//! assumed: a write is submitted and its buffer overwritten at once (a
//! deliberate race no production path can make: our types forbid touching
//! an in-flight buffer). If the image ends up holding the overwritten bytes
//! librbd was still reading our memory after submission, i.e. zero-copy;
//! a copy at submission always stores the original bytes. Needs the test
//! cluster (`ZCTARGET_TEST_CEPH_CONF`).

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use super::client::{ClientKey, Cluster};
use super::ffi::{self, CompletionT};
use super::image::Image;

const LEN: usize = 1 << 20;
const TRIALS: usize = 20;

unsafe extern "C" fn done(c: CompletionT, arg: *mut c_void) {
    // SAFETY: `arg` is the boxed sender leaked for this one completion.
    let tx = unsafe { Box::from_raw(arg.cast::<mpsc::Sender<CompletionT>>()) };
    let _ = tx.send(c);
}

/// Runs one synchronous aio call; returns its value, or `None` if it did
/// not complete within `within` (then the operation is still in flight).
fn wait_for(
    image: &Image,
    within: std::time::Duration,
    submit: impl FnOnce(CompletionT) -> i32,
) -> Option<i64> {
    let lib = ffi::lib().expect("librbd");
    let (tx, rx) = mpsc::channel();
    let arg = Box::into_raw(Box::new(tx));
    let mut c: CompletionT = ptr::null_mut();
    // SAFETY: `arg` lives until `done` reclaims it; `c` is our local.
    let rc = unsafe { (lib.rbd_aio_create_completion)(arg.cast(), done, &mut c) };
    assert_eq!(rc, 0);
    assert_eq!(submit(c), 0, "submit on {}", image.name());
    let c = rx.recv_timeout(within).ok()?;
    // SAFETY: the completed completion, released once after reading it.
    Some(unsafe {
        let rc = (lib.rbd_aio_get_return_value)(c);
        (lib.rbd_aio_release)(c);
        rc as i64
    })
}

fn wait(image: &Image, submit: impl FnOnce(CompletionT) -> i32) -> i64 {
    wait_for(image, std::time::Duration::from_secs(30), submit).expect("completion")
}

/// Of `trials` writes whose buffer is overwritten right after submission,
/// how many stored the overwritten bytes; `None` when a write did not
/// complete within 5 s (its client, image and buffer are then leaked, as
/// librbd may still use them).
fn overwritten_writes(disable_zero_copy: &str, trials: usize) -> Option<usize> {
    let conf = std::env::var_os("ZCTARGET_TEST_CEPH_CONF").expect("conf");
    let key = ClientKey {
        ceph_conf: Some(conf.into()),
        user: "admin".into(),
        keyring: None,
        timeout_secs: None,
    };
    let cluster = Cluster::private(&key, &[("rbd_disable_zero_copy_writes", disable_zero_copy)])
        .expect("client");
    assert_eq!(
        cluster.conf_get("rbd_disable_zero_copy_writes").as_deref(),
        Some(disable_zero_copy)
    );
    let name = format!("copy-check-{disable_zero_copy}-{}", std::process::id());
    let ioctx = cluster.ioctx("rbd", None).expect("ioctx");
    let image = Image::open(
        ioctx,
        format!("rbd/{name}"),
        &name,
        Some(16 << 20),
        false,
        super::Sharing::Exclusive,
    )
    .expect("image");
    let lib = ffi::lib().expect("librbd");
    let buf: Arc<Vec<AtomicU8>> = Arc::new((0..LEN).map(|_| AtomicU8::new(0)).collect());
    let mut back = vec![0u8; LEN];
    let mut changed = 0;
    for trial in 0..trials {
        let (old, new) = (2 * trial as u8 + 1, 2 * trial as u8 + 2);
        buf.iter().for_each(|b| b.store(old, Ordering::Relaxed));
        let iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut c_void,
            iov_len: LEN,
        };
        let rc = wait_for(&image, std::time::Duration::from_secs(5), |c| {
            // SAFETY: `buf` outlives the operation (we wait for it below);
            // the overwrite racing librbd's reads is the point of the test
            // and uses atomic stores.
            let rc = unsafe { (lib.rbd_aio_writev)(image.handle, &iov, 1, 0, c) };
            buf.iter().for_each(|b| b.store(new, Ordering::Relaxed));
            rc
        });
        let Some(rc) = rc else {
            std::mem::forget((image, cluster, buf));
            return None;
        };
        assert!(rc >= 0, "write: {rc}");
        let riov = libc::iovec {
            iov_base: back.as_mut_ptr().cast(),
            iov_len: LEN,
        };
        // SAFETY: `back` outlives the read, which we wait for.
        let rc = wait(&image, |c| unsafe {
            (lib.rbd_aio_readv)(image.handle, &riov, 1, 0, c)
        });
        assert!(rc >= 0, "read: {rc}");
        if back.contains(&new) {
            changed += 1;
        }
    }
    Some(changed)
}

#[test]
fn which_write_path_librbd_takes() {
    if std::env::var_os("ZCTARGET_TEST_CEPH_CONF").is_none() {
        eprintln!("skipped: ZCTARGET_TEST_CEPH_CONF is not set");
        return;
    }
    // What the backend uses (client.rs forces it): a copy at submission.
    let copied = overwritten_writes("true", TRIALS).expect("a copying write completes");
    eprintln!("rbd_disable_zero_copy_writes=true: {copied} of {TRIALS} writes stored bytes overwritten after submission");
    assert_eq!(
        copied, 0,
        "a copying librbd stored bytes written after submission"
    );
}

/// Zero-copy writes, for the record (ARCHITECTURE.md): with librbd 16.2 the
/// completion of a write waits for the messenger to drop our memory, which
/// in about half the runs did not happen within 5 s. Not run by default: a
/// write that never completes leaks its client, whose threads still run
/// while the test process exits — librbd's static destructors then crash
/// the whole test binary now and then (seen once in CI as SIGSEGV after
/// every test had passed). Run by hand with `--ignored`.
#[test]
#[ignore = "measurement; leaks a librbd client when a zero-copy write hangs"]
fn zero_copy_write_path_for_the_record() {
    if std::env::var_os("ZCTARGET_TEST_CEPH_CONF").is_none() {
        eprintln!("skipped: ZCTARGET_TEST_CEPH_CONF is not set");
        return;
    }
    match overwritten_writes("false", 3) {
        Some(n) => eprintln!(
            "rbd_disable_zero_copy_writes=false: {n} of 3 writes stored overwritten bytes"
        ),
        None => eprintln!(
            "rbd_disable_zero_copy_writes=false: a lone 1 MiB write did not complete within 5 s"
        ),
    }
}
