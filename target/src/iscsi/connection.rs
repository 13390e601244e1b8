//! One iSCSI connection in full feature phase (RFC 7143 §3.2, §11).
//!
//! The connection task is the only reader of the socket: it parses each PDU
//! and either answers it (NOP, Text, Logout, TMF) or starts a command task.
//! Write data (immediate, unsolicited and solicited Data-Out) is read straight
//! into the command's leased buffers. Everything leaves through the shared
//! [`Outbound`] (zero-copy sender); read data is sent from the same leases it
//! was read into.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use zctarget_backends::SegmentList;
use zctarget_protocol::iscsi::{
    digest, DataIn, DataOut, LogoutRequest, LogoutResponse, LogoutResponseCode, NopIn, NopOut, Pdu,
    R2t, Reject, RejectReason, ScsiCommand, ScsiResponse, TaskMgmtFunction, TaskMgmtRequest,
    TaskMgmtResponse, TaskMgmtResponseCode, TextRequest, BHS_LEN, RESERVED_TAG,
};

use super::reader::{Header, PduReader, ReadError};
use super::target::TargetRuntime;
use super::task::{DataOutState, TaskEntry, Tasks};
use crate::admission::{Admission, HOST_DATA_TIMEOUT};
use crate::command::StatusPolicy;
use crate::outbound::Outbound;
use crate::reactor::Reactor;
use crate::slots::{self, DataSent, Execute, Slots};

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
const LOGOUT_DRAIN: Duration = Duration::from_secs(5);

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

/// Serial number arithmetic (RFC 1982) on 32-bit sequence numbers.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

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
    stat_sn: Cell<u32>,
    exp_cmd_sn: Cell<u32>,
    next_ttt: Cell<u32>,
    /// The tasks, one per command slot.
    pub(crate) tasks: Tasks,
    /// The command slots (the shared engine).
    pub(crate) slots: Slots<ScsiCommand>,
    /// Our unanswered NOP-In ping: its TTT and when it went out.
    nop_outstanding: Cell<Option<(u32, std::time::Instant)>>,
    /// Counters the admin API reads (relaxed atomics, this thread writes).
    pub session_info: Arc<super::session::SessionInfo>,
    /// Buffer admission for write data (never waited for by the reader).
    pub admission: Rc<Admission>,
    /// Set when a command task finds the connection must end (the
    /// initiator did not send data it was asked for); the reader exits.
    fatal: RefCell<Option<String>>,
    fatal_notify: Notify,
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
        let initiator_port = format!(
            "{},i,0x{}",
            initiator_name,
            isid.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Rc::new(Self {
            reactor,
            out,
            params,
            target,
            nexus,
            initiator_port,
            initiator_name,
            login_params: RefCell::new(login_params),
            stat_sn: Cell::new(stat_sn),
            exp_cmd_sn: Cell::new(exp_cmd_sn),
            next_ttt: Cell::new(1),
            tasks: Tasks::new(QUEUE_DEPTH as usize),
            slots: Slots::new(QUEUE_DEPTH as usize, policy),
            nop_outstanding: Cell::new(None),
            session_info,
            admission: Admission::new(reactor_pool),
            fatal: RefCell::new(None),
            fatal_notify: Notify::new(),
        })
    }

    /// Ends the connection from a command task: the reader stops at its
    /// next turn (the error is logged there).
    pub(crate) fn fail(&self, why: String) {
        self.fatal.borrow_mut().get_or_insert(why);
        self.fatal_notify.notify_one();
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
        self.exp_cmd_sn.get()
    }

    /// MaxCmdSN to report.
    pub fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.get().wrapping_add(QUEUE_DEPTH - 1)
    }

    /// Takes the next StatSN (for a status-bearing PDU).
    pub fn take_stat_sn(&self) -> u32 {
        let s = self.stat_sn.get();
        self.stat_sn.set(s.wrapping_add(1));
        s
    }

    /// The current StatSN without advancing it (R2T, NOP-In pings).
    pub fn peek_stat_sn(&self) -> u32 {
        self.stat_sn.get()
    }

    fn new_ttt(&self) -> u32 {
        let t = self.next_ttt.get();
        let next = t.wrapping_add(1);
        self.next_ttt
            .set(if next == RESERVED_TAG { 1 } else { next });
        t
    }

    /// Appends one BHS (with its header digest) to a message.
    pub(crate) fn push_bhs(
        &self,
        msg: &mut crate::zerocopy::Message,
        bhs: &[u8; BHS_LEN],
    ) -> anyhow::Result<()> {
        msg.push_header(bhs)?;
        if self.params.header_digest {
            msg.push_header(&digest::to_wire(digest::header_digest(bhs, &[])))?;
        }
        Ok(())
    }

    /// Appends padding and, when data digests are on, `crc` (the digest of
    /// the data segment, padding included) after `len` bytes of data.
    fn push_trailer(
        &self,
        msg: &mut crate::zerocopy::Message,
        len: usize,
        crc: u32,
    ) -> anyhow::Result<()> {
        msg.push_header(digest::padding(len))?;
        if self.params.data_digest && len > 0 {
            msg.push_header(&digest::to_wire(crc))?;
        }
        Ok(())
    }

    /// Sends a PDU whose data segment (if any) is control data.
    pub fn send_control(&self, bhs: [u8; BHS_LEN], data: &[u8]) -> anyhow::Result<()> {
        let mut msg = self.out.message(SegmentList::new());
        self.push_bhs(&mut msg, &bhs)?;
        if !data.is_empty() {
            msg.push_header(data)?;
            let crc = if self.params.data_digest {
                digest::data_digest(data)
            } else {
                0
            };
            self.push_trailer(&mut msg, data.len(), crc)?;
        }
        self.out.send(msg);
        Ok(())
    }

    /// Sends a SCSI Response. `sense` (fixed or descriptor format) goes in
    /// the data segment with its 2-byte length.
    pub fn send_scsi_response(
        &self,
        itt: u32,
        status: u8,
        sense: &[u8],
        residual: Residual,
    ) -> anyhow::Result<()> {
        let mut data = [0u8; 2 + 252];
        let n = sense.len().min(252);
        data[..2].copy_from_slice(&(n as u16).to_be_bytes());
        data[2..2 + n].copy_from_slice(&sense[..n]);
        let data_len = if n > 0 { 2 + n } else { 0 };
        let rsp = ScsiResponse {
            residual_overflow: residual.overflow,
            residual_underflow: residual.underflow,
            residual_count: residual.count,
            response: zctarget_protocol::iscsi::response::COMMAND_COMPLETED,
            status,
            data_segment_len: data_len as u32,
            itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rsp.encode(), &data[..data_len])
    }

    /// Sends `len` bytes of `payload` as Data-In PDUs (each within the
    /// initiator's MaxRecvDataSegmentLength). With `status`, the last Data-In
    /// carries it (S bit), and nobody waits for the pages' release (they
    /// return to the pool when it comes); without, returns the future of the
    /// release.
    pub fn send_data_in(
        &self,
        itt: u32,
        lun: [u8; 8],
        payload: SegmentList,
        len: usize,
        status: Option<(u8, Residual)>,
    ) -> anyhow::Result<Option<crate::outbound::Released>> {
        let mrdsl = self.params.initiator_mrdsl.max(512) as usize;
        let mut msg = self.out.message(payload);
        let mut offset = 0usize;
        let mut data_sn = 0u32;
        loop {
            let n = (len - offset).min(mrdsl);
            let last = offset + n >= len;
            let mut din = DataIn {
                final_bit: last,
                lun,
                itt,
                ttt: RESERVED_TAG,
                exp_cmd_sn: self.exp_cmd_sn(),
                max_cmd_sn: self.max_cmd_sn(),
                data_sn,
                buffer_offset: offset as u32,
                data_segment_len: n as u32,
                ..Default::default()
            };
            if last {
                if let Some((st, residual)) = status {
                    din.status_present = true;
                    din.status = st;
                    din.stat_sn = self.take_stat_sn();
                    din.residual_overflow = residual.overflow;
                    din.residual_underflow = residual.underflow;
                    din.residual_count = residual.count;
                }
            }
            self.push_bhs(&mut msg, &din.encode())?;
            msg.push_payload(offset, n)?;
            let crc = if self.params.data_digest {
                super::reader::payload_digest(msg.payload(), offset, n)
            } else {
                0
            };
            self.push_trailer(&mut msg, n, crc)?;
            offset += n;
            data_sn += 1;
            if last {
                break;
            }
        }
        if status.is_some() {
            self.out.send(msg);
            return Ok(None);
        }
        Ok(Some(self.out.send_tracked(msg)))
    }

    /// Sends an R2T for `[offset, offset + len)` of command `itt`.
    fn send_r2t(
        &self,
        itt: u32,
        lun: [u8; 8],
        ttt: u32,
        r2t_sn: u32,
        offset: u32,
        len: u32,
    ) -> anyhow::Result<()> {
        let r2t = R2t {
            lun,
            itt,
            ttt,
            stat_sn: self.peek_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            r2t_sn,
            buffer_offset: offset,
            desired_data_transfer_len: len,
            ..Default::default()
        };
        self.send_control(r2t.encode(), &[])
    }

    /// Sends a Reject carrying the offending header.
    pub(crate) fn send_reject(
        &self,
        reason: RejectReason,
        bad: &[u8; BHS_LEN],
    ) -> anyhow::Result<()> {
        self.reactor
            .shared
            .counters
            .protocol_error(crate::daemon::Protocol::Iscsi, reject_kind(reason));
        let rej = Reject {
            reason,
            data_segment_len: BHS_LEN as u32,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rej.encode(), bad)
    }

    /// Collects the write data of a command: immediate data is already in
    /// `state`; unsolicited Data-Out up to FirstBurstLength when InitialR2T
    /// is off; then — once the command's buffers are leased (NeedBuffer,
    /// waited for here, never in the reader) — R2Ts of up to MaxBurstLength
    /// until everything is in. Returns the filled payload, or `None` if the
    /// task was aborted, the data phase broke, or the command was refused
    /// for lack of buffers (`state.busy`).
    pub(crate) async fn collect_write_data(
        &self,
        itt: u32,
        lun: [u8; 8],
        entry: &TaskEntry,
        state: &DataOutState,
    ) -> Option<SegmentList> {
        let expected = state.expected.get();
        let unsolicited_end = if self.params.initial_r2t {
            state.received.get()
        } else {
            self.params.first_burst.min(expected)
        };
        // Wait for the unsolicited burst (the initiator sets F on its last
        // Data-Out).
        if !self.wait_data(itt, entry, state, unsolicited_end).await || state.busy.get() {
            return None;
        }
        let have = state.payload.borrow().as_ref().map_or(0, |p| p.len());
        if have < expected as usize && state.received.get() < expected {
            // NeedBuffer: lease (within the connection's quota) what the
            // command still needs before asking for it; the reader keeps
            // reading meanwhile. A partial lease (immediate data) is bounded
            // by the pool's reserve, not by the quota.
            state.grant.borrow_mut().take();
            let ended = async {
                while !stopped(entry, state) {
                    state.burst_done.notified().await;
                }
            };
            let leased = tokio::select! {
                r = self.admission.lease_solicited(expected as usize - have) => r,
                () = ended => return None,
            };
            match leased {
                Ok((list, grant)) => {
                    let mut payload = state.payload.borrow_mut();
                    let whole = payload.get_or_insert_with(SegmentList::new);
                    for seg in list.into_segments() {
                        whole.push(seg);
                    }
                    *state.grant.borrow_mut() = Some(grant);
                }
                Err(e) => {
                    tracing::warn!(error = %e, itt, "no buffers for write data");
                    return None;
                }
            }
        }
        let mut r2t_sn = 0;
        while state.received.get() < expected && !stopped(entry, state) {
            let offset = state.received.get();
            let len = (expected - offset).min(self.params.max_burst);
            let ttt = self.new_ttt();
            state.ttt.set(ttt);
            state.next_data_sn.set(0);
            if self.send_r2t(itt, lun, ttt, r2t_sn, offset, len).is_err() {
                return None;
            }
            r2t_sn += 1;
            if !self.wait_data(itt, entry, state, offset + len).await {
                return None;
            }
        }
        if stopped(entry, state) {
            return None;
        }
        // Everything is in: the quota is free for the next command.
        state.grant.borrow_mut().take();
        state.payload.borrow_mut().take()
    }

    /// Waits until `until` bytes of the command's data are in. `false`: the
    /// task was aborted or the data phase broke, or the initiator sent
    /// nothing for [`HOST_DATA_TIMEOUT`] (then the connection ends, which
    /// returns every buffer it held).
    async fn wait_data(
        &self,
        itt: u32,
        entry: &TaskEntry,
        state: &DataOutState,
        until: u32,
    ) -> bool {
        while state.received.get() < until && !stopped(entry, state) {
            let burst = state.burst_done.notified();
            if tokio::time::timeout(HOST_DATA_TIMEOUT, burst)
                .await
                .is_err()
            {
                self.fail(format!(
                    "initiator sent no data for ITT {itt:#x} within {HOST_DATA_TIMEOUT:?}"
                ));
                return false;
            }
        }
        !stopped(entry, state)
    }

    /// Full feature phase until logout, close, reinstatement or shutdown.
    pub async fn run(
        self: Rc<Self>,
        reader: &mut PduReader,
        mut killed: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Exit> {
        let mut shutdown = self.reactor.shutdown.clone();
        let mut data = Vec::with_capacity(8192);
        loop {
            if reader.buffered() == 0 {
                // Wait for input without consuming any (cancel-safe), so
                // that a ping timer or shutdown never tears a PDU in half.
                let wait = match self.nop_outstanding.get() {
                    Some((_, sent)) => {
                        (sent + NOP_TIMEOUT).saturating_duration_since(std::time::Instant::now())
                    }
                    None => NOP_INTERVAL,
                };
                tokio::select! {
                    r = reader.readable() => r?,
                    _ = tokio::time::sleep(wait) => {
                        self.idle_ping()?;
                        continue;
                    }
                    _ = killed.wait_for(|k| *k) => return Ok(Exit::Reinstated),
                    _ = shutdown.wait_for(|s| *s) => return Ok(Exit::Shutdown),
                    () = self.fatal_notify.notified() => {}
                }
            } else if *killed.borrow() {
                // PDUs already received are parsed without arming timers;
                // the exits are still checked between them.
                return Ok(Exit::Reinstated);
            } else if *shutdown.borrow() {
                return Ok(Exit::Shutdown);
            }
            if let Some(why) = self.fatal.borrow_mut().take() {
                anyhow::bail!(why);
            }
            let stall = crate::listener::PDU_STALL_TIMEOUT;
            let Some(header) = crate::sockio::stall_bounded(reader.read_header(), stall).await
            else {
                anyhow::bail!("PDU header incomplete after {stall:?}: dropping the connection");
            };
            let header = match header {
                Ok(h) => h,
                Err(ReadError::Closed) => return Ok(Exit::Closed),
                // Stale readiness: back to waiting, timers included.
                Err(ReadError::NotReady) => continue,
                Err(e) => return Err(e).context("reading a PDU"),
            };
            match self.dispatch(reader, &header, &mut data).await? {
                Some(exit) => return Ok(exit),
                None => continue,
            }
        }
    }

    fn idle_ping(&self) -> anyhow::Result<()> {
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
    fn accept_cmd_sn(&self, immediate: bool, cmd_sn: u32) -> bool {
        let exp = self.exp_cmd_sn.get();
        if immediate {
            // Immediate commands carry the current ExpCmdSN and do not
            // advance it.
            return true;
        }
        if sn_lt(cmd_sn, exp) || sn_lt(self.max_cmd_sn(), cmd_sn) {
            tracing::debug!(cmd_sn, exp, "CmdSN outside the window; ignored");
            return false;
        }
        self.exp_cmd_sn.set(cmd_sn.wrapping_add(1));
        true
    }

    /// Handles one PDU. `Some(exit)` ends full feature phase.
    async fn dispatch(
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
                self.on_task_mgmt(req)?;
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

    async fn on_nop_out(
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

    fn on_text(&self, req: TextRequest, data: &[u8]) -> anyhow::Result<()> {
        let _ = self.accept_cmd_sn(req.immediate, req.cmd_sn);
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

    /// Logout (RFC 7143 §11.14, §11.15). Closing the session or this
    /// connection terminates the connection's tasks (ERL 0): they are
    /// aborted — a write waiting for Data-Out ends at once instead of
    /// holding the reader — and the response goes out once the running
    /// ones have let go of their buffers (bounded). `Ok(true)`: the
    /// connection closes.
    async fn on_logout(&self, req: LogoutRequest) -> anyhow::Result<bool> {
        use zctarget_protocol::iscsi::LogoutReason;
        let _ = self.accept_cmd_sn(req.immediate, req.cmd_sn);
        let response = match req.reason {
            LogoutReason::CloseSession => LogoutResponseCode::ClosedSuccessfully,
            LogoutReason::CloseConnection if req.cid == self.params.cid => {
                LogoutResponseCode::ClosedSuccessfully
            }
            // MaxConnections=1: no other connection of this session exists.
            LogoutReason::CloseConnection => LogoutResponseCode::CidNotFound,
            // ErrorRecoveryLevel 0: no connection recovery.
            _ => LogoutResponseCode::RecoveryNotSupported,
        };
        let closes = response == LogoutResponseCode::ClosedSuccessfully;
        if closes {
            for t in self.tasks.active() {
                t.abort();
            }
            self.slots.drained(LOGOUT_DRAIN).await;
        }
        let rsp = LogoutResponse {
            response,
            itt: req.itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            time2wait: 0,
            time2retain: 0,
            ..Default::default()
        };
        self.send_control(rsp.encode(), &[])?;
        Ok(closes)
    }

    fn on_task_mgmt(&self, req: TaskMgmtRequest) -> anyhow::Result<()> {
        let _ = self.accept_cmd_sn(req.immediate, req.cmd_sn);
        let lun = u64::from_be_bytes(req.lun);
        let mut cold_reset_target = None;
        let response = match req.function {
            TaskMgmtFunction::AbortTask => {
                match self.tasks.find(req.referenced_task_tag) {
                    Some(t) => {
                        t.abort();
                        TaskMgmtResponseCode::FunctionComplete
                    }
                    // Already completed (or never seen): nothing left to abort.
                    None => TaskMgmtResponseCode::FunctionComplete,
                }
            }
            TaskMgmtFunction::AbortTaskSet | TaskMgmtFunction::ClearTaskSet => {
                for t in self.tasks.active().filter(|t| t.lun.get() == lun) {
                    t.abort();
                }
                TaskMgmtResponseCode::FunctionComplete
            }
            TaskMgmtFunction::LogicalUnitReset => match self.target.as_ref() {
                Some(target) if target.lun(lun).is_some() => {
                    for t in self.tasks.active().filter(|t| t.lun.get() == lun) {
                        t.abort();
                    }
                    if let Some(l) = target.lun(lun) {
                        l.reset(zctarget_protocol::scsi::ResetKind::LogicalUnit, self.nexus);
                    }
                    TaskMgmtResponseCode::FunctionComplete
                }
                _ => TaskMgmtResponseCode::LunDoesNotExist,
            },
            TaskMgmtFunction::TargetWarmReset | TaskMgmtFunction::TargetColdReset => {
                let cold = req.function == TaskMgmtFunction::TargetColdReset;
                for t in self.tasks.active() {
                    t.abort();
                }
                if let Some(target) = self.target.as_ref() {
                    let kind = if cold {
                        zctarget_protocol::scsi::ResetKind::TargetCold
                    } else {
                        zctarget_protocol::scsi::ResetKind::TargetWarm
                    };
                    target.reset_all(kind, self.nexus);
                    if cold {
                        // RFC 7143 §11.5.1: a cold reset also ends every
                        // session of the target, this one included, once
                        // the response is queued.
                        cold_reset_target = Some(target.iqn.clone());
                    }
                }
                TaskMgmtResponseCode::FunctionComplete
            }
            _ => TaskMgmtResponseCode::FunctionNotSupported,
        };
        let rsp = TaskMgmtResponse {
            response,
            itt: req.itt,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn(),
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        };
        self.send_control(rsp.encode(), &[])?;
        if let Some(iqn) = cold_reset_target {
            self.reactor.shared.iscsi.sessions.kill_target(&iqn);
        }
        Ok(())
    }

    async fn on_data_out(
        &self,
        reader: &mut PduReader,
        header: &Header,
        dout: DataOut,
    ) -> anyhow::Result<()> {
        let entry = self.tasks.find(dout.itt);
        let state = entry.and_then(|e| e.data_out());
        let Some(state) = state else {
            // RFC 7143 §11.7: Data-Out for an unknown ITT is rejected; the
            // data is discarded.
            tracing::info!(itt = dout.itt, "Data-Out for an unknown task; rejecting");
            reader.skip_data(dout.data_segment_len).await?;
            return self.send_reject(RejectReason::InvalidPduField, &header.bhs);
        };
        let end = dout.buffer_offset.checked_add(dout.data_segment_len);
        let Some(end) = end.filter(|&e| e <= state.expected.get()) else {
            reader.skip_data(dout.data_segment_len).await?;
            tracing::info!(itt = dout.itt, "Data-Out beyond the expected length");
            return self.send_reject(RejectReason::ProtocolError, &header.bhs);
        };
        if dout.buffer_offset != state.received.get() {
            // Out of order (DataPDUInOrder=Yes).
            reader.skip_data(dout.data_segment_len).await?;
            tracing::info!(
                itt = dout.itt,
                offset = dout.buffer_offset,
                "Data-Out outside the expected range"
            );
            return self.send_reject(RejectReason::ProtocolError, &header.bhs);
        }
        // RFC 7143 §11.7.4: the TTT must be the outstanding R2T's
        // (0xffffffff for unsolicited data); §11.7.5: a DataSN gap or
        // reordering is a protocol error. Either way the PDU is rejected and
        // the command ends with CHECK CONDITION; the session stays up.
        let broken = if dout.ttt != state.ttt.get() {
            Some((RejectReason::InvalidPduField, "wrong Target Transfer Tag"))
        } else if dout.data_sn != state.next_data_sn.get() {
            Some((RejectReason::ProtocolError, "DataSN out of sequence"))
        } else {
            None
        };
        if let Some((reason, what)) = broken {
            reader.skip_data(dout.data_segment_len).await?;
            tracing::info!(
                itt = dout.itt,
                ttt = dout.ttt,
                data_sn = dout.data_sn,
                "Data-Out rejected: {what}"
            );
            state.data_error.set(true);
            state.burst_done.notify_one();
            return self.send_reject(reason, &header.bhs);
        }
        if state.busy.get() {
            // Refused for lack of buffers: the unsolicited data is drained.
            reader.skip_data(dout.data_segment_len).await?;
        } else {
            let taken = state.payload.borrow_mut().take();
            let Some(mut payload) = taken else {
                // Data nobody asked for (no R2T outstanding yet).
                reader.skip_data(dout.data_segment_len).await?;
                return self.send_reject(RejectReason::InvalidPduField, &header.bhs);
            };
            let r = reader
                .read_data_into(
                    dout.data_segment_len,
                    &mut payload,
                    dout.buffer_offset as usize,
                )
                .await;
            *state.payload.borrow_mut() = Some(payload);
            match r {
                Ok(()) => {}
                Err(ReadError::DataDigest) => {
                    // ERL 0: a data digest error on Data-Out is fatal for the
                    // command; reject it and abort the task.
                    self.send_reject(RejectReason::DataDigestError, &header.bhs)?;
                    if let Some(e) = entry {
                        e.abort();
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        state.next_data_sn.set(dout.data_sn.wrapping_add(1));
        state.received.set(end);
        if dout.final_bit || end >= state.expected.get() {
            state.burst_done.notify_one();
        }
        Ok(())
    }

    async fn on_scsi_command(
        self: &Rc<Self>,
        reader: &mut PduReader,
        header: &Header,
        cmd: ScsiCommand,
    ) -> anyhow::Result<()> {
        let data_len = cmd.data_segment_len;
        if !self.accept_cmd_sn(cmd.immediate, cmd.cmd_sn) {
            reader.skip_data(data_len).await?;
            return Ok(());
        }
        if self.tasks.find(cmd.itt).is_some() {
            reader.skip_data(data_len).await?;
            return self.send_reject(RejectReason::TaskInProgress, &header.bhs);
        }
        if self.slots.busy() == self.slots.len() {
            // More commands than the CmdSN window allows cannot pass
            // accept_cmd_sn; immediate ones can: the task set is full.
            reader.skip_data(data_len).await?;
            let st = zctarget_protocol::scsi::Status::TaskSetFull.code();
            let residual = Residual::of(cmd.expected_data_transfer_len, 0);
            return self.send_scsi_response(cmd.itt, st, &[], residual);
        }
        let immediate_ok = self.params.immediate_data || data_len == 0;
        if !immediate_ok
            || data_len > cmd.expected_data_transfer_len
            || (data_len > 0 && !cmd.write)
        {
            reader.skip_data(data_len).await?;
            return self.send_reject(RejectReason::ProtocolError, &header.bhs);
        }
        let lun = u64::from_be_bytes(cmd.lun);
        let wants_data = cmd.write && cmd.expected_data_transfer_len > 0;
        let mut data_out = None;
        if wants_data {
            let edtl = cmd.expected_data_transfer_len;
            // Nor more than the pool could ever grant at once.
            let max = super::exec::MAX_TRANSFER_BYTES
                .min(u32::try_from(self.admission.max_solicited()).unwrap_or(u32::MAX));
            if edtl > max {
                reader.skip_data(data_len).await?;
                return super::exec::reject_too_large(self, &cmd);
            }
            // Data the initiator sends unasked (immediate, unsolicited) is
            // already on the wire: buffers now, or the data is drained and
            // the command answered TASK SET FULL. Data asked for by R2T is
            // leased by the command's task (NeedBuffer), never here.
            let unasked = data_len > 0 || !self.params.initial_r2t;
            let mut payload = None;
            let mut grant = None;
            let mut busy = false;
            if unasked {
                let whole = self
                    .admission
                    .try_now(edtl as usize, data_len == edtl)
                    .unwrap_or(None);
                // Else only the immediate data, from the pool's reserve; the
                // task leases the rest before its R2Ts (NeedBuffer).
                let part = || {
                    let rest = (edtl - data_len) as usize;
                    let aligned = data_len as usize % zctarget_backends::POOL_ALIGN == 0;
                    if data_len == 0 || !aligned || rest > self.admission.max_solicited() {
                        return None;
                    }
                    self.admission
                        .try_partial(data_len as usize)
                        .unwrap_or(None)
                };
                match whole.or_else(part) {
                    Some((p, g)) => {
                        payload = Some(p);
                        grant = Some(g);
                    }
                    None => busy = true,
                }
            }
            match payload.as_mut() {
                Some(p) if data_len > 0 => reader.read_data_into(data_len, p, 0).await?,
                _ => reader.skip_data(data_len).await?,
            }
            if busy {
                self.reactor.shared.pool.note_backpressure();
                tracing::debug!(
                    itt = cmd.itt,
                    edtl,
                    "no buffers for unsolicited data: TASK SET FULL"
                );
            }
            data_out = Some((payload, grant, busy, data_len, edtl));
        }
        self.session_info.in_flight.fetch_add(1, Ordering::Relaxed);
        self.session_info.commands.fetch_add(1, Ordering::Relaxed);
        let itt = cmd.itt;
        match self.slots.start(cmd) {
            Ok((idx, spawn)) => {
                // Set up before the worker can run (no await until then).
                let task = self.tasks.slot(idx);
                task.begin(itt, lun);
                if let Some((payload, grant, busy, received, expected)) = data_out {
                    task.expect_data(payload, grant, busy, received, expected);
                }
                if spawn {
                    let workers = &self.reactor.shared.counters.command_workers;
                    workers[0].fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_local(worker(Rc::clone(self), idx));
                }
            }
            // Checked above; the connection is closing.
            Err(_) => {
                self.session_info.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// A slot's worker: runs the slot's commands until the connection closes.
async fn worker(conn: Rc<Connection>, idx: u16) {
    while let Some(cmd) = conn.slots.next(idx).await {
        slots::drive(&conn, &conn.slots, idx, cmd, false, false).await;
        conn.tasks.slot(idx).end();
        conn.session_info.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// iSCSI commands on the shared engine. The SCSI plans' own steps — Data-Out
/// collection, the block operation, Data-In and status — are still carried
/// out together by `exec::run_command` in the execute step; the slot's
/// lifecycle sees a command without host data whose status is sent there.
impl Execute for Rc<Connection> {
    type Cmd = ScsiCommand;

    async fn lease(&self, _idx: u16, _cmd: &mut ScsiCommand) -> bool {
        true
    }

    async fn receive(&self, _idx: u16, _cmd: &mut ScsiCommand) -> bool {
        true
    }

    async fn execute(&self, idx: u16, cmd: &mut ScsiCommand) {
        let entry = self.tasks.slot(idx);
        let itt = cmd.itt;
        if let Err(e) = super::exec::run_command(self, *cmd, entry).await {
            tracing::warn!(error = %format!("{e:#}"), itt, op = cmd.cdb[0], "command failed");
            // The initiator must not wait forever: the failure ends the
            // task with HARDWARE ERROR / INTERNAL TARGET FAILURE (errors
            // arise before the status is sent).
            if !entry.aborted.get() {
                let sense = zctarget_protocol::scsi::sense::INTERNAL_TARGET_FAILURE;
                let _ = self.send_scsi_response(
                    itt,
                    super::exec::CHECK_CONDITION,
                    &sense.fixed_format(),
                    Residual::default(),
                );
            }
        }
    }

    fn send_data(&self, _idx: u16, _cmd: &mut ScsiCommand) -> DataSent {
        DataSent::Nothing
    }

    fn send_status(&self, _idx: u16, _cmd: &mut ScsiCommand) {}
}

/// Whether a command's data phase is over early: aborted, or broken.
fn stopped(entry: &TaskEntry, state: &DataOutState) -> bool {
    entry.aborted.get() || state.data_error.get()
}

/// Residual fields of a SCSI Response / final Data-In.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residual {
    /// More data was expected than transferred.
    pub underflow: bool,
    /// More data would have been transferred.
    pub overflow: bool,
    /// The residual count.
    pub count: u32,
}

impl Residual {
    /// Residual for a transfer of `actual` bytes against `expected`.
    pub fn of(expected: u32, actual: u32) -> Self {
        use std::cmp::Ordering::*;
        match actual.cmp(&expected) {
            Equal => Self::default(),
            Less => Self {
                underflow: true,
                overflow: false,
                count: expected - actual,
            },
            Greater => Self {
                underflow: false,
                overflow: true,
                count: actual - expected,
            },
        }
    }
}

/// Metric label for a Reject reason.
fn reject_kind(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::DataDigestError => "data_digest",
        RejectReason::CommandNotSupported => "command_not_supported",
        RejectReason::InvalidPduField => "invalid_pdu_field",
        RejectReason::TaskInProgress => "task_in_progress",
        RejectReason::ProtocolError => "protocol_error",
        _ => "reject_other",
    }
}
