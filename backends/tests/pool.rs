//! BufferPool / Lease / SegmentList: ownership, bounds, poison, back-pressure.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use zctarget_backends::{BufferPool, PoolError, POISON_BYTE};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    /// Random lease/drop sequences: no chunk is ever handed out twice while
    /// leased, free + leased == total at every step, and everything returns.
    #[test]
    fn leases_are_exclusive_and_all_return(ops in proptest::collection::vec((any::<bool>(), 1usize..300_000), 1..200)) {
        let pool = BufferPool::new(1 << 20, 16 << 10, false).expect("pool");
        let total = pool.stats().total_chunks;
        let mut held = Vec::new();
        for (take, size) in ops {
            if take {
                if let Some(list) = pool.try_lease(size).expect("size within pool") {
                    prop_assert_eq!(list.len(), size);
                    prop_assert_eq!(list.segment_count(), pool.chunks_for(size));
                    held.push(list);
                }
            } else if !held.is_empty() {
                held.swap_remove(size % held.len());
            }
            let mut seen = HashSet::new();
            let mut leased = 0;
            for list in &held {
                for seg in list.segments() {
                    prop_assert!(seen.insert(seg.lease().index()), "chunk leased twice");
                    leased += 1;
                }
            }
            prop_assert_eq!(pool.free_chunks() + leased, total);
        }
        drop(held);
        prop_assert!(pool.is_full());
    }

    /// Bytes copied in come back out at any offset.
    #[test]
    fn segment_list_copy_round_trip(len in 1usize..200_000, off in 0usize..200_000, data in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let pool = BufferPool::new(1 << 20, 16 << 10, false).expect("pool");
        let mut list = pool.try_lease(len).expect("size").expect("free");
        let off = off % len;
        let n = list.copy_from_slice(off, &data);
        prop_assert_eq!(n, data.len().min(len - off));
        let mut back = vec![0u8; n];
        prop_assert_eq!(list.copy_to_slice(off, &mut back), n);
        prop_assert_eq!(&back[..], &data[..n]);
        prop_assert_eq!(list.crc32c_range(off, n), crc32c::crc32c(&data[..n]));
    }
}

#[test]
fn outstanding_lease_keeps_its_chunk_out_of_the_pool() {
    let pool = BufferPool::new(256 << 10, 64 << 10, false).expect("pool");
    let list = pool.try_lease(100_000).expect("size").expect("free");
    assert_eq!(pool.free_chunks(), 2);
    let mut segments = list.into_segments();
    let kept = segments.pop().expect("two segments");
    drop(segments);
    assert_eq!(pool.free_chunks(), 3, "dropped segment returned");
    drop(kept);
    assert!(pool.is_full());
}

#[test]
fn poison_on_release_fills_returned_chunks() {
    let pool = BufferPool::new(64 << 10, 64 << 10, true).expect("pool");
    let mut list = pool.try_lease(4096).expect("size").expect("free");
    list.fill(0x11);
    drop(list);
    // The single chunk comes back; its whole capacity carries the poison.
    let list = pool.try_lease(64 << 10).expect("size").expect("free");
    assert!(list.to_vec().iter().all(|&b| b == POISON_BYTE));

    let clean = BufferPool::new(64 << 10, 64 << 10, false).expect("pool");
    let mut list = clean.try_lease(4096).expect("size").expect("free");
    list.fill(0x11);
    drop(list);
    let list = clean.try_lease(4096).expect("size").expect("free");
    assert!(
        list.to_vec().iter().all(|&b| b == 0x11),
        "no poison when off"
    );
}

#[test]
fn empty_pool_applies_back_pressure_until_a_lease_returns() {
    rt().block_on(async {
        let pool = BufferPool::new(128 << 10, 64 << 10, false).expect("pool");
        let all = pool.lease(128 << 10).await.expect("lease");
        assert_eq!(pool.try_lease(1).expect("size").map(|l| l.len()), None);
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.lease(100 << 10).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "lease must wait while the pool is empty"
        );
        assert_eq!(pool.stats().backpressure_waits, 1);
        drop(all);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task")
            .expect("lease");
        assert_eq!(got.len(), 100 << 10);
    });
}

#[test]
fn impossible_requests_fail_instead_of_waiting() {
    let pool = BufferPool::new(128 << 10, 64 << 10, false).expect("pool");
    assert!(matches!(
        pool.try_lease(200 << 10),
        Err(PoolError::TooLarge { .. })
    ));
    assert!(BufferPool::new(1 << 20, 1000, false).is_err());
    assert!(BufferPool::new(1000, 4096, false).is_err());
    rt().block_on(async {
        let _held = pool.lease(128 << 10).await.expect("lease");
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.lease(1).await })
        };
        tokio::task::yield_now().await;
        pool.close();
        let r = waiter.await.expect("task");
        assert!(matches!(r, Err(PoolError::Closed)));
    });
}

#[test]
fn truncate_returns_surplus_chunks() {
    let pool = BufferPool::new(512 << 10, 64 << 10, false).expect("pool");
    let mut list = pool.try_lease(300 << 10).expect("size").expect("free");
    assert_eq!(pool.free_chunks(), 3);
    list.truncate(70 << 10);
    assert_eq!(list.len(), 70 << 10);
    assert_eq!(pool.free_chunks(), 6);
}

/// While the pool is not busy, leases keep coming from its first
/// `PREFERRED_CHUNKS` chunks (the ones io_uring registers as fixed
/// buffers) instead of the free list cycling through the whole pool.
#[test]
fn leases_prefer_the_registered_chunks() {
    use zctarget_backends::pool::PREFERRED_CHUNKS;
    let chunks = 2 * PREFERRED_CHUNKS;
    let pool = BufferPool::new(chunks * 4096, 4096, false).unwrap();
    for _ in 0..(3 * chunks) {
        let l = pool.try_lease(2 * 4096).unwrap().unwrap();
        for seg in l.segments() {
            assert!(
                (seg.lease().index() as usize) < PREFERRED_CHUNKS,
                "lease of chunk {}",
                seg.lease().index()
            );
        }
    }
    // Under load the rest of the pool is used too.
    let all = pool.try_lease(chunks * 4096).unwrap().unwrap();
    assert_eq!(all.len(), chunks * 4096);
    drop(all);
    assert!(pool.is_full());
}
