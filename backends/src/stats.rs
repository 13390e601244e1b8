//! Per-volume I/O statistics: counters and latency histograms, updated
//! with relaxed atomics by every reactor and read by the metrics endpoint.
//!
//! Hand-written rather than taken from a metrics crate: the Prometheus
//! client crates keep histograms behind a lock or per-sample allocation,
//! and this is on the command path (one `fetch_add` per counter here).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (a final +Inf
/// bucket is implied): 10 µs … 1 s, roughly ×2.5 per step.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000, 1_000_000,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of observations in nanoseconds.
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A histogram read out: cumulative counts per bucket bound, sum, count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative count for each bound of [`LATENCY_BUCKETS_US`], then +Inf.
    pub cumulative: Vec<u64>,
    /// Sum in seconds.
    pub sum_seconds: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the histogram (not atomic as a whole; fine for scraping).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// One volume's I/O counters.
#[derive(Debug, Default)]
pub struct VolumeStats {
    /// Read operations completed.
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Write operations completed.
    pub writes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Flushes completed.
    pub flushes: AtomicU64,
    /// Discard / write-zeroes operations completed.
    pub discards: AtomicU64,
    /// Operations that failed.
    pub errors: AtomicU64,
    /// Reads and writes handed to a blocking-pool thread (the epoll
    /// engine's file I/O that memory or the page cache could not serve on
    /// the reactor).
    pub offloaded: AtomicU64,
    /// Whole-file data syncs (`fdatasync`) issued by flushes, and by FUA
    /// writes on paths that cannot write through with `RWF_DSYNC`.
    pub data_syncs: AtomicU64,
    /// Reads and writes (one per segment) submitted to io_uring with a
    /// registered (fixed) buffer.
    pub ring_fixed: AtomicU64,
    /// Reads and writes (one per segment) submitted to io_uring with a
    /// plain buffer (a chunk outside the registered range, or no
    /// registration).
    pub ring_unfixed: AtomicU64,
    /// Read latency.
    pub read_latency: Histogram,
    /// Write latency.
    pub write_latency: Histogram,
}

impl VolumeStats {
    /// Records a completed read or write of `bytes`.
    pub fn record(&self, write: bool, bytes: u64, took: Duration, ok: bool) {
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (ops, total, hist) = if write {
            (&self.writes, &self.write_bytes, &self.write_latency)
        } else {
            (&self.reads, &self.read_bytes, &self.read_latency)
        };
        ops.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes, Ordering::Relaxed);
        hist.observe(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounded() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative[0], 2, "≤10 µs");
        assert_eq!(s.cumulative[1], 3, "≤25 µs");
        assert_eq!(s.cumulative[LATENCY_BUCKETS_US.len() - 1], 3, "≤1 s");
        assert_eq!(*s.cumulative.last().unwrap(), 4, "+Inf");
        assert!((s.sum_seconds - 5.000026).abs() < 1e-9);
    }

    #[test]
    fn failures_count_as_errors_only() {
        let v = VolumeStats::default();
        v.record(true, 4096, Duration::from_micros(3), true);
        v.record(false, 512, Duration::from_micros(3), false);
        assert_eq!(v.writes.load(Ordering::Relaxed), 1);
        assert_eq!(v.write_bytes.load(Ordering::Relaxed), 4096);
        assert_eq!(v.reads.load(Ordering::Relaxed), 0);
        assert_eq!(v.errors.load(Ordering::Relaxed), 1);
    }
}
