//! iSCSI sessions: the daemon-wide table used for TSIH assignment and
//! session reinstatement (RFC 7143 §6.3.5: a login with the ISID and
//! initiator name of an existing session replaces that session — the Linux
//! initiator does this after every target restart or connection loss).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::watch;

/// The initiator port name `iqn...,i,0x<isid>` of a session (the name
/// persistent reservations know an I_T nexus's initiator by).
pub fn initiator_port(initiator: &str, isid: &[u8; 6]) -> String {
    format!(
        "{},i,0x{}",
        initiator,
        isid.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Identity of a session: initiator name + ISID + target name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// InitiatorName.
    pub initiator: String,
    /// The 6-byte ISID.
    pub isid: [u8; 6],
    /// TargetName (empty for discovery sessions).
    pub target: String,
}

struct Entry {
    tsih: u16,
    /// Set to true to make the session's connection drop (reinstatement).
    kill: watch::Sender<bool>,
    info: Arc<SessionInfo>,
}

/// What the admin API shows about a session.
#[derive(Debug)]
pub struct SessionInfo {
    /// The initiator's address.
    pub peer: std::net::SocketAddr,
    /// When it logged in.
    pub since: std::time::SystemTime,
    /// SCSI commands in flight (updated by the connection).
    pub in_flight: AtomicU32,
    /// SCSI commands received.
    pub commands: AtomicU64,
    /// What other threads ask of the session's connection.
    pub events: SessionEvents,
}

/// Why another I_T nexus asks a session to abort its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortCause {
    /// PERSISTENT RESERVE OUT PREEMPT AND ABORT preempted this nexus's
    /// registration (SPC-4 §5.13.11.2.3).
    Preempted,
    /// CLEAR TASK SET (SAM-5 §7.4): the task set is shared (TST 000), so
    /// every nexus's tasks on the logical unit go; one that had any gets
    /// COMMANDS CLEARED BY ANOTHER INITIATOR (TAS 0, SAM-5 §5.6).
    TaskSetCleared,
    /// LOGICAL UNIT RESET or a target reset (SAM-5 §7.7, §6.3): the
    /// reset's own unit attention tells every nexus.
    Reset,
}

/// One request to abort a session's tasks.
#[derive(Debug)]
pub struct AbortAsk {
    /// The LUN (`IscsiLun::id`) whose tasks go; None: every LUN of the
    /// session's target (a target reset).
    pub lun_id: Option<u64>,
    /// What aborts them.
    pub cause: AbortCause,
    /// Dropped once none of them executes any more.
    pub settling: SettleToken,
}

/// Requests to a session's connection from other I_T nexuses, which may
/// live on other reactor threads: abort the tasks on a logical unit (or
/// all of them) — PREEMPT AND ABORT preempted this nexus's registration,
/// or another nexus's CLEAR TASK SET, LOGICAL UNIT RESET or target reset
/// concerns them. The connection's driver waits for them lock-free (one
/// atomic waker registration per wait) and handles them between PDUs; the
/// session's command workers also check [`asked`](Self::asked) before a
/// command's backend I/O (the fence, `Connection::fenced`), so a reader
/// stalled inside a PDU does not let a write accepted before the abort
/// land after its answer.
#[derive(Debug, Default)]
pub struct SessionEvents {
    /// What the connection is to abort, and whom to tell when it no
    /// longer executes.
    asks: Mutex<Vec<AbortAsk>>,
    pending: AtomicBool,
    waker: AtomicWaker,
    /// Asks ever made, bumped after each is queued.
    asked: AtomicU64,
}

impl SessionEvents {
    /// Asks the connection to abort its tasks on the LUN `lun_id` (every
    /// LUN: None) for `cause`, then to tell `settling` once none of them
    /// executes any more.
    pub fn abort_lun(&self, lun_id: Option<u64>, cause: AbortCause, settling: SettleToken) {
        self.asks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(AbortAsk {
                lun_id,
                cause,
                settling,
            });
        // After the push, Release: a worker whose Acquire load of
        // `asked` sees this bump finds the ask queued — or already taken
        // by its own thread (the reader or another worker), the tasks
        // already marked.
        self.asked.fetch_add(1, Ordering::Release);
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// How many asks were ever made of the session. A command records it
    /// when accepted and compares before its backend I/O; a change means
    /// asks may be waiting that the connection has not handled.
    pub fn asked(&self) -> u64 {
        self.asked.load(Ordering::Acquire)
    }

    /// Resolves when requests are waiting ([`take`](Self::take) them).
    pub fn ready(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.pending.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.pending.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Takes what is to be aborted.
    pub fn take(&self) -> Vec<AbortAsk> {
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.asks.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Sessions still aborting tasks for one PREEMPT AND ABORT, CLEAR TASK
/// SET, LOGICAL UNIT RESET or target reset: it is answered once each has
/// no aborted task executing (so no aborted write lands after the answer),
/// or after a bound.
#[derive(Debug, Default)]
pub struct Settling {
    left: AtomicUsize,
    done: tokio::sync::Notify,
}

/// One session's share of a [`Settling`]: dropped when that session no
/// longer executes what it aborted — or when the request or the session
/// goes away unhandled, so an answer never waits for a session that
/// ended.
#[derive(Debug)]
pub struct SettleToken(Arc<Settling>);

impl Drop for SettleToken {
    fn drop(&mut self) {
        if self.0.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_one();
        }
    }
}

/// How long an answer waits for the other sessions it asked to abort
/// tasks: their own wait for what still executes (`ABORT_DRAIN`, 5 s)
/// and a margin.
pub const OTHERS_SETTLE: std::time::Duration = std::time::Duration::from_secs(6);

impl Settling {
    /// Waits until every session settled, at most [`OTHERS_SETTLE`]; logs
    /// (naming `what` asked) when the bound ends the wait first.
    pub async fn wait(&self, what: &str) {
        let all = async {
            while self.left.load(Ordering::Acquire) > 0 {
                self.done.notified().await;
            }
        };
        if tokio::time::timeout(OTHERS_SETTLE, all).await.is_err() {
            tracing::warn!(
                what,
                "other sessions still executing aborted commands after {OTHERS_SETTLE:?}; answering"
            );
        }
    }
}

/// One row of [`SessionTable::list`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    /// TSIH.
    pub tsih: u16,
    /// InitiatorName.
    pub initiator: String,
    /// ISID, hex.
    pub isid: String,
    /// TargetName ("" for discovery).
    pub target: String,
    /// Initiator address.
    pub address: String,
    /// Connections (zctarget runs one per session: MaxConnections=1).
    pub connections: u32,
    /// Commands in flight.
    pub in_flight: u32,
    /// Commands received.
    pub commands: u64,
    /// Seconds since login.
    pub age_seconds: u64,
}

/// Every live session of the daemon (shared by all reactors; touched only at
/// login and logout).
#[derive(Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<SessionKey, Entry>>,
    next_tsih: AtomicU16,
}

/// A registered session; deregisters itself when dropped.
pub struct SessionHandle {
    table: Arc<SessionTable>,
    key: SessionKey,
    tsih: u16,
    /// Fires when another login reinstates this session.
    pub killed: watch::Receiver<bool>,
    /// Counters shown by the admin API.
    pub info: Arc<SessionInfo>,
}

impl SessionHandle {
    /// The session's TSIH.
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// Its key.
    pub fn key(&self) -> &SessionKey {
        &self.key
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if let Ok(mut map) = self.table.sessions.lock() {
            if map.get(&self.key).is_some_and(|e| e.tsih == self.tsih) {
                map.remove(&self.key);
            }
        }
    }
}

impl SessionTable {
    /// A fresh TSIH (never 0).
    fn allocate_tsih(&self) -> u16 {
        loop {
            let t = self
                .next_tsih
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if t != 0 {
                return t;
            }
        }
    }

    /// Registers a new session for `key`, reinstating (killing) an existing
    /// one with the same key. Returns the handle and whether an old session
    /// was replaced.
    pub fn register(
        self: &Arc<Self>,
        key: SessionKey,
        peer: std::net::SocketAddr,
    ) -> (SessionHandle, bool) {
        let tsih = self.allocate_tsih();
        let (kill, killed) = watch::channel(false);
        let info = Arc::new(SessionInfo {
            peer,
            since: std::time::SystemTime::now(),
            in_flight: AtomicU32::new(0),
            commands: AtomicU64::new(0),
            events: SessionEvents::default(),
        });
        let entry = Entry {
            tsih,
            kill,
            info: Arc::clone(&info),
        };
        let replaced = match self.sessions.lock() {
            Ok(mut map) => map
                .insert(key.clone(), entry)
                .map(|old| {
                    let _ = old.kill.send(true);
                })
                .is_some(),
            Err(_) => false,
        };
        (
            SessionHandle {
                table: Arc::clone(self),
                key,
                tsih,
                killed,
                info,
            },
            replaced,
        )
    }

    /// Ends every session logged in to `target` (TARGET COLD RESET).
    pub fn kill_target(&self, target: &str) {
        if let Ok(map) = self.sessions.lock() {
            for (key, entry) in map.iter() {
                if key.target == target {
                    let _ = entry.kill.send(true);
                }
            }
        }
    }

    /// PREEMPT AND ABORT on LUN `lun_id` of `target` preempted the
    /// registrations of the initiator ports `preempted`: each of their
    /// sessions (but `issuer`'s, whose PERSISTENT RESERVE OUT itself
    /// completes) is told to abort its tasks on that LUN. The returned
    /// [`Settling`] says when they no longer execute any.
    pub fn abort_preempted(
        &self,
        target: &str,
        preempted: &[String],
        issuer: &str,
        lun_id: u64,
    ) -> Arc<Settling> {
        self.tell(
            |k, _| {
                let port = initiator_port(&k.initiator, &k.isid);
                k.target == target && port != issuer && preempted.contains(&port)
            },
            Some(lun_id),
            AbortCause::Preempted,
        )
    }

    /// A task management function of the session `issuer` concerns the
    /// tasks of every I_T nexus of LUN `lun_id` of `target` (every LUN:
    /// None) — CLEAR TASK SET, LOGICAL UNIT RESET, the target resets
    /// (SAM-5 §7): every other session of `target` is told to abort its
    /// tasks there. A logical unit is a LUN of a target (its own SCSI
    /// state), so sessions of other targets exporting the same volume are
    /// not concerned, as with PREEMPT AND ABORT. The returned [`Settling`]
    /// says when they no longer execute any.
    pub fn abort_others(
        &self,
        target: &str,
        issuer: &SessionInfo,
        lun_id: Option<u64>,
        cause: AbortCause,
    ) -> Arc<Settling> {
        self.tell(
            |k, e| k.target == target && !std::ptr::eq(Arc::as_ptr(&e.info), issuer),
            lun_id,
            cause,
        )
    }

    /// Asks every session `pick` chooses to abort its tasks on `lun_id`.
    fn tell(
        &self,
        pick: impl Fn(&SessionKey, &Entry) -> bool,
        lun_id: Option<u64>,
        cause: AbortCause,
    ) -> Arc<Settling> {
        let settling = Arc::new(Settling::default());
        if let Ok(map) = self.sessions.lock() {
            let told: Vec<_> = map
                .iter()
                .filter(|(k, e)| pick(k, e))
                .map(|(_, e)| Arc::clone(&e.info))
                .collect();
            settling.left.store(told.len(), Ordering::Release);
            for info in told {
                info.events
                    .abort_lun(lun_id, cause, SettleToken(Arc::clone(&settling)));
            }
        }
        settling
    }

    /// Ends every session of `initiator` on `target` (its ACL entry was
    /// removed); returns how many.
    pub fn kill_initiator(&self, target: &str, initiator: &str) -> usize {
        self.kill_where(|k, _| k.target == target && k.initiator == initiator)
    }

    /// Ends the session with TSIH `tsih`; false if there is none.
    pub fn kill_tsih(&self, tsih: u16) -> bool {
        self.kill_where(|_, e| e.tsih == tsih) > 0
    }

    fn kill_where(&self, pred: impl Fn(&SessionKey, &Entry) -> bool) -> usize {
        let mut n = 0;
        if let Ok(map) = self.sessions.lock() {
            for (_, entry) in map.iter().filter(|(k, e)| pred(k, e)) {
                let _ = entry.kill.send(true);
                n += 1;
            }
        }
        n
    }

    /// Every live session, by TSIH.
    pub fn list(&self) -> Vec<SessionRow> {
        let now = std::time::SystemTime::now();
        let mut rows: Vec<SessionRow> = self
            .sessions
            .lock()
            .map(|map| {
                map.iter()
                    .map(|(k, e)| SessionRow {
                        tsih: e.tsih,
                        initiator: k.initiator.clone(),
                        isid: k.isid.iter().map(|b| format!("{b:02x}")).collect(),
                        target: k.target.clone(),
                        address: e.info.peer.to_string(),
                        connections: 1,
                        in_flight: e.info.in_flight.load(Ordering::Relaxed),
                        commands: e.info.commands.load(Ordering::Relaxed),
                        age_seconds: now.duration_since(e.info.since).map_or(0, |d| d.as_secs()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.sort_by_key(|r| r.tsih);
        rows
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |m| m.len())
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
