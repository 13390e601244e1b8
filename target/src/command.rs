//! A command's life, as one explicit state advanced by one function.
//!
//! ```text
//! Free → NeedBuffer → [ReceivingHostData] → Executing → [SendingData]
//!      → AwaitingZeroCopyRelease → Completed → (retired: slot Free again)
//! ```
//!
//! Two independent signals gate retirement: the backend I/O has completed,
//! and every zero-copy send that carried the command's data was notified by
//! the kernel. Only when both are in (and the status is on its way) is the
//! command retired: its buffers go back to the pool, its slot is freed and its
//! latency recorded. [`StatusPolicy`] decides whether the status PDU waits for
//! the notification (strict) or goes out as soon as the data is queued
//! (eager, buffers still pinned until notified).
//!
//! This module is pure: the frontends feed it [`Event`]s and carry out the
//! [`Action`]s it returns.

/// When the status goes to the initiator/host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusPolicy {
    /// After the backend I/O *and* the zero-copy notifications (default).
    #[default]
    Strict,
    /// As soon as the data is queued; buffers stay pinned until notified.
    Eager,
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    /// Slot unused.
    Free,
    /// Waiting for pool memory (back-pressure).
    NeedBuffer,
    /// Receiving write data from the initiator/host into leased buffers.
    ReceivingHostData,
    /// Backend I/O in progress.
    Executing,
    /// Read data queued on the socket, not yet written out.
    SendingData,
    /// Data written; waiting for the kernel to release the pages.
    AwaitingZeroCopyRelease,
    /// Both signals in; status sent or being sent; about to retire.
    Completed,
}

/// Something that happened to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new command arrived; `host_data` if it carries write data to receive.
    Arrived {
        /// Write data must be received before executing.
        host_data: bool,
    },
    /// Pool memory was leased for it.
    BufferLeased,
    /// All write data has been received.
    HostDataReceived,
    /// The backend I/O finished (successfully or not).
    BackendDone,
    /// Read data was queued to the sender (`messages` messages carry it).
    DataQueued {
        /// Messages whose release must be awaited.
        messages: u32,
    },
    /// The sender released one of the command's data messages.
    DataReleased,
    /// The status message was handed to the sender.
    StatusQueued,
}

/// What the frontend must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing yet.
    None,
    /// Lease buffers (then report `BufferLeased`).
    LeaseBuffer,
    /// Start receiving write data (R2T / H2C flow).
    ReceiveHostData,
    /// Submit the backend I/O.
    Execute,
    /// Queue the read data (then report `DataQueued`).
    SendData,
    /// Queue the status (then report `StatusQueued`).
    SendStatus,
    /// Retire: drop the payload, free the slot, record latency.
    Retire,
}

/// Transition error: an event that cannot happen in the current state is a
/// frontend bug, reported rather than silently absorbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event:?} is invalid in state {state:?}")]
pub struct TransitionError {
    /// State at the time.
    pub state: CommandState,
    /// The event.
    pub event: Event,
}

/// The lifecycle of one command slot.
#[derive(Debug, Clone, Copy)]
pub struct CommandLifecycle {
    state: CommandState,
    policy: StatusPolicy,
    /// The command returns data to the initiator (a read).
    reads: bool,
    backend_done: bool,
    sends_outstanding: u32,
    data_queued: bool,
    status_queued: bool,
}

impl CommandLifecycle {
    /// A free slot governed by `policy`.
    pub fn new(policy: StatusPolicy) -> Self {
        Self {
            state: CommandState::Free,
            policy,
            reads: false,
            backend_done: false,
            sends_outstanding: 0,
            data_queued: false,
            status_queued: false,
        }
    }

    /// Current state.
    pub fn state(&self) -> CommandState {
        self.state
    }

    /// The backend I/O has completed.
    pub fn backend_done(&self) -> bool {
        self.backend_done
    }

    /// Zero-copy data messages not yet released.
    pub fn sends_outstanding(&self) -> u32 {
        self.sends_outstanding
    }

    /// Marks the slot as holding a read (data goes to the initiator) before
    /// `Arrived`.
    pub fn set_reads(&mut self, reads: bool) {
        self.reads = reads;
    }

    /// Advances the state machine. The single place where a command changes
    /// state.
    pub fn advance(&mut self, event: Event) -> Result<Action, TransitionError> {
        use CommandState as S;
        let err = TransitionError {
            state: self.state,
            event,
        };
        let action = match (self.state, event) {
            (S::Free, Event::Arrived { host_data }) => {
                *self = Self {
                    reads: self.reads && !host_data,
                    ..Self::new(self.policy)
                };
                self.state = S::NeedBuffer;
                Action::LeaseBuffer
            }
            (S::NeedBuffer, Event::BufferLeased) => {
                if self.reads {
                    self.state = S::Executing;
                    Action::Execute
                } else {
                    // A write: host data first (may be empty, e.g. all
                    // immediate data already in hand — the frontend then
                    // reports HostDataReceived at once).
                    self.state = S::ReceivingHostData;
                    Action::ReceiveHostData
                }
            }
            (S::ReceivingHostData, Event::HostDataReceived) => {
                self.state = S::Executing;
                Action::Execute
            }
            (S::Executing, Event::BackendDone) => {
                self.backend_done = true;
                if self.reads {
                    self.state = S::SendingData;
                    Action::SendData
                } else {
                    self.state = S::Completed;
                    self.status_queued_or_send()
                }
            }
            (S::SendingData, Event::DataQueued { messages }) => {
                self.data_queued = true;
                self.sends_outstanding = messages;
                self.state = if messages == 0 {
                    S::Completed
                } else {
                    S::AwaitingZeroCopyRelease
                };
                match (self.policy, self.state) {
                    (_, S::Completed) | (StatusPolicy::Eager, _) => self.status_queued_or_send(),
                    _ => Action::None,
                }
            }
            (S::AwaitingZeroCopyRelease, Event::DataReleased) => {
                self.sends_outstanding = self.sends_outstanding.saturating_sub(1);
                if self.sends_outstanding > 0 {
                    Action::None
                } else {
                    self.state = S::Completed;
                    self.status_queued_or_send()
                }
            }
            (S::AwaitingZeroCopyRelease, Event::StatusQueued)
                if self.policy == StatusPolicy::Eager && !self.status_queued =>
            {
                self.status_queued = true;
                Action::None
            }
            (S::Completed, Event::StatusQueued) if !self.status_queued => {
                self.status_queued = true;
                self.retire()
            }
            _ => return Err(err),
        };
        Ok(action)
    }

    /// In `Completed`: send the status unless already queued (eager), else
    /// retire.
    fn status_queued_or_send(&mut self) -> Action {
        if self.status_queued {
            if self.state == CommandState::Completed {
                self.retire()
            } else {
                Action::None
            }
        } else {
            Action::SendStatus
        }
    }

    fn retire(&mut self) -> Action {
        self.state = CommandState::Free;
        Action::Retire
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Drives a read with `messages` data messages, releasing them at the
    /// points given by `release_after` (indices into the event stream).
    fn run_read(policy: StatusPolicy, messages: u32) -> Vec<(Event, Action)> {
        let mut c = CommandLifecycle::new(policy);
        c.set_reads(true);
        let mut log = Vec::new();
        let mut step = |c: &mut CommandLifecycle, e: Event| {
            let a = c.advance(e).expect("valid transition");
            log.push((e, a));
            a
        };
        assert_eq!(
            step(&mut c, Event::Arrived { host_data: false }),
            Action::LeaseBuffer
        );
        assert_eq!(step(&mut c, Event::BufferLeased), Action::Execute);
        assert_eq!(step(&mut c, Event::BackendDone), Action::SendData);
        let mut a = step(&mut c, Event::DataQueued { messages });
        let mut released = 0;
        loop {
            match a {
                Action::SendStatus => a = step(&mut c, Event::StatusQueued),
                Action::Retire => break,
                Action::None if released < messages => {
                    released += 1;
                    a = step(&mut c, Event::DataReleased);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(c.state(), CommandState::Free);
        log
    }

    #[test]
    fn strict_sends_status_only_after_every_release() {
        let log = run_read(StatusPolicy::Strict, 3);
        let status_at = log
            .iter()
            .position(|(_, a)| *a == Action::SendStatus)
            .expect("status");
        let releases_before = log[..=status_at]
            .iter()
            .filter(|(e, _)| *e == Event::DataReleased)
            .count();
        assert_eq!(releases_before, 3);
    }

    #[test]
    fn eager_sends_status_when_data_is_queued_but_retires_after_release() {
        let log = run_read(StatusPolicy::Eager, 2);
        let status_at = log
            .iter()
            .position(|(_, a)| *a == Action::SendStatus)
            .expect("status");
        assert_eq!(log[status_at].0, Event::DataQueued { messages: 2 });
        let retire_at = log
            .iter()
            .position(|(_, a)| *a == Action::Retire)
            .expect("retire");
        let releases_before = log[..=retire_at]
            .iter()
            .filter(|(e, _)| *e == Event::DataReleased)
            .count();
        assert_eq!(
            releases_before, 2,
            "retired before the kernel released the pages"
        );
    }

    #[test]
    fn write_flow_and_invalid_events() {
        let mut c = CommandLifecycle::new(StatusPolicy::Strict);
        assert!(
            c.advance(Event::BackendDone).is_err(),
            "nothing running on a free slot"
        );
        assert_eq!(
            c.advance(Event::Arrived { host_data: true }),
            Ok(Action::LeaseBuffer)
        );
        assert_eq!(c.advance(Event::BufferLeased), Ok(Action::ReceiveHostData));
        assert!(
            c.advance(Event::BackendDone).is_err(),
            "cannot finish before executing"
        );
        assert_eq!(c.advance(Event::HostDataReceived), Ok(Action::Execute));
        assert_eq!(c.advance(Event::BackendDone), Ok(Action::SendStatus));
        assert_eq!(c.advance(Event::StatusQueued), Ok(Action::Retire));
        assert_eq!(c.state(), CommandState::Free);
    }

    proptest! {
        /// Any valid event order: retire happens exactly once, never before
        /// the backend finished and every data message was released.
        #[test]
        fn never_retires_before_both_signals(
            eager in any::<bool>(),
            messages in 0u32..6,
            choices in proptest::collection::vec(any::<bool>(), 0..32),
        ) {
            let policy = if eager { StatusPolicy::Eager } else { StatusPolicy::Strict };
            let mut c = CommandLifecycle::new(policy);
            c.set_reads(true);
            let mut pending = vec![Event::Arrived { host_data: false }];
            let mut released = 0u32;
            let mut retired = 0;
            let mut choice = choices.into_iter();
            let mut status_sent = false;
            while let Some(e) = pending.pop() {
                if e == Event::DataReleased { released += 1; }
                let a = c.advance(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
                match a {
                    Action::LeaseBuffer => pending.push(Event::BufferLeased),
                    Action::Execute => pending.push(Event::BackendDone),
                    Action::SendData => {
                        pending.push(Event::DataQueued { messages });
                    }
                    Action::SendStatus => {
                        prop_assert!(!status_sent);
                        status_sent = true;
                        if !eager { prop_assert_eq!(released, messages); }
                        // The status may be queued before or after further releases.
                        if choice.next().unwrap_or(false) && released < messages {
                            pending.insert(0, Event::StatusQueued);
                        } else {
                            pending.push(Event::StatusQueued);
                        }
                    }
                    Action::Retire => {
                        retired += 1;
                        prop_assert!(c.backend_done());
                        prop_assert_eq!(released, messages);
                    }
                    Action::None => {}
                    Action::ReceiveHostData => prop_assert!(false, "read has no host data"),
                }
                if pending.is_empty() && released < messages && c.state() == CommandState::AwaitingZeroCopyRelease {
                    pending.push(Event::DataReleased);
                }
            }
            prop_assert_eq!(retired, 1);
            prop_assert_eq!(c.state(), CommandState::Free);
        }
    }
}
