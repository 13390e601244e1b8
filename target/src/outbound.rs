//! A connection's send side, shared by its command tasks.
//!
//! The [`ZeroCopySender`] sits in a `RefCell` that is borrowed only for
//! synchronous calls; the writer task ([`Outbound::run_writer`]) waits on the
//! stream's readiness without holding the borrow, then lets the sender make
//! progress and hands each released message back to whoever waits for it.
//! Protocol-neutral: the iSCSI and NVMe/TCP frontends both use it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use zctarget_backends::SegmentList;

use crate::zerocopy::{Completion, Message, ZeroCopySender};

/// The shared send side of one connection.
pub struct Outbound {
    stream: Rc<TcpStream>,
    sender: RefCell<ZeroCopySender>,
    wake: Notify,
    next_token: Cell<u64>,
    waiters: RefCell<HashMap<u64, oneshot::Sender<Completion>>>,
    closing: Cell<bool>,
}

impl Outbound {
    /// Wraps `sender` (which writes to `stream`).
    pub fn new(stream: Rc<TcpStream>, sender: ZeroCopySender) -> Rc<Self> {
        Rc::new(Self {
            stream,
            sender: RefCell::new(sender),
            wake: Notify::new(),
            next_token: Cell::new(1),
            waiters: RefCell::new(HashMap::new()),
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

    /// Queues `msg` for the writer task, which runs after the commands
    /// ready in this reactor pass and writes everything queued by then in
    /// as few `sendmsg` calls as it can (many PDUs, many commands per call).
    /// Its payload is dropped (returned to the pool) when the kernel
    /// releases it.
    pub fn send(&self, msg: Message) {
        self.sender.borrow_mut().submit(msg);
        self.wake.notify_one();
    }

    /// Queues `msg` and returns a receiver that yields its completion (the
    /// payload handed back) once the kernel has released every page.
    pub fn send_tracked(&self, msg: Message) -> oneshot::Receiver<Completion> {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(msg.token(), tx);
        self.send(msg);
        self.dispatch_completions();
        rx
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
            let waiter = self.waiters.borrow_mut().remove(&c.token);
            if let Some(tx) = waiter {
                // A waiter that went away just drops the payload.
                let _ = tx.send(c);
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

    /// Drops every waiter: their `send_tracked` receivers see an error.
    fn fail_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        drop(waiters);
    }

    async fn drive(self: Rc<Self>) -> io::Result<()> {
        loop {
            self.dispatch_completions();
            let interest = self.sender.borrow().interest();
            match interest {
                None => {
                    if self.failed() {
                        return Err(io::ErrorKind::BrokenPipe.into());
                    }
                    if self.closing.get() && self.in_flight() == 0 {
                        return Ok(());
                    }
                    self.wake.notified().await;
                }
                Some(interest) => {
                    tokio::select! {
                        ready = self.stream.ready(interest) => {
                            let ready = ready?;
                            let r = self.sender.borrow_mut().handle_ready(ready);
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
