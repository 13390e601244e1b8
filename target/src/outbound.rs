//! A connection's send side, shared by its command tasks.
//!
//! The [`ZeroCopySender`] sits in a `RefCell` that is borrowed only for
//! synchronous calls; the writer task ([`Outbound::run_writer`]) waits on
//! what the sender's [`Waiter`](crate::zerocopy::Waiter) names (the stream's
//! readiness, or the sender's own writability watch once notifications have
//! left the stream's write readiness stuck) without holding the borrow, then
//! lets the sender make progress and hands each released message back to
//! whoever waits for it.
//! Protocol-neutral: the iSCSI and NVMe/TCP frontends both use it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use zctarget_backends::SegmentList;

use crate::zerocopy::{Completion, Message, ZeroCopySender};

/// The shared send side of one connection.
pub struct Outbound {
    stream: Rc<TcpStream>,
    sender: RefCell<ZeroCopySender>,
    wake: Notify,
    next_token: Cell<u64>,
    /// Tracked messages' releases, by slab key (carried in the token with
    /// [`TRACKED`] set): entries are reused, so waiting for a release costs
    /// no allocation and no channel per command.
    waiters: RefCell<Slab<Waiter>>,
    closing: Cell<bool>,
}

/// Token bit marking a tracked message; the low bits are its waiter's key.
const TRACKED: u64 = 1 << 63;

/// The state of one tracked message's release.
// The completion lives inline: slab entries are reused, while boxing it
// would allocate per command — what this table exists to avoid.
#[allow(clippy::large_enum_variant)]
enum Waiter {
    /// Not released yet; the task to wake when it is.
    Waiting(Option<Waker>),
    /// Released: the completion, for the waiting task to take.
    Released(Completion),
    /// The connection failed first.
    Failed,
    /// Its [`Released`] future was dropped: the completion is just dropped.
    Abandoned,
}

/// The connection failed before the message was released.
#[derive(Debug, thiserror::Error)]
#[error("connection failed before the send was released")]
pub struct SendAborted;

/// Resolves when a tracked message's pages are released (see
/// [`Outbound::send_tracked`]).
pub struct Released {
    out: Rc<Outbound>,
    key: usize,
    done: bool,
}

impl Future for Released {
    type Output = Result<Completion, SendAborted>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let key = self.key;
        let mut waiters = self.out.waiters.borrow_mut();
        let outcome = match waiters.get_mut(key) {
            Some(Waiter::Waiting(w)) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Some(Waiter::Released(_)) => match waiters.try_remove(key) {
                Some(Waiter::Released(c)) => Ok(c),
                _ => Err(SendAborted),
            },
            _ => {
                let _ = waiters.try_remove(key);
                Err(SendAborted)
            }
        };
        drop(waiters);
        self.done = true;
        Poll::Ready(outcome)
    }
}

impl Drop for Released {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut waiters = self.out.waiters.borrow_mut();
        match waiters.get_mut(self.key) {
            Some(w @ Waiter::Waiting(_)) => *w = Waiter::Abandoned,
            Some(_) => {
                // Released or failed already: nobody will take it.
                let _ = waiters.try_remove(self.key);
            }
            None => {}
        }
    }
}

impl Outbound {
    /// Wraps `sender` (which writes to `stream`).
    pub fn new(stream: Rc<TcpStream>, sender: ZeroCopySender) -> Rc<Self> {
        Rc::new(Self {
            stream,
            sender: RefCell::new(sender),
            wake: Notify::new(),
            next_token: Cell::new(1),
            waiters: RefCell::new(Slab::new()),
            closing: Cell::new(false),
        })
    }

    /// The connection's stream (its reader waits on it too).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Starts a message with a fresh token.
    pub fn message(&self, payload: SegmentList) -> Message {
        let token = self.next_token.get();
        self.next_token.set(token.wrapping_add(1));
        self.sender.borrow_mut().message(token, payload)
    }

    /// Whether a message with `payload_bytes` of payload queued now goes
    /// by copy (see [`ZeroCopySender::copies`]): under the strict status
    /// policy its status may then follow it at once — in the same
    /// `sendmsg` — since the kernel releases the data's pages no later
    /// than it takes the status's bytes.
    pub fn copies(&self, payload_bytes: usize) -> bool {
        self.sender.borrow().copies(payload_bytes)
    }

    /// Queues `msg` for the writer task, which runs after the commands
    /// ready in this reactor pass and writes everything queued by then in
    /// as few `sendmsg` calls as it can (many PDUs, many commands per call).
    /// Its payload is dropped (returned to the pool) when the kernel
    /// releases it.
    pub fn send(&self, mut msg: Message) {
        if msg.token() & TRACKED == 0 {
            msg.quiet();
        }
        self.sender.borrow_mut().submit(msg);
        self.wake.notify_one();
    }

    /// Queues `msg` and returns a future that yields its completion (the
    /// payload handed back) once the kernel has released every page.
    pub fn send_tracked(self: &Rc<Self>, mut msg: Message) -> Released {
        let key = self.waiters.borrow_mut().insert(Waiter::Waiting(None));
        msg.token = TRACKED | key as u64;
        self.send(msg);
        self.dispatch_completions();
        Released {
            out: Rc::clone(self),
            key,
            done: false,
        }
    }

    /// Whether the socket failed.
    pub fn failed(&self) -> bool {
        self.sender.borrow().failed()
    }

    /// Messages not yet released.
    pub fn in_flight(&self) -> usize {
        self.sender.borrow().in_flight()
    }

    fn dispatch_completions(&self) {
        loop {
            let next = self.sender.borrow_mut().take_completion();
            let Some(c) = next else { break };
            if c.token & TRACKED == 0 {
                // Untracked: the payload just returns to the pool.
                continue;
            }
            let key = (c.token & !TRACKED) as usize;
            let mut waiters = self.waiters.borrow_mut();
            match waiters.get_mut(key) {
                Some(Waiter::Waiting(w)) => {
                    let waker = w.take();
                    waiters[key] = Waiter::Released(c);
                    drop(waiters);
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                Some(Waiter::Abandoned) => {
                    // A waiter that went away just drops the payload.
                    let _ = waiters.try_remove(key);
                }
                _ => {}
            }
        }
    }

    /// Asks the writer to finish: it returns once every queued message is
    /// released (or the connection failed).
    pub fn close(&self) {
        self.closing.set(true);
        self.wake.notify_one();
    }

    /// The writer task: drives the sender until [`close`](Self::close) and
    /// everything is released, or the socket fails.
    pub async fn run_writer(self: Rc<Self>) -> io::Result<()> {
        let r = Rc::clone(&self).drive().await;
        if r.is_err() {
            // The socket failed: nothing queued will be released by a send
            // any more. Failing the waits lets the command tasks end (and
            // drop their hold on the connection); the payloads stay in the
            // sender until `shut_down` closes it.
            self.fail_waiters();
        }
        r
    }

    /// Fails every waiting release: their `send_tracked` futures see an
    /// error (the payloads stay in the sender until it closes).
    fn fail_waiters(&self) {
        let mut wake = Vec::new();
        let mut waiters = self.waiters.borrow_mut();
        let keys: Vec<usize> = waiters.iter().map(|(k, _)| k).collect();
        for key in keys {
            match &mut waiters[key] {
                Waiter::Waiting(w) => {
                    if let Some(w) = w.take() {
                        wake.push(w);
                    }
                    waiters[key] = Waiter::Failed;
                }
                Waiter::Abandoned => {
                    let _ = waiters.try_remove(key);
                }
                _ => {}
            }
        }
        drop(waiters);
        for w in wake {
            w.wake();
        }
    }

    async fn drive(self: Rc<Self>) -> io::Result<()> {
        loop {
            self.dispatch_completions();
            let waiter = self.sender.borrow().waiter();
            match waiter {
                None => {
                    if self.failed() {
                        return Err(io::ErrorKind::BrokenPipe.into());
                    }
                    if self.closing.get() && self.in_flight() == 0 {
                        return Ok(());
                    }
                    self.wake.notified().await;
                }
                Some(waiter) => {
                    tokio::select! {
                        woken = waiter.wait() => {
                            let woken = woken?;
                            let r = self.sender.borrow_mut().handle_woken(woken);
                            if let Err(e) = r {
                                self.dispatch_completions();
                                return Err(e);
                            }
                        }
                        _ = self.wake.notified() => {}
                    }
                }
            }
        }
    }

    /// Takes the sender back for teardown (see [`ZeroCopySender::close`]).
    /// Fails if a command task still holds the outbound.
    pub fn into_sender(self: Rc<Self>) -> Result<ZeroCopySender, Rc<Self>> {
        Rc::try_unwrap(self).map(|o| o.sender.into_inner())
    }

    /// Ends the send side of a closing connection: the writer drains
    /// (bounded by `timeout`, then stopped), commands still waiting for a
    /// release are failed, then the sender closes, waiting for the kernel's
    /// notifications and resetting the connection past `timeout` — leases
    /// are released only after that. Logs what went wrong.
    pub async fn shut_down(
        self: Rc<Self>,
        writer: tokio::task::JoinHandle<io::Result<()>>,
        timeout: std::time::Duration,
    ) {
        self.close();
        let mut writer = writer;
        let stalled = tokio::time::timeout(timeout, &mut writer).await.is_err();
        if stalled {
            // A peer that stopped reading: the writer cannot drain.
            writer.abort();
            let _ = writer.await;
        }
        // Commands still waiting for a release will not get it through this
        // connection: fail their waits, and give their tasks (bounded) time
        // to end and let go of the connection.
        self.fail_waiters();
        let deadline = tokio::time::Instant::now() + timeout;
        while Rc::strong_count(&self) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        match self.into_sender() {
            Ok(sender) => {
                // A peer that did not drain within `timeout` will not drain
                // now either: reset at once.
                let wait = if stalled {
                    std::time::Duration::ZERO
                } else {
                    timeout
                };
                if sender.close(wait).await.reset {
                    tracing::warn!(
                        "zero-copy notifications outstanding at teardown; connection reset"
                    );
                }
            }
            Err(_) => tracing::warn!("connection state still referenced at teardown"),
        }
    }
}
