//! Which parts of an image hold data, from its object map (thin
//! provisioning: SCSI GET LBA STATUS).
//!
//! With the `fast-diff` feature (the default of `rbd create` since Ceph 13,
//! together with `object-map`), `rbd_diff_iterate2(whole_object = 1)` from
//! the beginning answers from the object map: one state per object (4 MiB
//! by default), nothing read from the data objects. An object that was
//! never written, or was discarded whole, is deallocated (it reads back
//! zeroes); one written anywhere, even partly discarded since, is mapped.
//! Without a valid object map the image reports everything mapped, like a
//! block device: walking every object would cost an OSD round trip each.

use std::ffi::{c_int, c_void};
use std::io;
use std::ptr;

use super::ffi::{self, FEATURE_FAST_DIFF, FLAGS_MAP_INVALID};
use super::Image;

/// At most this many objects are looked at per call (16 GiB of 4 MiB
/// objects): the answer then covers a prefix of the range, which GET LBA
/// STATUS allows (the host asks again from where it ends).
const WINDOW_OBJECTS: u64 = 4096;

/// What the diff callback builds: ordered runs from `at` on.
struct Walk {
    runs: Vec<(u64, u64, bool)>,
    at: u64,
    end: u64,
    max_runs: usize,
}

impl Walk {
    fn push(&mut self, start: u64, end: u64, allocated: bool) {
        let end = end.min(self.end);
        if end <= start {
            return;
        }
        match self.runs.last_mut() {
            Some(last) if last.2 == allocated && last.0 + last.1 == start => last.1 += end - start,
            _ => self.runs.push((start, end - start, allocated)),
        }
        self.at = end;
    }

    fn full(&self) -> bool {
        self.runs.len() > self.max_runs
    }
}

/// The `rbd_diff_iterate2` callback: one extent that exists (or was
/// removed, `exists == 0`) in the image.
unsafe extern "C" fn on_extent(
    offset: u64,
    len: libc::size_t,
    exists: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `arg` is the `Walk` that `allocation` lent for the duration
    // of the synchronous rbd_diff_iterate2 call, which calls us on the
    // caller's thread or while the caller waits; nothing else touches it.
    let walk = unsafe { &mut *arg.cast::<Walk>() };
    let start = offset.max(walk.at);
    let end = offset.saturating_add(len as u64);
    if start > walk.at {
        walk.push(walk.at, start, false);
    }
    walk.push(start, end, exists != 0);
    if walk.full() {
        -libc::ECANCELED
    } else {
        0
    }
}

impl Image {
    /// Whether the image has a valid object map with fast-diff.
    pub fn object_map(&self) -> bool {
        let lib = self.lib();
        let (mut features, mut flags) = (0u64, 0u64);
        // SAFETY: an open image; the out pointers are our locals.
        let ok = unsafe {
            (lib.rbd_get_features)(self.handle, &mut features) == 0
                && (lib.rbd_get_flags)(self.handle, &mut flags) == 0
        };
        ok && features & FEATURE_FAST_DIFF != 0 && flags & FLAGS_MAP_INVALID == 0
    }

    /// Allocation of `[offset, offset + len)` as ordered `(offset, len,
    /// allocated)` runs, at most `max_runs` of them, from the object map
    /// (see the module docs); one allocated run without one. The runs may
    /// cover only a prefix of the range. Synchronous: the object map may be
    /// read from the OSDs.
    pub fn allocation(
        &self,
        offset: u64,
        len: u64,
        max_runs: usize,
    ) -> io::Result<Vec<(u64, u64, bool)>> {
        if !self.object_map() {
            return Ok(vec![(offset, len, true)]);
        }
        let window = WINDOW_OBJECTS.saturating_mul(self.object_size().max(1));
        let end = offset.saturating_add(len.min(window));
        let mut walk = Walk {
            runs: Vec::new(),
            at: offset,
            end,
            max_runs: max_runs.max(1),
        };
        // SAFETY: an open image; a NULL snapshot name diffs from the
        // image's creation; `walk` outlives the call, which invokes
        // `on_extent` only until it returns.
        let rc = unsafe {
            (self.lib().rbd_diff_iterate2)(
                self.handle,
                ptr::null(),
                offset,
                end - offset,
                1,
                1,
                on_extent,
                (&mut walk as *mut Walk).cast(),
            )
        };
        if rc < 0 && !(rc == -libc::ECANCELED && walk.full()) {
            return Err(io::Error::new(
                ffi::errno(rc).kind(),
                format!(
                    "rbd image {}: reading the object map: {}",
                    self.name(),
                    ffi::errno(rc)
                ),
            ));
        }
        if !walk.full() {
            walk.push(walk.at, end, false);
        }
        walk.runs.truncate(walk.max_runs);
        Ok(walk.runs)
    }
}
