//! An outbound message: protocol header bytes interleaved with ranges of a
//! command's payload, written to the socket as one unit.

use zctarget_backends::SegmentList;

use smallvec::SmallVec;

/// Capacity of a message's inline (header) area. One page holds the headers,
/// digests and padding of dozens of PDUs.
pub const INLINE_CAPACITY: usize = 4096;

/// Heap storage for header bytes. Boxed so that its address is stable while
/// a zero-copy send references it; recycled by the sender, never freed per
/// message.
pub(crate) type InlineBuf = Box<[u8; INLINE_CAPACITY]>;

/// One piece of a message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// `len` bytes of the inline area from `start`.
    Inline { start: u32, len: u32 },
    /// `len` payload bytes from payload offset `offset`.
    Payload { offset: u32, len: u32 },
}

impl Part {
    pub(crate) fn len(&self) -> usize {
        match *self {
            Part::Inline { len, .. } | Part::Payload { len, .. } => len as usize,
        }
    }
}

/// Error building a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// The headers do not fit in the inline area.
    #[error("message headers exceed {INLINE_CAPACITY} bytes")]
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
}

impl Message {
    pub(crate) fn new(inline: InlineBuf, payload: SegmentList, token: u64) -> Self {
        Self {
            inline,
            inline_len: 0,
            parts: SmallVec::new(),
            payload,
            token,
            total: 0,
            written: 0,
            zerocopy_calls: 0,
            zerocopy: false,
            tracked: false,
        }
    }

    /// Appends header bytes (copied into the inline area: headers are
    /// control data, not payload).
    pub fn push_header(&mut self, bytes: &[u8]) -> Result<&mut Self, MessageError> {
        let start = self.inline_len;
        let end = start + bytes.len();
        let dst = self
            .inline
            .get_mut(start..end)
            .ok_or(MessageError::InlineFull)?;
        dst.copy_from_slice(bytes);
        self.inline_len = end;
        self.push_part(Part::Inline {
            start: start as u32,
            len: bytes.len() as u32,
        });
        Ok(self)
    }

    /// Appends payload bytes `[offset, offset + len)` (by reference: these
    /// bytes go from the leases to the kernel without a userspace copy).
    pub fn push_payload(&mut self, offset: usize, len: usize) -> Result<&mut Self, MessageError> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.payload.len())
        {
            return Err(MessageError::PayloadRange {
                offset,
                len,
                payload: self.payload.len(),
            });
        }
        self.push_part(Part::Payload {
            offset: offset as u32,
            len: len as u32,
        });
        Ok(self)
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
        self.parts
            .iter()
            .map(|p| match p {
                Part::Payload { len, .. } => *len as usize,
                Part::Inline { .. } => 0,
            })
            .sum()
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
