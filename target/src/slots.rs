//! The command engine both frontends share: a connection's (an NVMe
//! queue's, an iSCSI connection's) preallocated table of command slots,
//! each advanced through [`CommandLifecycle`] by one function, [`drive`].
//!
//! A slot is taken when a command arrives and returned when it retires; its
//! lifecycle, its wake-up and its worker are reused for the next command.
//! The worker is a local task spawned the first time its slot is used and
//! kept for the connection's life: a command costs no task spawn, no
//! allocation and no map entry — the reader puts the command in the slot
//! and wakes the worker, the way SPDK's per-request state machine is driven
//! from its request array. At teardown [`Slots::close`] wakes every idle
//! worker to exit and [`Slots::drained`] waits for the busy ones.
//!
//! What differs between the wire formats is behind [`Execute`]: how buffers
//! are leased, how host data is fetched (R2T / H2C), how data and status are
//! framed. What happens in which order is here, once.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use tokio::sync::Notify;

use crate::command::{Action, CommandLifecycle, Event, StatusPolicy};
use crate::outbound::Released;

/// One command slot.
struct Slot<C> {
    cmd: RefCell<Option<C>>,
    go: Notify,
    worker: Cell<bool>,
    life: Cell<CommandLifecycle>,
}

/// A connection's command slots.
pub struct Slots<C> {
    slots: Box<[Slot<C>]>,
    /// Free slot numbers, most recently retired last (LIFO: hot slots,
    /// hot caches).
    free: RefCell<Vec<u16>>,
    busy: Cell<usize>,
    /// Commands ever started (placement's measure of traffic).
    started: Cell<u64>,
    idle: Notify,
    closing: Cell<bool>,
    policy: StatusPolicy,
    /// Transitions the lifecycle refused (frontend bugs), for tests.
    bad_transitions: Cell<u64>,
}

/// Where a command's data went ([`Execute::send_data`]).
pub enum DataSent {
    /// Nothing was sent (no data, or the command failed before).
    Nothing,
    /// Queued; the sender owns the buffers until the kernel releases them
    /// and nobody waits (eager policy).
    Untracked,
    /// Queued; the status waits for the kernel's release (strict policy).
    Tracked(Released),
}

/// What a frontend does at each step of a command's life. Each method
/// returns `false` when the command ends early (the connection is closing,
/// the host never sent its data, the status was already answered); the
/// slot then retires without further steps.
#[allow(async_fn_in_trait)] // single-threaded reactors: no Send bound wanted
pub trait Execute {
    /// The frontend's command.
    type Cmd;
    /// Leases the command's buffers (NeedBuffer).
    async fn lease(&self, slot: u16, cmd: &mut Self::Cmd) -> bool;
    /// Fetches the host's data into the leased buffers.
    async fn receive(&self, slot: u16, cmd: &mut Self::Cmd) -> bool;
    /// Runs the backend I/O; the outcome stays in `cmd`.
    async fn execute(&self, slot: u16, cmd: &mut Self::Cmd);
    /// Queues the read data.
    fn send_data(&self, slot: u16, cmd: &mut Self::Cmd) -> DataSent;
    /// Queues the status (unless the data already carried it).
    fn send_status(&self, slot: u16, cmd: &mut Self::Cmd);
}

impl<C> Slots<C> {
    /// `n` free slots (at most 65 535) governed by `policy`.
    pub fn new(n: usize, policy: StatusPolicy) -> Self {
        let n = n.clamp(1, usize::from(u16::MAX));
        let slots = (0..n)
            .map(|_| Slot {
                cmd: RefCell::new(None),
                go: Notify::new(),
                worker: Cell::new(false),
                life: Cell::new(CommandLifecycle::new(policy)),
            })
            .collect();
        Self {
            slots,
            free: RefCell::new((0..n as u16).rev().collect()),
            busy: Cell::new(0),
            started: Cell::new(0),
            idle: Notify::new(),
            closing: Cell::new(false),
            policy,
            bad_transitions: Cell::new(0),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a table has at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Slots holding a command.
    pub fn busy(&self) -> usize {
        self.busy.get()
    }

    /// Where slot `idx`'s command is in its life.
    pub fn state(&self, idx: u16) -> crate::command::CommandState {
        self.slots[usize::from(idx)].life.get().state()
    }

    /// Commands started so far (placement's measure of traffic).
    pub fn started(&self) -> u64 {
        self.started.get()
    }

    /// Lifecycle transitions refused so far (0 unless a frontend is wrong).
    pub fn bad_transitions(&self) -> u64 {
        self.bad_transitions.get()
    }

    /// Puts `cmd` in a free slot and wakes its worker. `Ok((slot, spawn))`:
    /// `spawn` when the slot has no worker yet (the caller spawns one that
    /// loops on [`Slots::next`]); `Err(cmd)` when every slot is busy or the
    /// table is closing.
    pub fn start(&self, cmd: C) -> Result<(u16, bool), C> {
        if self.closing.get() {
            return Err(cmd);
        }
        let Some(idx) = self.free.borrow_mut().pop() else {
            return Err(cmd);
        };
        let slot = &self.slots[usize::from(idx)];
        *slot.cmd.borrow_mut() = Some(cmd);
        self.busy.set(self.busy.get() + 1);
        self.started.set(self.started.get().wrapping_add(1));
        let spawn = !slot.worker.replace(true);
        slot.go.notify_one();
        Ok((idx, spawn))
    }

    /// The slot's next command, waiting for it; None once the table is
    /// closing (the worker then ends).
    pub async fn next(&self, idx: u16) -> Option<C> {
        let slot = &self.slots[usize::from(idx)];
        loop {
            if let Some(cmd) = slot.cmd.borrow_mut().take() {
                return Some(cmd);
            }
            if self.closing.get() {
                return None;
            }
            slot.go.notified().await;
        }
    }

    /// Advances slot `idx`'s lifecycle. A refused transition is a frontend
    /// bug: logged, counted, and the command retires.
    pub fn advance(&self, idx: u16, event: Event) -> Action {
        let slot = &self.slots[usize::from(idx)];
        let mut life = slot.life.get();
        let action = match life.advance(event) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, slot = idx, "command lifecycle: invalid transition");
                self.bad_transitions.set(self.bad_transitions.get() + 1);
                Action::Retire
            }
        };
        slot.life.set(life);
        action
    }

    fn set_reads(&self, idx: u16, reads: bool) {
        let slot = &self.slots[usize::from(idx)];
        let mut life = CommandLifecycle::new(self.policy);
        life.set_reads(reads);
        slot.life.set(life);
    }

    /// Returns slot `idx` to the free list.
    fn retire(&self, idx: u16) {
        let slot = &self.slots[usize::from(idx)];
        slot.life.set(CommandLifecycle::new(self.policy));
        self.free.borrow_mut().push(idx);
        self.busy.set(self.busy.get() - 1);
        if self.busy.get() == 0 {
            self.idle.notify_waiters();
        }
    }

    /// No new commands; idle workers end.
    pub fn close(&self) {
        self.closing.set(true);
        for s in self.slots.iter() {
            s.go.notify_one();
        }
    }

    /// Waits up to `limit` until no slot holds a command; true if none does.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.busy.get() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// Runs one command in slot `idx` from arrival to retirement: the one
/// function that advances a command's state. `host_data`: the command
/// carries data to receive; `reads`: it returns data.
pub async fn drive<E: Execute>(
    e: &E,
    slots: &Slots<E::Cmd>,
    idx: u16,
    mut cmd: E::Cmd,
    host_data: bool,
    reads: bool,
) {
    slots.set_reads(idx, reads);
    let mut action = slots.advance(idx, Event::Arrived { host_data });
    let mut release = None;
    loop {
        let event = match action {
            Action::LeaseBuffer => {
                if !e.lease(idx, &mut cmd).await {
                    break;
                }
                Event::BufferLeased
            }
            Action::ReceiveHostData => {
                // A command without host data (a flush, say) passes through.
                if host_data && !e.receive(idx, &mut cmd).await {
                    break;
                }
                Event::HostDataReceived
            }
            Action::Execute => {
                e.execute(idx, &mut cmd).await;
                Event::BackendDone
            }
            Action::SendData => match e.send_data(idx, &mut cmd) {
                DataSent::Tracked(r) => {
                    release = Some(r);
                    Event::DataQueued { messages: 1 }
                }
                DataSent::Untracked | DataSent::Nothing => Event::DataQueued { messages: 0 },
            },
            Action::None => match release.take() {
                // The send was aborted (connection reset): nothing to answer.
                Some(r) => match r.await {
                    Ok(_) => Event::DataReleased,
                    Err(_) => break,
                },
                None => {
                    tracing::error!(slot = idx, "command lifecycle waits for nothing");
                    slots.bad_transitions.set(slots.bad_transitions.get() + 1);
                    break;
                }
            },
            Action::SendStatus => {
                e.send_status(idx, &mut cmd);
                Event::StatusQueued
            }
            Action::Retire => break,
        };
        action = slots.advance(idx, event);
    }
    drop(cmd);
    slots.retire(idx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A frontend that records the steps it was asked to take.
    struct Recorder {
        log: RefCell<Vec<&'static str>>,
        fail_receive: bool,
    }

    impl Execute for Recorder {
        type Cmd = u32;
        async fn lease(&self, _: u16, _: &mut u32) -> bool {
            self.log.borrow_mut().push("lease");
            true
        }
        async fn receive(&self, _: u16, _: &mut u32) -> bool {
            self.log.borrow_mut().push("receive");
            !self.fail_receive
        }
        async fn execute(&self, _: u16, _: &mut u32) {
            self.log.borrow_mut().push("execute");
        }
        fn send_data(&self, _: u16, _: &mut u32) -> DataSent {
            self.log.borrow_mut().push("data");
            DataSent::Untracked
        }
        fn send_status(&self, _: u16, _: &mut u32) {
            self.log.borrow_mut().push("status");
        }
    }

    fn recorder(fail_receive: bool) -> Recorder {
        Recorder {
            log: RefCell::new(Vec::new()),
            fail_receive,
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_read_and_a_write_take_their_steps_in_order_and_free_the_slot() {
        run(async {
            let slots = Slots::<u32>::new(2, StatusPolicy::Strict);
            let r = recorder(false);
            let (idx, spawn) = slots.start(7).map_err(|_| ()).expect("free slot");
            assert!(spawn, "first use of a slot needs a worker");
            let cmd = slots.next(idx).await.expect("command");
            drive(&r, &slots, idx, cmd, false, true).await;
            assert_eq!(*r.log.borrow(), ["lease", "execute", "data", "status"]);
            assert_eq!(slots.busy(), 0);
            r.log.borrow_mut().clear();
            let (again, spawn) = slots.start(8).map_err(|_| ()).expect("free slot");
            assert_eq!(again, idx, "the retired slot is reused first (LIFO)");
            assert!(!spawn, "its worker is kept");
            let cmd = slots.next(again).await.expect("command");
            drive(&r, &slots, again, cmd, true, false).await;
            assert_eq!(*r.log.borrow(), ["lease", "receive", "execute", "status"]);
            assert_eq!(slots.bad_transitions(), 0);
        });
    }

    #[test]
    fn a_command_whose_data_never_comes_retires_without_status() {
        run(async {
            let slots = Slots::<u32>::new(1, StatusPolicy::Strict);
            let r = recorder(true);
            let (idx, _) = slots.start(1).map_err(|_| ()).expect("free slot");
            let cmd = slots.next(idx).await.expect("command");
            drive(&r, &slots, idx, cmd, true, false).await;
            assert_eq!(*r.log.borrow(), ["lease", "receive"]);
            assert_eq!(slots.busy(), 0);
            // The slot is usable again and its lifecycle starts afresh.
            let r = recorder(false);
            let (idx, _) = slots.start(2).map_err(|_| ()).expect("free slot");
            let cmd = slots.next(idx).await.expect("command");
            drive(&r, &slots, idx, cmd, false, false).await;
            assert_eq!(*r.log.borrow(), ["lease", "execute", "status"]);
            assert_eq!(slots.bad_transitions(), 0);
        });
    }

    #[test]
    fn a_full_table_refuses_and_a_closed_one_ends_its_workers() {
        run(async {
            let slots = Rc::new(Slots::<u32>::new(2, StatusPolicy::Eager));
            assert!(slots.start(1).is_ok());
            assert!(slots.start(2).is_ok());
            assert_eq!(slots.start(3).err(), Some(3), "no third slot");
            assert_eq!(slots.busy(), 2);
            assert!(!slots.drained(Duration::from_millis(10)).await);
            // Both commands taken by their workers and retired.
            for idx in 0..2u16 {
                let cmd = slots.next(idx).await.expect("command");
                drive(&recorder(false), &*slots, idx, cmd, false, false).await;
            }
            assert!(slots.drained(Duration::from_millis(10)).await);
            slots.close();
            assert_eq!(slots.next(0).await, None, "closing ends the worker");
            assert_eq!(slots.start(4).err(), Some(4), "closed: nothing starts");
        });
    }
}
