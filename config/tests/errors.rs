//! Every invalid case reports the exact line, column and field path.

use std::path::Path;

use zctarget_config::{Config, ConfigError};

fn errors(text: &str) -> Vec<ConfigError> {
    match Config::from_toml_str(text, Path::new("/base")) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.0,
    }
}

/// Exactly one error, at `line:col` for `path`, whose message contains `needle`.
#[track_caller]
fn one(text: &str, line: usize, col: usize, path: &str, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (Some(line), Some(col), path),
        "{e}"
    );
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
}

const VOL: &str = "[[volumes]]\nname = \"vol0\"\npath = \"vol0.img\"\nsize = \"1GiB\"\n";

// ---- syntax, type and unknown-key errors (first one only) ----

#[test]
fn syntax_error() {
    one("[server]\nreactors = 1 2\n", 2, 14, "", "expected newline");
}

#[test]
fn type_error() {
    let text = format!("{VOL}block_size = \"512\"\n");
    one(
        &text,
        5,
        14,
        "volumes[0].block_size",
        "invalid type: string \"512\"",
    );
}

#[test]
fn unknown_key_names_key_and_allowed_keys() {
    one(
        "[server]\nreactorz = 4\n",
        2,
        1,
        "server.reactorz",
        "unknown field `reactorz`, expected one of `iscsi_listen`",
    );
    let text = format!("{VOL}\n[[volumes]]\nname = \"b\"\nsise = 5\n");
    one(&text, 8, 1, "volumes[1].sise", "`sise`");
    one(
        "[servr]\n",
        1,
        2,
        "servr",
        "expected one of `server`, `volumes`, `iscsi_targets`, `nvme_subsystems`",
    );
    let text = format!("{VOL}[[iscsi_targets]]\niqn = \"iqn.2026-11.io.x:y\"\nchap = {{ username = \"u\", secret = \"0123456789ab\", salt = 1 }}\n");
    one(
        &text,
        7,
        51,
        "iscsi_targets[0].chap.salt",
        "unknown field `salt`, expected `username` or `secret`",
    );
}

#[test]
fn missing_required_fields() {
    one(
        "[[volumes]]\npath = \"x\"\n",
        1,
        1,
        "volumes[0].name",
        "missing field `name`",
    );
    let text = format!("{VOL}\n[[iscsi_targets]]\nluns = [\"vol0\"]\n");
    one(&text, 6, 1, "iscsi_targets[0].iqn", "missing field `iqn`");
    let text = format!("{VOL}\n[[nvme_subsystems]]\nnamespaces = [\"vol0\"]\n");
    one(&text, 6, 1, "nvme_subsystems[0].nqn", "missing field `nqn`");
}

// ---- semantic errors ----

#[test]
fn duplicate_volume_name() {
    let text = "\
[[volumes]]
name = \"vol0\"
path = \"a.img\"
size = \"1GiB\"

[[volumes]]
path = \"b.img\"
size = \"1GiB\"
name = \"vol0\"
";
    one(
        text,
        9,
        8,
        "volumes[1].name",
        "duplicate volume name `vol0` (first defined on line 2)",
    );
    let errs = Config::from_toml_str(text, Path::new("/")).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "9:8: volumes[1].name: duplicate volume name `vol0` (first defined on line 2)"
    );
}

#[test]
fn duplicate_iqn_and_nqn() {
    let text = format!(
        "{VOL}[[iscsi_targets]]\niqn = \"iqn.2026-11.io.x:a\"\n[[iscsi_targets]]\niqn = \"iqn.2026-11.io.x:a\"\n"
    );
    one(
        &text,
        8,
        7,
        "iscsi_targets[1].iqn",
        "duplicate iSCSI name `iqn.2026-11.io.x:a` (first used on line 6)",
    );
    let text = format!(
        "{VOL}[[nvme_subsystems]]\nnqn = \"nqn.2026-11.io.x:a\"\n[[nvme_subsystems]]\nnqn = \"nqn.2026-11.io.x:a\"\n"
    );
    one(&text, 8, 7, "nvme_subsystems[1].nqn", "duplicate NQN");
}

#[test]
fn lun_and_namespace_must_name_a_volume() {
    let text = format!(
        "{VOL}[[iscsi_targets]]\niqn = \"iqn.2026-11.io.x:a\"\nluns = [\"vol0\", \"nope\"]\n"
    );
    one(
        &text,
        7,
        17,
        "iscsi_targets[0].luns[1]",
        "no volume named `nope` (defined volumes: vol0)",
    );
    let text = "[[nvme_subsystems]]\nnqn = \"nqn.2026-11.io.x:a\"\nnamespaces = [\"nope\"]\n";
    one(
        text,
        3,
        15,
        "nvme_subsystems[0].namespaces[0]",
        "no volumes are defined",
    );
    let text = format!(
        "{VOL}[[iscsi_targets]]\niqn = \"iqn.2026-11.io.x:a\"\nluns = [\"vol0\", \"vol0\"]\n"
    );
    one(
        &text,
        7,
        17,
        "iscsi_targets[0].luns[1]",
        "already exported as LUN 0",
    );
}

#[test]
fn bad_iqn() {
    let text = format!("{VOL}[[iscsi_targets]]\niqn = \"iqn.2026-11.IO.zctarget\"\n");
    one(&text, 6, 7, "iscsi_targets[0].iqn", "upper-case");
    let text = format!("{VOL}[[iscsi_targets]]\niqn = \"iqn.2026-13.io.zctarget\"\n");
    one(&text, 6, 7, "iscsi_targets[0].iqn", "month 01-12");
    let text = format!("{VOL}[[iscsi_targets]]\niqn = \"target0\"\n");
    one(
        &text,
        6,
        7,
        "iscsi_targets[0].iqn",
        "must start with `iqn.`, `eui.` or `naa.`",
    );
    let text = format!("{VOL}[[iscsi_targets]]\niqn = \"eui.0123\"\n");
    one(&text, 6, 7, "iscsi_targets[0].iqn", "16 hex digits");
    let text = format!("{VOL}[[iscsi_targets]]\niqn = \"naa.0123456789abcdef\"\ninitiators = [\"*\", \"client\"]\n");
    one(
        &text,
        7,
        20,
        "iscsi_targets[0].initiators[1]",
        "`client` is not a valid initiator name",
    );
}

#[test]
fn bad_nqn() {
    let text = format!("{VOL}[[nvme_subsystems]]\nnqn = \"nqn.2026-11.io.zctarget\"\n");
    one(&text, 6, 7, "nvme_subsystems[0].nqn", "needs `:`");
    let text = format!("{VOL}[[nvme_subsystems]]\nnqn = \"nqn.2014-08.org.nvmexpress:uuid:xyz\"\n");
    one(&text, 6, 7, "nvme_subsystems[0].nqn", "is not a UUID");
    let long = format!("nqn.2026-11.io.x:{}", "a".repeat(207));
    let text = format!("{VOL}[[nvme_subsystems]]\nnqn = \"{long}\"\n");
    one(
        &text,
        6,
        7,
        "nvme_subsystems[0].nqn",
        "224 bytes long; the limit is 223",
    );
    let text =
        format!("{VOL}[[nvme_subsystems]]\nnqn = \"nqn.2026-11.io.x:a\"\nhosts = [\"host1\"]\n");
    one(
        &text,
        7,
        10,
        "nvme_subsystems[0].hosts[0]",
        "`host1` is not a valid host NQN",
    );
}

#[test]
fn block_size_and_size() {
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = 1000\n";
    one(
        text,
        4,
        8,
        "volumes[0].size",
        "size 1000 bytes is not a multiple of block_size 512",
    );
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = \"1MiB\"\nblock_size = 1024\n";
    one(
        text,
        5,
        14,
        "volumes[0].block_size",
        "block_size must be 512 or 4096, not 1024",
    );
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = \"6KiB\"\nblock_size = 4096\n";
    one(
        text,
        4,
        8,
        "volumes[0].size",
        "not a multiple of block_size 4096",
    );
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = 0\n";
    one(text, 4, 8, "volumes[0].size", "must not be zero");
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = \"1.3KiB\"\n";
    one(
        text,
        4,
        8,
        "volumes[0].size",
        "invalid size `1.3KiB`: not a whole number of bytes",
    );
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = -512\n";
    one(text, 4, 8, "volumes[0].size", "must not be negative");
}

#[test]
fn backend_requirements() {
    one(
        "[[volumes]]\nname = \"v\"\nsize = \"1GiB\"\n",
        1,
        1,
        "volumes[0].path",
        "a `file` volume needs `path`",
    );
    one(
        "\n[[volumes]]\nname = \"v\"\nbackend = \"null\"\n",
        2,
        1,
        "volumes[0].size",
        "a `null` volume needs `size`",
    );
    let text =
        "[[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"1MiB\"\npath = \"m.img\"\n";
    one(
        text,
        5,
        8,
        "volumes[0].path",
        "a `memory` volume has no backing file",
    );
    let text = "[[volumes]]\nname = \"v\"\nbackend = \"null\"\nsize = \"1MiB\"\ndirect_io = true\n";
    one(
        text,
        5,
        13,
        "volumes[0].direct_io",
        "only applies to `file` volumes",
    );
    let text = "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nwrite_delay_ms = 10\n";
    one(
        text,
        4,
        18,
        "volumes[0].write_delay_ms",
        "only applies to `memory` volumes",
    );
    let text =
        "[[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"1MiB\"\nwrite_delay_ms = -1\n";
    one(text, 5, 18, "volumes[0].write_delay_ms", "from 0 to 60000");
    one(
        "[[volumes]]\nname = \"v\"\nbackend = \"nul\"\n",
        3,
        11,
        "volumes[0].backend",
        "expected one of `file`, `null`, `memory`",
    );
    one(
        "[[volumes]]\nname = \"v\"\npath = \"\"\n",
        3,
        8,
        "volumes[0].path",
        "must not be empty",
    );
}

#[test]
fn file_volume_without_size_is_left_to_runtime() {
    let c = Config::from_toml_str(
        "[[volumes]]\nname = \"v\"\npath = \"/does/not/exist.img\"\n",
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(c.volumes[0].size, None);
}

#[test]
fn volume_names() {
    one(
        "[[volumes]]\nname = \"\"\npath = \"x\"\n",
        2,
        8,
        "volumes[0].name",
        "must not be empty",
    );
    one(
        "[[volumes]]\nname = \"my vol\"\npath = \"x\"\n",
        2,
        8,
        "volumes[0].name",
        "contains ' '",
    );
    one(
        "[[volumes]]\nname = \"völ\"\npath = \"x\"\n",
        2,
        8,
        "volumes[0].name",
        "contains 'ö'",
    );
}

#[test]
fn buffer_pool() {
    one(
        "[server]\nbuffer_pool = \"512KiB\"\n",
        2,
        15,
        "server.buffer_pool",
        "512KiB is too small; the minimum is 1MiB",
    );
    one(
        "[server]\nbuffer_pool = 1048577\n",
        2,
        15,
        "server.buffer_pool",
        "not a multiple of 4096 bytes",
    );
    one(
        "[server]\nbuffer_pool = \"lots\"\n",
        2,
        15,
        "server.buffer_pool",
        "invalid size `lots`",
    );
}

#[test]
fn server_keywords_and_counts() {
    one(
        "[server]\nio_engine = \"fast\"\n",
        2,
        13,
        "server.io_engine",
        "unknown value `fast`, expected one of `auto`, `uring`, `epoll`",
    );
    one(
        "[server]\nzerocopy = \"yes\"\n",
        2,
        12,
        "server.zerocopy",
        "`auto`, `always`, `never`",
    );
    one(
        "[server]\nstatus_policy = \"lazy\"\n",
        2,
        17,
        "server.status_policy",
        "`strict`, `eager`",
    );
    one(
        "[server]\nreactors = -1\n",
        2,
        12,
        "server.reactors",
        "not -1",
    );
    one(
        "[server]\nlogin_timeout_secs = 0\n",
        2,
        22,
        "server.login_timeout_secs",
        "from 1 to 3600, not 0",
    );
    one(
        "[server]\nzerocopy_threshold = \"1 XB\"\n",
        2,
        22,
        "server.zerocopy_threshold",
        "unknown unit",
    );
}

#[test]
fn listen_addresses() {
    // Both empty is allowed (and produces no warnings or errors).
    let c = Config::from_toml_str(
        "[server]\niscsi_listen = []\nnvme_listen = []\n",
        Path::new("/"),
    )
    .unwrap();
    assert!(c.server.iscsi_listen.is_empty() && c.server.nvme_listen.is_empty());

    let text = "[server]\niscsi_listen = [\"127.0.0.1:3260\", \"127.0.0.1:3260\"]\n";
    one(
        text,
        2,
        35,
        "server.iscsi_listen[1]",
        "`127.0.0.1:3260` is already listed as server.iscsi_listen[0]",
    );
    let text = "[server]\niscsi_listen = [\"0.0.0.0:3260\"]\nnvme_listen = [\"0.0.0.0:3260\"]\n";
    one(
        text,
        3,
        16,
        "server.nvme_listen[0]",
        "already listed as server.iscsi_listen[0]",
    );
    let text = "[server]\nnvme_listen = [\"localhost:4420\"]\n";
    one(
        text,
        2,
        16,
        "server.nvme_listen[0]",
        "not an IP:PORT socket address",
    );
    // Ephemeral ports may repeat.
    Config::from_toml_str(
        "[server]\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = [\"127.0.0.1:0\"]\n",
        Path::new("/"),
    )
    .unwrap();
}

const TARGET: &str = "[[iscsi_targets]]\niqn = \"iqn.2026-11.io.x:a\"\n";

#[test]
fn chap_secrets() {
    let text = format!("{TARGET}chap = {{ username = \"u\", secret = \"short\" }}\n");
    one(
        &text,
        3,
        35,
        "iscsi_targets[0].chap.secret",
        "CHAP secret is 5 bytes; at least 12 are required",
    );
    let text = format!(
        "{TARGET}[iscsi_targets.chap]\nusername = \"u\"\nsecret = \"{}\"\n",
        "x".repeat(256)
    );
    one(
        &text,
        5,
        10,
        "iscsi_targets[0].chap.secret",
        "the limit is 255",
    );
    let text =
        format!("{TARGET}[iscsi_targets.chap]\nusername = \"\"\nsecret = \"0123456789ab\"\n");
    one(
        &text,
        4,
        12,
        "iscsi_targets[0].chap.username",
        "must not be empty",
    );
    // 12 and 255 bytes are accepted.
    let text = format!("{TARGET}chap = {{ username = \"u\", secret = \"0123456789ab\" }}\n");
    Config::from_toml_str(&text, Path::new("/")).unwrap();
    let text = format!(
        "{TARGET}chap = {{ username = \"u\", secret = \"{}\" }}\n",
        "y".repeat(255)
    );
    Config::from_toml_str(&text, Path::new("/")).unwrap();
}

#[test]
fn mutual_chap_rules() {
    let text =
        format!("{TARGET}mutual_chap = {{ username = \"t\", secret = \"0123456789abcdef\" }}\n");
    one(
        &text,
        3,
        15,
        "iscsi_targets[0].mutual_chap",
        "`mutual_chap` requires `chap`",
    );
    let text = format!(
        "{TARGET}chap = {{ username = \"u\", secret = \"0123456789ab\" }}\nmutual_chap = {{ username = \"t\", secret = \"0123456789ab\" }}\n"
    );
    one(
        &text,
        4,
        42,
        "iscsi_targets[0].mutual_chap.secret",
        "must differ from `chap.secret`",
    );
}

#[test]
fn alias() {
    let text = format!("{TARGET}alias = \"\"\n");
    one(
        &text,
        3,
        9,
        "iscsi_targets[0].alias",
        "alias must not be empty",
    );
    let text = format!("{TARGET}alias = \"a\\tb\"\n");
    one(
        &text,
        3,
        9,
        "iscsi_targets[0].alias",
        "control character '\\t'",
    );
}

#[test]
fn all_semantic_errors_are_reported_together() {
    let text = "\
[server]
buffer_pool = \"100KiB\"

[[volumes]]
name = \"v\"
path = \"v.img\"
block_size = 777

[[iscsi_targets]]
iqn = \"iqn.2026-11.io.x:a\"
luns = [\"v\", \"w\"]
chap = { username = \"u\", secret = \"tiny\" }

[[nvme_subsystems]]
nqn = \"nqn.bad\"
namespaces = [\"v\"]
";
    let got: Vec<(usize, usize, String)> = errors(text)
        .into_iter()
        .map(|e| (e.line.unwrap(), e.column.unwrap(), e.path))
        .collect();
    let want = [
        (2, 15, "server.buffer_pool"),
        (7, 14, "volumes[0].block_size"),
        (11, 14, "iscsi_targets[0].luns[1]"),
        (12, 35, "iscsi_targets[0].chap.secret"),
        (15, 7, "nvme_subsystems[0].nqn"),
    ];
    let want: Vec<(usize, usize, String)> =
        want.iter().map(|&(l, c, p)| (l, c, p.to_owned())).collect();
    assert_eq!(got, want);
}

#[test]
fn three_separate_problems() {
    let text = "\
[[volumes]]
name = \"a\"
path = \"a.img\"
size = 1000

[[iscsi_targets]]
iqn = \"iqn.2026-11.io.x:a\"
luns = [\"b\"]

[[nvme_subsystems]]
nqn = \"not-an-nqn\"
";
    let errs = Config::from_toml_str(text, Path::new("/")).unwrap_err();
    let lines: Vec<String> = errs.to_string().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{errs}");
    assert!(
        lines[0].starts_with("4:8: volumes[0].size: size 1000 bytes"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("8:9: iscsi_targets[0].luns[0]: no volume named `b`"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("11:7: nvme_subsystems[0].nqn: `not-an-nqn` is not a valid NQN"),
        "{}",
        lines[2]
    );
}

// ---- rbd volumes ----

#[test]
fn rbd_volume_keys() {
    let rbd = "[[volumes]]\nname = \"r\"\nbackend = \"rbd\"\n";
    // pool and image are required, reported at the table.
    let errs = errors(&format!("{rbd}image = \"i\"\n"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, "volumes[0].pool");
    assert!(errs[0].message.contains("needs `pool`"), "{}", errs[0]);
    one(
        &format!("{rbd}pool = \"rbd\"\nimage = \"a/b\"\n"),
        5,
        9,
        "volumes[0].image",
        "must not contain '/'",
    );
    one(
        &format!("{rbd}pool = \"rbd\"\nimage = \"i\"\npath = \"x.img\"\n"),
        6,
        8,
        "volumes[0].path",
        "has no backing file",
    );
    one(
        &format!("{rbd}pool = \"rbd\"\nimage = \"i\"\nceph_user = \"client.admin\"\n"),
        6,
        13,
        "volumes[0].ceph_user",
        "without the `client.` prefix (e.g. `admin`)",
    );
    one(
        &format!("{rbd}pool = \"\"\nimage = \"i\"\n"),
        4,
        8,
        "volumes[0].pool",
        "must not be empty",
    );
    one(
        &format!("{VOL}pool = \"rbd\"\n"),
        5,
        8,
        "volumes[0].pool",
        "`pool` only applies to `rbd` volumes, not `file`",
    );
    one(
        &format!("{rbd}pool = \"rbd\"\nimage = \"i\"\nrados_timeout_secs = 0\n"),
        6,
        22,
        "volumes[0].rados_timeout_secs",
        "must be 1..=3600 seconds",
    );
    one(
        &format!("{VOL}rados_timeout_secs = 5\n"),
        5,
        22,
        "volumes[0].rados_timeout_secs",
        "only applies to `rbd` volumes, not `file`",
    );
    // No size: the image must exist (checked when it is opened).
    let c = Config::from_toml_str(
        &format!(
            "{rbd}pool = \"rbd\"\nimage = \"i\"\nceph_conf = \"ceph.conf\"\nrados_timeout_secs = 7\n"
        ),
        Path::new("/base"),
    )
    .expect("valid");
    let r = c.volumes[0].rbd.as_ref().expect("rbd");
    assert_eq!(r.ceph_conf.as_deref(), Some(Path::new("/base/ceph.conf")));
    assert_eq!((r.pool.as_str(), r.image.as_str()), ("rbd", "i"));
    assert_eq!(r.rados_timeout_secs, Some(7));
}

const SUBSYS: &str = "[[nvme_subsystems]]\nnqn = \"nqn.2026-12.io.x:s\"\n";
const HOST_KEY: &str = "DHHC-1:01:ERERERERERERERERERERERERERERERERERERERERERHYIEm8:";
const CTRL_KEY: &str =
    "DHHC-1:00:IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiaUBivA==:";

#[test]
fn dhchap_host_secrets() {
    let ok = format!(
        "{SUBSYS}dhchap_hashes = [\"sha512\"]\nhosts = [\"*\", {{ nqn = \"nqn.2026-12.io.x:h\", dhchap_key = \"{HOST_KEY}\", dhchap_ctrl_key = \"{CTRL_KEY}\", dhchap_dhgroups = [\"null\"] }}]\n"
    );
    let c = Config::from_toml_str(&ok, Path::new("/")).unwrap();
    let s = &c.nvme_subsystems[0];
    assert_eq!(s.hosts, ["*", "nqn.2026-12.io.x:h"]);
    let k = s.host_key("nqn.2026-12.io.x:h").unwrap();
    assert_eq!(k.dhchap_key, HOST_KEY);
    assert_eq!(k.dhchap_ctrl_key.as_deref(), Some(CTRL_KEY));
    assert!(!format!("{c:?}").contains("ERERER"), "Debug shows a secret");
    // A flipped character: the CRC-32 catches it, at the value.
    let bad = HOST_KEY.replace("ERHY", "ERHZ");
    let text = format!(
        "{SUBSYS}hosts = [\n  {{ nqn = \"nqn.2026-12.io.x:h\", dhchap_key = \"{bad}\" }},\n]\n"
    );
    one(
        &text,
        4,
        46,
        "nvme_subsystems[0].hosts[0].dhchap_key",
        "CRC-32 does not match",
    );
    let errs = errors(&format!(
        "{SUBSYS}hosts = [{{ nqn = \"nqn.2026-12.io.x:h\", dhchap_key = \"DHHC-1:07:abc:\" }}]\n"
    ));
    assert!(
        errs[0].message.contains("unknown key transformation `07`"),
        "{errs:?}"
    );
    assert!(
        !errs[0].message.contains("abc"),
        "the message quotes the secret"
    );
    one(
        &format!("{SUBSYS}hosts = [{{ nqn = \"nqn.2026-12.io.x:h\", dhchap_key = \"{HOST_KEY}\", dhchap_ctrl_key = \"{HOST_KEY}\" }}]\n"),
        3,
        134,
        "nvme_subsystems[0].hosts[0].dhchap_ctrl_key",
        "must differ",
    );
    one(
        &format!("{SUBSYS}dhchap_dhgroups = [\"null\", \"ffdhe1024\"]\n"),
        3,
        28,
        "nvme_subsystems[0].dhchap_dhgroups[1]",
        "unknown `ffdhe1024`",
    );
    one(
        &format!("{SUBSYS}hosts = [1]\n"),
        3,
        10,
        "nvme_subsystems[0].hosts[0]",
        "expected a host NQN, \"*\", or a table",
    );
    one(
        &format!("{SUBSYS}hosts = [{{ nqn = \"nqn.2026-12.io.x:h\", dhchap_kee = \"x\" }}]\n"),
        3,
        40,
        "nvme_subsystems[0].hosts[0].dhchap_kee",
        "unknown field `dhchap_kee`",
    );
    one(
        &format!("{SUBSYS}hosts = [{{ nqn = \"nqn.2026-12.io.x:h\" }}]\n"),
        3,
        10,
        "nvme_subsystems[0].hosts[0].dhchap_key",
        "needs `dhchap_key`",
    );
}
