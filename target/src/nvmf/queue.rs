//! One NVMe/TCP connection: one queue (admin or I/O) of one controller.
//!
//! ICReq/ICResp, then the PDU loop: the first capsule must be a Fabrics
//! Connect, which creates the controller (admin queue) or joins an existing
//! one (I/O queue). Admin commands are planned by the controller state
//! machine and answered inline; I/O commands each run in a local task —
//! reads go disk → leased buffers → C2HData through the zero-copy sender,
//! writes are received (in-capsule or H2CData after an R2T) straight into
//! leased buffers and handed to the volume. A malformed PDU gets a
//! C2HTermReq with the right FES and the connection closes; the other
//! queues and controllers carry on.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use zctarget_backends::{Backend, SegmentList};
use zctarget_protocol::nvme::fabrics::{ConnectData, CONNECT_DATA_LEN};
use zctarget_protocol::nvme::{AdminPlan, Completion, IoPlan, Sqe, Status};
use zctarget_protocol::nvme_tcp::digest;
use zctarget_protocol::nvme_tcp::{
    C2HData, CapsuleResp, H2CData, ICReq, ICResp, PduError, PduFlags, PduType, R2t, TermReq,
    IC_LEN, PFV_1_0, SQE_LEN,
};

use super::reader::{Header, PduReader, ReadError};
use super::{ControllerEntry, MAX_H2C_DATA};
use crate::admission::{Admission, HostDataGrant, HOST_DATA_TIMEOUT};
use crate::outbound::Outbound;
use crate::reactor::Reactor;
use crate::zerocopy::ZeroCopySender;

/// Largest PDU accepted: an H2CData of MAXH2CDATA or a capsule with the
/// admin in-capsule maximum, plus headers and digests.
const MAX_PLEN: u32 = MAX_H2C_DATA + 256;
/// How long a closing connection waits for in-flight commands and
/// zero-copy notifications.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Fabrics CONNECT fctype.
const FCTYPE_CONNECT: u8 = 0x01;

/// Why a queue's PDU loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The host closed the connection.
    Closed,
    /// Fabrics Disconnect on this I/O queue.
    Disconnected,
    /// The controller was torn down (keep-alive timeout, admin queue gone).
    ControllerGone,
    /// Keep-alive timeout on this admin queue.
    KeepAliveExpired,
    /// The daemon is shutting down.
    Shutdown,
    /// A fatal transport error; a C2HTermReq was sent.
    Terminated,
    /// In-band authentication failed (AUTH_Failure1 sent or AUTH_Failure2
    /// received): the queue ends (`nvmf/auth.rs`).
    AuthFailed,
}

/// Write data arriving by H2CData for one command.
struct H2CState {
    payload: RefCell<Option<SegmentList>>,
    /// The connection's admission quota, held until all data is in.
    grant: RefCell<Option<HostDataGrant>>,
    ttag: u16,
    expected: u32,
    received: Cell<u32>,
    done: Notify,
    aborted: Cell<bool>,
    /// The data arrived with a bad digest: the command fails with
    /// Transient Transport Error.
    digest_failed: Cell<bool>,
}

/// The queue a connection serves once connected.
struct Bound {
    qid: u16,
    cntlid: u16,
    entry: Arc<ControllerEntry>,
    sq_entries: u32,
    sqflow_disabled: bool,
}

/// Per-connection state.
pub struct Queue {
    reactor: Rc<Reactor>,
    out: Rc<Outbound>,
    hdgst: bool,
    ddgst: bool,
    /// Host PDU data alignment: C2H data offsets are multiples of this.
    hpda_align: usize,
    bound: RefCell<Option<Bound>>,
    sqhd: Cell<u32>,
    /// Commands running (for teardown), and write data in flight by CID.
    running: Cell<usize>,
    h2c: RefCell<HashMap<u16, Rc<H2CState>>>,
    next_ttag: Cell<u16>,
    /// Last Keep Alive (admin queue).
    last_keep_alive: Cell<Instant>,
    /// The Connect must have been handled by then (`server.login_timeout_secs`
    /// after the connection was accepted).
    connect_deadline: Instant,
    /// Buffer admission for write data (never waited for by the reader).
    admission: Rc<Admission>,
    /// Set by a command task that finds the queue must end (the host did
    /// not send data it was asked for); the reader exits.
    fatal: RefCell<Option<String>>,
    fatal_notify: Notify,
    /// Teardown started: commands still waiting for buffers give up.
    closing: Cell<bool>,
    closed: Notify,
    /// DH-HMAC-CHAP state of this queue (`nvmf/auth.rs`).
    auth: super::auth::QueueAuth,
}

/// Serves one connection: ICReq, PDU loop, teardown.
pub async fn serve(reactor: Rc<Reactor>, stream: TcpStream) -> anyhow::Result<()> {
    let stream = Rc::new(stream);
    let shared = Arc::clone(&reactor.shared);
    let mut reader = PduReader::new(Rc::clone(&stream), MAX_PLEN);
    let login_timeout = Duration::from_secs(u64::from(shared.server.login_timeout_secs));
    let connect_deadline = Instant::now() + login_timeout;
    let mut ic = [0u8; IC_LEN];
    let mut shutdown = reactor.shutdown.clone();
    tokio::select! {
        r = tokio::time::timeout(login_timeout, reader.read_exact(&mut ic)) => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e).context("reading ICReq"),
            Err(_) => anyhow::bail!("no ICReq within {login_timeout:?}"),
        },
        // Nothing is in flight before the ICReq: no reason to hold shutdown.
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
    }
    let sender = ZeroCopySender::new(
        Rc::clone(&stream),
        shared.zerocopy,
        Arc::clone(&shared.sender_counters),
    );
    let out = Outbound::new(Rc::clone(&stream), sender);
    let writer = tokio::task::spawn_local(Rc::clone(&out).run_writer());
    let req = ICReq::parse(&ic).and_then(|r| r.validate().map(|()| r));
    let exit = match req {
        Err(e) => {
            tracing::info!(error = %e, "bad ICReq; terminating");
            send_term_req(&out, &e, &ic);
            Ok(Exit::Terminated)
        }
        Ok(req) => {
            let resp = ICResp {
                pfv: PFV_1_0,
                cpda: 0,
                hdgst_enable: req.hdgst_enable,
                ddgst_enable: req.ddgst_enable,
                maxh2cdata: MAX_H2C_DATA,
            };
            let mut msg = out.message(SegmentList::new());
            msg.push_header(&resp.encode())?;
            out.send(msg);
            reader.header_digest = req.hdgst_enable;
            reader.data_digest = req.ddgst_enable;
            let q = Rc::new(Queue {
                reactor: Rc::clone(&reactor),
                out: Rc::clone(&out),
                hdgst: req.hdgst_enable,
                ddgst: req.ddgst_enable,
                hpda_align: (usize::from(req.hpda) + 1) * 4,
                bound: RefCell::new(None),
                sqhd: Cell::new(0),
                running: Cell::new(0),
                h2c: RefCell::new(HashMap::new()),
                next_ttag: Cell::new(1),
                last_keep_alive: Cell::new(Instant::now()),
                connect_deadline,
                admission: Admission::new(shared.pool.clone()),
                fatal: RefCell::new(None),
                fatal_notify: Notify::new(),
                closing: Cell::new(false),
                closed: Notify::new(),
                auth: super::auth::QueueAuth::default(),
            });
            let exit = Rc::clone(&q).run(&mut reader).await;
            q.teardown().await;
            exit
        }
    };
    drop(reader);
    out.shut_down(writer, TEARDOWN_TIMEOUT).await;
    let pool = shared.pool.stats();
    match exit {
        Ok(e) => {
            tracing::info!(
                exit = ?e,
                pool_free = pool.free_chunks,
                pool_total = pool.total_chunks,
                "queue ended"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Sends a C2HTermReq for `error` (when the error has a FES).
fn send_term_req(out: &Outbound, error: &PduError, header: &[u8]) {
    if let Some(t) = TermReq::for_error(error, header) {
        let mut msg = out.message(SegmentList::new());
        if msg.push_header(t.encode().as_bytes()).is_ok() {
            out.send(msg);
        }
    }
}

impl Queue {
    fn registry(&self) -> &super::NvmfRegistry {
        &self.reactor.shared.nvmf
    }

    fn killed(&self) -> Option<watch::Receiver<bool>> {
        self.bound
            .borrow()
            .as_ref()
            .map(|b| b.entry.kill.subscribe())
    }

    /// The PDU loop.
    async fn run(self: Rc<Self>, reader: &mut PduReader) -> anyhow::Result<Exit> {
        let mut shutdown = self.reactor.shutdown.clone();
        let mut data = Vec::with_capacity(8192);
        let mut killed: Option<watch::Receiver<bool>> = None;
        let connected_by = self.connect_deadline;
        let no_connect = || {
            let waited = self.reactor.shared.server.login_timeout_secs;
            anyhow::anyhow!("no Connect within {waited}s")
        };
        loop {
            if killed.is_none() {
                killed = self.killed();
            }
            let io_queue = self.bound.borrow().as_ref().is_some_and(|b| b.qid != 0);
            if io_queue && reader.buffered() > 0 {
                // PDUs already received on an I/O queue are parsed without
                // arming timers; the exits are still checked between them.
                if killed.as_ref().is_some_and(|k| *k.borrow()) {
                    return Ok(Exit::ControllerGone);
                }
                if *shutdown.borrow() {
                    return Ok(Exit::Shutdown);
                }
            } else {
                let kato = self.keep_alive_deadline();
                let admin = self.admin_entry();
                tokio::select! {
                    r = reader.readable() => r?,
                    _ = wait_events(admin.as_deref()) => {
                        self.send_events()?;
                        continue;
                    }
                    _ = wait_killed(&mut killed) => return Ok(Exit::ControllerGone),
                    _ = shutdown.wait_for(|s| *s) => return Ok(Exit::Shutdown),
                    _ = sleep_until(kato) => {
                        if self.keep_alive_expired() {
                            tracing::warn!("keep-alive timeout: tearing the controller down");
                            return Ok(Exit::KeepAliveExpired);
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(connected_by.into()), if self.bound.borrow().is_none() => {
                        return Err(no_connect());
                    }
                    () = self.fatal_notify.notified() => {}
                }
            }
            if let Some(why) = self.fatal.borrow_mut().take() {
                anyhow::bail!(why);
            }
            // Until the Connect is handled, the deadline also bounds a PDU
            // that stops half-way.
            let unbound = self.bound.borrow().is_none();
            let header = if unbound {
                tokio::time::timeout_at(connected_by.into(), reader.read_header())
                    .await
                    .map_err(|_| no_connect())?
            } else {
                let stall = crate::listener::PDU_STALL_TIMEOUT;
                crate::sockio::stall_bounded(reader.read_header(), stall)
                    .await
                    .ok_or_else(|| {
                        anyhow::anyhow!("PDU header incomplete after {stall:?}: dropping the queue")
                    })?
            };
            let header = match header {
                Ok(h) => h,
                Err(ReadError::Closed) => return Ok(Exit::Closed),
                Err(ReadError::NotReady) => continue,
                Err(ReadError::Pdu { error, header }) => {
                    tracing::info!(%error, "malformed PDU; sending C2HTermReq");
                    self.reactor
                        .shared
                        .counters
                        .protocol_error(crate::daemon::Protocol::NvmeTcp, "malformed_pdu");
                    send_term_req(&self.out, &error, &header);
                    return Ok(Exit::Terminated);
                }
                Err(e) => return Err(e).context("reading a PDU"),
            };
            let step = if unbound {
                tokio::time::timeout_at(
                    connected_by.into(),
                    self.dispatch(reader, header, &mut data),
                )
                .await
                .map_err(|_| no_connect())?
            } else {
                self.dispatch(reader, header, &mut data).await
            };
            match step? {
                Some(exit) => return Ok(exit),
                None => continue,
            }
        }
    }

    /// The controller, when this is its admin queue.
    fn admin_entry(&self) -> Option<Arc<ControllerEntry>> {
        let b = self.bound.borrow();
        let b = b.as_ref()?;
        (b.qid == 0).then(|| Arc::clone(&b.entry))
    }

    /// Completes parked Asynchronous Event Requests with the events
    /// administration raised.
    fn send_events(&self) -> anyhow::Result<()> {
        let Some(entry) = self.admin_entry() else {
            return Ok(());
        };
        let events = std::mem::take(&mut *entry.events.lock().unwrap_or_else(|e| e.into_inner()));
        for e in events {
            tracing::info!(cid = e.cid, "asynchronous event completed");
            self.send_completion(e.cid, e.completion)?;
        }
        Ok(())
    }

    fn keep_alive_deadline(&self) -> Option<Instant> {
        let b = self.bound.borrow();
        let b = b.as_ref()?;
        if b.qid != 0 {
            return None;
        }
        // DH-HMAC-CHAP hook: no keep-alive timeout while the admin queue
        // authenticates (the host computes its DH value between commands;
        // the authentication deadline bounds this time).
        if self.auth.pending() {
            return None;
        }
        let kato = b.entry.ctrl.lock().ok()?.kato_ms();
        if kato == 0 {
            return None;
        }
        Some(self.last_keep_alive.get() + Duration::from_millis(u64::from(kato)))
    }

    fn keep_alive_expired(&self) -> bool {
        self.keep_alive_deadline()
            .is_some_and(|d| Instant::now() >= d)
    }

    /// Terminates the connection for a fatal transport error.
    fn fatal(&self, error: PduError, header: &[u8]) -> anyhow::Result<Option<Exit>> {
        self.reactor
            .shared
            .counters
            .protocol_error(crate::daemon::Protocol::NvmeTcp, "transport_error");
        tracing::info!(%error, "transport error; sending C2HTermReq");
        send_term_req(&self.out, &error, header);
        Ok(Some(Exit::Terminated))
    }

    async fn dispatch(
        self: &Rc<Self>,
        reader: &mut PduReader,
        h: Header,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        match h.ch.pdu_type {
            PduType::CapsuleCmd => self.on_capsule(reader, h, data).await,
            PduType::H2CData => self.on_h2c_data(reader, h).await,
            PduType::H2CTermReq => {
                let mut rest = vec![0u8; h.layout.plen.saturating_sub(8)];
                let _ = reader.read_exact(&mut rest).await;
                tracing::info!("host terminated the connection (H2CTermReq)");
                Ok(Some(Exit::Closed))
            }
            other => self.fatal(PduError::UnexpectedPduType(other), &h.bytes),
        }
    }

    fn next_sqhd(&self) -> u16 {
        let entries = self
            .bound
            .borrow()
            .as_ref()
            .map_or(u32::from(super::QUEUE_ENTRIES), |b| b.sq_entries.max(1));
        let v = (self.sqhd.get() + 1) % entries;
        self.sqhd.set(v);
        v as u16
    }

    /// Sends a CapsuleResp.
    fn send_completion(&self, cid: u16, c: Completion) -> anyhow::Result<()> {
        let (qid, sqhd) = {
            let b = self.bound.borrow();
            let qid = b.as_ref().map_or(0, |b| b.qid);
            let sqhd = match b.as_ref() {
                Some(b) if b.sqflow_disabled => 0xFFFF,
                _ => self.sqhd.get() as u16,
            };
            (qid, sqhd)
        };
        let mut resp = CapsuleResp {
            cqe: c.to_cqe(cid, qid, sqhd).encode(),
            ..CapsuleResp::default()
        };
        if self.hdgst {
            resp.flags = resp.flags.with(PduFlags::HDGSTF, true);
            resp.plen += 4;
        }
        let mut msg = self.out.message(SegmentList::new());
        let bytes = resp.encode();
        msg.push_header(&bytes)?;
        if self.hdgst {
            msg.push_header(&digest::to_wire(digest::header_digest(&bytes)))?;
        }
        self.out.send(msg);
        Ok(())
    }

    /// C2HData header bytes (with header digest and padding up to PDO) for
    /// `len` bytes of data at `offset`; `last_flags` on the final PDU.
    fn c2h_header(&self, cid: u16, len: usize, success: bool) -> ([u8; 24], usize, usize) {
        let header_end: usize = 24 + if self.hdgst { 4 } else { 0 };
        let pdo = header_end.div_ceil(self.hpda_align) * self.hpda_align;
        let plen = pdo + len + if self.ddgst { 4 } else { 0 };
        let mut flags = PduFlags::LAST_PDU.with(PduFlags::SUCCESS, success);
        if self.hdgst {
            flags = flags.with(PduFlags::HDGSTF, true);
        }
        if self.ddgst {
            flags = flags.with(PduFlags::DDGSTF, true);
        }
        let c2h = C2HData {
            flags,
            pdo: pdo as u8,
            plen: plen as u32,
            cccid: cid,
            datao: 0,
            datal: len as u32,
        };
        (c2h.encode(), pdo - header_end, header_end)
    }

    /// Sends control-path data (Identify, log pages) and then the
    /// completion.
    fn send_control_data(&self, cid: u16, bytes: &[u8], c: Completion) -> anyhow::Result<()> {
        let (hdr, pad, _) = self.c2h_header(cid, bytes.len(), false);
        let mut msg = self.out.message(SegmentList::new());
        msg.push_header(&hdr)?;
        if self.hdgst {
            msg.push_header(&digest::to_wire(digest::header_digest(&hdr)))?;
        }
        msg.push_header(&[0u8; 128][..pad])?;
        msg.push_header(bytes)?;
        if self.ddgst {
            msg.push_header(&digest::to_wire(digest::data_digest(bytes)))?;
        }
        self.out.send(msg);
        self.send_completion(cid, c)
    }

    async fn on_capsule(
        self: &Rc<Self>,
        reader: &mut PduReader,
        h: Header,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        let mut raw = [0u8; SQE_LEN];
        raw.copy_from_slice(&h.bytes[8..8 + SQE_LEN]);
        let sqe = Sqe::parse(&raw);
        let bound = self.bound.borrow().as_ref().map(|b| b.qid);
        let Some(qid) = bound else {
            let r = self.on_connect(reader, &h, &sqe, data).await;
            // DH-HMAC-CHAP hook: a queue still unauthenticated after
            // `login_timeout_secs` (abandoned transaction) ends.
            if self.auth.pending() {
                let q = Rc::downgrade(self);
                let within =
                    Duration::from_secs(self.reactor.shared.server.login_timeout_secs.into());
                super::auth::expire(within, move || {
                    let q = q.upgrade().filter(|q| q.auth.pending())?;
                    *q.fatal.borrow_mut() = Some("authentication not completed in time".into());
                    q.fatal_notify.notify_one();
                    let counters = &q.reactor.shared.counters;
                    counters.protocol_error(crate::daemon::Protocol::NvmeTcp, "auth_timeout");
                    Some(())
                });
            }
            return r;
        };
        self.next_sqhd();
        // --- DH-HMAC-CHAP hook (nvmf/auth.rs): AUTH_Send / AUTH_Receive,
        // and commands refused until the queue is authenticated.
        match self.auth.intercept(&sqe, &self.reactor.shared.counters) {
            super::auth::Verdict::Pass => {}
            super::auth::Verdict::Refuse(status) => {
                return self.refuse_capsule(reader, &h, sqe.cid, status).await;
            }
            super::auth::Verdict::Command => {
                if let Err(e) = reader.read_data(&h, data).await {
                    return self.data_error(e, &h, sqe.cid);
                }
                let a = self
                    .auth
                    .execute(&sqe, data, &self.reactor.shared.counters)
                    .await;
                // Authentication traffic restarts the keep-alive period.
                self.last_keep_alive.set(Instant::now());
                match a.data {
                    Some(bytes) => self.send_control_data(sqe.cid, &bytes, a.completion)?,
                    None => self.send_completion(sqe.cid, a.completion)?,
                }
                return Ok(a.exit);
            }
        }
        // --- end of the DH-HMAC-CHAP hook.
        if qid == 0 {
            if let Err(e) = reader.read_data(&h, data).await {
                return self.data_error(e, &h, sqe.cid);
            }
            return self.on_admin(&sqe, data);
        }
        self.on_io(reader, &h, sqe).await
    }

    /// A data digest error fails only the command (Transient Transport
    /// Error, TCP transport 1.0 §3.6.2.x: the data is discarded, the
    /// connection stays); a malformed PDU sends a C2HTermReq; other read
    /// errors end the connection.
    fn data_error(&self, e: ReadError, h: &Header, cid: u16) -> anyhow::Result<Option<Exit>> {
        match e {
            ReadError::DataDigest => {
                self.reactor
                    .shared
                    .counters
                    .protocol_error(crate::daemon::Protocol::NvmeTcp, "data_digest");
                tracing::info!(cid, "data digest error; command failed");
                self.send_completion(cid, Completion::status(Status::TRANSIENT_TRANSPORT))?;
                Ok(None)
            }
            ReadError::Pdu { error, header } => self.fatal(error, &header),
            other => {
                let _ = h;
                Err(other).context("reading PDU data")
            }
        }
    }

    async fn on_connect(
        &self,
        reader: &mut PduReader,
        h: &Header,
        sqe: &Sqe,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        if let Err(e) = reader.read_data(h, data).await {
            return self.data_error(e, h, sqe.cid);
        }
        if !sqe.is_fabrics() || sqe.fctype() != FCTYPE_CONNECT {
            // Anything before Connect: command sequence error (Fabrics 1.1
            // §3.3: the first command on a queue is Connect).
            self.send_completion(sqe.cid, Completion::status(Status::CMD_SEQ_ERROR.dnr()))?;
            return Ok(None);
        }
        let qid = (sqe.cdw10 >> 16) as u16;
        let parsed = if data.len() == CONNECT_DATA_LEN {
            ConnectData::parse(data)
        } else {
            Err(Completion::status(Status::SGL_INVALID_DATA.dnr()))
        };
        let cd = match parsed {
            Ok(cd) => cd,
            Err(c) => {
                self.send_completion(sqe.cid, c)?;
                return Ok(None);
            }
        };
        if qid == 0 && cd.hostnqn.is_empty() {
            tracing::info!(subnqn = %cd.subnqn, "Connect with an empty HOSTNQN");
        }
        let registry = self.registry();
        let entry = if qid == 0 {
            registry.create_controller(&cd.subnqn, &cd.hostnqn, self.out.stream().local_addr().ok())
        } else {
            registry.controller(cd.cntlid)
        };
        let Some(entry) = entry else {
            tracing::info!(subnqn = %cd.subnqn, hostnqn = %cd.hostnqn, qid, "Connect to an unknown subsystem or controller");
            let c = zctarget_protocol::nvme::fabrics::invalid_param(
                true,
                if qid == 0 { 256 } else { 16 },
            );
            self.send_completion(sqe.cid, c)?;
            return Ok(None);
        };
        let mut outcome = match entry.ctrl.lock() {
            Ok(mut ctrl) => ctrl.connect(sqe, data),
            Err(_) => anyhow::bail!("controller state poisoned"),
        };
        let cntlid = entry.ctrl.lock().map(|c| c.cntlid()).unwrap_or(0);
        match outcome.queue {
            Some(q) => {
                tracing::info!(
                    subnqn = %cd.subnqn,
                    hostnqn = %cd.hostnqn,
                    cntlid,
                    qid,
                    sq_entries = q.sq_entries,
                    "queue connected"
                );
                entry.queues.fetch_add(1, Ordering::Relaxed);
                if qid == 0 {
                    if let Ok(mut a) = entry.host_address.lock() {
                        *a = self.out.stream().peer_addr().ok();
                    }
                }
                *self.bound.borrow_mut() = Some(Bound {
                    qid,
                    cntlid,
                    entry,
                    sq_entries: q.sq_entries,
                    sqflow_disabled: q.sq_flow_control_disabled,
                });
                self.last_keep_alive.set(Instant::now());
                self.sqhd.set(0);
                self.next_sqhd();
                // DH-HMAC-CHAP hook: AUTHREQ.ATR for hosts with a secret.
                outcome.completion = self.auth.on_connect(
                    registry,
                    &cd.subnqn,
                    &cd.hostnqn,
                    qid,
                    outcome.completion,
                );
            }
            None => {
                tracing::info!(
                    subnqn = %cd.subnqn,
                    hostnqn = %cd.hostnqn,
                    qid,
                    status = ?outcome.completion.status,
                    "Connect refused"
                );
                if qid == 0 {
                    registry.remove_controller(cntlid);
                }
            }
        }
        self.send_completion(sqe.cid, outcome.completion)?;
        Ok(None)
    }

    fn entry(&self) -> Option<Arc<ControllerEntry>> {
        self.bound.borrow().as_ref().map(|b| Arc::clone(&b.entry))
    }

    fn on_admin(&self, sqe: &Sqe, data: &[u8]) -> anyhow::Result<Option<Exit>> {
        let Some(entry) = self.entry() else {
            return Ok(None);
        };
        let plan = {
            let mut ctrl = entry
                .ctrl
                .lock()
                .map_err(|_| anyhow::anyhow!("controller state poisoned"))?;
            let before = ctrl.keep_alive_seq();
            if sqe.opcode == zctarget_protocol::nvme::admin_opcode::GET_LOG_PAGE {
                ctrl.set_health(entry.stats.health());
            }
            let plan = ctrl.plan_admin(sqe, data);
            if ctrl.keep_alive_seq() != before {
                self.last_keep_alive.set(Instant::now());
            }
            plan
        };
        match plan {
            AdminPlan::Complete {
                completion,
                data: Some(bytes),
            } => self.send_control_data(sqe.cid, &bytes, completion)?,
            AdminPlan::Complete {
                completion,
                data: None,
            } => self.send_completion(sqe.cid, completion)?,
            // Held until an event occurs; the controller keeps the CID.
            AdminPlan::Park => {}
        }
        Ok(None)
    }

    async fn on_io(
        self: &Rc<Self>,
        reader: &mut PduReader,
        h: &Header,
        sqe: Sqe,
    ) -> anyhow::Result<Option<Exit>> {
        let Some(entry) = self.entry() else {
            return Ok(None);
        };
        let plan = entry
            .ctrl
            .lock()
            .map_err(|_| anyhow::anyhow!("controller state poisoned"))?
            .plan_io(&sqe);
        let in_capsule_len = h.layout.data_len;
        let capsule_len = match plan {
            IoPlan::Write {
                len,
                in_capsule: true,
                ..
            }
            | IoPlan::Dsm {
                len,
                in_capsule: true,
                ..
            }
            | IoPlan::Compare {
                len,
                in_capsule: true,
                ..
            } => Some(len as usize),
            _ => None,
        };
        // Write data that came in the capsule goes straight into leased
        // buffers; control data (DSM ranges, compare data) too, then copied
        // out where needed.
        let mut capsule_data = None;
        match capsule_len {
            Some(len) if len != in_capsule_len => {
                // The capsule must carry exactly what its SGL describes (and
                // the SGL what the command transfers, checked by the plan):
                // nothing reaches the backend otherwise.
                tracing::info!(
                    cid = sqe.cid,
                    sgl = len,
                    carried = in_capsule_len,
                    "in-capsule data length differs from the SGL"
                );
                return self
                    .refuse_capsule(reader, h, sqe.cid, Status::SGL_INVALID_DATA.dnr())
                    .await;
            }
            Some(len) => match self.admission.try_now(len, true) {
                Ok(Some((mut list, _grant))) => {
                    if let Err(e) = reader.read_data_into(h, &mut list, 0).await {
                        return self.data_error(e, h, sqe.cid);
                    }
                    capsule_data = Some(list);
                }
                Ok(None) | Err(_) => {
                    // The data is on the wire and no buffers are free now:
                    // drained, and the host retries (Command Interrupted,
                    // no DNR).
                    self.reactor.shared.pool.note_backpressure();
                    return self
                        .refuse_capsule(reader, h, sqe.cid, Status::CMD_INTERRUPTED)
                        .await;
                }
            },
            None if in_capsule_len > 0 && !matches!(plan, IoPlan::Error(_)) => {
                // Data in a capsule whose SGL does not describe in-capsule
                // data.
                return self
                    .refuse_capsule(reader, h, sqe.cid, Status::SGL_INVALID_DATA.dnr())
                    .await;
            }
            None if in_capsule_len > 0 => {
                if let Err(e) = reader.skip_data(h).await {
                    return self.data_error(e, h, sqe.cid);
                }
            }
            None => {}
        }
        if plan == IoPlan::Disconnect {
            self.send_completion(sqe.cid, Completion::SUCCESS)?;
            return Ok(Some(Exit::Disconnected));
        }
        // Data fetched with R2T: the command's task leases its buffers
        // (NeedBuffer) and only then sends the R2T; the reader goes on.
        let h2c_len = match plan {
            IoPlan::Write {
                len,
                in_capsule: false,
                ..
            }
            | IoPlan::Compare {
                len,
                in_capsule: false,
                ..
            }
            | IoPlan::Dsm {
                len,
                in_capsule: false,
                ..
            } => Some(len),
            _ => None,
        };
        self.running.set(self.running.get() + 1);
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        let q = Rc::clone(self);
        // No tracing span per command (see the iSCSI frontend).
        tokio::task::spawn_local(async move {
            let cid = sqe.cid;
            let h2c = match h2c_len {
                Some(len) => q.expect_h2c(cid, len).await,
                None => Ok(None),
            };
            let result = match h2c {
                Ok(h2c) => {
                    let r = q
                        .execute(&entry, sqe, plan, capsule_data, h2c.clone())
                        .await;
                    (r, h2c)
                }
                // The queue is closing: nothing to answer.
                Err(()) => (Ok(None), None),
            };
            let (result, h2c) = result;
            if let Some(s) = &h2c {
                q.h2c.borrow_mut().remove(&cid);
                s.payload.borrow_mut().take();
            }
            match result {
                Ok(Some(c)) => {
                    if !c.status.is_success() {
                        tracing::debug!(status = ?c.status, "I/O command failed");
                    }
                    let _ = q.send_completion(cid, c);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), cid, "command failed");
                    let _ = q.send_completion(cid, Completion::status(Status::INTERNAL));
                }
            }
            q.running.set(q.running.get() - 1);
            entry.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(None)
    }

    /// Answers a capsule whose data cannot be taken, after draining it.
    async fn refuse_capsule(
        &self,
        reader: &mut PduReader,
        h: &Header,
        cid: u16,
        status: Status,
    ) -> anyhow::Result<Option<Exit>> {
        if let Err(e) = reader.skip_data(h).await {
            return self.data_error(e, h, cid);
        }
        self.send_completion(cid, Completion::status(status))?;
        Ok(None)
    }

    /// Leases buffers for `len` bytes of H2C data for command `cid` (within
    /// the connection's quota, waiting if need be) and sends the R2T for all
    /// of it. `Err`: the queue is closing.
    async fn expect_h2c(&self, cid: u16, len: u32) -> Result<Option<Rc<H2CState>>, ()> {
        let closed = async {
            loop {
                let n = self.closed.notified();
                if self.closing.get() {
                    return;
                }
                n.await;
            }
        };
        let leased = tokio::select! {
            r = self.admission.lease_solicited(len as usize) => r.map_err(|_| ())?,
            () = closed => return Err(()),
        };
        let (payload, grant) = leased;
        let ttag = self.next_ttag.get();
        self.next_ttag.set(ttag.wrapping_add(1).max(1));
        let state = Rc::new(H2CState {
            payload: RefCell::new(Some(payload)),
            grant: RefCell::new(Some(grant)),
            ttag,
            expected: len,
            received: Cell::new(0),
            done: Notify::new(),
            aborted: Cell::new(false),
            digest_failed: Cell::new(false),
        });
        self.h2c.borrow_mut().insert(cid, Rc::clone(&state));
        let mut r2t = R2t {
            cccid: cid,
            ttag,
            r2to: 0,
            r2tl: len,
            ..R2t::default()
        };
        if self.hdgst {
            r2t.flags = r2t.flags.with(PduFlags::HDGSTF, true);
            r2t.plen += 4;
        }
        let bytes = r2t.encode();
        let mut msg = self.out.message(SegmentList::new());
        if msg.push_header(&bytes).is_err() {
            return Err(());
        }
        if self.hdgst
            && msg
                .push_header(&digest::to_wire(digest::header_digest(&bytes)))
                .is_err()
        {
            return Err(());
        }
        self.out.send(msg);
        Ok(Some(state))
    }

    async fn on_h2c_data(&self, reader: &mut PduReader, h: Header) -> anyhow::Result<Option<Exit>> {
        let mut raw = [0u8; 24];
        raw.copy_from_slice(&h.bytes[..24]);
        let d = match H2CData::parse(&raw) {
            Ok(d) => d,
            Err(e) => return self.fatal(e, &h.bytes),
        };
        let state = self.h2c.borrow().get(&d.cccid).cloned();
        let Some(state) = state else {
            // Data for a command that asked for none: invalid field (CCCID).
            return self.fatal(PduError::InvalidField(8), &h.bytes);
        };
        if d.ttag != state.ttag {
            return self.fatal(PduError::InvalidField(10), &h.bytes);
        }
        if d.datal as usize != h.layout.data_len || d.datal > MAX_H2C_DATA {
            return self.fatal(
                PduError::DataLimitExceeded {
                    datal: d.datal,
                    max: MAX_H2C_DATA,
                },
                &h.bytes,
            );
        }
        let end = d.datao.checked_add(d.datal);
        if d.datao != state.received.get() || end.is_none_or(|e| e > state.expected) {
            // Outside the R2T's range, or out of order.
            return self.fatal(PduError::DataOutOfRange, &h.bytes);
        }
        let taken = state.payload.borrow_mut().take();
        let Some(mut payload) = taken else {
            return self.fatal(PduError::DataOutOfRange, &h.bytes);
        };
        let r = reader
            .read_data_into(&h, &mut payload, d.datao as usize)
            .await;
        *state.payload.borrow_mut() = Some(payload);
        if let Err(e) = r {
            state.aborted.set(true);
            state.done.notify_one();
            if matches!(e, ReadError::DataDigest) {
                // The command task answers Transient Transport Error.
                tracing::info!(cid = d.cccid, "H2CData digest error; command failed");
                state.digest_failed.set(true);
                return Ok(None);
            }
            return self.data_error(e, &h, d.cccid);
        }
        state.received.set(end.unwrap_or(0));
        if state.received.get() >= state.expected {
            state.done.notify_one();
        }
        Ok(None)
    }

    /// Waits for all H2C data of a command; None if the connection ends
    /// first.
    async fn collect(&self, s: &H2CState) -> Option<SegmentList> {
        while s.received.get() < s.expected && !s.aborted.get() {
            if tokio::time::timeout(HOST_DATA_TIMEOUT, s.done.notified())
                .await
                .is_err()
            {
                *self.fatal.borrow_mut() = Some(format!(
                    "host sent no data for an R2T within {HOST_DATA_TIMEOUT:?}"
                ));
                self.fatal_notify.notify_one();
                return None;
            }
        }
        if s.aborted.get() {
            return None;
        }
        s.grant.borrow_mut().take();
        s.payload.borrow_mut().take()
    }

    fn volume(
        &self,
        entry: &ControllerEntry,
        nsid: u32,
    ) -> Option<Rc<zctarget_backends::VolumeHandle>> {
        let v = entry.subsystem.as_ref()?.volume(nsid)?;
        self.reactor.volume(v)
    }

    /// Runs one I/O command; the completion to send (None: already sent or
    /// the connection is gone).
    async fn execute(
        &self,
        entry: &ControllerEntry,
        sqe: Sqe,
        plan: IoPlan,
        capsule: Option<SegmentList>,
        h2c: Option<Rc<H2CState>>,
    ) -> anyhow::Result<Option<Completion>> {
        let ok = Some(Completion::SUCCESS);
        let count = |bytes: &AtomicU64, cmds: &AtomicU64, n: u64| {
            bytes.fetch_add(n, Ordering::Relaxed);
            cmds.fetch_add(1, Ordering::Relaxed);
        };
        // Write data that never fully arrived: a digest failure is
        // answered, a lost connection is not.
        let lost = || {
            h2c.as_ref()
                .filter(|s| s.digest_failed.get())
                .map(|_| Completion::status(Status::TRANSIENT_TRANSPORT))
        };
        let io_status = |e: std::io::Error, write: bool| {
            tracing::warn!(error = %e, "backend I/O failed");
            entry.stats.media_errors.fetch_add(1, Ordering::Relaxed);
            let s = if e.kind() == std::io::ErrorKind::PermissionDenied {
                Status::NS_WRITE_PROTECTED
            } else if write {
                Status::WRITE_FAULT
            } else {
                Status::UNRECOVERED_READ
            };
            Some(Completion::status(s))
        };
        let fetch = |capsule: Option<SegmentList>| async {
            match (capsule, &h2c) {
                (Some(c), _) => Some(c),
                (None, Some(s)) => self.collect(s).await,
                (None, None) => None,
            }
        };
        match plan {
            IoPlan::Error(s) => Ok(Some(Completion::status(s))),
            IoPlan::Nop | IoPlan::Disconnect => Ok(ok),
            IoPlan::Read { nsid, offset, len } => {
                let vol = self.volume(entry, nsid).context("namespace volume")?;
                let list = self.reactor.shared.pool.lease(len as usize).await?;
                let (list, r) = vol.read(offset, list).await;
                if let Err(e) = r {
                    return Ok(io_status(e, false));
                }
                count(&entry.stats.bytes_read, &entry.stats.reads, u64::from(len));
                self.send_read_data(sqe.cid, list, len as usize).await
            }
            IoPlan::Write {
                nsid,
                offset,
                len,
                fua,
                ..
            } => {
                let Some(mut data) = fetch(capsule).await else {
                    return Ok(lost());
                };
                data.truncate(len as usize);
                let vol = self.volume(entry, nsid).context("namespace volume")?;
                let wce = entry
                    .ctrl
                    .lock()
                    .map(|c| c.write_cache_enabled())
                    .unwrap_or(true);
                let (_data, r) = vol.write(offset, data, fua || !wce).await;
                Ok(match r {
                    Ok(()) => {
                        count(
                            &entry.stats.bytes_written,
                            &entry.stats.writes,
                            u64::from(len),
                        );
                        ok
                    }
                    Err(e) => io_status(e, true),
                })
            }
            IoPlan::Flush { nsid } => {
                let Some(sub) = entry.subsystem.as_ref() else {
                    return Ok(ok);
                };
                let nsids: Vec<u32> = if nsid == zctarget_protocol::nvme::NSID_ALL {
                    sub.namespaces().iter().map(|n| n.nsid).collect()
                } else {
                    vec![nsid]
                };
                for n in nsids {
                    if let Some(vol) = self.volume(entry, n) {
                        if let Err(e) = vol.flush().await {
                            return Ok(io_status(e, true));
                        }
                    }
                }
                Ok(ok)
            }
            IoPlan::WriteZeroes {
                nsid,
                offset,
                len,
                deallocate,
                fua,
            } => {
                let vol = self.volume(entry, nsid).context("namespace volume")?;
                let r = if deallocate && vol.info().discard {
                    vol.discard(offset, len).await
                } else {
                    vol.write_zeroes(offset, len).await
                };
                let r = match r {
                    Ok(()) if fua => vol.flush().await,
                    other => other,
                };
                Ok(match r {
                    Ok(()) => ok,
                    Err(e) => io_status(e, true),
                })
            }
            IoPlan::Dsm { nsid, ranges, .. } => {
                let Some(list) = fetch(capsule).await else {
                    return Ok(lost());
                };
                let mut bytes = vec![0u8; usize::from(ranges) * 16];
                list.copy_to_slice(0, &mut bytes);
                drop(list);
                let parsed = entry
                    .ctrl
                    .lock()
                    .map_err(|_| anyhow::anyhow!("controller state poisoned"))?
                    .dsm_ranges(nsid, &bytes);
                let ranges = match parsed {
                    Ok(r) => r,
                    Err(s) => return Ok(Some(Completion::status(s))),
                };
                let vol = self.volume(entry, nsid).context("namespace volume")?;
                for r in ranges {
                    if let Err(e) = vol.discard(r.offset, r.len).await {
                        return Ok(io_status(e, true));
                    }
                }
                Ok(ok)
            }
            IoPlan::Compare {
                nsid, offset, len, ..
            } => {
                let Some(host) = fetch(capsule).await else {
                    return Ok(lost());
                };
                let vol = self.volume(entry, nsid).context("namespace volume")?;
                let medium = self.reactor.shared.pool.lease(len as usize).await?;
                let (medium, r) = vol.read(offset, medium).await;
                if let Err(e) = r {
                    return Ok(io_status(e, false));
                }
                let same = host.slices().zip(medium.slices()).all(|(a, b)| {
                    let n = a.len().min(b.len());
                    a[..n] == b[..n]
                });
                Ok(Some(if same {
                    Completion::SUCCESS
                } else {
                    Completion::status(Status::COMPARE_FAILURE)
                }))
            }
            IoPlan::Verify { nsid, offset, len } => {
                let vol = self.volume(entry, nsid).context("namespace volume")?;
                // Read through in chunks: the medium is readable.
                let chunk = 1u64 << 20;
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(chunk);
                    let buf = self.reactor.shared.pool.lease(n as usize).await?;
                    let (_buf, r) = vol.read(offset + done, buf).await;
                    if let Err(e) = r {
                        return Ok(io_status(e, false));
                    }
                    done += n;
                }
                Ok(ok)
            }
        }
    }

    /// Sends read data as one C2HData PDU and the completion per the
    /// status policy.
    async fn send_read_data(
        &self,
        cid: u16,
        list: SegmentList,
        len: usize,
    ) -> anyhow::Result<Option<Completion>> {
        let sqflow_disabled = self
            .bound
            .borrow()
            .as_ref()
            .is_some_and(|b| b.sqflow_disabled);
        let policy = self.reactor.shared.server.status_policy;
        // The SUCCESS flag may replace the CapsuleResp only when SQ flow
        // control is disabled (TCP transport 1.0 §3.6.2.9): the response
        // would carry SQHD.
        let eager = matches!(policy, zctarget_config::StatusPolicy::Eager);
        let success = eager && sqflow_disabled;
        let (hdr, pad, _) = self.c2h_header(cid, len, success);
        let mut msg = self.out.message(list);
        msg.push_header(&hdr)?;
        if self.hdgst {
            msg.push_header(&digest::to_wire(digest::header_digest(&hdr)))?;
        }
        msg.push_header(&[0u8; 128][..pad])?;
        msg.push_payload(0, len)?;
        if self.ddgst {
            let crc = msg.payload().crc32c_range(0, len);
            msg.push_header(&digest::to_wire(crc))?;
        }
        match policy {
            zctarget_config::StatusPolicy::Eager => {
                self.out.send(msg);
                Ok(if success {
                    None
                } else {
                    Some(Completion::SUCCESS)
                })
            }
            zctarget_config::StatusPolicy::Strict => {
                // Strict: the completion goes only after the kernel released
                // every page of the data.
                let done = self
                    .out
                    .send_tracked(msg)
                    .await
                    .context("data send aborted")?;
                drop(done);
                Ok(Some(Completion::SUCCESS))
            }
        }
    }

    /// Ends the queue: running commands finish or are abandoned, the
    /// controller forgets this queue (admin queue: the whole controller).
    async fn teardown(&self) {
        self.closing.set(true);
        self.closed.notify_waiters();
        for s in self.h2c.borrow().values() {
            s.aborted.set(true);
            s.done.notify_one();
        }
        let _ = tokio::time::timeout(TEARDOWN_TIMEOUT, async {
            while self.running.get() > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        let bound = self.bound.borrow_mut().take();
        if let Some(b) = bound {
            b.entry.queues.fetch_sub(1, Ordering::Relaxed);
            if b.qid == 0 {
                self.registry().remove_controller(b.cntlid);
                tracing::info!(cntlid = b.cntlid, "controller torn down");
            } else if let Ok(mut c) = b.entry.ctrl.lock() {
                c.disconnect_io_queue(b.qid);
            }
        }
    }
}

async fn wait_killed(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        Some(rx) => {
            if rx.wait_for(|k| *k).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

async fn wait_events(entry: Option<&ControllerEntry>) {
    match entry {
        Some(e) => e.events_ready.notified().await,
        None => std::future::pending::<()>().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending::<()>().await,
    }
}
