//! A small synchronous NVMe/TCP host for tests and tools: ICReq, Fabrics
//! Connect, Property Get/Set (controller enable), Identify, Get Log Page,
//! Keep Alive, and the NVM I/O commands — in-capsule writes up to the
//! controller's in-capsule size, R2T/H2CData beyond it, C2HData reads with
//! every header and data digest checked. It complements, never replaces,
//! the Linux host in the qemu tests.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use zctarget_protocol::nvme::fabrics::{Connect, ConnectData};
use zctarget_protocol::nvme::{Cqe, Sgl, Sqe, Status, FABRICS_OPCODE};
use zctarget_protocol::nvme_tcp::digest;
use zctarget_protocol::nvme_tcp::{
    C2HData, CapsuleCmd, CapsuleResp, CommonHeader, H2CData, ICReq, ICResp, PduFlags, PduType, R2t,
    IC_LEN,
};

/// The discovery subsystem NQN.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Options for one queue connection.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Subsystem NQN.
    pub subnqn: String,
    /// Host NQN.
    pub hostnqn: String,
    /// Host ID.
    pub hostid: [u8; 16],
    /// Queue ID (0: admin).
    pub qid: u16,
    /// CNTLID (0xFFFF for the admin queue).
    pub cntlid: u16,
    /// Header digests.
    pub hdgst: bool,
    /// Data digests.
    pub ddgst: bool,
    /// Keep-alive timeout in ms (admin queue).
    pub kato_ms: u32,
    /// In-capsule data limit to use for writes (the controller's IOCCSZ).
    pub in_capsule: usize,
    /// SQSIZE for Connect (0's based).
    pub sqsize: u16,
    /// CATTR for Connect (bit 2: disable SQ flow control).
    pub cattr: u8,
    /// DH-HMAC-CHAP secrets: [`NvmeQueue::admin`] authenticates when the
    /// Connect response asks for it (see `nvme_auth`).
    pub dhchap: Option<crate::nvme_auth::Dhchap>,
}

impl QueueOptions {
    /// An admin queue to `subnqn` as `hostnqn`.
    pub fn admin(subnqn: &str, hostnqn: &str) -> Self {
        Self {
            subnqn: subnqn.to_owned(),
            hostnqn: hostnqn.to_owned(),
            hostid: [7; 16],
            qid: 0,
            cntlid: 0xFFFF,
            hdgst: false,
            ddgst: false,
            kato_ms: 30_000,
            in_capsule: 8192,
            sqsize: 31,
            cattr: 0,
            dhchap: None,
        }
    }
}

/// A received PDU.
#[derive(Debug)]
pub struct RawPdu {
    /// Its common header.
    pub ch: CommonHeader,
    /// The whole header (HLEN bytes).
    pub header: Vec<u8>,
    /// Its data.
    pub data: Vec<u8>,
}

/// One queue (TCP connection) to a controller.
pub struct NvmeQueue {
    stream: TcpStream,
    hdgst: bool,
    ddgst: bool,
    next_cid: u16,
    in_capsule: usize,
    /// The controller's ID (from the Connect response).
    pub cntlid: u16,
    /// The ICResp's MAXH2CDATA.
    pub maxh2cdata: u32,
}

/// A command's end: the CQE and any C2H data.
#[derive(Debug)]
pub struct Reply {
    /// The completion.
    pub cqe: Cqe,
    /// Data returned.
    pub data: Vec<u8>,
}

/// The reply of a command that must succeed: panics naming `what` on an
/// I/O error or a failed status (a test helper).
pub fn succeeded(r: io::Result<Reply>, what: &str) -> Reply {
    let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(r.status().is_success(), "{what}: {:?}", r.status());
    r
}

impl Reply {
    /// The completion status.
    pub fn status(&self) -> Status {
        self.cqe.status
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl NvmeQueue {
    /// Opens the TCP connection and exchanges ICReq/ICResp, without Connect.
    pub fn open(addr: impl ToSocketAddrs, hdgst: bool, ddgst: bool) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        let mut q = Self {
            stream,
            hdgst: false,
            ddgst: false,
            next_cid: 1,
            in_capsule: 8192,
            cntlid: 0,
            maxh2cdata: 0,
        };
        let req = ICReq {
            pfv: 0,
            hpda: 0,
            hdgst_enable: hdgst,
            ddgst_enable: ddgst,
            maxr2t: 0,
        };
        q.stream.write_all(&req.encode())?;
        let mut ic = [0u8; IC_LEN];
        q.stream.read_exact(&mut ic)?;
        let resp = ICResp::parse(&ic).map_err(|e| invalid(format!("ICResp: {e}")))?;
        q.hdgst = resp.hdgst_enable;
        q.ddgst = resp.ddgst_enable;
        q.maxh2cdata = resp.maxh2cdata;
        Ok(q)
    }

    /// Opens a queue and sends Fabrics Connect. The reply's status tells
    /// whether the controller accepted it.
    pub fn connect(addr: impl ToSocketAddrs, o: &QueueOptions) -> io::Result<(Self, Reply)> {
        let mut q = Self::open(addr, o.hdgst, o.ddgst)?;
        q.in_capsule = o.in_capsule;
        let c = Connect {
            recfmt: 0,
            qid: o.qid,
            sqsize: o.sqsize,
            cattr: o.cattr,
            kato: if o.qid == 0 { o.kato_ms } else { 0 },
        };
        let data = ConnectData {
            hostid: o.hostid,
            cntlid: o.cntlid,
            subnqn: o.subnqn.clone(),
            hostnqn: o.hostnqn.clone(),
        }
        .encode();
        let cid = q.cid();
        let sqe = c.to_sqe(cid, data.len() as u32);
        let reply = q.command(sqe, &data, 0)?;
        if reply.status().is_success() {
            q.cntlid = reply.cqe.dw0 as u16;
        }
        Ok((q, reply))
    }

    /// Connects an admin queue and enables the controller (CC.EN, wait for
    /// CSTS.RDY).
    pub fn admin(addr: impl ToSocketAddrs, o: &QueueOptions) -> io::Result<Self> {
        let (mut q, r) = Self::connect(addr, o)?;
        if !r.status().is_success() {
            return Err(invalid(format!("Connect refused: {:?}", r.status())));
        }
        if let (true, Some(d)) = (crate::nvme_auth::required(&r), &o.dhchap) {
            q.authenticate(d, &o.subnqn, &o.hostnqn, 1)?
                .map_err(|e| invalid(format!("authentication: {e}")))?;
        }
        // CC: EN, IOSQES 6, IOCQES 4.
        let cc = 1 | (6 << 16) | (4 << 20);
        let r = q.property_set(0x14, cc)?;
        if !r.status().is_success() {
            return Err(invalid(format!("Property Set CC: {:?}", r.status())));
        }
        for _ in 0..100 {
            if q.property_get(0x1C, false)? & 1 == 1 {
                return Ok(q);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(invalid("CSTS.RDY never set"))
    }

    pub(crate) fn cid(&mut self) -> u16 {
        let c = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        c
    }

    /// Property Set (4 bytes).
    pub fn property_set(&mut self, offset: u32, value: u32) -> io::Result<Reply> {
        let mut sqe = Sqe::new(FABRICS_OPCODE, self.cid());
        sqe.nsid = 0x00;
        sqe.dptr = Sgl::transport(0);
        sqe.cdw11 = offset;
        sqe.cdw12 = value;
        self.command(sqe, &[], 0)
    }

    /// Property Get; `size8` for CAP.
    pub fn property_get(&mut self, offset: u32, size8: bool) -> io::Result<u64> {
        let mut sqe = Sqe::new(FABRICS_OPCODE, self.cid());
        sqe.nsid = 0x04;
        sqe.dptr = Sgl::transport(0);
        sqe.cdw10 = u32::from(size8);
        sqe.cdw11 = offset;
        let r = self.command(sqe, &[], 0)?;
        if !r.status().is_success() {
            return Err(invalid(format!("Property Get: {:?}", r.status())));
        }
        Ok(u64::from(r.cqe.dw0) | (u64::from(r.cqe.dw1) << 32))
    }

    /// Identify with `cns` for `nsid`: 4096 bytes.
    pub fn identify(&mut self, cns: u8, nsid: u32) -> io::Result<Reply> {
        let mut sqe = Sqe::new(0x06, self.cid());
        sqe.nsid = nsid;
        sqe.dptr = Sgl::transport(4096);
        sqe.cdw10 = u32::from(cns);
        self.command(sqe, &[], 4096)
    }

    /// Get Log Page `lid`, `len` bytes (a multiple of 4).
    pub fn get_log_page(&mut self, lid: u8, len: u32) -> io::Result<Reply> {
        let mut sqe = Sqe::new(0x02, self.cid());
        sqe.nsid = 0xFFFF_FFFF;
        sqe.dptr = Sgl::transport(len);
        let numd = len / 4 - 1;
        sqe.cdw10 = u32::from(lid) | ((numd & 0xFFFF) << 16);
        sqe.cdw11 = numd >> 16;
        self.command(sqe, &[], len as usize)
    }

    /// Keep Alive.
    pub fn keep_alive(&mut self) -> io::Result<Reply> {
        let sqe = Sqe::new(0x18, self.cid());
        self.command(sqe, &[], 0)
    }

    /// Read `blocks` blocks of `bs` bytes at `slba`.
    pub fn read(&mut self, nsid: u32, slba: u64, blocks: u32, bs: usize) -> io::Result<Reply> {
        let len = blocks as usize * bs;
        let mut sqe = Sqe::new(0x02, self.cid());
        sqe.nsid = nsid;
        sqe.dptr = Sgl::transport(len as u32);
        sqe.cdw10 = slba as u32;
        sqe.cdw11 = (slba >> 32) as u32;
        sqe.cdw12 = blocks - 1;
        self.command(sqe, &[], len)
    }

    /// Write `data` (whole blocks of `bs`) at `slba`; in-capsule when it
    /// fits, else by R2T/H2CData.
    pub fn write(
        &mut self,
        nsid: u32,
        slba: u64,
        data: &[u8],
        bs: usize,
        fua: bool,
    ) -> io::Result<Reply> {
        self.data_out_command(0x01, nsid, slba, data, bs, fua)
    }

    /// Compare `data` with the blocks at `slba`.
    pub fn compare(&mut self, nsid: u32, slba: u64, data: &[u8], bs: usize) -> io::Result<Reply> {
        self.data_out_command(0x05, nsid, slba, data, bs, false)
    }

    fn data_out_command(
        &mut self,
        opcode: u8,
        nsid: u32,
        slba: u64,
        data: &[u8],
        bs: usize,
        fua: bool,
    ) -> io::Result<Reply> {
        let blocks = (data.len() / bs) as u32;
        let mut sqe = Sqe::new(opcode, self.cid());
        sqe.nsid = nsid;
        sqe.dptr = if data.len() <= self.in_capsule {
            Sgl::in_capsule(data.len() as u32)
        } else {
            Sgl::transport(data.len() as u32)
        };
        sqe.cdw10 = slba as u32;
        sqe.cdw11 = (slba >> 32) as u32;
        sqe.cdw12 = blocks.saturating_sub(1) | if fua { 1 << 30 } else { 0 };
        self.command(sqe, data, 0)
    }

    /// Flush.
    pub fn flush(&mut self, nsid: u32) -> io::Result<Reply> {
        let mut sqe = Sqe::new(0x00, self.cid());
        sqe.nsid = nsid;
        self.command(sqe, &[], 0)
    }

    /// Write Zeroes over `blocks` blocks at `slba` (`deallocate`: DEAC).
    pub fn write_zeroes(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        deallocate: bool,
    ) -> io::Result<Reply> {
        let mut sqe = Sqe::new(0x08, self.cid());
        sqe.nsid = nsid;
        sqe.cdw10 = slba as u32;
        sqe.cdw11 = (slba >> 32) as u32;
        sqe.cdw12 = (blocks - 1) | if deallocate { 1 << 25 } else { 0 };
        self.command(sqe, &[], 0)
    }

    /// Dataset Management, deallocate these `(slba, blocks)` ranges.
    pub fn deallocate(&mut self, nsid: u32, ranges: &[(u64, u32)]) -> io::Result<Reply> {
        let mut list = Vec::with_capacity(ranges.len() * 16);
        for &(slba, n) in ranges {
            list.extend_from_slice(&0u32.to_le_bytes());
            list.extend_from_slice(&n.to_le_bytes());
            list.extend_from_slice(&slba.to_le_bytes());
        }
        let mut sqe = Sqe::new(0x09, self.cid());
        sqe.nsid = nsid;
        sqe.dptr = Sgl::in_capsule(list.len() as u32);
        sqe.cdw10 = ranges.len() as u32 - 1;
        sqe.cdw11 = 1 << 2; // AD: deallocate
        self.command(sqe, &list, 0)
    }

    /// Fabrics Disconnect (I/O queues).
    pub fn disconnect(&mut self) -> io::Result<Reply> {
        let mut sqe = Sqe::new(FABRICS_OPCODE, self.cid());
        sqe.nsid = 0x08;
        self.command(sqe, &[], 0)
    }

    /// Sends `sqe` with `data` (in-capsule when its SGL says so, else on
    /// R2T) and waits for the completion, collecting `expect_in` bytes of
    /// C2H data.
    pub fn command(&mut self, sqe: Sqe, data: &[u8], expect_in: usize) -> io::Result<Reply> {
        let in_capsule = sqe.dptr.id == Sgl::ID_IN_CAPSULE;
        self.send_capsule(&sqe, if in_capsule { data } else { &[] })?;
        let mut got = Vec::with_capacity(expect_in);
        loop {
            let pdu = self.recv()?;
            match pdu.ch.pdu_type {
                PduType::CapsuleResp => {
                    let r = CapsuleResp::parse(
                        pdu.header[..24]
                            .try_into()
                            .map_err(|_| invalid("short CapsuleResp"))?,
                    )
                    .map_err(|e| invalid(e.to_string()))?;
                    let cqe = Cqe::parse(&r.cqe);
                    if cqe.cid != sqe.cid {
                        return Err(invalid(format!(
                            "completion for CID {} while waiting for {}",
                            cqe.cid, sqe.cid
                        )));
                    }
                    return Ok(Reply { cqe, data: got });
                }
                PduType::C2HData => {
                    let d = C2HData::parse(
                        pdu.header[..24]
                            .try_into()
                            .map_err(|_| invalid("short C2HData"))?,
                    )
                    .map_err(|e| invalid(e.to_string()))?;
                    if d.datao as usize != got.len() {
                        return Err(invalid("C2HData out of order"));
                    }
                    got.extend_from_slice(&pdu.data);
                    if d.success() {
                        let cqe = Cqe {
                            cid: sqe.cid,
                            status: Status::SUCCESS,
                            ..Cqe::default()
                        };
                        return Ok(Reply { cqe, data: got });
                    }
                }
                PduType::R2t => {
                    let r = R2t::parse(
                        pdu.header[..24]
                            .try_into()
                            .map_err(|_| invalid("short R2T"))?,
                    )
                    .map_err(|e| invalid(e.to_string()))?;
                    self.answer_r2t(&r, data)?;
                }
                PduType::C2HTermReq => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("C2HTermReq: {:02x?}", &pdu.data),
                    ))
                }
                other => return Err(invalid(format!("unexpected PDU {other:?}"))),
            }
        }
    }

    /// Sends an in-capsule Write of `data` (whole blocks of `bs` bytes) to
    /// namespace 1 at `lba`, without waiting for its completion (see
    /// [`next_completion`](Self::next_completion)).
    pub fn send_write(&mut self, cid: u16, lba: u64, data: &[u8], bs: usize) -> io::Result<()> {
        let mut sqe = Sqe::new(0x01, cid);
        sqe.nsid = 1;
        sqe.dptr = Sgl::in_capsule(data.len() as u32);
        sqe.cdw10 = lba as u32;
        sqe.cdw11 = (lba >> 32) as u32;
        sqe.cdw12 = (data.len() / bs) as u32 - 1;
        self.send_capsule(&sqe, data)
    }

    /// The next completion within `wait`, skipping other PDUs; `None` when
    /// none came (or the connection failed).
    pub fn next_completion(&mut self, wait: Duration) -> Option<Cqe> {
        let deadline = std::time::Instant::now() + wait;
        for _ in 0..1000 {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            self.stream()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let pdu = self.recv().ok()?;
            if pdu.ch.pdu_type == PduType::CapsuleResp {
                let r = CapsuleResp::parse(pdu.header.get(..24)?.try_into().ok()?).ok()?;
                return Some(Cqe::parse(&r.cqe));
            }
        }
        None
    }

    /// Sends a CapsuleCmd.
    pub fn send_capsule(&mut self, sqe: &Sqe, data: &[u8]) -> io::Result<()> {
        let mut c = CapsuleCmd {
            sqe: sqe.encode(),
            ..CapsuleCmd::default()
        };
        let header_end = 72 + if self.hdgst { 4 } else { 0 };
        c.flags = PduFlags::empty().with(PduFlags::HDGSTF, self.hdgst);
        if !data.is_empty() {
            c.pdo = header_end as u8;
            c.flags = c.flags.with(PduFlags::DDGSTF, self.ddgst);
        }
        c.plen =
            (header_end + data.len() + if self.ddgst && !data.is_empty() { 4 } else { 0 }) as u32;
        let bytes = c.encode();
        self.send_pdu(&bytes, data)
    }

    /// Answers an R2T with the range it asks for of `data` (the whole
    /// command's data), in H2CData PDUs of at most MAXH2CDATA (4 KiB at
    /// least).
    pub fn answer_r2t(&mut self, r: &R2t, data: &[u8]) -> io::Result<()> {
        let start = r.r2to as usize;
        let end = start + r.r2tl as usize;
        if end > data.len() {
            return Err(invalid("R2T beyond the command's data"));
        }
        let step = self.maxh2cdata.max(4096) as usize;
        let mut off = start;
        while off < end {
            let n = step.min(end - off);
            self.send_h2c(
                r.cccid,
                r.ttag,
                off as u32,
                &data[off..off + n],
                off + n == end,
            )?;
            off += n;
        }
        Ok(())
    }

    /// Sends one H2CData PDU (pipelining drivers answer R2Ts themselves).
    pub fn send_h2c(
        &mut self,
        cccid: u16,
        ttag: u16,
        datao: u32,
        data: &[u8],
        last: bool,
    ) -> io::Result<()> {
        let header_end = 24 + if self.hdgst { 4 } else { 0 };
        let mut flags = PduFlags::empty().with(PduFlags::HDGSTF, self.hdgst);
        flags = flags
            .with(PduFlags::DDGSTF, self.ddgst)
            .with(PduFlags::LAST_PDU, last);
        let h = H2CData {
            flags,
            pdo: header_end as u8,
            plen: (header_end + data.len() + if self.ddgst { 4 } else { 0 }) as u32,
            cccid,
            ttag,
            datao,
            datal: data.len() as u32,
        };
        self.send_pdu(&h.encode(), data)
    }

    /// Sends a header with the negotiated digests and `data` right after
    /// it (PDO = end of header).
    pub fn send_pdu(&mut self, header: &[u8], data: &[u8]) -> io::Result<()> {
        let mut out = header.to_vec();
        if self.hdgst {
            out.extend_from_slice(&digest::to_wire(digest::header_digest(header)));
        }
        out.extend_from_slice(data);
        if self.ddgst && !data.is_empty() {
            out.extend_from_slice(&digest::to_wire(digest::data_digest(data)));
        }
        self.stream.write_all(&out)
    }

    /// The socket and the negotiated header and data digests, for a
    /// caller that drives the queue itself (the load generator).
    pub fn into_parts(self) -> (TcpStream, bool, bool) {
        (self.stream, self.hdgst, self.ddgst)
    }

    /// The queue's socket (tests that peek at it or close it abruptly).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends raw bytes (bad-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends every NVM Read of `reads` (`(cid, byte offset, bytes)` on
    /// namespace `nsid` of `block`-byte blocks) at once, waits `pause`
    /// without reading — the target's socket fills — then collects every
    /// C2HData (in order per command) and CapsuleResp: each read's data,
    /// in the order of `reads`. A failed read, data out of order or a
    /// command completed twice is an error.
    pub fn reads_at_once(
        &mut self,
        nsid: u32,
        block: usize,
        reads: &[(u16, usize, usize)],
        pause: Duration,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut got: Vec<(Vec<u8>, bool)> = Vec::with_capacity(reads.len());
        for &(cid, off, len) in reads {
            let mut sqe = Sqe::new(0x02, cid);
            sqe.nsid = nsid;
            sqe.dptr = Sgl::transport(len as u32);
            sqe.cdw10 = (off / block) as u32;
            sqe.cdw11 = ((off / block) >> 32) as u32;
            sqe.cdw12 = (len / block) as u32 - 1;
            self.send_capsule(&sqe, &[])?;
            got.push((Vec::with_capacity(len), false));
        }
        std::thread::sleep(pause);
        let index = |cid: u16| {
            reads
                .iter()
                .position(|r| r.0 == cid)
                .ok_or_else(|| invalid(format!("a PDU for CID {cid:#x}, not ours")))
        };
        while got.iter().any(|g| !g.1) {
            let pdu = self.recv()?;
            let header: [u8; 24] = pdu.header[..24]
                .try_into()
                .map_err(|_| invalid("short header"))?;
            let (k, done) = match pdu.ch.pdu_type {
                PduType::C2HData => {
                    let h = C2HData::parse(&header).map_err(|e| invalid(e.to_string()))?;
                    let k = index(h.cccid)?;
                    if h.datao as usize != got[k].0.len() {
                        return Err(invalid(format!("C2HData of {:#x} out of order", h.cccid)));
                    }
                    got[k].0.extend_from_slice(&pdu.data);
                    (k, h.success())
                }
                PduType::CapsuleResp => {
                    let r = CapsuleResp::parse(&header).map_err(|e| invalid(e.to_string()))?;
                    let cqe = Cqe::parse(&r.cqe);
                    if !cqe.status.is_success() {
                        return Err(invalid(format!("read {:#x}: {:?}", cqe.cid, cqe.status)));
                    }
                    (index(cqe.cid)?, true)
                }
                other => return Err(invalid(format!("unexpected PDU {other:?}"))),
            };
            if done {
                if got[k].1 {
                    return Err(invalid(format!("CID {:#x} completed twice", reads[k].0)));
                }
                got[k].1 = true;
            }
        }
        Ok(got.into_iter().map(|g| g.0).collect())
    }

    /// Receives one PDU, checking its digests.
    pub fn recv(&mut self) -> io::Result<RawPdu> {
        let mut chb = [0u8; 8];
        self.stream.read_exact(&mut chb)?;
        let ch = CommonHeader::parse(&chb).map_err(|e| invalid(e.to_string()))?;
        let hlen = usize::from(ch.hlen).max(8);
        let mut header = chb.to_vec();
        header.resize(hlen, 0);
        let plen = ch.plen as usize;
        if ch.pdu_type == PduType::C2HTermReq {
            self.stream.read_exact(&mut header[8..])?;
            let mut data = vec![0u8; plen.saturating_sub(hlen)];
            self.stream.read_exact(&mut data)?;
            return Ok(RawPdu { ch, header, data });
        }
        self.stream.read_exact(&mut header[8..])?;
        let mut consumed = hlen;
        if ch.flags.contains(PduFlags::HDGSTF) {
            let mut d = [0u8; 4];
            self.stream.read_exact(&mut d)?;
            if digest::from_wire(d) != digest::header_digest(&header) {
                return Err(invalid("bad header digest from the controller"));
            }
            consumed += 4;
        }
        let mut data = Vec::new();
        if ch.pdo != 0 {
            let pdo = usize::from(ch.pdo);
            let mut pad = vec![0u8; pdo.saturating_sub(consumed)];
            self.stream.read_exact(&mut pad)?;
            let ddgst = ch.flags.contains(PduFlags::DDGSTF);
            let len = plen - pdo - if ddgst { 4 } else { 0 };
            data.resize(len, 0);
            self.stream.read_exact(&mut data)?;
            if ddgst {
                let mut d = [0u8; 4];
                self.stream.read_exact(&mut d)?;
                if digest::from_wire(d) != digest::data_digest(&data) {
                    return Err(invalid("bad data digest from the controller"));
                }
            }
        }
        Ok(RawPdu { ch, header, data })
    }

    /// Whether the controller closed the connection (after a C2HTermReq,
    /// if any) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// One discovery log entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryRecord {
    /// TRTYPE.
    pub trtype: u8,
    /// ADRFAM.
    pub adrfam: u8,
    /// SUBTYPE.
    pub subtype: u8,
    /// TRSVCID.
    pub trsvcid: String,
    /// TRADDR.
    pub traddr: String,
    /// SUBNQN.
    pub subnqn: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// Decodes a discovery log page (1024-byte header, 1024-byte records):
/// generation counter and records.
pub fn parse_discovery_log(page: &[u8]) -> (u64, Vec<DiscoveryRecord>) {
    let genctr = u64::from_le_bytes(page[0..8].try_into().unwrap_or([0; 8]));
    let numrec = u64::from_le_bytes(page[8..16].try_into().unwrap_or([0; 8])) as usize;
    let mut out = Vec::new();
    for i in 0..numrec {
        let at = 1024 + i * 1024;
        let Some(r) = page.get(at..at + 1024) else {
            break;
        };
        out.push(DiscoveryRecord {
            trtype: r[0],
            adrfam: r[1],
            subtype: r[2],
            trsvcid: text(&r[32..64]),
            traddr: text(&r[512..768]),
            subnqn: text(&r[256..512]),
        });
    }
    (genctr, out)
}
