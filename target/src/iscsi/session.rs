//! iSCSI sessions: the daemon-wide table used for TSIH assignment and
//! session reinstatement (RFC 7143 §6.3.5: a login with the ISID and
//! initiator name of an existing session replaces that session — the Linux
//! initiator does this after every target restart or connection loss).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

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
    pub fn register(self: &Arc<Self>, key: SessionKey) -> (SessionHandle, bool) {
        let tsih = self.allocate_tsih();
        let (kill, killed) = watch::channel(false);
        let replaced = match self.sessions.lock() {
            Ok(mut map) => map
                .insert(key.clone(), Entry { tsih, kill })
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

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |m| m.len())
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
