//! Buffer admission for host data (iSCSI Data-Out, NVMe/TCP H2CData), the
//! same for both frontends.
//!
//! Write commands hold pool memory while the host's data is on its way.
//! If the connection's reader waited for that memory, a pool held entirely
//! by commands whose data sits unread behind the waiting reader would never
//! drain: hold-and-wait, a wedged connection (and, with several hosts,
//! every connection). So the reader never waits for the pool:
//!
//! - data the host sends **unasked** (iSCSI immediate and unsolicited
//!   data, NVMe/TCP in-capsule data) is already on the wire: the reader
//!   takes buffers only if they are free *now* ([`Admission::try_now`]);
//!   otherwise the frontend drains the bytes and answers with its
//!   protocol's retryable "no resources" status (SCSI TASK SET FULL, NVMe
//!   Command Interrupted);
//! - data the target **asks for** (R2T) is asked for only once its buffers
//!   are leased: the command's own task waits in
//!   [`Admission::lease_solicited`] (the NeedBuffer state), while the reader
//!   goes on reading.
//!
//! A per-connection quota bounds the bytes one connection holds for data
//! still to arrive, so one host — slow, stalled or hostile — cannot hold
//! the whole pool: a command is admitted when the connection holds nothing
//! yet, or when it stays within the quota. The frontends also bound how
//! long asked-for data may take ([`HOST_DATA_TIMEOUT`]).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;
use zctarget_backends::{BufferPool, PoolError, SegmentList};

/// How long a host may take to send data the target asked for (R2T)
/// before its connection is dropped (the buffers it held return).
pub const HOST_DATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Share of the pool one connection may hold for host data still to
/// arrive (1 / this).
const QUOTA_DIVISOR: usize = 8;

/// One connection's admission state. Lives on the connection's reactor.
pub struct Admission {
    pool: BufferPool,
    quota: usize,
    held: Cell<usize>,
    released: Notify,
}

/// Bytes a connection holds for host data still to arrive; returned to the
/// connection's quota on drop (all data in, or the command ended).
pub struct HostDataGrant {
    admission: Rc<Admission>,
    bytes: usize,
}

impl Drop for HostDataGrant {
    fn drop(&mut self) {
        let a = &self.admission;
        a.held.set(a.held.get().saturating_sub(self.bytes));
        a.released.notify_waiters();
    }
}

impl Admission {
    /// Admission over `pool` for one connection.
    pub fn new(pool: BufferPool) -> Rc<Self> {
        let quota = pool.total_bytes() / QUOTA_DIVISOR;
        Rc::new(Self {
            pool,
            quota,
            held: Cell::new(0),
            released: Notify::new(),
        })
    }

    /// Bytes held for host data still to arrive.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    fn fits(&self, bytes: usize) -> bool {
        let held = self.held.get();
        held == 0 || held + bytes <= self.quota
    }

    fn grant(self: &Rc<Self>, bytes: usize) -> HostDataGrant {
        self.held.set(self.held.get() + bytes);
        HostDataGrant {
            admission: Rc::clone(self),
            bytes,
        }
    }

    /// Buffers for `bytes` of host data that is already on its way
    /// (unsolicited): now or not at all. `Ok(None)`: the quota or the pool
    /// is exhausted, the frontend drains the data and answers "busy".
    /// `all_here`: the data arrives whole with the command (in-capsule,
    /// or immediate data covering the transfer), so it cannot hold buffers
    /// while waiting for the host and the quota does not apply.
    pub fn try_now(
        self: &Rc<Self>,
        bytes: usize,
        all_here: bool,
    ) -> Result<Option<(SegmentList, HostDataGrant)>, PoolError> {
        if !all_here && !self.fits(bytes) {
            return Ok(None);
        }
        Ok(self
            .pool
            .try_lease_unasked(bytes)?
            .map(|list| (list, self.grant(bytes))))
    }

    /// Buffers for the first `bytes` of a transfer whose rest the command
    /// will ask for — iSCSI immediate data when the whole transfer could
    /// not be leased at once. Taken from the pool's reserve only, so the
    /// commands holding part of their buffers while they wait for the rest
    /// pin at most the reserve, and the rest of the pool always drains.
    pub fn try_partial(
        self: &Rc<Self>,
        bytes: usize,
    ) -> Result<Option<(SegmentList, HostDataGrant)>, PoolError> {
        if !self.fits(bytes) {
            return Ok(None);
        }
        Ok(self
            .pool
            .try_lease_reserve(bytes)?
            .map(|list| (list, self.grant(bytes))))
    }

    /// The largest transfer [`lease_solicited`](Self::lease_solicited) can
    /// ever grant.
    pub fn max_solicited(&self) -> usize {
        self.pool.leasable_bytes()
    }

    /// Buffers for `bytes` of host data the command will ask for: waits for
    /// room in the quota, then for the pool. Called from the command's task,
    /// never from the reader. Cancel-safe: a dropped wait holds nothing.
    pub async fn lease_solicited(
        self: &Rc<Self>,
        bytes: usize,
    ) -> Result<(SegmentList, HostDataGrant), PoolError> {
        loop {
            let released = self.released.notified();
            if self.fits(bytes) {
                break;
            }
            released.await;
        }
        let grant = self.grant(bytes);
        let list = self.pool.lease(bytes).await?;
        Ok((list, grant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = 64 << 10;

    fn pool(chunks: usize) -> BufferPool {
        BufferPool::new(chunks * CHUNK, CHUNK, false).unwrap()
    }

    /// Runs `f` on a current-thread runtime inside a LocalSet.
    fn local<F: std::future::Future<Output = ()>>(f: F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    #[test]
    fn unasked_data_finds_the_reserve_while_waiters_queue() {
        local(async {
            let p = BufferPool::with_reserve(8 * CHUNK, CHUNK, false, 2).unwrap();
            let a = Admission::new(p.clone());
            let b = Admission::new(p.clone());
            // Everything outside the reserve held, and a waiter queued.
            let held = p.lease(6 * CHUNK).await.unwrap();
            let b2 = Rc::clone(&b);
            let waiter =
                tokio::task::spawn_local(
                    async move { b2.lease_solicited(4 * CHUNK).await.is_ok() },
                );
            tokio::task::yield_now().await;
            // Unasked data still gets buffers (from the reserve)...
            let (part, g) = a.try_partial(CHUNK).unwrap().unwrap();
            let (whole, g2) = Admission::new(p.clone())
                .try_now(CHUNK, true)
                .unwrap()
                .unwrap();
            // ...which is then exhausted: refused, not waited for.
            assert!(Admission::new(p.clone())
                .try_now(CHUNK, true)
                .unwrap()
                .is_none());
            assert!(!waiter.is_finished());
            drop((part, g, whole, g2));
            drop(held);
            assert!(waiter.await.unwrap());
            assert_eq!(p.free_chunks(), 8);
        });
    }

    #[test]
    fn unsolicited_data_never_waits() {
        let p = pool(16);
        let a = Admission::new(p.clone());
        let held = p.try_lease(16 * CHUNK).unwrap().unwrap();
        assert!(
            a.try_now(CHUNK, true).unwrap().is_none(),
            "empty pool: refused"
        );
        drop(held);
        let (list, grant) = a.try_now(CHUNK, false).unwrap().unwrap();
        assert_eq!(list.len(), CHUNK);
        assert_eq!(a.held(), CHUNK);
        drop(grant);
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn quota_bounds_one_connection_but_always_admits_one_command() {
        let p = pool(16); // quota: 2 chunks
        let a = Admission::new(p.clone());
        // Larger than the quota, but the connection holds nothing: admitted.
        let (_l1, g1) = a.try_now(4 * CHUNK, false).unwrap().unwrap();
        assert!(a.try_now(CHUNK, false).unwrap().is_none(), "over the quota");
        // Data that is all here does not wait for the host: no quota.
        assert!(a.try_now(CHUNK, true).unwrap().is_some());
        drop(g1);
        let (_l2, _g2) = a.try_now(CHUNK, false).unwrap().unwrap();
        let (_l3, _g3) = a.try_now(CHUNK, false).unwrap().unwrap();
        assert!(
            a.try_now(CHUNK, false).unwrap().is_none(),
            "quota of 2 chunks"
        );
        // Another connection has its own quota.
        let b = Admission::new(p.clone());
        assert!(b.try_now(CHUNK, false).unwrap().is_some());
    }

    #[test]
    fn solicited_waits_for_quota_then_pool() {
        local(async {
            let p = pool(16);
            let a = Admission::new(p.clone());
            let (l1, g1) = a.lease_solicited(2 * CHUNK).await.unwrap();
            let a2 = Rc::clone(&a);
            let waiter = tokio::task::spawn_local(async move {
                a2.lease_solicited(CHUNK).await.map(|(l, g)| (l.len(), g))
            });
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished(), "quota full: waits");
            drop(l1);
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished(), "buffers back, grant still held");
            drop(g1);
            let (len, _g) = waiter.await.unwrap().unwrap();
            assert_eq!(len, CHUNK);
        });
    }
}
