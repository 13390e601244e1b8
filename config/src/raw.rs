//! A "spanned" mirror of the schema, as deserialized straight from TOML.
//!
//! Every value a semantic check may complain about is wrapped in
//! [`Spanned`] so the error can point at it. Keywords, addresses and sizes are
//! kept as strings here and parsed in `validate`, so that all such mistakes are
//! collected together instead of serde stopping at the first one.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Spanned string list, e.g. `luns = ["a", "b"]`.
pub(crate) type Names = Vec<Spanned<String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub volumes: Vec<Spanned<RawVolume>>,
    #[serde(default)]
    pub iscsi_targets: Vec<Spanned<RawIscsiTarget>>,
    #[serde(default)]
    pub nvme_subsystems: Vec<Spanned<RawNvmeSubsystem>>,
    pub cluster: Option<Spanned<RawCluster>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub gateway: Spanned<String>,
    pub gateways: Spanned<Names>,
    pub non_owner_state: Option<Spanned<String>>,
    pub takeover_after_ms: Option<Spanned<i64>>,
    pub rejoin_after_ms: Option<Spanned<i64>>,
    pub peers: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    pub peer_secret_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub iscsi_listen: Option<Names>,
    pub nvme_listen: Option<Names>,
    pub io_engine: Option<Spanned<String>>,
    pub zerocopy: Option<Spanned<String>>,
    pub status_policy: Option<Spanned<String>>,
    pub buffer_pool: Option<Spanned<RawSize>>,
    pub reactors: Option<Spanned<i64>>,
    pub poison_on_release: Option<bool>,
    pub zerocopy_threshold: Option<Spanned<RawSize>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub admin_socket: Option<Spanned<String>>,
    pub login_timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolume {
    pub name: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub size: Option<Spanned<RawSize>>,
    pub block_size: Option<Spanned<i64>>,
    pub read_only: Option<bool>,
    pub direct_io: Option<Spanned<bool>>,
    pub preallocate: Option<Spanned<bool>>,
    pub write_delay_ms: Option<Spanned<i64>>,
    pub backend: Option<Spanned<String>>,
    pub pool: Option<Spanned<String>>,
    pub image: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub ceph_conf: Option<Spanned<String>>,
    pub ceph_user: Option<Spanned<String>>,
    pub keyring: Option<Spanned<String>>,
    pub rados_timeout_secs: Option<Spanned<i64>>,
    pub identity: Option<Spanned<String>>,
    pub owner: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIscsiTarget {
    pub iqn: Spanned<String>,
    pub alias: Option<Spanned<String>>,
    pub luns: Option<RawVolumeMap>,
    pub initiators: Option<Names>,
    pub chap: Option<Spanned<RawChap>>,
    pub mutual_chap: Option<Spanned<RawChap>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChap {
    pub username: Spanned<String>,
    pub secret: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNvmeSubsystem {
    pub nqn: Spanned<String>,
    pub namespaces: Option<RawVolumeMap>,
    pub hosts: Option<Vec<Spanned<RawHost>>>,
    pub dhchap_hashes: Option<Names>,
    pub dhchap_dhgroups: Option<Names>,
    pub host_keys: Option<Vec<Spanned<RawHostKey>>>,
}

/// A `hosts` entry: a name, or a table naming the host with its secrets.
#[derive(Debug)]
pub(crate) enum RawHost {
    Name(String),
    Keyed(RawHostKey),
}

impl<'de> Deserialize<'de> for RawHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHost;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a host NQN, \"*\", or a table { nqn = \"...\", dhchap_key = \"DHHC-1:...\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHost, E> {
                Ok(RawHost::Name(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawHost, A::Error> {
                RawHostKey::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawHost::Keyed)
            }
        }
        d.deserialize_any(V)
    }
}

/// A host with DH-HMAC-CHAP secrets; errors point at the entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHostKey {
    pub nqn: Spanned<String>,
    pub dhchap_key: Option<Spanned<String>>,
    pub dhchap_ctrl_key: Option<Spanned<String>>,
    pub dhchap_hashes: Option<Names>,
    pub dhchap_dhgroups: Option<Names>,
}

/// A size as written: an integer or a string, parsed later.
#[derive(Debug)]
pub(crate) enum RawSize {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string such as \"64MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                // TOML integers are i64; keep larger values exact as text.
                Ok(i64::try_from(v).map_or_else(|_| RawSize::Text(v.to_string()), RawSize::Int))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A LUN / namespace map as written: a list (positions number the entries)
/// or a table whose keys are the numbers, e.g. `luns = { 0 = "a", 3 = "b" }`.
#[derive(Debug)]
pub(crate) enum RawVolumeMap {
    List(Names),
    Table(Vec<(String, Spanned<String>)>),
}

impl<'de> Deserialize<'de> for RawVolumeMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than `#[serde(untagged)]`: untagged
        // enums buffer the input and lose the spans `Spanned` needs.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawVolumeMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of volume names, or a table from number to volume name")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawVolumeMap, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Spanned<String>>()? {
                    out.push(v);
                }
                Ok(RawVolumeMap::List(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawVolumeMap, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    out.push((k, map.next_value::<Spanned<String>>()?));
                }
                Ok(RawVolumeMap::Table(out))
            }
        }
        d.deserialize_any(V)
    }
}
