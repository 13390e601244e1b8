//! NVMe command layer: typed submission and completion queue entries, the
//! Fabrics commands, and a pure controller state machine that plans admin
//! and I/O commands (NVM Express Base Specification 2.0, NVMe over Fabrics
//! 1.1, NVM Command Set Specification 1.0).
//!
//! Everything here is sans-IO. The NVMe/TCP frontend decodes a
//! [`crate::nvme_tcp::CapsuleCmd`], parses its 64-byte SQE with
//! [`Sqe::parse`], and hands it to a [`Controller`]:
//!
//! - [`Controller::connect`] for the Fabrics Connect command that opens a
//!   queue;
//! - [`Controller::plan_admin`] on the admin queue, which answers with a
//!   completion (and data to return) or parks an Asynchronous Event Request;
//! - [`Controller::plan_io`] on I/O queues, which validates the command and
//!   tells the caller which backend operation to run (byte offsets and
//!   lengths), or the NVMe status to return instead.
//!
//! Host input is untrusted: every malformed or out-of-range command becomes
//! an NVMe status ([`Status`]); nothing here panics on wire input.

pub mod ana;
pub mod auth;
mod bytes;
mod controller;
mod cqe;
pub mod discovery;
pub mod fabrics;
pub mod features;
pub mod identify;
mod io;
pub mod log_page;
mod sqe;
mod status;

pub use controller::{
    AdminPlan, AerCompletion, ConnectOutcome, Controller, ControllerConfig, HealthCounters,
    NamespaceInfo, QueueInfo, AER_LIMIT, KAS_100MS, VERSION_1_3, VERSION_2_0,
};
pub use cqe::{Completion, Cqe};
pub use discovery::DiscoveryEntry;
pub use io::{parse_dsm_ranges, DsmRange, IoPlan, IoView};
pub use sqe::{admin_opcode, io_opcode, DataDirection, DataPointer, Sgl, Sqe, FABRICS_OPCODE};
pub use status::{Sct, Status};

/// Size of every Identify data structure (Base 2.0 §5.17.2).
pub const IDENTIFY_DATA_LEN: usize = 4096;

/// NSID value that addresses all namespaces (Base 2.0 §3.2.1.2).
pub const NSID_ALL: u32 = 0xFFFF_FFFF;

/// The well-known discovery subsystem NQN (Base 2.0 §4.5).
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
