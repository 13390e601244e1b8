//! One iSCSI connection in full feature phase (RFC 7143 §3.2, §11).
//!
//! The connection task is the only reader of the socket: it parses each PDU
//! and either answers it (NOP, Text; Logout and TMF in `task_mgmt`) or puts
//! a SCSI command in one of the connection's command slots
//! (`scsi_command`). Write data (immediate, unsolicited and solicited
//! Data-Out, `data_out`) is read straight into the command's leased
//! buffers. Everything leaves through the shared [`Outbound`] (zero-copy
//! sender), framed by `wire`; read data is sent from the same leases it was
//! read into.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use zctarget_protocol::iscsi::{NopIn, NopOut, Pdu, RejectReason, TextRequest, RESERVED_TAG};

use super::reader::{Header, PduReader, ReadError};
use super::target::TargetRuntime;
use super::task::Tasks;
use crate::admission::Admission;
use crate::command::StatusPolicy;
use crate::driver::{Fatal, Frontend, HeaderFailure, PduRead};
use crate::outbound::Outbound;
use crate::reactor::Reactor;
use crate::slots::Slots;
use zctarget_protocol::iscsi::sequence::CmdWindow;

/// Commands the initiator may have outstanding (MaxCmdSN - ExpCmdSN + 1).
pub const QUEUE_DEPTH: u32 = 128;
/// Idle time before the target pings with a NOP-In.
pub const NOP_INTERVAL: Duration = Duration::from_secs(15);
/// How long a ping may go unanswered (while nothing else arrives) before
/// the connection is dropped: a dead peer is found 75 s after it went
/// quiet. Generous on purpose: a live initiator may not read its socket
/// for a while — a paused VM, a synchronous client between commands
/// (libiscsi's test suite sleeps 60 s) — and dropping it costs a session
/// reinstatement and unit attentions.
pub const NOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a Logout waits for the connection's aborted tasks to let go
/// of their buffers (they only finish disk I/O or a send) before answering.
pub(super) const LOGOUT_DRAIN: Duration = Duration::from_secs(5);

/// Operational parameters negotiated at login that full feature phase uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfpParams {
    /// CRC32C header digests.
    pub header_digest: bool,
    /// CRC32C data digests.
    pub data_digest: bool,
    /// Largest data segment we may send (the initiator's declaration).
    pub initiator_mrdsl: u32,
    /// Largest data segment we accept (our declaration).
    pub target_mrdsl: u32,
    /// MaxBurstLength.
    pub max_burst: u32,
    /// FirstBurstLength.
    pub first_burst: u32,
    /// ImmediateData.
    pub immediate_data: bool,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// This connection's CID (Logout names it).
    pub cid: u16,
}

pub use super::wire::Residual;

pub use zctarget_protocol::iscsi::sequence::sn_lt;

/// Per-connection state in full feature phase.
pub struct Connection {
    /// The reactor it lives on.
    pub reactor: Rc<Reactor>,
    /// Its send side.
    pub out: Rc<Outbound>,
    /// Negotiated parameters.
    pub params: FfpParams,
    /// The target (None on a discovery session).
    pub target: Option<Arc<TargetRuntime>>,
    /// Identifies this I_T nexus to the SCSI layer.
    pub nexus: u64,
    /// The initiator port name `iqn...,i,0x<isid>` (PR transport IDs).
    pub initiator_port: String,
    /// InitiatorName.
    pub initiator_name: String,
    /// Everything negotiated at login (Text requests may update it).
    pub login_params: RefCell<zctarget_protocol::iscsi::params::LoginParams>,
    /// CmdSN window and StatSN (the protocol crate's sequencing rules).
    pub(super) window: Cell<CmdWindow>,
    pub(super) next_ttt: Cell<u32>,
    /// The tasks, one per command slot.
    pub(crate) tasks: Tasks,
    /// The command slots (the shared engine).
    pub(crate) slots: Slots<super::steps::IscsiCmd>,
    /// Our unanswered NOP-In ping: its TTT and when it went out.
    pub(super) nop_outstanding: Cell<Option<(u32, std::time::Instant)>>,
    /// Counters the admin API reads (relaxed atomics, this thread writes).
    pub session_info: Arc<super::session::SessionInfo>,
    /// Buffer admission for write data (never waited for by the reader).
    pub admission: Rc<Admission>,
    /// Set when a command task finds the connection must end (the
    /// initiator did not send data it was asked for); the reader exits.
    pub(super) fatal: Fatal,
    /// The session's kill switch (reinstatement), until the driver takes it.
    killed: RefCell<Option<watch::Receiver<bool>>>,
    /// Its place on the reactor's board (`crate::placement`), from `run`.
    placement: std::cell::OnceCell<Rc<crate::placement::Placement>>,
    /// Per LUN (by `IscsiLun::id`): the state under which this nexus last
    /// found, under the LUN's lock, no unit attention pending for it — the
    /// lock-free READ/WRITE planner's licence (`steps::plan_work`).
    pub(super) confirmed: RefCell<Vec<(u64, zctarget_protocol::scsi::IoState)>>,
}

/// How full feature phase ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Logout completed.
    Logout,
    /// The initiator closed the connection.
    Closed,
    /// Another login reinstated the session.
    Reinstated,
    /// The daemon is shutting down.
    Shutdown,
}

impl Connection {
    /// A connection entering full feature phase.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reactor: Rc<Reactor>,
        out: Rc<Outbound>,
        params: FfpParams,
        target: Option<Arc<TargetRuntime>>,
        nexus: u64,
        login_params: zctarget_protocol::iscsi::params::LoginParams,
        isid: [u8; 6],
        stat_sn: u32,
        exp_cmd_sn: u32,
        session_info: Arc<super::session::SessionInfo>,
    ) -> Rc<Self> {
        let initiator_name = login_params.session.initiator_name.clone();
        let reactor_pool = reactor.shared.pool.clone();
        let policy = match reactor.shared.server.status_policy {
            zctarget_config::StatusPolicy::Strict => StatusPolicy::Strict,
            zctarget_config::StatusPolicy::Eager => StatusPolicy::Eager,
        };
        let initiator_port = super::session::initiator_port(&initiator_name, &isid);
        Rc::new(Self {
            reactor,
            out,
            params,
            target,
            nexus,
            initiator_port,
            initiator_name,
            login_params: RefCell::new(login_params),
            window: Cell::new(CmdWindow::new(exp_cmd_sn, stat_sn, QUEUE_DEPTH)),
            next_ttt: Cell::new(1),
            tasks: Tasks::new(QUEUE_DEPTH as usize),
            slots: Slots::new(QUEUE_DEPTH as usize, policy),
            nop_outstanding: Cell::new(None),
            session_info,
            admission: Admission::new(reactor_pool),
            fatal: Fatal::default(),
            killed: RefCell::new(None),
            placement: std::cell::OnceCell::new(),
            confirmed: RefCell::new(Vec::new()),
        })
    }

    /// Ends the connection from a command task: the reader stops at its
    /// next turn (the error is logged there).
    pub(crate) fn fail(&self, why: String) {
        self.fatal.fail(why);
    }

    /// The status policy configured for the daemon.
    pub fn status_policy(&self) -> StatusPolicy {
        match self.reactor.shared.server.status_policy {
            zctarget_config::StatusPolicy::Strict => StatusPolicy::Strict,
            zctarget_config::StatusPolicy::Eager => StatusPolicy::Eager,
        }
    }

    /// ExpCmdSN to report.
    pub fn exp_cmd_sn(&self) -> u32 {
        self.window.get().exp_cmd_sn()
    }

    /// MaxCmdSN to report.
    pub fn max_cmd_sn(&self) -> u32 {
        self.window.get().max_cmd_sn()
    }

    /// Takes the next StatSN (for a status-bearing PDU).
    pub fn take_stat_sn(&self) -> u32 {
        let mut w = self.window.get();
        let s = w.take_stat_sn();
        self.window.set(w);
        s
    }

    /// The current StatSN without advancing it (R2T, NOP-In pings).
    pub fn peek_stat_sn(&self) -> u32 {
        self.window.get().peek_stat_sn()
    }

    pub(super) fn new_ttt(&self) -> u32 {
        let t = self.next_ttt.get();
        let next = t.wrapping_add(1);
        self.next_ttt
            .set(if next == RESERVED_TAG { 1 } else { next });
        t
    }

    /// Full feature phase until logout, close, reinstatement or shutdown
    /// (the shared connection driver, `crate::driver`).
    pub async fn run(
        self: Rc<Self>,
        reader: &mut PduReader,
        killed: tokio::sync::watch::Receiver<bool>,
        placement: Rc<crate::placement::Placement>,
    ) -> anyhow::Result<Exit> {
        *self.killed.borrow_mut() = Some(killed);
        let _ = self.placement.set(placement);
        let shutdown = self.reactor.shutdown.clone();
        crate::driver::run(&self, reader, shutdown).await
    }

    pub(super) fn idle_ping(&self) -> anyhow::Result<()> {
        if let Some((ttt, sent)) = self.nop_outstanding.get() {
            if sent.elapsed() >= NOP_TIMEOUT {
                anyhow::bail!(
                    "initiator did not answer NOP-In ping {ttt:#x} within {NOP_TIMEOUT:?}"
                );
            }
            return Ok(());
        }
        let ttt = self.new_ttt();
        self.nop_outstanding
            .set(Some((ttt, std::time::Instant::now())));
        let nop = NopIn {
            lun: [0; 8],
            itt: RESERVED_TAG,
            ttt,
            stat_sn: self.peek_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(nop.encode(), &[])
    }

    /// Checks CmdSN of a non-immediate command against the window and
    /// advances ExpCmdSN. `false`: outside the window, silently ignored
    /// (RFC 7143 §3.2.2.1).
    pub(super) fn accept_cmd_sn(&self, immediate: bool, cmd_sn: u32) -> bool {
        let mut w = self.window.get();
        let accepted = w.accept(immediate, cmd_sn);
        self.window.set(w);
        if !accepted {
            let exp = w.exp_cmd_sn();
            tracing::debug!(cmd_sn, exp, "CmdSN outside the window; ignored");
        }
        accepted
    }

    /// Handles one PDU. `Some(exit)` ends full feature phase.
    pub(super) async fn dispatch(
        self: &Rc<Self>,
        reader: &mut PduReader,
        header: &Header,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        let data_len = header.data_len();
        let pdu = match Pdu::parse(&header.bhs) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(error = %e, "unsupported or malformed PDU; rejecting");
                reader.skip_data(data_len).await?;
                self.send_reject(e.reject_reason(), &header.bhs)?;
                return Ok(None);
            }
        };
        match pdu {
            Pdu::ScsiCommand(cmd) => {
                self.on_scsi_command(reader, header, cmd).await?;
            }
            Pdu::DataOut(dout) => self.on_data_out(reader, header, dout).await?,
            Pdu::NopOut(nop) => self.on_nop_out(reader, nop, data).await?,
            Pdu::TextRequest(req) => {
                reader.read_data(data_len, data).await?;
                self.on_text(req, data)?;
            }
            Pdu::LogoutRequest(req) => {
                reader.skip_data(data_len).await?;
                if self.on_logout(req).await? {
                    return Ok(Some(Exit::Logout));
                }
            }
            Pdu::TaskMgmtRequest(req) => {
                reader.skip_data(data_len).await?;
                self.on_task_mgmt(req);
            }
            Pdu::SnackRequest(_) => {
                // ErrorRecoveryLevel 0: SNACK is not supported.
                reader.skip_data(data_len).await?;
                self.send_reject(RejectReason::CommandNotSupported, &header.bhs)?;
            }
            other => {
                tracing::info!(opcode = ?other.opcode(), "PDU not valid from an initiator; rejecting");
                reader.skip_data(data_len).await?;
                self.send_reject(RejectReason::ProtocolError, &header.bhs)?;
            }
        }
        Ok(None)
    }

    pub(super) async fn on_nop_out(
        &self,
        reader: &mut PduReader,
        nop: NopOut,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        reader.read_data(nop.data_segment_len, data).await?;
        if nop.itt == RESERVED_TAG {
            // Answer to our ping (or an unsolicited keepalive): no reply.
            if nop.ttt != RESERVED_TAG
                && self.nop_outstanding.get().map(|(t, _)| t) == Some(nop.ttt)
            {
                self.nop_outstanding.set(None);
            }
            return Ok(());
        }
        if !self.accept_cmd_sn(nop.immediate, nop.cmd_sn) {
            return Ok(());
        }
        let n = data.len().min(self.params.initiator_mrdsl as usize);
        let rsp = NopIn {
            lun: nop.lun,
            itt: nop.itt,
            ttt: RESERVED_TAG,
            data_segment_len: n as u32,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rsp.encode(), &data[..n])
    }

    pub(super) fn on_text(&self, req: TextRequest, data: &[u8]) -> anyhow::Result<()> {
        // Outside the window: silently ignored (RFC 7143 §3.2.2.1).
        if !self.accept_cmd_sn(req.immediate, req.cmd_sn) {
            return Ok(());
        }
        let text = super::text::text_response(self, data, &self.initiator_name);
        let rsp = zctarget_protocol::iscsi::TextResponse {
            final_bit: true,
            itt: req.itt,
            ttt: RESERVED_TAG,
            lun: req.lun,
            data_segment_len: text.len() as u32,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rsp.encode(), &text)
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

/// Full feature phase on the shared driver: the idle timer is the NOP-In
/// ping and its timeout, the kill switch is reinstatement.
impl Frontend for Connection {
    type Reader = PduReader;
    type Exit = Exit;
    type Slots = Slots<super::steps::IscsiCmd>;
    const UNIT: &'static str = "connection";
    const ENDED: &'static str = "session ended";
    const CLOSED: Exit = Exit::Closed;
    const SHUTDOWN: Exit = Exit::Shutdown;
    const KILLED: Exit = Exit::Reinstated;

    fn fatal(&self) -> &Fatal {
        &self.fatal
    }

    fn killed(&self) -> Option<watch::Receiver<bool>> {
        self.killed.borrow_mut().take()
    }

    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        // Wait for input without consuming any (cancel-safe), so that a
        // ping timer or shutdown never tears a PDU in half.
        let wait = match self.nop_outstanding.get() {
            Some((_, sent)) => {
                (sent + NOP_TIMEOUT).saturating_duration_since(std::time::Instant::now())
            }
            None => NOP_INTERVAL,
        };
        Some(tokio::time::Instant::now() + wait)
    }

    fn on_idle(&self) -> anyhow::Result<Option<Exit>> {
        self.idle_ping().map(|()| None)
    }

    /// Another I_T nexus asks to abort tasks (`SessionEvents`).
    async fn event(&self) {
        self.session_info.events.ready().await;
    }

    fn on_event(self: &Rc<Self>) -> anyhow::Result<Option<Exit>> {
        // The requests are taken and the tasks aborted at once (the event
        // stays ready until then); only the wait for what still executes
        // runs on a task, so it does not hold the reader.
        self.abort_asked();
        Ok(None)
    }

    fn read_error(&self, e: ReadError) -> anyhow::Result<Exit> {
        Err(anyhow::Error::new(e).context("reading a PDU"))
    }

    async fn on_pdu(
        self: &Rc<Self>,
        reader: &mut PduReader,
        header: Header,
        data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<Exit>> {
        self.dispatch(reader, &header, data).await
    }

    fn stop(&self) {
        self.abort_tasks(None);
    }

    fn slots(&self) -> Option<&Self::Slots> {
        Some(&self.slots)
    }

    fn placement(&self) -> Option<&crate::placement::Placement> {
        self.placement.get().map(|p| &**p)
    }

    fn release(&self) {
        if let Some(t) = &self.target {
            t.nexus_lost(self.nexus);
        }
    }
}
