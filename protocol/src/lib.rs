//! Sans-IO wire formats for zctarget.
//!
//! Pure functions from bytes to typed PDUs (or typed errors) and back: no
//! sockets, no runtime, no allocation when parsing. Every parser accepts
//! arbitrary bytes without panicking, so each can be fuzzed and
//! property-tested on its own.
//!
//! - [`iscsi`]: RFC 7143 Basic Header Segment, typed PDU headers, login
//!   text keys, CRC32C digests.
//! - [`nvme_tcp`]: NVM Express TCP Transport Specification 1.0 PDU headers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// No panic may be reachable from wire input (design.md, "Bad input").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

#[macro_use]
mod macros;
mod wire;

pub mod iscsi;
pub mod nvme;
pub mod nvme_tcp;
pub mod peer;
pub mod scsi;
