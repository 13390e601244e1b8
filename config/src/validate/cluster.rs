//! `[cluster]` (this gateway's id, every gateway, the non-owner state)
//! and the volume keys that depend on it: `owner` and `identity`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::Checker;
use crate::model::{Cluster, Volume};
use crate::raw::{RawCluster, RawVolume};

/// Longest gateway id and volume identity, in bytes.
const MAX_ID_LEN: usize = 255;

impl Checker<'_> {
    /// The `[cluster]` section: ids well formed and unique, at most
    /// [`Cluster::MAX_GATEWAYS`], `gateway` one of them.
    pub(super) fn cluster(&mut self, raw: Spanned<RawCluster>, base_dir: &Path) -> Cluster {
        let section = raw.span();
        let raw = raw.into_inner();
        let list_span = raw.gateways.span();
        let list = raw.gateways.into_inner();
        let mut gateways = Vec::with_capacity(list.len());
        let mut first: HashMap<String, usize> = HashMap::new();
        for (i, g) in list.into_iter().enumerate() {
            let path = format!("cluster.gateways[{i}]");
            self.gateway_id(&g, &path);
            let id = g.get_ref().clone();
            if let Some(j) = first.get(&id) {
                let msg = format!("gateway `{id}` is already listed as cluster.gateways[{j}]");
                self.err(g.span(), &path, msg);
            } else {
                first.insert(id.clone(), i);
            }
            gateways.push(id);
        }
        if gateways.is_empty() {
            let msg = "list every gateway of the cluster, this one included".to_owned();
            self.err(list_span, "cluster.gateways", msg);
        } else if gateways.len() > Cluster::MAX_GATEWAYS {
            let msg = format!(
                "{} gateways listed; at most {} are supported",
                gateways.len(),
                Cluster::MAX_GATEWAYS
            );
            self.err(list_span, "cluster.gateways", msg);
        }
        self.gateway_id(&raw.gateway, "cluster.gateway");
        let gateway = raw.gateway.get_ref().clone();
        if !gateways.is_empty() && !gateways.contains(&gateway) {
            let msg = format!(
                "`{gateway}` is not in cluster.gateways ({})",
                gateways.join(", ")
            );
            self.err(raw.gateway.span(), "cluster.gateway", msg);
        }
        let non_owner_state = self
            .keyword(raw.non_owner_state, "cluster.non_owner_state")
            .unwrap_or_default();
        let takeover_after_ms = match raw.takeover_after_ms {
            None => Cluster::TAKEOVER_AFTER_MS,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(ms) if Cluster::TAKEOVER_AFTER_RANGE.contains(&ms) => ms,
                _ => {
                    let r = Cluster::TAKEOVER_AFTER_RANGE;
                    let msg = format!(
                        "must be between {} and {} milliseconds, not {}",
                        r.start(),
                        r.end(),
                        v.get_ref()
                    );
                    self.err(v.span(), "cluster.takeover_after_ms", msg);
                    Cluster::TAKEOVER_AFTER_MS
                }
            },
        };
        let rejoin_after_ms = match raw.rejoin_after_ms {
            None => Cluster::REJOIN_AFTER_MS,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(ms) if ms == 0 || Cluster::REJOIN_AFTER_RANGE.contains(&ms) => ms,
                _ => {
                    let r = Cluster::REJOIN_AFTER_RANGE;
                    let msg = format!(
                        "must be 0 (never by itself) or between {} and {} milliseconds, not {}",
                        r.start(),
                        r.end(),
                        v.get_ref()
                    );
                    self.err(v.span(), "cluster.rejoin_after_ms", msg);
                    Cluster::REJOIN_AFTER_MS
                }
            },
        };
        let (peers, peer_secret_file) = self.peers(
            raw.peers,
            raw.peer_secret_file,
            &gateways,
            &gateway,
            section,
            base_dir,
        );
        Cluster {
            gateway,
            gateways,
            non_owner_state,
            takeover_after_ms,
            rejoin_after_ms,
            peers,
            peer_secret_file,
        }
    }

    /// `cluster.peers` (every key a listed gateway, every value an
    /// IP:PORT, this gateway's own entry present) and
    /// `cluster.peer_secret_file` (required with `peers`, only with it).
    fn peers(
        &mut self,
        raw: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
        secret: Option<Spanned<String>>,
        gateways: &[String],
        gateway: &str,
        section: std::ops::Range<usize>,
        base_dir: &Path,
    ) -> (BTreeMap<String, SocketAddr>, Option<PathBuf>) {
        let mut peers = BTreeMap::new();
        let secret_file = secret.map(|s| {
            if s.get_ref().is_empty() {
                let msg = "the secret file path must not be empty".to_owned();
                self.err(s.span(), "cluster.peer_secret_file", msg);
            }
            (s.span(), base_dir.join(s.get_ref()))
        });
        let Some(raw) = raw else {
            if let Some((span, _)) = secret_file {
                let msg = "`peer_secret_file` needs `peers` (the peer link's addresses)".into();
                self.err(span, "cluster.peer_secret_file", msg);
            }
            return (peers, None);
        };
        let map_span = raw.span();
        let map = raw.into_inner();
        let listed_self = map.contains_key(gateway);
        for (id, addr) in map {
            let path = format!("cluster.peers.{id}");
            if !gateways.contains(&id) {
                let msg = format!(
                    "`{id}` is not in cluster.gateways ({})",
                    gateways.join(", ")
                );
                self.err(addr.span(), &path, msg);
                continue;
            }
            match addr.get_ref().parse::<SocketAddr>() {
                Ok(a) => {
                    peers.insert(id, a);
                }
                Err(_) => {
                    let msg = format!(
                        "`{}` is not an IP:PORT socket address (e.g. `10.0.0.1:7401`)",
                        addr.get_ref()
                    );
                    self.err(addr.span(), &path, msg);
                }
            }
        }
        if !listed_self && gateways.iter().any(|g| g == gateway) {
            let msg = format!("list this gateway (`{gateway}`): its entry is where it listens");
            self.err(map_span.clone(), "cluster.peers", msg);
        }
        let secret_file = match secret_file {
            Some((_, p)) => Some(p),
            None => {
                let msg = "the peer link needs `peer_secret_file` (a file holding the secret \
                           every gateway shares)"
                    .to_owned();
                self.err(
                    if map_span.is_empty() {
                        section
                    } else {
                        map_span
                    },
                    "cluster.peer_secret_file",
                    msg,
                );
                None
            }
        };
        (peers, secret_file)
    }

    fn gateway_id(&mut self, id: &Spanned<String>, path: &str) {
        let s = id.get_ref();
        if s.is_empty() {
            self.err(id.span(), path, "gateway id must not be empty".into());
        } else if s.len() > MAX_ID_LEN {
            let msg = format!("gateway id is {} bytes; the limit is {MAX_ID_LEN}", s.len());
            self.err(id.span(), path, msg);
        } else if let Some(ch) = s
            .chars()
            .find(|&ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
        {
            let msg = format!(
                "gateway id `{s}` contains {ch:?}; only A-Z, a-z, 0-9, `.`, `_` and `-` are allowed"
            );
            self.err(id.span(), path, msg);
        }
    }

    /// A volume's `identity` and `owner` (`owner` needs `[cluster]` and
    /// must name one of its gateways), and where its identity comes from.
    pub(super) fn volume_cluster_keys(
        &mut self,
        p: &str,
        v: &RawVolume,
        cluster: Option<&Cluster>,
    ) -> (Option<String>, Option<String>) {
        let identity = v.identity.as_ref().map(|id| {
            self.text_field(id, &format!("{p}.identity"), "identity");
            id.get_ref().clone()
        });
        let owner = v.owner.as_ref().map(|o| {
            let path = format!("{p}.owner");
            match cluster {
                None => self.err(
                    o.span(),
                    &path,
                    "`owner` needs a [cluster] section listing the gateways".into(),
                ),
                Some(c) if !c.gateways.contains(o.get_ref()) => {
                    let msg = format!(
                        "`{}` is not in cluster.gateways ({})",
                        o.get_ref(),
                        c.gateways.join(", ")
                    );
                    self.err(o.span(), &path, msg);
                }
                Some(_) => {}
            }
            o.get_ref().clone()
        });
        (identity, owner)
    }

    /// No two volumes may share an identity (their namespaces and logical
    /// units would carry the same identifiers). `spans` gives each
    /// volume's `identity` span and path, or its `name`'s when derived.
    pub(super) fn unique_identities(
        &mut self,
        cluster: Option<&Cluster>,
        volumes: &[Volume],
        spans: &[(std::ops::Range<usize>, String)],
    ) {
        let config = crate::model::Config {
            cluster: cluster.cloned(),
            ..crate::model::Config::default()
        };
        let mut first: HashMap<String, String> = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (v, (span, path)) in volumes.iter().zip(spans) {
            if !names.insert(v.name.as_str()) {
                // A duplicate name, reported as such.
                continue;
            }
            let id = config.volume_identity(v);
            match first.get(&id) {
                Some(other) => {
                    let msg = format!(
                        "volume `{}` has the identity `{id}` of volume `{other}`; \
                         set a distinct `identity`",
                        v.name
                    );
                    self.err(span.clone(), path, msg);
                }
                None => {
                    first.insert(id, v.name.clone());
                }
            }
        }
    }
}
