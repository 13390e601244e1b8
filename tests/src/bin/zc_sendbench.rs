//! Benchmark (not a test): the zero-copy sender with `MSG_ZEROCOPY` on and
//! off, against plain `write(2)`, over loopback, for message sizes from
//! 4 KiB to 1 MiB. Prints a Markdown table (the one in docs/BENCHMARKS.md).
//!
//! Run: `cargo run --release -p zctarget-tests --bin zc-sendbench [-- --mib N]`
//!
//! Each case moves the same number of bytes to a receiver thread that drains
//! the socket. Reported: throughput, and the sending thread's CPU time per
//! GiB (user + system, from `getrusage(RUSAGE_THREAD)`), which is where
//! zero-copy should save on real NICs. On loopback the kernel copies anyway
//! (every notification says `SO_EE_CODE_ZEROCOPY_COPIED`), so zero-copy
//! mostly adds notification cost here; the numbers show that price honestly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zctarget::zerocopy::{SenderCounters, ZeroCopyPolicy, ZeroCopySender};
use zctarget_backends::BufferPool;

const SIZES: [usize; 6] = [4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 1 << 20];

fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own for the call.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn connected() -> (TcpStream, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let tx = TcpStream::connect(addr).expect("connect");
    tx.set_nodelay(true).expect("nodelay");
    (tx, reader)
}

struct Sample {
    gbps: f64,
    cpu_ms_per_gib: f64,
}

fn bench_write(size: usize, total: usize) -> Sample {
    let (mut tx, reader) = connected();
    let buf = vec![0x5au8; size];
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        tx.write_all(&buf).expect("write");
        sent += size;
    }
    drop(tx);
    let got = reader.join().expect("reader");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    assert_eq!(got as usize, sent);
    Sample {
        gbps: sent as f64 / secs / 1e9,
        cpu_ms_per_gib: cpu * 1e3 / (sent as f64 / (1u64 << 30) as f64),
    }
}

fn bench_sender(size: usize, total: usize, policy: ZeroCopyPolicy) -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx, reader) = connected();
        tx.set_nonblocking(true).expect("nonblocking");
        let stream = tokio::net::TcpStream::from_std(tx).expect("tokio stream");
        let pool = BufferPool::new(64 << 20, 64 << 10, false).expect("pool");
        let counters = Arc::new(SenderCounters::default());
        let mut sender = ZeroCopySender::new(Rc::new(stream), policy, counters);
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < total {
            let payload = loop {
                if let Some(p) = pool.try_lease(size).expect("lease") {
                    break p;
                }
                sender.progress().await.expect("progress");
                while sender.take_completion().is_some() {}
            };
            let mut msg = sender.message(0, payload);
            msg.push_payload(0, size).expect("range");
            sender.submit(msg);
            sent += size;
            if sender.queued() >= 16 {
                sender.try_progress().expect("progress");
            }
            while sender.take_completion().is_some() {}
        }
        sender.flush_all().await.expect("flush");
        while sender.take_completion().is_some() {}
        let secs_send = t0.elapsed();
        drop(sender);
        let got = reader.join().expect("reader");
        let secs = secs_send.max(t0.elapsed()).as_secs_f64();
        let cpu = (thread_cpu() - cpu0).as_secs_f64();
        assert_eq!(got as usize, sent);
        Sample {
            gbps: sent as f64 / secs / 1e9,
            cpu_ms_per_gib: cpu * 1e3 / (sent as f64 / (1u64 << 30) as f64),
        }
    })
}

fn main() {
    let mib: usize = std::env::args()
        .skip_while(|a| a != "--mib")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib << 20;
    println!("Loopback, {mib} MiB per case; GB/s and sender CPU ms per GiB.\n");
    println!("| size | write(2) GB/s | sender copy GB/s | sender zerocopy GB/s | write CPU ms/GiB | copy CPU ms/GiB | zerocopy CPU ms/GiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for size in SIZES {
        let w = bench_write(size, total);
        let c = bench_sender(size, total, ZeroCopyPolicy::Never);
        let z = bench_sender(size, total, ZeroCopyPolicy::Always);
        println!(
            "| {} KiB | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
            size >> 10,
            w.gbps,
            c.gbps,
            z.gbps,
            w.cpu_ms_per_gib,
            c.cpu_ms_per_gib,
            z.cpu_ms_per_gib
        );
    }
}
