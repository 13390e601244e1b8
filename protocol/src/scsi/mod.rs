//! SCSI block device model: SPC-4 (primary commands) and SBC-3 (block
//! commands), sans-IO.
//!
//! [`LogicalUnit::plan`] turns a CDB into a [`Plan`]: data to return, a
//! status, or the I/O the caller must perform (read, write, compare, unmap,
//! copy...). Commands that carry a parameter list first answer
//! [`Plan::NeedParameterData`]; the caller collects the data-out and calls
//! [`LogicalUnit::with_parameter_data`].
//!
//! Every CDB byte and every parameter byte is untrusted: bad input becomes
//! CHECK CONDITION sense data, never a panic.
//!
//! The caller (the transport frontend) is responsible for: LUN lookup (use
//! [`inquiry_for_missing_lun`] / [`report_luns`] / [`plan_missing_lun`] for
//! LUNs that do not exist), moving data, residuals (the expected data
//! transfer length vs. the size of the data-in), encoding sense data in the
//! format [`LogicalUnit::descriptor_sense`] selects, and performing the I/O
//! a plan asks for (including the atomic compare of COMPARE AND WRITE and
//! the byte compare of VERIFY with BYTCHK=1, reporting mismatches with
//! [`miscompare_sense`]).

pub mod alua;
mod capacity;
pub mod cdb;
pub mod fast;
mod inquiry;
mod lba_status;
mod lun;
mod mode;
mod opcodes;
pub mod pr;
mod reserve;
mod rw;
mod sanitize;
pub mod sense;
mod unit_attention;
mod unmap;
mod vpd;
pub mod xcopy;

pub use alua::{AluaState, PortGroup};
pub use capacity::report_luns;
pub use cdb::Cdb;
pub use fast::{IoPlanner, IoState};
pub use inquiry::{inquiry_for_missing_lun, plan_missing_lun};
pub use lba_status::{encode_lba_status, ProvisioningStatus};
pub use lun::{LogicalUnit, ResetKind};
pub use pr::PrType;
pub use sanitize::SanitizeAction;
pub use sense::{miscompare_sense, FieldPointer, Sense, Status};
pub use xcopy::CopySegment;

/// Largest COMPARE AND WRITE, in blocks (VPD 0xB0 MAXIMUM COMPARE AND WRITE
/// LENGTH; the field is one byte).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u32 = 128;

/// Identity, geometry and limits of one logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunInfo {
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Capacity in logical blocks.
    pub blocks: u64,
    /// Writes refused with DATA PROTECT, WRITE PROTECTED.
    pub read_only: bool,
    /// Discard really deallocates and deallocated blocks read as zeroes:
    /// LBPME=1, LBPU, LBPWS, LBPWS10, ANC_SUP, LBPRZ=1.
    pub thin_provisioning: bool,
    /// LUN number.
    pub lun: u16,
    /// T10 vendor identification (INQUIRY bytes 8..16).
    pub vendor: [u8; 8],
    /// Product identification (INQUIRY bytes 16..32).
    pub product: [u8; 16],
    /// Product revision level (INQUIRY bytes 32..36).
    pub revision: [u8; 4],
    /// Unit serial number (VPD 0x80), printable ASCII.
    pub unit_serial: String,
    /// NAA IEEE Registered Extended designator (type 6), stable across
    /// restarts (VPD 0x83, and EXTENDED COPY target identification).
    pub naa_designator: [u8; 16],
    /// iSCSI target name (VPD 0x83 SCSI name string, target device).
    pub target_name: String,
    /// Relative target port identifier (VPD 0x83).
    pub relative_port: u16,
    /// Target port group of the port commands arrive on (VPD 0x83).
    pub target_port_group: u16,
    /// Every target port group of the unit with its access state
    /// (implicit ALUA: INQUIRY TPGS = 01b, REPORT TARGET PORT GROUPS, and
    /// commands refused on a Standby or Unavailable port). Empty: no ALUA.
    pub target_port_groups: Vec<PortGroup>,
    /// Explicit ALUA (INQUIRY TPGS = 11b): SET TARGET PORT GROUPS may name
    /// the group that owns the unit. `Some(state)`: the state a group that
    /// does not own it reports (what a request may ask of the others).
    /// Only with `target_port_groups`.
    pub explicit_alua: Option<AluaState>,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY(16)).
    /// 0 by default: reporting 4 KiB physical blocks under 512-byte logical
    /// blocks is truthful for file volumes, but libiscsi's
    /// GetLBAStatus.UnmapSingle then expects a descriptor that does not
    /// contain the requested LBA (see docs/CONFORMANCE.md).
    pub physical_block_exponent: u8,
    /// MAXIMUM TRANSFER LENGTH in blocks (VPD 0xB0; 0 = no limit).
    pub max_transfer_blocks: u32,
    /// OPTIMAL TRANSFER LENGTH in blocks (VPD 0xB0).
    pub optimal_transfer_blocks: u32,
    /// MAXIMUM UNMAP LBA COUNT (VPD 0xB0).
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (VPD 0xB0).
    pub max_unmap_descriptors: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks (VPD 0xB0; 0 = no limit).
    pub max_write_same_blocks: u64,
}

impl LunInfo {
    /// A description with zctarget's identity strings and default limits
    /// (8 MiB transfers, write same up to the same length, 64 Ki-block
    /// unmap, 256 descriptors).
    pub fn new(lun: u16, blocks: u64, block_size: u32) -> Self {
        let bs = block_size.max(1);
        let mut product = [b' '; 16];
        for (d, s) in product.iter_mut().zip(b"zctarget volume") {
            *d = *s;
        }
        Self {
            block_size,
            blocks,
            read_only: false,
            thin_provisioning: false,
            lun,
            vendor: *b"ZCTARGET",
            product,
            revision: *b"0001",
            unit_serial: String::new(),
            naa_designator: [0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            target_name: String::new(),
            relative_port: 1,
            target_port_group: 0,
            target_port_groups: Vec::new(),
            explicit_alua: None,
            physical_block_exponent: 0,
            max_transfer_blocks: (8u32 << 20) / bs,
            optimal_transfer_blocks: (1u32 << 20) / bs,
            max_unmap_blocks: 65536,
            max_unmap_descriptors: 256,
            // Kept within the transfer limit: an initiator that checks WRITE
            // SAME by writing the same range first can do so in one command.
            max_write_same_blocks: u64::from((8u32 << 20) / bs),
        }
    }
}

/// What the caller must do for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Return `data` (already truncated to the allocation length) with GOOD.
    DataIn(Vec<u8>),
    /// GOOD, no data.
    Good,
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// A status without sense data (RESERVATION CONFLICT).
    Status(Status),
    /// Read `blocks` blocks at `lba` to data-in.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0).
        blocks: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Write the data-out (`blocks` × block size bytes) at `lba`.
    Write {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0).
        blocks: u32,
        /// Force unit access: durable before GOOD.
        fua: bool,
    },
    /// Verify the medium; with `byte_check`, compare it with the data-out
    /// and answer [`miscompare_sense`] at the first differing byte.
    Verify {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0).
        blocks: u32,
        /// BYTCHK=1: data-out holds `blocks` blocks to compare.
        byte_check: bool,
    },
    /// Write the data-out durably (as with FUA), then GOOD.
    WriteAndVerify {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0).
        blocks: u32,
    },
    /// Replicate one block over a range (SBC-3 §5.42/§5.43).
    WriteSame {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0).
        blocks: u64,
        /// UNMAP=1: the caller may deallocate instead (when the block is
        /// zeroes, or always for a thin volume with LBPRZ).
        unmap: bool,
        /// NDOB=1: no data-out, the block is zeroes.
        ndob: bool,
    },
    /// Atomically compare the first half of the data-out (`blocks` blocks)
    /// with the medium; if equal write the second half, else answer
    /// [`miscompare_sense`] with the offset of the first differing byte.
    CompareAndWrite {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0; data-out is twice this).
        blocks: u32,
        /// Force unit access.
        fua: bool,
    },
    /// ORWRITE: atomically read `blocks` blocks at `lba`, OR the data-out
    /// into them and write the result.
    OrWrite {
        /// First block.
        lba: u64,
        /// Number of blocks (never 0).
        blocks: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Make cached writes durable (`blocks` = 0: to the end).
    SynchronizeCache {
        /// First block.
        lba: u64,
        /// Number of blocks (0: to the end of the medium).
        blocks: u32,
        /// IMMED: GOOD may be returned before the flush completes.
        immed: bool,
    },
    /// PRE-FETCH: optional read-ahead; answer GOOD (or CONDITION MET).
    PreFetch {
        /// First block.
        lba: u64,
        /// Number of blocks (0: to the end of the medium).
        blocks: u32,
    },
    /// Deallocate these `(lba, blocks)` ranges (all range-checked, none
    /// empty), then GOOD.
    Unmap(Vec<(u64, u32)>),
    /// Report provisioning status from `lba`; encode the answer with
    /// [`encode_lba_status`].
    GetLbaStatus {
        /// Starting LBA (range-checked).
        lba: u64,
        /// Allocation length.
        alloc_len: u32,
    },
    /// Sanitize the whole medium. The unit is now "sanitize in progress";
    /// call [`LogicalUnit::sanitize_done`] when finished.
    Sanitize {
        /// What to do.
        action: SanitizeAction,
        /// IMMED: return GOOD now, sanitize in the background.
        immed: bool,
    },
    /// Copy these block ranges (EXTENDED COPY), in order, then GOOD.
    ExtendedCopy {
        /// The LIST IDENTIFIER.
        list_id: u8,
        /// Segments to execute.
        segments: Vec<CopySegment>,
    },
    /// PERSISTENT RESERVE OUT PREEMPT AND ABORT succeeded: abort the tasks
    /// of these initiator ports (SPC-4 §5.12.11.2.3), then GOOD.
    PreemptAndAbort {
        /// Initiator port names whose registrations were preempted.
        preempted: Vec<String>,
    },
    /// SET TARGET PORT GROUPS asked for target port group `group` to be
    /// Active/optimized: the unit's ownership moves to that group's
    /// gateway. The caller moves it and answers GOOD, or CHECK CONDITION
    /// with [`sense::SET_TARGET_PORT_GROUPS_FAILED`].
    SetTargetPortGroups {
        /// The group to own the unit.
        group: u16,
    },
    /// Collect `len` bytes of data-out, then call
    /// [`LogicalUnit::with_parameter_data`] with `then`.
    NeedParameterData {
        /// Parameter list length from the CDB (never 0).
        len: u32,
        /// What the data is for.
        then: ParamKind,
    },
}

impl Plan {
    /// The status this plan ends in when it needs no I/O.
    pub fn immediate_status(&self) -> Option<Status> {
        match self {
            Plan::DataIn(_) | Plan::Good => Some(Status::Good),
            Plan::Check(_) => Some(Status::CheckCondition),
            Plan::Status(s) => Some(*s),
            _ => None,
        }
    }
}

/// Commands whose parameter list arrives as data-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// MODE SELECT(6) / (10).
    ModeSelect {
        /// MODE SELECT(10).
        ten: bool,
        /// SP: save pages (refused: SAVING PARAMETERS NOT SUPPORTED).
        sp: bool,
    },
    /// UNMAP parameter list (SBC-3 §5.28.2).
    Unmap,
    /// PERSISTENT RESERVE OUT parameter list (SPC-4 §6.15.3).
    PersistentReserveOut {
        /// Service action.
        service_action: u8,
        /// Reservation type.
        pr_type: u8,
        /// Scope.
        scope: u8,
    },
    /// EXTENDED COPY (LID1) parameter list (SPC-4 §6.4).
    ExtendedCopy,
    /// SET TARGET PORT GROUPS parameter list (SPC-4 §6.45).
    SetTargetPortGroups,
    /// SANITIZE OVERWRITE parameter list (SBC-3 §5.30.2).
    SanitizeOverwrite {
        /// IMMED bit.
        immed: bool,
        /// AUSE bit.
        ause: bool,
    },
}
