//! What this gateway presents for the volumes of a `[cluster]` (several
//! zctarget gateways exporting the same volumes): identifiers derived from
//! each volume's identity rather than from the gateway, and the NVMe ANA
//! and SCSI ALUA states of this gateway's paths. An rbd volume's state
//! follows who holds its exclusive lock (this gateway's [`Role`], see
//! `failover`); other volumes' ownership is static (a volume's `owner`,
//! else the first gateway).
//!
//! Gateway `n` (its position in `cluster.gateways`, from 1) is ANA group
//! `n`, target port group `n` and relative target port `n`, and hands out
//! controller IDs from its own block (`Cluster::cntlid_range`).

use std::collections::HashMap;

use zctarget_backends::rbd::Role;
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
    /// Volume name → this gateway's role, for the rbd volumes shared by
    /// the cluster (what their ANA / ALUA states follow).
    local: HashMap<String, Role>,
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
            local: HashMap::new(),
        }
    }

    /// These roles with this gateway's current role for every shared rbd
    /// volume of `exports` (the lock owner is Optimized, a follower in the
    /// non-owner state, a fenced gateway Inaccessible / Standby).
    pub fn observing(mut self, exports: &crate::exports::Exports) -> Self {
        if self.cluster.is_some() {
            self.local = exports
                .volumes()
                .into_iter()
                .filter_map(|(_, v)| {
                    let role = v.rbd_image()?.role();
                    (role != Role::Solo).then(|| (v.name().to_owned(), role))
                })
                .collect();
        }
        self
    }

    /// This gateway's role for volume `name`, if it is a shared rbd volume.
    pub fn local_role(&self, name: &str) -> Option<Role> {
        self.local.get(name).copied()
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
            .map(|g| {
                // The shared rbd volumes of group g decide: any fenced →
                // Inaccessible, else any owned → Optimized, else followed.
                let roles: Vec<Role> = self
                    .local
                    .iter()
                    .filter(|(name, _)| self.owner(name) == Some(g))
                    .map(|(_, r)| *r)
                    .collect();
                if roles.contains(&Role::Fenced) {
                    AnaState::Inaccessible
                } else if roles.contains(&Role::Owner) {
                    AnaState::Optimized
                } else if !roles.is_empty() {
                    other
                } else if g == me {
                    AnaState::Optimized
                } else {
                    other
                }
            })
            .collect();
        Some(AnaGroups::new(states))
    }

    /// Explicit ALUA for volume `name`: `Some(the non-owner state)` when
    /// SET TARGET PORT GROUPS can move its ownership — a shared rbd volume,
    /// whose exclusive lock moves; `None` for static
    /// ownership and outside a cluster.
    pub fn explicit_alua(&self, name: &str) -> Option<AluaState> {
        let c = self.cluster.as_ref()?;
        matches!(
            self.local_role(name),
            Some(Role::Owner | Role::Follower | Role::Fenced)
        )
        .then(|| non_owner_alua(c))
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
        let me = c.number();
        let other = non_owner_alua(c);
        // A shared rbd volume: this port's state is this gateway's role; a
        // non-owner cannot tell which peer holds the lock and reports its
        // peers Active/optimized (a host uses each path's own group).
        let state_of = |g: u16| match self.local_role(name) {
            None | Some(Role::Solo) if g == owner => AluaState::ActiveOptimized,
            None | Some(Role::Solo) => other,
            Some(Role::Owner) if g == me => AluaState::ActiveOptimized,
            Some(Role::Owner) => other,
            Some(Role::Follower) if g == me => other,
            Some(Role::Fenced) if g == me => AluaState::Standby,
            Some(Role::Follower | Role::Fenced) => AluaState::ActiveOptimized,
        };
        // PREF marks the configured owner's group only while it is the one
        // reported Active/optimized: a restarted configured owner that
        // follows must not draw a host's I/O (dm-multipath's alua
        // prioritizer adds 80 for PREF, more than Active/optimized's 50).
        let groups = (1..=gateway_count(c))
            .map(|g| {
                let state = state_of(g);
                PortGroup {
                    id: g,
                    state,
                    preferred: g == owner && state == AluaState::ActiveOptimized,
                    relative_ports: vec![g],
                }
            })
            .collect();
        (me, me, groups)
    }
}

fn gateway_count(c: &config::Cluster) -> u16 {
    u16::try_from(c.gateways.len()).unwrap_or(u16::MAX)
}

/// The ALUA state a gateway reports for a volume it does not own.
fn non_owner_alua(c: &config::Cluster) -> AluaState {
    match c.non_owner_state {
        NonOwnerState::NonOptimized => AluaState::ActiveNonOptimized,
        NonOwnerState::Inaccessible => AluaState::Standby,
        NonOwnerState::Unavailable => AluaState::Unavailable,
    }
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

    #[test]
    fn a_shared_volume_follows_this_gateways_lock_role() {
        let cfg = config("b", "non_optimized");
        let mut r = Roles::new(cfg.cluster.as_ref(), &cfg);
        // v is owned by c (group 3), w by a (group 1); b is gateway 2.
        let ana = |r: &Roles| r.ana_groups().expect("ana").states;
        let mine = |r: &Roles, v: &str| {
            let (_, g, groups) = r.scsi_ports(v);
            groups.iter().find(|p| p.id == g).map(|p| p.state)
        };
        r.local.insert("v".into(), Role::Follower);
        assert_eq!(ana(&r)[2], AnaState::NonOptimized);
        assert_eq!(mine(&r, "v"), Some(AluaState::ActiveNonOptimized));
        // b took v over: group 3 Optimized here, b's port Active/optimized.
        r.local.insert("v".into(), Role::Owner);
        assert_eq!(ana(&r)[2], AnaState::Optimized);
        assert_eq!(mine(&r, "v"), Some(AluaState::ActiveOptimized));
        assert_eq!(r.scsi_ports("v").2[2].state, AluaState::ActiveNonOptimized);
        // Fenced: Inaccessible / Standby.
        r.local.insert("v".into(), Role::Fenced);
        assert_eq!(ana(&r)[2], AnaState::Inaccessible);
        assert_eq!(mine(&r, "v"), Some(AluaState::Standby));
        // Static volumes keep the configured answer.
        assert_eq!(ana(&r)[1], AnaState::Optimized);
        assert_eq!(mine(&r, "w"), Some(AluaState::ActiveNonOptimized));
    }

    #[test]
    fn a_configured_owner_that_follows_is_not_preferred() {
        // c is v's configured owner; after a failover it restarts and
        // follows: its own group is Active/non-optimized and must not
        // carry PREF, or a host's multipath would move I/O to it.
        let cfg = config("c", "non_optimized");
        let mut r = Roles::new(cfg.cluster.as_ref(), &cfg);
        let pref =
            |r: &Roles| -> Vec<bool> { r.scsi_ports("v").2.iter().map(|g| g.preferred).collect() };
        r.local.insert("v".into(), Role::Owner);
        assert_eq!(pref(&r), [false, false, true]);
        r.local.insert("v".into(), Role::Follower);
        assert_eq!(r.scsi_ports("v").2[2].state, AluaState::ActiveNonOptimized);
        assert_eq!(pref(&r), [false, false, false]);
        r.local.insert("v".into(), Role::Fenced);
        assert_eq!(pref(&r), [false, false, false]);
    }
}
