//! Forwarding a follower's writes to the gateway that owns the volume
//! (issue #13, the peer link). The backends only define the hook: the
//! daemon installs a [`Forward`] on each shared rbd image
//! ([`crate::rbd::Image::set_forwarder`]); a follower's write that its own
//! gate refuses while a live peer holds the lock goes through it instead,
//! and the host gets the owner's answer.

use std::future::Future;
use std::io;
use std::pin::Pin;

/// A write-type operation sent to the owner. Payloads are copies: the
/// caller's pool buffers go back as soon as the copy is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardOp {
    /// Write `data` at `offset`.
    Write {
        /// Byte offset.
        offset: u64,
        /// The data.
        data: Vec<u8>,
        /// Durable before the answer.
        fua: bool,
    },
    /// Zero a range.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Discard a range.
    Discard {
        /// Byte offset.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// COMPARE AND WRITE, atomic on the owner.
    CompareAndWrite {
        /// Byte offset.
        offset: u64,
        /// Expected contents.
        compare: Vec<u8>,
        /// New contents.
        data: Vec<u8>,
        /// Durable before the answer.
        fua: bool,
    },
}

/// What a forwarded operation yields: `Ok(None)` done, `Ok(Some(at))` a
/// COMPARE AND WRITE miscompared at byte `at` (nothing written), or the
/// error to answer (a refusal carries [`crate::rbd::NotOwner`]).
pub type Forwarded = io::Result<Option<u64>>;

/// The future of a forwarded operation (sendable: it only waits for the
/// link's answer).
pub type ForwardFuture = Pin<Box<dyn Future<Output = Forwarded> + Send>>;

/// Sends a volume's writes to its owner.
pub trait Forward: Send + Sync + std::fmt::Debug {
    /// The operation on its way, or `None` when no link to the owner is up
    /// (the caller then answers its own refusal).
    fn forward(&self, op: ForwardOp) -> Option<ForwardFuture>;
}
