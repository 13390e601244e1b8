//! Admin operations. Reads look at the running daemon; changes edit a copy
//! of the live configuration and hand it to `live` (validate, open new
//! volumes, persist atomically, apply).

use serde::Deserialize;
use serde_json::{json, Value};
use zctarget_config::{
    BackendKind, ByteSize, Chap, Config, IscsiTarget, NvmeSubsystem, RbdImage, VolumeMap,
};

use super::RpcError;
use crate::daemon::Shared;
use crate::live;

type RpcResult = Result<Value, RpcError>;

/// Runs `method` with `params`; `notify` sends progress notifications.
pub fn call(
    shared: &Shared,
    method: &str,
    params: &Value,
    notify: &mut dyn FnMut(Value),
) -> RpcResult {
    match method {
        "status" => Ok(status(shared)),
        "config.show" => Ok(
            json!({ "toml": redacted(&shared.live.lock()).to_toml_string(),
                                     "path": shared.live.path().map(|p| p.display().to_string()) }),
        ),
        "config.reload" => live::reload(shared)
            .map(|r| json!(r))
            .map_err(|e| RpcError::new(RpcError::INVALID_CONFIG, format!("{e:#}"))),
        "volume.list" => Ok(volume_list(shared)),
        "volume.add" => volume_add(shared, parse(params)?, notify),
        "volume.remove" => volume_remove(shared, parse(params)?),
        // Failback, one gateway's half each (see `failover::move_owner`).
        "volume.rejoin" => {
            let p: NameForce = parse(params)?;
            crate::failover::rejoin(shared, &p.name)
                .map(|m| json!(m))
                .map_err(|e| RpcError::refused(format!("{e:#}")))
        }
        "volume.release" | "volume.acquire" => {
            let p: NameForce = parse(params)?;
            crate::failover::move_owner(shared, &p.name, method == "volume.release")
                .map(|m| json!(m))
                .map_err(|e| RpcError::refused(format!("{e:#}")))
        }
        "iscsi.target.list" => Ok(iscsi_target_list(shared)),
        "iscsi.target.add" => iscsi_target_add(shared, parse(params)?),
        "iscsi.target.remove" => iscsi_target_remove(shared, parse(params)?),
        "iscsi.lun.add" => iscsi_lun_add(shared, parse(params)?),
        "iscsi.lun.remove" => iscsi_lun_remove(shared, parse(params)?),
        "iscsi.initiator.add" => iscsi_initiator(shared, parse(params)?, true),
        "iscsi.initiator.remove" => iscsi_initiator(shared, parse(params)?, false),
        "iscsi.chap.set" => iscsi_chap_set(shared, parse(params)?),
        "iscsi.chap.clear" => iscsi_chap_clear(shared, parse(params)?),
        "nvme.subsystem.list" => Ok(nvme_subsystem_list(shared)),
        "nvme.subsystem.add" => nvme_subsystem_add(shared, parse(params)?),
        "nvme.subsystem.remove" => nvme_subsystem_remove(shared, parse(params)?),
        "nvme.namespace.add" => nvme_namespace_add(shared, parse(params)?),
        "nvme.namespace.remove" => nvme_namespace_remove(shared, parse(params)?),
        "nvme.host.add" => nvme_host(shared, parse(params)?, true),
        "nvme.host.remove" => nvme_host(shared, parse(params)?, false),
        "session.list" => Ok(json!(shared.iscsi.sessions.list())),
        "session.disconnect" => {
            let p: TsihParams = parse(params)?;
            if shared.iscsi.sessions.kill_tsih(p.tsih) {
                Ok(json!({ "disconnected": p.tsih }))
            } else {
                Err(RpcError::not_found(format!(
                    "no session with TSIH {}",
                    p.tsih
                )))
            }
        }
        "controller.list" => Ok(json!(shared.nvmf.list_controllers())),
        "controller.disconnect" => {
            let p: CntlidParams = parse(params)?;
            if shared.nvmf.controller(p.cntlid).is_some() {
                shared.nvmf.remove_controller(p.cntlid);
                Ok(json!({ "disconnected": p.cntlid }))
            } else {
                Err(RpcError::not_found(format!(
                    "no controller with CNTLID {}",
                    p.cntlid
                )))
            }
        }
        _ => Err(RpcError::new(
            RpcError::NO_METHOD,
            format!("no method {method:?}"),
        )),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(params: &Value) -> Result<T, RpcError> {
    serde_json::from_value(params.clone()).map_err(|e| RpcError::params(e.to_string()))
}

/// Edits a copy of the live configuration with `edit` and applies it.
fn change(
    shared: &Shared,
    notify: &mut dyn FnMut(Value),
    edit: impl FnOnce(&mut Config) -> Result<(), RpcError>,
) -> RpcResult {
    let mut current = shared.live.lock();
    let mut new = current.clone();
    edit(&mut new)?;
    let prepared = live::prepare(&current, new, &mut |volume, done, total| {
        notify(json!({"jsonrpc": "2.0", "method": "progress",
                      "params": {"volume": volume, "done": done, "total": total}}));
    })?;
    let report = live::commit(shared, &mut current, prepared, shared.live.path())?;
    Ok(json!(report))
}

fn status(shared: &Shared) -> Value {
    let pool = shared.pool.stats();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "engine": shared.engine.to_string(),
        "iscsi_portals": shared.iscsi_portals.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "nvme_portals": shared.nvme_portals.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "config": shared.live.path().map(|p| p.display().to_string()),
        "pool": { "chunks_free": pool.free_chunks, "chunks_total": pool.total_chunks,
                  "chunk_size": pool.chunk_size },
        "iscsi_sessions": shared.iscsi.sessions.len(),
        "nvme_controllers": shared.nvmf.controller_count(),
    })
}

/// The configuration with CHAP secrets hidden (config.show).
fn redacted(c: &Config) -> Config {
    let mut c = c.clone();
    for t in &mut c.iscsi_targets {
        for chap in [&mut t.chap, &mut t.mutual_chap].into_iter().flatten() {
            chap.secret = "<redacted>".into();
        }
    }
    for s in &mut c.nvme_subsystems {
        s.host_keys
            .iter_mut()
            .for_each(zctarget_config::NvmeHostKey::redact);
    }
    c
}

/// Where a volume is exported: "iscsi:<iqn>/lun<N>", "nvme:<nqn>/ns<N>".
fn uses_of(c: &Config, volume: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in &c.iscsi_targets {
        if let Some(n) = t.luns.number_of(volume) {
            out.push(format!("iscsi:{}/lun{n}", t.iqn));
        }
    }
    for s in &c.nvme_subsystems {
        if let Some(n) = s.namespaces.number_of(volume) {
            out.push(format!("nvme:{}/ns{n}", s.nqn));
        }
    }
    out
}

fn volume_list(shared: &Shared) -> Value {
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
struct VolumeAdd {
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
fn rbd_image(p: &VolumeAdd, backend: BackendKind) -> Result<Option<RbdImage>, RpcError> {
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

fn volume_add(shared: &Shared, p: VolumeAdd, notify: &mut dyn FnMut(Value)) -> RpcResult {
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
struct NameForce {
    name: String,
    #[serde(default)]
    force: bool,
}

fn volume_remove(shared: &Shared, p: NameForce) -> RpcResult {
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

fn iscsi_target_list(shared: &Shared) -> Value {
    let c = shared.live.lock();
    let sessions = shared.iscsi.sessions.list();
    let rows: Vec<Value> = c
        .iscsi_targets
        .iter()
        .map(|t| {
            json!({
                "iqn": t.iqn,
                "alias": t.alias,
                "luns": t.luns.iter().map(|(n, v)| json!({"lun": n, "volume": v})).collect::<Vec<_>>(),
                "initiators": t.initiators,
                "chap": t.chap.as_ref().map(|c| c.username.clone()),
                "mutual_chap": t.mutual_chap.as_ref().map(|c| c.username.clone()),
                "sessions": sessions.iter().filter(|s| s.target == t.iqn).count(),
            })
        })
        .collect();
    json!(rows)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetAdd {
    iqn: String,
    alias: Option<String>,
    initiators: Option<Vec<String>>,
}

fn iscsi_target_add(shared: &Shared, p: TargetAdd) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        if c.iscsi_targets.iter().any(|t| t.iqn == p.iqn) {
            return Err(RpcError::refused(format!("iSCSI target {} exists", p.iqn)));
        }
        c.iscsi_targets.push(IscsiTarget {
            iqn: p.iqn.clone(),
            alias: p.alias.clone(),
            luns: VolumeMap::new(VolumeMap::LUN_BASE),
            initiators: p
                .initiators
                .clone()
                .unwrap_or_else(|| vec![zctarget_config::ANY.to_owned()]),
            chap: None,
            mutual_chap: None,
        });
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IqnForce {
    iqn: String,
    #[serde(default)]
    force: bool,
}

fn iscsi_target_remove(shared: &Shared, p: IqnForce) -> RpcResult {
    let live = shared
        .iscsi
        .sessions
        .list()
        .iter()
        .filter(|s| s.target == p.iqn)
        .count();
    change(shared, &mut |_| {}, |c| {
        if !c.iscsi_targets.iter().any(|t| t.iqn == p.iqn) {
            return Err(RpcError::not_found(format!("no iSCSI target {}", p.iqn)));
        }
        if live > 0 && !p.force {
            return Err(RpcError::refused(format!(
                "iSCSI target {} has {live} session(s); use force to end them",
                p.iqn
            )));
        }
        c.iscsi_targets.retain(|t| t.iqn != p.iqn);
        Ok(())
    })
}

fn target_mut<'a>(c: &'a mut Config, iqn: &str) -> Result<&'a mut IscsiTarget, RpcError> {
    c.iscsi_targets
        .iter_mut()
        .find(|t| t.iqn == iqn)
        .ok_or_else(|| RpcError::not_found(format!("no iSCSI target {iqn}")))
}

fn subsystem_mut<'a>(c: &'a mut Config, nqn: &str) -> Result<&'a mut NvmeSubsystem, RpcError> {
    c.nvme_subsystems
        .iter_mut()
        .find(|s| s.nqn == nqn)
        .ok_or_else(|| RpcError::not_found(format!("no NVMe subsystem {nqn}")))
}

/// Maps `volume` into `map` at `number` (or the lowest free number).
fn map_volume(
    c: &Config,
    map: &mut VolumeMap,
    volume: &str,
    number: Option<u32>,
    what: &str,
) -> Result<u32, RpcError> {
    if c.volume(volume).is_none() {
        return Err(RpcError::not_found(format!("no volume {volume}")));
    }
    if let Some(n) = map.number_of(volume) {
        return Err(RpcError::refused(format!(
            "volume {volume} is already {what} {n} here"
        )));
    }
    let n = match number {
        Some(n) if map.get(n).is_some() => {
            return Err(RpcError::refused(format!("{what} {n} is in use")))
        }
        Some(n) => n,
        None => map
            .next_free()
            .ok_or_else(|| RpcError::refused(format!("no free {what}")))?,
    };
    map.insert(n, volume.to_owned());
    Ok(n)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LunAdd {
    iqn: String,
    volume: String,
    lun: Option<u32>,
}

fn iscsi_lun_add(shared: &Shared, p: LunAdd) -> RpcResult {
    let mut number = 0;
    let mut report = change(shared, &mut |_| {}, |c| {
        let snapshot = c.clone();
        let t = target_mut(c, &p.iqn)?;
        number = map_volume(&snapshot, &mut t.luns, &p.volume, p.lun, "LUN")?;
        Ok(())
    })?;
    report["lun"] = json!(number);
    Ok(report)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LunRemove {
    iqn: String,
    lun: u32,
}

fn iscsi_lun_remove(shared: &Shared, p: LunRemove) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let t = target_mut(c, &p.iqn)?;
        t.luns
            .remove(p.lun)
            .map(drop)
            .ok_or_else(|| RpcError::not_found(format!("{} has no LUN {}", p.iqn, p.lun)))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitiatorParams {
    iqn: String,
    initiator: String,
}

fn iscsi_initiator(shared: &Shared, p: InitiatorParams, add: bool) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let t = target_mut(c, &p.iqn)?;
        edit_acl(&mut t.initiators, &p.initiator, add)
    })
}

fn edit_acl(acl: &mut Vec<String>, name: &str, add: bool) -> Result<(), RpcError> {
    let present = acl.iter().any(|a| a == name);
    match (add, present) {
        (true, true) => Err(RpcError::refused(format!("{name} is already allowed"))),
        (true, false) => {
            acl.push(name.to_owned());
            Ok(())
        }
        (false, false) => Err(RpcError::not_found(format!("{name} is not in the list"))),
        (false, true) => {
            acl.retain(|a| a != name);
            Ok(())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChapSet {
    iqn: String,
    username: String,
    secret: String,
    #[serde(default)]
    mutual: bool,
}

fn iscsi_chap_set(shared: &Shared, p: ChapSet) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let t = target_mut(c, &p.iqn)?;
        let chap = Some(Chap {
            username: p.username.clone(),
            secret: p.secret.clone(),
        });
        if p.mutual {
            t.mutual_chap = chap;
        } else {
            t.chap = chap;
        }
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChapClear {
    iqn: String,
    #[serde(default)]
    mutual: bool,
}

fn iscsi_chap_clear(shared: &Shared, p: ChapClear) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let t = target_mut(c, &p.iqn)?;
        if p.mutual {
            t.mutual_chap = None;
        } else {
            // Mutual CHAP needs CHAP: clearing CHAP clears both.
            t.chap = None;
            t.mutual_chap = None;
        }
        Ok(())
    })
}

fn nvme_subsystem_list(shared: &Shared) -> Value {
    let c = shared.live.lock();
    let controllers = shared.nvmf.list_controllers();
    let rows: Vec<Value> = c
        .nvme_subsystems
        .iter()
        .map(|s| {
            json!({
                "nqn": s.nqn,
                "namespaces": s.namespaces.iter().map(|(n, v)| json!({"nsid": n, "volume": v})).collect::<Vec<_>>(),
                "hosts": s.hosts,
                "dhchap_hosts": s.host_keys.iter().map(|k| &k.nqn).collect::<Vec<_>>(),
                "controllers": controllers.iter().filter(|r| r.subsystem == s.nqn).count(),
            })
        })
        .collect();
    json!(rows)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubsystemAdd {
    nqn: String,
    hosts: Option<Vec<String>>,
}

fn nvme_subsystem_add(shared: &Shared, p: SubsystemAdd) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        if c.nvme_subsystems.iter().any(|s| s.nqn == p.nqn) {
            return Err(RpcError::refused(format!(
                "NVMe subsystem {} exists",
                p.nqn
            )));
        }
        c.nvme_subsystems.push(NvmeSubsystem::new(
            p.nqn.clone(),
            p.hosts
                .clone()
                .unwrap_or_else(|| vec![zctarget_config::ANY.to_owned()]),
        ));
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NqnForce {
    nqn: String,
    #[serde(default)]
    force: bool,
}

fn nvme_subsystem_remove(shared: &Shared, p: NqnForce) -> RpcResult {
    let live = shared
        .nvmf
        .list_controllers()
        .iter()
        .filter(|r| r.subsystem == p.nqn)
        .count();
    change(shared, &mut |_| {}, |c| {
        subsystem_mut(c, &p.nqn)?;
        if live > 0 && !p.force {
            return Err(RpcError::refused(format!(
                "NVMe subsystem {} has {live} controller(s); use force to disconnect them",
                p.nqn
            )));
        }
        c.nvme_subsystems.retain(|s| s.nqn != p.nqn);
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceAdd {
    nqn: String,
    volume: String,
    nsid: Option<u32>,
}

fn nvme_namespace_add(shared: &Shared, p: NamespaceAdd) -> RpcResult {
    let mut number = 0;
    let mut report = change(shared, &mut |_| {}, |c| {
        let snapshot = c.clone();
        let s = subsystem_mut(c, &p.nqn)?;
        number = map_volume(&snapshot, &mut s.namespaces, &p.volume, p.nsid, "NSID")?;
        Ok(())
    })?;
    report["nsid"] = json!(number);
    Ok(report)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceRemove {
    nqn: String,
    nsid: u32,
}

fn nvme_namespace_remove(shared: &Shared, p: NamespaceRemove) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let s = subsystem_mut(c, &p.nqn)?;
        s.namespaces
            .remove(p.nsid)
            .map(drop)
            .ok_or_else(|| RpcError::not_found(format!("{} has no namespace {}", p.nqn, p.nsid)))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostParams {
    nqn: String,
    host: String,
    /// DH-HMAC-CHAP secret: the host must authenticate (new connections).
    #[serde(default)]
    dhchap_key: Option<String>,
    /// Controller secret for bidirectional authentication.
    #[serde(default)]
    dhchap_ctrl_key: Option<String>,
}

/// `nvme.host.add` / `remove`. Adding a host with `dhchap_key` makes it
/// authenticate; adding an allowed host again with a key sets or rotates
/// its secrets (established queues stay; new ones use the new secret).
/// Removing a host drops its secrets too.
fn nvme_host(shared: &Shared, p: HostParams, add: bool) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let s = subsystem_mut(c, &p.nqn)?;
        if !add {
            s.host_keys.retain(|k| k.nqn != p.host);
            return edit_acl(&mut s.hosts, &p.host, add);
        }
        let Some(key) = p.dhchap_key.clone() else {
            if p.dhchap_ctrl_key.is_some() {
                return Err(RpcError::refused("--dhchap-ctrl-key needs --dhchap-key"));
            }
            return edit_acl(&mut s.hosts, &p.host, add);
        };
        if p.host == zctarget_config::ANY {
            return Err(RpcError::refused("secrets belong to a host NQN, not \"*\""));
        }
        if !s.hosts.contains(&p.host) {
            s.hosts.push(p.host.clone());
        }
        s.host_keys.retain(|k| k.nqn != p.host);
        s.host_keys.push(zctarget_config::NvmeHostKey {
            nqn: p.host.clone(),
            dhchap_key: key,
            dhchap_ctrl_key: p.dhchap_ctrl_key.clone(),
            dhchap_hashes: Vec::new(),
            dhchap_dhgroups: Vec::new(),
        });
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TsihParams {
    tsih: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CntlidParams {
    cntlid: u16,
}
