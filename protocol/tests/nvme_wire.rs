//! Known-answer tests for NVMe SQE / CQE / SGL / status layouts and the
//! Fabrics Connect data (Base 2.0 Figures 84, 88, 90; Fabrics 1.1 Figures
//! 19-21).

use zctarget_protocol::nvme::fabrics::{
    connect_success, invalid_param, Connect, ConnectData, FabricsCommand,
};
use zctarget_protocol::nvme::*;

#[test]
fn sqe_known_answer_and_round_trip() {
    let mut b = [0u8; 64];
    b[0] = 0x02; // Read
    b[1] = 0x40; // PSDT 01b
    b[2..4].copy_from_slice(&0xBEEFu16.to_le_bytes());
    b[4..8].copy_from_slice(&7u32.to_le_bytes());
    b[16..24].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    b[24..32].copy_from_slice(&0u64.to_le_bytes());
    b[32..36].copy_from_slice(&4096u32.to_le_bytes());
    b[39] = 0x5A;
    b[40..44].copy_from_slice(&0x10u32.to_le_bytes());
    b[44..48].copy_from_slice(&0x1u32.to_le_bytes());
    b[48..52].copy_from_slice(&(7u32 | (1 << 30)).to_le_bytes());
    b[60..64].copy_from_slice(&0xA5A5_A5A5u32.to_le_bytes());
    let s = Sqe::parse(&b);
    assert_eq!(s.opcode, 0x02);
    assert_eq!((s.fuse, s.psdt), (0, 1));
    assert_eq!(s.cid, 0xBEEF);
    assert_eq!(s.nsid, 7);
    assert_eq!(s.mptr, 0x1122_3344_5566_7788);
    assert_eq!(s.dptr, Sgl::transport(4096));
    assert_eq!((s.dptr.sgl_type(), s.dptr.subtype()), (5, 0xA));
    assert_eq!(
        (s.cdw10, s.cdw11, s.cdw12, s.cdw15),
        (0x10, 1, 7 | (1 << 30), 0xA5A5_A5A5)
    );
    assert_eq!(s.direction(), DataDirection::ControllerToHost);
    assert_eq!(s.encode(), b);
    assert_eq!(s.data_pointer(0), Ok(DataPointer::Transport { len: 4096 }));
}

#[test]
fn sqe_flags_checks() {
    let mut s = Sqe::new(0x02, 1);
    assert_eq!(s.check_flags(), Ok(()));
    s.fuse = 1;
    assert_eq!(s.check_flags(), Err(Status::INVALID_FIELD.dnr()));
    s.fuse = 0;
    s.psdt = 0; // PRPs are not allowed on fabrics
    assert_eq!(s.check_flags(), Err(Status::INVALID_FIELD.dnr()));
    s.psdt = 2;
    assert_eq!(s.check_flags(), Err(Status::INVALID_FIELD.dnr()));
}

#[test]
fn data_pointer_classification() {
    let mut w = Sqe::new(0x01, 1); // Write: host to controller
    w.dptr = Sgl::in_capsule(512);
    assert_eq!(
        w.data_pointer(4096),
        Ok(DataPointer::InCapsule {
            offset: 0,
            len: 512
        })
    );
    assert_eq!(w.data_pointer(256), Err(Status::SGL_INVALID_OFFSET.dnr()));
    w.dptr.addr = 16;
    assert_eq!(w.data_pointer(4096), Err(Status::SGL_INVALID_OFFSET.dnr()));
    w.dptr = Sgl {
        id: 0x00,
        ..Sgl::transport(512)
    }; // Data Block, Address
    assert_eq!(w.data_pointer(4096), Err(Status::SGL_INVALID_TYPE.dnr()));
    w.dptr.len = 0; // zero length: no data, type irrelevant
    assert_eq!(w.data_pointer(4096), Ok(DataPointer::None));
    let mut r = Sqe::new(0x02, 1); // Read: in-capsule data makes no sense
    r.dptr = Sgl::in_capsule(512);
    assert_eq!(r.data_pointer(4096), Err(Status::INVALID_FIELD.dnr()));
}

#[test]
fn sgl_round_trip() {
    let b: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 0x00, 0x10, 0, 0, 9, 9, 9, 0x01];
    let s = Sgl::parse(&b);
    assert_eq!(s.addr, 0x0807_0605_0403_0201);
    assert_eq!(s.len, 0x1000);
    assert_eq!(s.id, Sgl::ID_IN_CAPSULE);
    assert_eq!(s.encode(), b);
}

#[test]
fn cqe_known_answer() {
    let c = Cqe {
        dw0: 0x0403_0201,
        dw1: 0x0807_0605,
        sqhd: 0x0A09,
        sqid: 0x0C0B,
        cid: 0x0E0D,
        phase: true,
        status: Status::LBA_OUT_OF_RANGE.dnr(),
    };
    let b = c.encode();
    assert_eq!(&b[..14], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    // SC 0x80 << 1 | SCT 0 | DNR bit 15 | P bit 0.
    assert_eq!(u16::from_le_bytes([b[14], b[15]]), 0x8000 | (0x80 << 1) | 1);
    assert_eq!(Cqe::parse(&b), c);
}

#[test]
fn status_words() {
    assert_eq!(Status::SUCCESS.to_word(), 0);
    assert_eq!(Status::INVALID_FIELD.dnr().to_word(), 0x8004);
    // Compare Failure: SCT 2, SC 85h.
    assert_eq!(Status::COMPARE_FAILURE.to_word(), (2 << 9) | (0x85 << 1));
    // Connect Invalid Parameters: SCT 1, SC 82h.
    assert_eq!(
        Status::CONNECT_INVALID_PARAM.to_word(),
        (1 << 9) | (0x82 << 1)
    );
    assert_eq!(Status::ACCESS_DENIED.sct, Sct::Media);
    assert_eq!(Status::ACCESS_DENIED.sc, 0x86);
    assert_eq!(Status::NS_WRITE_PROTECTED.sc, 0x20);
    assert_eq!(Status::NS_NOT_READY.sc, 0x82);
    assert_eq!(Status::INVALID_LOG_PAGE.sct, Sct::CommandSpecific);
    for s in [
        Status::ASYNC_LIMIT,
        Status::CONNECT_CTRL_BUSY.dnr(),
        Status::UNRECOVERED_READ,
        Status {
            crd: 2,
            more: true,
            ..Status::INTERNAL
        },
    ] {
        assert_eq!(Status::from_word(s.to_word()), s);
    }
    let c = Completion::status(Status::INVALID_NS.dnr()).to_cqe(5, 1, 9);
    assert_eq!((c.cid, c.sqid, c.sqhd), (5, 1, 9));
}

fn connect_data_bytes() -> Vec<u8> {
    let mut d = vec![0u8; 1024];
    d[..16].copy_from_slice(&[0xAB; 16]);
    d[16..18].copy_from_slice(&0xFFFFu16.to_le_bytes());
    d[256..256 + 9].copy_from_slice(b"nqn.a:sub");
    d[512..512 + 10].copy_from_slice(b"nqn.b:host");
    d
}

#[test]
fn connect_data_parse() {
    let d = ConnectData::parse(&connect_data_bytes()).unwrap();
    assert_eq!(d.hostid, [0xAB; 16]);
    assert_eq!(d.cntlid, 0xFFFF);
    assert_eq!(d.subnqn, "nqn.a:sub");
    assert_eq!(d.hostnqn, "nqn.b:host");
    assert_eq!(d.encode(), connect_data_bytes());
}

#[test]
fn connect_data_rejects() {
    assert_eq!(
        ConnectData::parse(&[0u8; 512]).unwrap_err().status,
        Status::SGL_INVALID_DATA.dnr()
    );
    // SUBNQN without NUL terminator: IATTR 1, IPO 256.
    let mut d = connect_data_bytes();
    d[256..512].fill(b'a');
    let e = ConnectData::parse(&d).unwrap_err();
    assert_eq!(e.status, Status::CONNECT_INVALID_PARAM.dnr());
    assert_eq!(e.dw0, (1 << 16) | 256);
    // Empty HOSTNQN: a host like any other (SPDK's host sends one); the
    // ACL decides. Without a NUL terminator: IPO 512.
    let mut d = connect_data_bytes();
    d[512..768].fill(0);
    assert_eq!(ConnectData::parse(&d).unwrap().hostnqn, "");
    d[512..768].fill(b'h');
    assert_eq!(ConnectData::parse(&d).unwrap_err().dw0, (1 << 16) | 512);
    // Invalid UTF-8.
    let mut d = connect_data_bytes();
    d[512] = 0xFF;
    assert_eq!(ConnectData::parse(&d).unwrap_err().dw0, (1 << 16) | 512);
}

#[test]
fn connect_command_fields() {
    let mut b = [0u8; 64];
    b[0] = 0x7F;
    b[1] = 0x40;
    b[4] = 0x01; // FCTYPE Connect
    b[40..42].copy_from_slice(&0u16.to_le_bytes()); // RECFMT
    b[42..44].copy_from_slice(&3u16.to_le_bytes()); // QID
    b[44..46].copy_from_slice(&127u16.to_le_bytes()); // SQSIZE
    b[46] = 0x04; // CATTR: disable SQ flow control
    b[48..52].copy_from_slice(&15000u32.to_le_bytes()); // KATO
    let s = Sqe::parse(&b);
    assert!(s.is_fabrics());
    assert_eq!(s.direction(), DataDirection::HostToController);
    let FabricsCommand::Connect(c) = FabricsCommand::parse(&s) else {
        panic!("not a connect");
    };
    assert_eq!(
        c,
        Connect {
            recfmt: 0,
            qid: 3,
            sqsize: 127,
            cattr: 4,
            kato: 15000
        }
    );
    assert!(c.sq_flow_control_disabled());
    let back = c.to_sqe(0, 1024);
    assert_eq!(Connect::from_sqe(&back), c);
    assert_eq!(connect_success(0x1234).dw0, 0x1234);
    assert_eq!(invalid_param(false, 42).dw0, 42);
}

#[test]
fn property_commands_parse() {
    let mut s = Sqe::new(0x7F, 1);
    s.nsid = 0x04;
    s.cdw10 = 1;
    s.cdw11 = 0;
    assert_eq!(
        FabricsCommand::parse(&s),
        FabricsCommand::PropertyGet {
            size8: true,
            offset: 0
        }
    );
    s.nsid = 0x00;
    s.cdw10 = 0;
    s.cdw11 = 0x14;
    s.cdw12 = 0x0046_0001;
    assert_eq!(
        FabricsCommand::parse(&s),
        FabricsCommand::PropertySet {
            size8: false,
            offset: 0x14,
            value: 0x0046_0001
        }
    );
    s.nsid = 0x05;
    assert_eq!(FabricsCommand::parse(&s), FabricsCommand::AuthSend);
    s.nsid = 0x08;
    assert_eq!(
        FabricsCommand::parse(&s),
        FabricsCommand::Disconnect { recfmt: 0 }
    );
}
