//! NVMe methods: subsystems, namespaces, allowed hosts and their DH-HMAC-CHAP keys.

use super::*;

pub(super) fn nvme_subsystem_list(shared: &Shared) -> Value {
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
pub(super) struct SubsystemAdd {
    nqn: String,
    hosts: Option<Vec<String>>,
}

pub(super) fn nvme_subsystem_add(shared: &Shared, p: SubsystemAdd) -> RpcResult {
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
pub(super) struct NqnForce {
    nqn: String,
    #[serde(default)]
    force: bool,
}

pub(super) fn nvme_subsystem_remove(shared: &Shared, p: NqnForce) -> RpcResult {
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
pub(super) struct NamespaceAdd {
    nqn: String,
    volume: String,
    nsid: Option<u32>,
}

pub(super) fn nvme_namespace_add(shared: &Shared, p: NamespaceAdd) -> RpcResult {
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
pub(super) struct NamespaceRemove {
    nqn: String,
    nsid: u32,
}

pub(super) fn nvme_namespace_remove(shared: &Shared, p: NamespaceRemove) -> RpcResult {
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
pub(super) struct HostParams {
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
pub(super) fn nvme_host(shared: &Shared, p: HostParams, add: bool) -> RpcResult {
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
