//! Set Features / Get Features (Base 2.0 §5.27, §5.15) for the features a
//! fabrics controller keeps: Arbitration (01h), Power Management (02h),
//! Volatile Write Cache (06h), Number of Queues (07h), Asynchronous Event
//! Configuration (0Bh) and Keep Alive Timer (0Fh).

use super::Status;

/// Feature Identifiers (Base 2.0 Figure 317).
pub mod fid {
    /// Arbitration.
    pub const ARBITRATION: u8 = 0x01;
    /// Power Management.
    pub const POWER_MGMT: u8 = 0x02;
    /// Volatile Write Cache.
    pub const VOLATILE_WC: u8 = 0x06;
    /// Number of Queues.
    pub const NUM_QUEUES: u8 = 0x07;
    /// Asynchronous Event Configuration.
    pub const ASYNC_EVENT: u8 = 0x0B;
    /// Keep Alive Timer.
    pub const KATO: u8 = 0x0F;
}

/// Asynchronous Event Configuration bits 7:0: SMART / Health critical
/// warnings.
pub const AEC_SMART_MASK: u32 = 0xFF;
/// Asynchronous Event Configuration bit 8: Namespace Attribute Notices.
pub const AEC_NS_ATTR: u32 = 1 << 8;
/// Asynchronous Event Configuration bit 31: Discovery Log Page Change
/// Notices.
pub const AEC_DISCOVERY: u32 = 1 << 31;
/// Asynchronous Event Configuration bit 11: ANA Change Notices.
pub const AEC_ANA_CHANGE: u32 = 1 << 11;

/// What the controller supports, for validating feature values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureLimits {
    /// I/O queue pairs the controller allocates (1-based).
    pub max_io_queues: u16,
    /// Discovery controllers only have KATO and Asynchronous Event
    /// Configuration.
    pub is_discovery: bool,
    /// Whether a volatile write cache is present (VWC bit 0).
    pub vwc_present: bool,
}

/// Current feature values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureState {
    /// Arbitration (CDW11 as written).
    pub arbitration: u32,
    /// Power Management: PS (bits 4:0) and WH (bits 7:5).
    pub power_mgmt: u32,
    /// Volatile Write Cache enable.
    pub volatile_wc: bool,
    /// Asynchronous Event Configuration.
    pub async_event_config: u32,
    /// Keep Alive Timeout in milliseconds (0: disabled).
    pub kato_ms: u32,
    /// Number of Queues as last set: (NSQA, NCQA), 0's based.
    pub queues: Option<(u16, u16)>,
}

impl FeatureState {
    /// Defaults: write cache enabled if present, no events enabled.
    pub fn new(lim: &FeatureLimits, kato_ms: u32) -> Self {
        FeatureState {
            arbitration: 0,
            power_mgmt: 0,
            volatile_wc: lim.vwc_present,
            async_event_config: 0,
            kato_ms,
            queues: None,
        }
    }

    fn supported(fid: u8, lim: &FeatureLimits) -> bool {
        match fid {
            fid::KATO | fid::ASYNC_EVENT => true,
            fid::ARBITRATION | fid::POWER_MGMT | fid::NUM_QUEUES | fid::VOLATILE_WC => {
                !lim.is_discovery
            }
            _ => false,
        }
    }

    fn allocated(lim: &FeatureLimits) -> u32 {
        let n = u32::from(lim.max_io_queues.max(1) - 1);
        n | (n << 16)
    }

    /// Set Features: CDW10 bits 7:0 FID, bit 31 SV; CDW11 the value.
    /// Returns the completion DW0.
    pub fn set(&mut self, cdw10: u32, cdw11: u32, lim: &FeatureLimits) -> Result<u32, Status> {
        let f = cdw10 as u8;
        if !Self::supported(f, lim) {
            return Err(Status::INVALID_FIELD.dnr());
        }
        if cdw10 & (1 << 31) != 0 {
            return Err(Status::FEATURE_NOT_SAVEABLE.dnr());
        }
        match f {
            fid::ARBITRATION => self.arbitration = cdw11,
            fid::POWER_MGMT => {
                // Only power state 0 exists (NPSS = 0).
                if cdw11 & 0x1F != 0 {
                    return Err(Status::INVALID_FIELD.dnr());
                }
                self.power_mgmt = cdw11 & 0xFF;
            }
            fid::VOLATILE_WC => {
                if !lim.vwc_present {
                    return Err(Status::INVALID_FIELD.dnr());
                }
                self.volatile_wc = cdw11 & 1 != 0;
            }
            fid::NUM_QUEUES => {
                let nsqr = cdw11 as u16;
                let ncqr = (cdw11 >> 16) as u16;
                if nsqr == 0xFFFF || ncqr == 0xFFFF {
                    return Err(Status::INVALID_FIELD.dnr());
                }
                let a = Self::allocated(lim);
                self.queues = Some((a as u16, (a >> 16) as u16));
                return Ok(a);
            }
            fid::ASYNC_EVENT => {
                let allowed = if lim.is_discovery {
                    AEC_DISCOVERY
                } else {
                    AEC_SMART_MASK | AEC_NS_ATTR | AEC_ANA_CHANGE
                };
                if cdw11 & !allowed != 0 {
                    return Err(Status::INVALID_FIELD.dnr());
                }
                self.async_event_config = cdw11;
            }
            fid::KATO => {
                // KAS is one second: round up to whole seconds.
                self.kato_ms = cdw11.div_ceil(1000).saturating_mul(1000);
            }
            _ => return Err(Status::INVALID_FIELD.dnr()),
        }
        Ok(0)
    }

    /// Get Features: CDW10 bits 7:0 FID, bits 10:8 SEL (0 current, 1
    /// default, 2 saved, 3 supported capabilities). Returns DW0.
    pub fn get(
        &self,
        cdw10: u32,
        lim: &FeatureLimits,
        default_kato_ms: u32,
    ) -> Result<u32, Status> {
        let f = cdw10 as u8;
        if !Self::supported(f, lim) {
            return Err(Status::INVALID_FIELD.dnr());
        }
        let sel = (cdw10 >> 8) & 7;
        let current = match sel {
            0 => true,
            1 | 2 => false,
            // Capabilities: bit 2 changeable; not saveable, not per namespace.
            3 => return Ok(1 << 2),
            _ => return Err(Status::INVALID_FIELD.dnr()),
        };
        let defaults = FeatureState::new(lim, default_kato_ms);
        let s = if current { self } else { &defaults };
        Ok(match f {
            fid::ARBITRATION => s.arbitration,
            fid::POWER_MGMT => s.power_mgmt,
            fid::VOLATILE_WC => u32::from(s.volatile_wc),
            fid::NUM_QUEUES => s.queues.map_or(Self::allocated(lim), |(sq, cq)| {
                u32::from(sq) | (u32::from(cq) << 16)
            }),
            fid::ASYNC_EVENT => s.async_event_config,
            fid::KATO => s.kato_ms,
            _ => return Err(Status::INVALID_FIELD.dnr()),
        })
    }
}
