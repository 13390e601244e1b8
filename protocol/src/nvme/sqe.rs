//! Submission Queue Entry (Base 2.0 §4.2, Figure 88) and the SGL data
//! pointer used by NVMe over Fabrics (Base 2.0 §4.1.2; TCP Transport 1.0
//! §3.3 and §7.4.4).

use super::bytes::{array, le16, le32, le64, put, put_le16, put_le32, put_le64, u8_at};
use super::Status;
use crate::nvme_tcp::SQE_LEN;

/// Opcode of every Fabrics command (Fabrics 1.1 §3.1).
pub const FABRICS_OPCODE: u8 = 0x7F;

/// Admin command opcodes (Base 2.0 Figure 138).
pub mod admin_opcode {
    /// Delete I/O Submission Queue.
    pub const DELETE_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_SQ: u8 = 0x01;
    /// Get Log Page.
    pub const GET_LOG_PAGE: u8 = 0x02;
    /// Delete I/O Completion Queue.
    pub const DELETE_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Get Features.
    pub const GET_FEATURES: u8 = 0x0A;
    /// Asynchronous Event Request.
    pub const ASYNC_EVENT: u8 = 0x0C;
    /// Keep Alive.
    pub const KEEP_ALIVE: u8 = 0x18;
}

/// NVM command set I/O opcodes (NVM Command Set 1.0 Figure 17).
pub mod io_opcode {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Write Uncorrectable.
    pub const WRITE_UNCOR: u8 = 0x04;
    /// Compare.
    pub const COMPARE: u8 = 0x05;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DSM: u8 = 0x09;
    /// Verify.
    pub const VERIFY: u8 = 0x0C;
}

/// Data transfer direction encoded in bits 1:0 of an opcode (or of a
/// Fabrics FCTYPE) (Base 2.0 Figure 136).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// 00b: no data.
    None,
    /// 01b: host to controller.
    HostToController,
    /// 10b: controller to host.
    ControllerToHost,
    /// 11b: bidirectional.
    Bidirectional,
}

impl DataDirection {
    /// Decodes bits 1:0 of `code`.
    pub const fn from_code(code: u8) -> Self {
        match code & 3 {
            0 => DataDirection::None,
            1 => DataDirection::HostToController,
            2 => DataDirection::ControllerToHost,
            _ => DataDirection::Bidirectional,
        }
    }
}

/// One 16-byte SGL descriptor (Base 2.0 §4.1.2.1, Figure 84). Bytes 12-14
/// are kept verbatim so that encoding round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sgl {
    /// Address (bytes 0-7). For an in-capsule descriptor with the Offset
    /// subtype, an offset into the capsule data.
    pub addr: u64,
    /// Length (bytes 8-11).
    pub len: u32,
    /// Bytes 12-14 (reserved for data block descriptors; key bytes for keyed
    /// descriptors).
    pub rsvd: [u8; 3],
    /// SGL Identifier (byte 15): type in bits 7:4, subtype in bits 3:0.
    pub id: u8,
}

impl Sgl {
    /// Data Block descriptor type (0h).
    pub const TYPE_DATA_BLOCK: u8 = 0x0;
    /// Transport SGL Data Block descriptor type (5h).
    pub const TYPE_TRANSPORT_DATA_BLOCK: u8 = 0x5;
    /// Subtype Address (0h).
    pub const SUBTYPE_ADDRESS: u8 = 0x0;
    /// Subtype Offset (1h).
    pub const SUBTYPE_OFFSET: u8 = 0x1;
    /// Transport-specific subtype used by NVMe/TCP (Ah).
    pub const SUBTYPE_TRANSPORT: u8 = 0xA;
    /// Identifier of the in-capsule descriptor NVMe/TCP uses: Data Block,
    /// Offset (TCP Transport 1.0 §3.3).
    pub const ID_IN_CAPSULE: u8 = 0x01;
    /// Identifier of the descriptor for data moved by H2CData / C2HData:
    /// Transport SGL Data Block, subtype Ah (TCP Transport 1.0 §3.3).
    pub const ID_TRANSPORT: u8 = 0x5A;

    /// Decodes 16 bytes.
    pub fn parse(b: &[u8; 16]) -> Sgl {
        Sgl {
            addr: le64(b, 0),
            len: le32(b, 8),
            rsvd: array(b, 12),
            id: u8_at(b, 15),
        }
    }

    /// Encodes 16 bytes.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        put_le64(&mut b, 0, self.addr);
        put_le32(&mut b, 8, self.len);
        put(&mut b, 12, &self.rsvd);
        put(&mut b, 15, &[self.id]);
        b
    }

    /// Descriptor type (bits 7:4 of the identifier).
    pub const fn sgl_type(&self) -> u8 {
        self.id >> 4
    }

    /// Descriptor subtype (bits 3:0 of the identifier).
    pub const fn subtype(&self) -> u8 {
        self.id & 0xF
    }

    /// An in-capsule descriptor of `len` bytes at offset 0.
    pub const fn in_capsule(len: u32) -> Sgl {
        Sgl {
            addr: 0,
            len,
            rsvd: [0; 3],
            id: Sgl::ID_IN_CAPSULE,
        }
    }

    /// A transport data block descriptor of `len` bytes.
    pub const fn transport(len: u32) -> Sgl {
        Sgl {
            addr: 0,
            len,
            rsvd: [0; 3],
            id: Sgl::ID_TRANSPORT,
        }
    }
}

/// Where a command's data is, as classified by [`Sqe::data_pointer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataPointer {
    /// No data (SGL length 0).
    None,
    /// In-capsule data of `len` bytes at `offset` into the capsule data.
    InCapsule {
        /// Offset into the in-capsule data.
        offset: u64,
        /// Length in bytes.
        len: u32,
    },
    /// Data moved with R2T/H2CData (writes) or C2HData (reads).
    Transport {
        /// Length in bytes.
        len: u32,
    },
}

impl DataPointer {
    /// Transfer length in bytes.
    pub const fn len(&self) -> u32 {
        match *self {
            DataPointer::None => 0,
            DataPointer::InCapsule { len, .. } | DataPointer::Transport { len } => len,
        }
    }

    /// True if no data is described.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed Submission Queue Entry (Base 2.0 Figure 88).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sqe {
    /// CDW0 bits 7:0 Opcode.
    pub opcode: u8,
    /// CDW0 bits 9:8 Fused Operation.
    pub fuse: u8,
    /// CDW0 bits 15:14 PRP or SGL for Data Transfer.
    pub psdt: u8,
    /// CDW0 bits 13:10 (reserved), kept for round-trip.
    pub flags_rsvd: u8,
    /// CDW0 bits 31:16 Command Identifier.
    pub cid: u16,
    /// CDW1 Namespace Identifier. For Fabrics commands, byte 4 (the low
    /// byte) is FCTYPE.
    pub nsid: u32,
    /// CDW2.
    pub cdw2: u32,
    /// CDW3.
    pub cdw3: u32,
    /// CDW4-5 Metadata Pointer.
    pub mptr: u64,
    /// CDW6-9 Data Pointer, an SGL descriptor on fabrics.
    pub dptr: Sgl,
    /// CDW10.
    pub cdw10: u32,
    /// CDW11.
    pub cdw11: u32,
    /// CDW12.
    pub cdw12: u32,
    /// CDW13.
    pub cdw13: u32,
    /// CDW14.
    pub cdw14: u32,
    /// CDW15.
    pub cdw15: u32,
}

impl Sqe {
    /// Decodes 64 bytes. Total: every bit pattern is accepted; validation is
    /// the controller's job.
    pub fn parse(b: &[u8; SQE_LEN]) -> Sqe {
        let flags = u8_at(b, 1);
        Sqe {
            opcode: u8_at(b, 0),
            fuse: flags & 0x3,
            flags_rsvd: (flags >> 2) & 0xF,
            psdt: flags >> 6,
            cid: le16(b, 2),
            nsid: le32(b, 4),
            cdw2: le32(b, 8),
            cdw3: le32(b, 12),
            mptr: le64(b, 16),
            dptr: Sgl::parse(&array(b, 24)),
            cdw10: le32(b, 40),
            cdw11: le32(b, 44),
            cdw12: le32(b, 48),
            cdw13: le32(b, 52),
            cdw14: le32(b, 56),
            cdw15: le32(b, 60),
        }
    }

    /// Encodes 64 bytes.
    pub fn encode(&self) -> [u8; SQE_LEN] {
        let mut b = [0u8; SQE_LEN];
        let flags = (self.fuse & 3) | ((self.flags_rsvd & 0xF) << 2) | ((self.psdt & 3) << 6);
        put(&mut b, 0, &[self.opcode, flags]);
        put_le16(&mut b, 2, self.cid);
        put_le32(&mut b, 4, self.nsid);
        put_le32(&mut b, 8, self.cdw2);
        put_le32(&mut b, 12, self.cdw3);
        put_le64(&mut b, 16, self.mptr);
        put(&mut b, 24, &self.dptr.encode());
        for (i, dw) in [
            self.cdw10, self.cdw11, self.cdw12, self.cdw13, self.cdw14, self.cdw15,
        ]
        .into_iter()
        .enumerate()
        {
            put_le32(&mut b, 40 + 4 * i, dw);
        }
        b
    }

    /// A command with the given opcode and CID, PSDT 01b (SGL, as fabrics
    /// require) and a null transport SGL.
    pub fn new(opcode: u8, cid: u16) -> Sqe {
        Sqe {
            opcode,
            cid,
            psdt: 1,
            dptr: Sgl::transport(0),
            ..Sqe::default()
        }
    }

    /// True for a Fabrics command (opcode 7Fh).
    pub const fn is_fabrics(&self) -> bool {
        self.opcode == FABRICS_OPCODE
    }

    /// FCTYPE (byte 4) of a Fabrics command.
    pub const fn fctype(&self) -> u8 {
        self.nsid as u8
    }

    /// Direction of the data transfer (from the opcode, or from FCTYPE for
    /// Fabrics commands).
    pub const fn direction(&self) -> DataDirection {
        if self.is_fabrics() {
            DataDirection::from_code(self.fctype())
        } else {
            DataDirection::from_code(self.opcode)
        }
    }

    /// The CDW0 checks every fabrics controller makes: no fused operation
    /// (not supported) and PSDT 01b (Fabrics 1.1 §2.1: SGLs, MPTR a single
    /// contiguous buffer). Violations give Invalid Field in Command.
    pub fn check_flags(&self) -> Result<(), Status> {
        if self.fuse != 0 || self.psdt != 1 {
            return Err(Status::INVALID_FIELD.dnr());
        }
        Ok(())
    }

    /// Classifies the data pointer (TCP Transport 1.0 §3.3): a zero-length
    /// SGL describes no data; a Data Block descriptor with the Offset subtype
    /// describes in-capsule data (only valid for host-to-controller
    /// commands, at offset 0, up to `in_capsule_max` bytes); a Transport SGL
    /// Data Block with subtype Ah describes data moved by H2CData / C2HData.
    pub fn data_pointer(&self, in_capsule_max: u32) -> Result<DataPointer, Status> {
        let sgl = self.dptr;
        if sgl.len == 0 {
            return Ok(DataPointer::None);
        }
        match sgl.id {
            Sgl::ID_IN_CAPSULE => {
                if !matches!(
                    self.direction(),
                    DataDirection::HostToController | DataDirection::Bidirectional
                ) {
                    return Err(Status::INVALID_FIELD.dnr());
                }
                if sgl.addr != 0 || sgl.len > in_capsule_max {
                    return Err(Status::SGL_INVALID_OFFSET.dnr());
                }
                Ok(DataPointer::InCapsule {
                    offset: sgl.addr,
                    len: sgl.len,
                })
            }
            Sgl::ID_TRANSPORT => Ok(DataPointer::Transport { len: sgl.len }),
            _ => Err(Status::SGL_INVALID_TYPE.dnr()),
        }
    }
}
