//! A minimal synchronous iSCSI initiator over a plain `TcpStream`: one
//! Login Request straight to full feature phase (optionally with CRC32C
//! header and data digests, every digest from the target checked), READ(16)
//! / WRITE(16) with FUA / SYNCHRONIZE CACHE(10), Data-Out answering R2Ts,
//! NOP-In pings answered, and raw sends for pipelined or deliberately
//! broken traffic (wrong digests included). Errors are `io::Error`s so that
//! a test can tell a closed connection ([`crate::is_closed`]), a timeout
//! ([`timed_out`]) and a Reject ([`rejected`]) from garbage.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use zctarget_protocol::iscsi::digest;
use zctarget_protocol::iscsi::{DataOut, ScsiCommand, BHS_LEN};

pub const OP_NOP_IN: u8 = 0x20;
pub const OP_SCSI_RESPONSE: u8 = 0x21;
pub const OP_LOGIN_RESPONSE: u8 = 0x23;
pub const OP_DATA_IN: u8 = 0x25;
pub const OP_R2T: u8 = 0x31;
pub const OP_LOGOUT_RESPONSE: u8 = 0x26;
pub const OP_REJECT: u8 = 0x3f;
static NEXT_ISID: AtomicU32 = AtomicU32::new(1);
const RESERVED: u32 = 0xffff_ffff;
/// Data-Out segment size (the target accepts 256 KiB).
const DATA_OUT_CHUNK: usize = 64 << 10;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A Reject PDU in answer to a command (its reason code).
#[derive(Debug)]
pub struct Rejected(pub u8);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reject reason {:#x}", self.0)
    }
}

impl std::error::Error for Rejected {}

/// The reason of a Reject that ended a command, if `e` is one.
pub fn rejected(e: &io::Error) -> Option<u8> {
    e.get_ref()?.downcast_ref::<Rejected>().map(|r| r.0)
}

/// Whether `e` is a read that timed out (nothing came).
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A received PDU.
#[derive(Debug)]
pub struct Pdu {
    pub bhs: [u8; BHS_LEN],
    pub data: Vec<u8>,
}

impl Pdu {
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    pub fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.bhs[at..at + 4].try_into().expect("4 bytes"))
    }
    pub fn itt(&self) -> u32 {
        self.be32(16)
    }
}

/// One logged-in session (one connection).
pub struct Iscsi {
    pub s: TcpStream,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub max_cmd_sn: u32,
    itt: u32,
    pub bs: usize,
    /// CRC32C digests negotiated at login.
    pub header_digest: bool,
    pub data_digest: bool,
    /// Data-Out segment size answering an R2T.
    pub data_out_chunk: usize,
    /// The sense data of the last SCSI Response [`Iscsi::run`] received
    /// (its data segment without the length prefix; empty if none).
    pub last_sense: Vec<u8>,
}

/// The operational keys [`Iscsi::login`] asks for.
const LOGIN_KEYS: &str = "ImmediateData=No\0InitialR2T=Yes\0MaxRecvDataSegmentLength=65536\0\
     MaxBurstLength=262144\0FirstBurstLength=65536\0";

impl Iscsi {
    /// Connects to `port` and logs in to `target` as `initiator`, then
    /// clears the power-on unit attention. `bs`: the LUN's block size.
    pub fn login(port: u16, target: &str, initiator: &str, bs: usize) -> io::Result<Self> {
        Self::login_with(port, target, initiator, bs, LOGIN_KEYS).map(|(me, _)| me)
    }

    /// Like [`login`](Self::login) with the given operational keys
    /// (`Key=Value\0...`); also returns the keys the target answered.
    pub fn login_with(
        port: u16,
        target: &str,
        initiator: &str,
        bs: usize,
        keys: &str,
    ) -> io::Result<(Self, std::collections::HashMap<String, String>)> {
        let (mut me, answered) =
            Self::login_only(port, target, initiator, bs, keys, [false, false])?;
        me.clear_unit_attention()?;
        Ok((me, answered))
    }

    /// A new I_T nexus starts with a unit attention: TEST UNIT READY until
    /// GOOD (three tries).
    fn clear_unit_attention(&mut self) -> io::Result<()> {
        for _ in 0..3 {
            if self.test_unit_ready()? == 0 {
                return Ok(());
            }
        }
        Err(invalid("TEST UNIT READY never GOOD"))
    }

    /// Like [`login`](Self::login), with header and data digests (an error
    /// if the target does not agree to the data digest).
    pub fn login_with_digests(
        port: u16,
        target: &str,
        initiator: &str,
        bs: usize,
    ) -> io::Result<Self> {
        let (mut me, _) = Self::login_only(port, target, initiator, bs, LOGIN_KEYS, [true, true])?;
        if !me.data_digest {
            return Err(invalid("the target refused the data digest"));
        }
        me.clear_unit_attention()?;
        Ok(me)
    }

    /// The login alone (the power-on unit attention still pending), with
    /// `[header, data]` CRC32C digests asked for and, if the target agrees,
    /// used from then on.
    pub fn login_only(
        port: u16,
        target: &str,
        initiator: &str,
        bs: usize,
        keys: &str,
        [header_digest, data_digest]: [bool; 2],
    ) -> io::Result<(Self, std::collections::HashMap<String, String>)> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        let mut me = Self {
            s,
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_cmd_sn: 1,
            itt: 0x1000,
            bs,
            header_digest: false,
            data_digest: false,
            data_out_chunk: DATA_OUT_CHUNK,
            last_sense: Vec::new(),
        };
        let dig = |on: bool| if on { "CRC32C" } else { "None" };
        let text = format!(
            "InitiatorName={initiator}\0TargetName={target}\0SessionType=Normal\0\
             HeaderDigest={}\0DataDigest={}\0{keys}ErrorRecoveryLevel=0\0",
            dig(header_digest),
            dig(data_digest)
        );
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x40 | 0x03; // immediate, Login Request
        bhs[1] = 0x80 | (1 << 2) | 3; // T, CSG operational, NSG full feature
        bhs[5..8].copy_from_slice(&(text.len() as u32).to_be_bytes()[1..]);
        // ISID: a qualifier unique in this process, so that parallel
        // sessions never reinstate each other.
        let q = (std::process::id() << 16) ^ NEXT_ISID.fetch_add(1, Ordering::Relaxed);
        bhs[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 0]);
        bhs[10..14].copy_from_slice(&q.to_be_bytes());
        bhs[16..20].copy_from_slice(&1u32.to_be_bytes());
        bhs[24..28].copy_from_slice(&me.cmd_sn.to_be_bytes());
        me.send_pdu(&bhs, text.as_bytes())?;
        let rsp = me.recv()?;
        if rsp.opcode() != OP_LOGIN_RESPONSE {
            return Err(invalid(format!("login: opcode {:#x}", rsp.opcode())));
        }
        if (rsp.bhs[36], rsp.bhs[37]) != (0, 0) {
            return Err(invalid(format!(
                "login refused: class {} detail {}",
                rsp.bhs[36], rsp.bhs[37]
            )));
        }
        if rsp.bhs[1] & 0x83 != 0x83 {
            return Err(invalid("login did not reach full feature phase"));
        }
        me.exp_stat_sn = rsp.be32(24).wrapping_add(1);
        me.max_cmd_sn = rsp.be32(32);
        let answered: std::collections::HashMap<String, String> = rsp
            .data
            .split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = std::str::from_utf8(kv).ok()?;
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        let on = |key: &str| answered.get(key).is_some_and(|v| v == "CRC32C");
        me.header_digest = on("HeaderDigest");
        me.data_digest = on("DataDigest");
        Ok((me, answered))
    }

    /// Sends one PDU (BHS, data, padding, the negotiated digests).
    pub fn send_pdu(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) -> io::Result<()> {
        self.send_pdu_with(bhs, data, [false, false])
    }

    /// [`send_pdu`](Self::send_pdu) with the `[header, data]` digests made
    /// wrong on purpose.
    pub fn send_pdu_with(
        &mut self,
        bhs: &[u8; BHS_LEN],
        data: &[u8],
        bad: [bool; 2],
    ) -> io::Result<()> {
        let out = self.pdu_bytes_with(bhs, data, bad);
        self.s.write_all(&out)
    }

    /// One PDU as it goes on the wire (BHS, data, padding, the negotiated
    /// digests), for a test that sends it in pieces ([`send_raw`](Self::send_raw)):
    /// a host paused in the middle of a PDU.
    pub fn pdu_bytes(&self, bhs: &[u8; BHS_LEN], data: &[u8]) -> Vec<u8> {
        self.pdu_bytes_with(bhs, data, [false, false])
    }

    /// Sends `bytes` as they are (part of a PDU, or several).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    fn pdu_bytes_with(
        &self,
        bhs: &[u8; BHS_LEN],
        data: &[u8],
        [bad_hd, bad_dd]: [bool; 2],
    ) -> Vec<u8> {
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
        out
    }

    /// Receives one PDU, checking the negotiated digests.
    pub fn recv(&mut self) -> io::Result<Pdu> {
        let mut bhs = [0u8; BHS_LEN];
        self.s.read_exact(&mut bhs)?;
        let mut d = [0u8; 4];
        if self.header_digest {
            self.s.read_exact(&mut d)?;
            if digest::from_wire(d) != digest::header_digest(&bhs, &[]) {
                return Err(invalid("bad header digest from the target"));
            }
        }
        let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let mut data = vec![0u8; digest::padded_len(len)];
        self.s.read_exact(&mut data)?;
        data.truncate(len);
        if self.data_digest && len > 0 {
            self.s.read_exact(&mut d)?;
            if digest::from_wire(d) != digest::data_digest(&data) {
                return Err(invalid("bad data digest from the target"));
            }
        }
        Ok(Pdu { bhs, data })
    }

    /// Receives the next PDU that is not a NOP-In; pings are answered.
    /// Tracks ExpStatSN and MaxCmdSN.
    // `next` as in "the next PDU", the name the tests grew up with.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Pdu> {
        for _ in 0..1000 {
            let p = self.recv()?;
            if matches!(
                p.opcode(),
                OP_SCSI_RESPONSE | OP_DATA_IN | OP_R2T | OP_NOP_IN
            ) {
                let max = p.be32(32);
                if (max.wrapping_sub(self.max_cmd_sn) as i32) > 0 {
                    self.max_cmd_sn = max;
                }
            }
            if p.opcode() == OP_NOP_IN {
                let ttt = p.be32(20);
                if ttt != RESERVED {
                    let mut nop = [0u8; BHS_LEN];
                    nop[0] = 0x40; // immediate NOP-Out
                    nop[1] = 0x80;
                    nop[16..20].copy_from_slice(&RESERVED.to_be_bytes());
                    nop[20..24].copy_from_slice(&ttt.to_be_bytes());
                    nop[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
                    nop[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
                    self.send_pdu(&nop, &[])?;
                }
                continue;
            }
            return Ok(p);
        }
        Err(invalid("too many NOP-Ins"))
    }

    /// A fresh Initiator Task Tag (for PDUs built by hand).
    pub fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        self.itt
    }

    /// Builds the next SCSI Command (CmdSN and ITT advance).
    pub fn command(&mut self, cdb: &[u8], read_len: u32, write_len: u32) -> ScsiCommand {
        self.next_itt();
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = ScsiCommand {
            final_bit: true,
            read: read_len > 0,
            write: write_len > 0,
            lun: [0; 8],
            itt: self.itt,
            expected_data_transfer_len: read_len.max(write_len),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
            ..Default::default()
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        cmd
    }

    /// Whether the CmdSN window has room for one more command.
    pub fn window_open(&self) -> bool {
        (self.max_cmd_sn.wrapping_sub(self.cmd_sn) as i32) >= 0
    }

    /// Sends READs of `len` bytes at each of `lbas` at once, waits `pause`
    /// without reading — the target's socket fills — then collects every
    /// Data-In (in order per command) and status: each read's data, in
    /// the order of `lbas`. A status other than GOOD, data out of order or
    /// a PDU for another task is an error.
    pub fn reads_at_once(
        &mut self,
        lbas: &[u64],
        len: usize,
        pause: Duration,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut itts = Vec::with_capacity(lbas.len());
        for &lba in lbas {
            let cdb = self.read_cdb(lba, (len / self.bs) as u32);
            let cmd = self.command(&cdb, len as u32, 0);
            itts.push(cmd.itt);
            self.send_pdu(&cmd.encode(), &[])?;
        }
        std::thread::sleep(pause);
        let mut got: Vec<(Vec<u8>, bool)> = vec![(Vec::with_capacity(len), false); lbas.len()];
        while got.iter().any(|g| !g.1) {
            let pdu = self.next()?;
            let k = itts
                .iter()
                .position(|&t| t == pdu.itt())
                .ok_or_else(|| invalid(format!("a PDU for ITT {:#x}, not ours", pdu.itt())))?;
            let status = match pdu.opcode() {
                OP_DATA_IN => {
                    if pdu.be32(40) as usize != got[k].0.len() {
                        return Err(invalid("Data-In out of order"));
                    }
                    got[k].0.extend_from_slice(&pdu.data);
                    pdu.bhs[1] & 0x01 != 0
                }
                OP_SCSI_RESPONSE => true,
                other => return Err(invalid(format!("unexpected PDU opcode {other:#x}"))),
            };
            if status {
                if pdu.bhs[3] != 0 {
                    return Err(invalid(format!("read {k}: status {:#x}", pdu.bhs[3])));
                }
                self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                got[k].1 = true;
            }
        }
        Ok(got.into_iter().map(|g| g.0).collect())
    }

    /// Runs a command to its end: R2Ts answered from `write`, Data-In
    /// collected. Returns the SCSI status and the data.
    pub fn run(&mut self, cmd: &ScsiCommand, write: &[u8]) -> io::Result<(u8, Vec<u8>)> {
        self.send_pdu(&cmd.encode(), &[])?;
        let mut data = Vec::new();
        for _ in 0..100_000 {
            let pdu = self.next()?;
            if pdu.opcode() != OP_REJECT && pdu.itt() != cmd.itt {
                return Err(invalid(format!(
                    "PDU {:#x} for ITT {:#x} while waiting for {:#x}",
                    pdu.opcode(),
                    pdu.itt(),
                    cmd.itt
                )));
            }
            match pdu.opcode() {
                OP_R2T => {
                    let ttt = pdu.be32(20);
                    let offset = pdu.be32(40) as usize;
                    let len = pdu.be32(44) as usize;
                    if offset + len > write.len() {
                        return Err(invalid("R2T beyond the command's data"));
                    }
                    let chunk = self.data_out_chunk;
                    for (sn, start) in (offset..offset + len).step_by(chunk).enumerate() {
                        let end = (start + chunk).min(offset + len);
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
                        self.send_pdu(&dout.encode(), &write[start..end])?;
                    }
                }
                OP_DATA_IN => {
                    if pdu.be32(40) as usize != data.len() {
                        return Err(invalid("Data-In out of order"));
                    }
                    data.extend_from_slice(&pdu.data);
                    if pdu.bhs[1] & 0x01 != 0 {
                        self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                        return Ok((pdu.bhs[3], data));
                    }
                }
                OP_SCSI_RESPONSE => {
                    self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                    self.last_sense = pdu.data.get(2..).unwrap_or_default().to_vec();
                    return Ok((pdu.bhs[3], data));
                }
                OP_REJECT => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        Rejected(pdu.bhs[2]),
                    ))
                }
                other => return Err(invalid(format!("unexpected PDU opcode {other:#x}"))),
            }
        }
        Err(invalid("command never ended"))
    }

    /// Runs a command that moves at most `read_len` bytes in, on LUN
    /// `lun`: its status, Data-In, and the sense data of a CHECK CONDITION
    /// (the SCSI Response's data segment without its length prefix).
    pub fn run_on_lun(
        &mut self,
        lun: u16,
        cdb: &[u8],
        read_len: u32,
    ) -> io::Result<(u8, Vec<u8>, Vec<u8>)> {
        let mut cmd = self.command(cdb, read_len, 0);
        cmd.lun = [0; 8];
        cmd.lun[..2].copy_from_slice(&lun.to_be_bytes());
        self.send_pdu(&cmd.encode(), &[])?;
        let mut data = Vec::new();
        loop {
            let pdu = self.next()?;
            match pdu.opcode() {
                OP_DATA_IN if pdu.itt() == cmd.itt => {
                    data.extend_from_slice(&pdu.data);
                    if pdu.bhs[1] & 0x01 != 0 {
                        self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                        return Ok((pdu.bhs[3], data, Vec::new()));
                    }
                }
                OP_SCSI_RESPONSE if pdu.itt() == cmd.itt => {
                    self.exp_stat_sn = pdu.be32(24).wrapping_add(1);
                    let sense = pdu.data.get(2..).unwrap_or_default().to_vec();
                    return Ok((pdu.bhs[3], data, sense));
                }
                other => return Err(invalid(format!("unexpected PDU opcode {other:#x}"))),
            }
        }
    }

    /// WRITE(16) of whole blocks at `lba`, FUA when asked. The SCSI status.
    pub fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> io::Result<u8> {
        let cdb = self.write_cdb(lba, data.len(), fua);
        let cmd = self.command(&cdb, 0, data.len() as u32);
        Ok(self.run(&cmd, data)?.0)
    }

    pub fn write_cdb(&self, lba: u64, len: usize, fua: bool) -> Vec<u8> {
        let mut cdb = vec![0x8a, if fua { 0x08 } else { 0 }];
        cdb.extend_from_slice(&lba.to_be_bytes());
        cdb.extend_from_slice(&((len / self.bs) as u32).to_be_bytes());
        cdb.extend_from_slice(&[0, 0]);
        cdb
    }

    pub fn read_cdb(&self, lba: u64, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![0x88, 0];
        cdb.extend_from_slice(&lba.to_be_bytes());
        cdb.extend_from_slice(&blocks.to_be_bytes());
        cdb.extend_from_slice(&[0, 0]);
        cdb
    }

    /// READ(16): status and data.
    pub fn read(&mut self, lba: u64, blocks: u32) -> io::Result<(u8, Vec<u8>)> {
        let cdb = self.read_cdb(lba, blocks);
        let cmd = self.command(&cdb, blocks * self.bs as u32, 0);
        self.run(&cmd, &[])
    }

    /// SYNCHRONIZE CACHE(10) of the whole LUN.
    pub fn sync_cache(&mut self) -> io::Result<u8> {
        let cmd = self.command(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, 0);
        Ok(self.run(&cmd, &[])?.0)
    }

    pub fn test_unit_ready(&mut self) -> io::Result<u8> {
        let cmd = self.command(&[0; 6], 0, 0);
        Ok(self.run(&cmd, &[])?.0)
    }

    /// The one final Data-Out at offset 0 answering `r2t` (for `cmd`)
    /// with `len` bytes.
    pub fn data_out_for(&self, cmd: &ScsiCommand, r2t: &Pdu, len: usize) -> DataOut {
        DataOut {
            final_bit: true,
            data_segment_len: len as u32,
            lun: cmd.lun,
            itt: cmd.itt,
            ttt: r2t.be32(20),
            exp_stat_sn: self.exp_stat_sn,
            ..Default::default()
        }
    }

    /// Answers `r2t` (for `cmd`) with all of `data` in one final Data-Out
    /// at offset 0.
    pub fn data_out(&mut self, cmd: &ScsiCommand, r2t: &Pdu, data: &[u8]) -> io::Result<()> {
        let dout = self.data_out_for(cmd, r2t, data.len());
        self.send_pdu(&dout.encode(), data)
    }

    /// PERSISTENT RESERVE OUT (SPC-4 §6.16) `service_action` of type
    /// `pr_type` with the basic parameter list `(key, sa_key)`; the SCSI
    /// status.
    pub fn pr_out(
        &mut self,
        service_action: u8,
        pr_type: u8,
        key: u64,
        sa_key: u64,
    ) -> io::Result<u8> {
        let cdb = [0x5f, service_action, pr_type, 0, 0, 0, 0, 0, 24, 0];
        let mut param = [0u8; 24];
        param[..8].copy_from_slice(&key.to_be_bytes());
        param[8..16].copy_from_slice(&sa_key.to_be_bytes());
        let cmd = self.command(&cdb, 0, 24);
        Ok(self.run(&cmd, &param)?.0)
    }
}
