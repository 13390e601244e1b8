//! Writing queued messages: batches of one kind per `sendmsg`, file ranges
//! by `sendfile`, and what was written released or tracked.

use super::*;

impl ZeroCopySender {
    /// Writes queued messages until the socket is full: a call that wrote
    /// less than it offered filled it, so the stream's write readiness is
    /// cleared then (as tokio's `poll_write` does) and the writer waits for
    /// the kernel to report room (it does so once a third of the send
    /// buffer is free) instead of trickling a few KiB per `sendmsg` while
    /// the peer drains, or asking once more only to get `EAGAIN`.
    pub(super) fn write_queued(&mut self) -> io::Result<()> {
        while let Some(&front) = self.queue.front() {
            let zerocopy = self.messages.get(front).is_some_and(|m| m.zerocopy);
            let result = self.write_batch(zerocopy);
            match result {
                Ok((0, _)) => return Ok(()),
                Ok((n, offered)) if n < offered => {
                    SenderCounters::add(&self.counters.partial_writes, 1);
                    self.mark_full();
                    return Ok(());
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.mark_full();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Clears write readiness after a `sendmsg` found the socket full. Nothing
    /// else runs on this thread between the call and this; the kernel marked
    /// the socket short of space, so freeing it raises a new edge.
    pub(super) fn mark_full(&self) {
        let full = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let _ = self.stream.try_io(Interest::WRITABLE, full);
        if let Some(room) = &self.room {
            let _ = room.try_io(Interest::WRITABLE, |_| full());
        }
    }

    /// One `sendmsg` over the longest run of queued messages of one kind:
    /// (bytes written, bytes offered).
    fn write_batch(&mut self, zerocopy: bool) -> io::Result<(usize, usize)> {
        let file_front = self
            .queue
            .front()
            .and_then(|&key| self.messages.get(key))
            .and_then(|msg| msg.file_at(msg.written).map(|at| (msg.direct.as_ref(), at)));
        if let Some((Some(DirectRange::File(file)), (offset, len))) = file_front {
            let in_fd = file.fd();
            return self.write_file(in_fd, offset, len);
        }
        let mut iov: SmallVec<[Iov<'_>; MAX_IOVECS]> = SmallVec::new();
        let mut offered = 0usize;
        let mut batch = 0usize;
        let mut file_next = false;
        for &key in &self.queue {
            let Some(msg) = self.messages.get(key) else {
                continue;
            };
            if msg.zerocopy != zerocopy || iov.len() >= MAX_IOVECS || offered >= MAX_BYTES_PER_CALL
            {
                break;
            }
            let (described, at_file) = describe(msg, msg.written, &mut iov);
            offered += described;
            batch += 1;
            if at_file {
                // The file's bytes follow by `sendfile`: this call stops at
                // them, and tells TCP more is coming right behind.
                file_next = true;
                break;
            }
        }
        if offered == 0 {
            return Ok((0, 0));
        }
        let fd = self.stream.as_raw_fd();
        let flags = if zerocopy { libc::MSG_ZEROCOPY } else { 0 }
            | if file_next { libc::MSG_MORE } else { 0 };
        let counters = &self.counters;
        let send = |flags| {
            let r = errqueue::sendmsg(fd, &iov, flags);
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                SenderCounters::add(&counters.would_block, 1);
            }
            r
        };
        // Once the stream's write readiness is stuck, the writability watch
        // gates the call instead (an `EAGAIN` clears its readiness).
        let (stream, room) = (&self.stream, self.room.as_deref());
        let try_send = |flags| match room {
            Some(room) if self.write_stuck => room.try_io(Interest::WRITABLE, |_| send(flags)),
            _ => stream.try_io(Interest::WRITABLE, || send(flags)),
        };
        let mut sent = try_send(flags);
        let mut used_zerocopy = zerocopy;
        if zerocopy && matches!(&sent, Err(e) if e.raw_os_error() == Some(libc::ENOBUFS)) {
            // optmem / locked-memory limit: this call goes by copy.
            SenderCounters::add(&self.counters.enobufs_fallbacks, 1);
            used_zerocopy = false;
            sent = try_send(0);
        }
        drop(iov);
        let n = sent?;
        if used_zerocopy {
            SenderCounters::add(&self.counters.zerocopy_calls, 1);
            SenderCounters::add(&self.counters.zerocopy_bytes, n as u64);
        } else {
            SenderCounters::add(&self.counters.copy_calls, 1);
            SenderCounters::add(&self.counters.copy_bytes, n as u64);
        }
        self.account_written(n, batch, used_zerocopy);
        Ok((n, offered))
    }

    /// One `sendfile` of up to `len` bytes at `offset` of `in_fd` (the file
    /// part at the front message's write position): (bytes written, bytes
    /// offered). The kernel takes references to the file's page-cache
    /// pages; no user memory is involved, so nothing is tracked. A file
    /// that ends early (truncated under the volume) fails the connection:
    /// the PDU's length is already on the wire.
    fn write_file(
        &mut self,
        in_fd: std::os::fd::RawFd,
        offset: u64,
        len: usize,
    ) -> io::Result<(usize, usize)> {
        let len = len.min(MAX_BYTES_PER_CALL);
        let out_fd = self.stream.as_raw_fd();
        let counters = &self.counters;
        let send = || {
            let r = errqueue::sendfile(out_fd, in_fd, offset, len);
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                SenderCounters::add(&counters.would_block, 1);
            }
            r
        };
        let n = match self.room.as_deref() {
            Some(room) if self.write_stuck => room.try_io(Interest::WRITABLE, |_| send()),
            _ => self.stream.try_io(Interest::WRITABLE, send),
        }?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "volume file ended inside a read being sent",
            ));
        }
        SenderCounters::add(&self.counters.sendfile_calls, 1);
        SenderCounters::add(&self.counters.sendfile_bytes, n as u64);
        self.account_written(n, 1, false);
        Ok((n, len))
    }

    /// Advances the queue by `n` written bytes; registers the zero-copy call
    /// with the tracker for every message it touched.
    fn account_written(&mut self, n: usize, batch: usize, used_zerocopy: bool) {
        // Messages that got at least one byte of this call, oldest first.
        let mut touched: SmallVec<[usize; 16]> = SmallVec::new();
        let mut left = n;
        for &key in self.queue.iter().take(batch) {
            if left == 0 {
                break;
            }
            if let Some(msg) = self.messages.get(key) {
                let take = (msg.total - msg.written).min(left);
                left -= take;
                touched.push(key);
            }
        }
        if used_zerocopy {
            for &key in &touched {
                if let Some(msg) = self.messages.get_mut(key) {
                    if !msg.tracked {
                        msg.tracked = true;
                        self.tracker.begin(key);
                    }
                    msg.zerocopy_calls += 1;
                }
            }
            self.tracker.zerocopy_call(touched.len());
        }
        let mut left = n;
        for key in touched {
            let Some(msg) = self.messages.get_mut(key) else {
                continue;
            };
            let take = (msg.total - msg.written).min(left);
            msg.written += take;
            left -= take;
            if msg.written < msg.total {
                break;
            }
            self.queue.pop_front();
            let tracked = msg.tracked;
            if tracked {
                if self.tracker.written(&key).is_some() {
                    if let Some(msg) = self.messages.try_remove(key) {
                        self.finish(msg, Outcome::Sent);
                    }
                }
            } else if let Some(msg) = self.messages.try_remove(key) {
                // Copied by the kernel during the call: free at once.
                self.finish(msg, Outcome::Sent);
            }
        }
    }
}
