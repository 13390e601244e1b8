//! NVMe/TCP header and data digests (TCP Transport 1.0 §3.6.2, HDGST and DDGST): CRC32C,
//! sent least significant byte first like iSCSI's. The header digest covers
//! HLEN bytes; the data digest covers the PDU data only (NVMe/TCP pads
//! before the data, not after it).

pub use crate::iscsi::digest::{from_wire, to_wire, verify, DigestMismatch, DIGEST_LEN};

/// Header digest over the first `hlen` bytes of a PDU.
pub fn header_digest(header: &[u8]) -> u32 {
    crc32c::crc32c(header)
}

/// Data digest over contiguous PDU data.
pub fn data_digest(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Incremental data digest for data received in pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataDigest {
    crc: u32,
}

impl DataDigest {
    /// Starts a digest.
    pub const fn new() -> Self {
        DataDigest { crc: 0 }
    }

    /// Adds the next piece of data.
    pub fn update(&mut self, piece: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, piece);
    }

    /// The digest.
    pub const fn finish(self) -> u32 {
        self.crc
    }
}
