//! zctarget: the daemon's library half (runtime, listeners, zero-copy
//! sender, retirement, frontends). `main.rs` is only the command-line edge.

pub mod admin;
pub mod admission;
pub mod block;
pub mod cluster;
pub mod command;
pub mod ctl;
pub mod daemon;
pub mod driver;
pub mod engine;
pub mod exports;
pub mod failover;
pub mod iscsi;
pub mod listener;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod nvmf;
pub mod outbound;
pub mod peer;
pub mod placement;
pub mod reactor;
pub mod slots;
pub mod sockio;
pub mod zerocopy;
