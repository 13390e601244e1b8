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

mod iscsi;
mod nvme;
mod volumes;

use iscsi::*;
use nvme::*;
use volumes::*;

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
        "volume.rejoin" => {
            let p: NameForce = parse(params)?;
            crate::failover::rejoin(shared, &p.name)
                .map(|m| json!(m))
                .map_err(|e| RpcError::refused(format!("{e:#}")))
        }
        // Both halves from the gateway that is to own it, over the peer link.
        "volume.handover" => {
            let p: NameForce = parse(params)?;
            let Some(link) = &shared.peer else {
                return Err(RpcError::refused(
                    "handover needs the peer link (cluster.peers); use volume release --to"
                        .to_owned(),
                ));
            };
            link.handover(shared, &p.name)
                .map(|m| json!(m))
                .map_err(|e| RpcError::refused(format!("{e:#}")))
        }
        // Failback: the owner releases (for a named gateway, which then
        // takes the lock by itself), the other gateway acquires.
        "volume.release" | "volume.acquire" => {
            let p: MoveOwner = parse(params)?;
            let release = method == "volume.release";
            if !release && p.to.is_some() {
                return Err(RpcError::new(
                    RpcError::INVALID_PARAMS,
                    "\"to\" goes with volume.release",
                ));
            }
            crate::failover::move_owner(shared, &p.name, release, p.to.as_deref())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveOwner {
    name: String,
    /// volume.release: the gateway the lock is for.
    #[serde(default)]
    to: Option<String>,
}
