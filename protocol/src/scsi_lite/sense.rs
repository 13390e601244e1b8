//! Sense data (SPC-4 §4.5): fixed and descriptor formats.

/// Sense keys used here (SPC-4 §4.5.6).
pub mod key {
    /// NO SENSE.
    pub const NO_SENSE: u8 = 0x0;
    /// NOT READY.
    pub const NOT_READY: u8 = 0x2;
    /// MEDIUM ERROR.
    pub const MEDIUM_ERROR: u8 = 0x3;
    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: u8 = 0x6;
    /// DATA PROTECT.
    pub const DATA_PROTECT: u8 = 0x7;
    /// MISCOMPARE.
    pub const MISCOMPARE: u8 = 0xE;
}

/// Sense-key specific field pointer (SPC-4 §4.5.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// The error is in the CDB (true) or in parameter data (false).
    pub in_cdb: bool,
    /// Byte of the field.
    pub byte: u16,
    /// Bit of the field, when it is a bit field.
    pub bit: Option<u8>,
}

/// One sense condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// INFORMATION field (e.g. the LBA or byte offset of an error).
    pub info: Option<u64>,
    /// Sense-key specific field pointer.
    pub field: Option<FieldPointer>,
}

impl Sense {
    /// A condition without information or field pointer.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            info: None,
            field: None,
        }
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at `byte`/`bit`.
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: true,
                byte,
                bit,
            }),
            ..Self::new(key::ILLEGAL_REQUEST, 0x24, 0x00)
        }
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST at `byte`.
    pub const fn invalid_field_in_parameter_list(byte: u16) -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: false,
                byte,
                bit: None,
            }),
            ..Self::new(key::ILLEGAL_REQUEST, 0x26, 0x00)
        }
    }

    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR.
    pub const fn parameter_list_length_error() -> Self {
        Self::new(key::ILLEGAL_REQUEST, 0x1A, 0x00)
    }

    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::new(key::ILLEGAL_REQUEST, 0x21, 0x00)
    }

    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    pub const fn invalid_command_operation_code() -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: true,
                byte: 0,
                bit: None,
            }),
            ..Self::new(key::ILLEGAL_REQUEST, 0x20, 0x00)
        }
    }

    /// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
    pub const fn logical_unit_not_supported() -> Self {
        Self::new(key::ILLEGAL_REQUEST, 0x25, 0x00)
    }

    /// DATA PROTECT, WRITE PROTECTED.
    pub const fn write_protected() -> Self {
        Self::new(key::DATA_PROTECT, 0x27, 0x00)
    }

    /// MEDIUM ERROR, UNRECOVERED READ ERROR at `lba`.
    pub const fn unrecovered_read_error(lba: u64) -> Self {
        Self {
            info: Some(lba),
            ..Self::new(key::MEDIUM_ERROR, 0x11, 0x00)
        }
    }

    /// MEDIUM ERROR, WRITE ERROR at `lba`.
    pub const fn write_error(lba: u64) -> Self {
        Self {
            info: Some(lba),
            ..Self::new(key::MEDIUM_ERROR, 0x0C, 0x00)
        }
    }

    /// MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION at byte `offset`.
    pub const fn miscompare(offset: u64) -> Self {
        Self {
            info: Some(offset),
            ..Self::new(key::MISCOMPARE, 0x1D, 0x00)
        }
    }

    /// UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const fn power_on_reset() -> Self {
        Self::new(key::UNIT_ATTENTION, 0x29, 0x00)
    }

    /// UNIT ATTENTION, MODE PARAMETERS CHANGED.
    pub const fn mode_parameters_changed() -> Self {
        Self::new(key::UNIT_ATTENTION, 0x2A, 0x01)
    }

    /// Fixed-format sense data (response code 0x70), 18 bytes.
    pub fn fixed_format(&self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = self.key & 0x0f;
        if let Some(info) = self.info {
            // INFORMATION is 4 bytes in fixed format; VALID only if it fits.
            if let Ok(v) = u32::try_from(info) {
                s[0] |= 0x80;
                s[3..7].copy_from_slice(&v.to_be_bytes());
            }
        }
        s[7] = 10; // additional sense length
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some(f) = self.field {
            s[15] = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                s[15] |= 0x08 | (bit & 0x07);
            }
            s[16..18].copy_from_slice(&f.byte.to_be_bytes());
        }
        s
    }

    /// Descriptor-format sense data (response code 0x72) with an
    /// information descriptor and a sense-key specific descriptor when set.
    pub fn descriptor_format(&self) -> Vec<u8> {
        let mut s = vec![0x72, self.key & 0x0f, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.info {
            s.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            s.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(f) = self.field {
            let mut b = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                b |= 0x08 | (bit & 0x07);
            }
            let [hi, lo] = f.byte.to_be_bytes();
            s.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, b, hi, lo, 0x00]);
        }
        let additional = s.len().saturating_sub(8).min(255) as u8;
        if let Some(len) = s.get_mut(7) {
            *len = additional;
        }
        s
    }
}
