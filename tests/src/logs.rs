//! What tests read from a daemon's log (`RUST_LOG=info`, plain text).

/// The port of the daemon's `protocol` listener ("iscsi", "nvme-tcp"), from
/// its "listening" line (`listening protocol=iscsi portal=127.0.0.1:3260`).
pub fn listening_port(log: &str, protocol: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains(" listening ") && l.contains(&format!("protocol={protocol} ")))
        .find_map(|l| port_after(l, "portal="))
}

/// The metrics endpoint's port, from `metrics endpoint listening addr=…`.
pub fn metrics_port(log: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains("metrics endpoint listening"))
        .find_map(|l| port_after(l, "addr="))
}

fn port_after(line: &str, key: &str) -> Option<u16> {
    let addr = line.split(key).nth(1)?.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

/// Whether the last line reporting the pool after a connection ended
/// ("queue ended" for NVMe/TCP, "session ended" for iSCSI) reports every
/// chunk free (`pool_free=` equal to `pool_total=`), with at least
/// `min_lines` such lines in the log.
pub fn pool_full_after_disconnects(log: &str, min_lines: usize) -> bool {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("queue ended") || l.contains("session ended"))
        .collect();
    if lines.len() < min_lines {
        return false;
    }
    let Some(line) = lines.last() else {
        return false;
    };
    let field = |name: &str| {
        line.split(name)
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    matches!((field("pool_free="), field("pool_total=")), (Some(f), Some(t)) if f == t)
}

/// Whether shutdown found every buffer back in the pool.
pub fn pool_intact(log: &str) -> bool {
    log.contains("buffer pool intact")
}
