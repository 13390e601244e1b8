//! What this gateway presents for the volumes of a `[cluster]` (several
//! zctarget gateways exporting the same volumes): identifiers derived from
//! each volume's identity rather than from the gateway, and the NVMe ANA
//! and SCSI ALUA states of this gateway's paths. Ownership is static (a
//! volume's `owner`, else the first gateway); failover is not built yet.
//!
//! Gateway `n` (its position in `cluster.gateways`, from 1) is ANA group
//! `n`, target port group `n` and relative target port `n`, and hands out
//! controller IDs from its own block (`Cluster::cntlid_range`).

use std::collections::HashMap;

use zctarget_config as config;
use zctarget_config::NonOwnerState;
use zctarget_protocol::nvme::ana::{AnaGroups, AnaState};
use zctarget_protocol::scsi::{AluaState, PortGroup};

/// Identity and owner of every configured volume, and the cluster this
/// gateway belongs to (if any).
#[derive(Debug, Clone, Default)]
pub struct Roles {
    cluster: Option<config::Cluster>,
    /// Volume name → (identity, owner gateway number).
    volumes: HashMap<String, (String, Option<u16>)>,
}

impl Roles {
    /// The roles `cfg` gives its volumes, with `cluster` (the section the
    /// daemon started with: it changes only with a restart).
    pub fn new(cluster: Option<&config::Cluster>, cfg: &config::Config) -> Self {
        let view = config::Config {
            cluster: cluster.cloned(),
            volumes: Vec::new(),
            ..config::Config::default()
        };
        let volumes = cfg
            .volumes
            .iter()
            .map(|v| {
                let role = (view.volume_identity(v), view.volume_owner(v));
                (v.name.clone(), role)
            })
            .collect();
        Roles {
            cluster: cluster.cloned(),
            volumes,
        }
    }

    /// The cluster, `None` for a single gateway.
    pub fn cluster(&self) -> Option<&config::Cluster> {
        self.cluster.as_ref()
    }

    /// What volume `name`'s identifiers derive from (its name when it is
    /// not configured).
    pub fn identity<'a>(&'a self, name: &'a str) -> &'a str {
        self.volumes.get(name).map_or(name, |(id, _)| id.as_str())
    }

    /// The gateway number owning volume `name` (`[cluster]` only).
    fn owner(&self, name: &str) -> Option<u16> {
        let c = self.cluster.as_ref()?;
        Some(
            self.volumes
                .get(name)
                .and_then(|(_, o)| *o)
                .unwrap_or(1)
                .min(u16::try_from(c.gateways.len()).unwrap_or(u16::MAX)),
        )
    }

    /// The ANA group (= owner gateway) of volume `name`'s namespaces; 0
    /// without a cluster.
    pub fn anagrpid(&self, name: &str) -> u32 {
        self.owner(name).map_or(0, u32::from)
    }

    /// The ANA groups this gateway's controllers report: its own group
    /// Optimized, every other gateway's in the non-owner state.
    pub fn ana_groups(&self) -> Option<AnaGroups> {
        let c = self.cluster.as_ref()?;
        let me = c.number();
        let other = match c.non_owner_state {
            NonOwnerState::NonOptimized => AnaState::NonOptimized,
            NonOwnerState::Inaccessible | NonOwnerState::Unavailable => AnaState::Inaccessible,
        };
        let states = (1..=gateway_count(c))
            .map(|g| if g == me { AnaState::Optimized } else { other })
            .collect();
        Some(AnaGroups::new(states))
    }

    /// SCSI ports of volume `name` seen from this gateway: (relative
    /// target port and target port group of this gateway, every group
    /// with its state for the volume — the owner's Active/optimized and
    /// preferred, the others in the non-owner state). Without a cluster:
    /// port 1, group 0, no groups (no ALUA).
    pub fn scsi_ports(&self, name: &str) -> (u16, u16, Vec<PortGroup>) {
        let Some(c) = self.cluster.as_ref() else {
            return (1, 0, Vec::new());
        };
        let owner = self.owner(name).unwrap_or(1);
        let other = match c.non_owner_state {
            NonOwnerState::NonOptimized => AluaState::ActiveNonOptimized,
            NonOwnerState::Inaccessible => AluaState::Standby,
            NonOwnerState::Unavailable => AluaState::Unavailable,
        };
        let groups = (1..=gateway_count(c))
            .map(|g| PortGroup {
                id: g,
                state: if g == owner {
                    AluaState::ActiveOptimized
                } else {
                    other
                },
                preferred: g == owner,
                relative_ports: vec![g],
            })
            .collect();
        let me = c.number();
        (me, me, groups)
    }
}

fn gateway_count(c: &config::Cluster) -> u16 {
    u16::try_from(c.gateways.len()).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(me: &str, non_owner: &str) -> config::Config {
        let text = format!(
            "[cluster]\ngateway = \"{me}\"\ngateways = [\"a\", \"b\", \"c\"]\n\
             non_owner_state = \"{non_owner}\"\n\n\
             [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"1MiB\"\nowner = \"c\"\n\n\
             [[volumes]]\nname = \"w\"\nbackend = \"memory\"\nsize = \"1MiB\"\nidentity = \"x\"\n"
        );
        config::Config::from_toml_str(&text, std::path::Path::new("/")).expect("valid")
    }

    #[test]
    fn each_gateway_reports_its_own_group_and_the_owner() {
        let cfg = config("b", "unavailable");
        let r = Roles::new(cfg.cluster.as_ref(), &cfg);
        assert_eq!((r.anagrpid("v"), r.anagrpid("w")), (3, 1));
        assert_eq!((r.identity("v"), r.identity("w")), ("v", "x"));
        let ana = r.ana_groups().expect("ana");
        assert_eq!(
            ana.states,
            [
                AnaState::Inaccessible,
                AnaState::Optimized,
                AnaState::Inaccessible
            ]
        );
        let (port, group, groups) = r.scsi_ports("v");
        assert_eq!((port, group), (2, 2));
        let states: Vec<(u16, AluaState, bool)> = groups
            .iter()
            .map(|g| (g.id, g.state, g.preferred))
            .collect();
        assert_eq!(
            states,
            [
                (1, AluaState::Unavailable, false),
                (2, AluaState::Unavailable, false),
                (3, AluaState::ActiveOptimized, true)
            ]
        );
        let cfg = config("a", "non_optimized");
        let r = Roles::new(cfg.cluster.as_ref(), &cfg);
        assert_eq!(
            r.ana_groups().expect("ana").states[1],
            AnaState::NonOptimized
        );
        assert_eq!(r.scsi_ports("w").2[1].state, AluaState::ActiveNonOptimized);
        // No cluster: no ANA, no ALUA, identity still honoured.
        let solo = Roles::new(None, &cfg);
        assert!(solo.ana_groups().is_none());
        assert_eq!(solo.scsi_ports("v"), (1, 0, Vec::new()));
        assert_eq!((solo.anagrpid("v"), solo.identity("w")), (0, "x"));
    }
}
