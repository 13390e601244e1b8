//! One NVMe/TCP connection: one queue (admin or I/O) of one controller.
//!
//! ICReq/ICResp, then the PDU loop: the first capsule must be a Fabrics
//! Connect, which creates the controller (admin queue) or joins an existing
//! one (I/O queue). Admin commands are planned by the controller state
//! machine and answered inline (`connect`); I/O commands run in the
//! queue's command slots (`io`, on the shared engine in `crate::slots`) —
//! reads go disk → leased buffers → C2HData through the zero-copy sender,
//! writes are received (in-capsule or H2CData after an R2T) straight into
//! leased buffers and handed to the volume. PDU framing is in `wire`. A
//! malformed PDU gets a C2HTermReq with the right FES and the connection
//! closes; the other queues and controllers carry on.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use crate::driver::{Fatal, Frontend, HeaderFailure, PduRead};
use zctarget_backends::SegmentList;
use zctarget_protocol::nvme::{Completion, Sqe, Status};
use zctarget_protocol::nvme_tcp::{
    C2hFraming, ICReq, ICResp, PduError, PduType, SqHead, IC_LEN, PFV_1_0, SQE_LEN,
};

use super::io::IoQueue;
use super::reader::{Header, PduReader, ReadError};
use super::wire::send_term_req;
use super::{ControllerEntry, MAX_H2C_DATA, QUEUE_ENTRIES};
use crate::admission::Admission;
use crate::outbound::Outbound;
use crate::placement::Placement;
use crate::reactor::Reactor;
use crate::zerocopy::ZeroCopySender;

/// Largest PDU accepted: an H2CData of MAXH2CDATA or a capsule with the
/// admin in-capsule maximum, plus headers and digests.
const MAX_PLEN: u32 = MAX_H2C_DATA + 256;

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

/// The queue a connection serves once connected.
pub(super) struct Bound {
    pub(super) qid: u16,
    pub(super) cntlid: u16,
    pub(super) entry: Arc<ControllerEntry>,
}

/// Per-connection state.
pub struct Queue {
    pub(super) reactor: Rc<Reactor>,
    pub(super) out: Rc<Outbound>,
    pub(super) hdgst: bool,
    pub(super) ddgst: bool,
    /// How C2HData is framed (digests, the host's PDU data alignment).
    pub(super) framing: C2hFraming,
    pub(super) bound: RefCell<Option<Bound>>,
    pub(super) sqhd: Cell<SqHead>,
    /// The command slots of an I/O queue (set by its Connect).
    pub(super) io: OnceCell<IoQueue>,
    /// Last Keep Alive (admin queue).
    pub(super) last_keep_alive: Cell<Instant>,
    /// The Connect must have been handled by then (`server.login_timeout_secs`
    /// after the connection was accepted).
    connect_deadline: Instant,
    /// Buffer admission for write data (never waited for by the reader).
    pub(super) admission: Rc<Admission>,
    /// Set by a command that finds the queue must end (the host did not
    /// send data it was asked for); the reader exits.
    pub(super) fatal: Fatal,
    /// Teardown started: commands still waiting for buffers give up.
    pub(super) closing: Cell<bool>,
    pub(super) closed: Notify,
    /// DH-HMAC-CHAP state of this queue (`nvmf/auth.rs`).
    pub(super) auth: super::auth::QueueAuth,
    /// Its share of the reactor's load (an admin queue carries no I/O).
    pub(super) placement: Rc<Placement>,
}

/// Serves one connection: ICReq, PDU loop, teardown.
pub async fn serve(
    reactor: Rc<Reactor>,
    stream: TcpStream,
    placement: Rc<Placement>,
) -> anyhow::Result<()> {
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
        shared.zerocopy.for_peer(stream.peer_addr().ok()),
        Arc::clone(&shared.sender_counters),
    );
    let out = Outbound::new(Rc::clone(&stream), sender);
    let writer = tokio::task::spawn_local(Rc::clone(&out).run_writer());
    let req = ICReq::parse(&ic).and_then(|r| r.validate().map(|()| r));
    let (q, exit) = match req {
        Err(e) => {
            tracing::info!(error = %e, "bad ICReq; terminating");
            send_term_req(&out, &e, &ic);
            (None, Ok(Exit::Terminated))
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
                framing: C2hFraming {
                    hdgst: req.hdgst_enable,
                    ddgst: req.ddgst_enable,
                    align: (usize::from(req.hpda) + 1) * 4,
                },
                bound: RefCell::new(None),
                sqhd: Cell::new(SqHead::new(u32::from(QUEUE_ENTRIES), false)),
                io: OnceCell::new(),
                last_keep_alive: Cell::new(Instant::now()),
                connect_deadline,
                admission: Admission::new(shared.pool.clone()),
                fatal: Fatal::default(),
                closing: Cell::new(false),
                closed: Notify::new(),
                auth: super::auth::QueueAuth::default(),
                placement,
            });
            let shutdown = reactor.shutdown.clone();
            let exit = crate::driver::run(&q, &mut reader, shutdown).await;
            (Some(q), exit)
        }
    };
    crate::driver::finish(q, reader, out, writer, &shared, exit, ()).await
}

impl Queue {
    pub(super) fn registry(&self) -> &super::NvmfRegistry {
        &self.reactor.shared.nvmf
    }

    /// Terminates the connection for a fatal transport error.
    pub(super) fn fatal(&self, error: PduError, header: &[u8]) -> anyhow::Result<Option<Exit>> {
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
                    q.fatal
                        .replace("authentication not completed in time".into());
                    let counters = &q.reactor.shared.counters;
                    counters.protocol_error(crate::daemon::Protocol::NvmeTcp, "auth_timeout");
                    Some(())
                });
            }
            return r;
        };
        self.advance_sqhd();
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
                let counters = &self.reactor.shared.counters;
                let a = self.auth.execute(&sqe, data, counters).await;
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
    pub(super) fn data_error(
        &self,
        e: ReadError,
        h: &Header,
        cid: u16,
    ) -> anyhow::Result<Option<Exit>> {
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

    /// One more command was fetched from the submission queue.
    pub(super) fn advance_sqhd(&self) {
        let mut q = self.sqhd.get();
        q.advance();
        self.sqhd.set(q);
    }
}

impl PduRead for PduReader {
    type Header = Header;
    type Error = ReadError;

    fn buffered(&self) -> usize {
        PduReader::buffered(self)
    }

    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
        PduReader::readable(self)
    }

    fn read_header(&mut self) -> impl std::future::Future<Output = Result<Header, ReadError>> {
        PduReader::read_header(self)
    }

    fn failure(e: &ReadError) -> HeaderFailure {
        match e {
            ReadError::Closed => HeaderFailure::Closed,
            ReadError::NotReady => HeaderFailure::NotReady,
            _ => HeaderFailure::Other,
        }
    }
}

/// A queue on the shared driver: the idle timer is the admin queue's
/// keep-alive, the Connect deadline bounds the queue until it is bound,
/// the kill switch is the controller's, events are the admin queue's
/// asynchronous events. Buffered PDUs skip the wait on I/O queues only.
impl Frontend for Queue {
    type Reader = PduReader;
    type Exit = Exit;
    type Slots = crate::slots::Slots<super::io::IoCmd>;
    const UNIT: &'static str = "queue";
    const ENDED: &'static str = "queue ended";
    const CLOSED: Exit = Exit::Closed;
    const SHUTDOWN: Exit = Exit::Shutdown;
    const KILLED: Exit = Exit::ControllerGone;

    fn fatal(&self) -> &Fatal {
        &self.fatal
    }

    fn killed(&self) -> Option<watch::Receiver<bool>> {
        self.kill_switch()
    }

    fn parse_buffered(&self) -> bool {
        self.bound.borrow().as_ref().is_some_and(|b| b.qid != 0)
    }

    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        self.keep_alive_deadline().map(Into::into)
    }

    fn on_idle(&self) -> anyhow::Result<Option<Exit>> {
        if self.keep_alive_expired() {
            tracing::warn!("keep-alive timeout: tearing the controller down");
            return Ok(Some(Exit::KeepAliveExpired));
        }
        Ok(None)
    }

    fn establish_deadline(&self) -> Option<tokio::time::Instant> {
        self.bound
            .borrow()
            .is_none()
            .then(|| self.connect_deadline.into())
    }

    fn not_established(&self) -> anyhow::Error {
        let waited = self.reactor.shared.server.login_timeout_secs;
        anyhow::anyhow!("no Connect within {waited}s")
    }

    async fn event(&self) {
        match self.admin_entry() {
            Some(e) => e.events_ready.notified().await,
            None => std::future::pending::<()>().await,
        }
    }

    fn on_event(self: &Rc<Self>) -> anyhow::Result<Option<Exit>> {
        self.send_events().map(|()| None)
    }

    fn read_error(&self, e: ReadError) -> anyhow::Result<Exit> {
        match e {
            ReadError::Pdu { error, header } => {
                tracing::info!(%error, "malformed PDU; sending C2HTermReq");
                self.reactor
                    .shared
                    .counters
                    .protocol_error(crate::daemon::Protocol::NvmeTcp, "malformed_pdu");
                send_term_req(&self.out, &error, &header);
                Ok(Exit::Terminated)
            }
            e => Err(anyhow::Error::new(e).context("reading a PDU")),
        }
    }

    async fn on_pdu(
        self: &Rc<Self>,
        reader: &mut PduReader,
        header: Header,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        self.dispatch(reader, header, data).await
    }

    /// Commands still waiting for buffers or host data give up.
    fn stop(&self) {
        self.closing.set(true);
        self.closed.notify_waiters();
        if let Some(io) = self.io.get() {
            io.abort_transfers();
        }
    }

    fn slots(&self) -> Option<&Self::Slots> {
        self.io.get().map(|io| &io.slots)
    }

    fn placement(&self) -> Option<&Placement> {
        Some(&self.placement)
    }

    /// The controller forgets this queue (admin queue: the whole
    /// controller).
    fn release(&self) {
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
