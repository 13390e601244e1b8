//! Payload memory and storage backends for zctarget.
//!
//! - [`BufferPool`] / [`Lease`]: bounded, aligned payload memory; a lease is
//!   the only handle to pool memory and returns to the pool on drop.
//! - [`SegmentList`]: one command's payload, moved into each asynchronous
//!   operation and handed back by its completion.
//! - [`Backend`]: block storage a volume is exported from (file or block
//!   device on io_uring or the blocking pool, Ceph RBD, null, memory), opened as a
//!   shared [`Volume`] and used through per-reactor [`VolumeHandle`]s.
//!
//! This crate knows nothing of iSCSI or NVMe.

pub mod backend;
pub mod direct;
mod epoll_file;
pub mod file;
pub mod forward;
mod lock;
pub mod memory;
pub mod null;
pub mod pool;
pub mod rbd;
mod ring_op;
#[cfg(test)]
mod ring_tests;
mod ring_write;
pub mod segment;
pub mod stats;
mod uring_buf;
mod uring_file;
pub mod volume;

pub use backend::{check_range, check_write, read_only_error, Backend, BackendInfo, Engine};
pub use direct::DirectRange;
pub use pool::{BufferPool, Lease, PoolError, PoolStats, POISON_BYTE, POOL_ALIGN};
pub use ring_op::{ops_in_flight, run_uring};
pub use segment::{Segment, SegmentList, INLINE_SEGMENTS};
pub use stats::{Histogram, HistogramSnapshot, VolumeStats, LATENCY_BUCKETS_US};
pub use uring_buf::{fixed_buffers_registered, register_pool_with_ring};
pub use volume::{BackendError, BackendKind, Volume, VolumeHandle, VolumeSpec};
