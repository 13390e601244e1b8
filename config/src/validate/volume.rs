//! The keys every `[[volumes]]` entry shares: name, backend, path, size,
//! block size, flags (the rbd keys are in `rbd.rs`).

use std::collections::HashMap;
use std::path::Path;

use toml::Spanned;

use super::Checker;
use crate::model::{BackendKind, Volume};
use crate::raw::RawVolume;

impl Checker<'_> {
    /// `write_delay_ms`: 0 to 60 000.
    pub(super) fn write_delay(&mut self, p: &str, d: Option<&Spanned<i64>>) -> u32 {
        let Some(d) = d else { return 0 };
        match u32::try_from(*d.get_ref()).ok().filter(|ms| *ms <= 60_000) {
            Some(ms) => ms,
            None => {
                let msg = format!(
                    "must be a number of milliseconds from 0 to 60000, not {}",
                    d.get_ref()
                );
                self.err(d.span(), &format!("{p}.write_delay_ms"), msg);
                0
            }
        }
    }

    pub(super) fn volume(
        &mut self,
        i: usize,
        v: Spanned<RawVolume>,
        base_dir: &Path,
        first_line: &mut HashMap<String, usize>,
        cluster: Option<&crate::model::Cluster>,
    ) -> Volume {
        let p = format!("volumes[{i}]");
        let table = v.span();
        let v = v.into_inner();
        let name = v.name.get_ref().clone();
        let name_path = format!("{p}.name");
        if name.is_empty() {
            self.err(
                v.name.span(),
                &name_path,
                "volume name must not be empty".into(),
            );
        } else if let Some(ch) = name
            .chars()
            .find(|&ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
        {
            let msg = format!("volume name `{name}` contains {ch:?}; only A-Z, a-z, 0-9, `.`, `_` and `-` are allowed");
            self.err(v.name.span(), &name_path, msg);
        }
        if let Some(line) = first_line.get(&name) {
            let msg = format!("duplicate volume name `{name}` (first defined on line {line})");
            self.err(v.name.span(), &name_path, msg);
        } else {
            first_line.insert(name.clone(), self.line_of(&v.name.span()));
        }

        let backend = self.keyword::<BackendKind>(v.backend.clone(), &format!("{p}.backend"));
        let block_size = match &v.block_size {
            None => Some(Volume::DEFAULT_BLOCK_SIZE),
            Some(b) if matches!(b.get_ref(), 512 | 4096) => u32::try_from(*b.get_ref()).ok(),
            Some(b) => {
                let msg = format!("block_size must be 512 or 4096, not {}", b.get_ref());
                self.err(b.span(), &format!("{p}.block_size"), msg);
                None
            }
        };
        let size_path = format!("{p}.size");
        let size = v.size.as_ref().and_then(|s| {
            let size = self.size(s, &size_path)?;
            if size.0 == 0 {
                self.err(s.span(), &size_path, "volume size must not be zero".into());
            } else if let Some(bs) = block_size.filter(|&bs| size.0 % u64::from(bs) != 0) {
                let msg = format!("size {} bytes is not a multiple of block_size {bs}", size.0);
                self.err(s.span(), &size_path, msg);
            }
            Some(size)
        });

        let path_key = format!("{p}.path");
        let path = v.path.as_ref().map(|s| {
            if s.get_ref().is_empty() {
                self.err(s.span(), &path_key, "path must not be empty".into());
            }
            base_dir.join(s.get_ref())
        });
        if let Some(kind) = backend {
            match (kind, &v.path) {
                (BackendKind::File, None) => {
                    self.err(
                        table.clone(),
                        &path_key,
                        "a `file` volume needs `path`".into(),
                    );
                }
                (BackendKind::Null | BackendKind::Memory, Some(s)) => {
                    let msg = format!("a `{kind}` volume has no backing file; remove `path`");
                    self.err(s.span(), &path_key, msg);
                }
                _ => {}
            }
            if matches!(kind, BackendKind::Null | BackendKind::Memory) && v.size.is_none() {
                self.err(
                    table.clone(),
                    &size_path,
                    format!("a `{kind}` volume needs `size`"),
                );
            }
            if let Some(d) = v
                .direct_io
                .as_ref()
                .filter(|d| *d.get_ref() && kind != BackendKind::File)
            {
                let msg = format!("`direct_io` only applies to `file` volumes, not `{kind}`");
                self.err(d.span(), &format!("{p}.direct_io"), msg);
            }
            if let Some(d) = v
                .preallocate
                .as_ref()
                .filter(|d| *d.get_ref() && kind != BackendKind::File)
            {
                let msg = format!("`preallocate` only applies to `file` volumes, not `{kind}`");
                self.err(d.span(), &format!("{p}.preallocate"), msg);
            }
            if let Some(d) = v
                .write_delay_ms
                .as_ref()
                .filter(|d| *d.get_ref() != 0 && kind != BackendKind::Memory)
            {
                let msg =
                    format!("`write_delay_ms` only applies to `memory` volumes, not `{kind}`");
                self.err(d.span(), &format!("{p}.write_delay_ms"), msg);
            }
        }
        let rbd = self.rbd_image(&p, table, backend, &v, base_dir);
        let (identity, owner) = self.volume_cluster_keys(&p, &v, cluster);
        Volume {
            name,
            path,
            size,
            block_size: block_size.unwrap_or(Volume::DEFAULT_BLOCK_SIZE),
            read_only: v.read_only.unwrap_or(false),
            direct_io: v.direct_io.is_some_and(|d| d.into_inner()),
            preallocate: v.preallocate.is_some_and(|d| d.into_inner()),
            write_delay_ms: self.write_delay(&p, v.write_delay_ms.as_ref()),
            backend: backend.unwrap_or_default(),
            rbd,
            identity,
            owner,
        }
    }
}
