//! Where a connection is served: the reactor carrying the least live work.
//!
//! Every reactor may accept any connection (see `reactor`); the accepting
//! one asks [`Board::place`] where it goes. Each connection has a
//! [`Placement`] on the board of the reactor serving it, from the moment it
//! is accepted (so a burst of accepts is spread) until it closes. What a
//! reactor weighs, in order ([`Load`]):
//!
//! 1. **busy work**: the work of its connections that moved commands
//!    lately. A connection is busy from its accept for [`IDLE_AFTER`], and
//!    again for [`IDLE_AFTER`] after each [`WINDOW`] in which it started at
//!    least [`BUSY_COMMANDS`] commands. A path checker's TEST UNIT READY
//!    every few seconds, NOP-Outs and keep-alives keep nothing busy: the
//!    standby paths of a multipath host, connected and silent, weigh
//!    nothing here.
//! 2. **work**: what its connections carry, busy or not — [`WORK_IO`] for
//!    an NVMe I/O queue, a normal iSCSI session or a connection that has
//!    not said yet, [`WORK_CONTROL`] for an NVMe admin queue or an iSCSI
//!    discovery session ([`Placement::carries`]).
//! 3. **connections**, the last tie-breaker.
//!
//! Connections do not move once placed; only new ones follow the load.
//! The board is read and written at accept, close and once per window of
//! a connection's traffic (when its driver is about to wait for input),
//! never per command: a command costs one increment of its slot table's
//! counter (`Slots::start`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Work of a connection that carries I/O (an NVMe I/O queue, a normal
/// iSCSI session), and of one that has not said yet.
pub const WORK_IO: usize = 1;
/// Work of a connection that carries no I/O (an NVMe admin queue, an
/// iSCSI discovery session).
pub const WORK_CONTROL: usize = 0;

/// How long a connection stays busy after its accept and after its last
/// busy [`WINDOW`].
pub const IDLE_AFTER: Duration = Duration::from_secs(2);
/// The span over which a connection's commands are counted.
pub const WINDOW: Duration = Duration::from_millis(250);
/// Commands started within one [`WINDOW`] that make a connection busy
/// (16 a second: far above a path checker, far below any real load).
pub const BUSY_COMMANDS: u64 = 4;

/// A connection's entry on the board, read by every reactor's placement.
#[derive(Debug)]
struct Entry {
    work: AtomicUsize,
    /// Busy until this many milliseconds after the board's epoch.
    busy_until: AtomicU64,
}

/// Every reactor's connections, as placement and the metrics see them.
#[derive(Debug)]
pub struct Board {
    epoch: Instant,
    reactors: Vec<Mutex<Vec<Arc<Entry>>>>,
}

/// A reactor's load at one instant, ordered by busy work, then work, then
/// connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Load {
    /// Work of its busy connections.
    pub busy: usize,
    /// Work of all its connections.
    pub work: usize,
    /// Connections (the last tie-breaker).
    pub connections: usize,
}

impl Board {
    /// A board for `reactors` reactors, all empty.
    pub fn new(reactors: usize) -> Self {
        Self {
            epoch: Instant::now(),
            reactors: (0..reactors).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Reactors on the board.
    pub fn len(&self) -> usize {
        self.reactors.len()
    }

    /// Whether the board has no reactor.
    pub fn is_empty(&self) -> bool {
        self.reactors.is_empty()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn entries(&self, reactor: usize) -> MutexGuard<'_, Vec<Arc<Entry>>> {
        // The lists hold plain data: a panic elsewhere leaves them usable.
        self.reactors[reactor]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Reactor `reactor`'s load now.
    pub fn load(&self, reactor: usize) -> Load {
        let now = self.now_ms();
        let entries = self.entries(reactor);
        let mut load = Load {
            connections: entries.len(),
            ..Load::default()
        };
        for e in entries.iter() {
            let work = e.work.load(Ordering::Relaxed);
            load.work += work;
            if e.busy_until.load(Ordering::Relaxed) > now {
                load.busy += work;
            }
        }
        load
    }

    /// Where a connection accepted by reactor `me` is served ([`place`]
    /// over every reactor's load).
    pub fn place(&self, me: usize) -> usize {
        place(me, (0..self.len()).map(|r| self.load(r)))
    }

    /// Puts a new connection on `reactor`'s list, as [`WORK_IO`] and busy
    /// (it has not said what it carries yet); it leaves the list when the
    /// returned placement is dropped.
    pub fn admit(self: &Arc<Self>, reactor: usize) -> Placement {
        let entry = Arc::new(Entry {
            work: AtomicUsize::new(WORK_IO),
            busy_until: AtomicU64::new(self.now_ms() + IDLE_AFTER.as_millis() as u64),
        });
        self.entries(reactor).push(Arc::clone(&entry));
        Placement {
            board: Arc::clone(self),
            reactor,
            entry,
            window_start: Cell::new(Instant::now()),
            window_base: Cell::new(0),
        }
    }
}

/// The placement policy: where a connection accepted by reactor `me` is
/// served, given every reactor's load — the least loaded, `me` unless
/// another is strictly lighter (lowest number among equals).
pub fn place(me: usize, loads: impl IntoIterator<Item = Load>) -> usize {
    let mut mine = None;
    let mut best: Option<(Load, usize)> = None;
    for (i, l) in loads.into_iter().enumerate() {
        if i == me {
            mine = Some(l);
        }
        if best.is_none_or(|b| (l, i) < b) {
            best = Some((l, i));
        }
    }
    match (best, mine) {
        (Some((l, i)), Some(m)) if l < m => i,
        _ => me,
    }
}

/// A connection's place on the board, given back when dropped. Sent with
/// the socket when another reactor serves the connection; afterwards used
/// only by the serving reactor.
#[derive(Debug)]
pub struct Placement {
    board: Arc<Board>,
    reactor: usize,
    entry: Arc<Entry>,
    window_start: Cell<Instant>,
    window_base: Cell<u64>,
}

impl Placement {
    /// The reactor the connection is placed on.
    pub fn reactor(&self) -> usize {
        self.reactor
    }

    /// The connection says what it carries ([`WORK_IO`], [`WORK_CONTROL`]).
    pub fn carries(&self, work: usize) {
        self.entry.work.store(work, Ordering::Relaxed);
    }

    /// The connection's driver is about to wait; `started` is the count of
    /// commands it ever started. At most once per [`WINDOW`] this decides
    /// whether the window was busy and, if so, keeps the connection busy
    /// for [`IDLE_AFTER`] more.
    pub fn sample(&self, started: u64) {
        let now = Instant::now();
        if now.duration_since(self.window_start.get()) < WINDOW {
            return;
        }
        if started.wrapping_sub(self.window_base.get()) >= BUSY_COMMANDS {
            let until = self.board.now_ms() + IDLE_AFTER.as_millis() as u64;
            self.entry.busy_until.store(until, Ordering::Relaxed);
        }
        self.window_start.set(now);
        self.window_base.set(started);
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        let mut entries = self.board.entries(self.reactor);
        if let Some(i) = entries.iter().position(|e| Arc::ptr_eq(e, &self.entry)) {
            entries.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(l: &[(usize, usize, usize)]) -> Vec<Load> {
        l.iter()
            .map(|&(busy, work, connections)| Load {
                busy,
                work,
                connections,
            })
            .collect()
    }

    #[test]
    fn placement_weighs_busy_work_first() {
        // Reactor 0 serves one busy I/O queue, reactor 1 two idle ones:
        // the next connection goes to 1, whoever accepted it.
        assert_eq!(place(0, loads(&[(1, 1, 1), (0, 2, 2)])), 1);
        assert_eq!(place(1, loads(&[(1, 1, 1), (0, 2, 2)])), 1);
        // Equal busy work: work decides, then connections.
        assert_eq!(place(0, loads(&[(1, 2, 2), (1, 1, 1)])), 1);
        assert_eq!(place(1, loads(&[(0, 0, 3), (0, 1, 1)])), 0);
        assert_eq!(place(1, loads(&[(1, 1, 2), (1, 1, 1)])), 1);
        assert_eq!(place(0, loads(&[(1, 1, 2), (1, 1, 1)])), 1);
    }

    #[test]
    fn placement_keeps_a_connection_on_a_tie() {
        assert_eq!(place(0, loads(&[(1, 1, 1), (1, 1, 1)])), 0);
        assert_eq!(place(1, loads(&[(1, 1, 1), (1, 1, 1)])), 1);
        assert_eq!(place(2, loads(&[(2, 2, 2), (0, 0, 0), (0, 0, 0)])), 2);
        assert_eq!(place(0, loads(&[(2, 2, 2), (0, 0, 0), (0, 0, 0)])), 1);
        assert_eq!(place(0, loads(&[(0, 0, 0)])), 0);
        // The lightest of several, lowest number first.
        assert_eq!(
            place(0, loads(&[(3, 3, 3), (1, 1, 4), (1, 1, 2), (2, 2, 0)])),
            2
        );
    }

    #[test]
    fn a_new_connection_is_busy_then_its_windows_decide() {
        let board = Arc::new(Board::new(2));
        let p = board.admit(1);
        assert_eq!(
            board.load(1),
            Load {
                busy: 1,
                work: 1,
                connections: 1
            }
        );
        assert_eq!(board.load(0), Load::default());
        // An admin queue: no work, busy or not.
        p.carries(WORK_CONTROL);
        assert_eq!(board.load(1).busy, 0);
        p.carries(WORK_IO);
        // Idle past its first IDLE_AFTER: a quiet window keeps it idle.
        p.entry.busy_until.store(0, Ordering::Relaxed);
        p.window_start.set(Instant::now() - WINDOW);
        p.sample(BUSY_COMMANDS - 1);
        assert_eq!(board.load(1).busy, 0, "a few commands are not load");
        // Within the window nothing is decided, however many commands.
        p.sample(1000);
        assert_eq!(board.load(1).busy, 0);
        p.window_start.set(Instant::now() - WINDOW);
        p.sample(BUSY_COMMANDS - 1 + BUSY_COMMANDS);
        assert_eq!(board.load(1).busy, 1, "a busy window makes it busy");
        drop(p);
        assert_eq!(board.load(1), Load::default());
    }

    #[test]
    fn dropping_one_placement_leaves_the_others() {
        let board = Arc::new(Board::new(1));
        let a = board.admit(0);
        let b = board.admit(0);
        let c = board.admit(0);
        b.carries(WORK_CONTROL);
        drop(a);
        assert_eq!(board.load(0).work, 1);
        assert_eq!(board.load(0).connections, 2);
        drop(c);
        assert_eq!(board.load(0).work, 0);
        drop(b);
        assert_eq!(board.load(0).connections, 0);
    }
}
