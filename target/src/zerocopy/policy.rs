//! When payload goes `MSG_ZEROCOPY`, and the counters every sender of a
//! reactor adds to (read by the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};

/// When to send payload with `MSG_ZEROCOPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopyPolicy {
    /// Zero-copy for messages whose payload is at least this many bytes.
    Threshold(usize),
    /// Every message with payload goes zero-copy (tests).
    Always,
    /// Never: plain copying sends.
    Never,
}

impl ZeroCopyPolicy {
    /// The policy for a connection to `peer`: in threshold (`auto`) mode a
    /// loopback peer gets `Never`. The kernel copies every zero-copy send
    /// on loopback anyway (each notification says so), so `MSG_ZEROCOPY`
    /// there only adds notifications to read and pages held until the
    /// peer reads. `Always` is kept (tests use it on loopback to exercise
    /// notifications under back-pressure; see [`ZeroCopySender`] on how
    /// the writer waits for room then).
    pub fn for_peer(self, peer: Option<std::net::SocketAddr>) -> Self {
        match (self, peer) {
            (ZeroCopyPolicy::Threshold(_), Some(p)) if p.ip().is_loopback() => {
                ZeroCopyPolicy::Never
            }
            (p, _) => p,
        }
    }

    pub(crate) fn wants_zerocopy(self, payload_bytes: usize) -> bool {
        match self {
            ZeroCopyPolicy::Threshold(t) => payload_bytes > 0 && payload_bytes >= t,
            ZeroCopyPolicy::Always => payload_bytes > 0,
            ZeroCopyPolicy::Never => false,
        }
    }
}

/// Counters shared by all senders of a reactor (or the whole daemon), read by
/// the metrics endpoint.
#[derive(Debug, Default)]
pub struct SenderCounters {
    /// `sendmsg` calls with `MSG_ZEROCOPY` that sent bytes.
    pub zerocopy_calls: AtomicU64,
    /// Plain copying `sendmsg` calls.
    pub copy_calls: AtomicU64,
    /// Bytes sent with `MSG_ZEROCOPY`.
    pub zerocopy_bytes: AtomicU64,
    /// Bytes sent by copy.
    pub copy_bytes: AtomicU64,
    /// `sendfile` calls that sent bytes of a file-backed payload (see
    /// [`Message::from_direct`]).
    pub sendfile_calls: AtomicU64,
    /// Bytes sent with `sendfile`.
    pub sendfile_bytes: AtomicU64,
    /// Read bytes queued to be sent from a memory volume's store (see
    /// [`Message::from_direct`]).
    ///
    /// [`Message::from_direct`]: super::Message::from_direct
    pub store_bytes: AtomicU64,
    /// Notifications read from error queues.
    pub notifications: AtomicU64,
    /// Notifications saying the kernel copied after all.
    pub copied_notifications: AtomicU64,
    /// Connections on which `auto` mode turned zero-copy off because the
    /// kernel kept copying (see [`COPIED_STREAK_LIMIT`]).
    pub zerocopy_abandoned: AtomicU64,
    /// `ENOBUFS` on a zero-copy call, retried as a copy.
    pub enobufs_fallbacks: AtomicU64,
    /// Connections reset because notifications did not arrive in time.
    pub teardown_resets: AtomicU64,
    /// Pool bytes quarantined for good: sent zero-copy, and the kernel never
    /// notified them after the reset (see `zerocopy::reaper`).
    pub quarantined_bytes: AtomicU64,
    /// `sendmsg` calls that found the socket full (`EAGAIN`).
    pub would_block: AtomicU64,
    /// `sendmsg` calls that wrote less than offered: the socket filled up,
    /// and the writer waits for the kernel to say it has room again.
    pub partial_writes: AtomicU64,
    /// Registrations of a connection's writability watch made after a
    /// completion notification left the previous one reporting "write
    /// closed" (see [`ZeroCopySender`]'s notes on waiting for room).
    pub room_rearms: AtomicU64,
}

impl SenderCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
