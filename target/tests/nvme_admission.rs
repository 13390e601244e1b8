//! NVMe/TCP host admission (issue #14): SPDK's host sends an empty HOSTNQN
//! unless told otherwise. Where any host may connect it is admitted (and
//! logged); an ACL refuses it with Connect Invalid Host.

use zctarget_protocol::nvme::Status;
use zctarget_tests::nvme_client::{NvmeQueue, QueueOptions};
use zctarget_tests::spec::{self, Spec, NQN};

#[test]
fn an_empty_hostnqn_is_a_host_like_any_other() {
    // Any host allowed: admitted, I/O works, the empty name is logged.
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::new("epoll");
    spec.nvme_host = "*";
    let d = spec::start(dir.path(), &spec, "open");
    let admin = NvmeQueue::admin(d.nvme_addr(), &QueueOptions::admin(NQN, ""))
        .expect("admin queue with an empty HOSTNQN");
    let mut o = QueueOptions::admin(NQN, "");
    o.qid = 1;
    o.cntlid = admin.cntlid;
    let (mut io, r) = NvmeQueue::connect(d.nvme_addr(), &o).expect("I/O queue");
    assert!(r.status().is_success(), "{:?}", r.status());
    let data = vec![0x5a; 4096];
    assert!(io
        .write(1, 8, &data, 4096, false)
        .unwrap()
        .status()
        .is_success());
    assert_eq!(io.read(1, 8, 1, 4096).unwrap().data, data);
    assert!(d.log().contains("empty HOSTNQN"), "{}", d.log());

    // An ACL: refused.
    let dir = tempfile::tempdir().unwrap();
    let d = spec::start(dir.path(), &Spec::new("epoll"), "acl");
    let (_q, r) = NvmeQueue::connect(d.nvme_addr(), &QueueOptions::admin(NQN, "")).expect("open");
    assert_eq!(r.status(), Status::CONNECT_INVALID_HOST.dnr());
}
