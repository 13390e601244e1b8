//! A log-linear latency histogram in nanoseconds: exact below 128 ns, then
//! 64 buckets per power of two (≤ 1.6 % relative error), up to 2^41 ns
//! (~37 minutes). Recording is an index computation and an increment, so
//! the load generator can time every command without keeping samples.
//! Hand-written (≈ 80 lines) rather than pulling in `hdrhistogram` for this
//! one use.

const EXACT: u64 = 128;
const SUB: u64 = 64;
const MAX_SHIFT: u32 = 35;
const BUCKETS: usize = EXACT as usize + MAX_SHIFT as usize * SUB as usize;

/// Latency histogram (nanoseconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 7
    let shift = (e - 6).min(MAX_SHIFT);
    let m = (v >> shift).min(2 * SUB - 1); // [64, 128)
    EXACT as usize + (shift as usize - 1) * SUB as usize + (m - SUB) as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    if (i as u64) < EXACT {
        return i as u64;
    }
    let j = i as u64 - EXACT;
    let shift = j / SUB + 1;
    let m = j % SUB + SUB;
    (m << shift) + (1 << shift) / 2
}

impl Histogram {
    /// Records one latency.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.buckets[index(ns)] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean in nanoseconds (0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// Largest sample.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The `p`-th percentile (0 < p ≤ 100) in nanoseconds, to bucket
    /// precision (0 when empty).
    pub fn percentile_ns(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return value(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(997).chain([1 << 40, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS && i >= last, "v {v}");
            last = i;
            if v > 0 && v < 1 << 40 {
                let err = (value(i) as f64 - v as f64).abs() / v as f64;
                assert!(err < 0.02, "v {v} -> {}", value(i));
            }
        }
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile_ns(50.0) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "{p50}");
        assert_eq!(h.percentile_ns(100.0), 1_000_000);
        assert!((h.mean_ns() - 500_500.0).abs() < 1.0);
    }
}
