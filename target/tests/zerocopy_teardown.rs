//! Teardown of a zero-copy sender whose pages still sit below the socket.
//!
//! A reset (`connect(AF_UNSPEC)`) purges the socket's queues but not skbs
//! already handed to the qdisc: they keep referencing the pages and go out on
//! the wire later. The tests run in a private network namespace whose
//! loopback has a rate-limiting qdisc (`tbf`) that holds those skbs for a
//! while, and check that a lease returns to the pool only when its
//! notification arrives — or is quarantined, never released on a timer.

use std::io::Read;
use std::net::{TcpListener, TcpStream as StdStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zctarget::zerocopy::reaper;
use zctarget::zerocopy::{SenderCounters, ZeroCopyPolicy, ZeroCopySender};
use zctarget_backends::{BufferPool, POISON_BYTE};

const MESSAGES: u64 = 4;
const MESSAGE_BYTES: usize = 1 << 20;

fn local<F: std::future::Future<Output = ()>>(body: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio::task::LocalSet::new().block_on(&rt, body);
}

fn pair() -> (StdStream, StdStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = StdStream::connect(addr).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    client.set_nonblocking(true).expect("nonblocking");
    (client, server)
}

/// Reads until EOF or reset; returns whether a poisoned byte ever arrived.
fn reader(mut rx: StdStream) -> JoinHandle<(usize, bool)> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let (mut total, mut poisoned) = (0, false);
        loop {
            match rx.read(&mut buf) {
                Ok(0) | Err(_) => return (total, poisoned),
                Ok(n) => {
                    total += n;
                    poisoned |= buf[..n].contains(&POISON_BYTE);
                }
            }
        }
    })
}

/// A sender with `MESSAGES` zero-copy messages written into the socket (most
/// of them now queued in the qdisc), and the pool they came from.
async fn loaded_sender() -> (
    ZeroCopySender,
    BufferPool,
    Arc<SenderCounters>,
    JoinHandle<(usize, bool)>,
) {
    let pool = BufferPool::new(8 << 20, 64 << 10, true).expect("pool");
    let (tx, rx) = pair();
    let stream = tokio::net::TcpStream::from_std(tx).expect("register");
    let counters = Arc::new(SenderCounters::default());
    let mut sender = ZeroCopySender::new(Rc::new(stream), ZeroCopyPolicy::Always, counters.clone());
    assert!(sender.zerocopy_enabled());
    let reader = reader(rx);
    for i in 0..MESSAGES {
        let mut payload = pool.lease(MESSAGE_BYTES).await.expect("lease");
        payload.fill(i as u8 + 1);
        let mut msg = sender.message(i, payload);
        msg.push_payload(0, MESSAGE_BYTES).expect("range");
        sender.submit(msg);
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), sender.flush_all()).await;
    (sender, pool, counters, reader)
}

fn leased(pool: &BufferPool) -> usize {
    let s = pool.stats();
    s.total_chunks - s.free_chunks - s.quarantined_chunks
}

async fn wait_for_orphans(limit: Duration) {
    let deadline = Instant::now() + limit;
    while reaper::orphans() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Release after the reset happens as notifications arrive, not at once.
fn released_on_notification(close: bool) {
    local(async move {
        let reaper = reaper::start(Duration::from_secs(30));
        let (sender, pool, counters, reader) = loaded_sender().await;
        assert!(leased(&pool) > 0);
        if close {
            let report = sender.close(Duration::ZERO).await;
            assert!(report.reset);
            assert!(report.orphaned > 0, "nothing left for the reaper");
        } else {
            drop(sender);
        }
        assert_eq!(counters.teardown_resets.load(Ordering::Relaxed), 1);
        // The qdisc still holds skbs pointing at the pages: their leases
        // must not be back in the pool.
        assert!(
            leased(&pool) > 0,
            "leases released right after the reset, with skbs still in the qdisc"
        );
        wait_for_orphans(Duration::from_secs(20)).await;
        assert_eq!(reaper::orphans(), 0, "notifications never came");
        assert!(pool.is_full(), "every lease back once notified");
        assert_eq!(counters.quarantined_bytes.load(Ordering::Relaxed), 0);
        let (_, poisoned) = reader.join().expect("reader");
        assert!(
            !poisoned,
            "a released (poisoned) chunk went out on the wire"
        );
        reaper.finish(Duration::ZERO).await;
        println!("TEARDOWN INNER OK");
    });
}

#[test]
#[ignore = "run by zerocopy_teardown_below_the_socket in a private network namespace"]
fn inner_close_releases_on_notification() {
    if std::env::var_os("ZCTARGET_TEARDOWN_INNER").is_some() {
        released_on_notification(true);
    }
}

#[test]
#[ignore = "run by zerocopy_teardown_below_the_socket in a private network namespace"]
fn inner_drop_releases_on_notification() {
    if std::env::var_os("ZCTARGET_TEARDOWN_INNER").is_some() {
        released_on_notification(false);
    }
}

/// At shutdown the reaper quarantines what is still unnotified: never
/// released (even after the skbs are gone), counted, and shutdown does not
/// wait for the kernel.
#[test]
#[ignore = "run by zerocopy_teardown_below_the_socket in a private network namespace"]
fn inner_shutdown_quarantines() {
    if std::env::var_os("ZCTARGET_TEARDOWN_INNER").is_none() {
        return;
    }
    local(async {
        let reaper = reaper::start(Duration::from_secs(30));
        let (sender, pool, counters, reader) = loaded_sender().await;
        let report = sender.close(Duration::ZERO).await;
        assert!(report.orphaned > 0);
        let started = Instant::now();
        reaper.finish(Duration::ZERO).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let quarantined = counters.quarantined_bytes.load(Ordering::Relaxed);
        assert!(quarantined > 0, "nothing quarantined");
        let stats = pool.stats();
        assert_eq!(
            quarantined as usize,
            stats.quarantined_chunks * stats.chunk_size
        );
        let (_, poisoned) = reader.join().expect("reader");
        assert!(!poisoned);
        // Long after the qdisc let go, quarantined chunks stay out.
        assert_eq!(leased(&pool), 0);
        assert!(!pool.is_full());
        // A sender dropped after the reaper finished quarantines at once.
        println!("TEARDOWN INNER OK");
    });
}

/// Runs the inner tests in a network namespace whose loopback queues skbs
/// in a slow `tbf` qdisc.
#[test]
fn zerocopy_teardown_below_the_socket() {
    let Some(text) = zctarget_tests::netns::rerun_in_netns(
        "tc qdisc add dev lo root tbf rate 2mbit burst 64kb limit 64mb",
        "--ignored --test-threads=1 inner_ --nocapture",
        "ZCTARGET_TEARDOWN_INNER",
        "a tbf qdisc",
    ) else {
        return;
    };
    assert_eq!(
        text.matches("TEARDOWN INNER OK").count(),
        3,
        "inner tests did not all run:\n{text}"
    );
}
