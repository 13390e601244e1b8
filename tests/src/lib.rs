//! The test kit of zctarget: everything its integration tests
//! (`target/tests/*.rs`) and benchmarks (`src/bin/`) share.
//!
//! - [`daemon`]: a running `zctarget serve` (ports learnt from its log,
//!   signals, bounded waits, `ctl`, metrics), killed on drop;
//! - [`spec`]: the standard file-backed daemon of the crash, limit, pool
//!   and portal tests;
//! - [`ceph`]: the throwaway Ceph cluster of the RBD tests (its monitor
//!   stopped and started) and daemons on RBD images;
//! - [`iscsi`]: a raw synchronous iSCSI initiator;
//! - [`nvme_client`]: the NVMe/TCP host;
//! - [`nvme_auth`]: its in-band authentication (DH-HMAC-CHAP, host side);
//! - [`logs`]: what tests read from a daemon's log (ports, pool checks);
//! - [`records`]: self-describing data blocks and a replayable generator;
//! - [`procfs`]: RSS, descriptors, listeners of a process;
//! - [`netns`]: a test binary run again in a private network namespace;
//! - [`perf`]: the load engine and latency histogram of `zc-nvme-perf`.

pub mod ceph;
pub mod daemon;
pub mod iscsi;
pub mod logs;
pub mod netns;
pub mod nvme_auth;
pub mod nvme_client;
pub mod perf;
pub mod procfs;
pub mod records;
pub mod spec;

pub use daemon::Daemon;

/// A `bs`-byte block of `tag` bytes whose first 8 bytes are `lba`
/// (little endian): what a multi-gateway test writes and looks for.
pub fn tagged_block(tag: u8, lba: u64, bs: usize) -> Vec<u8> {
    let mut b = vec![tag; bs];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b
}

/// A TCP port free on 127.0.0.1 right now — only for an address two
/// configurations must name before either daemon starts (a peer link's
/// other end); a daemon's own listeners take port 0 instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Errors meaning "the connection went away" (daemon killed, or it closed
/// the connection) rather than a protocol violation or a hang.
pub fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::ConnectionAborted
    ) && !e.to_string().contains("C2HTermReq")
}
