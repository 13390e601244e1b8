//! Bad input on the iSCSI wire (issue #3, "Bad input"): each malformed PDU
//! gets the RFC 7143 answer — a Reject with the right reason, silence, or a
//! closed connection — and other sessions keep working. Also a CRC32C header
//! and data digest round trip of 256 KiB through R2T/Data-Out and multi-PDU
//! Data-In, with every digest checked by this test's own initiator.
//!
//! The initiator here is deliberately minimal and synchronous: plain
//! `TcpStream`, the protocol crate's PDU encoders, digests computed by the
//! test.

#[allow(dead_code)]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zctarget_protocol::iscsi::digest;
use zctarget_protocol::iscsi::{DataOut, ScsiCommand, BHS_LEN};

const BIN: &str = env!("CARGO_BIN_EXE_zctarget");
const IQN: &str = "iqn.2026-11.io.zctarget.test:badinput";
const BS: usize = 512;

struct Daemon {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(engine: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
         io_engine = \"{engine}\"\nreactors = 1\npoison_on_release = true\n\
         buffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"16MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n"
    );
    let path = dir.path().join("z.toml");
    std::fs::write(&path, cfg).expect("config");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn zctarget");
    let port = common::wait_logged_port(&mut child, &log_path, "iscsi");
    Daemon {
        child,
        port,
        _dir: dir,
    }
}

/// A received PDU.
struct Pdu {
    bhs: [u8; BHS_LEN],
    data: Vec<u8>,
}

impl Pdu {
    fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.bhs[at..at + 4].try_into().expect("4 bytes"))
    }
}

const OP_NOP_IN: u8 = 0x20;
const OP_SCSI_RESPONSE: u8 = 0x21;
const OP_LOGIN_RESPONSE: u8 = 0x23;
const OP_DATA_IN: u8 = 0x25;
const OP_R2T: u8 = 0x31;
const OP_REJECT: u8 = 0x3f;
const OP_LOGOUT_RESPONSE: u8 = 0x26;

struct Initiator {
    s: TcpStream,
    header_digest: bool,
    data_digest: bool,
    cmd_sn: u32,
    exp_stat_sn: u32,
    itt: u32,
}

/// How a command ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u8, Vec<u8>),
    Rejected(u8),
    Silent,
    Closed,
}

impl Initiator {
    fn login(port: u16, name: &str, header_digest: bool, data_digest: bool) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut me = Self {
            s,
            header_digest: false,
            data_digest: false,
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 0x100,
        };
        let dig = |on: bool| if on { "CRC32C" } else { "None" };
        let text = format!(
            "InitiatorName={name}\0TargetName={IQN}\0SessionType=Normal\0\
             HeaderDigest={}\0DataDigest={}\0ImmediateData=No\0InitialR2T=Yes\0\
             MaxRecvDataSegmentLength=8192\0MaxBurstLength=262144\0\
             FirstBurstLength=65536\0ErrorRecoveryLevel=0\0",
            dig(header_digest),
            dig(data_digest)
        );
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x40 | 0x03; // immediate, Login Request
        bhs[1] = 0x80 | (1 << 2) | 3; // T, CSG operational, NSG full feature
        bhs[5..8].copy_from_slice(&(text.len() as u32).to_be_bytes()[1..]);
        bhs[8..14].copy_from_slice(&[0x80, 0, 0x12, 0x34, 0x56, 0x78]);
        bhs[16..20].copy_from_slice(&1u32.to_be_bytes());
        bhs[24..28].copy_from_slice(&me.cmd_sn.to_be_bytes());
        me.send_raw(&bhs, text.as_bytes());
        let rsp = me.recv().expect("login response");
        assert_eq!(rsp.opcode(), OP_LOGIN_RESPONSE);
        assert_eq!((rsp.bhs[36], rsp.bhs[37]), (0, 0), "login refused");
        assert_eq!(rsp.bhs[1] & 0x83, 0x83, "not in full feature phase");
        me.exp_stat_sn = rsp.be32(24).wrapping_add(1);
        let got = String::from_utf8_lossy(&rsp.data).to_string();
        assert!(
            got.contains(&format!("HeaderDigest={}", dig(header_digest))),
            "{got}"
        );
        assert!(
            got.contains(&format!("DataDigest={}", dig(data_digest))),
            "{got}"
        );
        me.header_digest = header_digest;
        me.data_digest = data_digest;
        // A new I_T nexus starts with a POWER ON unit attention: the first
        // TEST UNIT READY reports it, the next one is GOOD.
        assert!(matches!(me.test_unit_ready(), Outcome::Status(2, _)));
        assert_eq!(me.test_unit_ready(), Outcome::Status(0, vec![]));
        me
    }

    /// Sends a PDU with padding and the negotiated digests.
    fn send(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) {
        self.send_with(bhs, data, false, false);
    }

    fn send_with(&mut self, bhs: &[u8; BHS_LEN], data: &[u8], bad_hd: bool, bad_dd: bool) {
        let mut out = bhs.to_vec();
        if self.header_digest {
            let d = digest::header_digest(bhs, &[]) ^ u32::from(bad_hd);
            out.extend_from_slice(&digest::to_wire(d));
        }
        out.extend_from_slice(data);
        out.extend_from_slice(digest::padding(data.len()));
        if self.data_digest && !data.is_empty() {
            let d = digest::data_digest(data) ^ u32::from(bad_dd);
            out.extend_from_slice(&digest::to_wire(d));
        }
        self.s.write_all(&out).expect("send");
    }

    fn send_raw(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) {
        let mut out = bhs.to_vec();
        out.extend_from_slice(data);
        out.extend_from_slice(digest::padding(data.len()));
        self.s.write_all(&out).expect("send");
    }

    /// Reads one PDU, verifying its digests. `None`: connection closed.
    fn recv(&mut self) -> Option<Pdu> {
        let mut bhs = [0u8; BHS_LEN];
        match self.s.read_exact(&mut bhs) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return None
            }
            Err(e) => panic!("reading a PDU: {e}"),
        }
        if self.header_digest {
            let mut d = [0u8; 4];
            self.s.read_exact(&mut d).expect("header digest");
            assert_eq!(
                digest::from_wire(d),
                digest::header_digest(&bhs, &[]),
                "bad header digest from the target"
            );
        }
        let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let mut data = vec![0u8; digest::padded_len(len)];
        self.s.read_exact(&mut data).expect("data segment");
        data.truncate(len);
        if self.data_digest && len > 0 {
            let mut d = [0u8; 4];
            self.s.read_exact(&mut d).expect("data digest");
            assert_eq!(
                digest::from_wire(d),
                digest::data_digest(&data),
                "bad data digest from the target"
            );
        }
        Some(Pdu { bhs, data })
    }

    /// Waits for the next PDU for a while; NOP-Ins are skipped.
    fn next(&mut self, wait: Duration) -> Result<Option<Pdu>, ()> {
        self.s.set_read_timeout(Some(wait)).expect("timeout");
        let mut peek = [0u8; 1];
        let r = match self.s.peek(&mut peek) {
            Ok(0) => Ok(None),
            Ok(_) => {
                self.s
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                Ok(self.recv())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(None),
            Err(e) => panic!("peek: {e}"),
        };
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        match r {
            Ok(Some(p)) if p.opcode() == OP_NOP_IN => self.next(wait),
            other => other,
        }
    }

    fn command(&mut self, cdb: &[u8], read_len: u32, write: &[u8]) -> ScsiCommand {
        self.itt += 1;
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            final_bit: true,
            read: read_len > 0,
            write: !write.is_empty(),
            lun: [0; 8],
            itt: self.itt,
            expected_data_transfer_len: read_len.max(write.len() as u32),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        cmd
    }

    /// Runs a command to its end: R2Ts answered with `write` in 8 KiB
    /// Data-Outs, Data-In collected.
    fn run(&mut self, cmd: &ScsiCommand, write: &[u8]) -> Outcome {
        self.send(&cmd.encode(), &[]);
        let mut data = Vec::new();
        loop {
            let pdu = match self.next(Duration::from_secs(5)) {
                Err(()) => return Outcome::Silent,
                Ok(None) => return Outcome::Closed,
                Ok(Some(p)) => p,
            };
            match pdu.opcode() {
                OP_R2T => {
                    let ttt = pdu.be32(20);
                    let offset = pdu.be32(40) as usize;
                    let len = pdu.be32(44) as usize;
                    for (sn, start) in (offset..offset + len).step_by(8192).enumerate() {
                        let end = (start + 8192).min(offset + len);
                        let dout = DataOut {
                            final_bit: end == offset + len,
                            data_segment_len: (end - start) as u32,
                            itt: cmd.itt,
                            ttt,
                            exp_stat_sn: self.exp_stat_sn,
                            data_sn: sn as u32,
                            buffer_offset: start as u32,
                            ..Default::default()
                        };
                        self.send(&dout.encode(), &write[start..end]);
                    }
                }
                OP_DATA_IN => {
                    assert_eq!(pdu.be32(40) as usize, data.len(), "Data-In out of order");
                    data.extend_from_slice(&pdu.data);
                    if pdu.bhs[1] & 0x01 != 0 {
                        self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                        return Outcome::Status(pdu.bhs[3], data);
                    }
                }
                OP_SCSI_RESPONSE => {
                    self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                    return Outcome::Status(pdu.bhs[3], data);
                }
                OP_REJECT => return Outcome::Rejected(pdu.bhs[2]),
                other => panic!("unexpected PDU opcode {other:#x}"),
            }
        }
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Outcome {
        let mut cdb = vec![0x8a, 0];
        cdb.extend_from_slice(&lba.to_be_bytes());
        cdb.extend_from_slice(&((data.len() / BS) as u32).to_be_bytes());
        let cmd = self.command(&cdb, 0, data);
        self.run(&cmd, data)
    }

    fn read(&mut self, lba: u64, blocks: u32) -> Outcome {
        let mut cdb = vec![0x88, 0];
        cdb.extend_from_slice(&lba.to_be_bytes());
        cdb.extend_from_slice(&blocks.to_be_bytes());
        let cmd = self.command(&cdb, blocks * BS as u32, &[]);
        self.run(&cmd, &[])
    }

    fn test_unit_ready(&mut self) -> Outcome {
        let cmd = self.command(&[0], 0, &[]);
        self.run(&cmd, &[])
    }

    /// Sends a Logout Request (`reason`, `cid`) and returns the Logout
    /// Response (other PDUs before it are skipped).
    fn logout(&mut self, reason: u8, cid: u16) -> Option<Pdu> {
        self.itt += 1;
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x40 | 0x06; // immediate Logout Request
        bhs[1] = 0x80 | reason;
        bhs[16..20].copy_from_slice(&self.itt.to_be_bytes());
        bhs[20..22].copy_from_slice(&cid.to_be_bytes());
        bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        self.send(&bhs, &[]);
        for _ in 0..16 {
            let p = self.next(Duration::from_secs(15)).ok().flatten()?;
            if p.opcode() == OP_LOGOUT_RESPONSE {
                self.exp_stat_sn = p.be32(24).wrapping_add(1);
                return Some(p);
            }
        }
        None
    }

    /// Whether the target closed the connection within a few seconds.
    fn closed_soon(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(None) = self.next(Duration::from_millis(500)) {
                return true;
            }
        }
        false
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn good_data(o: Outcome) -> Vec<u8> {
    match o {
        Outcome::Status(0, d) => d,
        other => panic!("expected GOOD, got {other:?}"),
    }
}

fn bad_pdus_on(engine: &str) {
    let d = start(engine);
    let mut healthy = Initiator::login(d.port, "iqn.2026-11.test:healthy", false, false);
    let before = pattern(64 * 1024, 7);
    assert_eq!(healthy.write(100, &before), Outcome::Status(0, vec![]));

    // Unknown opcode: Reject, the session goes on.
    let mut b = Initiator::login(d.port, "iqn.2026-11.test:b", false, false);
    let mut weird = [0u8; BHS_LEN];
    weird[0] = 0x1e; // not an initiator opcode
    weird[1] = 0x80;
    b.send(&weird, &[]);
    match b.next(Duration::from_secs(5)) {
        Ok(Some(p)) => {
            assert_eq!(p.opcode(), OP_REJECT);
            assert!(matches!(p.bhs[2], 0x04 | 0x05), "reason {:#x}", p.bhs[2]);
            // The rejected header comes back as the Reject's data.
            assert_eq!(&p.data[..BHS_LEN], &weird[..]);
        }
        other => panic!(
            "unknown opcode not rejected: {:?}",
            other.map(|p| p.map(|p| p.opcode()))
        ),
    }
    assert_eq!(b.test_unit_ready(), Outcome::Status(0, vec![]));

    // Data-Out for an ITT the target never saw: Reject (invalid PDU field).
    let stray = DataOut {
        final_bit: true,
        data_segment_len: 512,
        itt: 0xdead,
        ttt: 0x1234,
        exp_stat_sn: b.exp_stat_sn,
        ..Default::default()
    };
    b.send(&stray.encode(), &[0u8; 512]);
    match b.next(Duration::from_secs(5)) {
        Ok(Some(p)) => assert_eq!((p.opcode(), p.bhs[2]), (OP_REJECT, 0x09)),
        _ => panic!("stray Data-Out not rejected"),
    }
    assert_eq!(b.test_unit_ready(), Outcome::Status(0, vec![]));

    // CmdSN outside the window: silently ignored (RFC 7143 §3.2.2.1); the
    // next in-window command is answered normally.
    let mut far = b.command(&[0], 0, &[]);
    far.cmd_sn = far.cmd_sn.wrapping_add(100_000);
    b.cmd_sn = b.cmd_sn.wrapping_sub(1);
    assert_eq!(b.run(&far, &[]), Outcome::Silent);
    assert_eq!(b.test_unit_ready(), Outcome::Status(0, vec![]));

    // A data segment longer than negotiated (target MRDSL 256 KiB): the
    // connection ends.
    let mut c = Initiator::login(d.port, "iqn.2026-11.test:c", false, false);
    let mut long = c
        .command(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0], 0, &[1])
        .encode();
    long[1] = 0x80 | 0x20; // F, W
    long[5..8].copy_from_slice(&(1u32 << 20).to_be_bytes()[1..]);
    c.send(&long, &[]);
    assert!(
        c.closed_soon(),
        "oversized data segment did not end the connection"
    );

    // A truncated BHS, then the initiator goes away: only that connection.
    let mut t = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    t.write_all(&[0x43, 0x87, 0, 0, 0, 0]).expect("send");
    t.shutdown(Shutdown::Write).expect("shutdown");
    let mut sink = Vec::new();
    t.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = t.read_to_end(&mut sink);
    assert!(sink.is_empty(), "answer to a truncated BHS");

    // Wrong header digest: the connection ends (the header cannot be trusted).
    let mut hd = Initiator::login(d.port, "iqn.2026-11.test:hd", true, false);
    assert_eq!(hd.test_unit_ready(), Outcome::Status(0, vec![]));
    let tur = hd.command(&[0], 0, &[]);
    hd.send_with(&tur.encode(), &[], true, false);
    assert!(
        hd.closed_soon(),
        "bad header digest did not end the connection"
    );

    // Wrong data digest on a Data-Out: Reject (data digest error) and the
    // write does not happen.
    let mut dd = Initiator::login(d.port, "iqn.2026-11.test:dd", true, true);
    let new = pattern(4096, 99);
    let cmd = dd.command(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8], 0, &new);
    dd.send(&cmd.encode(), &[]);
    let r2t = dd.next(Duration::from_secs(5)).ok().flatten().expect("R2T");
    assert_eq!(r2t.opcode(), OP_R2T);
    let dout = DataOut {
        final_bit: true,
        data_segment_len: new.len() as u32,
        itt: cmd.itt,
        ttt: r2t.be32(20),
        exp_stat_sn: dd.exp_stat_sn,
        ..Default::default()
    };
    dd.send_with(&dout.encode(), &new, false, true);
    match dd.next(Duration::from_secs(5)) {
        Ok(Some(p)) => assert_eq!((p.opcode(), p.bhs[2]), (OP_REJECT, 0x02)),
        _ => panic!("bad data digest not rejected"),
    }
    assert_eq!(good_data(dd.read(100, 8)), before[..4096].to_vec());

    // A Data-Out whose Target Transfer Tag is not the outstanding R2T's
    // (RFC 7143 §11.7.4): Reject (invalid PDU field), the command ends with
    // CHECK CONDITION, nothing is written.
    let mut tt = Initiator::login(d.port, "iqn.2026-11.test:ttt", false, false);
    let cmd = tt.command(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8], 0, &new);
    tt.send(&cmd.encode(), &[]);
    let r2t = tt.next(Duration::from_secs(5)).ok().flatten().expect("R2T");
    assert_eq!(r2t.opcode(), OP_R2T);
    let dout = DataOut {
        final_bit: true,
        data_segment_len: new.len() as u32,
        itt: cmd.itt,
        ttt: r2t.be32(20) ^ 0x5a5a,
        exp_stat_sn: tt.exp_stat_sn,
        ..Default::default()
    };
    tt.send(&dout.encode(), &new);
    match tt.next(Duration::from_secs(5)) {
        Ok(Some(p)) => assert_eq!((p.opcode(), p.bhs[2]), (OP_REJECT, 0x09), "wrong TTT"),
        _ => panic!("Data-Out with a wrong TTT not rejected"),
    }
    match tt.next(Duration::from_secs(5)) {
        Ok(Some(p)) => assert_eq!((p.opcode(), p.bhs[3]), (OP_SCSI_RESPONSE, 2)),
        _ => panic!("no CHECK CONDITION after a wrong TTT"),
    }
    assert_eq!(good_data(tt.read(100, 8)), before[..4096].to_vec());

    // Through all of it the first session kept working.
    assert_eq!(good_data(healthy.read(100, 128)), before);
}

#[test]
fn bad_pdus_get_rfc_answers_and_other_sessions_keep_working() {
    for engine in ["uring", "epoll"] {
        bad_pdus_on(engine);
    }
}

#[test]
fn crc32c_digests_round_trip_256_kib() {
    let d = start("uring");
    let mut i = Initiator::login(d.port, "iqn.2026-11.test:digests", true, true);
    let data = pattern(256 * 1024, 3);
    // Several R2Ts' worth of Data-Out and 32 Data-In PDUs (MRDSL 8 KiB),
    // every digest checked in `recv`.
    assert_eq!(i.write(2048, &data), Outcome::Status(0, vec![]));
    assert_eq!(good_data(i.read(2048, 512)), data);
}

/// Logout (issue #11, defect 8): another CID gets "CID not found", reason 2
/// "recovery not supported" and the connection stays; a Logout while a
/// write waits for its Data-Out is answered at once and the connection
/// closes.
#[test]
fn logout_answers_per_rfc_7143() {
    let d = start("uring");
    let new = pattern(4096, 99);
    // Logout for another CID: CID not found; for connection recovery:
    // not supported (RFC 7143 §11.15.1). The connection stays.
    let mut lo = Initiator::login(d.port, "iqn.2026-11.test:logout", false, false);
    for (reason, cid, expected) in [(1u8, 7u16, 1u8), (2, 0, 2)] {
        let rsp = lo.logout(reason, cid).expect("logout answered");
        assert_eq!(rsp.opcode(), OP_LOGOUT_RESPONSE);
        assert_eq!(rsp.bhs[2], expected, "logout reason {reason} cid {cid}");
    }
    assert_eq!(lo.test_unit_ready(), Outcome::Status(0, vec![]));
    // A Logout while a write waits for its Data-Out: answered at once (the
    // write is terminated), the connection then closes.
    let cmd = lo.command(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8], 0, &new);
    lo.send(&cmd.encode(), &[]);
    let r2t = lo.next(Duration::from_secs(5)).ok().flatten().expect("R2T");
    assert_eq!(r2t.opcode(), OP_R2T);
    let t = Instant::now();
    let rsp = lo.logout(0, 0).expect("logout answered");
    assert_eq!((rsp.opcode(), rsp.bhs[2]), (OP_LOGOUT_RESPONSE, 0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "logout with a write awaiting Data-Out took {:?}",
        t.elapsed()
    );
    assert!(lo.closed_soon(), "connection not closed after logout");
}
