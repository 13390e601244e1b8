//! The keys of `backend = "rbd"` volumes: `pool`, `image`, `namespace`,
//! `ceph_conf`, `ceph_user`, `keyring`, `rados_timeout_secs`.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::Checker;
use crate::model::{BackendKind, RbdImage};
use crate::raw::RawVolume;

impl Checker<'_> {
    /// The image of volume `p` (`volumes[i]`), or `None` when it is not an
    /// rbd volume (then no rbd key may be present) or is missing keys (each
    /// reported).
    pub(super) fn rbd_image(
        &mut self,
        p: &str,
        table: Range<usize>,
        kind: Option<BackendKind>,
        v: &RawVolume,
        base_dir: &Path,
    ) -> Option<RbdImage> {
        let keys = [
            ("pool", &v.pool),
            ("image", &v.image),
            ("namespace", &v.namespace),
            ("ceph_conf", &v.ceph_conf),
            ("ceph_user", &v.ceph_user),
            ("keyring", &v.keyring),
        ];
        let timeout = v.rados_timeout_secs.as_ref();
        if kind != Some(BackendKind::Rbd) {
            if let Some(kind) = kind {
                for (key, value) in keys {
                    if let Some(s) = value {
                        let msg = format!("`{key}` only applies to `rbd` volumes, not `{kind}`");
                        self.err(s.span(), &format!("{p}.{key}"), msg);
                    }
                }
                if let Some(t) = timeout {
                    let msg =
                        format!("`rados_timeout_secs` only applies to `rbd` volumes, not `{kind}`");
                    self.err(t.span(), &format!("{p}.rados_timeout_secs"), msg);
                }
            }
            return None;
        }
        if let Some(s) = &v.path {
            let msg = "an `rbd` volume has no backing file; name its `pool` and `image`".into();
            self.err(s.span(), &format!("{p}.path"), msg);
        }
        let pool = self.rbd_name(p, "pool", &table, v.pool.as_ref(), true);
        let image = self.rbd_name(p, "image", &table, v.image.as_ref(), true);
        let namespace = self.rbd_name(p, "namespace", &table, v.namespace.as_ref(), false);
        let ceph_user = v.ceph_user.as_ref().and_then(|u| {
            let path = format!("{p}.ceph_user");
            let name = u.get_ref();
            if name.is_empty() || name.contains(['\0', ' ']) {
                self.err(
                    u.span(),
                    &path,
                    format!("ceph_user {name:?} is not a cephx user id"),
                );
                None
            } else if let Some(id) = name.strip_prefix("client.") {
                let msg = format!("give ceph_user without the `client.` prefix (e.g. `{id}`)");
                self.err(u.span(), &path, msg);
                None
            } else {
                Some(name.clone())
            }
        });
        let ceph_conf = self.rbd_path(p, "ceph_conf", v.ceph_conf.as_ref(), base_dir);
        let keyring = self.rbd_path(p, "keyring", v.keyring.as_ref(), base_dir);
        let max = RbdImage::MAX_RADOS_TIMEOUT_SECS;
        let rados_timeout_secs = timeout.and_then(|t| match u32::try_from(*t.get_ref()) {
            Ok(secs @ 1..) if secs <= max => Some(secs),
            _ => {
                let msg = format!(
                    "rados_timeout_secs must be 1..={max} seconds (leave it out to keep the \
                     conf's timeouts), got {}",
                    t.get_ref()
                );
                self.err(t.span(), &format!("{p}.rados_timeout_secs"), msg);
                None
            }
        });
        Some(RbdImage {
            pool: pool?,
            image: image?,
            namespace,
            ceph_conf,
            ceph_user,
            keyring,
            rados_timeout_secs,
        })
    }

    /// A pool, image or namespace name: required ones must be present; none
    /// may be empty or contain `/`, `@` or NUL (rbd's separators).
    fn rbd_name(
        &mut self,
        p: &str,
        key: &str,
        table: &Range<usize>,
        value: Option<&Spanned<String>>,
        required: bool,
    ) -> Option<String> {
        let path = format!("{p}.{key}");
        let Some(s) = value else {
            if required {
                self.err(
                    table.clone(),
                    &path,
                    format!("an `rbd` volume needs `{key}`"),
                );
            }
            return None;
        };
        let name = s.get_ref();
        if name.is_empty() {
            self.err(s.span(), &path, format!("{key} must not be empty"));
            None
        } else if let Some(ch) = name.chars().find(|c| matches!(c, '/' | '@' | '\0')) {
            let msg = format!("{key} `{name}` must not contain {ch:?}");
            self.err(s.span(), &path, msg);
            None
        } else {
            Some(name.clone())
        }
    }

    fn rbd_path(
        &mut self,
        p: &str,
        key: &str,
        value: Option<&Spanned<String>>,
        base_dir: &Path,
    ) -> Option<std::path::PathBuf> {
        let s = value?;
        if s.get_ref().is_empty() || s.get_ref().contains('\0') {
            let msg = format!("{key} must be a file name");
            self.err(s.span(), &format!("{p}.{key}"), msg);
            return None;
        }
        Some(base_dir.join(s.get_ref()))
    }
}
