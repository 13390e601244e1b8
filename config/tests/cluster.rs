//! `[cluster]` and the per-volume `identity` / `owner` keys: every mistake
//! located, the derived identity and gateway numbers.

use std::path::Path;

use zctarget_config::{Config, ConfigError, NonOwnerState};

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::from_toml_str(text, Path::new("/base")).map_err(|e| e.0)
}

/// Exactly one error, at `line:col` for `path`, whose message contains `needle`.
#[track_caller]
fn one(text: &str, line: usize, col: usize, path: &str, needle: &str) {
    let errs = parse(text).expect_err("expected an error");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (Some(line), Some(col), path),
        "{e}"
    );
    assert!(
        e.message.contains(needle),
        "{:?} lacks {needle:?}",
        e.message
    );
}

const CLUSTER: &str = "[cluster]\ngateway = \"gw-b\"\ngateways = [\"gw-a\", \"gw-b\"]\n";

#[test]
fn a_valid_cluster_numbers_its_gateways() {
    let text = format!(
        "{CLUSTER}non_owner_state = \"inaccessible\"\n\n\
         [[volumes]]\nname = \"a\"\nbackend = \"memory\"\nsize = \"1MiB\"\nowner = \"gw-b\"\n\n\
         [[volumes]]\nname = \"b\"\nbackend = \"memory\"\nsize = \"1MiB\"\nidentity = \"disk b\"\n\n\
         [[volumes]]\nname = \"r\"\nbackend = \"rbd\"\npool = \"p\"\nimage = \"img\"\n"
    );
    let c = parse(&text).expect("valid");
    let cl = c.cluster.as_ref().expect("cluster");
    assert_eq!(cl.number(), 2);
    assert_eq!(cl.non_owner_state, NonOwnerState::Inaccessible);
    // Gateway 2's controller IDs do not overlap gateway 1's.
    assert_eq!(cl.cntlid_range(), 4001..=8000);
    let a = c.volume("a").unwrap();
    let b = c.volume("b").unwrap();
    let r = c.volume("r").unwrap();
    assert_eq!(c.volume_owner(a), Some(2));
    assert_eq!(
        c.volume_owner(b),
        Some(1),
        "default owner: the first gateway"
    );
    assert_eq!(c.volume_identity(a), "a");
    assert_eq!(c.volume_identity(b), "disk b");
    assert_eq!(c.volume_identity(r), "rbd:p//img", "an image names itself");
    // Without [cluster]: no owner, and an rbd volume keeps its name.
    let solo =
        parse("[[volumes]]\nname = \"r\"\nbackend = \"rbd\"\npool = \"p\"\nimage = \"img\"\n")
            .expect("valid");
    assert_eq!(solo.volume_owner(&solo.volumes[0]), None);
    assert_eq!(solo.volume_identity(&solo.volumes[0]), "r");
}

#[test]
fn cluster_mistakes_are_located() {
    one(
        "[cluster]\ngateway = \"gw-c\"\ngateways = [\"gw-a\", \"gw-b\"]\n",
        2,
        11,
        "cluster.gateway",
        "`gw-c` is not in cluster.gateways (gw-a, gw-b)",
    );
    one(
        "[cluster]\ngateway = \"gw-a\"\ngateways = [\"gw-a\", \"gw-a\"]\n",
        3,
        21,
        "cluster.gateways[1]",
        "already listed as cluster.gateways[0]",
    );
    one(
        "[cluster]\ngateway = \"gw-a\"\ngateways = [\"gw-a\", \"gw b\"]\n",
        3,
        21,
        "cluster.gateways[1]",
        "contains ' '",
    );
    one(
        "[cluster]\ngateway = \"gw-a\"\ngateways = []\n",
        3,
        12,
        "cluster.gateways",
        "list every gateway",
    );
    one(
        &format!("{CLUSTER}non_owner_state = \"standby\"\n"),
        4,
        19,
        "cluster.non_owner_state",
        "expected one of `non_optimized`, `inaccessible`, `unavailable`",
    );
    one(
        &format!("{CLUSTER}takeover_after_ms = 5\n"),
        4,
        21,
        "cluster.takeover_after_ms",
        "between 100 and 600000 milliseconds, not 5",
    );
    one(
        &format!("{CLUSTER}rejoin_after_ms = 500\n"),
        4,
        19,
        "cluster.rejoin_after_ms",
        "must be 0 (never by itself) or between 1000 and 3600000 milliseconds, not 500",
    );
    let many: Vec<String> = (0..17).map(|i| format!("\"g{i}\"")).collect();
    one(
        &format!(
            "[cluster]\ngateway = \"g0\"\ngateways = [{}]\n",
            many.join(", ")
        ),
        3,
        12,
        "cluster.gateways",
        "17 gateways listed; at most 16",
    );
}

#[test]
fn volume_owner_and_identity_mistakes_are_located() {
    let vol = "[[volumes]]\nname = \"a\"\nbackend = \"memory\"\nsize = \"1MiB\"\n";
    one(
        &format!("{vol}owner = \"gw-a\"\n"),
        5,
        9,
        "volumes[0].owner",
        "`owner` needs a [cluster] section",
    );
    one(
        &format!("{CLUSTER}\n{vol}owner = \"gw-x\"\n"),
        9,
        9,
        "volumes[0].owner",
        "`gw-x` is not in cluster.gateways",
    );
    one(
        &format!("{vol}identity = \"\"\n"),
        5,
        12,
        "volumes[0].identity",
        "identity must not be empty",
    );
    // Two volumes whose identities collide (an explicit one equal to the
    // other's name): reported at the second.
    one(
        &format!("{vol}\n[[volumes]]\nname = \"b\"\nbackend = \"memory\"\nsize = \"1MiB\"\nidentity = \"a\"\n"),
        10,
        12,
        "volumes[1].identity",
        "has the identity `a` of volume `a`",
    );
}

#[test]
fn peer_link_addresses_and_secret() {
    let text = format!(
        "{CLUSTER}peers = {{ gw-a = \"127.0.0.1:7401\", gw-b = \"127.0.0.1:0\" }}\n\
         peer_secret_file = \"peer.secret\"\n"
    );
    let c = parse(&text).expect("valid");
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!(cl.peers["gw-a"], "127.0.0.1:7401".parse().unwrap());
    assert_eq!(cl.peers["gw-b"].port(), 0, "port 0: any free port");
    assert_eq!(
        cl.peer_secret_file.as_deref(),
        Some(Path::new("/base/peer.secret")),
        "relative to the file"
    );
    // Without `peers`: no link (today's behaviour).
    let c = parse(CLUSTER).expect("valid");
    assert!(c.cluster.unwrap().peers.is_empty());
}

#[test]
fn peer_link_mistakes_are_located() {
    one(
        &format!(
            "{CLUSTER}peers = {{ gw-b = \"127.0.0.1:7401\", gw-c = \"127.0.0.1:1\" }}\n\
             peer_secret_file = \"s\"\n"
        ),
        4,
        43,
        "cluster.peers.gw-c",
        "`gw-c` is not in cluster.gateways (gw-a, gw-b)",
    );
    one(
        &format!(
            "{CLUSTER}peers = {{ gw-a = \"127.0.0.1:7401\", gw-b = \"here\" }}\n\
             peer_secret_file = \"s\"\n"
        ),
        4,
        43,
        "cluster.peers.gw-b",
        "`here` is not an IP:PORT socket address",
    );
    one(
        &format!("{CLUSTER}peers = {{ gw-a = \"127.0.0.1:7401\" }}\npeer_secret_file = \"s\"\n"),
        4,
        9,
        "cluster.peers",
        "list this gateway (`gw-b`)",
    );
    one(
        &format!("{CLUSTER}peers = {{ gw-a = \"127.0.0.1:7401\", gw-b = \"127.0.0.1:0\" }}\n"),
        4,
        9,
        "cluster.peer_secret_file",
        "the peer link needs `peer_secret_file`",
    );
    one(
        &format!("{CLUSTER}peer_secret_file = \"s\"\n"),
        4,
        20,
        "cluster.peer_secret_file",
        "`peer_secret_file` needs `peers`",
    );
}
