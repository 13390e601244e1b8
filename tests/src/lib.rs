//! Shared helpers for zctarget integration tests.

pub mod nvme_client;
pub mod perf;
