//! The null backend, for benchmarks: writes are dropped, reads return zeroes.

use std::io;

use crate::backend::{check_range, Backend, BackendInfo};
use crate::SegmentList;

/// A per-reactor handle on a null volume.
#[derive(Debug, Clone)]
pub struct NullBackend {
    pub(crate) info: BackendInfo,
}

impl Backend for NullBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn read(&self, offset: u64, mut buf: SegmentList) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_range(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        // The one place the CPU writes payload memory: a null read must not
        // leak a previous command's bytes.
        buf.fill(0);
        (buf, Ok(()))
    }

    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        _fua: bool,
    ) -> (SegmentList, io::Result<()>) {
        let r = crate::backend::check_write(&self.info, offset, buf.len() as u64);
        (buf, r)
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(&self.info, offset, len)
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(&self.info, offset, len)
    }
}
