//! Each `ctl` command as the admin method it calls, its parameters and
//! the table its result prints as.

use serde_json::{json, Value};

use super::*;

pub(super) fn request(c: CtlCommand) -> (&'static str, Value, View) {
    use View::{Changes, Table};
    match c {
        CtlCommand::Status => ("status", json!({}), View::Status),
        CtlCommand::Config {
            action: ConfigAction::Show,
        } => ("config.show", json!({}), View::Text("toml")),
        CtlCommand::Config {
            action: ConfigAction::Reload,
        } => ("config.reload", json!({}), Changes),
        CtlCommand::Volume { action } => match action {
            VolumeAction::List => (
                "volume.list",
                json!({}),
                Table(&[
                    "name",
                    "backend",
                    "size",
                    "block_size",
                    "read_only",
                    "path",
                    "exported_as",
                ]),
            ),
            VolumeAction::Add {
                name,
                path,
                size,
                block_size,
                backend,
                rbd,
                read_only,
                direct_io,
                preallocate,
            } => (
                "volume.add",
                json!({"name": name, "path": path, "size": size, "block_size": block_size, "backend": backend,
                       "read_only": read_only, "direct_io": direct_io, "preallocate": preallocate,
                       "pool": rbd.pool, "image": rbd.image, "namespace": rbd.namespace,
                       "ceph_conf": rbd.ceph_conf, "ceph_user": rbd.ceph_user, "keyring": rbd.keyring,
                       "rados_timeout_secs": rbd.rados_timeout_secs}),
                Changes,
            ),
            VolumeAction::Remove { name, force } => (
                "volume.remove",
                json!({"name": name, "force": force}),
                Changes,
            ),
            VolumeAction::Release { name, to } => {
                let mut p = json!({ "name": name });
                if let Some(to) = to {
                    p["to"] = json!(to);
                }
                ("volume.release", p, View::Status)
            }
            VolumeAction::Acquire { name } => {
                ("volume.acquire", json!({"name": name}), View::Status)
            }
            VolumeAction::Rejoin { name } => ("volume.rejoin", json!({"name": name}), View::Status),
            VolumeAction::Handover { name } => {
                ("volume.handover", json!({"name": name}), View::Status)
            }
        },
        CtlCommand::Iscsi { action } => match action {
            IscsiAction::Target {
                action: TargetAction::List,
            } => (
                "iscsi.target.list",
                json!({}),
                Table(&["iqn", "alias", "luns", "initiators", "chap", "sessions"]),
            ),
            IscsiAction::Target {
                action:
                    TargetAction::Add {
                        iqn,
                        alias,
                        initiators,
                    },
            } => (
                "iscsi.target.add",
                json!({"iqn": iqn, "alias": alias, "initiators": (!initiators.is_empty()).then_some(initiators)}),
                Changes,
            ),
            IscsiAction::Target {
                action: TargetAction::Remove { iqn, force },
            } => (
                "iscsi.target.remove",
                json!({"iqn": iqn, "force": force}),
                Changes,
            ),
            IscsiAction::Lun {
                action: LunAction::Add { iqn, volume, lun },
            } => (
                "iscsi.lun.add",
                json!({"iqn": iqn, "volume": volume, "lun": lun}),
                Changes,
            ),
            IscsiAction::Lun {
                action: LunAction::Remove { iqn, lun },
            } => ("iscsi.lun.remove", json!({"iqn": iqn, "lun": lun}), Changes),
            IscsiAction::Initiator {
                action: AclAction::Add { owner, name },
            } => (
                "iscsi.initiator.add",
                json!({"iqn": owner, "initiator": name}),
                Changes,
            ),
            IscsiAction::Initiator {
                action: AclAction::Remove { owner, name },
            } => (
                "iscsi.initiator.remove",
                json!({"iqn": owner, "initiator": name}),
                Changes,
            ),
            IscsiAction::Chap {
                action:
                    ChapAction::Set {
                        iqn,
                        username,
                        secret,
                        mutual,
                        ..
                    },
            } => (
                "iscsi.chap.set",
                json!({"iqn": iqn, "username": username, "secret": secret, "mutual": mutual}),
                Changes,
            ),
            IscsiAction::Chap {
                action: ChapAction::Clear { iqn, mutual },
            } => (
                "iscsi.chap.clear",
                json!({"iqn": iqn, "mutual": mutual}),
                Changes,
            ),
        },
        CtlCommand::Nvme { action } => match action {
            NvmeAction::Subsystem {
                action: SubsystemAction::List,
            } => (
                "nvme.subsystem.list",
                json!({}),
                Table(&["nqn", "namespaces", "hosts", "dhchap_hosts", "controllers"]),
            ),
            NvmeAction::Subsystem {
                action: SubsystemAction::Add { nqn, hosts },
            } => (
                "nvme.subsystem.add",
                json!({"nqn": nqn, "hosts": (!hosts.is_empty()).then_some(hosts)}),
                Changes,
            ),
            NvmeAction::Subsystem {
                action: SubsystemAction::Remove { nqn, force },
            } => (
                "nvme.subsystem.remove",
                json!({"nqn": nqn, "force": force}),
                Changes,
            ),
            NvmeAction::Namespace {
                action: NamespaceAction::Add { nqn, volume, nsid },
            } => (
                "nvme.namespace.add",
                json!({"nqn": nqn, "volume": volume, "nsid": nsid}),
                Changes,
            ),
            NvmeAction::Namespace {
                action: NamespaceAction::Remove { nqn, nsid },
            } => (
                "nvme.namespace.remove",
                json!({"nqn": nqn, "nsid": nsid}),
                Changes,
            ),
            NvmeAction::Host {
                action:
                    NvmeHostAction::Add {
                        owner,
                        name,
                        dhchap_key,
                        dhchap_ctrl_key,
                        ..
                    },
            } => (
                "nvme.host.add",
                json!({"nqn": owner, "host": name, "dhchap_key": dhchap_key,
                       "dhchap_ctrl_key": dhchap_ctrl_key}),
                Changes,
            ),
            NvmeAction::Host {
                action: NvmeHostAction::Remove { owner, name },
            } => (
                "nvme.host.remove",
                json!({"nqn": owner, "host": name}),
                Changes,
            ),
        },
        CtlCommand::Session {
            action: SessionAction::List,
        } => (
            "session.list",
            json!({}),
            Table(&[
                "tsih",
                "initiator",
                "target",
                "address",
                "in_flight",
                "commands",
                "age_seconds",
            ]),
        ),
        CtlCommand::Session {
            action: SessionAction::Disconnect { tsih },
        } => ("session.disconnect", json!({"tsih": tsih}), Changes),
        CtlCommand::Controller {
            action: ControllerAction::List,
        } => (
            "controller.list",
            json!({}),
            Table(&[
                "cntlid",
                "subsystem",
                "host",
                "address",
                "queues",
                "in_flight",
                "reads",
                "writes",
            ]),
        ),
        CtlCommand::Controller {
            action: ControllerAction::Disconnect { cntlid },
        } => ("controller.disconnect", json!({"cntlid": cntlid}), Changes),
    }
}
