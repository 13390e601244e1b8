//! iSCSI methods: targets, LUNs, initiator ACLs, CHAP.

use super::*;

pub(super) fn iscsi_target_list(shared: &Shared) -> Value {
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
pub(super) struct TargetAdd {
    iqn: String,
    alias: Option<String>,
    initiators: Option<Vec<String>>,
}

pub(super) fn iscsi_target_add(shared: &Shared, p: TargetAdd) -> RpcResult {
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
pub(super) struct IqnForce {
    iqn: String,
    #[serde(default)]
    force: bool,
}

pub(super) fn iscsi_target_remove(shared: &Shared, p: IqnForce) -> RpcResult {
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

pub(super) fn target_mut<'a>(
    c: &'a mut Config,
    iqn: &str,
) -> Result<&'a mut IscsiTarget, RpcError> {
    c.iscsi_targets
        .iter_mut()
        .find(|t| t.iqn == iqn)
        .ok_or_else(|| RpcError::not_found(format!("no iSCSI target {iqn}")))
}

pub(super) fn subsystem_mut<'a>(
    c: &'a mut Config,
    nqn: &str,
) -> Result<&'a mut NvmeSubsystem, RpcError> {
    c.nvme_subsystems
        .iter_mut()
        .find(|s| s.nqn == nqn)
        .ok_or_else(|| RpcError::not_found(format!("no NVMe subsystem {nqn}")))
}

/// Maps `volume` into `map` at `number` (or the lowest free number).
pub(super) fn map_volume(
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
pub(super) struct LunAdd {
    iqn: String,
    volume: String,
    lun: Option<u32>,
}

pub(super) fn iscsi_lun_add(shared: &Shared, p: LunAdd) -> RpcResult {
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
pub(super) struct LunRemove {
    iqn: String,
    lun: u32,
}

pub(super) fn iscsi_lun_remove(shared: &Shared, p: LunRemove) -> RpcResult {
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
pub(super) struct InitiatorParams {
    iqn: String,
    initiator: String,
}

pub(super) fn iscsi_initiator(shared: &Shared, p: InitiatorParams, add: bool) -> RpcResult {
    change(shared, &mut |_| {}, |c| {
        let t = target_mut(c, &p.iqn)?;
        edit_acl(&mut t.initiators, &p.initiator, add)
    })
}

pub(super) fn edit_acl(acl: &mut Vec<String>, name: &str, add: bool) -> Result<(), RpcError> {
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
pub(super) struct ChapSet {
    iqn: String,
    username: String,
    secret: String,
    #[serde(default)]
    mutual: bool,
}

pub(super) fn iscsi_chap_set(shared: &Shared, p: ChapSet) -> RpcResult {
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
pub(super) struct ChapClear {
    iqn: String,
    #[serde(default)]
    mutual: bool,
}

pub(super) fn iscsi_chap_clear(shared: &Shared, p: ChapClear) -> RpcResult {
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
