//! CRC32C header and data digests and 4-byte padding (RFC 7143 §11.1,
//! §13.1; examples in RFC 3720 Appendix B.4).
//!
//! The digest is CRC32C (Castagnoli, generator 0x11edc6f41) computed by the
//! `crc32c` crate, which uses the SSE4.2 / ARMv8 CRC instructions where the
//! CPU has them. On the wire the 32-bit CRC is sent least significant byte
//! first: RFC 3720 B.4 gives the CRC of 32 zero bytes as the byte sequence
//! `aa 36 91 8a`, i.e. the value 0x8a9136aa in little-endian order. This is
//! what the Linux initiator and target send.

use crate::iscsi::bhs::BHS_LEN;

/// Length of a header or data digest.
pub const DIGEST_LEN: usize = 4;

/// Zero bytes used as padding (RFC 7143 §11.1: padding bytes SHOULD be 0).
pub const PAD_BYTES: [u8; 3] = [0; 3];

/// Number of zero bytes that pad a segment of `len` bytes to a multiple of 4
/// (RFC 7143 §11.1).
pub const fn padding_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// `len` rounded up to a multiple of 4, saturating at the largest such
/// multiple.
pub const fn padded_len(len: usize) -> usize {
    match len.checked_add(padding_len(len)) {
        Some(padded) => padded,
        None => usize::MAX & !3,
    }
}

/// The padding bytes to send after a data segment of `len` bytes.
pub fn padding(len: usize) -> &'static [u8] {
    PAD_BYTES.get(..padding_len(len)).unwrap_or(&[])
}

/// CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Header digest over the BHS and any AHS (RFC 7143 §11.1).
pub fn header_digest(bhs: &[u8; BHS_LEN], ahs: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(bhs), ahs)
}

/// Data digest over a contiguous data segment and its padding (RFC 7143
/// §13.1: padding bytes are covered by the CRC).
pub fn data_digest(data: &[u8]) -> u32 {
    let mut d = DataDigest::new();
    d.update(data);
    d.finish()
}

/// Wire bytes of a digest value (least significant byte first, see the
/// module docs).
pub const fn to_wire(digest: u32) -> [u8; DIGEST_LEN] {
    digest.to_le_bytes()
}

/// Digest value of four wire bytes.
pub const fn from_wire(bytes: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// A received digest did not match the one computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("digest mismatch: received {received:#010x}, computed {computed:#010x}")]
pub struct DigestMismatch {
    /// The digest on the wire.
    pub received: u32,
    /// The digest of the bytes received.
    pub computed: u32,
}

/// Compares a received digest (wire bytes) with a computed one.
pub fn verify(computed: u32, received: [u8; DIGEST_LEN]) -> Result<(), DigestMismatch> {
    let received = from_wire(received);
    if received == computed {
        Ok(())
    } else {
        Err(DigestMismatch { received, computed })
    }
}

/// Incremental data digest over a data segment that arrives in pieces (for
/// instance a segment list of leased buffers). Padding is added by
/// [`DataDigest::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataDigest {
    crc: u32,
    len: usize,
}

impl DataDigest {
    /// Starts a digest.
    pub const fn new() -> Self {
        DataDigest { crc: 0, len: 0 }
    }

    /// Adds the next piece of the data segment.
    pub fn update(&mut self, piece: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, piece);
        self.len = self.len.wrapping_add(piece.len());
    }

    /// Bytes digested so far (without padding).
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was digested yet.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the zero padding and returns the digest.
    pub fn finish(self) -> u32 {
        crc32c::crc32c_append(self.crc, padding(self.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_math() {
        assert_eq!(
            (0..9).map(padding_len).collect::<Vec<_>>(),
            [0, 3, 2, 1, 0, 3, 2, 1, 0]
        );
        assert_eq!(padded_len(5), 8);
        assert_eq!(padded_len(usize::MAX), usize::MAX & !3);
        assert_eq!(padding(6), &[0, 0]);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0u8..=250).collect();
        let mut d = DataDigest::new();
        for chunk in data.chunks(7) {
            d.update(chunk);
        }
        assert_eq!(d.len(), data.len());
        assert_eq!(d.finish(), data_digest(&data));
        let mut padded = data.clone();
        padded.extend_from_slice(padding(data.len()));
        assert_eq!(data_digest(&data), crc32c(&padded));
    }

    #[test]
    fn verify_reports_both_values() {
        assert_eq!(verify(0x8a91_36aa, [0xaa, 0x36, 0x91, 0x8a]), Ok(()));
        assert_eq!(
            verify(1, [2, 0, 0, 0]),
            Err(DigestMismatch {
                received: 2,
                computed: 1
            })
        );
    }
}
