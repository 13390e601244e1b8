//! `SegmentList`: the bvec analogue. An ordered list of `(lease, offset, len)`
//! describing one command's payload.
//!
//! A `SegmentList` owns its leases. It is *moved* into every asynchronous
//! operation (disk read/write, zero-copy send) and handed back by that
//! operation's completion, so no operation can outlive the memory it uses and
//! no memory can be reused while an operation holds it.

use std::io::{IoSlice, IoSliceMut};

use smallvec::SmallVec;

use crate::pool::Lease;

/// Segments stored inline before a list spills to the heap. With 128 KiB
/// chunks this covers 1 MiB commands without allocating.
pub const INLINE_SEGMENTS: usize = 8;

/// One contiguous piece of a payload: `len` bytes at `offset` in `lease`.
#[derive(Debug)]
pub struct Segment {
    lease: Lease,
    offset: u32,
    len: u32,
}

impl Segment {
    /// A segment over `lease[offset..offset + len]`, clamped to the lease.
    pub fn new(lease: Lease, offset: usize, len: usize) -> Self {
        let cap = lease.capacity();
        let offset = offset.min(cap);
        let len = len.min(cap - offset);
        Self {
            lease,
            offset: offset as u32,
            len: len as u32,
        }
    }

    /// The lease this segment lives in.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Mutable access to the lease (for I/O that fills it).
    pub fn lease_mut(&mut self) -> &mut Lease {
        &mut self.lease
    }

    /// Offset of the segment within its lease.
    pub fn offset(&self) -> usize {
        self.offset as usize
    }

    /// Length of the segment in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment's bytes.
    pub fn as_slice(&self) -> &[u8] {
        let (o, l) = (self.offset(), self.len());
        self.lease.as_slice().get(o..o + l).unwrap_or(&[])
    }

    /// The segment's bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let (o, l) = (self.offset(), self.len());
        self.lease
            .as_mut_slice()
            .get_mut(o..o + l)
            .unwrap_or(&mut [])
    }

    /// Gives the lease back (dropping it returns the chunk to the pool).
    pub fn into_lease(self) -> Lease {
        self.lease
    }

    /// Splits into `(lease, offset, len)` so an operation can own the lease;
    /// rebuild with [`Segment::new`].
    pub fn into_parts(self) -> (Lease, usize, usize) {
        let (o, l) = (self.offset(), self.len());
        (self.lease, o, l)
    }
}

/// Ordered payload segments of one command. See the module docs.
#[derive(Debug, Default)]
pub struct SegmentList {
    segments: SmallVec<[Segment; INLINE_SEGMENTS]>,
    len: usize,
}

impl SegmentList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A list from segments, in order.
    pub fn from_segments(segments: SmallVec<[Segment; INLINE_SEGMENTS]>) -> Self {
        let len = segments.iter().map(Segment::len).sum();
        Self { segments, len }
    }

    /// Appends a segment at the end.
    pub fn push(&mut self, segment: Segment) {
        self.len += segment.len();
        self.segments.push(segment);
    }

    /// Total payload bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The segments in order, mutably.
    pub fn segments_mut(&mut self) -> &mut [Segment] {
        &mut self.segments
    }

    /// Takes the segments out (for operations that work per segment); put
    /// them back with [`from_segments`](Self::from_segments).
    pub fn into_segments(self) -> SmallVec<[Segment; INLINE_SEGMENTS]> {
        self.segments
    }

    /// Quarantines every lease (see [`Lease::quarantine`]): the memory
    /// may still be referenced by the kernel and must never be reused.
    /// Returns the bytes withheld.
    pub fn quarantine(self) -> usize {
        self.into_segments()
            .into_iter()
            .map(|s| s.into_lease().quarantine())
            .sum()
    }

    /// Iterates over the payload as byte slices.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().map(Segment::as_slice)
    }

    /// Appends `IoSlice`s for payload bytes `[offset, offset + len)` to `out`
    /// (clamped to the list). Returns how many bytes were described.
    pub fn io_slices_range<'a, E: Extend<IoSlice<'a>>>(
        &'a self,
        offset: usize,
        len: usize,
        out: &mut E,
    ) -> usize {
        let mut skip = offset;
        let mut want = len;
        let mut described = 0;
        for seg in &self.segments {
            if want == 0 {
                break;
            }
            let s = seg.as_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let take = (s.len() - skip).min(want);
            if let Some(part) = s.get(skip..skip + take) {
                out.extend(std::iter::once(IoSlice::new(part)));
                described += take;
                want -= take;
            }
            skip = 0;
        }
        described
    }

    /// Appends `IoSliceMut`s for payload bytes `[offset, offset + len)` to
    /// `out`: used to receive data straight into the leases.
    pub fn io_slices_mut_range<'a, E: Extend<IoSliceMut<'a>>>(
        &'a mut self,
        offset: usize,
        len: usize,
        out: &mut E,
    ) -> usize {
        let mut skip = offset;
        let mut want = len;
        let mut described = 0;
        for seg in self.segments.iter_mut() {
            if want == 0 {
                break;
            }
            let s = seg.as_mut_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let take = (s.len() - skip).min(want);
            if let Some(part) = s.get_mut(skip..skip + take) {
                out.extend(std::iter::once(IoSliceMut::new(part)));
                described += take;
                want -= take;
            }
            skip = 0;
        }
        described
    }

    /// Copies `src` into the payload starting at byte `offset`. For tests,
    /// digests over control data and the memory backend — never the network
    /// data path. Returns bytes copied.
    pub fn copy_from_slice(&mut self, offset: usize, src: &[u8]) -> usize {
        let mut parts: SmallVec<[IoSliceMut<'_>; INLINE_SEGMENTS]> = SmallVec::new();
        self.io_slices_mut_range(offset, src.len(), &mut parts);
        let mut done = 0;
        for part in parts.iter_mut() {
            let n = part.len();
            if let (Some(dst), Some(s)) = (part.get_mut(..n), src.get(done..done + n)) {
                dst.copy_from_slice(s);
                done += n;
            }
        }
        done
    }

    /// Copies payload bytes starting at `offset` into `dst`. Same caveat as
    /// [`copy_from_slice`](Self::copy_from_slice). Returns bytes copied.
    pub fn copy_to_slice(&self, offset: usize, dst: &mut [u8]) -> usize {
        let mut parts: SmallVec<[IoSlice<'_>; INLINE_SEGMENTS]> = SmallVec::new();
        self.io_slices_range(offset, dst.len(), &mut parts);
        let mut done = 0;
        for part in &parts {
            let n = part.len();
            if let Some(d) = dst.get_mut(done..done + n) {
                d.copy_from_slice(part);
                done += n;
            }
        }
        done
    }

    /// The payload as one `Vec` (tests and diagnostics only).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.copy_to_slice(0, &mut v);
        v
    }

    /// Fills the whole payload with `byte`.
    pub fn fill(&mut self, byte: u8) {
        for seg in self.segments.iter_mut() {
            seg.as_mut_slice().fill(byte);
        }
    }

    /// Shortens the payload to `len` bytes, returning surplus whole leases to
    /// the pool.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let mut keep = len;
        let mut keep_segments = 0;
        for seg in self.segments.iter_mut() {
            if keep == 0 {
                break;
            }
            if seg.len() > keep {
                seg.len = keep as u32;
            }
            keep -= seg.len();
            keep_segments += 1;
        }
        self.segments.truncate(keep_segments);
        self.len = len;
    }

    /// CRC32C over `[offset, offset + len)` of the payload (the iSCSI and
    /// NVMe/TCP data digest): reads the data, copies nothing.
    pub fn crc32c_range(&self, offset: usize, len: usize) -> u32 {
        let mut parts: SmallVec<[IoSlice<'_>; INLINE_SEGMENTS]> = SmallVec::new();
        self.io_slices_range(offset, len, &mut parts);
        parts
            .iter()
            .fold(0u32, |crc, part| crc32c_append(crc, part))
    }
}

fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}
