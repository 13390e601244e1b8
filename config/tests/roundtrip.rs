//! `to_toml_string` round trips, `load`, path resolution and `validate`.

use std::path::{Path, PathBuf};

use zctarget_config::{
    BackendKind, ByteSize, Chap, Cluster, Config, IoEngine, IscsiTarget, NonOwnerState,
    NvmeSubsystem, RbdImage, Server, StatusPolicy, Volume, VolumeMap, ZeroCopyMode,
};

fn round_trip(c: &Config) {
    let text = c.to_toml_string();
    let back = Config::from_toml_str(&text, Path::new("/elsewhere"))
        .unwrap_or_else(|e| panic!("re-parse failed:\n{e}\n--- text ---\n{text}"));
    assert_eq!(&back, c, "--- text ---\n{text}");
}

fn everything_non_default() -> Config {
    Config {
        server: Server {
            iscsi_listen: vec![
                "[::1]:3260".parse().unwrap(),
                "10.0.0.1:3261".parse().unwrap(),
            ],
            nvme_listen: vec![],
            io_engine: IoEngine::Epoll,
            zerocopy: ZeroCopyMode::Never,
            status_policy: StatusPolicy::Eager,
            buffer_pool: ByteSize(3 << 20),
            reactors: 7,
            poison_on_release: true,
            zerocopy_threshold: ByteSize(1000),
            metrics_listen: Some("127.0.0.1:9750".parse().unwrap()),
            admin_socket: None,
            login_timeout_secs: 5,
        },
        volumes: vec![
            Volume {
                name: "a".into(),
                path: Some(PathBuf::from("/srv/a b.img")),
                size: None,
                block_size: 4096,
                read_only: true,
                direct_io: true,
                preallocate: true,
                write_delay_ms: 0,
                backend: BackendKind::File,
                rbd: None,
                identity: Some("shared disk \"a\"".into()),
                owner: None,
            },
            Volume {
                name: "m".into(),
                path: None,
                size: Some(ByteSize(1536 * 512)),
                block_size: 512,
                read_only: false,
                direct_io: false,
                preallocate: false,
                write_delay_ms: 250,
                backend: BackendKind::Memory,
                rbd: None,
                identity: None,
                owner: Some("gw-b".into()),
            },
            Volume {
                name: "r".into(),
                path: None,
                size: Some(ByteSize(1 << 30)),
                block_size: 4096,
                read_only: false,
                direct_io: false,
                preallocate: false,
                write_delay_ms: 0,
                backend: BackendKind::Rbd,
                rbd: Some(RbdImage {
                    pool: "rbd".into(),
                    image: "vol r".into(),
                    namespace: Some("tenant".into()),
                    ceph_conf: Some(PathBuf::from("/etc/ceph/ceph.conf")),
                    ceph_user: Some("zctarget".into()),
                    keyring: None,
                    rados_timeout_secs: Some(30),
                }),
                identity: None,
                owner: None,
            },
        ],
        iscsi_targets: vec![IscsiTarget {
            iqn: "eui.02004567A425678D".into(),
            alias: Some("üñí \"quoted\"".into()),
            // A gap (LUN 1..4 unmapped): written as a table.
            luns: {
                let mut m = VolumeMap::new(VolumeMap::LUN_BASE);
                m.insert(0, "m".into());
                m.insert(5, "a".into());
                m
            },
            initiators: vec![],
            chap: Some(Chap {
                username: "u".into(),
                secret: "0123456789ab".into(),
            }),
            mutual_chap: Some(Chap {
                username: "t".into(),
                secret: "ba9876543210".into(),
            }),
        }],
        nvme_subsystems: vec![NvmeSubsystem {
            nqn: "nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6".into(),
            namespaces: VolumeMap::from_names(VolumeMap::NSID_BASE, ["a"]),
            hosts: vec!["*".into(), "nqn.2026-11.com.example:h".into()],
            dhchap_hashes: vec!["sha384".into()],
            dhchap_dhgroups: vec!["ffdhe3072".into(), "null".into()],
            host_keys: vec![zctarget_config::NvmeHostKey {
                nqn: "nqn.2026-11.com.example:h".into(),
                dhchap_key: "DHHC-1:01:ERERERERERERERERERERERERERERERERERERERERERHYIEm8:".into(),
                dhchap_ctrl_key: Some("DHHC-1:00:IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiaUBivA==:".into()),
                dhchap_hashes: vec!["sha512".into()],
                dhchap_dhgroups: Vec::new(),
            }],
        }],
        cluster: Some(Cluster {
            gateway: "gw-b".into(),
            gateways: vec!["gw-a".into(), "gw-b".into()],
            non_owner_state: NonOwnerState::Inaccessible,
            takeover_after_ms: 750,
            rejoin_after_ms: 0,
            peers: [
                ("gw-a".to_owned(), "10.0.0.1:7401".parse().unwrap()),
                ("gw-b".to_owned(), "[::1]:0".parse().unwrap()),
            ]
            .into(),
            peer_secret_file: Some("/etc/zctarget/peer.secret".into()),
        }),
    }
}

#[test]
fn round_trips() {
    round_trip(&Config::embedded_default(Path::new("/var/lib/zctarget")));
    round_trip(&everything_non_default());
    round_trip(&Config::default());
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/full.toml");
    round_trip(&Config::load(&full).unwrap());
}

#[test]
fn serialized_form_is_human() {
    let text = everything_non_default().to_toml_string();
    assert!(text.contains("buffer_pool = \"3MiB\""), "{text}");
    assert!(text.contains("zerocopy_threshold = \"1KB\""), "{text}");
    assert!(text.contains("size = \"768KiB\""), "{text}");
    assert!(text.contains("io_engine = \"epoll\""), "{text}");
}

#[test]
fn relative_paths_resolve_against_base_dir() {
    let text = "[[volumes]]\nname = \"v\"\npath = \"sub/v.img\"\n\n[[volumes]]\nname = \"w\"\npath = \"/abs/w.img\"\n";
    let c = Config::from_toml_str(text, Path::new("/etc/zctarget")).unwrap();
    assert_eq!(
        c.volumes[0].path.as_deref(),
        Some(Path::new("/etc/zctarget/sub/v.img"))
    );
    assert_eq!(c.volumes[1].path.as_deref(), Some(Path::new("/abs/w.img")));
}

#[test]
fn load_resolves_against_the_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zctarget.toml");
    std::fs::write(
        &file,
        "[[volumes]]\nname = \"v\"\npath = \"v.img\"\nsize = \"1MiB\"\n",
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.volumes[0].path.as_deref(),
        Some(dir.path().join("v.img").as_path())
    );
    assert!(
        !dir.path().join("v.img").exists(),
        "validation must not create files"
    );
}

#[test]
fn load_reports_io_errors_without_location() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let errs = Config::load(&missing).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert_eq!((e.line, e.column, e.path.as_str()), (None, None, ""));
    assert!(e.message.starts_with("cannot read "), "{e}");
    assert!(e.message.contains("nope.toml"), "{e}");
    assert_eq!(errs.to_string(), e.message);
}

#[test]
fn validate_checks_modified_configs() {
    let mut c = Config::embedded_default(Path::new("/data"));
    c.validate().unwrap();
    c.volumes.push(c.volumes[0].clone());
    c.iscsi_targets[0].luns.insert(1, "ghost".into());
    let errs = c.validate().unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["volumes[1].name", "iscsi_targets[0].luns[1]"]);
}

#[test]
fn empty_file_is_all_defaults() {
    let c = Config::from_toml_str("", Path::new("/")).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.server, Server::default());
}
