//! The RBD backend against a real Ceph cluster (tests/ceph/cluster.sh):
//! round trips, discard and write-zeroes reading back zeroes, a dropped
//! read keeping its buffers until librbd completes it, and the exclusive
//! lock refusing a second writer. Skipped, with the reason printed, unless
//! `ZCTARGET_TEST_CEPH_CONF` names the cluster's ceph.conf.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use zctarget_backends::rbd::RbdSpec;
use zctarget_backends::{Backend, BackendKind, BufferPool, Engine, Volume, VolumeSpec};

fn ceph_conf() -> Option<PathBuf> {
    match std::env::var_os("ZCTARGET_TEST_CEPH_CONF") {
        Some(p) => Some(p.into()),
        None => {
            eprintln!(
                "skipped: ZCTARGET_TEST_CEPH_CONF is not set (tests/run.sh starts a cluster)"
            );
            None
        }
    }
}

fn spec(conf: &Path, name: &str, image: &str, keyring: bool) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        kind: BackendKind::Rbd,
        path: None,
        size: Some(64 << 20),
        block_size: 512,
        read_only: false,
        direct_io: false,
        rbd: Some(RbdSpec {
            pool: "rbd".into(),
            namespace: None,
            image: image.into(),
            ceph_conf: Some(conf.to_path_buf()),
            ceph_user: None,
            // A different keyring path is a different Ceph client.
            keyring: keyring.then(|| conf.with_file_name("keyring")),
            rados_timeout_secs: None,
            sharing: zctarget_backends::rbd::Sharing::Exclusive,
        }),
        write_delay: std::time::Duration::ZERO,
    }
}

fn image_name(tag: &str) -> String {
    format!("bk-{tag}-{}", std::process::id())
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn round_trip_discard_zeroes_and_dropped_read() {
    let Some(conf) = ceph_conf() else { return };
    let vol = Volume::open(&spec(&conf, "r", &image_name("rt"), false)).expect("open rbd");
    assert_eq!(vol.info().capacity, 64 << 20);
    assert!(vol.info().discard);
    run(async {
        let pool = BufferPool::new(4 << 20, 64 << 10, true).expect("pool");
        let h = vol.open_handle(Engine::Epoll).expect("handle");
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for i in 0..16u64 {
            let len = 512 * rng.gen_range(1..=400usize);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let off = 512 * rng.gen_range(0..100_000u64);
            let mut l = pool.lease(len).await.expect("lease");
            l.copy_from_slice(0, &data);
            let (_, r) = h.write(off, l, i % 2 == 0).await;
            r.expect("write");
            let l = pool.lease(len).await.expect("lease");
            let (l, r) = h.read(off, l).await;
            r.expect("read");
            assert_eq!(l.to_vec(), data, "round trip {i} at {off}");
        }
        h.flush().await.expect("flush");
        for (zero, off) in [(false, 1 << 20), (true, 3 << 20)] {
            let mut l = pool.lease(8192).await.expect("lease");
            l.fill(0x5A);
            let (_, r) = h.write(off, l, false).await;
            r.expect("write");
            // 4 KiB in the middle: a partial discard must not be skipped.
            let r = if zero {
                h.write_zeroes(off + 2048, 4096).await
            } else {
                h.discard(off + 2048, 4096).await
            };
            r.expect("discard / write zeroes");
            let l = pool.lease(8192).await.expect("lease");
            let (l, r) = h.read(off, l).await;
            r.expect("read");
            let v = l.to_vec();
            assert!(v[..2048].iter().all(|&b| b == 0x5A));
            assert!(v[2048..6144].iter().all(|&b| b == 0), "zeroes={zero}");
            assert!(v[6144..].iter().all(|&b| b == 0x5A));
        }
        // A dropped read keeps its lease until librbd's callback ran. The
        // read covers data written above (an unwritten range can complete
        // from the object map alone, before the first poll); a read that
        // still completed at submission proves nothing and is retried.
        let free = pool.free_chunks();
        let mut observed = false;
        for _ in 0..20 {
            let l = pool.lease(256 << 10).await.expect("lease");
            let mut fut = Box::pin(h.read(1 << 20, l));
            if poll_once(fut.as_mut()).await {
                continue;
            }
            drop(fut);
            assert_ne!(
                pool.free_chunks(),
                free,
                "the dropped read's lease is still in flight"
            );
            observed = true;
            break;
        }
        assert!(observed, "every rbd read completed at submission");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.free_chunks() != free {
            assert!(
                Instant::now() < deadline,
                "lease of a dropped read never came back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// Polls `fut` once: whether it was ready.
async fn poll_once<F: std::future::Future>(mut fut: std::pin::Pin<&mut F>) -> bool {
    std::future::poll_fn(move |cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
}

#[test]
fn second_writer_is_refused() {
    let Some(conf) = ceph_conf() else { return };
    let image = image_name("lock");
    let first = Volume::open(&spec(&conf, "a", &image, false)).expect("first open");
    let t = Instant::now();
    let err = Volume::open(&spec(&conf, "b", &image, true)).expect_err("second writer");
    let msg = err.to_string();
    eprintln!("refused in {:?}: {msg}", t.elapsed());
    assert!(msg.contains("is locked by"), "{msg}");
    let mut ro = spec(&conf, "c", &image, true);
    ro.read_only = true;
    Volume::open(&ro).expect("a read-only opener needs no lock");
    drop(first);
    Volume::open(&spec(&conf, "d", &image, true)).expect("lock free again");
}

/// Thin provisioning from the object map: never-written objects and ones
/// discarded whole are deallocated, written ones mapped (whole objects);
/// `max_runs` bounds the answer; an image without fast-diff reports
/// everything mapped.
#[test]
fn allocation_from_the_object_map() {
    const MIB: u64 = 1 << 20;
    let Some(conf) = ceph_conf() else { return };
    let vol = Volume::open(&spec(&conf, "m", &image_name("map"), false)).expect("open rbd");
    assert_eq!(
        vol.allocation(0, 64 * MIB, 64).expect("allocation"),
        vec![(0, 64 * MIB, false)],
        "a new image holds nothing"
    );
    run(async {
        let pool = BufferPool::new(4 << 20, 64 << 10, true).expect("pool");
        let h = vol.open_handle(Engine::Epoll).expect("handle");
        for off in [4096, 21 * MIB, 30 * MIB] {
            let mut l = pool.lease(8192).await.expect("lease");
            l.fill(0x5A);
            h.write(off, l, false).await.1.expect("write");
        }
        // Object 7 (28..32 MiB) discarded whole, object 5 (20..24) in part.
        h.discard(28 * MIB, 4 * MIB).await.expect("discard");
        h.discard(21 * MIB, 4096).await.expect("discard");
    });
    let runs = vol.allocation(0, 64 * MIB, 64).expect("allocation");
    assert_eq!(
        runs,
        vec![
            (0, 4 * MIB, true),
            (4 * MIB, 16 * MIB, false),
            (20 * MIB, 4 * MIB, true),
            (24 * MIB, 40 * MIB, false),
        ],
        "object states"
    );
    assert_eq!(
        vol.allocation(2 * MIB, 20 * MIB, 2).expect("allocation"),
        vec![(2 * MIB, 2 * MIB, true), (4 * MIB, 16 * MIB, false)],
        "two runs at most, from an offset inside an object"
    );

    // Without fast-diff (hence no object map to answer from): all mapped.
    let plain = image_name("plain");
    let out = std::process::Command::new("rbd")
        .args(["create", "--size", "16M", "--image-feature"])
        .args(["layering,exclusive-lock", &format!("rbd/{plain}")])
        .env("CEPH_CONF", &conf)
        .output()
        .expect("rbd create");
    assert!(out.status.success(), "{out:?}");
    let vol = Volume::open(&spec(&conf, "p", &plain, false)).expect("open rbd");
    assert_eq!(
        vol.allocation(0, 16 * MIB, 64).expect("allocation"),
        vec![(0, 16 * MIB, true)]
    );
}
