//! The connection driver both frontends run: one iSCSI connection in full
//! feature phase, one NVMe/TCP queue after its ICReq.
//!
//! A frontend implements [`Frontend`] — its PDU reader, what one PDU does,
//! its idle timer (iSCSI NOP-In ping, NVMe keep-alive), its other wake-ups
//! (session reinstated or controller gone, asynchronous events) and the
//! protocol's part of teardown — and [`run`] owns the rest:
//!
//! - telling placement, before each wait, how many commands ran
//!   (`Placement::sample`);
//! - waiting, cancel-safe, for readability against the idle timer, the
//!   establishment deadline, shutdown, the kill switch, events and a
//!   command's fatal error, without consuming input (a timer never tears a
//!   PDU in half);
//! - PDUs already in the read-ahead window are parsed without arming any
//!   timer or `select!` (the exits are still checked between them), at
//!   most [`RECV_BUDGET`] in a row before the connection gives way to the
//!   rest of its reactor;
//! - a header that is not complete on its first poll is bounded by
//!   [`PDU_STALL_TIMEOUT`] (or by the establishment deadline before the
//!   connection is established);
//! - [`finish`]: the ordered teardown — the protocol stops its commands,
//!   the slots close and drain, the protocol releases what it holds, the
//!   reader goes, the send side drains and waits for zero-copy release,
//!   and the end is logged with the pool's state.

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::listener::PDU_STALL_TIMEOUT;
use crate::outbound::Outbound;

/// PDUs parsed from the read-ahead window in a row before the driver
/// yields to its reactor.
///
/// A host that coalesces its sends (Linux's NVMe/TCP host sets `MSG_MORE`
/// while more requests are queued; a libiscsi client under `TCP_CORK`)
/// delivers a whole queue depth of commands in one segment. Parsed in one
/// go, every command would be started before any ran, and all their
/// responses would leave in one `sendmsg` at the end: host and target then
/// take turns, each idle while the other works through the whole batch
/// (4 KiB reads at QD 32 from such a host ran at about 60 % of the rate of
/// a host that sends one command per segment). Yielding every few PDUs lets
/// the commands parsed so far run and the writer send their responses
/// while the rest of the burst is parsed, so host and target overlap.
/// Linux's NVMe/TCP target (`drivers/nvme/target/tcp.c`) alternates
/// receive and send budgets of 8 PDUs for the same reason; 8 and 16
/// measured alike here (docs/BENCHMARKS.md, session 13).
pub const RECV_BUDGET: usize = 8;

/// How long a closing connection waits for its commands to drain, then for
/// zero-copy notifications, before resetting.
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a failed header read means to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFailure {
    /// The peer closed cleanly between PDUs.
    Closed,
    /// The readiness was stale: back to waiting, timers included.
    NotReady,
    /// Anything else: the frontend decides (`Frontend::read_error`).
    Other,
}

/// A protocol's PDU reader, as the driver uses it.
pub trait PduRead {
    /// A parsed header.
    type Header;
    /// Why reading a header failed.
    type Error;
    /// Bytes received and not yet parsed.
    fn buffered(&self) -> usize;
    /// Waits until a PDU can be read (at once when bytes are buffered);
    /// consumes nothing.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>>;
    /// Reads the next header.
    fn read_header(&mut self) -> impl Future<Output = Result<Self::Header, Self::Error>>;
    /// Classifies a header read error.
    fn failure(e: &Self::Error) -> HeaderFailure;
}

/// A command's request to end the connection (the host did not send data
/// it was asked for): the driver stops at its next turn and returns it as
/// the error.
#[derive(Default)]
pub struct Fatal {
    why: std::cell::RefCell<Option<String>>,
    notify: tokio::sync::Notify,
}

impl Fatal {
    /// Ends the connection with `why` (the first reason wins).
    pub fn fail(&self, why: String) {
        self.why.borrow_mut().get_or_insert(why);
        self.notify.notify_one();
    }

    /// Ends the connection with `why` (the last reason wins).
    pub fn replace(&self, why: String) {
        *self.why.borrow_mut() = Some(why);
        self.notify.notify_one();
    }

    fn take(&self) -> Option<String> {
        self.why.borrow_mut().take()
    }
}

/// The command slots' teardown view (`crate::slots::Slots` of any command).
pub trait SlotTable {
    /// No new commands; idle workers end.
    fn close(&self);
    /// Waits up to `limit` until no slot holds a command.
    fn drained(&self, limit: Duration) -> impl Future<Output = bool>;
    /// Slots holding a command.
    fn busy(&self) -> usize;
    /// Commands started so far.
    fn started(&self) -> u64;
    /// Lifecycle transitions refused.
    fn bad_transitions(&self) -> u64;
}

impl<C> SlotTable for crate::slots::Slots<C> {
    fn close(&self) {
        crate::slots::Slots::close(self)
    }
    fn drained(&self, limit: Duration) -> impl Future<Output = bool> {
        crate::slots::Slots::drained(self, limit)
    }
    fn busy(&self) -> usize {
        crate::slots::Slots::busy(self)
    }
    fn started(&self) -> u64 {
        crate::slots::Slots::started(self)
    }
    fn bad_transitions(&self) -> u64 {
        crate::slots::Slots::bad_transitions(self)
    }
}

/// What a frontend gives the driver.
pub trait Frontend {
    /// Its PDU reader.
    type Reader: PduRead;
    /// How the connection ended.
    type Exit: std::fmt::Debug;
    /// Its slots (teardown).
    type Slots: SlotTable;
    /// Names the connection in messages ("connection", "queue").
    const UNIT: &'static str;
    /// The message logged when it ended ("session ended", "queue ended":
    /// tests and scripts look for these).
    const ENDED: &'static str;
    /// The peer closed the connection between PDUs.
    const CLOSED: Self::Exit;
    /// The daemon is shutting down.
    const SHUTDOWN: Self::Exit;
    /// The kill switch (`Frontend::killed`) was thrown.
    const KILLED: Self::Exit;

    /// Its fatal-error slot.
    fn fatal(&self) -> &Fatal;
    /// The kill switch (session reinstated, controller gone), asked for
    /// before every wait until it exists. A sender that goes away without
    /// throwing it kills nothing.
    fn killed(&self) -> Option<watch::Receiver<bool>>;
    /// Whether PDUs already buffered are parsed without waiting (no timer,
    /// no events checked between them).
    fn parse_buffered(&self) -> bool {
        true
    }
    /// When the idle timer fires (None: not armed), computed at each wait.
    fn idle_deadline(&self) -> Option<Instant>;
    /// The idle timer fired. `Some`: the connection ends.
    fn on_idle(&self) -> anyhow::Result<Option<Self::Exit>>;
    /// Until the connection is established, the deadline that bounds its
    /// waits and PDUs instead of the stall bound.
    fn establish_deadline(&self) -> Option<Instant> {
        None
    }
    /// The error when `establish_deadline` passes.
    fn not_established(&self) -> anyhow::Error {
        anyhow::anyhow!("{} not established in time", Self::UNIT)
    }
    /// Resolves when the frontend has events to handle (`on_event`).
    fn event(&self) -> impl Future<Output = ()> {
        std::future::pending()
    }
    /// Handles the events. `Some`: the connection ends.
    fn on_event(self: &Rc<Self>) -> anyhow::Result<Option<Self::Exit>> {
        Ok(None)
    }
    /// A header read failed other than by a close or stale readiness.
    fn read_error(&self, e: <Self::Reader as PduRead>::Error) -> anyhow::Result<Self::Exit>;
    /// Handles one PDU. `Some`: the connection ends.
    fn on_pdu(
        self: &Rc<Self>,
        reader: &mut Self::Reader,
        header: <Self::Reader as PduRead>::Header,
        data: &mut Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Exit>>>;

    /// Teardown, first step: commands in flight are told to stop.
    fn stop(&self) {}
    /// Its command slots, if it has any.
    fn slots(&self) -> Option<&Self::Slots>;
    /// Its place on its reactor's board (`crate::placement`), told how
    /// many commands the slots started each time the driver waits.
    fn placement(&self) -> Option<&crate::placement::Placement> {
        None
    }
    /// Teardown, after the slots drained: the frontend lets go of what it
    /// holds (controller, nexus).
    fn release(&self) {}
}

/// Runs a connection until it ends: logout, close, kill, shutdown, an
/// idle or establishment timeout, a stalled PDU or an error.
pub async fn run<F: Frontend>(
    f: &Rc<F>,
    reader: &mut F::Reader,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<F::Exit> {
    let mut data = Vec::with_capacity(8192);
    let mut killed: Option<watch::Receiver<bool>> = None;
    // PDUs parsed from the buffer since the driver last waited or yielded.
    let mut in_a_row = 0usize;
    loop {
        if killed.is_none() {
            killed = f.killed();
        }
        if reader.buffered() > 0 && f.parse_buffered() {
            // PDUs already received are parsed without arming timers; the
            // exits are still checked between them.
            if in_a_row >= RECV_BUDGET {
                in_a_row = 0;
                tokio::task::yield_now().await;
            }
            if killed.as_ref().is_some_and(|k| *k.borrow()) {
                return Ok(F::KILLED);
            }
            if *shutdown.borrow() {
                return Ok(F::SHUTDOWN);
            }
        } else {
            in_a_row = 0;
            if let (Some(p), Some(s)) = (f.placement(), f.slots()) {
                p.sample(s.started());
            }
            let idle = f.idle_deadline();
            let establish = f.establish_deadline();
            tokio::select! {
                r = reader.readable() => r?,
                () = f.event() => match f.on_event()? {
                    Some(exit) => return Ok(exit),
                    None => continue,
                },
                () = wait_killed(&mut killed) => return Ok(F::KILLED),
                _ = shutdown.wait_for(|s| *s) => return Ok(F::SHUTDOWN),
                () = sleep_until(idle) => match f.on_idle()? {
                    Some(exit) => return Ok(exit),
                    None => continue,
                },
                () = sleep_until(establish) => return Err(f.not_established()),
                () = f.fatal().notify.notified() => {}
            }
        }
        if let Some(why) = f.fatal().take() {
            anyhow::bail!(why);
        }
        // Until the connection is established, its deadline also bounds a
        // PDU that stops half-way.
        let establish = f.establish_deadline();
        let header = match establish {
            Some(d) => tokio::time::timeout_at(d, reader.read_header())
                .await
                .map_err(|_| f.not_established())?,
            None => crate::sockio::stall_bounded(reader.read_header(), PDU_STALL_TIMEOUT)
                .await
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "PDU header incomplete after {PDU_STALL_TIMEOUT:?}: dropping the {}",
                        F::UNIT
                    )
                })?,
        };
        let header = match header {
            Ok(h) => {
                in_a_row += 1;
                h
            }
            Err(e) => match F::Reader::failure(&e) {
                HeaderFailure::Closed => return Ok(F::CLOSED),
                HeaderFailure::NotReady => continue,
                HeaderFailure::Other => return f.read_error(e),
            },
        };
        let step = match establish {
            Some(d) => tokio::time::timeout_at(d, f.on_pdu(reader, header, &mut data))
                .await
                .map_err(|_| f.not_established())?,
            None => f.on_pdu(reader, header, &mut data).await,
        };
        if let Some(exit) = step? {
            return Ok(exit);
        }
    }
}

/// The ordered teardown after [`run`]: the frontend stops its commands,
/// its slots close and drain (bounded), it releases what it holds, the
/// reader goes, the send side drains and waits for the kernel's zero-copy
/// release ([`Outbound::shut_down`]), then `linger` (a session
/// registration) goes and the end is logged (`Frontend::ENDED`) with the
/// pool's state. `f` is None when the connection never got that far.
pub async fn finish<F: Frontend, L>(
    f: Option<Rc<F>>,
    reader: F::Reader,
    out: Rc<Outbound>,
    writer: JoinHandle<std::io::Result<()>>,
    shared: &crate::daemon::Shared,
    exit: anyhow::Result<F::Exit>,
    linger: L,
) -> anyhow::Result<()> {
    if let Some(f) = &f {
        f.stop();
        if let Some(slots) = f.slots() {
            slots.close();
            if !slots.drained(TEARDOWN_TIMEOUT).await {
                tracing::warn!(running = slots.busy(), "commands still running at teardown");
            }
            let bad = slots.bad_transitions();
            if bad > 0 {
                shared
                    .counters
                    .lifecycle_errors
                    .fetch_add(bad, Ordering::Relaxed);
            }
        }
        f.release();
    }
    drop(f);
    drop(reader);
    out.shut_down(writer, TEARDOWN_TIMEOUT).await;
    drop(linger);
    let e = exit?;
    let pool = shared.pool.stats();
    tracing::info!(
        exit = ?e,
        pool_free = pool.free_chunks,
        pool_total = pool.total_chunks,
        "{}",
        F::ENDED
    );
    Ok(())
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests;
