//! The reactor's reaper: keeps reading the error queue of closed
//! connections until the kernel has let go of every page they sent.
//!
//! Resetting a connection (`connect(AF_UNSPEC)`) purges its socket queues,
//! but skbs already handed to the qdisc (e.g. `fq` pacing, `tbf`) or a NIC
//! transmit ring still reference the pages. Their notifications arrive once
//! those layers free the skbs, on the same socket's error queue. So a closing
//! sender resets, then hands its socket, tracker and unreleased messages to
//! this reaper (an [`Orphan`]); each message's payload returns to the pool
//! exactly when its range is notified. What is still unnotified after the
//! linger bound, or when the reaper finishes at shutdown, is *quarantined*:
//! the leases are withheld for good ([`zctarget_backends::Lease::quarantine`]),
//! counted in [`SenderCounters::quarantined_bytes`] and logged once — never
//! released on a timer.
//!
//! One reaper per reactor thread ([`start`]); a sender finds it through a
//! thread-local, so closing and dropping a sender need no handle. Without a
//! running reaper (before [`start`], after [`Reaper::finish`], or on a thread
//! that never started one) adopted orphans are quarantined at once: the safe
//! default.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use slab::Slab;
use smallvec::SmallVec;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::errqueue::{self, ZeroCopyNotification};
use super::message::Message;
use super::sender::SenderCounters;
use super::tracker::NotificationTracker;

/// How long a reactor's reaper waits for a closed connection's notifications
/// before quarantining what is left.
pub const REAPER_LINGER: Duration = Duration::from_secs(60);

/// Longest nap between two reads of an orphan's error queue: readiness wakes
/// it sooner; this only bounds the cost of a missed edge.
const POLL_CAP: Duration = Duration::from_millis(50);

/// What a closing sender leaves behind: its socket (already reset), its
/// tracker and the messages the kernel may still reference.
pub(crate) struct Orphan {
    pub(crate) stream: Rc<TcpStream>,
    pub(crate) tracker: NotificationTracker<usize>,
    pub(crate) messages: Slab<Message>,
    pub(crate) counters: Arc<SenderCounters>,
}

impl Orphan {
    /// Reads the error queue dry; drops (releases) every message whose range
    /// is now fully notified. Returns whether nothing is left to wait for.
    fn reap(&mut self) -> bool {
        let mut released: SmallVec<[usize; 16]> = SmallVec::new();
        let counters = Arc::clone(&self.counters);
        read_errqueue(
            &self.stream,
            &mut self.tracker,
            |copied| {
                counters.notifications.fetch_add(1, Ordering::Relaxed);
                if copied {
                    counters
                        .copied_notifications
                        .fetch_add(1, Ordering::Relaxed);
                }
            },
            &mut released,
        );
        for key in released {
            // Notified: the kernel has let go of the pages.
            drop(self.messages.try_remove(key));
        }
        if self.tracker.in_flight() == 0 {
            // Anything left was never part of a zero-copy call.
            self.messages.clear();
            return true;
        }
        false
    }

    /// Withholds every unreleased message for good. Returns pool bytes
    /// quarantined.
    fn quarantine(self, why: &str) -> usize {
        let Orphan {
            stream,
            messages,
            counters,
            tracker,
        } = self;
        let count = messages.len();
        let mut bytes = 0;
        for (_, msg) in messages {
            let Message {
                inline, payload, ..
            } = msg;
            bytes += payload.quarantine();
            // The header bytes were sent zero-copy too.
            std::mem::forget(inline);
        }
        counters
            .quarantined_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        tracing::warn!(
            messages = count,
            bytes,
            unnotified_sends = tracker.outstanding_values(),
            reason = why,
            "zero-copy notifications never arrived after the reset; \
             quarantining their buffers (never reused)"
        );
        drop(stream);
        bytes
    }
}

/// Reads `stream`'s error queue until it is empty, applying every zero-copy
/// notification to `tracker`; `note(copied)` is called per notification and
/// completed message keys are pushed onto `released`.
pub(crate) fn read_errqueue(
    stream: &TcpStream,
    tracker: &mut NotificationTracker<usize>,
    mut note: impl FnMut(bool),
    released: &mut SmallVec<[usize; 16]>,
) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut apply = |n: ZeroCopyNotification, released: &mut SmallVec<[usize; 16]>| {
        note(n.copied);
        tracker.notify(n.lo, n.hi, released);
    };
    loop {
        match stream.try_io(Interest::ERROR, || errqueue::recv_notification(fd)) {
            Ok(Some(n)) => apply(n, released),
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Readiness may not be flagged yet although entries are
                // queued: read directly until the queue is really empty.
                match errqueue::recv_notification(fd) {
                    Ok(Some(n)) => apply(n, released),
                    Ok(None) => continue,
                    Err(_) => break,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

#[derive(Default)]
struct State {
    /// A reaper task runs on this thread.
    active: Cell<bool>,
    /// Past this, an orphan's remaining messages are quarantined.
    linger: Cell<Duration>,
    /// Adopted, not yet picked up by the dispatcher.
    incoming: RefCell<Vec<Orphan>>,
    /// Orphans adopted and not finished (incoming or being reaped).
    live: Cell<usize>,
    /// New orphans, or `stop`.
    wake: Notify,
    /// Quarantine what is left now (shutdown).
    stop: Cell<bool>,
    stop_wake: Notify,
    /// `live` dropped to 0.
    idle: Notify,
}

thread_local! {
    static STATE: Rc<State> = Rc::new(State::default());
}

/// Hands a reset connection's unreleased messages to this thread's reaper,
/// or quarantines them at once if no reaper runs.
pub(crate) fn adopt(mut orphan: Orphan) {
    if orphan.reap() {
        return;
    }
    let state = STATE.try_with(Rc::clone).ok().filter(|s| s.active.get());
    match state {
        Some(state) => {
            state.live.set(state.live.get() + 1);
            state.incoming.borrow_mut().push(orphan);
            state.wake.notify_one();
        }
        None => {
            orphan.quarantine("no reaper running on this thread");
        }
    }
}

/// Orphans adopted on this thread and not yet released or quarantined.
pub fn orphans() -> usize {
    STATE.with(|s| s.live.get())
}

/// A running reaper (see the module docs).
pub struct Reaper {
    state: Rc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts this thread's reaper: a local task (call inside a `LocalSet` or
/// tokio-uring runtime) that releases each orphaned message as its
/// notification arrives and quarantines what is left after `linger`.
pub fn start(linger: Duration) -> Reaper {
    let state = STATE.with(Rc::clone);
    state.linger.set(linger);
    state.stop.set(false);
    state.active.set(true);
    let task = tokio::task::spawn_local(dispatch(Rc::clone(&state)));
    Reaper { state, task }
}

impl Reaper {
    /// Shutdown: waits up to `wait` for the orphans to be notified, then
    /// quarantines whatever is left and stops. Orphans adopted afterwards on
    /// this thread are quarantined at once. Never waits longer than `wait`
    /// (plus the time to quarantine).
    pub async fn finish(self, wait: Duration) {
        let state = &self.state;
        let _ = tokio::time::timeout(wait, async {
            while state.live.get() > 0 {
                let idle = state.idle.notified();
                if state.live.get() == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
        state.active.set(false);
        state.stop.set(true);
        state.stop_wake.notify_waiters();
        state.wake.notify_one();
        // Each orphan task quarantines at once on `stop`.
        while state.live.get() > 0 {
            let idle = state.idle.notified();
            if state.live.get() == 0 {
                break;
            }
            // Bounded: a task that was never polled again would be dropped
            // with the runtime; its orphan is then simply leaked (never
            // released), which is what quarantine means.
            if tokio::time::timeout(Duration::from_secs(1), idle)
                .await
                .is_err()
            {
                break;
            }
        }
        self.task.abort();
        let left = std::mem::take(&mut *state.incoming.borrow_mut());
        for orphan in left {
            state.live.set(state.live.get().saturating_sub(1));
            orphan.quarantine("reactor shutting down");
        }
    }
}

async fn dispatch(state: Rc<State>) {
    loop {
        let incoming = std::mem::take(&mut *state.incoming.borrow_mut());
        for orphan in incoming {
            tokio::task::spawn_local(reap_orphan(Rc::clone(&state), orphan));
        }
        if state.stop.get() {
            return;
        }
        state.wake.notified().await;
    }
}

/// Releases `orphan`'s messages as their notifications arrive; quarantines
/// the rest past the linger bound or on stop.
async fn reap_orphan(state: Rc<State>, mut orphan: Orphan) {
    let deadline = Instant::now() + state.linger.get();
    loop {
        if orphan.reap() {
            break;
        }
        if state.stop.get() {
            orphan.quarantine("reactor shutting down");
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            orphan.quarantine("linger bound passed");
            break;
        }
        let nap = (deadline - now).min(POLL_CAP);
        let stream = Rc::clone(&orphan.stream);
        tokio::select! {
            ready = stream.ready(Interest::ERROR) => {
                if ready.is_err() {
                    // No readiness to wait on: fall back to the periodic read.
                    tokio::time::sleep(nap).await;
                }
            }
            _ = tokio::time::sleep(nap) => {}
            _ = state.stop_wake.notified() => {}
        }
    }
    state.live.set(state.live.get().saturating_sub(1));
    if state.live.get() == 0 {
        state.idle.notify_waiters();
    }
}
