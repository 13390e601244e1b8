//! A connection's tasks: one [`TaskEntry`] per command slot of the shared
//! engine (`crate::slots`), reused command after command. A task is found
//! by its ITT (Data-Out, task management) by scanning the slots in use —
//! at most `QUEUE_DEPTH` — so no map entry is made or freed per command.

use std::cell::{Cell, RefCell};

use tokio::sync::Notify;
use zctarget_backends::SegmentList;
use zctarget_protocol::iscsi::sequence::DataOutSeq;

use crate::admission::HostDataGrant;

/// A write command's Data-Out state.
#[derive(Default)]
pub struct DataOutState {
    /// The payload, out while the reader fills it. `None` until the
    /// command has leased it (data asked for by R2T), or for good when the
    /// command was refused for lack of buffers (`busy`).
    pub payload: RefCell<Option<SegmentList>>,
    /// Holds the connection's admission quota until all data is in.
    pub grant: RefCell<Option<HostDataGrant>>,
    /// No buffers were free for the data the initiator sent unasked: it is
    /// drained, and the command ends with TASK SET FULL.
    pub busy: Cell<bool>,
    /// Where the data stands: bytes received (immediate + unsolicited +
    /// solicited) of the expected length, the TTT of the R2T being
    /// answered, the next DataSN (the protocol crate's rules).
    pub seq: Cell<DataOutSeq>,
    /// A Data-Out broke the sequence (wrong DataSN): the command ends with
    /// CHECK CONDITION instead of executing.
    pub data_error: Cell<bool>,
    /// Woken when a burst is complete (F bit) or on abort.
    pub burst_done: Notify,
}

/// One command's task state, living in its slot.
#[derive(Default)]
pub struct TaskEntry {
    /// The slot holds a command.
    active: Cell<bool>,
    /// Its Initiator Task Tag.
    itt: Cell<u32>,
    /// LUN field of the command.
    pub lun: Cell<u64>,
    /// Set by ABORT TASK & co: the command sends no status.
    pub aborted: Cell<bool>,
    /// Its status is queued for sending: an ABORT TASK comes too late.
    responded: Cell<bool>,
    /// A sanitize operation: it goes on whatever aborts its command
    /// (SBC-4 §4.11), so answers to aborts do not wait for it.
    pub outlives_abort: Cell<bool>,
    /// The command expects write data.
    has_data_out: Cell<bool>,
    data_out: DataOutState,
    /// The session's count of abort asks from other I_T nexuses
    /// (`SessionEvents::asked`) when the command was accepted, or when its
    /// fence last handled them (`Connection::fenced`).
    asks_seen: Cell<u64>,
}

impl TaskEntry {
    /// Takes the entry for a new command; `asked`: the session's count of
    /// abort asks now (`SessionEvents::asked`).
    pub fn begin(&self, itt: u32, lun: u64, asked: u64) {
        self.itt.set(itt);
        self.lun.set(lun);
        self.asks_seen.set(asked);
        self.aborted.set(false);
        self.responded.set(false);
        self.outlives_abort.set(false);
        self.has_data_out.set(false);
        self.active.set(true);
    }

    /// Makes the command a write expecting `expected` bytes, `received` of
    /// them already in `payload` (immediate data).
    pub fn expect_data(
        &self,
        payload: Option<SegmentList>,
        grant: Option<HostDataGrant>,
        busy: bool,
        received: u32,
        expected: u32,
    ) {
        let d = &self.data_out;
        *d.payload.borrow_mut() = payload;
        *d.grant.borrow_mut() = grant;
        d.busy.set(busy);
        d.seq.set(DataOutSeq::new(received, expected));
        d.data_error.set(false);
        self.has_data_out.set(true);
    }

    /// Releases whatever the command still holds; the slot is free.
    pub fn end(&self) {
        self.active.set(false);
        self.has_data_out.set(false);
        self.data_out.payload.borrow_mut().take();
        self.data_out.grant.borrow_mut().take();
    }

    /// The Data-Out state of a write command.
    pub fn data_out(&self) -> Option<&DataOutState> {
        self.has_data_out.get().then_some(&self.data_out)
    }

    /// Its ITT, while active.
    pub fn itt(&self) -> Option<u32> {
        self.active.get().then(|| self.itt.get())
    }

    /// Records that the command's status is queued for sending.
    pub fn responded(&self) {
        self.responded.set(true);
    }

    /// Still to answer: active, its status not queued yet. Only such a
    /// task can be aborted (an ABORT TASK after the status gets "Task does
    /// not exist", RFC 7143 §11.5.1).
    pub fn pending(&self) -> bool {
        self.active.get() && !self.responded.get()
    }

    /// Records `asked` as the session's ask count this command has seen;
    /// true if it differs from what it saw before (asks came since).
    pub fn asks_changed(&self, asked: u64) -> bool {
        self.asks_seen.replace(asked) != asked
    }

    /// Marks the task aborted and wakes it if it waits for data.
    pub fn abort(&self) {
        self.aborted.set(true);
        self.data_out.burst_done.notify_one();
    }
}

/// How many aborted writes a connection remembers (see
/// [`Tasks::recently_aborted`]).
const ABORTED_REMEMBERED: usize = 16;

/// The tasks of a connection, one per slot.
pub struct Tasks {
    entries: Box<[TaskEntry]>,
    /// ITTs of the last writes that ended aborted while they still
    /// expected Data-Out, oldest overwritten first: the initiator may
    /// still send data for them (answering an R2T it got before the
    /// abort, or unsolicited data), which is read and dropped, not
    /// rejected. A ring, not per slot: a freed slot is reused by the next
    /// command at once.
    aborted: RefCell<[Option<u32>; ABORTED_REMEMBERED]>,
    next_aborted: Cell<usize>,
}

impl Tasks {
    /// `n` free entries.
    pub fn new(n: usize) -> Self {
        Self {
            entries: (0..n).map(|_| TaskEntry::default()).collect(),
            aborted: RefCell::new([None; ABORTED_REMEMBERED]),
            next_aborted: Cell::new(0),
        }
    }

    /// The entry of slot `idx`.
    pub fn slot(&self, idx: u16) -> &TaskEntry {
        &self.entries[usize::from(idx)]
    }

    /// The active task with `itt`.
    pub fn find(&self, itt: u32) -> Option<&TaskEntry> {
        self.entries.iter().find(|t| t.itt() == Some(itt))
    }

    /// Every active task.
    pub fn active(&self) -> impl Iterator<Item = &TaskEntry> {
        self.entries.iter().filter(|t| t.active.get())
    }

    /// The command in slot `idx` is over: the slot is free. An aborted
    /// write that still expected data is remembered (two flag reads for
    /// every other command).
    pub fn end(&self, idx: u16) {
        let t = self.slot(idx);
        if t.aborted.get() && t.has_data_out.get() {
            let seq = t.data_out.seq.get();
            if seq.received() < seq.expected() {
                let at = self.next_aborted.get();
                self.aborted.borrow_mut()[at] = Some(t.itt.get());
                self.next_aborted.set((at + 1) % ABORTED_REMEMBERED);
            }
        }
        t.end();
    }

    /// Whether `itt` is one of the last writes that ended aborted while
    /// still expecting data (no active task has it any more).
    pub fn recently_aborted(&self, itt: u32) -> bool {
        self.aborted.borrow().contains(&Some(itt))
    }
}
