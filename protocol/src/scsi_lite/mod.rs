//! A compact SCSI block-device model (SPC-4 / SBC-3): the commands Linux
//! and libiscsi's basic tests use. Sans-IO: [`LogicalUnit::plan`] turns a
//! CDB into a [`Plan`] — data to return, a status, or the I/O the caller
//! must perform.
//!
//! This is the core set; persistent reservations, EXTENDED COPY, SANITIZE
//! and REPORT SUPPORTED OPERATION CODES are answered INVALID COMMAND
//! OPERATION CODE for now.

mod inquiry;
mod mode;
pub mod sense;

use std::collections::{HashMap, VecDeque};

pub use sense::{FieldPointer, Sense};

/// SCSI status: GOOD.
pub const GOOD: u8 = 0x00;
/// SCSI status: CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;
/// SCSI status: RESERVATION CONFLICT.
pub const RESERVATION_CONFLICT: u8 = 0x18;

/// Largest COMPARE AND WRITE, in blocks (advertised in VPD 0xB0).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u32 = 128;
/// Largest UNMAP descriptor count (VPD 0xB0).
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// Identity and geometry of one logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunInfo {
    /// Capacity in logical blocks.
    pub blocks: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Writes refused (DATA PROTECT).
    pub read_only: bool,
    /// Discard really deallocates and reads back zeroes (thin provisioning).
    pub thin: bool,
    /// LUN number.
    pub lun: u16,
    /// Unit serial number (VPD 0x80).
    pub serial: String,
    /// NAA designator (VPD 0x83), stable across restarts.
    pub naa: [u8; 16],
    /// iSCSI target name (VPD 0x83 SCSI name string).
    pub target_name: String,
    /// Largest transfer in blocks (VPD 0xB0).
    pub max_transfer_blocks: u32,
}

impl LunInfo {
    /// A LUN description with default transfer limits (8 MiB).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        blocks: u64,
        block_size: u32,
        read_only: bool,
        thin: bool,
        lun: u16,
        serial: String,
        naa: [u8; 16],
        target_name: String,
    ) -> Self {
        let max_transfer_blocks = (8u32 << 20) / block_size.max(1);
        Self {
            blocks,
            block_size,
            read_only,
            thin,
            lun,
            serial,
            naa,
            target_name,
            max_transfer_blocks,
        }
    }
}

/// What the caller must do for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Return `data` (the caller truncates to the EDTL) with GOOD.
    DataIn(Vec<u8>),
    /// GOOD without data.
    Good,
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// A status without sense (e.g. RESERVATION CONFLICT).
    Status(u8),
    /// Read `blocks` blocks at `lba`.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Write the data-out (`blocks` blocks) at `lba`.
    Write {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Verify `blocks` at `lba`; with `byte_check`, compare with data-out.
    Verify {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// BYTCHK=1: compare with data-out.
        byte_check: bool,
    },
    /// Write, then verify (durable write).
    WriteAndVerify {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// Replicate one block (data-out, unless `ndob`) over a range.
    WriteSame {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u64,
        /// Deallocate when the block is zeroes.
        unmap: bool,
        /// No data-out block: zeroes.
        ndob: bool,
    },
    /// Compare the first half of data-out with the medium, then write the
    /// second half — atomically.
    CompareAndWrite {
        /// First block.
        lba: u64,
        /// Number of blocks (data-out is twice this).
        blocks: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Flush the volatile cache.
    SynchronizeCache {
        /// First block (0 = all).
        lba: u64,
        /// Number of blocks (0 = to the end).
        blocks: u32,
    },
    /// Deallocate these `(lba, blocks)` ranges.
    Unmap(Vec<(u64, u32)>),
    /// Collect `len` bytes of parameter data, then call
    /// [`LogicalUnit::with_parameter_data`] with `then`.
    NeedParameterData {
        /// Parameter list length.
        len: u32,
        /// What the data is for.
        then: ParamKind,
    },
    /// Report provisioning status from `lba` (see [`encode_lba_status`]).
    GetLbaStatus {
        /// Starting LBA.
        lba: u64,
        /// Allocation length.
        alloc_len: u32,
    },
}

/// Commands whose parameter data arrives as data-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// UNMAP parameter list.
    Unmap,
    /// MODE SELECT(6) (`ten` = false) or (10).
    ModeSelect {
        /// MODE SELECT(10).
        ten: bool,
    },
}

/// One logical unit's SCSI state.
#[derive(Debug)]
pub struct LogicalUnit {
    info: LunInfo,
    /// Pending unit attentions per I_T nexus.
    unit_attention: HashMap<u64, VecDeque<Sense>>,
    /// Write cache enabled (caching mode page).
    wce: bool,
    /// Descriptor-format sense (control mode page).
    d_sense: bool,
    /// SPC-2 RESERVE holder.
    reserved_by: Option<u64>,
}

impl LogicalUnit {
    /// A logical unit with power-on state.
    pub fn new(info: LunInfo) -> Self {
        Self {
            info,
            unit_attention: HashMap::new(),
            wce: true,
            d_sense: false,
            reserved_by: None,
        }
    }

    /// The unit's description.
    pub fn info(&self) -> &LunInfo {
        &self.info
    }

    /// Whether sense data should use descriptor format.
    pub fn descriptor_sense(&self) -> bool {
        self.d_sense
    }

    /// A new I_T nexus: it starts with POWER ON / RESET unit attention.
    pub fn nexus_added(&mut self, nexus: u64) {
        self.unit_attention
            .entry(nexus)
            .or_default()
            .push_back(Sense::power_on_reset());
    }

    /// An I_T nexus went away: its unit attentions and SPC-2 reservation go.
    pub fn nexus_lost(&mut self, nexus: u64) {
        self.unit_attention.remove(&nexus);
        if self.reserved_by == Some(nexus) {
            self.reserved_by = None;
        }
    }

    /// LUN RESET / TARGET WARM RESET from `nexus`: reservation released,
    /// other nexuses get a reset unit attention.
    pub fn reset(&mut self, nexus: u64) {
        self.reserved_by = None;
        for (n, q) in self.unit_attention.iter_mut() {
            if *n != nexus {
                q.push_back(Sense::power_on_reset());
            }
        }
    }

    fn lba_range(&self, lba: u64, blocks: u64) -> Result<(), Sense> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.info.blocks => Ok(()),
            _ => Err(Sense::lba_out_of_range()),
        }
    }

    /// Plans one command from `nexus` (its initiator port name is
    /// `initiator_port`); `edtl` is the expected data transfer length.
    pub fn plan(&mut self, nexus: u64, _initiator_port: &str, cdb: &[u8], edtl: u32) -> Plan {
        let op = byte(cdb, 0);
        // Unit attentions first, except for the commands that report them
        // or must always work (SPC-4 §5.14).
        if !matches!(op, 0x12 | 0xA0 | 0x03) {
            if let Some(ua) = self
                .unit_attention
                .get_mut(&nexus)
                .and_then(|q| q.pop_front())
            {
                return Plan::Check(ua);
            }
        }
        if let Some(holder) = self.reserved_by {
            if holder != nexus && !matches!(op, 0x12 | 0xA0 | 0x03 | 0x25 | 0x9E | 0x17 | 0x57) {
                return Plan::Status(RESERVATION_CONFLICT);
            }
        }
        match self.plan_inner(nexus, cdb, edtl) {
            Ok(p) => p,
            Err(sense) => Plan::Check(sense),
        }
    }

    fn plan_inner(&mut self, nexus: u64, cdb: &[u8], edtl: u32) -> Result<Plan, Sense> {
        let op = byte(cdb, 0);
        let ro = self.info.read_only;
        match op {
            0x00 => Ok(Plan::Good), // TEST UNIT READY
            0x03 => {
                // REQUEST SENSE: a pending unit attention, else NO SENSE.
                let pending = self
                    .unit_attention
                    .get_mut(&nexus)
                    .and_then(|q| q.pop_front());
                let s = pending.unwrap_or(Sense::new(sense::key::NO_SENSE, 0, 0));
                let desc = byte(cdb, 1) & 1 != 0;
                Ok(Plan::DataIn(if desc {
                    s.descriptor_format()
                } else {
                    s.fixed_format().to_vec()
                }))
            }
            0x12 => inquiry::inquiry(&self.info, cdb),
            0x25 => Ok(Plan::DataIn(self.read_capacity10())),
            0x9E if byte(cdb, 1) & 0x1f == 0x10 => Ok(Plan::DataIn(self.read_capacity16(cdb))),
            0x9E if byte(cdb, 1) & 0x1f == 0x12 => {
                let lba = be64(cdb, 2);
                if lba >= self.info.blocks {
                    return Err(Sense::lba_out_of_range());
                }
                Ok(Plan::GetLbaStatus {
                    lba,
                    alloc_len: be32(cdb, 10),
                })
            }
            0xA0 => Ok(report_luns_plan(&[self.info.lun], cdb)),
            0x1A | 0x5A => mode::mode_sense(self, cdb),
            0x15 | 0x55 => {
                let ten = op == 0x55;
                let len = if ten {
                    u32::from(be16(cdb, 7))
                } else {
                    u32::from(byte(cdb, 4))
                };
                if byte(cdb, 1) & 0x10 == 0 && len > 0 {
                    return Err(Sense::invalid_field_in_cdb(1, Some(4)));
                }
                if len == 0 {
                    return Ok(Plan::Good);
                }
                Ok(Plan::NeedParameterData {
                    len,
                    then: ParamKind::ModeSelect { ten },
                })
            }
            0x1B | 0x1E => Ok(Plan::Good), // START STOP UNIT, PREVENT ALLOW
            0x16 | 0x56 => {
                // RESERVE(6)/(10), SPC-2.
                match self.reserved_by {
                    Some(h) if h != nexus => Ok(Plan::Status(RESERVATION_CONFLICT)),
                    _ => {
                        self.reserved_by = Some(nexus);
                        Ok(Plan::Good)
                    }
                }
            }
            0x17 | 0x57 => {
                if self.reserved_by == Some(nexus) {
                    self.reserved_by = None;
                }
                Ok(Plan::Good)
            }
            0x08 | 0x0A => {
                // READ(6)/WRITE(6): 21-bit LBA, length 0 means 256.
                let lba = u64::from(be32(cdb, 0) & 0x001f_ffff);
                let blocks = match byte(cdb, 4) {
                    0 => 256,
                    n => u32::from(n),
                };
                self.rw(op == 0x0A, lba, blocks, false, ro)
            }
            0x28 | 0x2A | 0xA8 | 0xAA | 0x88 | 0x8A => {
                let (lba, blocks) = match op {
                    0x28 | 0x2A => (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7))),
                    0xA8 | 0xAA => (u64::from(be32(cdb, 2)), be32(cdb, 6)),
                    _ => (be64(cdb, 2), be32(cdb, 10)),
                };
                let write = matches!(op, 0x2A | 0xAA | 0x8A);
                if byte(cdb, 1) & 0xE0 != 0 {
                    // RDPROTECT/WRPROTECT: no protection information.
                    return Err(Sense::invalid_field_in_cdb(1, Some(7)));
                }
                let fua = byte(cdb, 1) & 0x08 != 0;
                self.rw(write, lba, blocks, fua, ro)
            }
            0x2F | 0xAF | 0x8F => {
                let (lba, blocks) = match op {
                    0x2F => (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7))),
                    0xAF => (u64::from(be32(cdb, 2)), be32(cdb, 6)),
                    _ => (be64(cdb, 2), be32(cdb, 10)),
                };
                if byte(cdb, 1) & 0xE0 != 0 {
                    return Err(Sense::invalid_field_in_cdb(1, Some(7)));
                }
                self.lba_range(lba, u64::from(blocks))?;
                let bytchk = (byte(cdb, 1) >> 1) & 0x03;
                match bytchk {
                    0 => Ok(Plan::Verify {
                        lba,
                        blocks,
                        byte_check: false,
                    }),
                    1 => Ok(Plan::Verify {
                        lba,
                        blocks,
                        byte_check: true,
                    }),
                    _ => Err(Sense::invalid_field_in_cdb(1, Some(2))),
                }
            }
            0x2E | 0xAE | 0x8E => {
                // WRITE AND VERIFY 10/12/16.
                let (lba, blocks) = match op {
                    0x2E => (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7))),
                    0xAE => (u64::from(be32(cdb, 2)), be32(cdb, 6)),
                    _ => (be64(cdb, 2), be32(cdb, 10)),
                };
                if byte(cdb, 1) & 0xE0 != 0 {
                    // WRPROTECT: no protection information.
                    return Err(Sense::invalid_field_in_cdb(1, Some(7)));
                }
                if ro {
                    return Err(Sense::write_protected());
                }
                self.lba_range(lba, u64::from(blocks))?;
                if blocks == 0 {
                    return Ok(Plan::Good);
                }
                Ok(Plan::WriteAndVerify { lba, blocks })
            }
            0x35 | 0x91 => {
                let (lba, blocks) = if op == 0x35 {
                    (u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7)))
                } else {
                    (be64(cdb, 2), be32(cdb, 10))
                };
                self.lba_range(lba, u64::from(blocks))?;
                Ok(Plan::SynchronizeCache { lba, blocks })
            }
            0x41 | 0x93 => self.write_same(op == 0x93, cdb, ro),
            0x42 => {
                if ro {
                    return Err(Sense::write_protected());
                }
                if !self.info.thin {
                    return Err(Sense::invalid_command_operation_code());
                }
                let len = u32::from(be16(cdb, 7));
                if len == 0 {
                    return Ok(Plan::Good);
                }
                Ok(Plan::NeedParameterData {
                    len,
                    then: ParamKind::Unmap,
                })
            }
            0x89 => {
                // COMPARE AND WRITE.
                let lba = be64(cdb, 2);
                let blocks = u32::from(byte(cdb, 13));
                if byte(cdb, 1) & 0xE0 != 0 {
                    return Err(Sense::invalid_field_in_cdb(1, Some(7)));
                }
                if ro {
                    return Err(Sense::write_protected());
                }
                if blocks > MAX_COMPARE_AND_WRITE_BLOCKS {
                    return Err(Sense::invalid_field_in_cdb(13, None));
                }
                self.lba_range(lba, u64::from(blocks))?;
                if blocks == 0 {
                    return Ok(Plan::Good);
                }
                let need = 2 * u64::from(blocks) * u64::from(self.info.block_size);
                if u64::from(edtl) != need {
                    return Err(Sense::invalid_field_in_cdb(13, None));
                }
                Ok(Plan::CompareAndWrite {
                    lba,
                    blocks,
                    fua: byte(cdb, 1) & 0x08 != 0,
                })
            }
            _ => Err(Sense::invalid_command_operation_code()),
        }
    }

    fn rw(&self, write: bool, lba: u64, blocks: u32, fua: bool, ro: bool) -> Result<Plan, Sense> {
        if write && ro {
            return Err(Sense::write_protected());
        }
        self.lba_range(lba, u64::from(blocks))?;
        if blocks > self.info.max_transfer_blocks {
            return Err(Sense::invalid_field_in_cdb(7, None));
        }
        if blocks == 0 {
            return Ok(Plan::Good);
        }
        Ok(if write {
            Plan::Write { lba, blocks, fua }
        } else {
            Plan::Read { lba, blocks, fua }
        })
    }

    fn write_same(&self, sixteen: bool, cdb: &[u8], ro: bool) -> Result<Plan, Sense> {
        let flags = byte(cdb, 1);
        let (lba, blocks) = if sixteen {
            (be64(cdb, 2), u64::from(be32(cdb, 10)))
        } else {
            (u64::from(be32(cdb, 2)), u64::from(be16(cdb, 7)))
        };
        if flags & 0xE0 != 0 {
            // WRPROTECT: no protection information.
            return Err(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        if ro {
            return Err(Sense::write_protected());
        }
        if flags & 0x10 != 0 {
            // ANCHOR is not supported.
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        let unmap = flags & 0x08 != 0;
        let ndob = sixteen && flags & 0x01 != 0;
        if unmap && !self.info.thin {
            return Err(Sense::invalid_field_in_cdb(1, Some(3)));
        }
        if blocks == 0 {
            // WSNZ=1 in the Block Limits page: zero blocks is invalid.
            return Err(Sense::invalid_field_in_cdb(
                if sixteen { 10 } else { 7 },
                None,
            ));
        }
        self.lba_range(lba, blocks)?;
        if blocks > u64::from(self.info.max_transfer_blocks) {
            // Beyond MAXIMUM WRITE SAME LENGTH (Block Limits VPD).
            return Err(Sense::invalid_field_in_cdb(
                if sixteen { 10 } else { 7 },
                None,
            ));
        }
        Ok(Plan::WriteSame {
            lba,
            blocks,
            unmap,
            ndob,
        })
    }

    fn read_capacity10(&self) -> Vec<u8> {
        let last = self.info.blocks.saturating_sub(1);
        let last = u32::try_from(last).unwrap_or(u32::MAX);
        let mut d = Vec::with_capacity(8);
        d.extend_from_slice(&last.to_be_bytes());
        d.extend_from_slice(&self.info.block_size.to_be_bytes());
        d
    }

    fn read_capacity16(&self, cdb: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        put(&mut d, 0, &self.info.blocks.saturating_sub(1).to_be_bytes());
        put(&mut d, 8, &self.info.block_size.to_be_bytes());
        if self.info.thin {
            // LBPME (thin provisioning) and LBPRZ (unmapped reads zeroes).
            put(&mut d, 14, &[0xC0]);
        }
        let alloc = be32(cdb, 10) as usize;
        d.truncate(alloc);
        d
    }

    /// Continues a [`Plan::NeedParameterData`] with the received data.
    pub fn with_parameter_data(
        &mut self,
        nexus: u64,
        _initiator_port: &str,
        kind: ParamKind,
        data: &[u8],
    ) -> Plan {
        let r = match kind {
            ParamKind::Unmap => self.unmap(data),
            ParamKind::ModeSelect { ten } => mode::mode_select(self, nexus, ten, data),
        };
        r.unwrap_or_else(Plan::Check)
    }

    fn unmap(&self, data: &[u8]) -> Result<Plan, Sense> {
        if data.len() < 8 {
            return Err(Sense::parameter_list_length_error());
        }
        let data_len = usize::from(be16(data, 0));
        let desc_len = usize::from(be16(data, 2));
        if data_len + 2 > data.len() || desc_len + 8 > data.len() || desc_len % 16 != 0 {
            return Err(Sense::parameter_list_length_error());
        }
        let count = desc_len / 16;
        if count > MAX_UNMAP_DESCRIPTORS as usize {
            return Err(Sense::invalid_field_in_parameter_list(2));
        }
        let mut ranges = Vec::with_capacity(count);
        for i in 0..count {
            let at = 8 + i * 16;
            let lba = be64(data, at);
            let blocks = be32(data, at + 8);
            self.lba_range(lba, u64::from(blocks))?;
            ranges.push((lba, blocks));
        }
        Ok(Plan::Unmap(ranges))
    }
}

/// INQUIRY / REPORT LUNS / REQUEST SENSE for a LUN that does not exist;
/// everything else gets LOGICAL UNIT NOT SUPPORTED.
pub fn plan_missing_lun(cdb: &[u8], luns: &[u16]) -> Plan {
    match byte(cdb, 0) {
        0xA0 => report_luns_plan(luns, cdb),
        0x12 => inquiry::inquiry_missing(cdb),
        0x03 => Plan::DataIn(Sense::logical_unit_not_supported().fixed_format().to_vec()),
        _ => Plan::Check(Sense::logical_unit_not_supported()),
    }
}

/// REPORT LUNS data for `luns` (single-level, peripheral or flat addressing).
fn report_luns_plan(luns: &[u16], cdb: &[u8]) -> Plan {
    let select = byte(cdb, 2);
    if select > 2 {
        return Plan::Check(Sense::invalid_field_in_cdb(2, None));
    }
    let alloc = be32(cdb, 6);
    if alloc < 16 {
        return Plan::Check(Sense::invalid_field_in_cdb(6, None));
    }
    let mut d = vec![0u8; 8];
    put(&mut d, 0, &((luns.len() * 8) as u32).to_be_bytes());
    for &lun in luns {
        let mut entry = [0u8; 8];
        if lun < 256 {
            entry[1] = lun as u8;
        } else {
            entry[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
            entry[1] = lun as u8;
        }
        d.extend_from_slice(&entry);
    }
    Plan::DataIn(d)
}

/// MISCOMPARE sense for a compare that failed at byte `offset`.
pub fn miscompare_sense(offset: u64) -> Sense {
    Sense::miscompare(offset)
}

/// GET LBA STATUS parameter data: `(lba, blocks, provisioning status)`
/// descriptors (status 0 = mapped, 1 = deallocated), truncated to
/// `alloc_len`.
pub fn encode_lba_status(_start: u64, descriptors: &[(u64, u32, u8)], alloc_len: u32) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    put(
        &mut d,
        0,
        &((descriptors.len() * 16 + 4) as u32).to_be_bytes(),
    );
    for &(lba, blocks, status) in descriptors {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&lba.to_be_bytes());
        e[8..12].copy_from_slice(&blocks.to_be_bytes());
        e[12] = status & 0x0f;
        d.extend_from_slice(&e);
    }
    d.truncate(alloc_len as usize);
    d
}

/// Byte `i` of `b`, or 0 past the end (CDBs are zero-padded to 16).
pub(crate) fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

pub(crate) fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([byte(b, i), byte(b, i + 1)])
}

pub(crate) fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([byte(b, i), byte(b, i + 1), byte(b, i + 2), byte(b, i + 3)])
}

pub(crate) fn be64(b: &[u8], i: usize) -> u64 {
    (u64::from(be32(b, i)) << 32) | u64::from(be32(b, i + 4))
}

/// Writes `src` into `dst` at `at` (clamped to `dst`).
pub(crate) fn put(dst: &mut [u8], at: usize, src: &[u8]) {
    if let Some(d) = dst.get_mut(at..) {
        let n = d.len().min(src.len());
        if let (Some(d), Some(s)) = (d.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
    }
}
