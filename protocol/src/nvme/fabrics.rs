//! Fabrics commands (NVMe over Fabrics 1.1 §3): Property Get / Set,
//! Connect, Disconnect, Authentication Send / Receive.
//!
//! All Fabrics commands use opcode 7Fh; byte 4 of the SQE is FCTYPE, and
//! the command-specific fields start at byte 40 (CDW10).

use super::bytes::{le16, nul_terminated, put, put_le16, put_padded};
use super::{Completion, Sqe, Status};

/// FCTYPE values (Fabrics 1.1 Figure 13).
pub mod fctype {
    /// Property Set.
    pub const PROPERTY_SET: u8 = 0x00;
    /// Connect.
    pub const CONNECT: u8 = 0x01;
    /// Property Get.
    pub const PROPERTY_GET: u8 = 0x04;
    /// Authentication Send.
    pub const AUTH_SEND: u8 = 0x05;
    /// Authentication Receive.
    pub const AUTH_RECEIVE: u8 = 0x06;
    /// Disconnect.
    pub const DISCONNECT: u8 = 0x08;
}

/// Controller property offsets (Base 2.0 §3.1.4, Figure 35).
pub mod property {
    /// Controller Capabilities (8 bytes).
    pub const CAP: u32 = 0x00;
    /// Version (4 bytes).
    pub const VS: u32 = 0x08;
    /// Controller Configuration (4 bytes).
    pub const CC: u32 = 0x14;
    /// Controller Status (4 bytes).
    pub const CSTS: u32 = 0x1C;
    /// NVM Subsystem Reset (4 bytes).
    pub const NSSR: u32 = 0x20;
    /// Controller Ready Timeouts (4 bytes).
    pub const CRTO: u32 = 0x68;
}

/// Length of the Connect command's data (Fabrics 1.1 Figure 20).
pub const CONNECT_DATA_LEN: usize = 1024;

/// Longest NQN, in bytes, without the terminating NUL (Base 2.0 §4.5).
pub const NQN_MAX_LEN: usize = 223;

/// A decoded Fabrics command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FabricsCommand {
    /// Property Set (Fabrics 1.1 §3.4): ATTRIB bits 2:0 size (0: 4 bytes,
    /// 1: 8 bytes), OFST (CDW11), VALUE (CDW12-13).
    PropertySet {
        /// True for an 8-byte property.
        size8: bool,
        /// Property offset.
        offset: u32,
        /// Value.
        value: u64,
    },
    /// Property Get (Fabrics 1.1 §3.3).
    PropertyGet {
        /// True for an 8-byte property.
        size8: bool,
        /// Property offset.
        offset: u32,
    },
    /// Connect (Fabrics 1.1 §3.3).
    Connect(Connect),
    /// Disconnect (Fabrics 1.1 §3.5).
    Disconnect {
        /// Record format (must be 0).
        recfmt: u16,
    },
    /// Authentication Send.
    AuthSend,
    /// Authentication Receive.
    AuthReceive,
    /// Any other FCTYPE.
    Unknown(u8),
}

impl FabricsCommand {
    /// Decodes the Fabrics-specific fields of `sqe` (whose opcode must be
    /// 7Fh; this is not checked).
    pub fn parse(sqe: &Sqe) -> FabricsCommand {
        let size8 = sqe.cdw10 & 0x7 == 1;
        match sqe.fctype() {
            fctype::PROPERTY_SET => FabricsCommand::PropertySet {
                size8,
                offset: sqe.cdw11,
                value: u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32),
            },
            fctype::PROPERTY_GET => FabricsCommand::PropertyGet {
                size8,
                offset: sqe.cdw11,
            },
            fctype::CONNECT => FabricsCommand::Connect(Connect::from_sqe(sqe)),
            fctype::DISCONNECT => FabricsCommand::Disconnect {
                recfmt: sqe.cdw10 as u16,
            },
            fctype::AUTH_SEND => FabricsCommand::AuthSend,
            fctype::AUTH_RECEIVE => FabricsCommand::AuthReceive,
            other => FabricsCommand::Unknown(other),
        }
    }
}

/// Connect command fields (Fabrics 1.1 Figure 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connect {
    /// RECFMT (CDW10 bits 15:0): record format, 0.
    pub recfmt: u16,
    /// QID (CDW10 bits 31:16): 0 for the admin queue.
    pub qid: u16,
    /// SQSIZE (CDW11 bits 15:0), 0's based.
    pub sqsize: u16,
    /// CATTR (CDW11 bits 23:16): bit 2 disables SQ flow control.
    pub cattr: u8,
    /// KATO (CDW12) in milliseconds; admin queue only.
    pub kato: u32,
}

/// SQE byte offsets of the Connect fields, reported as IPO when IATTR is 0.
pub mod connect_sqe_offset {
    /// RECFMT.
    pub const RECFMT: u16 = 40;
    /// QID.
    pub const QID: u16 = 42;
    /// SQSIZE.
    pub const SQSIZE: u16 = 44;
    /// CATTR.
    pub const CATTR: u16 = 46;
    /// KATO.
    pub const KATO: u16 = 48;
}

/// Connect data byte offsets (Fabrics 1.1 Figure 20), reported as IPO when
/// IATTR is 1.
pub mod connect_data_offset {
    /// HOSTID (16 bytes).
    pub const HOSTID: u16 = 0;
    /// CNTLID (2 bytes).
    pub const CNTLID: u16 = 16;
    /// SUBNQN (256 bytes).
    pub const SUBNQN: u16 = 256;
    /// HOSTNQN (256 bytes).
    pub const HOSTNQN: u16 = 512;
}

impl Connect {
    /// CATTR bit 2: SQ flow control disable.
    pub const CATTR_DISABLE_SQ_FLOW: u8 = 1 << 2;

    /// Reads the Connect fields from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> Connect {
        Connect {
            recfmt: sqe.cdw10 as u16,
            qid: (sqe.cdw10 >> 16) as u16,
            sqsize: sqe.cdw11 as u16,
            cattr: (sqe.cdw11 >> 16) as u8,
            kato: sqe.cdw12,
        }
    }

    /// Writes the Connect fields into an SQE (for tests and tools).
    pub fn to_sqe(&self, cid: u16, data_len: u32) -> Sqe {
        let mut sqe = Sqe::new(super::FABRICS_OPCODE, cid);
        sqe.nsid = u32::from(fctype::CONNECT);
        sqe.dptr = super::Sgl::in_capsule(data_len);
        sqe.cdw10 = u32::from(self.recfmt) | (u32::from(self.qid) << 16);
        sqe.cdw11 = u32::from(self.sqsize) | (u32::from(self.cattr) << 16);
        sqe.cdw12 = self.kato;
        sqe
    }

    /// True if CATTR asks to disable SQ flow control.
    pub const fn sq_flow_control_disabled(&self) -> bool {
        self.cattr & Connect::CATTR_DISABLE_SQ_FLOW != 0
    }
}

/// Connect data (Fabrics 1.1 Figure 20).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectData {
    /// HOSTID: 128-bit host identifier.
    pub hostid: [u8; 16],
    /// CNTLID: FFFFh on the admin queue (dynamic controller model), the
    /// controller's ID on I/O queues.
    pub cntlid: u16,
    /// SUBNQN.
    pub subnqn: String,
    /// HOSTNQN.
    pub hostnqn: String,
}

impl ConnectData {
    /// Parses the 1024-byte connect data. A buffer of another length gives
    /// Data SGL Length Invalid; a malformed NQN gives Connect Invalid
    /// Parameters pointing at the field.
    pub fn parse(data: &[u8]) -> Result<ConnectData, Completion> {
        if data.len() != CONNECT_DATA_LEN {
            return Err(Completion::status(Status::SGL_INVALID_DATA.dnr()));
        }
        let nqn = |off: u16, may_be_empty: bool| -> Result<String, Completion> {
            nul_terminated(data, usize::from(off), 256)
                .filter(|s| (may_be_empty || !s.is_empty()) && s.len() <= NQN_MAX_LEN)
                .and_then(|s| std::str::from_utf8(s).ok())
                .map(str::to_owned)
                .ok_or_else(|| invalid_param(true, off))
        };
        Ok(ConnectData {
            hostid: super::bytes::array(data, 0),
            cntlid: le16(data, 16),
            subnqn: nqn(connect_data_offset::SUBNQN, false)?,
            // SPDK's host sends an empty HOSTNQN unless told otherwise; like
            // Linux nvmet and SPDK's target, the empty name is a host like
            // any other: admitted where any host is, refused by an ACL.
            hostnqn: nqn(connect_data_offset::HOSTNQN, true)?,
        })
    }

    /// Encodes 1024 bytes (for tests and tools).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; CONNECT_DATA_LEN];
        put(&mut b, 0, &self.hostid);
        put_le16(&mut b, 16, self.cntlid);
        put_padded(&mut b, 256, 255, &self.subnqn, 0);
        put_padded(&mut b, 512, 255, &self.hostnqn, 0);
        b
    }
}

/// Connect response for success: CNTLID in DW0 bits 15:0, AUTHREQ (bits
/// 31:16) zero since authentication is not supported (Fabrics 1.1 Figure 21).
pub const fn connect_success(cntlid: u16) -> Completion {
    Completion::success(cntlid as u32)
}

/// Connect Invalid Parameters: DW0 bits 15:0 IPO (byte offset of the bad
/// field), bit 16 IATTR (1: offset in the connect data, 0: in the SQE). This
/// is the layout the Linux host decodes (Fabrics 1.1 Figure 21).
pub const fn invalid_param(in_data: bool, ipo: u16) -> Completion {
    Completion {
        dw0: (ipo as u32) | ((in_data as u32) << 16),
        dw1: 0,
        status: Status::CONNECT_INVALID_PARAM.dnr(),
    }
}

/// Reads DW0/DW1 of a Property Get completion as one value.
pub fn property_value(c: &Completion) -> u64 {
    u64::from(c.dw0) | (u64::from(c.dw1) << 32)
}

/// Property Set / Get field bits (Base 2.0 §3.1.4).
pub mod bits {
    /// CC.EN.
    pub const CC_EN: u32 = 1;
    /// CC.CSS shift (bits 6:4).
    pub const CC_CSS_SHIFT: u32 = 4;
    /// CC.MPS shift (bits 10:7).
    pub const CC_MPS_SHIFT: u32 = 7;
    /// CC.AMS shift (bits 13:11).
    pub const CC_AMS_SHIFT: u32 = 11;
    /// CC.SHN shift (bits 15:14).
    pub const CC_SHN_SHIFT: u32 = 14;
    /// CC.IOSQES shift (bits 19:16).
    pub const CC_IOSQES_SHIFT: u32 = 16;
    /// CC.IOCQES shift (bits 23:20).
    pub const CC_IOCQES_SHIFT: u32 = 20;
    /// CSTS.RDY.
    pub const CSTS_RDY: u32 = 1;
    /// CSTS.CFS.
    pub const CSTS_CFS: u32 = 1 << 1;
    /// CSTS.SHST = 01b, shutdown processing occurring.
    pub const CSTS_SHST_OCCURRING: u32 = 1 << 2;
    /// CSTS.SHST = 10b, shutdown processing complete.
    pub const CSTS_SHST_COMPLETE: u32 = 2 << 2;
    /// CSTS.SHST mask.
    pub const CSTS_SHST_MASK: u32 = 3 << 2;
    /// CAP.CQR (bit 16).
    pub const CAP_CQR: u64 = 1 << 16;
    /// CAP.TO shift (bits 31:24, 500 ms units).
    pub const CAP_TO_SHIFT: u32 = 24;
    /// CAP.CSS bit 37: NVM command set.
    pub const CAP_CSS_NVM: u64 = 1 << 37;
}

/// Reads the CC value that the host would write, field by field (for tests):
/// EN, IOSQES 6, IOCQES 4, the rest 0.
pub const fn cc_enable_default() -> u32 {
    bits::CC_EN | (6 << bits::CC_IOSQES_SHIFT) | (4 << bits::CC_IOCQES_SHIFT)
}
