//! Bad input on the iSCSI wire (issue #3, "Bad input"): each malformed PDU
//! gets the RFC 7143 answer — a Reject with the right reason, silence, or a
//! closed connection — and other sessions keep working. Also a CRC32C header
//! and data digest round trip of 256 KiB through R2T/Data-Out and multi-PDU
//! Data-In, with every digest checked by the initiator.
//!
//! The initiator is the kit's (`zctarget_tests::iscsi`), deliberately
//! minimal and synchronous: plain `TcpStream`, the protocol crate's PDU
//! encoders, digests computed by the test; here every answer is read as an
//! [`Outcome`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use zctarget_protocol::iscsi::{DataOut, ScsiCommand, BHS_LEN};
use zctarget_tests::iscsi::{
    rejected, timed_out, Iscsi, Pdu, OP_LOGOUT_RESPONSE, OP_R2T, OP_REJECT, OP_SCSI_RESPONSE,
};
use zctarget_tests::{is_closed, Daemon};

const IQN: &str = "iqn.2026-11.io.zctarget.test:badinput";
const BS: usize = 512;

fn start(engine: &str) -> Daemon {
    Daemon::start_temp(&format!(
        "[server]\nadmin_socket = \"\"\niscsi_listen = [\"127.0.0.1:0\"]\nnvme_listen = []\n\
         io_engine = \"{engine}\"\nreactors = 1\npoison_on_release = true\n\
         buffer_pool = \"16MiB\"\n\n\
         [[volumes]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"16MiB\"\n\n\
         [[iscsi_targets]]\niqn = \"{IQN}\"\nluns = [\"v\"]\n"
    ))
}

/// The kit's initiator, with every answer seen as an [`Outcome`] and
/// waits short enough to call a missing answer silence.
struct Initiator(Iscsi);

impl Deref for Initiator {
    type Target = Iscsi;
    fn deref(&self) -> &Iscsi {
        &self.0
    }
}

impl DerefMut for Initiator {
    fn deref_mut(&mut self) -> &mut Iscsi {
        &mut self.0
    }
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
        let (mut i, got) = Iscsi::login_only(
            port,
            IQN,
            name,
            BS,
            "ImmediateData=No\0InitialR2T=Yes\0MaxRecvDataSegmentLength=8192\0\
             MaxBurstLength=262144\0FirstBurstLength=65536\0",
            [header_digest, data_digest],
        )
        .expect("login");
        let dig = |on: bool| if on { "CRC32C" } else { "None" };
        assert_eq!(
            got.get("HeaderDigest").map(String::as_str),
            Some(dig(header_digest)),
            "{got:?}"
        );
        assert_eq!(
            got.get("DataDigest").map(String::as_str),
            Some(dig(data_digest)),
            "{got:?}"
        );
        i.data_out_chunk = 8192;
        let mut me = Self(i);
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
        self.0
            .send_pdu_with(bhs, data, [bad_hd, bad_dd])
            .expect("send");
    }

    /// Waits for the next PDU for a while (NOP-Ins answered and skipped):
    /// `Err(())` when nothing came, `Ok(None)` when the connection closed.
    fn next(&mut self, wait: Duration) -> Result<Option<Pdu>, ()> {
        self.0.s.set_read_timeout(Some(wait)).expect("timeout");
        let r = self.0.next();
        self.0
            .s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        match r {
            Ok(p) => Ok(Some(p)),
            Err(e) if timed_out(&e) => Err(()),
            Err(e) if is_closed(&e) => Ok(None),
            Err(e) => panic!("reading a PDU: {e}"),
        }
    }

    /// Runs a command to its end: R2Ts answered with `write` in 8 KiB
    /// Data-Outs, Data-In collected; 5 s without an answer is silence.
    fn run(&mut self, cmd: &ScsiCommand, write: &[u8]) -> Outcome {
        self.0
            .s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let r = self.0.run(cmd, write);
        self.0
            .s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        outcome(r)
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Outcome {
        let cdb = self.write_cdb(lba, data.len(), false);
        let cmd = self.command(&cdb, 0, data.len() as u32);
        self.run(&cmd, data)
    }

    fn read(&mut self, lba: u64, blocks: u32) -> Outcome {
        let cdb = self.read_cdb(lba, blocks);
        let cmd = self.command(&cdb, blocks * BS as u32, 0);
        self.run(&cmd, &[])
    }

    fn test_unit_ready(&mut self) -> Outcome {
        let cmd = self.command(&[0], 0, 0);
        self.run(&cmd, &[])
    }

    /// Sends a Logout Request (`reason`, `cid`) and returns the Logout
    /// Response (other PDUs before it are skipped).
    fn logout(&mut self, reason: u8, cid: u16) -> Option<Pdu> {
        let itt = self.next_itt();
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x40 | 0x06; // immediate Logout Request
        bhs[1] = 0x80 | reason;
        bhs[16..20].copy_from_slice(&itt.to_be_bytes());
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

/// A command's end as an [`Outcome`].
fn outcome(r: io::Result<(u8, Vec<u8>)>) -> Outcome {
    match r {
        Ok((status, data)) => Outcome::Status(status, data),
        Err(e) => match rejected(&e) {
            Some(reason) => Outcome::Rejected(reason),
            None if timed_out(&e) => Outcome::Silent,
            None if is_closed(&e) => Outcome::Closed,
            None => panic!("command: {e}"),
        },
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
    let mut healthy = Initiator::login(d.iscsi_port, "iqn.2026-11.test:healthy", false, false);
    let before = pattern(64 * 1024, 7);
    assert_eq!(healthy.write(100, &before), Outcome::Status(0, vec![]));

    // Unknown opcode: Reject, the session goes on.
    let mut b = Initiator::login(d.iscsi_port, "iqn.2026-11.test:b", false, false);
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
    let mut far = b.command(&[0], 0, 0);
    far.cmd_sn = far.cmd_sn.wrapping_add(100_000);
    b.cmd_sn = b.cmd_sn.wrapping_sub(1);
    assert_eq!(b.run(&far, &[]), Outcome::Silent);
    assert_eq!(b.test_unit_ready(), Outcome::Status(0, vec![]));

    // A data segment longer than negotiated (target MRDSL 256 KiB): the
    // connection ends.
    let mut c = Initiator::login(d.iscsi_port, "iqn.2026-11.test:c", false, false);
    let mut long = c
        .command(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0], 0, 1)
        .encode();
    long[1] = 0x80 | 0x20; // F, W
    long[5..8].copy_from_slice(&(1u32 << 20).to_be_bytes()[1..]);
    c.send(&long, &[]);
    assert!(
        c.closed_soon(),
        "oversized data segment did not end the connection"
    );

    // A truncated BHS, then the initiator goes away: only that connection.
    let mut t = TcpStream::connect(("127.0.0.1", d.iscsi_port)).expect("connect");
    t.write_all(&[0x43, 0x87, 0, 0, 0, 0]).expect("send");
    t.shutdown(Shutdown::Write).expect("shutdown");
    let mut sink = Vec::new();
    t.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = t.read_to_end(&mut sink);
    assert!(sink.is_empty(), "answer to a truncated BHS");

    // Wrong header digest: the connection ends (the header cannot be trusted).
    let mut hd = Initiator::login(d.iscsi_port, "iqn.2026-11.test:hd", true, false);
    assert_eq!(hd.test_unit_ready(), Outcome::Status(0, vec![]));
    let tur = hd.command(&[0], 0, 0);
    hd.send_with(&tur.encode(), &[], true, false);
    assert!(
        hd.closed_soon(),
        "bad header digest did not end the connection"
    );

    // Wrong data digest on a Data-Out: Reject (data digest error) and the
    // write does not happen.
    let mut dd = Initiator::login(d.iscsi_port, "iqn.2026-11.test:dd", true, true);
    let new = pattern(4096, 99);
    let cmd = dd.command(
        &[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8],
        0,
        new.len() as u32,
    );
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
    let mut tt = Initiator::login(d.iscsi_port, "iqn.2026-11.test:ttt", false, false);
    let cmd = tt.command(
        &[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8],
        0,
        new.len() as u32,
    );
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
    let mut i = Initiator::login(d.iscsi_port, "iqn.2026-11.test:digests", true, true);
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
    let mut lo = Initiator::login(d.iscsi_port, "iqn.2026-11.test:logout", false, false);
    for (reason, cid, expected) in [(1u8, 7u16, 1u8), (2, 0, 2)] {
        let rsp = lo.logout(reason, cid).expect("logout answered");
        assert_eq!(rsp.opcode(), OP_LOGOUT_RESPONSE);
        assert_eq!(rsp.bhs[2], expected, "logout reason {reason} cid {cid}");
    }
    assert_eq!(lo.test_unit_ready(), Outcome::Status(0, vec![]));
    // A Logout while a write waits for its Data-Out: answered at once (the
    // write is terminated), the connection then closes.
    let cmd = lo.command(
        &[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8],
        0,
        new.len() as u32,
    );
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
