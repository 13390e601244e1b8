//! Panic-free fixed-offset field access shared by the wire formats.
//!
//! Every helper takes a byte slice and an offset. Out-of-range access never
//! panics: readers return zero and writers do nothing. Callers pass fixed-size
//! header arrays with constant offsets, so the fallback is unreachable in
//! practice; it exists so that no wire input can reach a panic.

/// Copies `N` bytes starting at `off`, or returns zeros if out of range.
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// Writes `src` at `off` if it fits; otherwise leaves `b` unchanged.
#[inline]
pub(crate) fn put(b: &mut [u8], off: usize, src: &[u8]) {
    if let Some(dst) = off
        .checked_add(src.len())
        .and_then(|end| b.get_mut(off..end))
    {
        dst.copy_from_slice(src);
    }
}

/// Reads one byte, or zero if out of range.
#[inline]
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Big-endian `u16` (iSCSI byte order).
#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(array(b, off))
}

/// Big-endian 24-bit value in the low bits of a `u32`.
#[inline]
pub(crate) fn be24(b: &[u8], off: usize) -> u32 {
    let [x, y, z] = array::<3>(b, off);
    u32::from_be_bytes([0, x, y, z])
}

/// Big-endian `u32`.
#[inline]
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(array(b, off))
}

/// Writes a big-endian `u16`.
#[inline]
pub(crate) fn put_be16(b: &mut [u8], off: usize, v: u16) {
    put(b, off, &v.to_be_bytes());
}

/// Writes the low 24 bits of `v` big-endian.
#[inline]
pub(crate) fn put_be24(b: &mut [u8], off: usize, v: u32) {
    let [_, x, y, z] = v.to_be_bytes();
    put(b, off, &[x, y, z]);
}

/// Writes a big-endian `u32`.
#[inline]
pub(crate) fn put_be32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_be_bytes());
}

/// Little-endian `u16` (NVMe byte order).
#[inline]
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(array(b, off))
}

/// Little-endian `u32`.
#[inline]
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(array(b, off))
}

/// Writes a little-endian `u16`.
#[inline]
pub(crate) fn put_le16(b: &mut [u8], off: usize, v: u16) {
    put(b, off, &v.to_le_bytes());
}

/// Writes a little-endian `u32`.
#[inline]
pub(crate) fn put_le32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_reads_are_zero_and_writes_are_ignored() {
        let mut b = [0xAAu8; 4];
        assert_eq!(be32(&b, 1), 0);
        assert_eq!(le16(&b, usize::MAX), 0);
        assert_eq!(u8_at(&b, 4), 0);
        put_be32(&mut b, 2, 0);
        put_le32(&mut b, usize::MAX - 1, 0);
        assert_eq!(b, [0xAA; 4]);
    }

    #[test]
    fn byte_orders() {
        let mut b = [0u8; 8];
        put_be24(&mut b, 0, 0x0012_3456);
        assert_eq!(&b[..3], &[0x12, 0x34, 0x56]);
        assert_eq!(be24(&b, 0), 0x12_3456);
        put_le32(&mut b, 4, 0x0102_0304);
        assert_eq!(&b[4..], &[4, 3, 2, 1]);
        assert_eq!(le32(&b, 4), 0x0102_0304);
        put_be16(&mut b, 0, 0xBEEF);
        assert_eq!(be16(&b, 0), 0xBEEF);
    }
}
