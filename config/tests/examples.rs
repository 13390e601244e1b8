//! Every shipped example parses and validates.

use std::path::{Path, PathBuf};

use zctarget_config::{BackendKind, ByteSize, Config, IoEngine, StatusPolicy};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn every_example_validates() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            assert!(!config.volumes.is_empty(), "{}", path.display());
            count += 1;
        }
    }
    assert!(
        count >= 2,
        "expected at least default.toml and full.toml, found {count}"
    );
}

#[test]
fn default_example_matches_embedded_default() {
    let dir = examples_dir();
    let from_file = Config::load(&dir.join("default.toml")).unwrap();
    assert_eq!(from_file, Config::embedded_default(&dir));
}

#[test]
fn embedded_default_contents() {
    let c = Config::embedded_default(Path::new("/data"));
    assert_eq!(
        c.server.iscsi_listen,
        vec!["127.0.0.1:3260".parse().unwrap()]
    );
    assert_eq!(
        c.server.nvme_listen,
        vec!["127.0.0.1:4420".parse().unwrap()]
    );
    assert_eq!(c.server.buffer_pool, ByteSize(256 << 20));
    assert_eq!(c.server.zerocopy_threshold, ByteSize(10 << 10));
    assert_eq!(c.server.login_timeout_secs, 30);
    let v = c.volume("default").unwrap();
    assert_eq!(v.path.as_deref(), Some(Path::new("/data/default.img")));
    assert_eq!(v.size, Some(ByteSize(1 << 30)));
    assert_eq!(v.block_size, 512);
    assert_eq!(v.backend, BackendKind::File);
    assert_eq!(c.iscsi_targets[0].iqn, "iqn.2026-11.io.zctarget:default");
    assert_eq!(c.iscsi_targets[0].luns.names(), ["default"]);
    assert_eq!(c.iscsi_targets[0].initiators, ["*"]);
    assert_eq!(c.nvme_subsystems[0].nqn, "nqn.2026-11.io.zctarget:default");
    assert_eq!(c.nvme_subsystems[0].namespaces.names(), ["default"]);
    assert_eq!(c.nvme_subsystems[0].hosts, ["*"]);
    c.validate().unwrap();
}

#[test]
fn full_example_contents() {
    let dir = examples_dir();
    let c = Config::load(&dir.join("full.toml")).unwrap();
    assert_eq!(c.server.io_engine, IoEngine::Auto);
    assert_eq!(c.server.status_policy, StatusPolicy::Eager);
    assert_eq!(c.server.reactors, 4);
    assert_eq!(c.server.login_timeout_secs, 20);
    assert_eq!(c.server.iscsi_listen.len(), 2);
    assert_eq!(c.volumes.len(), 3);
    let golden = c.volume("golden-image").unwrap();
    assert!(golden.read_only);
    assert_eq!(golden.size, None);
    assert_eq!(
        golden.path.as_deref(),
        Some(dir.join("images/golden.img").as_path())
    );
    let data = c.volume("data").unwrap();
    assert_eq!((data.block_size, data.direct_io), (4096, true));
    assert_eq!(
        data.path.as_deref(),
        Some(Path::new("/var/lib/zctarget/data.img"))
    );
    let null = c.volume("bench.null").unwrap();
    assert_eq!(
        (null.backend, null.path.as_ref(), null.size),
        (BackendKind::Null, None, Some(ByteSize(1 << 40)))
    );
    let t = &c.iscsi_targets[0];
    assert_eq!(t.alias.as_deref(), Some("Data disks"));
    assert_eq!(t.chap.as_ref().unwrap().username, "client1");
    assert_eq!(t.mutual_chap.as_ref().unwrap().username, "zctarget");
    assert_eq!(c.iscsi_targets[1].initiators, ["*"]);
    assert_eq!(
        c.nvme_subsystems[0].namespaces.names(),
        ["data", "golden-image"]
    );
    assert!(
        !format!("{t:?}").contains("s3cret"),
        "Debug must not print CHAP secrets"
    );
}
