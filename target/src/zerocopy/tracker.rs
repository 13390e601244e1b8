//! Maps the kernel's zero-copy notifications back to the messages they free.
//!
//! Every `sendmsg(MSG_ZEROCOPY)` call that sends at least one byte takes the
//! next value of the socket's 32-bit zero-copy counter (it wraps). A message
//! may be written by several calls (partial writes) and one call may carry the
//! tail of one message and the head of the next (batching), so each message
//! owns a contiguous, wrapping range `[first, last]` of counter values and is
//! released once every value in it has been notified. The kernel notifies
//! ranges `[lo, hi]` that may coalesce several calls and may arrive out of
//! order (retransmits, teardown); each value is notified exactly once.
//!
//! This module is pure bookkeeping — no sockets — so it is property-tested on
//! its own.

use std::collections::VecDeque;

/// One message's claim on counter values.
#[derive(Debug)]
struct Pending<T> {
    token: T,
    /// First counter value; meaningful when `count > 0`.
    first: u32,
    /// Counter values assigned so far.
    count: u32,
    /// Counter values notified so far.
    notified: u32,
    /// All bytes of the message have been accepted by the kernel.
    written: bool,
}

impl<T> Pending<T> {
    fn done(&self) -> bool {
        self.written && self.notified >= self.count
    }
}

/// Tracks in-flight zero-copy messages of one socket. `T` identifies a
/// message (the sender stores its slot index there).
#[derive(Debug)]
pub struct NotificationTracker<T> {
    /// Messages in submission order (so their counter ranges are ascending).
    pending: VecDeque<Pending<T>>,
    /// The value the kernel will give the next successful zero-copy call.
    next_value: u32,
    /// Notified values that matched no message (should stay 0).
    unmatched: u64,
}

impl<T> Default for NotificationTracker<T> {
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T> NotificationTracker<T> {
    /// A tracker whose next counter value is `start` (0 for a fresh socket;
    /// tests start near `u32::MAX` to cover the wrap).
    pub fn new(start: u32) -> Self {
        Self {
            pending: VecDeque::new(),
            next_value: start,
            unmatched: 0,
        }
    }

    /// Registers a message about to be written; it is tracked until released.
    pub fn begin(&mut self, token: T) {
        self.pending.push_back(Pending {
            token,
            first: self.next_value,
            count: 0,
            notified: 0,
            written: false,
        });
    }

    /// Records one successful zero-copy call that carried bytes of the
    /// `messages_touched` newest messages, and returns the counter value the
    /// kernel gave it.
    pub fn zerocopy_call(&mut self, messages_touched: usize) -> u32 {
        let value = self.next_value;
        self.next_value = self.next_value.wrapping_add(1);
        let n = self.pending.len();
        for p in self
            .pending
            .iter_mut()
            .skip(n.saturating_sub(messages_touched))
        {
            if p.count == 0 {
                p.first = value;
            }
            p.count += 1;
        }
        value
    }

    /// Marks the message `token` as fully written. Returns it if that
    /// completes it (no zero-copy values, or all already notified).
    pub fn written(&mut self, token: &T) -> Option<T>
    where
        T: PartialEq,
    {
        let idx = self.pending.iter().position(|p| &p.token == token)?;
        let p = self.pending.get_mut(idx)?;
        p.written = true;
        if p.done() {
            return self.pending.remove(idx).map(|p| p.token);
        }
        None
    }

    /// Applies the kernel notification `[lo, hi]` (inclusive, wrapping) and
    /// pushes every message it completes onto `released`.
    pub fn notify(&mut self, lo: u32, hi: u32, released: &mut impl Extend<T>) {
        let span = u64::from(hi.wrapping_sub(lo)) + 1;
        let mut matched = 0u64;
        for p in self.pending.iter_mut() {
            if p.count == 0 {
                continue;
            }
            // Work relative to `lo` so wrapping ranges compare linearly.
            let a = u64::from(p.first.wrapping_sub(lo));
            let b = a + u64::from(p.count) - 1;
            // The notification covers [0, span-1] in this frame. A message
            // whose range starts "before" lo has a huge `a` (wrapped): test
            // that case from the message's side.
            let overlap = if a < span {
                b.min(span - 1) - a + 1
            } else {
                let back = u64::from(lo.wrapping_sub(p.first));
                if back < u64::from(p.count) {
                    (u64::from(p.count) - back).min(span)
                } else {
                    0
                }
            };
            if overlap > 0 {
                p.notified = p.notified.saturating_add(overlap as u32);
                matched = matched.max(overlap);
            }
        }
        if matched == 0 {
            self.unmatched += span;
        }
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending.get(i).is_some_and(Pending::done) {
                if let Some(p) = self.pending.remove(i) {
                    released.extend(std::iter::once(p.token));
                }
            } else {
                i += 1;
            }
        }
    }

    /// Messages still held (written or not).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Counter values sent but not yet notified, over all messages.
    pub fn outstanding_values(&self) -> u64 {
        // Values shared by adjacent messages are counted once per message;
        // this is an upper bound used for diagnostics only.
        self.pending
            .iter()
            .map(|p| u64::from(p.count - p.notified.min(p.count)))
            .sum()
    }

    /// Notified values that matched no message (a bookkeeping bug if not 0).
    pub fn unmatched(&self) -> u64 {
        self.unmatched
    }

    /// Forgets every message (after the socket was reset) and returns them.
    pub fn abandon_all(&mut self, released: &mut impl Extend<T>) {
        released.extend(self.pending.drain(..).map(|p| p.token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_without_zerocopy_completes_when_written() {
        let mut t = NotificationTracker::new(0);
        t.begin(1u32);
        assert_eq!(t.written(&1), Some(1));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partial_writes_need_every_piece_notified() {
        let mut t = NotificationTracker::new(7);
        t.begin(1u32);
        t.zerocopy_call(1);
        t.zerocopy_call(1);
        t.zerocopy_call(1);
        assert_eq!(t.written(&1), None);
        let mut out = Vec::new();
        t.notify(7, 8, &mut out);
        assert!(
            out.is_empty(),
            "two of three pieces notified must not release"
        );
        t.notify(9, 9, &mut out);
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn shared_call_releases_both_messages() {
        let mut t = NotificationTracker::new(0);
        t.begin(1u32);
        t.zerocopy_call(1); // value 0: message 1 only
        t.begin(2u32);
        t.zerocopy_call(2); // value 1: tail of 1, head of 2
        t.zerocopy_call(1); // value 2: message 2
        t.written(&1);
        t.written(&2);
        let mut out = Vec::new();
        t.notify(1, 1, &mut out);
        assert!(out.is_empty());
        t.notify(0, 0, &mut out);
        assert_eq!(out, vec![1]);
        t.notify(2, 2, &mut out);
        assert_eq!(out, vec![1, 2]);
    }

    #[test]
    fn wraps_around_u32() {
        let mut t = NotificationTracker::new(u32::MAX - 1);
        t.begin(1u32);
        for _ in 0..4 {
            t.zerocopy_call(1); // MAX-1, MAX, 0, 1
        }
        t.written(&1);
        let mut out = Vec::new();
        t.notify(u32::MAX, 0, &mut out);
        assert!(out.is_empty());
        t.notify(1, 1, &mut out);
        assert!(out.is_empty());
        t.notify(u32::MAX - 1, u32::MAX - 1, &mut out);
        assert_eq!(out, vec![1]);
        assert_eq!(t.unmatched(), 0);
    }

    proptest! {
        /// Random messages, random call splits and batching, notifications
        /// delivered as random coalesced ranges in random order: a message is
        /// released exactly when all its values are notified, never before.
        #[test]
        fn releases_exactly_when_all_values_notified(
            start in any::<u32>(),
            plan in proptest::collection::vec((1usize..4, any::<bool>()), 1..40),
            chunk_sizes in proptest::collection::vec(1u32..5, 1..60),
            shuffle_seed in any::<u64>(),
        ) {
            let mut t = NotificationTracker::new(start);
            // Model: for each message, the set of values it needs.
            let mut needs: Vec<Vec<u32>> = Vec::new();
            let mut next = start;
            // A message whose flag is set shares its last call with the head
            // of the next message (one sendmsg carrying both).
            let mut carry = false;
            for (id, (calls, share_with_next)) in plan.iter().enumerate() {
                t.begin(id);
                needs.push(Vec::new());
                for c in 0..*calls {
                    let touched = if c == 0 && carry { 2 } else { 1 };
                    let v = t.zerocopy_call(touched);
                    prop_assert_eq!(v, next);
                    next = next.wrapping_add(1);
                    if touched == 2 {
                        needs[id - 1].push(v);
                        t.written(&(id - 1));
                    }
                    needs[id].push(v);
                }
                carry = *share_with_next && id + 1 < plan.len();
                if !carry {
                    t.written(&id);
                }
            }
            // All values, split into coalesced ranges, delivered shuffled.
            let total = next.wrapping_sub(start);
            let mut ranges = Vec::new();
            let mut pos = 0u32;
            let mut k = 0;
            while pos < total {
                let len = chunk_sizes[k % chunk_sizes.len()].min(total - pos);
                ranges.push((start.wrapping_add(pos), start.wrapping_add(pos + len - 1)));
                pos += len;
                k += 1;
            }
            let mut rng = shuffle_seed;
            for i in (1..ranges.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (rng >> 33) as usize % (i + 1);
                ranges.swap(i, j);
            }
            let mut notified: std::collections::HashSet<u32> = Default::default();
            let mut released: Vec<usize> = Vec::new();
            for (lo, hi) in ranges {
                let mut v = lo;
                loop { notified.insert(v); if v == hi { break; } v = v.wrapping_add(1); }
                let before = released.len();
                t.notify(lo, hi, &mut released);
                for &id in &released[before..] {
                    prop_assert!(needs[id].iter().all(|v| notified.contains(v)),
                        "message {} released before all its values were notified", id);
                }
                // Nothing complete may be left behind.
                for (id, need) in needs.iter().enumerate() {
                    if need.iter().all(|v| notified.contains(v)) {
                        prop_assert!(released.contains(&id), "message {} complete but not released", id);
                    }
                }
            }
            prop_assert_eq!(t.in_flight(), 0);
            prop_assert_eq!(t.unmatched(), 0);
        }
    }
}
