//! I/O command planning for the NVM command set (NVM Command Set 1.0 §3):
//! Read, Write, Flush, Write Zeroes, Dataset Management, Compare, Verify.
//!
//! [`Controller::plan_io`] validates a command against the namespace and
//! the controller limits and says which backend operation to run, in
//! bytes; it never touches data.

use super::bytes::{le32, le64};
use super::controller::{Controller, ControllerConfig, NamespaceInfo};
use super::fabrics::FabricsCommand;
use super::sqe::io_opcode;
use super::{DataPointer, Sqe, Status, NSID_ALL};

/// What to do with an I/O command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPlan {
    /// Read `len` bytes at `offset` and return them with C2HData.
    Read {
        /// Namespace.
        nsid: u32,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u32,
    },
    /// Write the command's `len` data bytes at `offset`.
    Write {
        /// Namespace.
        nsid: u32,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u32,
        /// Force Unit Access (CDW12 bit 30): durable before completion.
        fua: bool,
        /// The data is in the capsule (else fetch it with R2T).
        in_capsule: bool,
    },
    /// Flush the volatile write cache of `nsid` (NSID_ALL: every namespace).
    Flush {
        /// Namespace or [`NSID_ALL`].
        nsid: u32,
    },
    /// Write zeroes over `len` bytes at `offset`.
    WriteZeroes {
        /// Namespace.
        nsid: u32,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u64,
        /// DEAC (CDW12 bit 25): the backend may deallocate instead.
        deallocate: bool,
        /// FUA (CDW12 bit 30).
        fua: bool,
    },
    /// Dataset Management with Deallocate: fetch `ranges` × 16 bytes, then
    /// decode them with [`parse_dsm_ranges`] and deallocate each range.
    Dsm {
        /// Namespace.
        nsid: u32,
        /// Number of ranges (NR + 1).
        ranges: u16,
        /// Bytes of data the host sends: at least `ranges` × 16; Linux
        /// sends its whole 4 KiB range page (the extra bytes are ignored).
        len: u32,
        /// The range list is in the capsule (else fetch it with R2T).
        in_capsule: bool,
    },
    /// Read `len` bytes at `offset` and compare them with the command's
    /// data; a mismatch completes with [`Status::COMPARE_FAILURE`].
    Compare {
        /// Namespace.
        nsid: u32,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u32,
        /// The data is in the capsule.
        in_capsule: bool,
    },
    /// Check that `len` bytes at `offset` are readable; no data moves.
    Verify {
        /// Namespace.
        nsid: u32,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u64,
    },
    /// Complete successfully without touching the backend (e.g. DSM
    /// without Deallocate, or deallocation the namespace cannot do).
    Nop,
    /// Fabrics Disconnect: complete successfully, then close this queue.
    Disconnect,
    /// Complete with this status.
    Error(Status),
}

/// One Dataset Management range in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsmRange {
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
}

/// Decodes a Dataset Management range list (NVM Command Set 1.0 Figure
/// 40: 16 bytes per range, context attributes at 0, length in logical
/// blocks at 4, starting LBA at 8), checking every range against `ns`.
/// Zero-length ranges are dropped.
pub fn parse_dsm_ranges(ns: &NamespaceInfo, data: &[u8]) -> Result<Vec<DsmRange>, Status> {
    if data.len() % 16 != 0 || data.is_empty() || data.len() > 256 * 16 {
        return Err(Status::SGL_INVALID_DATA.dnr());
    }
    let mut out = Vec::with_capacity(data.len() / 16);
    for r in data.chunks_exact(16) {
        let nlb = u64::from(le32(r, 4));
        let slba = le64(r, 8);
        check_range(ns, slba, nlb)?;
        if nlb == 0 {
            continue;
        }
        let bs = u64::from(ns.block_size);
        out.push(DsmRange {
            offset: slba.saturating_mul(bs),
            len: nlb.saturating_mul(bs),
        });
    }
    Ok(out)
}

/// Blocks to bytes; overflow (only possible with absurd namespace sizes)
/// reads as out of range.
fn byte_offset(blocks: u64, bs: u64) -> Result<u64, Status> {
    blocks.checked_mul(bs).ok_or(Status::LBA_OUT_OF_RANGE.dnr())
}

/// SLBA + NLB (blocks, 1-based) must lie within the namespace.
fn check_range(ns: &NamespaceInfo, slba: u64, nlb: u64) -> Result<(), Status> {
    match slba.checked_add(nlb) {
        Some(end) if end <= ns.blocks => Ok(()),
        _ => Err(Status::LBA_OUT_OF_RANGE.dnr()),
    }
}

impl Controller {
    /// Plans an I/O-queue command (NVM Command Set 1.0 §3.2, §3.3).
    ///
    /// Checks, in order: CDW0 flags (FUSE, PSDT), controller ready, the
    /// data pointer, the namespace, the opcode, write protection, the LBA
    /// range, MDTS and the SGL length.
    pub fn plan_io(&self, sqe: &Sqe) -> IoPlan {
        plan_io_in(self.is_ready(), self.config(), sqe)
    }

    /// What I/O planning reads of this controller, as a snapshot.
    pub fn io_view(&self) -> IoView {
        IoView {
            ready: self.is_ready(),
            volatile_wc: self.write_cache_enabled(),
            cfg: self.config().clone(),
        }
    }

    /// [`parse_dsm_ranges`] against namespace `nsid`.
    pub fn dsm_ranges(&self, nsid: u32, data: &[u8]) -> Result<Vec<DsmRange>, Status> {
        let ns = self.namespace(nsid).ok_or(Status::INVALID_NS.dnr())?;
        parse_dsm_ranges(ns, data)
    }
}

/// What planning an I/O command reads of its controller — readiness, the
/// namespaces, limits, the volatile write cache — as a snapshot: I/O queues
/// plan from it without taking the controller's lock, and the daemon takes
/// a new one after every admin command or namespace change (which are the
/// only things that alter it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoView {
    ready: bool,
    volatile_wc: bool,
    cfg: ControllerConfig,
}

impl IoView {
    /// [`Controller::plan_io`] on the snapshot.
    pub fn plan_io(&self, sqe: &Sqe) -> IoPlan {
        plan_io_in(self.ready, &self.cfg, sqe)
    }

    /// The volatile write cache is enabled (else every write is FUA).
    pub fn write_cache_enabled(&self) -> bool {
        self.volatile_wc
    }

    /// [`parse_dsm_ranges`] against namespace `nsid`.
    pub fn dsm_ranges(&self, nsid: u32, data: &[u8]) -> Result<Vec<DsmRange>, Status> {
        let ns = self
            .cfg
            .namespaces
            .iter()
            .find(|n| n.nsid == nsid)
            .ok_or(Status::INVALID_NS.dnr())?;
        parse_dsm_ranges(ns, data)
    }
}

fn plan_io_in(ready: bool, cfg: &ControllerConfig, sqe: &Sqe) -> IoPlan {
    match try_plan_io(ready, cfg, sqe) {
        Ok(p) => p,
        Err(s) => IoPlan::Error(s),
    }
}

fn try_plan_io(ready: bool, cfg: &ControllerConfig, sqe: &Sqe) -> Result<IoPlan, Status> {
    sqe.check_flags()?;
    if sqe.is_fabrics() {
        return match FabricsCommand::parse(sqe) {
            FabricsCommand::Disconnect { recfmt: 0 } => Ok(IoPlan::Disconnect),
            FabricsCommand::Disconnect { .. } => Err(Status::CONNECT_FORMAT.dnr()),
            FabricsCommand::Connect(_) => Err(Status::CMD_SEQ_ERROR.dnr()),
            _ => Err(Status::INVALID_OPCODE.dnr()),
        };
    }
    if !ready || cfg.is_discovery {
        return Err(Status::CMD_SEQ_ERROR.dnr());
    }
    let dp = sqe.data_pointer(cfg.in_capsule_data_size)?;
    let in_capsule = matches!(dp, DataPointer::InCapsule { .. });
    if sqe.opcode == io_opcode::FLUSH {
        if !dp.is_empty() {
            return Err(Status::SGL_INVALID_DATA.dnr());
        }
        if sqe.nsid == NSID_ALL {
            return Ok(IoPlan::Flush { nsid: NSID_ALL });
        }
    }
    let ns = cfg
        .namespaces
        .iter()
        .find(|n| n.nsid == sqe.nsid)
        .ok_or(Status::INVALID_NS.dnr())?;
    if let Some(refusal) = cfg.ana.as_ref().and_then(|a| a.io_refusal(ns)) {
        return Err(refusal);
    }
    let nsid = ns.nsid;
    let bs = u64::from(ns.block_size);
    let slba = u64::from(sqe.cdw10) | (u64::from(sqe.cdw11) << 32);
    let nlb = u64::from(sqe.cdw12 & 0xFFFF) + 1;
    let fua = sqe.cdw12 & (1 << 30) != 0;
    let writes = matches!(
        sqe.opcode,
        io_opcode::WRITE | io_opcode::WRITE_ZEROES | io_opcode::DSM
    );
    match sqe.opcode {
        io_opcode::FLUSH
        | io_opcode::WRITE
        | io_opcode::READ
        | io_opcode::COMPARE
        | io_opcode::WRITE_ZEROES
        | io_opcode::DSM
        | io_opcode::VERIFY => {}
        _ => return Err(Status::INVALID_OPCODE.dnr()),
    }
    if writes && ns.read_only {
        return Err(Status::NS_WRITE_PROTECTED);
    }
    match sqe.opcode {
        io_opcode::FLUSH => Ok(IoPlan::Flush { nsid }),
        io_opcode::READ | io_opcode::WRITE | io_opcode::COMPARE => {
            check_range(ns, slba, nlb)?;
            let len = nlb.checked_mul(bs).ok_or(Status::LBA_OUT_OF_RANGE.dnr())?;
            if let Some(max) = cfg.max_transfer() {
                if len > max {
                    return Err(Status::INVALID_FIELD.dnr());
                }
            }
            if u64::from(dp.len()) != len {
                return Err(Status::SGL_INVALID_DATA.dnr());
            }
            let len = dp.len();
            let offset = byte_offset(slba, bs)?;
            Ok(match sqe.opcode {
                io_opcode::READ => IoPlan::Read { nsid, offset, len },
                io_opcode::WRITE => IoPlan::Write {
                    nsid,
                    offset,
                    len,
                    fua,
                    in_capsule,
                },
                _ => IoPlan::Compare {
                    nsid,
                    offset,
                    len,
                    in_capsule,
                },
            })
        }
        io_opcode::WRITE_ZEROES | io_opcode::VERIFY => {
            if !dp.is_empty() {
                return Err(Status::SGL_INVALID_DATA.dnr());
            }
            check_range(ns, slba, nlb)?;
            let offset = byte_offset(slba, bs)?;
            let len = byte_offset(nlb, bs)?;
            Ok(if sqe.opcode == io_opcode::VERIFY {
                IoPlan::Verify { nsid, offset, len }
            } else {
                IoPlan::WriteZeroes {
                    nsid,
                    offset,
                    len,
                    deallocate: sqe.cdw12 & (1 << 25) != 0 && ns.discard,
                    fua,
                }
            })
        }
        _ => {
            // Dataset Management: CDW10 bits 7:0 NR (0's based), CDW11
            // bit 2 AD (deallocate).
            let ranges = (sqe.cdw10 & 0xFF) as u16 + 1;
            // The buffer holds at least NR + 1 ranges; a longer one (the
            // Linux host sends a whole page) is accepted, the rest
            // ignored.
            if dp.len() < u32::from(ranges) * 16 || dp.len() > 256 * 16 {
                return Err(Status::SGL_INVALID_DATA.dnr());
            }
            if sqe.cdw11 & (1 << 2) == 0 || !ns.discard {
                return Ok(IoPlan::Nop);
            }
            Ok(IoPlan::Dsm {
                nsid,
                ranges,
                len: dp.len(),
                in_capsule,
            })
        }
    }
}
