//! Naming the gateway a released lock is for. The owner writes the name
//! into the image's metadata (`rbd_metadata_set`, which needs the lock it
//! still holds) just before it releases; a follower that finds the lock
//! free reads it: the named gateway takes the lock at once, the others
//! leave it to that one for a while. The image is the only thing every
//! gateway of a cluster shares, so it carries the message; the new owner
//! removes it.

use std::ffi::c_char;

use super::client::cstr;
use super::{Image, RbdError};

/// The image metadata key holding the gateway a released lock is for.
pub const HANDOVER_KEY: &str = "zctarget_handover_to";

/// Longest gateway id read back (config ids are short; a longer value is
/// not ours).
const MAX_VALUE: usize = 256;

impl Image {
    /// Names `gateway` as the one the lock is released for. Call while
    /// holding the lock, right before [`release`](Self::release).
    pub fn name_handover(&self, gateway: &str) -> Result<(), RbdError> {
        let key = cstr("metadata key", HANDOVER_KEY)?;
        let value = cstr("gateway id", gateway)?;
        // SAFETY: an open image; librbd copies both NUL-terminated strings.
        let rc =
            unsafe { (self.lib().rbd_metadata_set)(self.handle, key.as_ptr(), value.as_ptr()) };
        if rc < 0 {
            return Err(self.error("naming the next owner in the metadata of", rc));
        }
        Ok(())
    }

    /// The gateway the last release named, if any.
    pub fn handover_target(&self) -> Result<Option<String>, RbdError> {
        let key = cstr("metadata key", HANDOVER_KEY)?;
        let mut buf = [0 as c_char; MAX_VALUE];
        let mut len: libc::size_t = buf.len();
        // SAFETY: an open image; `buf` has room for `len` bytes, which
        // librbd fills with a NUL-terminated value (or answers ERANGE).
        let rc = unsafe {
            (self.lib().rbd_metadata_get)(self.handle, key.as_ptr(), buf.as_mut_ptr(), &mut len)
        };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        if rc < 0 {
            return Err(self.error("reading the next owner from the metadata of", rc));
        }
        let bytes: Vec<u8> = buf
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let name = String::from_utf8_lossy(&bytes).into_owned();
        Ok((!name.is_empty()).then_some(name))
    }

    /// Removes the name (the new owner, once it holds the lock).
    pub fn clear_handover(&self) -> Result<(), RbdError> {
        let key = cstr("metadata key", HANDOVER_KEY)?;
        // SAFETY: an open image; librbd copies the key.
        let rc = unsafe { (self.lib().rbd_metadata_remove)(self.handle, key.as_ptr()) };
        if rc < 0 && rc != -libc::ENOENT {
            return Err(self.error("clearing the next owner in the metadata of", rc));
        }
        Ok(())
    }
}
