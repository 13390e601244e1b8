//! The memory backend: a RAM disk (LIO's `rd_mcp`, SPDK's malloc bdev).
//!
//! - **Committed at start.** Every byte is written once when the volume
//!   opens, so its RAM is taken then, not on some later write that could
//!   find memory exhausted, and a read never lands on the kernel's shared
//!   zero page (which would make an unwritten RAM disk look faster than a
//!   written one). Transparent huge pages are asked for first: a random 4 KiB
//!   read then walks one TLB entry per 2 MiB instead of one per page.
//! - **No lock.** Reactors share the bytes as 64-bit atomic words, copied
//!   with relaxed loads and stores: concurrent commands on one range may
//!   interleave at 8-byte granularity (a read sent from the store, below,
//!   at byte granularity: the kernel copies it as raw memory), as they may
//!   in a page cache, and never wait for each other. A copy that starts or
//!   ends inside a word splices its bytes in with a compare-and-swap.
//!
//! A read whose send copies anyway is sent from the store itself
//! ([`MemoryRange`]): the kernel's copy into the socket is its only copy.
//! Otherwise the copy between the store and a command's leased buffers is
//! the data path's one copy for this backend (the file backend's is the
//! kernel's page-cache copy); the leases then leave by the zero-copy
//! sender.

use std::collections::TryReserveError;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{check_range, Backend, BackendInfo};
use crate::SegmentList;

const WORD: usize = 8;

/// The shared bytes of a memory volume.
pub struct MemoryStore {
    words: Box<[AtomicU64]>,
    write_delay: Duration,
}

impl std::fmt::Debug for MemoryStore {
    // Not the derived one: that would print every word of the RAM disk.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("bytes", &(self.words.len() * WORD))
            .field("write_delay", &self.write_delay)
            .finish()
    }
}

impl MemoryStore {
    /// A zeroed store of `capacity` bytes, its memory committed now; an
    /// error, not an abort, when the address space cannot hold it.
    pub fn new(capacity: usize) -> Result<Self, TryReserveError> {
        let n = capacity.div_ceil(WORD);
        let mut words: Vec<AtomicU64> = Vec::new();
        words.try_reserve_exact(n)?;
        advise_huge_pages(&words);
        // Writes every word: commits the pages (see the module comment).
        words.resize_with(n, || AtomicU64::new(0));
        Ok(Self {
            words: words.into_boxed_slice(),
            write_delay: Duration::ZERO,
        })
    }

    /// Every write waits `delay` before it lands (a slow disk, for tests).
    pub fn with_write_delay(mut self, delay: Duration) -> Self {
        self.write_delay = delay;
        self
    }

    /// Copies the store's bytes from byte `at` into `dst`. The caller
    /// checked the range; bytes past the store's end are left as they are.
    fn load(&self, at: usize, dst: &mut [u8]) {
        // The three parts' lengths add up to `dst.len()` (`split_words`), so
        // neither split below can panic; the same holds in `store`.
        let (head, body, tail) = split_words(at, dst.len());
        let (d_head, rest) = dst.split_at_mut(head.len);
        let (d_body, d_tail) = rest.split_at_mut(body.len * WORD);
        self.read_part(head, d_head);
        if let Some(ws) = self.words.get(body.word..body.word + body.len) {
            for (d, w) in d_body.chunks_exact_mut(WORD).zip(ws) {
                d.copy_from_slice(&w.load(Relaxed).to_ne_bytes());
            }
        }
        self.read_part(tail, d_tail);
    }

    /// Reads part of one word into `dst` (`part.len` bytes).
    fn read_part(&self, part: Part, dst: &mut [u8]) {
        let Some(w) = self.words.get(part.word).filter(|_| part.len > 0) else {
            return;
        };
        let bytes = w.load(Relaxed).to_ne_bytes();
        if let Some(src) = bytes.get(part.skip..part.skip + part.len) {
            dst.copy_from_slice(src);
        }
    }

    /// Copies `src` into the store from byte `at` (`None`: zeroes, `len`
    /// bytes). The caller checked the range.
    fn store(&self, at: usize, src: Option<&[u8]>, len: usize) {
        let (head, body, tail) = split_words(at, len);
        let (s_head, s_body, s_tail) = match src {
            Some(s) => {
                let (h, rest) = s.split_at(head.len);
                let (b, t) = rest.split_at(body.len * WORD);
                (Some(h), Some(b), Some(t))
            }
            None => (None, None, None),
        };
        self.splice(head, s_head);
        if let Some(ws) = self.words.get(body.word..body.word + body.len) {
            match s_body {
                Some(s) => {
                    for (w, b) in ws.iter().zip(s.chunks_exact(WORD)) {
                        let mut word = [0; WORD];
                        word.copy_from_slice(b);
                        w.store(u64::from_ne_bytes(word), Relaxed);
                    }
                }
                None => ws.iter().for_each(|w| w.store(0, Relaxed)),
            }
        }
        self.splice(tail, s_tail);
    }

    /// Writes part of one word, keeping its other bytes.
    fn splice(&self, part: Part, src: Option<&[u8]>) {
        let Some(w) = self.words.get(part.word).filter(|_| part.len > 0) else {
            return;
        };
        // A head or tail part lies inside one word (skip + len <= 8, see
        // `split_words`), and `src` is exactly its `len` bytes: these slices
        // cannot go out of range.
        let mut new = [0; WORD];
        if let Some(s) = src {
            new[..part.len].copy_from_slice(s);
        }
        let _ = w.fetch_update(Relaxed, Relaxed, |old| {
            let mut bytes = old.to_ne_bytes();
            bytes[part.skip..part.skip + part.len].copy_from_slice(&new[..part.len]);
            Some(u64::from_ne_bytes(bytes))
        });
    }
}

/// A range of a memory volume's store that a connection sends to its socket
/// as it is, instead of copying it into leased buffers first (SPDK's
/// zero-copy bdev read): the kernel's copy into the socket is then the
/// read's only copy. It holds the store, so the memory outlives every
/// queued message that refers to it.
///
/// The bytes may change while the range is queued: other reactors write the
/// store with atomic stores, and the kernel reads it as raw memory, as a
/// device would. A read sent this way returns what the store held when the
/// socket took it — before the read's completion, which goes behind it on
/// the same socket, can reach the host: a write the host issues after
/// seeing the completion never shows in the data. The frontends use a
/// range only for a send that copies (`block::direct_read`); a zero-copy
/// one would be as correct (TCP delivers in order, retransmissions
/// included) but could only be tested on a physical NIC, so there the
/// leased path stays: a copy into the lease, then a zero-copy send.
///
/// A queued range keeps the whole store alive: a volume removed while a
/// peer leaves its reads unread frees its memory only when the connection
/// lets go of them.
#[derive(Debug, Clone)]
pub struct MemoryRange {
    store: Arc<MemoryStore>,
    offset: usize,
    len: usize,
}

impl MemoryRange {
    /// The range `[offset, offset + len)` of `store`; `None` past its end.
    pub(crate) fn new(store: &Arc<MemoryStore>, offset: u64, len: usize) -> Option<Self> {
        let offset = usize::try_from(offset).ok()?;
        let end = offset.checked_add(len)?;
        (end <= store.words.len() * WORD).then(|| Self {
            store: Arc::clone(store),
            offset,
            len,
        })
    }

    /// Bytes in the range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An iovec over `len` bytes of the range from byte `at` (clamped to
    /// the range), for a `sendmsg`. The pointer is valid while `self` lives
    /// (it holds the store); no Rust reference to the bytes is made, since
    /// other threads may be storing to them.
    pub fn iovec(&self, at: usize, len: usize) -> libc::iovec {
        let at = at.min(self.len);
        let len = len.min(self.len - at);
        // In bounds: `new` checked offset + len against the store's size.
        let base = self.store.words.as_ptr().cast::<u8>();
        libc::iovec {
            iov_base: base.wrapping_add(self.offset + at).cast_mut().cast(),
            iov_len: len,
        }
    }
}

/// Part of a byte range in words: `len` bytes (or, for a body, words) from
/// word `word`, skipping `skip` bytes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    word: usize,
    skip: usize,
    len: usize,
}

/// Splits `len` bytes from byte `at` into the bytes before the first word
/// boundary, the whole words, and the bytes after the last.
fn split_words(at: usize, len: usize) -> (Part, Part, Part) {
    let skip = at % WORD;
    let head_len = if skip == 0 { 0 } else { (WORD - skip).min(len) };
    let head = Part {
        word: at / WORD,
        skip,
        len: head_len,
    };
    let body_at = at + head_len;
    let words = (len - head_len) / WORD;
    let body = Part {
        word: body_at / WORD,
        skip: 0,
        len: words,
    };
    let tail_at = body_at + words * WORD;
    let tail = Part {
        word: tail_at / WORD,
        skip: 0,
        len: len - head_len - words * WORD,
    };
    (head, body, tail)
}

/// Asks for transparent huge pages over the (not yet touched) allocation.
fn advise_huge_pages(words: &Vec<AtomicU64>) {
    const HUGE: usize = 2 << 20;
    let start = words.as_ptr() as usize;
    let end = start + words.capacity() * WORD;
    let first = start.next_multiple_of(HUGE);
    let last = end - end % HUGE;
    if last <= first {
        return;
    }
    // SAFETY: [first, last) lies inside the Vec's own allocation, which
    // outlives the call; MADV_HUGEPAGE only changes how the kernel backs
    // those pages, never their contents, and its failure (huge pages off)
    // is harmless, so the result is ignored.
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_HUGEPAGE,
        );
    }
}

/// A per-reactor handle on a memory volume.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    pub(crate) info: BackendInfo,
    pub(crate) store: Arc<MemoryStore>,
}

impl Backend for MemoryBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn read(&self, offset: u64, mut buf: SegmentList) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_range(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        let mut at = offset as usize;
        for seg in buf.segments_mut() {
            let dst = seg.as_mut_slice();
            self.store.load(at, dst);
            at += dst.len();
        }
        (buf, Ok(()))
    }

    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        _fua: bool,
    ) -> (SegmentList, io::Result<()>) {
        if let Err(e) = crate::backend::check_write(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        if !self.store.write_delay.is_zero() {
            tokio::time::sleep(self.store.write_delay).await;
        }
        let mut at = offset as usize;
        for src in buf.slices() {
            self.store.store(at, Some(src), src.len());
            at += src.len();
        }
        (buf, Ok(()))
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        crate::backend::check_write(&self.info, offset, len)?;
        self.store.store(offset as usize, None, len as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(s: &MemoryStore, len: usize) -> Vec<u8> {
        let mut out = vec![0xee; len];
        s.load(0, &mut out);
        out
    }

    #[test]
    fn a_new_store_reads_zeroes_and_rounds_up_to_whole_words() {
        let s = MemoryStore::new(13).expect("store");
        assert_eq!(s.words.len(), 2);
        assert_eq!(bytes(&s, 13), vec![0; 13]);
    }

    #[test]
    fn debug_names_the_size_not_the_bytes() {
        let s = MemoryStore::new(1 << 20).expect("store");
        let shown = format!("{s:?}");
        assert!(shown.contains("bytes: 1048576"), "{shown}");
        assert!(shown.len() < 100, "{shown}");
    }

    #[test]
    fn a_range_describes_its_bytes_of_the_store_and_no_more() {
        let s = Arc::new(MemoryStore::new(4096).expect("store"));
        let base = s.words.as_ptr() as usize;
        assert!(MemoryRange::new(&s, 4000, 97).is_none(), "past the end");
        let r = MemoryRange::new(&s, 1000, 96).expect("range");
        assert_eq!(r.len(), 96);
        let v = r.iovec(10, 20);
        assert_eq!((v.iov_base as usize - base, v.iov_len), (1010, 20));
        // Clamped to the range, never past it.
        let v = r.iovec(90, 20);
        assert_eq!((v.iov_base as usize - base, v.iov_len), (1090, 6));
        let v = r.iovec(200, 20);
        assert_eq!((v.iov_base as usize - base, v.iov_len), (1096, 0));
        // The range keeps the store alive.
        drop(s);
        assert_eq!(Arc::strong_count(&r.store), 1);
    }

    proptest! {
        /// Writes, zeroings and reads at any byte offset and length agree
        /// with a plain byte array: the partial words at either end keep
        /// their other bytes.
        #[test]
        fn copies_match_a_byte_array(
            ops in proptest::collection::vec((any::<bool>(), 0usize..200, 0usize..60, any::<u8>()), 1..40)
        ) {
            const CAP: usize = 264;
            let s = MemoryStore::new(CAP).expect("store");
            let mut model = vec![0u8; CAP];
            for (i, (zero, at, len, seed)) in ops.into_iter().enumerate() {
                let src: Vec<u8> = (0..len).map(|k| seed.wrapping_add(k as u8).wrapping_mul(i as u8 | 1)).collect();
                if zero {
                    s.store(at, None, len);
                    model[at..at + len].fill(0);
                } else {
                    s.store(at, Some(&src), len);
                    model[at..at + len].copy_from_slice(&src);
                }
                let mut got = vec![0xee; len + 3];
                let from = at.saturating_sub(3);
                s.load(from, &mut got);
                prop_assert_eq!(&got[..], &model[from..from + len + 3]);
            }
            prop_assert_eq!(bytes(&s, CAP), model);
        }
    }
}
