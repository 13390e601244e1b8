//! GET LBA STATUS parameter data (SBC-3 §5.6).

use crate::wire::put_be32;

/// PROVISIONING STATUS of an LBA status descriptor (SBC-3 table 37).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProvisioningStatus {
    /// Mapped (or unknown).
    Mapped = 0,
    /// Deallocated.
    Deallocated = 1,
    /// Anchored.
    Anchored = 2,
}

/// Encodes GET LBA STATUS parameter data from `(lba, blocks, status)`
/// descriptors (status as in [`ProvisioningStatus`]), truncated to
/// `alloc_len`. The first descriptor should start at the requested LBA.
pub fn encode_lba_status(_start: u64, descriptors: &[(u64, u32, u8)], alloc_len: u32) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    for &(lba, n, status) in descriptors.iter().take(1 << 16) {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&lba.to_be_bytes());
        e[8..12].copy_from_slice(&n.to_be_bytes());
        e[12] = status & 0x0F;
        d.extend_from_slice(&e);
    }
    let len = u32::try_from(d.len().saturating_sub(4)).unwrap_or(u32::MAX);
    put_be32(&mut d, 0, len);
    super::cdb::truncate(d, alloc_len)
}
