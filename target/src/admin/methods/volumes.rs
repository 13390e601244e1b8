//! Volume methods: list, add (an rbd image created with progress), remove.

use super::*;

pub(super) fn volume_list(shared: &Shared) -> Value {
    let c = shared.live.lock();
    let rows: Vec<Value> = c
        .volumes
        .iter()
        .map(|v| {
            let open = shared
                .exports
                .slot_of(&v.name)
                .and_then(|s| shared.exports.get(s));
            json!({
                "name": v.name,
                "backend": v.backend.as_str(),
                "path": v.path.as_ref().map(|p| p.display().to_string()).or_else(|| {
                    v.rbd.as_ref().map(|r| match &r.namespace {
                        Some(ns) => format!("rbd:{}/{ns}/{}", r.pool, r.image),
                        None => format!("rbd:{}/{}", r.pool, r.image),
                    })
                }),
                "size": open.as_ref().map(|o| o.info().capacity),
                "block_size": v.block_size,
                "read_only": v.read_only,
                "exported_as": uses_of(&c, &v.name),
            })
        })
        .collect();
    json!(rows)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VolumeAdd {
    name: String,
    path: Option<String>,
    size: Option<String>,
    block_size: Option<u32>,
    backend: Option<String>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    direct_io: bool,
    #[serde(default)]
    preallocate: bool,
    pool: Option<String>,
    image: Option<String>,
    namespace: Option<String>,
    ceph_conf: Option<String>,
    ceph_user: Option<String>,
    keyring: Option<String>,
    rados_timeout_secs: Option<u32>,
}

/// The image of an `rbd` volume being added; `None` for other backends,
/// which must not name one.
pub(super) fn rbd_image(p: &VolumeAdd, backend: BackendKind) -> Result<Option<RbdImage>, RpcError> {
    let absolute = |s: &Option<String>| {
        s.as_deref()
            .map(std::path::absolute)
            .transpose()
            .map_err(|e| RpcError::params(e.to_string()))
    };
    if backend != BackendKind::Rbd {
        let given = [
            &p.pool,
            &p.image,
            &p.namespace,
            &p.ceph_conf,
            &p.ceph_user,
            &p.keyring,
        ];
        if given.iter().any(|o| o.is_some()) || p.rados_timeout_secs.is_some() {
            return Err(RpcError::params(format!(
                "pool, image, namespace, ceph_conf, ceph_user, keyring and \
                 rados_timeout_secs apply to rbd volumes, not {backend}"
            )));
        }
        return Ok(None);
    }
    let (Some(pool), Some(image)) = (&p.pool, &p.image) else {
        return Err(RpcError::params("an rbd volume needs --pool and --image"));
    };
    Ok(Some(RbdImage {
        pool: pool.clone(),
        image: image.clone(),
        namespace: p.namespace.clone(),
        ceph_conf: absolute(&p.ceph_conf)?,
        ceph_user: p.ceph_user.clone(),
        keyring: absolute(&p.keyring)?,
        rados_timeout_secs: p.rados_timeout_secs,
    }))
}

pub(super) fn volume_add(
    shared: &Shared,
    p: VolumeAdd,
    notify: &mut dyn FnMut(Value),
) -> RpcResult {
    let backend: BackendKind = p
        .backend
        .as_deref()
        .unwrap_or("file")
        .parse()
        .map_err(|e: zctarget_config::UnknownKeyword| RpcError::params(e.to_string()))?;
    let size = p
        .size
        .as_deref()
        .map(str::parse::<ByteSize>)
        .transpose()
        .map_err(|e| RpcError::params(format!("size: {e}")))?;
    let path = match (&p.path, backend) {
        (Some(path), _) => {
            Some(std::path::absolute(path).map_err(|e| RpcError::params(e.to_string()))?)
        }
        (None, BackendKind::File) => {
            // Next to the configuration file (or the current folder).
            let dir = shared
                .live
                .path()
                .and_then(|p| p.parent())
                .map_or_else(|| std::path::PathBuf::from("."), ToOwned::to_owned);
            Some(
                std::path::absolute(dir.join(format!("{}.img", p.name)))
                    .map_err(|e| RpcError::params(e.to_string()))?,
            )
        }
        (None, _) => None,
    };
    let rbd = rbd_image(&p, backend)?;
    change(shared, notify, |c| {
        if c.volume(&p.name).is_some() {
            return Err(RpcError::refused(format!("volume {} exists", p.name)));
        }
        c.volumes.push(zctarget_config::Volume {
            name: p.name.clone(),
            path,
            size,
            block_size: p
                .block_size
                .unwrap_or(zctarget_config::Volume::DEFAULT_BLOCK_SIZE),
            read_only: p.read_only,
            direct_io: p.direct_io,
            preallocate: p.preallocate,
            write_delay_ms: 0,
            backend,
            rbd: rbd.clone(),
            identity: None,
            owner: None,
        });
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NameForce {
    pub(super) name: String,
    #[serde(default)]
    force: bool,
}

pub(super) fn volume_remove(shared: &Shared, p: NameForce) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        if c.volume(&p.name).is_none() {
            return Err(RpcError::not_found(format!("no volume {}", p.name)));
        }
        let uses = uses_of(c, &p.name);
        if !uses.is_empty() && !p.force {
            return Err(RpcError::refused(format!(
                "volume {} is exported as {}; unmap it first or use force",
                p.name,
                uses.join(", ")
            )));
        }
        for t in &mut c.iscsi_targets {
            if let Some(n) = t.luns.number_of(&p.name) {
                t.luns.remove(n);
            }
        }
        for s in &mut c.nvme_subsystems {
            if let Some(n) = s.namespaces.number_of(&p.name) {
                s.namespaces.remove(n);
            }
        }
        c.volumes.retain(|v| v.name != p.name);
        Ok(())
    })
}
