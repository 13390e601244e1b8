//! The login phase of a connection: feeds Login Requests to the sans-IO
//! [`LoginFsm`] and sends its answers; on success registers the session
//! (reinstating an old one with the same ISID and initiator name).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use zctarget_protocol::iscsi::chap::{Credentials, CHAP_ENTROPY_LEN};
use zctarget_protocol::iscsi::login_fsm::{
    LoginFsm, LoginOutcome, LoginPolicy, NegotiatedLogin, TargetAuth,
};
use zctarget_protocol::iscsi::params::TargetLoginConfig;
use zctarget_protocol::iscsi::{digest, LoginRequest, Opcode, BHS_LEN};

use super::reader::PduReader;
use super::session::{SessionHandle, SessionKey, SessionTable};
use crate::daemon::Shared;

/// Our declared MaxRecvDataSegmentLength (largest data segment we accept).
pub const TARGET_MRDSL: u32 = 256 << 10;

/// The login limits this target offers, on portals of group `tpgt` (1;
/// in a cluster, the gateway's number).
pub fn login_config(tpgt: u16) -> TargetLoginConfig {
    TargetLoginConfig {
        portal_group_tag: tpgt,
        max_recv_data_segment_length: TARGET_MRDSL,
        max_burst_length: 1 << 20,
        first_burst_length: TARGET_MRDSL,
        immediate_data: true,
        initial_r2t: true,
        max_outstanding_r2t: 1,
        header_digest_crc32c: true,
        data_digest_crc32c: true,
        error_recovery_level: 0,
        max_connections: 1,
        ..TargetLoginConfig::default()
    }
}

/// Login policy from the daemon's exports: target lookup, initiator ACL,
/// CHAP credentials.
pub struct ExportPolicy<'a> {
    /// Daemon state.
    pub shared: &'a Shared,
}

fn credentials(c: &zctarget_config::Chap) -> Credentials {
    Credentials {
        username: c.username.clone(),
        secret: c.secret.as_bytes().to_vec(),
    }
}

impl LoginPolicy for ExportPolicy<'_> {
    fn target(&self, target_name: &str) -> Option<TargetAuth> {
        let t = self.shared.iscsi.target(target_name)?.config();
        Some(TargetAuth {
            chap: t.chap.as_ref().map(credentials),
            mutual_chap: t.mutual_chap.as_ref().map(credentials),
            alias: t.alias.clone(),
        })
    }

    fn initiator_allowed(&self, target_name: &str, initiator_name: &str) -> bool {
        self.shared
            .iscsi
            .target(target_name)
            .is_some_and(|t| initiator_allowed(&t.config().initiators, initiator_name))
    }

    fn discovery_auth(&self) -> Option<TargetAuth> {
        None
    }
}

/// Whether `initiator` is in an `initiators` ACL (`*` allows everyone).
pub fn initiator_allowed(acl: &[String], initiator: &str) -> bool {
    acl.iter().any(|a| a == "*" || a == initiator)
}

/// A finished login.
pub struct LoggedIn {
    /// What was negotiated.
    pub negotiated: NegotiatedLogin,
    /// The registered session.
    pub session: SessionHandle,
}

/// Runs the login phase on a fresh connection. `Ok(None)`: the login failed
/// cleanly (a Login Response with an error status was sent), or did not
/// complete within `server.login_timeout_secs` of the connection's start.
pub async fn login(
    shared: &Shared,
    sessions: &Arc<SessionTable>,
    stream: &tokio::net::TcpStream,
    reader: &mut PduReader,
) -> anyhow::Result<Option<LoggedIn>> {
    let limit = Duration::from_secs(u64::from(shared.server.login_timeout_secs));
    match tokio::time::timeout(limit, login_steps(shared, sessions, stream, reader)).await {
        Ok(r) => r,
        Err(_) => {
            // Whatever was torn (a half-read PDU, a half-sent response)
            // goes with the connection; a session registered by a last
            // step that could not be answered is dropped again.
            tracing::info!(timeout = ?limit, "login not completed in time; closing the connection");
            Ok(None)
        }
    }
}

async fn login_steps(
    shared: &Shared,
    sessions: &Arc<SessionTable>,
    stream: &tokio::net::TcpStream,
    reader: &mut PduReader,
) -> anyhow::Result<Option<LoggedIn>> {
    let mut entropy = [0u8; CHAP_ENTROPY_LEN];
    getrandom(&mut entropy)?;
    let first_stat_sn: u32 = {
        let mut b = [0u8; 4];
        getrandom(&mut b)?;
        u32::from_be_bytes(b) & 0x00ff_ffff
    };
    let tpgt = shared
        .cluster
        .as_ref()
        .map_or(1, zctarget_config::Cluster::number);
    let mut fsm = LoginFsm::new(&login_config(tpgt), first_stat_sn, entropy);
    let policy = ExportPolicy { shared };
    let mut data = Vec::with_capacity(8192);
    loop {
        let header = reader
            .next_header()
            .await
            .context("reading a Login Request")?;
        if header.bhs[0] & 0x3f != Opcode::LoginRequest as u8 {
            anyhow::bail!("PDU with opcode {:#04x} during login", header.bhs[0] & 0x3f);
        }
        reader.read_data(header.data_len(), &mut data).await?;
        let req = LoginRequest::parse(&header.bhs).context("malformed Login Request")?;
        let mut step = fsm.on_request(&req, &data, &policy);
        let outcome = std::mem::replace(&mut step.outcome, LoginOutcome::Continue);
        let mut result = None;
        match outcome {
            LoginOutcome::Continue => {}
            LoginOutcome::Failed(status) => {
                tracing::info!(?status, "login refused");
                shared
                    .counters
                    .protocol_error(crate::daemon::Protocol::Iscsi, "login_refused");
            }
            LoginOutcome::Complete(negotiated) => {
                let key = SessionKey {
                    initiator: negotiated.initiator_name.clone(),
                    isid: negotiated.isid,
                    target: negotiated.target_name.clone().unwrap_or_default(),
                };
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                let (session, replaced) = sessions.register(key, peer);
                if replaced {
                    tracing::info!(
                        initiator = %negotiated.initiator_name,
                        "session reinstated: the previous one with this ISID is dropped"
                    );
                }
                step.set_tsih(session.tsih());
                result = Some(LoggedIn {
                    negotiated: *negotiated,
                    session,
                });
            }
        }
        send_login_response(stream, &step.response.encode(), &step.data).await?;
        if result.is_some() || fsm.is_finished() {
            return Ok(result);
        }
    }
}

/// Login responses go out by plain write: no digests during login, and the
/// zero-copy sender is set up only for full feature phase.
async fn send_login_response(
    stream: &tokio::net::TcpStream,
    bhs: &[u8; BHS_LEN],
    data: &[u8],
) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(BHS_LEN + data.len() + 3);
    buf.extend_from_slice(bhs);
    buf.extend_from_slice(data);
    buf.extend_from_slice(digest::padding(data.len()));
    let mut done = 0;
    while done < buf.len() {
        stream.writable().await?;
        match stream.try_write(&buf[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Fills `buf` from the kernel's CSPRNG (CHAP challenges, initial StatSN).
fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("reading /dev/urandom")
}
