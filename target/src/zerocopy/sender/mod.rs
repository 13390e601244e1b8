//! The zero-copy sender: writes [`Message`]s to a TCP socket, many per
//! `sendmsg`, and hands each message's payload back only after the kernel has
//! released its pages.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use slab::Slab;
use smallvec::SmallVec;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use zctarget_backends::{DirectRange, SegmentList};

use super::errqueue;
use super::message::{describe, InlineBuf, Iov, Message, INLINE_CAPACITY, MAX_IOVECS};
pub use super::policy::{SenderCounters, ZeroCopyPolicy};
use super::tracker::NotificationTracker;

mod write;

/// Most bytes offered to one `sendmsg`.
const MAX_BYTES_PER_CALL: usize = 4 << 20;

/// How a message left the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was sent and, for zero-copy, every notification arrived.
    Sent,
    /// The connection was reset or failed first; the peer may not have it all.
    Aborted,
}

/// A released message: its payload is free for reuse (or to drop).
#[derive(Debug)]
pub struct Completion {
    /// The token given at [`ZeroCopySender::message`].
    pub token: u64,
    /// The payload, handed back.
    pub payload: SegmentList,
    /// How it ended.
    pub outcome: Outcome,
    /// `MSG_ZEROCOPY` calls that carried bytes of the message (0 = copied).
    pub zerocopy_calls: u32,
}

/// What [`ZeroCopySender::close`] did.
#[derive(Debug)]
pub struct CloseReport {
    /// Every message was notified before the deadline.
    pub drained: bool,
    /// The connection was reset (the deadline passed, or it had failed).
    pub reset: bool,
    /// Messages released by the close and not yet taken: notified, or
    /// never handed to a zero-copy call (quiet ones are not listed, see
    /// [`Message::quiet`]).
    pub released: Vec<Completion>,
    /// Messages the kernel may still reference after the reset, handed to
    /// the reactor's reaper: each is released when its notification
    /// arrives, or quarantined (never released) if it never does.
    pub orphaned: usize,
}

/// Writes messages to one TCP connection and tracks zero-copy releases.
///
/// Single-threaded by design: it lives on the connection's reactor, and the
/// connection's reader shares the stream through the `Rc`.
///
/// # Waiting for room on a zero-copy socket
///
/// A completion notification queued on the socket's error queue raises
/// `EPOLLERR`, which epoll reports to every registration of the socket
/// whatever events it asked for. mio (1.2, `sys/unix/selector/epoll.rs`
/// `is_write_closed`) maps a lone `EPOLLERR`, and `EPOLLOUT|EPOLLERR`, to
/// "write closed", whatever interest was registered — also
/// `Interest::ERROR`, which only adds `Ready::ERROR` to what a wait may
/// return. tokio (1.54, `ScheduledIo::clear_readiness`) treats
/// `WRITE_CLOSED` as final and never clears it, so once one notification
/// has arrived the stream's registration says "writable" for good and a
/// writer waiting on it for room would retry `sendmsg` on a full socket in
/// a busy loop. No crate offers a way around this, hence what follows.
///
/// When the registration of a socket with `SO_ZEROCOPY` on reports "write
/// closed", the sender stops trusting its write readiness (`write_stuck`)
/// and watches writability through `room`: a duplicate of the socket's
/// descriptor registered with the same reactor for `WRITABLE` only — a
/// registration of its own, with a readiness state of its own. The dup gets
/// the same `EPOLLERR` (epoll always reports it), so whenever a wait on it
/// returns "write closed" the sender (1) reads the error queue dry — no
/// entry left means `EPOLLERR` is no longer pending, (2) takes `SO_ERROR`
/// (a real error fails the connection, as `sendmsg` would), and (3)
/// replaces the registration by a fresh one on the same dup
/// (`EPOLL_CTL_DEL` + `EPOLL_CTL_ADD`; the add polls the socket, so room
/// or a notification that came in between is not missed). A new
/// registration is needed only per notification event that arrives while
/// the sender watches for room, and each one is real progress (a
/// notification read), so this is no loop. `sendmsg` is tried only when a
/// registration reports `WRITABLE`, never on "write closed" alone. A dead
/// socket still shows up: a reset or closed TCP socket polls
/// `EPOLLHUP|EPOLLOUT`, so the wait returns writable and `sendmsg` reports
/// the error; an error without a hang-up is caught by step (2).
/// Notifications while nothing is queued are waited for on the stream's
/// own `Interest::ERROR`, whose readiness tokio does clear. Without
/// `SO_ZEROCOPY` nothing of this runs: "write closed" is then the end of
/// the connection, and the next `sendmsg` reports it.
pub struct ZeroCopySender {
    stream: Rc<TcpStream>,
    policy: ZeroCopyPolicy,
    zerocopy_enabled: bool,
    messages: Slab<Message>,
    /// Slab keys waiting to be (fully) written, in order.
    queue: VecDeque<usize>,
    tracker: NotificationTracker<usize>,
    completions: VecDeque<Completion>,
    spare_inline: Vec<InlineBuf>,
    counters: Arc<SenderCounters>,
    failed: bool,
    /// The connection was reset: later releases are `Aborted`.
    reset: bool,
    /// Consecutive notifications that said the kernel copied anyway.
    copied_streak: u32,
    /// The stream's registration reported "write closed" on a live socket:
    /// its write readiness is stuck, and room is watched through `room`.
    write_stuck: bool,
    /// A dup of the socket registered for writability only (see "Waiting
    /// for room" above); rebuilt after every "write closed" it reports.
    room: Option<Rc<AsyncFd<OwnedFd>>>,
}

/// What the sender's writer waits on, detached from the sender so that a
/// task sharing it (`Rc<RefCell<…>>`) holds no borrow across the await
/// (see [`ZeroCopySender::waiter`]).
pub struct Waiter {
    on: WaitOn,
}

enum WaitOn {
    /// The stream's own registration.
    Stream(Rc<TcpStream>, Interest),
    /// The writability watch (see [`ZeroCopySender`]).
    Room(Rc<AsyncFd<OwnedFd>>),
}

/// What a [`Waiter`] saw; pass it to [`ZeroCopySender::handle_woken`].
#[derive(Debug, Clone, Copy)]
pub struct Woken {
    ready: Ready,
    room: bool,
}

impl Waiter {
    /// Waits until the sender has something to do.
    pub async fn wait(self) -> io::Result<Woken> {
        match self.on {
            WaitOn::Stream(stream, interest) => Ok(Woken {
                ready: stream.ready(interest).await?,
                room: false,
            }),
            WaitOn::Room(room) => {
                // Dropping the guard keeps the readiness: it is cleared
                // where a write finds the socket full.
                let ready = room
                    .ready(Interest::WRITABLE | Interest::ERROR)
                    .await?
                    .ready();
                Ok(Woken { ready, room: true })
            }
        }
    }
}

/// In `auto` (threshold) mode, this many consecutive "copied anyway"
/// notifications turn zero-copy off for the socket: the route copies (e.g.
/// loopback), so `MSG_ZEROCOPY` would only add page pinning and — worse —
/// hold each payload until the peer's ACK, which a peer that delays ACKs
/// sends up to ~40 ms later (the kernel's msg_zerocopy documentation
/// suggests exactly this fallback).
pub const COPIED_STREAK_LIMIT: u32 = 4;

impl ZeroCopySender {
    /// A sender on `stream`. Enables `SO_ZEROCOPY` unless the policy is
    /// `Never`; if the kernel refuses, it silently sends by copy.
    pub fn new(
        stream: Rc<TcpStream>,
        policy: ZeroCopyPolicy,
        counters: Arc<SenderCounters>,
    ) -> Self {
        let zerocopy_enabled =
            policy != ZeroCopyPolicy::Never && errqueue::enable_zerocopy(&*stream).is_ok();
        Self {
            stream,
            policy,
            zerocopy_enabled,
            messages: Slab::with_capacity(64),
            queue: VecDeque::with_capacity(64),
            tracker: NotificationTracker::new(0),
            completions: VecDeque::with_capacity(64),
            spare_inline: Vec::new(),
            counters,
            failed: false,
            reset: false,
            copied_streak: 0,
            write_stuck: false,
            room: None,
        }
    }

    /// Counts a notification; in threshold mode a streak of copied ones
    /// turns zero-copy off for this socket.
    fn note_copied(
        counters: &SenderCounters,
        streak: &mut u32,
        policy: &mut ZeroCopyPolicy,
        copied: bool,
    ) {
        SenderCounters::add(&counters.notifications, 1);
        if !copied {
            *streak = 0;
            return;
        }
        SenderCounters::add(&counters.copied_notifications, 1);
        *streak = streak.saturating_add(1);
        if *streak >= COPIED_STREAK_LIMIT && matches!(*policy, ZeroCopyPolicy::Threshold(_)) {
            *policy = ZeroCopyPolicy::Never;
            SenderCounters::add(&counters.zerocopy_abandoned, 1);
            tracing::debug!("kernel copies on this route; zero-copy off for the connection");
        }
    }

    /// The stream (for the connection's reader).
    pub fn stream(&self) -> &Rc<TcpStream> {
        &self.stream
    }

    /// Whether `SO_ZEROCOPY` is on for this socket.
    pub fn zerocopy_enabled(&self) -> bool {
        self.zerocopy_enabled
    }

    /// Whether a message carrying `payload_bytes` of payload, submitted
    /// now, would be sent by copy: its pages are then released by the
    /// `sendmsg` that writes its last byte, so whatever is queued after it
    /// (a status) cannot leave before that release.
    pub fn copies(&self, payload_bytes: usize) -> bool {
        !(self.zerocopy_enabled && self.policy.wants_zerocopy(payload_bytes))
    }

    /// Starts a message carrying `payload` (possibly empty).
    pub fn message(&mut self, token: u64, payload: SegmentList) -> Message {
        let inline = self
            .spare_inline
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(INLINE_CAPACITY));
        Message::new(inline, payload, token)
    }

    /// Queues a message for writing. Call [`progress`](Self::progress) (or
    /// [`try_progress`](Self::try_progress)) to move bytes.
    pub fn submit(&mut self, mut msg: Message) {
        // A file's pages go by `sendfile` (page references, no
        // notification); a memory volume's store only by copy (see
        // `MemoryRange`).
        msg.zerocopy = self.zerocopy_enabled
            && !msg.is_direct()
            && self.policy.wants_zerocopy(msg.payload_bytes());
        if self.failed {
            self.finish(msg, Outcome::Aborted);
            return;
        }
        if matches!(msg.direct, Some(DirectRange::Memory(_))) {
            SenderCounters::add(&self.counters.store_bytes, msg.store_bytes() as u64);
        }
        let key = self.messages.insert(msg);
        self.queue.push_back(key);
    }

    /// Messages not yet released (queued, being written, or awaiting
    /// notification).
    pub fn in_flight(&self) -> usize {
        self.messages.len()
    }

    /// Messages queued but not fully written.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Takes the next released message, if any.
    pub fn take_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// Whether the socket failed (all later messages are aborted).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Writes what the socket takes now and reaps notifications, without
    /// waiting. Returns an error if the connection failed.
    pub fn try_progress(&mut self) -> io::Result<()> {
        self.reap_notifications(false);
        self.write_queued()
    }

    /// What the sender waits for: room while bytes are queued, the error
    /// queue while zero-copy sends are unreleased; `None` when idle or
    /// failed. Call [`handle_woken`](Self::handle_woken) with what
    /// [`Waiter::wait`] returns.
    pub fn waiter(&self) -> Option<Waiter> {
        if self.failed {
            return None;
        }
        let queued = !self.queue.is_empty();
        if queued && self.write_stuck {
            if let Some(room) = &self.room {
                // Notifications wake this registration too (`EPOLLERR`).
                return Some(Waiter {
                    on: WaitOn::Room(Rc::clone(room)),
                });
            }
        }
        let interest = match (queued, self.tracker.in_flight() > 0) {
            (true, true) => Interest::WRITABLE | Interest::ERROR,
            (true, false) => Interest::WRITABLE,
            (false, true) => Interest::ERROR,
            (false, false) => return None,
        };
        Some(Waiter {
            on: WaitOn::Stream(Rc::clone(&self.stream), interest),
        })
    }

    /// Makes progress after a [`Waiter`] returned.
    pub fn handle_woken(&mut self, woken: Woken) -> io::Result<()> {
        let Woken { ready, room } = woken;
        // Without `SO_ZEROCOPY` there are no notifications: "write closed"
        // is the connection's end, and `sendmsg` will say so.
        let notified = self.zerocopy_enabled && ready.is_write_closed();
        if notified && !room {
            // Sticky from now on (see the type's notes).
            self.write_stuck = true;
        }
        if self.tracker.in_flight() > 0 || ready.is_error() {
            self.reap_notifications(false);
        }
        // On a zero-copy socket, write only when a registration reports
        // room: "write closed" alone is a notification (a dead TCP socket
        // reports writable as well).
        if ready.is_writable() || (ready.is_write_closed() && !notified) {
            self.write_queued()?;
        }
        if notified && !self.failed {
            // The registration that said so will keep saying it.
            self.rearm_room()?;
        }
        Ok(())
    }

    /// Builds a fresh writability watch (see the type's notes): reads the
    /// error queue dry so `EPOLLERR` is no longer pending, fails on a real
    /// socket error, then registers the dup anew.
    fn rearm_room(&mut self) -> io::Result<()> {
        self.reap_notifications(true);
        let r = self.register_room();
        if let Err(e) = &r {
            tracing::debug!(error = %e, "zero-copy sender: cannot watch for room");
            self.fail();
        }
        r
    }

    fn register_room(&mut self) -> io::Result<()> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        let fd = match self.room.take().map(Rc::try_unwrap) {
            // Deregisters (`EPOLL_CTL_DEL`) and keeps the dup.
            Some(Ok(room)) => room.into_inner(),
            // A wait still holds the old one (not the case in this
            // crate); it goes when that wait ends.
            Some(Err(_)) | None => self.stream.as_fd().try_clone_to_owned()?,
        };
        // SAFETY: `fd` is an open descriptor owned by the `OwnedFd` moved
        // into the `AsyncFd`, which keeps it open and unchanged until it is
        // dropped or `into_inner` returns it. It is a dup of the stream's
        // socket (an fd number of its own, so epoll accepts a second
        // registration of the same socket).
        let room = unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }
            .map_err(|e| e.into_parts().1)?;
        self.room = Some(Rc::new(room));
        SenderCounters::add(&self.counters.room_rearms, 1);
        Ok(())
    }

    /// Waits until the socket can take queued bytes or notifications arrive,
    /// then makes progress. Returns at once if there is nothing to do.
    pub async fn progress(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection failed",
            ));
        }
        let Some(waiter) = self.waiter() else {
            return Ok(());
        };
        let woken = waiter.wait().await?;
        self.handle_woken(woken)
    }

    /// Drives the sender until every message is released.
    pub async fn flush_all(&mut self) -> io::Result<()> {
        while self.in_flight() > 0 {
            self.progress().await?;
        }
        Ok(())
    }

    /// Tears the connection's send side down without releasing pages early:
    /// writes what it can and waits for every notification until `timeout`.
    /// Past it, resets the connection and hands the messages the kernel may
    /// still reference to the reactor's reaper (see [`super::reaper`]): a
    /// reset purges the socket's queues, not skbs already in a qdisc or a
    /// NIC ring, so a lease returns only when its notification arrives.
    pub async fn close(mut self, timeout: Duration) -> CloseReport {
        let drained = tokio::time::timeout(timeout, self.flush_all())
            .await
            .is_ok_and(|r| r.is_ok());
        let mut reset = false;
        let mut orphaned = 0;
        if !drained || self.in_flight() > 0 {
            reset = true;
            orphaned = self.reset_and_orphan();
        }
        let mut released = Vec::with_capacity(self.completions.len());
        released.extend(self.completions.drain(..));
        CloseReport {
            drained: drained && !reset,
            reset,
            released,
            orphaned,
        }
    }

    /// Resets the connection, releases what the kernel cannot reference
    /// (notified, or never sent zero-copy) and hands the rest to the
    /// reaper. Returns how many messages were handed over.
    fn reset_and_orphan(&mut self) -> usize {
        SenderCounters::add(&self.counters.teardown_resets, 1);
        if let Err(e) = errqueue::abort_connection(self.stream.as_raw_fd()) {
            tracing::debug!(error = %e, "reset on teardown");
        }
        self.reset = true;
        self.failed = true;
        // The dup must not keep the socket open.
        self.room = None;
        self.queue.clear();
        self.reap_notifications(false);
        let keys: Vec<usize> = self.messages.iter().map(|(k, _)| k).collect();
        for key in keys {
            let tracked = self.messages.get(key).is_some_and(|m| m.tracked);
            // No later call will carry a tracked message: it completes once
            // the values it has are notified.
            if !tracked || self.tracker.written(&key).is_some() {
                if let Some(msg) = self.messages.try_remove(key) {
                    self.finish(msg, Outcome::Aborted);
                }
            }
        }
        if self.messages.is_empty() {
            return 0;
        }
        let handed = self.messages.len();
        super::reaper::adopt(super::reaper::Orphan {
            stream: Rc::clone(&self.stream),
            tracker: std::mem::take(&mut self.tracker),
            messages: std::mem::take(&mut self.messages),
            counters: Arc::clone(&self.counters),
        });
        handed
    }

    /// Reads the error queue dry and releases every message it completes.
    /// Unless `always`, only while zero-copy sends await a notification.
    fn reap_notifications(&mut self, always: bool) {
        // Otherwise the error queue has nothing for us and reading it costs
        // a syscall.
        if !self.zerocopy_enabled || (self.tracker.in_flight() == 0 && !always) {
            return;
        }
        let mut released: SmallVec<[usize; 16]> = SmallVec::new();
        let (counters, streak, policy) =
            (&self.counters, &mut self.copied_streak, &mut self.policy);
        super::reaper::read_errqueue(
            &self.stream,
            &mut self.tracker,
            |copied| Self::note_copied(counters, streak, policy, copied),
            &mut released,
        );
        let outcome = if self.reset {
            Outcome::Aborted
        } else {
            Outcome::Sent
        };
        for key in released {
            if let Some(msg) = self.messages.try_remove(key) {
                self.finish(msg, outcome);
            }
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        // Nothing waits for room any more; the dup must not keep the
        // socket open.
        self.room = None;
        // Nothing more will be written. Messages the kernel still references
        // are released as their notifications arrive (here, or after the
        // reset by `close`/drop and the reaper); unwritten, untracked ones
        // can go now.
        let queued: Vec<usize> = self.queue.drain(..).collect();
        for key in queued {
            let tracked = self.messages.get(key).is_some_and(|m| m.tracked);
            if !tracked {
                if let Some(msg) = self.messages.try_remove(key) {
                    self.finish(msg, Outcome::Aborted);
                }
            }
        }
    }

    fn finish(&mut self, msg: Message, outcome: Outcome) {
        let Message {
            inline,
            payload,
            token,
            zerocopy_calls,
            notify,
            ..
        } = msg;
        // A header area that grew for an unusual message is not kept.
        if inline.capacity() <= 16 * INLINE_CAPACITY {
            self.spare_inline.push(inline);
        }
        if !notify {
            // Nobody waits: the payload goes back to the pool now.
            drop(payload);
            return;
        }
        self.completions.push_back(Completion {
            token,
            payload,
            outcome,
            zerocopy_calls,
        });
    }
}

impl Drop for ZeroCopySender {
    fn drop(&mut self) {
        // Messages the kernel may still reference must not be freed here:
        // reset like `close` past its deadline and hand them to the reaper,
        // which releases each one when its notification arrives.
        if self.tracker.in_flight() > 0 {
            self.reset_and_orphan();
        }
    }
}
