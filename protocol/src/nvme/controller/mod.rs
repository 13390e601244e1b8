//! The controller state machine (Base 2.0 §3.5 controller initialization
//! and shutdown; Fabrics 1.1 §3.3 Connect, §3.4 properties): properties,
//! admin command planning, asynchronous events and keep-alive bookkeeping.
//!
//! One [`Controller`] per host association (dynamic controller model): the
//! frontend creates it with a fresh CNTLID when an admin-queue Connect
//! arrives, passes that Connect to [`Controller::connect`], and routes later
//! I/O-queue Connects carrying the same CNTLID to the same controller.

use std::collections::VecDeque;

use super::ana::{AnaState, LSP_RGO};
use super::discovery::{self, DiscoveryEntry};
use super::fabrics::{
    self, bits, connect_data_offset, connect_sqe_offset, property, Connect, ConnectData,
    FabricsCommand, CONNECT_DATA_LEN,
};
use super::features::{
    fid, FeatureLimits, FeatureState, AEC_ANA_CHANGE, AEC_DISCOVERY, AEC_NS_ATTR,
};
use super::identify::{self, cns, CSI_NVM};
use super::log_page::{self, lid, GetLogPage};
use super::sqe::admin_opcode;
use super::{Completion, DataPointer, Sqe, Status, IDENTIFY_DATA_LEN, NSID_ALL};

/// Outstanding Asynchronous Event Requests a controller holds (AERL + 1).
pub const AER_LIMIT: u8 = 4;
/// Keep Alive Support granularity (KAS) in 100 ms units: one second.
pub const KAS_100MS: u16 = 10;
/// VS property value for NVMe 1.3.0.
pub const VERSION_1_3: u32 = 0x0001_0300;
/// VS property value for NVMe 2.0.0.
pub const VERSION_2_0: u32 = 0x0002_0000;
/// CAP.TO: 15 × 500 ms for CSTS.RDY to follow CC.EN.
const CAP_TIMEOUT: u64 = 15;
/// In-capsule data the Linux host may put in admin capsules (8 KiB capsule
/// minus the SQE), accepted whatever IOCCSZ says.
const ADMIN_IN_CAPSULE: u32 = 8192 - 64;
/// Upper bound for admin data transfers when MDTS is 0 (no limit).
const ADMIN_DATA_CAP: u64 = 16 << 20;

mod admin;
mod config;
mod events;

pub use config::{ControllerConfig, HealthCounters, NamespaceInfo};
use events::Aen;
pub use events::AerCompletion;

/// A queue opened by Connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// Queue ID (0: admin).
    pub qid: u16,
    /// Submission queue entries (SQSIZE + 1).
    pub sq_entries: u32,
    /// CATTR asked to disable SQ flow control (SQHD then reports FFFFh).
    pub sq_flow_control_disabled: bool,
}

/// Result of [`Controller::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// The Connect response.
    pub completion: Completion,
    /// The queue, on success.
    pub queue: Option<QueueInfo>,
}

impl ConnectOutcome {
    fn fail(completion: Completion) -> Self {
        ConnectOutcome {
            completion,
            queue: None,
        }
    }
}

/// What to do with an admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPlan {
    /// Send this completion, after `data` (controller-to-host) if any.
    Complete {
        /// The completion.
        completion: Completion,
        /// Data to return to the host.
        data: Option<Vec<u8>>,
    },
    /// An Asynchronous Event Request was parked; the controller will hand
    /// back its CID in an [`AerCompletion`] when an event occurs.
    Park,
}

impl AdminPlan {
    fn status(s: Status) -> AdminPlan {
        AdminPlan::Complete {
            completion: Completion::status(s),
            data: None,
        }
    }

    fn ok(dw0: u32) -> AdminPlan {
        AdminPlan::Complete {
            completion: Completion::success(dw0),
            data: None,
        }
    }

    fn data(data: Vec<u8>) -> AdminPlan {
        AdminPlan::Complete {
            completion: Completion::SUCCESS,
            data: Some(data),
        }
    }

    /// The completion, if this plan completes now.
    pub fn completion(&self) -> Option<Completion> {
        match self {
            AdminPlan::Complete { completion, .. } => Some(*completion),
            AdminPlan::Park => None,
        }
    }
}

/// The controller state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: ControllerConfig,
    cc: u32,
    csts: u32,
    host: Option<(String, [u8; 16])>,
    io_queues: Vec<u16>,
    features: FeatureState,
    parked_aers: VecDeque<u16>,
    pending_events: VecDeque<Aen>,
    masked: Vec<Aen>,
    changed_ns: Vec<u32>,
    changed_overflow: bool,
    discovery_entries: Vec<DiscoveryEntry>,
    genctr: u64,
    health: HealthCounters,
    keep_alive_seq: u64,
}

impl Controller {
    /// A controller not yet connected (CC = 0, CSTS = 0).
    pub fn new(cfg: ControllerConfig) -> Self {
        let limits = Self::limits_of(&cfg);
        let kato = cfg.kato_ms;
        Controller {
            cfg,
            cc: 0,
            csts: 0,
            host: None,
            io_queues: Vec::new(),
            features: FeatureState::new(&limits, kato),
            parked_aers: VecDeque::new(),
            pending_events: VecDeque::new(),
            masked: Vec::new(),
            changed_ns: Vec::new(),
            changed_overflow: false,
            discovery_entries: Vec::new(),
            genctr: 0,
            health: HealthCounters::default(),
            keep_alive_seq: 0,
        }
    }

    fn limits_of(cfg: &ControllerConfig) -> FeatureLimits {
        FeatureLimits {
            max_io_queues: cfg.max_io_queues,
            is_discovery: cfg.is_discovery,
            vwc_present: cfg.volatile_write_cache,
        }
    }

    fn limits(&self) -> FeatureLimits {
        Self::limits_of(&self.cfg)
    }

    /// The configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// CNTLID.
    pub fn cntlid(&self) -> u16 {
        self.cfg.cntlid
    }

    /// The CAP property (Base 2.0 §3.1.4.1): MQES, CQR, TO, CSS (NVM);
    /// MPSMIN = MPSMAX = 0 (4 KiB).
    pub fn cap(&self) -> u64 {
        u64::from(self.cfg.max_queue_entries.max(2) - 1)
            | bits::CAP_CQR
            | (CAP_TIMEOUT << bits::CAP_TO_SHIFT)
            | bits::CAP_CSS_NVM
    }

    /// The VS property.
    pub fn vs(&self) -> u32 {
        self.cfg.version
    }

    /// The CC property.
    pub fn cc(&self) -> u32 {
        self.cc
    }

    /// The CSTS property.
    pub fn csts(&self) -> u32 {
        self.csts
    }

    /// CSTS.RDY: the host enabled the controller and it accepted CC.
    pub fn is_ready(&self) -> bool {
        self.csts & bits::CSTS_RDY != 0
    }

    /// CSTS.SHST = complete: the host shut the controller down.
    pub fn is_shut_down(&self) -> bool {
        self.csts & bits::CSTS_SHST_MASK == bits::CSTS_SHST_COMPLETE
    }

    /// The host NQN and host ID bound by the admin Connect.
    pub fn host(&self) -> Option<(&str, &[u8; 16])> {
        self.host.as_ref().map(|(n, id)| (n.as_str(), id))
    }

    /// Keep-alive timeout in milliseconds (0: disabled). The caller runs the
    /// timer: if [`Controller::keep_alive_seq`] did not move during one
    /// KATO interval, the association is torn down (Base 2.0 §3.9).
    pub fn kato_ms(&self) -> u32 {
        self.features.kato_ms
    }

    /// Records host activity that restarts the keep-alive timer (called by
    /// the Keep Alive command; the caller may call it for other traffic).
    pub fn keep_alive(&mut self) {
        self.keep_alive_seq = self.keep_alive_seq.wrapping_add(1);
    }

    /// Counts keep-alive events, for the caller's timer.
    pub fn keep_alive_seq(&self) -> u64 {
        self.keep_alive_seq
    }

    /// Whether the volatile write cache is enabled (Set Features 06h). When
    /// disabled, writes must reach stable storage before completing.
    pub fn write_cache_enabled(&self) -> bool {
        self.features.volatile_wc
    }

    /// Current feature values.
    pub fn features(&self) -> &FeatureState {
        &self.features
    }

    /// The namespace with `nsid`, if active.
    pub fn namespace(&self, nsid: u32) -> Option<&NamespaceInfo> {
        self.cfg.namespaces.iter().find(|n| n.nsid == nsid)
    }

    /// NN: the highest NSID.
    pub fn nn(&self) -> u32 {
        self.cfg
            .namespaces
            .iter()
            .map(|n| n.nsid)
            .fold(self.cfg.max_nsid, u32::max)
    }

    /// I/O queues connected so far.
    pub fn io_queues(&self) -> &[u16] {
        &self.io_queues
    }

    /// Replaces the SMART / Health counters.
    pub fn set_health(&mut self, h: HealthCounters) {
        self.health = h;
    }

    /// In-capsule data limit on queue `qid`.
    pub fn in_capsule_limit(&self, qid: u16) -> u32 {
        if qid == 0 {
            self.cfg.in_capsule_data_size.max(ADMIN_IN_CAPSULE)
        } else {
            self.cfg.in_capsule_data_size
        }
    }

    // ----- Connect ---------------------------------------------------------

    /// Handles a Fabrics Connect command (Fabrics 1.1 §3.3) with its 1024
    /// bytes of connect data. On the admin queue (QID 0) it binds the host
    /// to this controller; on I/O queues it checks that the same host
    /// connects to this CNTLID, that the controller is enabled and that the
    /// QID is allocated and unused.
    pub fn connect(&mut self, sqe: &Sqe, data: &[u8]) -> ConnectOutcome {
        match self.try_connect(sqe, data) {
            Ok(q) => ConnectOutcome {
                completion: fabrics::connect_success(self.cfg.cntlid),
                queue: Some(q),
            },
            Err(c) => ConnectOutcome::fail(c),
        }
    }

    fn try_connect(&mut self, sqe: &Sqe, data: &[u8]) -> Result<QueueInfo, Completion> {
        sqe.check_flags()?;
        if !sqe.is_fabrics() || sqe.fctype() != fabrics::fctype::CONNECT {
            return Err(Status::INVALID_OPCODE.dnr().into());
        }
        let c = Connect::from_sqe(sqe);
        let dp = sqe.data_pointer(self.in_capsule_limit(c.qid))?;
        if dp.len() as usize != CONNECT_DATA_LEN || data.len() != CONNECT_DATA_LEN {
            return Err(Status::SGL_INVALID_DATA.dnr().into());
        }
        if c.recfmt != 0 {
            return Err(Status::CONNECT_FORMAT.dnr().into());
        }
        let d = ConnectData::parse(data)?;
        if d.subnqn != self.cfg.subnqn {
            return Err(fabrics::invalid_param(true, connect_data_offset::SUBNQN));
        }
        if !self.cfg.allowed_hosts.is_empty() && !self.cfg.allowed_hosts.contains(&d.hostnqn) {
            return Err(Completion {
                status: Status::CONNECT_INVALID_HOST.dnr(),
                ..fabrics::invalid_param(true, connect_data_offset::HOSTNQN)
            });
        }
        if c.sqsize == 0 || c.sqsize > self.cfg.max_queue_entries.max(2) - 1 {
            return Err(fabrics::invalid_param(false, connect_sqe_offset::SQSIZE));
        }
        let queue = QueueInfo {
            qid: c.qid,
            sq_entries: u32::from(c.sqsize) + 1,
            sq_flow_control_disabled: c.sq_flow_control_disabled(),
        };
        if c.qid == 0 {
            if self.host.is_some() {
                return Err(Status::CMD_SEQ_ERROR.dnr().into());
            }
            if d.cntlid != 0xFFFF && d.cntlid != 0xFFFE {
                return Err(fabrics::invalid_param(true, connect_data_offset::CNTLID));
            }
            let kato = if c.kato == 0 && self.cfg.is_discovery {
                self.cfg.kato_ms
            } else {
                c.kato.div_ceil(1000).saturating_mul(1000)
            };
            self.features.kato_ms = kato;
            self.host = Some((d.hostnqn, d.hostid));
            return Ok(queue);
        }
        if self.cfg.is_discovery {
            return Err(fabrics::invalid_param(false, connect_sqe_offset::QID));
        }
        match &self.host {
            Some(_) if d.cntlid != self.cfg.cntlid => {
                return Err(fabrics::invalid_param(true, connect_data_offset::CNTLID));
            }
            Some((nqn, id)) if *nqn != d.hostnqn || *id != d.hostid => {
                return Err(fabrics::invalid_param(true, connect_data_offset::HOSTNQN));
            }
            Some(_) => {}
            None => return Err(fabrics::invalid_param(true, connect_data_offset::CNTLID)),
        }
        if !self.is_ready() {
            return Err(Status::CMD_SEQ_ERROR.dnr().into());
        }
        let allowed = self
            .features
            .queues
            .map_or(self.cfg.max_io_queues, |(sq, _)| sq.saturating_add(1));
        if c.qid > allowed.min(self.cfg.max_io_queues) {
            return Err(fabrics::invalid_param(false, connect_sqe_offset::QID));
        }
        if self.io_queues.contains(&c.qid) {
            return Err(Status::CMD_SEQ_ERROR.dnr().into());
        }
        self.io_queues.push(c.qid);
        Ok(queue)
    }

    /// Forgets I/O queue `qid` (its connection closed or it was
    /// disconnected).
    pub fn disconnect_io_queue(&mut self, qid: u16) {
        self.io_queues.retain(|&q| q != qid);
    }

    // ----- Properties ------------------------------------------------------

    /// Property Get (Fabrics 1.1 §3.4): CAP as 8 bytes; VS, CC, CSTS as 4.
    pub fn property_get(&self, size8: bool, offset: u32) -> Result<u64, Status> {
        match (size8, offset) {
            (true, property::CAP) => Ok(self.cap()),
            (false, property::VS) => Ok(u64::from(self.vs())),
            (false, property::CC) => Ok(u64::from(self.cc)),
            (false, property::CSTS) => Ok(u64::from(self.csts)),
            // CRTO (Base 2.0 Figure 35): Linux nvmet answers it too. Without
            // CAP.CRMS both ready timeouts are CAP.TO.
            (false, property::CRTO) => Ok(CAP_TIMEOUT | (CAP_TIMEOUT << 16)),
            // Everything else a host may probe (INTMS, INTMC, NSSR, AQA,
            // ASQ, ACQ, CMBLOC, CMBSZ, BPINFO, PMRCAP, doorbells, ...): Invalid
            // Field with DNR, exactly as nvmet (fabrics-cmd.c) answers.
            _ => Err(Status::INVALID_FIELD.dnr()),
        }
    }

    /// Property Set (Fabrics 1.1 §3.5): only CC, as 4 bytes.
    pub fn property_set(&mut self, size8: bool, offset: u32, value: u64) -> Result<(), Status> {
        match (size8, offset) {
            (false, property::CC) => {
                self.write_cc(value as u32);
                Ok(())
            }
            _ => Err(Status::INVALID_FIELD.dnr()),
        }
    }

    /// Applies a CC write (Base 2.0 §3.5.1, §3.6): EN 0→1 checks the
    /// configuration and sets CSTS.RDY (or CSTS.CFS if it is unusable); EN
    /// 1→0 resets the controller (RDY cleared); SHN set completes shutdown
    /// at once (SHST = 10b) and clears RDY; SHN cleared clears SHST.
    pub fn write_cc(&mut self, new: u32) {
        let old = self.cc;
        self.cc = new;
        let en = |v: u32| v & bits::CC_EN != 0;
        let shn = |v: u32| (v >> bits::CC_SHN_SHIFT) & 3 != 0;
        if en(new) && !en(old) {
            if self.cc_valid(new) {
                self.csts = (self.csts & !bits::CSTS_CFS) | bits::CSTS_RDY;
            } else {
                self.csts |= bits::CSTS_CFS;
            }
        }
        if !en(new) && en(old) {
            self.reset();
        }
        if shn(new) && !shn(old) {
            self.csts &= !bits::CSTS_RDY;
            self.csts = (self.csts & !bits::CSTS_SHST_MASK) | bits::CSTS_SHST_COMPLETE;
        }
        if !shn(new) && shn(old) {
            self.csts &= !bits::CSTS_SHST_MASK;
        }
    }

    fn cc_valid(&self, cc: u32) -> bool {
        let css = (cc >> bits::CC_CSS_SHIFT) & 7;
        let mps = (cc >> bits::CC_MPS_SHIFT) & 0xF;
        let ams = (cc >> bits::CC_AMS_SHIFT) & 7;
        let shn = (cc >> bits::CC_SHN_SHIFT) & 3;
        let iosqes = (cc >> bits::CC_IOSQES_SHIFT) & 0xF;
        let iocqes = (cc >> bits::CC_IOCQES_SHIFT) & 0xF;
        css == 0
            && mps == 0
            && ams == 0
            && shn == 0
            && (self.cfg.is_discovery || (iosqes == 6 && iocqes == 4))
    }

    /// Controller reset by CC.EN 1→0: CSTS.RDY and CFS clear, I/O queues
    /// forgotten.
    fn reset(&mut self) {
        self.csts &= !(bits::CSTS_RDY | bits::CSTS_CFS);
        self.io_queues.clear();
    }
}
