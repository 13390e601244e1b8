//! The driver with a fake protocol: 4-byte PDUs on an in-memory wire, time
//! paused (tokio's clock only moves when every task waits), so the
//! timings asserted are exact and no wall clock is involved.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{run, Fatal, Frontend, HeaderFailure, PduRead, RECV_BUDGET};
use crate::listener::PDU_STALL_TIMEOUT;

const IDLE: Duration = Duration::from_secs(15);

/// The peer's side: bytes in flight to the reader.
#[derive(Default)]
struct Wire {
    bytes: RefCell<VecDeque<u8>>,
    arrived: Notify,
}

impl Wire {
    fn send(&self, b: &[u8]) {
        self.bytes.borrow_mut().extend(b);
        self.arrived.notify_waiters();
    }
}

struct FakeReader(Rc<Wire>);

#[derive(Debug)]
enum FakeError {
    NotReady,
}

impl PduRead for FakeReader {
    type Header = [u8; 4];
    type Error = FakeError;

    fn buffered(&self) -> usize {
        self.0.bytes.borrow().len()
    }

    async fn readable(&self) -> std::io::Result<()> {
        loop {
            let arrived = self.0.arrived.notified();
            if self.buffered() > 0 {
                return Ok(());
            }
            arrived.await;
        }
    }

    async fn read_header(&mut self) -> Result<[u8; 4], FakeError> {
        if self.buffered() == 0 {
            return Err(FakeError::NotReady);
        }
        let mut h = [0u8; 4];
        for b in &mut h {
            loop {
                let arrived = self.0.arrived.notified();
                if let Some(x) = self.0.bytes.borrow_mut().pop_front() {
                    *b = x;
                    break;
                }
                arrived.await;
            }
        }
        Ok(h)
    }

    fn failure(_: &FakeError) -> HeaderFailure {
        HeaderFailure::NotReady
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Shutdown,
    Killed,
    Quit,
    Idle,
}

/// PDU `qqqq` quits, `ssss` starts shutdown, `kkkk` throws the kill
/// switch, `wwww` hands work to whatever waits on `work` (as a command
/// handed to its slot would be); the idle timer ends the connection.
struct Fake {
    fatal: Fatal,
    shutdown: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    dispatched: RefCell<Vec<u8>>,
    waits: Cell<usize>,
    idles: Cell<usize>,
    work: Notify,
}

impl Fake {
    fn new() -> (Rc<Self>, watch::Receiver<bool>) {
        let (shutdown, rx) = watch::channel(false);
        let f = Rc::new(Self {
            fatal: Fatal::default(),
            shutdown,
            kill: watch::channel(false).0,
            dispatched: RefCell::new(Vec::new()),
            waits: Cell::new(0),
            idles: Cell::new(0),
            work: Notify::new(),
        });
        (f, rx)
    }
}

impl Frontend for Fake {
    type Reader = FakeReader;
    type Exit = End;
    type Slots = crate::slots::Slots<()>;
    const UNIT: &'static str = "connection";
    const ENDED: &'static str = "fake ended";
    const CLOSED: End = End::Closed;
    const SHUTDOWN: End = End::Shutdown;
    const KILLED: End = End::Killed;

    fn fatal(&self) -> &Fatal {
        &self.fatal
    }

    fn killed(&self) -> Option<watch::Receiver<bool>> {
        Some(self.kill.subscribe())
    }

    fn idle_deadline(&self) -> Option<Instant> {
        self.waits.set(self.waits.get() + 1);
        Some(Instant::now() + IDLE)
    }

    fn on_idle(&self) -> anyhow::Result<Option<End>> {
        self.idles.set(self.idles.get() + 1);
        Ok(Some(End::Idle))
    }

    fn read_error(&self, e: FakeError) -> anyhow::Result<End> {
        anyhow::bail!("{e:?}")
    }

    async fn on_pdu(
        self: &Rc<Self>,
        _reader: &mut FakeReader,
        header: [u8; 4],
        _data: &mut Vec<u8>,
    ) -> anyhow::Result<Option<End>> {
        self.dispatched.borrow_mut().push(header[0]);
        match header[0] {
            b'q' => return Ok(Some(End::Quit)),
            b's' => {
                let _ = self.shutdown.send(true);
            }
            b'k' => {
                let _ = self.kill.send(true);
            }
            b'w' => self.work.notify_one(),
            _ => {}
        }
        Ok(None)
    }

    fn slots(&self) -> Option<&Self::Slots> {
        None
    }
}

fn dispatched(f: &Fake) -> String {
    String::from_utf8(f.dispatched.borrow().clone()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn buffered_pdus_are_dispatched_without_waiting() {
    let (f, shutdown) = Fake::new();
    let wire = Rc::new(Wire::default());
    wire.send(b"aaaabbbbccccqqqq");
    let mut reader = FakeReader(Rc::clone(&wire));
    let start = Instant::now();
    let end = run(&f, &mut reader, shutdown).await.unwrap();
    assert_eq!(end, End::Quit);
    assert_eq!(dispatched(&f), "abcq");
    assert_eq!(f.waits.get(), 0, "a buffered PDU armed the wait");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_buffered_pdus_gives_way_every_budget() {
    // Five budgets' worth of PDUs in one segment, each handing work on:
    // the work waiting on the same reactor (a task of its own, as a
    // command's slot worker is) gets to run after every RECV_BUDGET of
    // them, not only once the whole burst is parsed.
    let burst = 5 * RECV_BUDGET;
    let (f, shutdown) = Fake::new();
    let wire = Rc::new(Wire::default());
    wire.send(&b"wwww".repeat(burst));
    wire.send(b"qqqq");
    let mut reader = FakeReader(Rc::clone(&wire));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let local = tokio::task::LocalSet::new();
    let worker = {
        let (f, seen) = (Rc::clone(&f), Rc::clone(&seen));
        local.spawn_local(async move {
            loop {
                f.work.notified().await;
                let n = f.dispatched.borrow().len();
                seen.borrow_mut().push(n);
                if n >= burst {
                    break;
                }
            }
        })
    };
    let driver = {
        let f = Rc::clone(&f);
        local.spawn_local(async move { run(&f, &mut reader, shutdown).await })
    };
    let end = local.run_until(driver).await.unwrap();
    local.run_until(worker).await.unwrap();
    assert_eq!(end.unwrap(), End::Quit);
    let expected: Vec<usize> = (1..=5).map(|k| k * RECV_BUDGET).collect();
    // A stored permit can wake the worker twice in one turn: what counts
    // is how far parsing had got each time it ran.
    seen.borrow_mut().dedup();
    assert_eq!(*seen.borrow(), expected);
    assert_eq!(f.waits.get(), 0, "a buffered PDU armed the wait");
}

#[tokio::test(start_paused = true)]
async fn idle_timer_fires_only_when_idle() {
    let (f, shutdown) = Fake::new();
    let wire = Rc::new(Wire::default());
    let mut reader = FakeReader(Rc::clone(&wire));
    let start = Instant::now();
    // A PDU every 10 s (less than the 15 s idle time), five times.
    let feeder = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            wire.send(b"aaaa");
        }
    };
    let (end, ()) = tokio::join!(run(&f, &mut reader, shutdown), feeder);
    assert_eq!(end.unwrap(), End::Idle);
    assert_eq!(dispatched(&f), "aaaaa");
    assert_eq!(f.idles.get(), 1);
    // The last PDU came at 50 s: idle from then on, for 15 s.
    assert_eq!(start.elapsed(), Duration::from_secs(50) + IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_half_pdu_ends_the_connection_after_the_stall_bound() {
    let (f, shutdown) = Fake::new();
    let wire = Rc::new(Wire::default());
    let mut reader = FakeReader(Rc::clone(&wire));
    let start = Instant::now();
    let feeder = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        wire.send(b"ab");
    };
    // Bounded in (paused) time so that a driver without the stall bound
    // fails here instead of hanging.
    let bounded = tokio::time::timeout(Duration::from_secs(600), run(&f, &mut reader, shutdown));
    let (end, ()) = tokio::join!(bounded, feeder);
    let err = end.expect("the stalled PDU was never bounded").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("PDU header incomplete after {PDU_STALL_TIMEOUT:?}: dropping the connection")
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5) + PDU_STALL_TIMEOUT);
    // The idle timer (15 s) is not armed while a PDU is being read.
    assert_eq!(f.idles.get(), 0);
    assert_eq!(dispatched(&f), "");
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_an_idle_connection() {
    let (f, shutdown) = Fake::new();
    let wire = Rc::new(Wire::default());
    let mut reader = FakeReader(Rc::clone(&wire));
    let start = Instant::now();
    let stop = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = f.shutdown.send(true);
    };
    let (end, ()) = tokio::join!(run(&f, &mut reader, shutdown), stop);
    assert_eq!(end.unwrap(), End::Shutdown);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(f.idles.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn exits_are_checked_between_buffered_pdus() {
    for (pdus, want) in [(b"ssssaaaa", End::Shutdown), (b"kkkkaaaa", End::Killed)] {
        let (f, shutdown) = Fake::new();
        let wire = Rc::new(Wire::default());
        wire.send(pdus);
        let mut reader = FakeReader(Rc::clone(&wire));
        let end = run(&f, &mut reader, shutdown).await.unwrap();
        assert_eq!(end, want);
        // The second PDU, already buffered, is not dispatched.
        assert_eq!(dispatched(&f).len(), 1, "{want:?}");
        assert_eq!(reader.buffered(), 4);
    }
}

#[tokio::test(start_paused = true)]
async fn a_commands_fatal_error_ends_an_idle_connection() {
    let (f, shutdown) = Fake::new();
    let wire = Rc::new(Wire::default());
    let mut reader = FakeReader(Rc::clone(&wire));
    let fail = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        f.fatal.fail("host sent no data".into());
        f.fatal.fail("second reason".into());
    };
    let (end, ()) = tokio::join!(run(&f, &mut reader, shutdown), fail);
    assert_eq!(end.unwrap_err().to_string(), "host sent no data");
}
