//! Little-endian helpers the NVMe structures need beyond [`crate::wire`].

pub(crate) use crate::wire::{array, le16, le32, put, put_le16, put_le32, u8_at};

/// Little-endian `u64`, zero if out of range.
#[inline]
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(array(b, off))
}

/// Writes a little-endian `u64` if it fits.
#[inline]
pub(crate) fn put_le64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes());
}

/// Writes a little-endian `u128` if it fits.
#[inline]
pub(crate) fn put_le128(b: &mut [u8], off: usize, v: u128) {
    put(b, off, &v.to_le_bytes());
}

/// Writes one byte if it fits.
#[inline]
pub(crate) fn put_u8(b: &mut [u8], off: usize, v: u8) {
    put(b, off, &[v]);
}

/// Writes `s` into the `len`-byte field at `off`, truncated, and pads the rest
/// with `pad` (ASCII fields are space padded, NQNs NUL padded; Base 2.0
/// §1.5 "ASCII string" / "UTF-8 string").
pub(crate) fn put_padded(b: &mut [u8], off: usize, len: usize, s: &str, pad: u8) {
    let Some(end) = off.checked_add(len) else {
        return;
    };
    if let Some(field) = b.get_mut(off..end) {
        field.fill(pad);
        let n = s.len().min(len);
        if let (Some(dst), Some(src)) = (field.get_mut(..n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
        }
    }
}

/// Reads a NUL-terminated (or field-filling) byte string at `off..off+len`.
/// Returns `None` if the field has no NUL terminator.
pub(crate) fn nul_terminated(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    let field = b.get(off..off.checked_add(len)?)?;
    let n = field.iter().position(|&c| c == 0)?;
    field.get(..n)
}
