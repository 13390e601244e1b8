//! Sense data (SPC-4 §4.5): fixed format (response code 0x70, §4.5.3) and
//! descriptor format (response code 0x72, §4.5.2), plus SCSI status codes
//! (SAM-5 §5.3).

/// SCSI status byte (SAM-5 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// GOOD.
    Good = 0x00,
    /// CHECK CONDITION: sense data accompanies the status.
    CheckCondition = 0x02,
    /// CONDITION MET.
    ConditionMet = 0x04,
    /// BUSY.
    Busy = 0x08,
    /// RESERVATION CONFLICT (no sense data).
    ReservationConflict = 0x18,
    /// TASK SET FULL.
    TaskSetFull = 0x28,
    /// ACA ACTIVE.
    AcaActive = 0x30,
    /// TASK ABORTED.
    TaskAborted = 0x40,
}

impl Status {
    /// The wire value.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// Sense keys (SPC-4 table 48).
pub mod key {
    /// NO SENSE.
    pub const NO_SENSE: u8 = 0x0;
    /// NOT READY.
    pub const NOT_READY: u8 = 0x2;
    /// MEDIUM ERROR.
    pub const MEDIUM_ERROR: u8 = 0x3;
    /// HARDWARE ERROR.
    pub const HARDWARE_ERROR: u8 = 0x4;
    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: u8 = 0x6;
    /// DATA PROTECT.
    pub const DATA_PROTECT: u8 = 0x7;
    /// COPY ABORTED.
    pub const COPY_ABORTED: u8 = 0xA;
    /// ABORTED COMMAND.
    pub const ABORTED_COMMAND: u8 = 0xB;
    /// MISCOMPARE.
    pub const MISCOMPARE: u8 = 0xE;
}

/// Sense-key specific field pointer (SPC-4 §4.5.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPointer {
    /// C/D: true when the error is in the CDB, false for parameter data.
    pub in_cdb: bool,
    /// Byte offset of the offending field.
    pub byte: u16,
    /// Bit (0..=7) of the offending field, when known (sets BPV).
    pub bit: Option<u8>,
}

/// One sense condition: key, additional sense code and qualifier, and the
/// optional INFORMATION and field pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// INFORMATION field (e.g. the miscompare offset).
    pub info: Option<u64>,
    /// Sense-key specific field pointer (ILLEGAL REQUEST).
    pub field: Option<FieldPointer>,
    /// Sense-key specific progress indication (NOT READY), 0..=0xFFFF.
    pub progress: Option<u16>,
}

impl Sense {
    /// A sense with no INFORMATION and no sense-key specific data.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            info: None,
            field: None,
            progress: None,
        }
    }

    /// This sense with INFORMATION set.
    pub const fn with_info(mut self, info: u64) -> Self {
        self.info = Some(info);
        self
    }

    /// This sense with a field pointer.
    pub const fn with_field(mut self, in_cdb: bool, byte: u16, bit: Option<u8>) -> Self {
        self.field = Some(FieldPointer { in_cdb, byte, bit });
        self
    }

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit`).
    pub const fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Self {
        INVALID_FIELD_IN_CDB.with_field(true, byte, bit)
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`).
    pub const fn invalid_param_field(byte: u16, bit: Option<u8>) -> Self {
        INVALID_FIELD_IN_PARAMETER_LIST.with_field(false, byte, bit)
    }

    /// Whether this is a UNIT ATTENTION condition.
    pub const fn is_unit_attention(&self) -> bool {
        self.key == key::UNIT_ATTENTION
    }

    fn sks(&self) -> Option<[u8; 3]> {
        if let Some(f) = self.field {
            let mut b = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                b |= 0x08 | (bit & 0x07);
            }
            let [hi, lo] = f.byte.to_be_bytes();
            Some([b, hi, lo])
        } else if let Some(p) = self.progress {
            let [hi, lo] = p.to_be_bytes();
            Some([0x80, hi, lo])
        } else {
            None
        }
    }

    /// Fixed-format sense data (SPC-4 §4.5.3), 18 bytes. INFORMATION is
    /// four bytes here; VALID is set only when it fits.
    pub fn fixed_format(&self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = self.key & 0x0f;
        if let Some(info) = self.info {
            if let Ok(v) = u32::try_from(info) {
                s[0] |= 0x80;
                let [a, b, c, d] = v.to_be_bytes();
                s[3] = a;
                s[4] = b;
                s[5] = c;
                s[6] = d;
            }
        }
        s[7] = 10;
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some([a, b, c]) = self.sks() {
            s[15] = a;
            s[16] = b;
            s[17] = c;
        }
        s
    }

    /// Descriptor-format sense data (SPC-4 §4.5.2): an information
    /// descriptor (type 0) when INFORMATION is set and a sense-key specific
    /// descriptor (type 2) when a field pointer or progress is set.
    pub fn descriptor_format(&self) -> Vec<u8> {
        let mut s = vec![0x72, self.key & 0x0f, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.info {
            s.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            s.extend_from_slice(&info.to_be_bytes());
        }
        if let Some([a, b, c]) = self.sks() {
            s.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, a, b, c, 0x00]);
        }
        let additional = u8::try_from(s.len().saturating_sub(8)).unwrap_or(u8::MAX);
        if let Some(len) = s.get_mut(7) {
            *len = additional;
        }
        s
    }

    /// Sense bytes in the format the control mode page selects.
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
            self.descriptor_format()
        } else {
            self.fixed_format().to_vec()
        }
    }
}

/// NO SENSE (REQUEST SENSE with nothing pending).
pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0, 0);
/// NOT READY, MEDIUM NOT PRESENT (02/3A/00).
pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(key::NOT_READY, 0x3A, 0x00);
/// NOT READY, SANITIZE IN PROGRESS (02/04/1B).
pub const SANITIZE_IN_PROGRESS: Sense = Sense::new(key::NOT_READY, 0x04, 0x1B);
/// NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION.
pub const ALUA_TRANSITION: Sense = Sense::new(key::NOT_READY, 0x04, 0x0A);
/// NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
pub const TARGET_PORT_STANDBY: Sense = Sense::new(key::NOT_READY, 0x04, 0x0B);
/// NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
pub const TARGET_PORT_UNAVAILABLE: Sense = Sense::new(key::NOT_READY, 0x04, 0x0C);
/// MEDIUM ERROR, WRITE AFTER SANITIZE REQUIRED (03/11/15).
pub const WRITE_AFTER_SANITIZE_REQUIRED: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x15);
/// HARDWARE ERROR, SET TARGET PORT GROUPS COMMAND FAILED (04/67/0A).
pub const SET_TARGET_PORT_GROUPS_FAILED: Sense = Sense::new(key::HARDWARE_ERROR, 0x67, 0x0A);
/// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (05/1A/00).
pub const PARAMETER_LIST_LENGTH_ERROR: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1A, 0x00);
/// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (05/20/00).
pub const INVALID_COMMAND_OPERATION_CODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
/// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (05/21/00).
pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
/// ILLEGAL REQUEST, INVALID FIELD IN CDB (05/24/00).
pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
/// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (05/25/00).
pub const LOGICAL_UNIT_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
/// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (05/26/00).
pub const INVALID_FIELD_IN_PARAMETER_LIST: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
/// ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION (05/26/04).
pub const INVALID_RELEASE_OF_PR: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x04);
/// ILLEGAL REQUEST, TOO MANY TARGET DESCRIPTORS (05/26/06).
pub const TOO_MANY_TARGET_DESCRIPTORS: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x06);
/// ILLEGAL REQUEST, UNSUPPORTED TARGET DESCRIPTOR TYPE CODE (05/26/07).
pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x07);
/// ILLEGAL REQUEST, TOO MANY SEGMENT DESCRIPTORS (05/26/08).
pub const TOO_MANY_SEGMENT_DESCRIPTORS: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x08);
/// ILLEGAL REQUEST, UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE (05/26/09).
pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x09);
/// ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED (05/39/00).
pub const SAVING_PARAMETERS_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
/// ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED (05/53/02).
pub const MEDIUM_REMOVAL_PREVENTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x53, 0x02);
/// UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (06/29/00).
pub const POWER_ON_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
/// UNIT ATTENTION, BUS DEVICE RESET FUNCTION OCCURRED (06/29/03).
pub const BUS_DEVICE_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x03);
/// UNIT ATTENTION, COMMANDS CLEARED BY ANOTHER INITIATOR (06/2F/00).
pub const COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Sense =
    Sense::new(key::UNIT_ATTENTION, 0x2F, 0x00);
/// UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED (06/2A/06).
pub const ASYMMETRIC_ACCESS_STATE_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x06);
/// UNIT ATTENTION, MODE PARAMETERS CHANGED (06/2A/01).
pub const MODE_PARAMETERS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x01);
/// UNIT ATTENTION, RESERVATIONS PREEMPTED (06/2A/03).
pub const RESERVATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x03);
/// UNIT ATTENTION, RESERVATIONS RELEASED (06/2A/04).
pub const RESERVATIONS_RELEASED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x04);
/// UNIT ATTENTION, REGISTRATIONS PREEMPTED (06/2A/05).
pub const REGISTRATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x05);
/// UNIT ATTENTION, CAPACITY DATA HAS CHANGED (06/2A/09).
pub const CAPACITY_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x09);
/// UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED (06/3F/0E).
pub const REPORTED_LUNS_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3F, 0x0E);
/// DATA PROTECT, WRITE PROTECTED (07/27/00).
pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
/// COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE (0A/0D/02).
pub const COPY_TARGET_NOT_REACHABLE: Sense = Sense::new(key::COPY_ABORTED, 0x0D, 0x02);
/// COPY ABORTED, no additional sense (0A/00/00): a segment failed (e.g.
/// its range lies beyond the end of the medium).
pub const COPY_ABORTED: Sense = Sense::new(key::COPY_ABORTED, 0x00, 0x00);
/// MEDIUM ERROR, UNRECOVERED READ ERROR (03/11/00): the backing store
/// failed a read.
pub const UNRECOVERED_READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
/// MEDIUM ERROR, WRITE ERROR (03/0C/00): the backing store failed a write.
pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0C, 0x00);
/// HARDWARE ERROR, INTERNAL TARGET FAILURE (04/44/00).
pub const INTERNAL_TARGET_FAILURE: Sense = Sense::new(key::HARDWARE_ERROR, 0x44, 0x00);
/// ABORTED COMMAND, DATA PHASE ERROR (0B/4B/00): the transport's data
/// transfer broke (e.g. an iSCSI Data-Out out of sequence).
pub const DATA_PHASE_ERROR: Sense = Sense::new(key::ABORTED_COMMAND, 0x4B, 0x00);
/// MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (0E/1D/00).
pub const MISCOMPARE_DURING_VERIFY: Sense = Sense::new(key::MISCOMPARE, 0x1D, 0x00);

/// MISCOMPARE DURING VERIFY OPERATION with INFORMATION = `offset`, the
/// byte offset of the first mismatch in the compared data (SBC-3 §5.2,
/// §5.34).
pub const fn miscompare_sense(offset: u64) -> Sense {
    MISCOMPARE_DURING_VERIFY.with_info(offset)
}
