//! The memory backend: a volume held in RAM, for tests. Copies freely —
//! it is not on any production data path.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{check_range, Backend, BackendInfo};
use crate::SegmentList;

/// The shared bytes of a memory volume.
#[derive(Debug)]
pub struct MemoryStore {
    bytes: Mutex<Vec<u8>>,
    write_delay: Duration,
}

impl MemoryStore {
    /// A zeroed store of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: Mutex::new(vec![0; capacity]),
            write_delay: Duration::ZERO,
        }
    }

    /// Every write waits `delay` before it lands (a slow disk, for tests).
    pub fn with_write_delay(mut self, delay: Duration) -> Self {
        self.write_delay = delay;
        self
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> io::Result<R> {
        let mut guard = self
            .bytes
            .lock()
            .map_err(|_| io::Error::other("memory volume lock poisoned"))?;
        Ok(f(&mut guard))
    }
}

/// A per-reactor handle on a memory volume.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    pub(crate) info: BackendInfo,
    pub(crate) store: Arc<MemoryStore>,
}

impl Backend for MemoryBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn read(&self, offset: u64, mut buf: SegmentList) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_range(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        let r = self.store.with(|bytes| {
            let start = offset as usize;
            if let Some(src) = bytes.get(start..start + buf.len()) {
                buf.copy_from_slice(0, src);
            }
        });
        (buf, r)
    }

    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        _fua: bool,
    ) -> (SegmentList, io::Result<()>) {
        if let Err(e) = crate::backend::check_write(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        if !self.store.write_delay.is_zero() {
            tokio::time::sleep(self.store.write_delay).await;
        }
        let r = self.store.with(|bytes| {
            let start = offset as usize;
            if let Some(dst) = bytes.get_mut(start..start + buf.len()) {
                buf.copy_to_slice(0, dst);
            }
        });
        (buf, r)
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        crate::backend::check_write(&self.info, offset, len)?;
        self.store.with(|bytes| {
            if let Some(r) = bytes.get_mut(offset as usize..(offset + len) as usize) {
                r.fill(0);
            }
        })
    }
}
