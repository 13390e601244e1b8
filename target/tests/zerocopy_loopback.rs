//! The buffer-lifetime contract on real loopback sockets, on both engines:
//! a payload returns to the pool only after the kernel released its pages.

use std::io::Read;
use std::net::{TcpListener, TcpStream as StdStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use zctarget::zerocopy::{Outcome, SenderCounters, ZeroCopyPolicy, ZeroCopySender};
use zctarget_backends::{BufferPool, POISON_BYTE};

/// Runs `body` once on a plain tokio runtime (epoll engine) and once inside
/// tokio-uring (uring engine).
fn on_both_engines<F, Fut>(body: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body());
    tokio_uring::start(body());
}

/// A connected pair: (sender side as std stream, receiver side). The
/// receiver's buffer is small so that it stalls the sender quickly.
fn pair(rcvbuf: usize, sndbuf: Option<usize>) -> (StdStream, StdStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sock = socket2::SockRef::from(&listener);
    sock.set_recv_buffer_size(rcvbuf).expect("rcvbuf");
    let addr = listener.local_addr().expect("addr");
    let client = StdStream::connect(addr).expect("connect");
    if let Some(s) = sndbuf {
        socket2::SockRef::from(&client)
            .set_send_buffer_size(s)
            .expect("sndbuf");
    }
    let (server, _) = listener.accept().expect("accept");
    client.set_nonblocking(true).expect("nonblocking");
    (client, server)
}

fn sender_on(std: StdStream, policy: ZeroCopyPolicy) -> (ZeroCopySender, Arc<SenderCounters>) {
    let stream = tokio::net::TcpStream::from_std(std).expect("register with runtime");
    let counters = Arc::new(SenderCounters::default());
    let sender = ZeroCopySender::new(Rc::new(stream), policy, counters.clone());
    (sender, counters)
}

/// Reads everything until EOF in a thread, returning the bytes.
fn drain_thread(mut rx: StdStream, delay_per_read: Duration) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match rx.read(&mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            if !delay_per_read.is_zero() {
                std::thread::sleep(delay_per_read);
            }
        }
    })
}

/// Drives the sender for about `d`.
async fn drive_for(sender: &mut ZeroCopySender, d: Duration) {
    let _ = tokio::time::timeout(d, async {
        loop {
            if sender.progress().await.is_err() || sender.in_flight() == 0 {
                // Nothing to wait for: idle until the timeout.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
    .await;
}

#[test]
fn stalled_receiver_keeps_sends_pinned_until_it_drains() {
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, true).expect("pool");
        let (tx, rx) = pair(16 << 10, Some(16 << 10));
        let (mut sender, counters) = sender_on(tx, ZeroCopyPolicy::Always);
        assert!(
            sender.zerocopy_enabled(),
            "SO_ZEROCOPY must be available on loopback"
        );
        let mut expected = Vec::new();
        for i in 0..8u64 {
            let mut payload = pool.lease(512 << 10).await.expect("lease");
            payload.fill(i as u8 + 1);
            expected.extend(std::iter::repeat_n(i as u8 + 1, 512 << 10));
            let mut msg = sender.message(i, payload);
            msg.push_payload(0, 512 << 10).expect("range");
            sender.submit(msg);
        }
        assert_eq!(pool.free_chunks(), 0, "all 4 MiB leased");
        drive_for(&mut sender, Duration::from_millis(300)).await;
        // The receiver reads nothing: most data cannot even leave the
        // sender, so its leases must still be out of the pool.
        assert!(sender.in_flight() > 0);
        let stuck = pool.stats().total_chunks - pool.free_chunks();
        assert!(
            stuck >= 32,
            "only {stuck} chunks pinned while the receiver is stalled"
        );
        // Completions that did arrive are only for fully-notified messages.
        while let Some(c) = sender.take_completion() {
            assert_eq!(c.outcome, Outcome::Sent);
        }

        let reader = drain_thread(rx, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sender.in_flight() > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), sender.progress()).await;
            while let Some(c) = sender.take_completion() {
                assert_eq!(c.outcome, Outcome::Sent);
                assert!(c.zerocopy_calls >= 1);
            }
        }
        assert_eq!(
            sender.in_flight(),
            0,
            "every message released after the drain"
        );
        assert!(pool.is_full(), "every lease back in the pool");
        let n = counters.notifications.load(Ordering::Relaxed);
        assert!(n > 0);
        assert_eq!(
            counters.copied_notifications.load(Ordering::Relaxed),
            n,
            "loopback always copies, and each such notification is counted"
        );
        drop(sender);
        let got = reader.join().expect("reader");
        assert!(got == expected, "received bytes differ from what was sent");
    });
}

#[test]
fn poisoned_random_workload_is_byte_exact() {
    on_both_engines(|| async {
        // A small pool forces constant reuse: any lease returned before the
        // kernel let go would be poisoned or refilled under the send.
        let pool = BufferPool::new(6 << 20, 64 << 10, true).expect("pool");
        let (tx, rx) = pair(256 << 10, None);
        let (mut sender, counters) = sender_on(tx, ZeroCopyPolicy::Always);
        // Receiver: frames of [len u32][crc32c u32][payload].
        let reader = std::thread::spawn(move || {
            let mut rx = rx;
            let mut frames = 0u32;
            let mut corrupt = 0u32;
            let mut head = [0u8; 8];
            let mut body = vec![0u8; 1 << 20];
            while rx.read_exact(&mut head).is_ok() {
                let len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
                let crc = u32::from_le_bytes(head[4..].try_into().unwrap_or_default());
                if rx.read_exact(&mut body[..len]).is_err() {
                    break;
                }
                frames += 1;
                if crc32c::crc32c(&body[..len]) != crc || body[..len].contains(&POISON_BYTE) {
                    corrupt += 1;
                }
            }
            (frames, corrupt)
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let total_frames = 96u64;
        let mut sent = 0u64;
        let mut completed = 0u64;
        while completed < total_frames {
            if sent < total_frames {
                let len = rng.gen_range(4096..=(1 << 20));
                // Back-pressure: wait for leases while driving the sender.
                let mut payload = loop {
                    if let Some(p) = pool.try_lease(len).expect("lease size") {
                        break p;
                    }
                    sender.progress().await.expect("progress");
                    while sender.take_completion().is_some() {
                        completed += 1;
                    }
                };
                // Payload bytes avoid the poison value so a poisoned byte is
                // always visible.
                let data: Vec<u8> = (0..len).map(|_| rng.gen_range(0..=0xA4u8)).collect();
                payload.copy_from_slice(0, &data);
                let mut head = [0u8; 8];
                head[..4].copy_from_slice(&(len as u32).to_le_bytes());
                head[4..].copy_from_slice(&crc32c::crc32c(&data).to_le_bytes());
                let mut msg = sender.message(sent, payload);
                msg.push_header(&head).expect("header");
                msg.push_payload(0, len).expect("range");
                sender.submit(msg);
                sent += 1;
                sender.try_progress().expect("progress");
            } else {
                sender.progress().await.expect("progress");
            }
            while let Some(c) = sender.take_completion() {
                assert_eq!(c.outcome, Outcome::Sent);
                completed += 1;
            }
        }
        assert!(pool.is_full());
        assert!(counters.zerocopy_calls.load(Ordering::Relaxed) > 0);
        drop(sender);
        let (frames, corrupt) = reader.join().expect("reader");
        assert_eq!(frames as u64, total_frames);
        assert_eq!(corrupt, 0, "corrupted frames");
    });
}

#[test]
fn partial_writes_complete_only_after_every_piece_is_notified() {
    on_both_engines(|| async {
        let pool = BufferPool::new(2 << 20, 64 << 10, true).expect("pool");
        let (tx, rx) = pair(8 << 10, Some(8 << 10));
        let (mut sender, counters) = sender_on(tx, ZeroCopyPolicy::Always);
        let mut payload = pool.lease(1 << 20).await.expect("lease");
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        payload.copy_from_slice(0, &data);
        let mut msg = sender.message(7, payload);
        msg.push_payload(0, 1 << 20).expect("range");
        sender.submit(msg);
        let reader = drain_thread(rx, Duration::from_micros(200));
        let deadline = Instant::now() + Duration::from_secs(30);
        let completion = loop {
            assert!(Instant::now() < deadline, "message never completed");
            let _ = tokio::time::timeout(Duration::from_millis(50), sender.progress()).await;
            if let Some(c) = sender.take_completion() {
                break c;
            }
            // Until it completes, the lease stays out of the pool.
            assert!(!pool.is_full());
        };
        assert_eq!(completion.token, 7);
        assert_eq!(completion.outcome, Outcome::Sent);
        assert!(
            completion.zerocopy_calls > 1,
            "a small send buffer must split the send ({} calls)",
            completion.zerocopy_calls
        );
        assert!(counters.notifications.load(Ordering::Relaxed) >= 1);
        drop(completion);
        assert!(pool.is_full());
        drop(sender);
        assert!(reader.join().expect("reader") == data);
    });
}

/// Notifications that arrive while the socket is full leave the stream's
/// write readiness stuck at "write closed" (mio/tokio); the sender then
/// watches for room on a registration of its own. A peer that resets the
/// connection meanwhile must still be seen as gone — an error, not an
/// endless wait — and every buffer still comes back.
#[test]
fn peer_reset_while_waiting_for_room_fails_the_sender() {
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, true).expect("pool");
        let (tx, rx) = pair(16 << 10, Some(16 << 10));
        let (mut sender, counters) = sender_on(tx, ZeroCopyPolicy::Always);
        for i in 0..4u64 {
            let payload = pool.lease(1 << 20).await.expect("lease");
            let mut msg = sender.message(i, payload);
            msg.push_payload(0, 1 << 20).expect("range");
            sender.submit(msg);
        }
        // The peer reads slowly for a while (the socket fills and drains
        // in steps, notifications arriving meanwhile), stops, then resets.
        let peer = std::thread::spawn(move || {
            let mut rx = rx;
            let mut buf = vec![0u8; 16 << 10];
            let mut got = 0;
            while got < 512 << 10 {
                match rx.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(200));
            socket2::SockRef::from(&rx)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
            drop(rx); // RST
        });
        let flushed = tokio::time::timeout(Duration::from_secs(20), sender.flush_all()).await;
        peer.join().expect("peer");
        let rearms = counters.room_rearms.load(Ordering::Relaxed);
        let full = counters.would_block.load(Ordering::Relaxed);
        assert!(
            rearms >= 1,
            "the stream's write readiness never got stuck (no notification while full?)"
        );
        assert!(
            matches!(flushed, Ok(Err(_))),
            "a reset peer must fail the sender, got {flushed:?}"
        );
        assert!(full <= 4, "{full} sendmsg calls found the socket full");
        let report = sender.close(Duration::from_millis(500)).await;
        assert!(report
            .released
            .iter()
            .all(|c| c.outcome == Outcome::Aborted || c.outcome == Outcome::Sent));
        assert_eq!(report.orphaned, 0, "the reset purged every send");
        drop(report);
        assert!(pool.is_full(), "every lease back in the pool");
    });
}

#[test]
fn teardown_waits_for_notifications_then_resets_past_the_deadline() {
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, false).expect("pool");
        let (tx, rx) = pair(16 << 10, Some(16 << 10));
        let (mut sender, counters) = sender_on(tx, ZeroCopyPolicy::Always);
        for i in 0..4u64 {
            let payload = pool.lease(1 << 20).await.expect("lease");
            let mut msg = sender.message(i, payload);
            msg.push_payload(0, 1 << 20).expect("range");
            sender.submit(msg);
        }
        drive_for(&mut sender, Duration::from_millis(100)).await;
        let pinned_before = pool.stats().total_chunks - pool.free_chunks();
        assert!(pinned_before > 0);
        let started = Instant::now();
        let close = sender.close(Duration::from_millis(400));
        tokio::pin!(close);
        // While close waits, nothing may come back to the pool.
        let early = tokio::time::timeout(Duration::from_millis(200), &mut close).await;
        assert!(early.is_err(), "close must wait for notifications");
        assert_eq!(
            pool.stats().total_chunks - pool.free_chunks(),
            pinned_before
        );
        let report = close.await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert!(report.reset && !report.drained);
        assert_eq!(report.released.len(), 4);
        assert!(report
            .released
            .iter()
            .any(|c| c.outcome == Outcome::Aborted));
        assert_eq!(counters.teardown_resets.load(Ordering::Relaxed), 1);
        drop(report);
        assert!(pool.is_full());
        drop(rx);
    });
}

#[test]
fn teardown_with_a_draining_peer_releases_everything_without_reset() {
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, false).expect("pool");
        let (tx, rx) = pair(16 << 10, Some(16 << 10));
        let (mut sender, _counters) = sender_on(tx, ZeroCopyPolicy::Always);
        for i in 0..4u64 {
            let payload = pool.lease(1 << 20).await.expect("lease");
            let mut msg = sender.message(i, payload);
            msg.push_payload(0, 1 << 20).expect("range");
            sender.submit(msg);
        }
        let reader = drain_thread(rx, Duration::ZERO);
        let report = sender.close(Duration::from_secs(20)).await;
        assert!(report.drained && !report.reset);
        assert!(report.released.iter().all(|c| c.outcome == Outcome::Sent));
        assert_eq!(report.released.len(), 4);
        drop(report);
        assert!(pool.is_full());
        // The sender's stream is closed with it; the reader sees EOF.
        assert_eq!(reader.join().expect("reader").len(), 4 << 20);
    });
}

#[test]
fn policy_never_copies_and_threshold_splits_by_size() {
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, false).expect("pool");
        for (policy, small_zc, big_zc) in [
            (ZeroCopyPolicy::Never, false, false),
            (ZeroCopyPolicy::Threshold(16 << 10), false, true),
        ] {
            let (tx, rx) = pair(1 << 20, None);
            let reader = drain_thread(rx, Duration::ZERO);
            let (mut sender, counters) = sender_on(tx, policy);
            for (token, len) in [(0u64, 4096usize), (1, 256 << 10)] {
                let payload = pool.lease(len).await.expect("lease");
                let mut msg = sender.message(token, payload);
                msg.push_payload(0, len).expect("range");
                sender.submit(msg);
            }
            sender.flush_all().await.expect("flush");
            let mut calls = [0u32; 2];
            while let Some(c) = sender.take_completion() {
                calls[c.token as usize] = c.zerocopy_calls;
            }
            assert_eq!(calls[0] > 0, small_zc, "{policy:?} small message");
            assert_eq!(calls[1] > 0, big_zc, "{policy:?} big message");
            assert_eq!(
                counters.zerocopy_calls.load(Ordering::Relaxed) > 0,
                big_zc,
                "{policy:?}"
            );
            drop(sender);
            reader.join().expect("reader");
            assert!(pool.is_full());
        }
    });
}

#[test]
fn auto_mode_stops_zero_copy_after_the_kernel_keeps_copying() {
    // On loopback every notification says "copied": in threshold (auto)
    // mode the sender gives zero-copy up after a short streak, so later
    // sends complete at once instead of waiting for the peer's ACK; in
    // `Always` mode it never does.
    on_both_engines(|| async {
        let pool = BufferPool::new(8 << 20, 64 << 10, false).expect("pool");
        for (policy, abandons) in [
            (ZeroCopyPolicy::Threshold(16 << 10), true),
            (ZeroCopyPolicy::Always, false),
        ] {
            let (tx, rx) = pair(1 << 20, None);
            let reader = drain_thread(rx, Duration::ZERO);
            let (mut sender, counters) = sender_on(tx, policy);
            let mut zerocopy_per_message = Vec::new();
            for token in 0..16u64 {
                let payload = pool.lease(64 << 10).await.expect("lease");
                let mut msg = sender.message(token, payload);
                msg.push_payload(0, 64 << 10).expect("range");
                sender.submit(msg);
                // One at a time, each released before the next is sent.
                sender.flush_all().await.expect("flush");
                while let Some(c) = sender.take_completion() {
                    zerocopy_per_message.push(c.zerocopy_calls > 0);
                }
            }
            assert_eq!(zerocopy_per_message.len(), 16);
            let abandoned = counters.zerocopy_abandoned.load(Ordering::Relaxed);
            assert_eq!(
                abandoned == 1,
                abandons,
                "{policy:?}: abandoned {abandoned}"
            );
            if abandons {
                let limit = zctarget::zerocopy::COPIED_STREAK_LIMIT as usize;
                assert!(zerocopy_per_message[..limit].iter().all(|&z| z));
                assert!(
                    zerocopy_per_message[limit + 1..].iter().all(|&z| !z),
                    "{zerocopy_per_message:?}"
                );
            } else {
                assert!(zerocopy_per_message.iter().all(|&z| z));
            }
            drop(sender);
            reader.join().expect("reader");
            assert!(pool.is_full());
        }
    });
}

/// Inner half of the ENOBUFS test: runs in a network namespace whose
/// `net.core.optmem_max` is too small for zero-copy bookkeeping, so every
/// `MSG_ZEROCOPY` call fails with ENOBUFS and must fall back to a copy.
#[test]
#[ignore = "run by enobufs_falls_back_to_copy inside a private network namespace"]
fn enobufs_inner() {
    if std::env::var_os("ZCTARGET_ENOBUFS_INNER").is_none() {
        return;
    }
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, true).expect("pool");
        let (tx, rx) = pair(1 << 20, None);
        let reader = drain_thread(rx, Duration::ZERO);
        let (mut sender, counters) = sender_on(tx, ZeroCopyPolicy::Always);
        let mut expected = Vec::new();
        for i in 0..8u64 {
            let mut payload = pool.lease(256 << 10).await.expect("lease");
            payload.fill(i as u8 + 1);
            expected.extend(std::iter::repeat_n(i as u8 + 1, 256 << 10));
            let mut msg = sender.message(i, payload);
            msg.push_payload(0, 256 << 10).expect("range");
            sender.submit(msg);
        }
        sender.flush_all().await.expect("flush");
        while let Some(c) = sender.take_completion() {
            assert_eq!(c.outcome, Outcome::Sent);
        }
        assert!(pool.is_full());
        let fallbacks = counters.enobufs_fallbacks.load(Ordering::Relaxed);
        assert!(fallbacks > 0, "no ENOBUFS fallback happened");
        drop(sender);
        assert!(
            reader.join().expect("reader") == expected,
            "data differs after fallback"
        );
        println!("ENOBUFS fallbacks: {fallbacks}");
    });
}

/// ENOBUFS (optmem / locked-memory limits) on a zero-copy send falls back to
/// a copying send for that call, counted, with the data intact.
#[test]
fn enobufs_falls_back_to_copy() {
    let Some(text) = zctarget_tests::netns::rerun_in_netns(
        "echo 0 > /proc/sys/net/core/optmem_max",
        "--ignored --exact enobufs_inner --nocapture",
        "ZCTARGET_ENOBUFS_INNER",
        "its own optmem_max",
    ) else {
        return;
    };
    assert!(
        text.contains("ENOBUFS fallbacks:"),
        "inner test did not run:\n{text}"
    );
}

/// A quiet message (nobody waits for its release, as for every untracked
/// send of the daemon) hands back no completion, and still keeps its
/// payload pinned until the kernel released it — zero-copy included —
/// before returning it to the pool.
#[test]
fn quiet_messages_release_their_payload_without_a_completion() {
    on_both_engines(|| async {
        let pool = BufferPool::new(4 << 20, 64 << 10, true).expect("pool");
        let (tx, rx) = pair(16 << 10, Some(16 << 10));
        let (mut sender, _) = sender_on(tx, ZeroCopyPolicy::Always);
        for i in 0..3u64 {
            let payload = pool.lease(512 << 10).await.expect("lease");
            let mut msg = sender.message(i, payload);
            msg.push_payload(0, 512 << 10).expect("range");
            if i != 1 {
                msg.quiet();
            }
            sender.submit(msg);
        }
        // The receiver has not read: the payloads are still the kernel's.
        drive_for(&mut sender, Duration::from_millis(50)).await;
        assert!(!pool.is_full(), "released before the receiver read");
        let reader = drain_thread(rx, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(10);
        while sender.in_flight() > 0 && Instant::now() < deadline {
            drive_for(&mut sender, Duration::from_millis(20)).await;
        }
        assert_eq!(sender.in_flight(), 0, "every message released");
        let done: Vec<u64> = std::iter::from_fn(|| sender.take_completion())
            .map(|c| c.token)
            .collect();
        assert_eq!(done, [1], "only the message someone waits for completes");
        assert!(pool.is_full(), "every lease back in the pool");
        drop(sender);
        assert_eq!(reader.join().expect("reader").len(), 3 * (512 << 10));
    });
}
