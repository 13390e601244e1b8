//! Read data a connection sends from where the volume keeps it, instead of
//! reading it into leased buffers first: a memory-backed file's pages (by
//! `sendfile`) or a memory volume's store (by `sendmsg`, see
//! [`MemoryRange`]). Neither holds a pool lease.

use crate::file::FileRange;
use crate::memory::MemoryRange;

/// Where a read's data is sent from (see the module comment).
#[derive(Debug, Clone)]
pub enum DirectRange {
    /// Pages of a file in memory (tmpfs, ramfs), sent with `sendfile`.
    File(FileRange),
    /// Bytes of a memory volume's store, sent by a copying `sendmsg`.
    Memory(MemoryRange),
}

impl DirectRange {
    /// Bytes in the range.
    pub fn len(&self) -> usize {
        match self {
            DirectRange::File(f) => f.len(),
            DirectRange::Memory(m) => m.len(),
        }
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
