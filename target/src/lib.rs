//! zctarget: the daemon's library half (runtime, listeners, zero-copy sender,
//! retirement, frontends). `main.rs` is only the command-line edge.

pub mod zerocopy;
