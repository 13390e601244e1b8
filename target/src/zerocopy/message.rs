//! An outbound message: protocol header bytes interleaved with ranges of a
//! command's payload, written to the socket as one unit.

use std::io::IoSlice;
use std::marker::PhantomData;

use smallvec::SmallVec;
use zctarget_backends::{DirectRange, SegmentList};

/// Most iovecs handed to one `sendmsg` (the kernel's `UIO_MAXIOV` is 1024).
pub(crate) const MAX_IOVECS: usize = 256;

/// Initial capacity of a message's inline (header) area. One page holds the
/// headers, digests and padding of dozens of PDUs; a message with more
/// (a large read cut into many small PDUs) grows it.
pub const INLINE_CAPACITY: usize = 4096;

/// Largest inline area: bounds what one message may carry in headers (a
/// 64 MiB read in 512-byte PDUs with both digests needs ~7 MiB).
pub const INLINE_LIMIT: usize = 8 << 20;

/// Heap storage for header bytes. It only grows while the message is being
/// built, never after submission, so its address is stable while a
/// zero-copy send references it; recycled by the sender (keeping its
/// capacity), so steady state allocates nothing per message.
pub(crate) type InlineBuf = Vec<u8>;

/// One piece of a message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// `len` bytes of the inline area from `start`.
    Inline { start: u32, len: u32 },
    /// `len` payload bytes from payload offset `offset`.
    Payload { offset: u32, len: u32 },
    /// `len` bytes of the message's file range from `offset` in it, sent
    /// with `sendfile` (never part of a `sendmsg`).
    File { offset: u32, len: u32 },
    /// `len` bytes of the message's memory-volume range from `offset` in
    /// it, described to `sendmsg` like payload.
    Memory { offset: u32, len: u32 },
}

impl Part {
    pub(crate) fn len(&self) -> usize {
        match *self {
            Part::Inline { len, .. }
            | Part::Payload { len, .. }
            | Part::File { len, .. }
            | Part::Memory { len, .. } => len as usize,
        }
    }
}

/// Error building a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// The headers do not fit in the inline area.
    #[error("message headers exceed {INLINE_LIMIT} bytes")]
    InlineFull,
    /// A payload range lies outside the message's payload.
    #[error("payload range {offset}+{len} outside payload of {payload} bytes")]
    PayloadRange {
        /// Requested offset.
        offset: usize,
        /// Requested length.
        len: usize,
        /// Payload length.
        payload: usize,
    },
}

/// Headers plus payload ranges; built with [`ZeroCopySender::message`] and
/// handed to [`ZeroCopySender::submit`].
///
/// [`ZeroCopySender::message`]: super::ZeroCopySender::message
/// [`ZeroCopySender::submit`]: super::ZeroCopySender::submit
#[derive(Debug)]
pub struct Message {
    pub(crate) inline: InlineBuf,
    pub(crate) inline_len: usize,
    pub(crate) parts: SmallVec<[Part; 8]>,
    pub(crate) payload: SegmentList,
    /// Payload sent from where the volume keeps it instead (see
    /// [`Message::from_direct`]).
    pub(crate) direct: Option<DirectRange>,
    pub(crate) token: u64,
    pub(crate) total: usize,
    /// Bytes already accepted by the kernel.
    pub(crate) written: usize,
    /// `MSG_ZEROCOPY` calls that carried bytes of this message.
    pub(crate) zerocopy_calls: u32,
    /// Decided at submit: goes by `MSG_ZEROCOPY`.
    pub(crate) zerocopy: bool,
    /// Registered with the notification tracker.
    pub(crate) tracked: bool,
    /// Handed back as a [`Completion`](super::Completion) once released;
    /// otherwise its payload is just dropped then (back to the pool).
    pub(crate) notify: bool,
}

impl Message {
    pub(crate) fn new(mut inline: InlineBuf, payload: SegmentList, token: u64) -> Self {
        inline.clear();
        Self {
            inline,
            inline_len: 0,
            parts: SmallVec::new(),
            payload,
            direct: None,
            token,
            total: 0,
            written: 0,
            zerocopy_calls: 0,
            zerocopy: false,
            tracked: false,
            notify: true,
        }
    }

    /// Appends header bytes (copied into the inline area: headers are
    /// control data, not payload).
    pub fn push_header(&mut self, bytes: &[u8]) -> Result<&mut Self, MessageError> {
        let start = self.inline_len;
        let end = start + bytes.len();
        if end > INLINE_LIMIT {
            return Err(MessageError::InlineFull);
        }
        self.inline.extend_from_slice(bytes);
        self.inline_len = end;
        self.push_part(Part::Inline {
            start: start as u32,
            len: bytes.len() as u32,
        });
        Ok(self)
    }

    /// Makes `range` the message's payload (its payload list stays
    /// empty): [`push_payload`](Self::push_payload) then refers to its
    /// bytes — a file's, which go from the page cache to the socket by
    /// `sendfile`, or a memory volume's store, described to `sendmsg`. Such
    /// a message is never sent `MSG_ZEROCOPY` and holds no lease, so it is
    /// released once written.
    pub fn from_direct(&mut self, range: DirectRange) -> &mut Self {
        // Payload parts pushed before would name the leases' bytes.
        debug_assert!(
            !self.parts.iter().any(|p| matches!(p, Part::Payload { .. })),
            "from_direct after push_payload"
        );
        self.direct = Some(range);
        self
    }

    /// Whether the payload comes from a direct range (see
    /// [`Message::from_direct`]).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Appends payload bytes `[offset, offset + len)` (by reference: these
    /// bytes go from the leases — or the file — to the kernel without a
    /// userspace copy).
    pub fn push_payload(&mut self, offset: usize, len: usize) -> Result<&mut Self, MessageError> {
        let payload = self
            .direct
            .as_ref()
            .map_or(self.payload.len(), DirectRange::len);
        if offset.checked_add(len).is_none_or(|end| end > payload) {
            return Err(MessageError::PayloadRange {
                offset,
                len,
                payload,
            });
        }
        let (offset, len) = (offset as u32, len as u32);
        self.push_part(match self.direct {
            Some(DirectRange::File(_)) => Part::File { offset, len },
            Some(DirectRange::Memory(_)) => Part::Memory { offset, len },
            None => Part::Payload { offset, len },
        });
        Ok(self)
    }

    /// When byte `at` of the message lies in a file part: the file offset
    /// of that byte and the bytes left in the part.
    pub(crate) fn file_at(&self, at: usize) -> Option<(u64, usize)> {
        let Some(DirectRange::File(file)) = &self.direct else {
            return None;
        };
        let mut start = 0usize;
        for part in &self.parts {
            let end = start + part.len();
            if at < end {
                return match *part {
                    Part::File { offset, .. } => Some((
                        file.offset() + u64::from(offset) + (at - start) as u64,
                        end - at,
                    )),
                    _ => None,
                };
            }
            start = end;
        }
        None
    }

    fn push_part(&mut self, part: Part) {
        if part.len() == 0 {
            return;
        }
        self.total += part.len();
        self.parts.push(part);
    }

    /// Total bytes the message puts on the wire.
    pub fn wire_len(&self) -> usize {
        self.total
    }

    /// Payload bytes referenced by the message.
    pub fn payload_bytes(&self) -> usize {
        self.bytes_of(|p| matches!(p, Part::Payload { .. }))
    }

    /// Bytes the message sends from a memory volume's store.
    pub fn store_bytes(&self) -> usize {
        self.bytes_of(|p| matches!(p, Part::Memory { .. }))
    }

    /// Bytes of the parts `pick` chooses.
    fn bytes_of(&self, pick: impl Fn(&Part) -> bool) -> usize {
        self.parts.iter().filter(|p| pick(p)).map(Part::len).sum()
    }

    /// Nobody waits for this message's release: once released its payload
    /// goes back to the pool and no [`Completion`](super::Completion) is
    /// queued for it.
    pub fn quiet(&mut self) -> &mut Self {
        self.notify = false;
        self
    }

    /// The caller's token for this message.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The payload the message carries.
    pub fn payload(&self) -> &SegmentList {
        &self.payload
    }
}

/// One iovec of a `sendmsg`, borrowing what it describes for `'a`: what
/// `IoSlice` is, but also made from memory no Rust reference may cover (a
/// memory volume's store, which other threads write with atomic stores;
/// only the kernel reads it). Same layout as `libc::iovec`.
#[repr(transparent)]
pub(crate) struct Iov<'a> {
    raw: libc::iovec,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> Iov<'a> {
    /// The bytes of `b`.
    fn bytes(b: &'a [u8]) -> Self {
        Self {
            raw: libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: b.len(),
            },
            _borrow: PhantomData,
        }
    }

    /// The bytes of `s` (valid for `'a`, however briefly `s` is borrowed).
    fn slice(s: &IoSlice<'a>) -> Self {
        Self {
            raw: libc::iovec {
                iov_base: s.as_ptr().cast_mut().cast(),
                iov_len: s.len(),
            },
            _borrow: PhantomData,
        }
    }

    /// `len` bytes of `range` from byte `at` (its store lives while the
    /// range is borrowed).
    fn memory(range: &'a zctarget_backends::memory::MemoryRange, at: usize, len: usize) -> Self {
        Self {
            raw: range.iovec(at, len),
            _borrow: PhantomData,
        }
    }

    /// Bytes described.
    pub(crate) fn len(&self) -> usize {
        self.raw.iov_len
    }
}

/// Appends iovecs for `msg` from byte `skip` on, up to its next file part.
/// Returns bytes described and whether a file part stopped it.
pub(crate) fn describe<'a>(
    msg: &'a Message,
    skip: usize,
    iov: &mut SmallVec<[Iov<'a>; MAX_IOVECS]>,
) -> (usize, bool) {
    let mut skip = skip;
    let mut described = 0;
    for part in &msg.parts {
        if iov.len() >= MAX_IOVECS {
            break;
        }
        let len = part.len();
        if skip >= len {
            skip -= len;
            continue;
        }
        match *part {
            Part::Inline { start, len } => {
                let (s, l) = (start as usize + skip, len as usize - skip);
                if let Some(bytes) = msg.inline.get(s..s + l) {
                    iov.push(Iov::bytes(bytes));
                    described += l;
                }
            }
            Part::Payload { offset, len } => {
                let room = MAX_IOVECS - iov.len();
                let mut tmp: SmallVec<[IoSlice<'a>; 16]> = SmallVec::new();
                msg.payload
                    .io_slices_range(offset as usize + skip, len as usize - skip, &mut tmp);
                for s in tmp.iter().take(room) {
                    described += s.len();
                    iov.push(Iov::slice(s));
                }
            }
            Part::Memory { offset, len } => {
                if let Some(DirectRange::Memory(m)) = &msg.direct {
                    let v = Iov::memory(m, offset as usize + skip, len as usize - skip);
                    described += v.len();
                    iov.push(v);
                }
            }
            Part::File { .. } => return (described, true),
        }
        skip = 0;
    }
    (described, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_beyond_one_page_grow_the_inline_area_up_to_the_limit() {
        let mut msg = Message::new(Vec::with_capacity(INLINE_CAPACITY), SegmentList::new(), 7);
        let bhs = [0x25u8; 48];
        // 200 PDU headers: more than a page, as a large read in small
        // Data-In PDUs needs.
        for _ in 0..200 {
            msg.push_header(&bhs).expect("fits");
        }
        assert_eq!(msg.wire_len(), 200 * 48);
        assert!(msg.inline.iter().all(|&b| b == 0x25));
        let big = vec![0u8; INLINE_LIMIT];
        assert_eq!(msg.push_header(&big).err(), Some(MessageError::InlineFull));
        // A recycled buffer starts empty.
        let recycled = Message::new(msg.inline, SegmentList::new(), 8);
        assert_eq!(recycled.inline_len, 0);
        assert!(recycled.inline.is_empty());
    }
}
