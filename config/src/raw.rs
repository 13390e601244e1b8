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
    pub backend: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIscsiTarget {
    pub iqn: Spanned<String>,
    pub alias: Option<Spanned<String>>,
    pub luns: Option<Names>,
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
    pub namespaces: Option<Names>,
    pub hosts: Option<Names>,
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
