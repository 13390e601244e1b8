//! Completion status: Status Code Type, Status Code, More and Do Not Retry
//! (Base 2.0 §4.6.1.2, Figures 92-101; Fabrics 1.1 §2.3 Figure 8).

/// Status Code Type (SCT), bits 11:9 of the status field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sct {
    /// 0h Generic Command Status.
    Generic,
    /// 1h Command Specific Status.
    CommandSpecific,
    /// 2h Media and Data Integrity Errors.
    Media,
    /// 3h Path Related Status.
    Path,
    /// 7h Vendor Specific.
    Vendor,
    /// Any other (reserved) value.
    Reserved(u8),
}

impl Sct {
    /// The 3-bit wire value.
    pub const fn code(self) -> u8 {
        match self {
            Sct::Generic => 0,
            Sct::CommandSpecific => 1,
            Sct::Media => 2,
            Sct::Path => 3,
            Sct::Vendor => 7,
            Sct::Reserved(v) => v & 7,
        }
    }

    /// Decodes the low three bits of `v`.
    pub const fn from_code(v: u8) -> Self {
        match v & 7 {
            0 => Sct::Generic,
            1 => Sct::CommandSpecific,
            2 => Sct::Media,
            3 => Sct::Path,
            7 => Sct::Vendor,
            other => Sct::Reserved(other),
        }
    }
}

/// A completion status (the status field of a CQE without the phase tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// Status Code Type.
    pub sct: Sct,
    /// Status Code.
    pub sc: u8,
    /// Command Retry Delay index (CRD, 2 bits).
    pub crd: u8,
    /// More: more status information in the Error Information log page.
    pub more: bool,
    /// Do Not Retry.
    pub dnr: bool,
}

const fn generic(sc: u8) -> Status {
    Status {
        sct: Sct::Generic,
        sc,
        crd: 0,
        more: false,
        dnr: false,
    }
}

const fn specific(sc: u8) -> Status {
    Status {
        sct: Sct::CommandSpecific,
        sc,
        crd: 0,
        more: false,
        dnr: false,
    }
}

const fn path(sc: u8) -> Status {
    Status {
        sct: Sct::Path,
        sc,
        crd: 0,
        more: false,
        dnr: false,
    }
}

const fn media(sc: u8) -> Status {
    Status {
        sct: Sct::Media,
        sc,
        crd: 0,
        more: false,
        dnr: false,
    }
}

impl Status {
    // Generic Command Status (Base 2.0 Figure 94, SCT 0h).
    /// 00h Successful Completion.
    pub const SUCCESS: Status = generic(0x00);
    /// 01h Invalid Command Opcode.
    pub const INVALID_OPCODE: Status = generic(0x01);
    /// 02h Invalid Field in Command.
    pub const INVALID_FIELD: Status = generic(0x02);
    /// 03h Command ID Conflict.
    pub const CID_CONFLICT: Status = generic(0x03);
    /// 04h Data Transfer Error.
    pub const DATA_XFER_ERROR: Status = generic(0x04);
    /// 05h Commands Aborted due to Power Loss Notification.
    pub const POWER_LOSS_ABORT: Status = generic(0x05);
    /// 06h Internal Error.
    pub const INTERNAL: Status = generic(0x06);
    /// 07h Command Abort Requested.
    pub const ABORT_REQUESTED: Status = generic(0x07);
    /// 08h Command Aborted due to SQ Deletion.
    pub const ABORT_SQ_DELETION: Status = generic(0x08);
    /// 0Bh Invalid Namespace or Format.
    pub const INVALID_NS: Status = generic(0x0B);
    /// 0Ch Command Sequence Error.
    pub const CMD_SEQ_ERROR: Status = generic(0x0C);
    /// 0Dh Invalid SGL Segment Descriptor.
    pub const SGL_INVALID_LAST: Status = generic(0x0D);
    /// 0Eh Invalid Number of SGL Descriptors.
    pub const SGL_INVALID_COUNT: Status = generic(0x0E);
    /// 0Fh Data SGL Length Invalid.
    pub const SGL_INVALID_DATA: Status = generic(0x0F);
    /// 10h Metadata SGL Length Invalid.
    pub const SGL_INVALID_METADATA: Status = generic(0x10);
    /// 11h SGL Descriptor Type Invalid.
    pub const SGL_INVALID_TYPE: Status = generic(0x11);
    /// 15h Operation Denied.
    pub const OPERATION_DENIED: Status = generic(0x15);
    /// 16h SGL Offset Invalid.
    pub const SGL_INVALID_OFFSET: Status = generic(0x16);
    /// 18h Host Identifier Inconsistent Format.
    pub const HOST_ID_INCONSISTENT: Status = generic(0x18);
    /// 19h Keep Alive Timer Expired.
    pub const KEEP_ALIVE_EXPIRED: Status = generic(0x19);
    /// 1Ah Keep Alive Timeout Invalid.
    pub const KEEP_ALIVE_INVALID: Status = generic(0x1A);
    /// 20h Namespace is Write Protected.
    pub const NS_WRITE_PROTECTED: Status = generic(0x20);
    /// 21h Command Interrupted.
    pub const CMD_INTERRUPTED: Status = generic(0x21);
    /// 22h Transient Transport Error.
    pub const TRANSIENT_TRANSPORT: Status = generic(0x22);
    /// 80h LBA Out of Range (NVM command set).
    pub const LBA_OUT_OF_RANGE: Status = generic(0x80);
    /// 81h Capacity Exceeded.
    pub const CAPACITY_EXCEEDED: Status = generic(0x81);
    /// 82h Namespace Not Ready.
    pub const NS_NOT_READY: Status = generic(0x82);
    /// 83h Reservation Conflict.
    pub const RESERVATION_CONFLICT: Status = generic(0x83);

    // Command Specific Status (Base 2.0 Figure 95, SCT 1h).
    /// 00h Completion Queue Invalid.
    pub const CQ_INVALID: Status = specific(0x00);
    /// 01h Invalid Queue Identifier.
    pub const INVALID_QUEUE_ID: Status = specific(0x01);
    /// 02h Invalid Queue Size.
    pub const INVALID_QUEUE_SIZE: Status = specific(0x02);
    /// 03h Abort Command Limit Exceeded.
    pub const ABORT_LIMIT: Status = specific(0x03);
    /// 05h Asynchronous Event Request Limit Exceeded.
    pub const ASYNC_LIMIT: Status = specific(0x05);
    /// 06h Invalid Firmware Slot.
    pub const INVALID_FW_SLOT: Status = specific(0x06);
    /// 09h Invalid Log Page.
    pub const INVALID_LOG_PAGE: Status = specific(0x09);
    /// 0Ah Invalid Format.
    pub const INVALID_FORMAT: Status = specific(0x0A);
    /// 0Dh Feature Identifier Not Saveable.
    pub const FEATURE_NOT_SAVEABLE: Status = specific(0x0D);
    /// 0Eh Feature Not Changeable.
    pub const FEATURE_NOT_CHANGEABLE: Status = specific(0x0E);
    /// 0Fh Feature Not Namespace Specific.
    pub const FEATURE_NOT_PER_NS: Status = specific(0x0F);
    /// 80h Conflicting Attributes (NVM command set, DSM/Read/Write).
    pub const CONFLICTING_ATTRIBUTES: Status = specific(0x80);
    /// 82h Attempted Write to Read Only Range (NVM command set).
    pub const READ_ONLY_RANGE: Status = specific(0x82);

    // Fabrics command status (Fabrics 1.1 Figure 8, SCT 1h).
    /// 80h Incompatible Format (Connect RECFMT).
    pub const CONNECT_FORMAT: Status = specific(0x80);
    /// 81h Controller Busy.
    pub const CONNECT_CTRL_BUSY: Status = specific(0x81);
    /// 82h Connect Invalid Parameters.
    pub const CONNECT_INVALID_PARAM: Status = specific(0x82);
    /// 83h Connect Restart Discovery.
    pub const CONNECT_RESTART_DISC: Status = specific(0x83);
    /// 84h Connect Invalid Host.
    pub const CONNECT_INVALID_HOST: Status = specific(0x84);
    /// 90h Discover Restart.
    pub const DISCOVERY_RESTART: Status = specific(0x90);
    /// 91h Authentication Required.
    pub const AUTH_REQUIRED: Status = specific(0x91);

    // Media and Data Integrity Errors (Base 2.0 Figure 96, SCT 2h).
    /// 80h Write Fault.
    pub const WRITE_FAULT: Status = media(0x80);
    /// 81h Unrecovered Read Error.
    pub const UNRECOVERED_READ: Status = media(0x81);
    /// 82h End-to-end Guard Check Error.
    pub const GUARD_CHECK: Status = media(0x82);
    /// 83h End-to-end Application Tag Check Error.
    pub const APPTAG_CHECK: Status = media(0x83);
    /// 84h End-to-end Reference Tag Check Error.
    pub const REFTAG_CHECK: Status = media(0x84);
    /// 85h Compare Failure.
    pub const COMPARE_FAILURE: Status = media(0x85);
    /// 86h Access Denied.
    pub const ACCESS_DENIED: Status = media(0x86);
    /// 87h Deallocated or Unwritten Logical Block.
    pub const UNWRITTEN_BLOCK: Status = media(0x87);

    // Path Related Status (Base 2.0 Figure 101, SCT 3h).
    /// 01h Asymmetric Access Persistent Loss.
    pub const ANA_PERSISTENT_LOSS: Status = path(0x01);
    /// 02h Asymmetric Access Inaccessible.
    pub const ANA_INACCESSIBLE: Status = path(0x02);
    /// 03h Asymmetric Access Transition.
    pub const ANA_TRANSITION: Status = path(0x03);

    /// The same status with Do Not Retry set.
    #[must_use]
    pub const fn dnr(self) -> Status {
        Status { dnr: true, ..self }
    }

    /// True for Successful Completion.
    pub const fn is_success(self) -> bool {
        matches!(self.sct, Sct::Generic) && self.sc == 0
    }

    /// The 15-bit status field as placed in CQE bits 31:17 of DW3, shifted
    /// into a 16-bit word with the phase tag (bit 0) cleared.
    pub const fn to_word(self) -> u16 {
        ((self.sc as u16) << 1)
            | ((self.sct.code() as u16) << 9)
            | (((self.crd & 3) as u16) << 12)
            | ((self.more as u16) << 14)
            | ((self.dnr as u16) << 15)
    }

    /// Decodes a 16-bit status word (the phase tag, bit 0, is ignored).
    pub const fn from_word(w: u16) -> Status {
        Status {
            sc: (w >> 1) as u8,
            sct: Sct::from_code((w >> 9) as u8),
            crd: ((w >> 12) & 3) as u8,
            more: w & (1 << 14) != 0,
            dnr: w & (1 << 15) != 0,
        }
    }
}

impl Default for Status {
    fn default() -> Self {
        Status::SUCCESS
    }
}
