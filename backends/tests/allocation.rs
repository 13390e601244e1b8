//! `Volume::allocation`: the hole/data map GET LBA STATUS reports.

use std::os::unix::fs::FileExt;

use zctarget_backends::{BackendKind, Volume, VolumeSpec};

const MIB: u64 = 1 << 20;

fn file_volume(dir: &std::path::Path, size: u64) -> std::sync::Arc<Volume> {
    Volume::open(&VolumeSpec {
        name: "alloc".into(),
        kind: BackendKind::File,
        path: Some(dir.join("alloc.img")),
        size: Some(size),
        block_size: 512,
        read_only: false,
        direct_io: false,
        rbd: None,
        write_delay: std::time::Duration::ZERO,
    })
    .expect("open volume")
}

#[test]
fn sparse_file_reports_holes_and_data_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = file_volume(dir.path(), 8 * MIB);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("alloc.img"))
        .expect("open file");
    file.write_all_at(&vec![0x5a; MIB as usize], 2 * MIB)
        .expect("write");
    file.sync_all().expect("sync");

    let runs = vol.allocation(0, 8 * MIB, 64).expect("allocation");
    // Runs cover the range in order without gaps.
    let mut at = 0;
    for &(off, len, _) in &runs {
        assert_eq!(off, at, "runs must be contiguous: {runs:?}");
        at += len;
    }
    assert_eq!(at, 8 * MIB);
    let allocated = |o: u64| {
        runs.iter()
            .find(|&&(off, len, _)| o >= off && o < off + len)
            .map(|r| r.2)
    };
    assert_eq!(allocated(0), Some(false), "{runs:?}");
    assert_eq!(allocated(2 * MIB + 4096), Some(true), "{runs:?}");
    assert_eq!(allocated(7 * MIB), Some(false), "{runs:?}");

    // From inside the data run, and bounded by max_runs.
    let tail = vol
        .allocation(2 * MIB + 512, 6 * MIB - 512, 1)
        .expect("allocation");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].0, 2 * MIB + 512);
    assert!(tail[0].2);
}

#[test]
fn memory_volume_reports_everything_allocated() {
    let vol = Volume::open(&VolumeSpec {
        name: "mem".into(),
        kind: BackendKind::Memory,
        path: None,
        size: Some(MIB),
        block_size: 512,
        read_only: false,
        direct_io: false,
        rbd: None,
        write_delay: std::time::Duration::ZERO,
    })
    .expect("open");
    assert_eq!(
        vol.allocation(4096, 8192, 4).expect("allocation"),
        vec![(4096, 8192, true)]
    );
}
