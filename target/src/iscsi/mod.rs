//! iSCSI frontend (RFC 7143).
//!
//! - [`login`]: the login phase (sans-IO `LoginFsm` from the protocol crate,
//!   target lookup, ACL, CHAP), session registration and reinstatement.
//! - [`connection`]: full feature phase — CmdSN window, Data-In / R2T /
//!   Data-Out, NOP, Text, Logout, Task Management, Reject.
//! - [`exec`]: one SCSI command from plan (protocol crate's SCSI layer) to
//!   status, with the volume I/O and the zero-copy data path.
//! - [`reader`]: reading PDUs, write data straight into leased buffers.
//! - [`session`], [`target`], [`text`]: session table, per-target LUN state,
//!   SendTargets.

pub mod connection;
mod data_out;
pub mod exec;
mod exec_more;
pub mod login;
pub mod reader;
mod scsi_command;
pub mod session;
mod steps;
pub mod target;
pub mod task;
mod task_mgmt;
pub mod text;
mod wire;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::net::TcpStream;
use tracing::Instrument;
use zctarget_protocol::iscsi::params::{Digest, SessionType};

use crate::cluster::Roles;
use crate::exports::Exports;
use crate::outbound::Outbound;
use crate::reactor::Reactor;
use crate::zerocopy::ZeroCopySender;
use connection::{Connection, FfpParams};
use reader::PduReader;
use session::SessionTable;
use target::TargetRuntime;

/// Daemon-wide iSCSI state: targets with their LUN state, and sessions.
pub struct IscsiRegistry {
    /// Targets by IQN (locked at login, discovery and administration only).
    targets: RwLock<HashMap<String, Arc<TargetRuntime>>>,
    /// Live sessions.
    pub sessions: Arc<SessionTable>,
    next_nexus: AtomicU64,
}

impl IscsiRegistry {
    /// Builds the run-time state of every configured target.
    pub fn new(targets: &[zctarget_config::IscsiTarget], exports: &Exports, roles: &Roles) -> Self {
        let r = Self {
            targets: RwLock::new(HashMap::new()),
            sessions: Arc::new(SessionTable::default()),
            next_nexus: AtomicU64::new(1),
        };
        r.apply(targets, exports, roles);
        r
    }

    /// The target named `iqn`.
    pub fn target(&self, iqn: &str) -> Option<Arc<TargetRuntime>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.get(iqn).cloned()
    }

    /// Every target, by name.
    pub fn targets(&self) -> Vec<Arc<TargetRuntime>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = targets.values().cloned().collect();
        all.sort_by(|a, b| a.iqn.cmp(&b.iqn));
        all
    }

    /// Gives every LUN the ALUA port groups `roles` give its volume; a LUN
    /// whose groups change reports ASYMMETRIC ACCESS STATE CHANGED to every
    /// I_T nexus (failover, failback, fencing).
    pub fn refresh_alua(&self, exports: &Exports, roles: &Roles) {
        for t in self.targets() {
            for lun in t.luns().iter() {
                let Some(volume) = exports.get(lun.volume) else {
                    continue;
                };
                let (_, _, groups) = roles.scsi_ports(volume.name());
                let mut unit = lun.lock();
                if unit.set_port_groups(groups) {
                    tracing::info!(target = %t.iqn, lun = lun.lun, volume = volume.name(),
                        "ALUA port group states changed");
                }
            }
        }
    }

    /// Brings the targets in line with `wanted`: new targets appear,
    /// changed ones are updated in place (sessions stay; LUN changes raise
    /// unit attentions), removed ones end their sessions. Sessions of
    /// initiators an ACL no longer allows are ended too.
    pub fn apply(&self, wanted: &[zctarget_config::IscsiTarget], exports: &Exports, roles: &Roles) {
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        targets.retain(|iqn, _| {
            let keep = wanted.iter().any(|t| &t.iqn == iqn);
            if !keep {
                tracing::info!(target = %iqn, "iSCSI target removed; ending its sessions");
                self.sessions.kill_target(iqn);
            }
            keep
        });
        for cfg in wanted {
            match targets.get(&cfg.iqn) {
                Some(t) if *t.config() == *cfg && t.slots_current(exports) => {}
                Some(t) => {
                    t.update(cfg.clone(), exports, roles);
                    for row in self.sessions.list() {
                        if row.target == cfg.iqn
                            && !login::initiator_allowed(&cfg.initiators, &row.initiator)
                        {
                            tracing::info!(initiator = %row.initiator, target = %cfg.iqn,
                                "initiator no longer allowed; ending its session");
                            self.sessions.kill_initiator(&cfg.iqn, &row.initiator);
                        }
                    }
                }
                None => {
                    targets.insert(
                        cfg.iqn.clone(),
                        Arc::new(TargetRuntime::new(cfg.clone(), exports, roles)),
                    );
                }
            }
        }
    }
}

/// Serves one iSCSI connection: login, full feature phase, teardown.
pub async fn serve_connection(
    reactor: Rc<Reactor>,
    stream: TcpStream,
    placement: Rc<crate::placement::Placement>,
) -> anyhow::Result<()> {
    let stream = Rc::new(stream);
    let mut reader = PduReader::new(Rc::clone(&stream));
    let shared = Arc::clone(&reactor.shared);
    let registry = &shared.iscsi;
    // A connection still logging in when the daemon shuts down just closes
    // (nothing is in flight yet), so it cannot hold shutdown for the grace
    // period.
    let mut shutdown = reactor.shutdown.clone();
    let logged_in = tokio::select! {
        r = login::login(&shared, &registry.sessions, &stream, &mut reader) => r?,
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
    };
    let Some(logged_in) = logged_in else {
        return Ok(());
    };
    let neg = &logged_in.negotiated;
    let p = &neg.params;
    let params = FfpParams {
        header_digest: p.connection.header_digest == Digest::Crc32c,
        data_digest: p.connection.data_digest == Digest::Crc32c,
        initiator_mrdsl: p.connection.initiator_mrdsl,
        target_mrdsl: p.connection.target_mrdsl,
        max_burst: p.session.max_burst_length,
        first_burst: p.session.first_burst_length,
        immediate_data: p.session.immediate_data,
        initial_r2t: p.session.initial_r2t,
        max_outstanding_r2t: u32::from(p.session.max_outstanding_r2t),
        cid: neg.cid,
    };
    reader.header_digest = params.header_digest;
    reader.data_digest = params.data_digest;
    reader.max_data_segment = params.target_mrdsl;
    let target = match (neg.session_type, neg.target_name.as_deref()) {
        (SessionType::Normal, Some(name)) => registry.target(name),
        _ => None,
    };
    if target.is_none() {
        // A discovery session carries no I/O: placement does not count it.
        placement.carries(crate::placement::WORK_CONTROL);
    }
    let span = tracing::info_span!(
        "session",
        initiator = %neg.initiator_name,
        target = neg.target_name.as_deref().unwrap_or("discovery"),
        tsih = logged_in.session.tsih()
    );
    let nexus = registry.next_nexus.fetch_add(1, Ordering::Relaxed);
    let sender = ZeroCopySender::new(
        Rc::clone(&stream),
        shared.zerocopy.for_peer(stream.peer_addr().ok()),
        Arc::clone(&shared.sender_counters),
    );
    let out = Outbound::new(Rc::clone(&stream), sender);
    let writer = tokio::task::spawn_local(Rc::clone(&out).run_writer());
    let conn = Connection::new(
        Rc::clone(&reactor),
        Rc::clone(&out),
        params,
        target.clone(),
        nexus,
        neg.params.clone(),
        neg.isid,
        neg.next_stat_sn,
        neg.exp_cmd_sn,
        Arc::clone(&logged_in.session.info),
    );
    if let Some(t) = &target {
        t.nexus_added(nexus, &conn.initiator_port);
    }
    tracing::info!(parent: &span, ?params, "login complete");
    let killed = logged_in.session.killed.clone();
    let exit = Rc::clone(&conn)
        .run(&mut reader, killed, placement)
        .instrument(span.clone())
        .await;
    // Teardown (the driver's): abort what is still running, drain the
    // slots, let the writer drain, then take the sender back and close it
    // without releasing pages early; the session is unregistered last.
    crate::driver::finish(Some(conn), reader, out, writer, &shared, exit, logged_in)
        .instrument(span)
        .await
}
