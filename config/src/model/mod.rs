//! The typed, validated configuration handed to the daemon.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::size::ByteSize;

mod keywords;
pub use keywords::*;

/// A complete, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Config {
    /// Daemon-wide settings (`[server]`).
    pub server: Server,
    /// Backing stores (`[[volumes]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// iSCSI targets (`[[iscsi_targets]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub iscsi_targets: Vec<IscsiTarget>,
    /// NVMe/TCP subsystems (`[[nvme_subsystems]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nvme_subsystems: Vec<NvmeSubsystem>,
    /// Several gateways exporting the same volumes (`[cluster]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// iSCSI portals; empty disables iSCSI. Default `127.0.0.1:3260`.
    pub iscsi_listen: Vec<SocketAddr>,
    /// NVMe/TCP listeners; empty disables NVMe/TCP. Default `127.0.0.1:4420`.
    pub nvme_listen: Vec<SocketAddr>,
    /// I/O engine selection.
    pub io_engine: IoEngine,
    /// Zero-copy payload transfer mode.
    pub zerocopy: ZeroCopyMode,
    /// When command status may be reported relative to data transfer.
    pub status_policy: StatusPolicy,
    /// Upper bound on pinned payload buffer memory. Default 256 MiB.
    pub buffer_pool: ByteSize,
    /// Number of reactor threads; 0 = one per core.
    #[serde(serialize_with = "ser_usize")]
    pub reactors: usize,
    /// Debug aid: fill buffers with a pattern when they return to the pool.
    pub poison_on_release: bool,
    /// In `zerocopy = "auto"` mode, payloads smaller than this are copied. Default 10 KiB.
    pub zerocopy_threshold: ByteSize,
    /// Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Admin API Unix socket; `None` (written `""`) disables it.
    #[serde(serialize_with = "ser_opt_path_or_empty")]
    pub admin_socket: Option<PathBuf>,
    /// Seconds a new connection may take to complete its login (iSCSI) or
    /// its ICReq and Fabrics Connect (NVMe/TCP) before it is closed.
    /// Default 30.
    pub login_timeout_secs: u32,
}

impl Server {
    /// Default iSCSI portal.
    pub const DEFAULT_ISCSI_LISTEN: &'static str = "127.0.0.1:3260";
    /// Default NVMe/TCP listener.
    pub const DEFAULT_NVME_LISTEN: &'static str = "127.0.0.1:4420";
    /// Default `buffer_pool`.
    pub const DEFAULT_BUFFER_POOL: ByteSize = ByteSize::mib(256);
    /// Default `zerocopy_threshold`.
    pub const DEFAULT_ZEROCOPY_THRESHOLD: ByteSize = ByteSize::kib(10);
    /// Default `admin_socket`.
    pub const DEFAULT_ADMIN_SOCKET: &'static str = "/run/zctarget/admin.sock";
    /// The conventional `metrics_listen` (metrics stay off unless set).
    pub const CONVENTIONAL_METRICS_LISTEN: &'static str = "127.0.0.1:9750";
    /// Default `login_timeout_secs`.
    pub const DEFAULT_LOGIN_TIMEOUT_SECS: u32 = 30;
    /// Largest `login_timeout_secs` accepted (one hour).
    pub const MAX_LOGIN_TIMEOUT_SECS: u32 = 3600;
}

impl Default for Server {
    fn default() -> Self {
        let addr = |s: &str| s.parse().into_iter().collect();
        Self {
            iscsi_listen: addr(Self::DEFAULT_ISCSI_LISTEN),
            nvme_listen: addr(Self::DEFAULT_NVME_LISTEN),
            io_engine: IoEngine::default(),
            zerocopy: ZeroCopyMode::default(),
            status_policy: StatusPolicy::default(),
            buffer_pool: Self::DEFAULT_BUFFER_POOL,
            reactors: 0,
            poison_on_release: false,
            zerocopy_threshold: Self::DEFAULT_ZEROCOPY_THRESHOLD,
            metrics_listen: None,
            admin_socket: Some(PathBuf::from(Self::DEFAULT_ADMIN_SOCKET)),
            login_timeout_secs: Self::DEFAULT_LOGIN_TIMEOUT_SECS,
        }
    }
}

/// One `[[volumes]]` entry: a named backing store exported as LUNs/namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// Unique name, `[A-Za-z0-9._-]+`.
    pub name: String,
    /// Backing file or block device, resolved against the config file's folder.
    /// `None` for `null`/`memory` volumes.
    #[serde(serialize_with = "ser_path", skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Size; `None` means "use the existing file/device size".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Reject writes.
    pub read_only: bool,
    /// Open the file with `O_DIRECT` (file backend only).
    pub direct_io: bool,
    /// Allocate the whole file when creating it instead of leaving it
    /// sparse (file backend only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub preallocate: bool,
    /// Kind of backing store.
    pub backend: BackendKind,
    /// `memory` volumes only: every write waits this many milliseconds
    /// before it lands (a slow disk, for testing hosts' timeouts and the
    /// target's abort handling); 0 (the default) for none.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub write_delay_ms: u32,
    /// The image of an `rbd` volume (its keys sit in the volume's table).
    #[serde(flatten)]
    pub rbd: Option<RbdImage>,
    /// What the volume's NVMe and SCSI identifiers are derived from
    /// (see [`Config::volume_identity`]); equal on every gateway that
    /// exports the same volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The gateway that owns the volume (`[cluster]` only; default: the
    /// first gateway): Optimized there, `non_owner_state` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Where an `rbd` volume's image lives: `pool`, `image`, optionally
/// `namespace`, and the Ceph client to reach it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RbdImage {
    /// RADOS pool.
    pub pool: String,
    /// Image name; created with the volume's `size` when missing.
    pub image: String,
    /// RADOS namespace inside the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// ceph.conf, resolved against the config file's folder; librados'
    /// default search (`$CEPH_CONF`, /etc/ceph/ceph.conf, ...) when unset.
    #[serde(serialize_with = "ser_path", skip_serializing_if = "Option::is_none")]
    pub ceph_conf: Option<PathBuf>,
    /// cephx user id without `client.`; `admin` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceph_user: Option<String>,
    /// Keyring overriding the conf's, resolved like `ceph_conf`.
    #[serde(serialize_with = "ser_path", skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// How long the Ceph client waits for the cluster before an operation
    /// fails with ETIMEDOUT: librados' `client_mount_timeout` (connecting),
    /// `rados_mon_op_timeout` and `rados_osd_op_timeout`. `None`: the
    /// conf's values (librados' defaults: 300 s to connect, operations wait
    /// for ever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rados_timeout_secs: Option<u32>,
}

impl RbdImage {
    /// Largest `rados_timeout_secs` accepted (one hour).
    pub const MAX_RADOS_TIMEOUT_SECS: u32 = 3600;
}

impl Volume {
    /// Default `block_size`.
    pub const DEFAULT_BLOCK_SIZE: u32 = 512;
}

/// The `[cluster]` section: this daemon is one of several gateways that
/// export the same volumes (multipath). The position of a gateway in
/// `gateways` (from 1) is its number everywhere: its ANA group, its ALUA
/// target port group and relative target port, and its range of NVMe
/// controller IDs — so every gateway must list them in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// This gateway's id, one of `gateways`.
    pub gateway: String,
    /// Every gateway's id, in the same order on all of them.
    pub gateways: Vec<String>,
    /// What a gateway reports for a volume it does not own.
    pub non_owner_state: NonOwnerState,
    /// How long an rbd volume's lock must have had no live owner (its
    /// watch gone, or no owner at all) before a non-owner takes it over,
    /// in milliseconds.
    pub takeover_after_ms: u32,
    /// How long a gateway fenced for an rbd volume (its lock taken over,
    /// its client blocklisted) stays fenced before it reopens the volume
    /// with a fresh client as a follower by itself, in milliseconds; 0:
    /// only `ctl volume rejoin` (or a restart) brings it back.
    pub rejoin_after_ms: u32,
    /// The peer link's address of each gateway (`cluster.peers`): this
    /// gateway's own entry is where it listens (port 0: any free port,
    /// logged), the others where it connects. Empty: no peer link, a
    /// follower refuses writes.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub peers: std::collections::BTreeMap<String, std::net::SocketAddr>,
    /// The file holding the secret every gateway's peer link proves it
    /// knows (one line; required with `peers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_secret_file: Option<std::path::PathBuf>,
}

impl Cluster {
    /// Most gateways in a cluster.
    pub const MAX_GATEWAYS: usize = 16;
    /// Controller IDs each gateway hands out (gateway `n` uses
    /// `(n - 1) * CNTLID_BLOCK + 1 ..= n * CNTLID_BLOCK`).
    pub const CNTLID_BLOCK: u16 = 4000;
    /// Default `takeover_after_ms`.
    pub const TAKEOVER_AFTER_MS: u32 = 2000;
    /// Bounds of `takeover_after_ms`.
    pub const TAKEOVER_AFTER_RANGE: std::ops::RangeInclusive<u32> = 100..=600_000;
    /// Default `rejoin_after_ms`.
    pub const REJOIN_AFTER_MS: u32 = 10_000;
    /// Bounds of `rejoin_after_ms` (or 0: never by itself).
    pub const REJOIN_AFTER_RANGE: std::ops::RangeInclusive<u32> = 1000..=3_600_000;

    /// The number (from 1) of gateway `id`.
    pub fn number_of(&self, id: &str) -> Option<u16> {
        let i = self.gateways.iter().position(|g| g == id)?;
        u16::try_from(i + 1).ok()
    }

    /// This gateway's number (from 1).
    pub fn number(&self) -> u16 {
        self.number_of(&self.gateway).unwrap_or(1)
    }

    /// The controller IDs this gateway hands out: a block of its own, so
    /// that CNTLIDs are unique across the gateways of one subsystem.
    pub fn cntlid_range(&self) -> std::ops::RangeInclusive<u16> {
        let n = self.number().max(1);
        let first = (n - 1).saturating_mul(Self::CNTLID_BLOCK) + 1;
        first..=n.saturating_mul(Self::CNTLID_BLOCK)
    }
}

impl Config {
    /// The string a volume's NVMe NGUID/EUI-64/UUID and SCSI serial and
    /// NAA designator are derived from (with the subsystem or target
    /// name): `identity` when set; in a `[cluster]`, an rbd volume's image
    /// (`rbd:<pool>/<namespace>/<image>`), so that gateways agree whatever
    /// they call the volume; else the volume's name.
    pub fn volume_identity(&self, v: &Volume) -> String {
        if let Some(id) = &v.identity {
            return id.clone();
        }
        match (&self.cluster, &v.rbd) {
            (Some(_), Some(r)) => format!(
                "rbd:{}/{}/{}",
                r.pool,
                r.namespace.as_deref().unwrap_or(""),
                r.image
            ),
            _ => v.name.clone(),
        }
    }

    /// The number of the gateway owning `v` (`[cluster]` only): its
    /// `owner`, else the first gateway.
    pub fn volume_owner(&self, v: &Volume) -> Option<u16> {
        let c = self.cluster.as_ref()?;
        match &v.owner {
            Some(o) => c.number_of(o),
            None => Some(1),
        }
    }
}

/// CHAP credentials (RFC 1994, as used by iSCSI per RFC 3720 §8.2.1). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Chap {
    /// CHAP_N user name.
    pub username: String,
    /// Shared secret, 12..=255 bytes.
    pub secret: String,
}

impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One `[[iscsi_targets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IscsiTarget {
    /// Target name (`iqn.`, `eui.` or `naa.` form).
    pub iqn: String,
    /// Human-readable TargetAlias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// LUN number → volume name.
    pub luns: VolumeMap,
    /// Allowed initiator names; `"*"` allows any.
    pub initiators: Vec<String>,
    /// Credentials the initiator must present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chap: Option<Chap>,
    /// Credentials the target presents back (mutual CHAP); requires `chap`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutual_chap: Option<Chap>,
}

/// One `[[nvme_subsystems]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NvmeSubsystem {
    /// Subsystem NQN.
    pub nqn: String,
    /// NSID → volume name.
    pub namespaces: VolumeMap,
    /// Allowed host NQNs; `"*"` allows any.
    pub hosts: Vec<String>,
    /// DH-HMAC-CHAP hashes allowed on this subsystem, in preference order
    /// (`sha256`, `sha384`, `sha512`); empty: all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dhchap_hashes: Vec<String>,
    /// DH-HMAC-CHAP DH groups allowed, in preference order (`ffdhe2048`
    /// ... `ffdhe8192`, `null`); empty: all, FFDHE groups first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dhchap_dhgroups: Vec<String>,
    /// Hosts that must authenticate (in-band, DH-HMAC-CHAP). Written in
    /// the file as tables in `hosts` or as `[[nvme_subsystems.host_keys]]`
    /// (the form the daemon writes back).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<NvmeHostKey>,
}

impl NvmeSubsystem {
    /// A subsystem with no namespace, these hosts and no authentication.
    pub fn new(nqn: String, hosts: Vec<String>) -> Self {
        NvmeSubsystem {
            nqn,
            namespaces: VolumeMap::new(VolumeMap::NSID_BASE),
            hosts,
            dhchap_hashes: Vec::new(),
            dhchap_dhgroups: Vec::new(),
            host_keys: Vec::new(),
        }
    }

    /// The secrets of host `hostnqn`, if it must authenticate.
    pub fn host_key(&self, hostnqn: &str) -> Option<&NvmeHostKey> {
        self.host_keys.iter().find(|k| k.nqn == hostnqn)
    }
}

/// A host's DH-HMAC-CHAP secrets (`DHHC-1:xx:<base64>:`, as
/// `nvme gen-dhchap-key` prints them). `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct NvmeHostKey {
    /// Host NQN.
    pub nqn: String,
    /// The host's secret.
    pub dhchap_key: String,
    /// The controller's secret (bidirectional authentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhchap_ctrl_key: Option<String>,
    /// Hashes allowed for this host (overrides the subsystem's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dhchap_hashes: Vec<String>,
    /// DH groups allowed for this host (overrides the subsystem's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dhchap_dhgroups: Vec<String>,
}

impl NvmeHostKey {
    /// Replaces the secrets with `<redacted>` (config show).
    pub fn redact(&mut self) {
        self.dhchap_key = REDACTED.into();
        if let Some(k) = &mut self.dhchap_ctrl_key {
            *k = REDACTED.into();
        }
    }
}

/// What `config show` prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for NvmeHostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmeHostKey")
            .field("nqn", &self.nqn)
            .field("dhchap_key", &REDACTED)
            .field(
                "dhchap_ctrl_key",
                &self.dhchap_ctrl_key.as_ref().map(|_| REDACTED),
            )
            .field("dhchap_hashes", &self.dhchap_hashes)
            .field("dhchap_dhgroups", &self.dhchap_dhgroups)
            .finish()
    }
}

/// LUN or NSID → volume name. In the file either a list (positions number
/// the entries: LUN 0, 1, ... or NSID 1, 2, ...) or a table with explicit
/// numbers (`luns = { 0 = "a", 3 = "b" }`), so that removing an entry
/// leaves the others' numbers alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeMap {
    base: u32,
    entries: BTreeMap<u32, String>,
}

impl VolumeMap {
    /// First LUN number.
    pub const LUN_BASE: u32 = 0;
    /// First NSID.
    pub const NSID_BASE: u32 = 1;
    /// Highest LUN (SAM flat addressing, 14 bits).
    pub const MAX_LUN: u32 = 16383;
    /// Highest NSID we export.
    pub const MAX_NSID: u32 = 1024;

    /// An empty map numbered from `base`.
    pub fn new(base: u32) -> Self {
        Self {
            base,
            entries: BTreeMap::new(),
        }
    }

    /// A map numbering `names` from `base` in order.
    pub fn from_names<S: Into<String>>(base: u32, names: impl IntoIterator<Item = S>) -> Self {
        let mut m = Self::new(base);
        for (n, name) in (base..).zip(names) {
            m.entries.insert(n, name.into());
        }
        m
    }

    /// The highest number a map starting at `base` accepts.
    pub fn max_number(base: u32) -> u32 {
        if base == Self::NSID_BASE {
            Self::MAX_NSID
        } else {
            Self::MAX_LUN
        }
    }

    /// Maps `number` to `volume` (replacing what was there).
    pub fn insert(&mut self, number: u32, volume: String) -> Option<String> {
        self.entries.insert(number, volume)
    }

    /// Unmaps `number`.
    pub fn remove(&mut self, number: u32) -> Option<String> {
        self.entries.remove(&number)
    }

    /// The volume at `number`.
    pub fn get(&self, number: u32) -> Option<&str> {
        self.entries.get(&number).map(String::as_str)
    }

    /// The number `volume` is mapped at.
    pub fn number_of(&self, volume: &str) -> Option<u32> {
        self.entries
            .iter()
            .find_map(|(n, v)| (v == volume).then_some(*n))
    }

    /// The lowest free number.
    pub fn next_free(&self) -> Option<u32> {
        (self.base..=Self::max_number(self.base)).find(|n| !self.entries.contains_key(n))
    }

    /// (number, volume) in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.entries.iter().map(|(n, v)| (*n, v.as_str()))
    }

    /// Volume names in number order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.values().map(String::as_str).collect()
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the numbers run base, base + 1, ... without a gap (then the
    /// map is written as a list).
    fn is_dense(&self) -> bool {
        self.entries
            .keys()
            .copied()
            .eq(self.base..self.base + self.len() as u32)
    }
}

impl Serialize for VolumeMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        if self.is_dense() {
            let mut seq = s.serialize_seq(Some(self.len()))?;
            for v in self.entries.values() {
                seq.serialize_element(v)?;
            }
            seq.end()
        } else {
            let mut map = s.serialize_map(Some(self.len()))?;
            for (n, v) in &self.entries {
                map.serialize_entry(&n.to_string(), v)?;
            }
            map.end()
        }
    }
}

/// Wildcard entry in `initiators` / `hosts`.
pub const ANY: &str = "*";

/// TOML integers are signed 64-bit; clamp (a reactor count that large is absurd
/// anyway) so serialization cannot fail.
fn ser_usize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(i64::try_from(*n).unwrap_or(i64::MAX))
}

/// Paths are written lossily so serialization cannot fail on non-UTF-8 names.
fn ser_path<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// `None` is written as `""` (disabled), so it survives a round trip.
fn ser_opt_path_or_empty<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_str(""),
    }
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
