//! Round trips through every backend on both engines: read/write/flush,
//! discard and write-zeroes, bounds, read-only, sparse creation, O_DIRECT,
//! and a real loop device.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use zctarget_backends::{
    Backend, BackendKind, BufferPool, Engine, SegmentList, Volume, VolumeHandle, VolumeSpec,
};

fn on_engine<F, Fut>(engine: Engine, body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match engine {
        Engine::Uring => tokio_uring::start(body()),
        Engine::Epoll => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body()),
    }
}

fn spec(name: &str, kind: BackendKind, path: Option<PathBuf>, size: u64) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        kind,
        path,
        size: Some(size),
        block_size: 512,
        read_only: false,
        direct_io: false,
        rbd: None,
        write_delay: std::time::Duration::ZERO,
    }
}

async fn filled(pool: &BufferPool, data: &[u8]) -> SegmentList {
    let mut l = pool.lease(data.len()).await.expect("lease");
    l.copy_from_slice(0, data);
    l
}

async fn read_back(h: &VolumeHandle, pool: &BufferPool, offset: u64, len: usize) -> Vec<u8> {
    let mut l = pool.lease(len).await.expect("lease");
    l.fill(0xEE);
    let (l, r) = h.read(offset, l).await;
    r.expect("read");
    l.to_vec()
}

/// The shared round trip: random writes spanning several chunks at random
/// aligned offsets, read back equal; discard and write-zeroes read back as
/// zeroes; out-of-range and misaligned requests are refused.
async fn round_trip(h: &VolumeHandle, pool: &BufferPool, seed: u64) {
    let cap = h.info().capacity;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..8 {
        let len = rng.gen_range(1..=600) * 512usize; // up to 300 KiB: several 64 KiB chunks
        let offset = rng.gen_range(0..(cap - len as u64) / 512) * 512;
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let (_, r) = h.write(offset, filled(pool, &data).await, rng.gen()).await;
        r.expect("write");
        assert!(
            read_back(h, pool, offset, len).await == data,
            "read back differs"
        );
    }
    h.flush().await.expect("flush");

    let data = vec![0x5Au8; 256 << 10];
    let (_, r) = h.write(1 << 20, filled(pool, &data).await, false).await;
    r.expect("write");
    h.discard(1 << 20, 128 << 10).await.expect("discard");
    let got = read_back(h, pool, 1 << 20, 256 << 10).await;
    assert!(
        got[..128 << 10].iter().all(|&b| b == 0),
        "discarded range reads zeroes"
    );
    assert!(
        got[128 << 10..].iter().all(|&b| b == 0x5A),
        "beyond the discard untouched"
    );
    h.write_zeroes((1 << 20) + (128 << 10), 64 << 10)
        .await
        .expect("write zeroes");
    let got = read_back(h, pool, 1 << 20, 256 << 10).await;
    assert!(got[..192 << 10].iter().all(|&b| b == 0));
    assert!(got[192 << 10..].iter().all(|&b| b == 0x5A));

    let (_, r) = h
        .read(cap - 512, pool.lease(1024).await.expect("lease"))
        .await;
    assert_eq!(
        r.expect_err("past the end").kind(),
        std::io::ErrorKind::InvalidInput
    );
    let (_, r) = h.write(100, filled(pool, &[0; 512]).await, false).await;
    assert_eq!(
        r.expect_err("misaligned").kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert!(h.discard(cap, 512).await.is_err());
}

fn file_round_trip(engine: Engine, dir: &Path, direct: bool) {
    let path = dir.join(format!("vol-{engine}-{direct}.img"));
    let mut s = spec("f", BackendKind::File, Some(path.clone()), 64 << 20);
    s.direct_io = direct;
    let volume = Volume::open(&s).expect("open");
    let meta = std::fs::metadata(&path).expect("created");
    assert_eq!(meta.len(), 64 << 20);
    assert!(meta.blocks() * 512 < 1 << 20, "created sparse");
    let pool = BufferPool::new(8 << 20, 64 << 10, true).expect("pool");
    on_engine(engine, || async {
        if engine == Engine::Uring {
            zctarget_backends::register_pool_with_ring(&pool).expect("fixed buffers");
            assert!(zctarget_backends::fixed_buffers_registered());
        }
        let h = volume.open_handle(engine).expect("handle");
        round_trip(&h, &pool, 1).await;
        // Punching a fully written range gives the space back.
        let data = vec![7u8; 4 << 20];
        let (_, r) = h
            .write(16 << 20, filled(&pool, &data[..4 << 20]).await, true)
            .await;
        r.expect("write");
        let before = std::fs::metadata(&path).expect("meta").blocks();
        h.discard(16 << 20, 4 << 20).await.expect("discard");
        let after = std::fs::metadata(&path).expect("meta").blocks();
        assert!(
            after + (3 << 20) / 512 < before,
            "punch hole freed blocks ({before} -> {after})"
        );
    });
    assert!(pool.is_full(), "every lease returned");
}

/// A folder on a real filesystem (O_DIRECT does not work on tmpfs).
fn disk_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tempfile::tempdir_in(base).expect("tempdir")
}

#[test]
fn file_buffered_on_both_engines() {
    let dir = disk_dir();
    file_round_trip(Engine::Epoll, dir.path(), false);
    file_round_trip(Engine::Uring, dir.path(), false);
}

#[test]
fn file_o_direct_on_both_engines() {
    let dir = disk_dir();
    file_round_trip(Engine::Epoll, dir.path(), true);
    file_round_trip(Engine::Uring, dir.path(), true);
}

#[test]
fn memory_and_null_on_both_engines() {
    for engine in [Engine::Epoll, Engine::Uring] {
        let mem = Volume::open(&spec("m", BackendKind::Memory, None, 32 << 20)).expect("memory");
        let null = Volume::open(&spec("n", BackendKind::Null, None, 32 << 20)).expect("null");
        let pool = BufferPool::new(8 << 20, 64 << 10, false).expect("pool");
        on_engine(engine, || async {
            round_trip(&mem.open_handle(engine).expect("handle"), &pool, 2).await;
            let h = null.open_handle(engine).expect("handle");
            let (_, r) = h.write(0, filled(&pool, &[9; 4096]).await, true).await;
            r.expect("null write");
            assert!(read_back(&h, &pool, 0, 4096).await.iter().all(|&b| b == 0));
        });
        assert!(pool.is_full());
    }
}

/// A RAM disk larger than the address space can hold is refused with an
/// error naming the volume, where allocating it used to abort the daemon.
#[test]
fn a_memory_volume_too_large_to_allocate_is_an_error() {
    let Err(err) = Volume::open(&spec("huge", BackendKind::Memory, None, 1 << 62)) else {
        panic!("4 EiB of RAM cannot be allocated");
    };
    let text = err.to_string();
    assert!(
        text.contains("huge") && text.contains("cannot allocate"),
        "{text}"
    );
}

#[test]
fn read_only_volumes_refuse_writes() {
    let dir = disk_dir();
    let path = dir.path().join("ro.img");
    std::fs::write(&path, vec![3u8; 1 << 20]).expect("seed file");
    for engine in [Engine::Epoll, Engine::Uring] {
        let mut s = spec("ro", BackendKind::File, Some(path.clone()), 1 << 20);
        s.read_only = true;
        let volume: Arc<Volume> = Volume::open(&s).expect("open");
        assert!(volume.info().read_only);
        let pool = BufferPool::new(1 << 20, 64 << 10, false).expect("pool");
        on_engine(engine, || async {
            let h = volume.open_handle(engine).expect("handle");
            let (_, r) = h.write(0, filled(&pool, &[0; 512]).await, false).await;
            assert_eq!(
                r.expect_err("read-only").kind(),
                std::io::ErrorKind::PermissionDenied
            );
            assert!(h.discard(0, 512).await.is_err());
            assert!(read_back(&h, &pool, 0, 512).await.iter().all(|&b| b == 3));
        });
    }
}

#[test]
fn invalid_specs_are_refused() {
    let mut s = spec("x", BackendKind::Memory, None, 1 << 20);
    s.block_size = 1000;
    assert!(Volume::open(&s).is_err());
    let s = spec(
        "x",
        BackendKind::File,
        Some("/nonexistent-dir/x.img".into()),
        1 << 20,
    );
    assert!(Volume::open(&s).is_err());
    let mut s = spec("x", BackendKind::File, Some("/nonexistent.img".into()), 0);
    s.size = None;
    assert!(Volume::open(&s).is_err(), "missing file without size");
    let s = spec(
        "x",
        BackendKind::Block,
        Some("/etc/hostname".into()),
        1 << 20,
    );
    assert!(Volume::open(&s).is_err(), "not a block device");
}

/// Detaches the loop device even when the test fails.
struct LoopDevice(String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn loop_device_block_backend_on_both_engines() {
    let dir = disk_dir();
    let img = dir.path().join("loop.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 << 20))
        .expect("image");
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output();
    let dev = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        other => {
            // Only where loop devices cannot be attached at all (no root, no
            // /dev/loop-control); say so loudly.
            eprintln!("SKIPPED: cannot attach a loop device: {other:?}");
            return;
        }
    };
    let _guard = LoopDevice(dev.clone());
    for engine in [Engine::Epoll, Engine::Uring] {
        let mut s = spec("blk", BackendKind::File, Some(dev.clone().into()), 0);
        s.size = None;
        let volume = Volume::open(&s).expect("open loop device");
        assert_eq!(volume.info().capacity, 64 << 20, "size from BLKGETSIZE64");
        let pool = BufferPool::new(8 << 20, 64 << 10, false).expect("pool");
        on_engine(engine, || async {
            round_trip(&volume.open_handle(engine).expect("handle"), &pool, 3).await;
        });
        assert!(pool.is_full());
    }
}

/// A fixed-buffer read whose future is dropped mid-flight must not return
/// its lease to the pool before the kernel completes: the operation keeps
/// it, and drops it at the completion — with no further I/O on the reactor.
#[test]
fn cancelled_fixed_buffer_read_holds_its_lease_until_completion() {
    let dir = disk_dir();
    let path = dir.path().join("cancel.img");
    let volume = Volume::open(&spec("c", BackendKind::File, Some(path), 64 << 20)).expect("open");
    let pool = BufferPool::new(4 << 20, 64 << 10, false).expect("pool");
    tokio_uring::start(async {
        zctarget_backends::register_pool_with_ring(&pool).expect("fixed buffers");
        let h = volume.open_handle(Engine::Uring).expect("handle");
        let mut cancelled = 0;
        let mut saw_in_flight = 0;
        for _ in 0..64 {
            let buf = pool.lease(4 << 20).await.expect("lease");
            // Poll the read once (submits it), then drop it.
            let fut = h.read(0, buf);
            let dropped = tokio::time::timeout(std::time::Duration::from_nanos(1), fut).await;
            if dropped.is_err() {
                cancelled += 1;
                if zctarget_backends::ops_in_flight() > 0 {
                    // Held by the operations while the kernel works.
                    assert!(!pool.is_full());
                    saw_in_flight += 1;
                }
            }
            // A read that finished in time hands its buffer back here.
            drop(dropped);
            // The abandoned operations release their leases at completion.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while zctarget_backends::ops_in_flight() > 0 || !pool.is_full() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "leases never released: {} operations in flight, {} of {} free",
                    zctarget_backends::ops_in_flight(),
                    pool.free_chunks(),
                    pool.stats().total_chunks
                );
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        assert!(cancelled > 0, "no read was cancelled mid-flight");
        assert!(
            saw_in_flight > 0,
            "no cancelled fixed-buffer read was still in flight"
        );
    });
}

/// A file in memory (tmpfs: no `RWF_NOWAIT`, I/O done on the reactor by
/// the epoll engine) round-trips like any other.
#[test]
fn file_on_tmpfs_on_both_engines() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).expect("tempdir");
    file_round_trip(Engine::Epoll, dir.path(), false);
    file_round_trip(Engine::Uring, dir.path(), false);
}

/// Whether `preadv2(RWF_NOWAIT)` works on files in `dir` (ext4, xfs,
/// btrfs: yes; tmpfs: no).
fn nowait_supported(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let path = dir.join("nowait-probe");
    std::fs::write(&path, [0u8; 4096]).expect("probe file");
    let file = std::fs::File::open(&path).expect("open probe");
    let mut byte = [0u8; 1];
    let iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec over our local byte, valid for the call.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    n == 1
}

/// The epoll engine serves reads and writes of a file in memory (tmpfs)
/// and page-cache hits on the reactor: no blocking-pool hop (the volume's
/// `offloaded` counter stays 0). tmpfs refuses `RWF_NOWAIT`; a read that
/// asked for it anyway used to fail with EOPNOTSUPP and then hop to a
/// thread, every time.
#[test]
fn epoll_reads_from_memory_and_page_cache_stay_on_the_reactor() {
    use std::sync::atomic::Ordering;
    let shm = Path::new("/dev/shm");
    let tmpfs = tempfile::tempdir_in(shm).expect("tmpfs dir");
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("disk dir");
    let mut dirs = vec![(tmpfs.path(), "tmpfs")];
    if nowait_supported(disk.path()) {
        dirs.push((disk.path(), "page cache"));
    } else {
        eprintln!("no RWF_NOWAIT on this disk's filesystem: tmpfs only");
    }
    let pool = BufferPool::new(4 << 20, 64 << 10, false).expect("pool");
    for (dir, what) in dirs {
        let path = dir.join("v.img");
        let volume =
            Volume::open(&spec("v", BackendKind::File, Some(path), 8 << 20)).expect("open");
        on_engine(Engine::Epoll, || async {
            let h = volume.open_handle(Engine::Epoll).expect("handle");
            let data: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
            // Written once (on disk this fills the page cache)…
            let (_, r) = h.write(0, filled(&pool, &data).await, false).await;
            r.expect("write");
            let before = volume.stats().offloaded.load(Ordering::Relaxed);
            // …then read many times, in 4 KiB and 64 KiB pieces.
            for i in 0..32u64 {
                let off = (i % 16) * 4096;
                let got = read_back(&h, &pool, off, 4096).await;
                assert!(
                    got[..] == data[off as usize..off as usize + 4096],
                    "{what}: read differs"
                );
            }
            assert!(
                read_back(&h, &pool, 0, 64 << 10).await == data,
                "{what}: read differs"
            );
            assert_eq!(
                volume.stats().offloaded.load(Ordering::Relaxed) - before,
                0,
                "{what}: reads hopped to the blocking pool"
            );
            if what == "tmpfs" {
                assert_eq!(before, 0, "tmpfs: the write hopped to the blocking pool");
            }
        });
    }
}

/// A FUA write is written through (`RWF_DSYNC` on the write itself) on both
/// engines and every kind of file: no whole-file `fdatasync` follows it
/// (the volume's `data_syncs` counter stays put), the data reads back, and
/// an explicit flush still syncs (the counter moves).
#[test]
fn fua_writes_are_written_through_without_a_separate_sync() {
    use std::sync::atomic::Ordering;
    let shm = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir");
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("disk dir");
    let pool = BufferPool::new(8 << 20, 64 << 10, true).expect("pool");
    for (dir, direct) in [
        (disk.path(), false),
        (disk.path(), true),
        (shm.path(), false),
    ] {
        for engine in [Engine::Epoll, Engine::Uring] {
            let path = dir.join(format!("fua-{engine}-{direct}.img"));
            let mut s = spec("fua", BackendKind::File, Some(path), 8 << 20);
            s.direct_io = direct;
            if direct && dir == shm.path() {
                continue;
            }
            let volume = Volume::open(&s).expect("open");
            let what = format!("{engine}, {}, direct {direct}", dir.display());
            on_engine(engine, || async {
                if engine == Engine::Uring {
                    zctarget_backends::register_pool_with_ring(&pool).expect("fixed buffers");
                }
                let h = volume.open_handle(engine).expect("handle");
                let syncs = || volume.stats().data_syncs.load(Ordering::Relaxed);
                // One chunk, and several (a write per segment).
                for (offset, len) in [(4096u64, 4096usize), (1 << 20, 200 << 10)] {
                    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8 ^ 0x3C).collect();
                    let (_, r) = h.write(offset, filled(&pool, &data).await, true).await;
                    r.unwrap_or_else(|e| panic!("{what}: FUA write: {e}"));
                    assert!(
                        read_back(&h, &pool, offset, len).await == data,
                        "{what}: FUA write reads back"
                    );
                }
                assert_eq!(syncs(), 0, "{what}: a FUA write was followed by fdatasync");
                h.flush().await.expect("flush");
                assert_eq!(syncs(), 1, "{what}: a flush syncs");
            });
        }
    }
}

/// Under a QD 32 load of 4 KiB reads and writes, disk I/O on io_uring uses
/// the registered fixed buffers: leases come from the preferred chunk
/// range (`PREFERRED_CHUNKS`, the ones registered), not from a free list
/// cycling through a pool larger than the registration (here 4096 chunks,
/// 1024 registered).
#[test]
fn uring_disk_io_at_qd32_uses_registered_buffers() {
    use std::sync::atomic::Ordering;
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("disk dir");
    let path = disk.path().join("fixed.img");
    let volume =
        Volume::open(&spec("fixed", BackendKind::File, Some(path), 16 << 20)).expect("open");
    // 4096 chunks of 4 KiB: four times what one ring registers.
    let pool = BufferPool::new(16 << 20, 4096, false).expect("pool");
    assert_eq!(pool.stats().total_chunks, 4096);
    tokio_uring::start(async {
        zctarget_backends::register_pool_with_ring(&pool).expect("fixed buffers");
        let h = volume.open_handle(Engine::Uring).expect("handle");
        let blocks = h.info().capacity / 4096;
        let mut rng = rand::rngs::StdRng::seed_from_u64(32);
        // 64 rounds of 32 concurrent 4 KiB I/Os, 70 % reads.
        for _ in 0..64 {
            let ops = (0..32).map(|_| {
                let offset = rng.gen_range(0..blocks) * 4096;
                let write = rng.gen_range(0..10) >= 7;
                let (h, pool) = (&h, &pool);
                async move {
                    let buf = pool.lease(4096).await.expect("lease");
                    let (_, r) = if write {
                        h.write(offset, buf, false).await
                    } else {
                        h.read(offset, buf).await
                    };
                    r.expect("I/O");
                }
            });
            futures_util::future::join_all(ops).await;
        }
    });
    let fixed = volume.stats().ring_fixed.load(Ordering::Relaxed);
    let unfixed = volume.stats().ring_unfixed.load(Ordering::Relaxed);
    assert_eq!(fixed + unfixed, 64 * 32, "every I/O counted once");
    assert_eq!(
        unfixed,
        0,
        "{unfixed} of {} I/Os used a plain buffer",
        64 * 32
    );
}

/// A FUA write (an `RWF_DSYNC` SQE built by the backend) whose future is
/// dropped mid-flight keeps its leases until the kernel completes it, like
/// tokio-uring's own operations: the pool is whole again only once no
/// operation holds a lease, and never before.
#[test]
fn cancelled_fua_write_holds_its_leases_until_completion() {
    let dir = disk_dir();
    let path = dir.path().join("cancel-fua.img");
    let volume = Volume::open(&spec("c", BackendKind::File, Some(path), 64 << 20)).expect("open");
    let pool = BufferPool::new(4 << 20, 64 << 10, false).expect("pool");
    tokio_uring::start(async {
        zctarget_backends::register_pool_with_ring(&pool).expect("fixed buffers");
        let h = volume.open_handle(Engine::Uring).expect("handle");
        let mut cancelled = 0;
        let mut saw_in_flight = 0;
        for i in 0..32u64 {
            let buf = filled(&pool, &[0x5A; 1 << 20]).await;
            let fut = h.write((i % 32) << 20, buf, true);
            let dropped = tokio::time::timeout(std::time::Duration::from_nanos(1), fut).await;
            if dropped.is_err() {
                cancelled += 1;
                if zctarget_backends::ops_in_flight() > 0 {
                    saw_in_flight += 1;
                }
            }
            drop(dropped);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while zctarget_backends::ops_in_flight() > 0 {
                assert!(
                    !pool.is_full(),
                    "leases back while their write is in flight"
                );
                assert!(
                    std::time::Instant::now() < deadline,
                    "FUA writes never completed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert!(pool.is_full(), "leases not returned at completion");
        }
        assert!(cancelled > 0, "no FUA write was cancelled mid-flight");
        assert!(
            saw_in_flight > 0,
            "no cancelled FUA write was still in flight"
        );
    });
}
