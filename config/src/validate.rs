//! Conversion from the spanned mirror to [`Config`], collecting every
//! semantic problem with its location.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use toml::Spanned;

use crate::error::{ConfigError, ConfigErrors};
use crate::model::{
    Chap, Config, IscsiTarget, NvmeSubsystem, Server, UnknownKeyword, Volume, VolumeMap, ANY,
};
use crate::names::{check_iscsi_name, check_nqn};
use crate::raw::{Names, RawChap, RawConfig, RawIscsiTarget, RawServer, RawSize, RawVolumeMap};
use crate::size::ByteSize;

mod cluster;
mod nvme_hosts;
mod rbd;
mod volume;

/// Smallest accepted `server.buffer_pool`.
const MIN_BUFFER_POOL: u64 = ByteSize::MIB;
/// `server.buffer_pool` granularity (page size).
const BUFFER_POOL_ALIGN: u64 = 4096;
/// CHAP secret length bounds in bytes (RFC 3720 §8.2.1: at least 96 bits).
const CHAP_SECRET_LEN: std::ops::RangeInclusive<usize> = 12..=255;
/// Longest CHAP user name / TargetAlias we accept, in bytes.
const MAX_TEXT_LEN: usize = 255;

/// Validate `raw` (deserialized from `text`) and build the typed config.
pub(crate) fn build(raw: RawConfig, text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Checker {
        text,
        errors: Vec::new(),
    };
    let known: Vec<String> = raw
        .volumes
        .iter()
        .map(|v| v.get_ref().name.get_ref().clone())
        .collect();
    let server = c.server(raw.server, base_dir);
    let cluster = raw.cluster.map(|cl| c.cluster(cl, base_dir));
    let mut first_line = HashMap::new();
    let identity_spans: Vec<(Range<usize>, String)> = raw
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| match &v.get_ref().identity {
            Some(id) => (id.span(), format!("volumes[{i}].identity")),
            None => (v.get_ref().name.span(), format!("volumes[{i}].name")),
        })
        .collect();
    let volumes: Vec<Volume> = raw
        .volumes
        .into_iter()
        .enumerate()
        .map(|(i, v)| c.volume(i, v, base_dir, &mut first_line, cluster.as_ref()))
        .collect();
    c.unique_identities(cluster.as_ref(), &volumes, &identity_spans);
    let mut first_line = HashMap::new();
    let iscsi_targets = raw
        .iscsi_targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| c.iscsi_target(i, t.into_inner(), &known, &mut first_line))
        .collect();
    let mut first_line = HashMap::new();
    let nvme_subsystems = raw
        .nvme_subsystems
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.into_inner();
            let p = format!("nvme_subsystems[{i}]");
            let nqn = c.unique_name(
                &s.nqn,
                &format!("{p}.nqn"),
                check_nqn,
                "NQN",
                &mut first_line,
            );
            let (hosts, host_keys) = c.nvme_hosts(s.hosts, s.host_keys, &p);
            let dhchap_hashes = c.dhchap_names(s.dhchap_hashes, &p, "dhchap_hashes");
            let dhchap_dhgroups = c.dhchap_names(s.dhchap_dhgroups, &p, "dhchap_dhgroups");
            NvmeSubsystem {
                nqn,
                namespaces: c.volume_map(
                    s.namespaces,
                    &format!("{p}.namespaces"),
                    &known,
                    VolumeMap::NSID_BASE,
                    "NSID",
                ),
                hosts,
                dhchap_hashes,
                dhchap_dhgroups,
                host_keys,
            }
        })
        .collect();
    if c.errors.is_empty() {
        Ok(Config {
            server,
            volumes,
            iscsi_targets,
            nvme_subsystems,
            cluster,
        })
    } else {
        Err(ConfigErrors::sorted(c.errors))
    }
}

struct Checker<'a> {
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err(&mut self, span: Range<usize>, path: &str, message: String) {
        self.errors.push(ConfigError::at(
            self.text,
            span.start,
            path.to_owned(),
            message,
        ));
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        crate::error::line_col(self.text, span.start).0
    }

    /// Parse an optional keyword; missing means `T::default()`, `None` means invalid
    /// (already reported).
    fn keyword<T: FromStr<Err = UnknownKeyword> + Default>(
        &mut self,
        value: Option<Spanned<String>>,
        path: &str,
    ) -> Option<T> {
        let Some(v) = value else {
            return Some(T::default());
        };
        v.get_ref()
            .parse()
            .map_err(|e: UnknownKeyword| self.err(v.span(), path, e.to_string()))
            .ok()
    }

    fn size(&mut self, value: &Spanned<RawSize>, path: &str) -> Option<ByteSize> {
        let parsed = match value.get_ref() {
            RawSize::Int(n) => u64::try_from(*n)
                .map(ByteSize)
                .map_err(|_| format!("size must not be negative (got {n})")),
            RawSize::Text(s) => s.parse::<ByteSize>().map_err(|e| e.to_string()),
        };
        parsed.map_err(|m| self.err(value.span(), path, m)).ok()
    }

    fn server(&mut self, s: RawServer, base_dir: &Path) -> Server {
        let d = Server::default();
        let mut seen = HashMap::new();
        let iscsi_listen = match s.iscsi_listen {
            Some(l) => self.listen(l, "server.iscsi_listen", &mut seen),
            None => d.iscsi_listen,
        };
        let nvme_listen = match s.nvme_listen {
            Some(l) => self.listen(l, "server.nvme_listen", &mut seen),
            None => d.nvme_listen,
        };
        let buffer_pool = s.buffer_pool.and_then(|v| {
            let size = self.size(&v, "server.buffer_pool")?;
            if size.0 < MIN_BUFFER_POOL {
                self.err(
                    v.span(),
                    "server.buffer_pool",
                    format!("{size} is too small; the minimum is 1MiB"),
                );
            } else if size.0 % BUFFER_POOL_ALIGN != 0 {
                let msg = format!(
                    "{size} is not a multiple of {BUFFER_POOL_ALIGN} bytes (the page size)"
                );
                self.err(v.span(), "server.buffer_pool", msg);
            }
            Some(size)
        });
        let reactors = s.reactors.and_then(|r| {
            let n = usize::try_from(*r.get_ref()).ok();
            if n.is_none() {
                let msg = format!(
                    "must be 0 (one per core) or a positive thread count, not {}",
                    r.get_ref()
                );
                self.err(r.span(), "server.reactors", msg);
            }
            n
        });
        let threshold = s
            .zerocopy_threshold
            .and_then(|v| self.size(&v, "server.zerocopy_threshold"));
        let metrics_listen = s.metrics_listen.and_then(|v| {
            v.get_ref()
                .parse::<SocketAddr>()
                .map_err(|e| {
                    let msg = format!("`{}` is not an address:port ({e})", v.get_ref());
                    self.err(v.span(), "server.metrics_listen", msg)
                })
                .ok()
        });
        let admin_socket = match s.admin_socket {
            None => d.admin_socket,
            Some(v) if v.get_ref().is_empty() => None,
            Some(v) => Some(base_dir.join(v.into_inner())),
        };
        let login_timeout = s.login_timeout_secs.and_then(|t| {
            let secs = u32::try_from(*t.get_ref())
                .ok()
                .filter(|s| (1..=Server::MAX_LOGIN_TIMEOUT_SECS).contains(s));
            if secs.is_none() {
                let msg = format!(
                    "must be a number of seconds from 1 to {}, not {}",
                    Server::MAX_LOGIN_TIMEOUT_SECS,
                    t.get_ref()
                );
                self.err(t.span(), "server.login_timeout_secs", msg);
            }
            secs
        });
        Server {
            iscsi_listen,
            nvme_listen,
            io_engine: self
                .keyword(s.io_engine, "server.io_engine")
                .unwrap_or(d.io_engine),
            zerocopy: self
                .keyword(s.zerocopy, "server.zerocopy")
                .unwrap_or(d.zerocopy),
            status_policy: self
                .keyword(s.status_policy, "server.status_policy")
                .unwrap_or(d.status_policy),
            buffer_pool: buffer_pool.unwrap_or(d.buffer_pool),
            reactors: reactors.unwrap_or(d.reactors),
            poison_on_release: s.poison_on_release.unwrap_or(d.poison_on_release),
            zerocopy_threshold: threshold.unwrap_or(d.zerocopy_threshold),
            metrics_listen,
            admin_socket,
            login_timeout_secs: login_timeout.unwrap_or(d.login_timeout_secs),
        }
    }

    /// Parse listen addresses; `seen` spans both protocols so the same socket
    /// cannot be bound twice. Port 0 (ephemeral) is exempt from the duplicate check.
    fn listen(
        &mut self,
        list: Names,
        key: &str,
        seen: &mut HashMap<SocketAddr, String>,
    ) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for (i, a) in list.into_iter().enumerate() {
            let path = format!("{key}[{i}]");
            let Ok(addr) = a.get_ref().parse::<SocketAddr>() else {
                let msg = format!(
                    "`{}` is not an IP:PORT socket address (e.g. `0.0.0.0:3260` or `[::]:4420`)",
                    a.get_ref()
                );
                self.err(a.span(), &path, msg);
                continue;
            };
            if addr.port() != 0 {
                if let Some(first) = seen.get(&addr) {
                    self.err(
                        a.span(),
                        &path,
                        format!("`{addr}` is already listed as {first}"),
                    );
                    continue;
                }
                seen.insert(addr, path);
            }
            out.push(addr);
        }
        out
    }

    fn iscsi_target(
        &mut self,
        i: usize,
        t: RawIscsiTarget,
        known: &[String],
        first_line: &mut HashMap<String, usize>,
    ) -> IscsiTarget {
        let p = format!("iscsi_targets[{i}]");
        let iqn = self.unique_name(
            &t.iqn,
            &format!("{p}.iqn"),
            check_iscsi_name,
            "iSCSI name",
            first_line,
        );
        let alias = t.alias.map(|a| {
            self.text_field(&a, &format!("{p}.alias"), "alias");
            a.into_inner()
        });
        let chap = t
            .chap
            .as_ref()
            .map(|c| self.chap(c.get_ref(), &format!("{p}.chap")));
        let mutual_chap = t.mutual_chap.as_ref().map(|m| {
            let mp = format!("{p}.mutual_chap");
            let mutual = self.chap(m.get_ref(), &mp);
            match &chap {
                None => self.err(
                    m.span(),
                    &mp,
                    "`mutual_chap` requires `chap`: the target only authenticates to an initiator that authenticated first".into(),
                ),
                Some(c) if c.secret == mutual.secret => self.err(
                    m.get_ref().secret.span(),
                    &format!("{mp}.secret"),
                    "must differ from `chap.secret` (RFC 3720 §8.2.1: a secret that authenticates initiators MUST NOT authenticate targets)".into(),
                ),
                Some(_) => {}
            }
            mutual
        });
        IscsiTarget {
            iqn,
            alias,
            luns: self.volume_map(
                t.luns,
                &format!("{p}.luns"),
                known,
                VolumeMap::LUN_BASE,
                "LUN",
            ),
            initiators: self.acl(
                t.initiators,
                &format!("{p}.initiators"),
                check_iscsi_name,
                "initiator name",
            ),
            chap,
            mutual_chap,
        }
    }

    /// Check a target/subsystem name's syntax and uniqueness (case-insensitively).
    fn unique_name(
        &mut self,
        name: &Spanned<String>,
        path: &str,
        check: fn(&str) -> Result<(), String>,
        what: &str,
        first_line: &mut HashMap<String, usize>,
    ) -> String {
        let n = name.get_ref();
        if let Err(why) = check(n) {
            self.err(
                name.span(),
                path,
                format!("`{n}` is not a valid {what}: {why}"),
            );
        }
        let key = n.to_ascii_lowercase();
        if let Some(line) = first_line.get(&key) {
            self.err(
                name.span(),
                path,
                format!("duplicate {what} `{n}` (first used on line {line})"),
            );
        } else {
            first_line.insert(key, self.line_of(&name.span()));
        }
        n.clone()
    }

    fn text_field(&mut self, v: &Spanned<String>, path: &str, what: &str) {
        let s = v.get_ref();
        if s.is_empty() {
            self.err(v.span(), path, format!("{what} must not be empty"));
        } else if s.len() > MAX_TEXT_LEN {
            self.err(
                v.span(),
                path,
                format!("{what} is {} bytes; the limit is {MAX_TEXT_LEN}", s.len()),
            );
        } else if let Some(c) = s.chars().find(|c| c.is_control()) {
            self.err(
                v.span(),
                path,
                format!("{what} contains control character {c:?}"),
            );
        }
    }

    fn chap(&mut self, c: &RawChap, path: &str) -> Chap {
        self.text_field(&c.username, &format!("{path}.username"), "CHAP user name");
        let secret = c.secret.get_ref();
        let len = secret.len();
        if !CHAP_SECRET_LEN.contains(&len) {
            let msg = if len < *CHAP_SECRET_LEN.start() {
                format!(
                    "CHAP secret is {len} bytes; at least 12 are required (RFC 3720 §8.2.1 asks for 96 bits or more; \
                     12 to 16 bytes work with every common initiator)"
                )
            } else {
                format!(
                    "CHAP secret is {len} bytes; the limit is {}",
                    CHAP_SECRET_LEN.end()
                )
            };
            self.err(c.secret.span(), &format!("{path}.secret"), msg);
        }
        Chap {
            username: c.username.get_ref().clone(),
            secret: secret.clone(),
        }
    }

    /// Resolve LUN / namespace lists against the defined volume names.
    /// A LUN / namespace map: every name a defined volume, used once;
    /// numbers from `base` up to [`VolumeMap::max_number`].
    fn volume_map(
        &mut self,
        raw: Option<RawVolumeMap>,
        key: &str,
        known: &[String],
        base: u32,
        what: &str,
    ) -> VolumeMap {
        let entries: Vec<(String, Option<u32>, Spanned<String>)> = match raw {
            None => Vec::new(),
            Some(RawVolumeMap::List(list)) => list
                .into_iter()
                .enumerate()
                .map(|(j, v)| {
                    let number = u32::try_from(j).ok().and_then(|j| j.checked_add(base));
                    (format!("{key}[{j}]"), number, v)
                })
                .collect(),
            Some(RawVolumeMap::Table(table)) => table
                .into_iter()
                .map(|(k, v)| {
                    let path = format!("{key}.{k}");
                    let number = k.parse::<u32>().ok();
                    if number.is_none() {
                        let msg = format!("`{k}` is not a {what} number");
                        self.err(v.span(), &path, msg);
                    }
                    (path, number, v)
                })
                .collect(),
        };
        let max = VolumeMap::max_number(base);
        let mut map = VolumeMap::new(base);
        let mut used: HashMap<String, u32> = HashMap::new();
        for (path, number, v) in entries {
            let name = v.get_ref();
            let Some(number) = number else { continue };
            if number < base || number > max {
                let msg = format!("{what} {number} is out of range ({base}..={max})");
                self.err(v.span(), &path, msg);
            } else if !known.contains(name) {
                let defined = if known.is_empty() {
                    "no volumes are defined".to_owned()
                } else {
                    format!("defined volumes: {}", known.join(", "))
                };
                self.err(
                    v.span(),
                    &path,
                    format!("no volume named `{name}` ({defined})"),
                );
            } else if let Some(first) = used.get(name) {
                self.err(
                    v.span(),
                    &path,
                    format!("volume `{name}` is already exported as {what} {first}"),
                );
            } else {
                used.insert(name.clone(), number);
                map.insert(number, v.into_inner());
            }
        }
        map
    }

    /// Access lists: `"*"` or valid names; defaults to `["*"]`.
    fn acl(
        &mut self,
        list: Option<Names>,
        key: &str,
        check: fn(&str) -> Result<(), String>,
        what: &str,
    ) -> Vec<String> {
        let Some(list) = list else {
            return vec![ANY.to_owned()];
        };
        list.into_iter()
            .enumerate()
            .map(|(j, v)| {
                let n = v.get_ref();
                if n != ANY {
                    if let Err(why) = check(n) {
                        let msg =
                            format!("`{n}` is not a valid {what} (use \"*\" to allow any): {why}");
                        self.err(v.span(), &format!("{key}[{j}]"), msg);
                    }
                }
                v.into_inner()
            })
            .collect()
    }
}
