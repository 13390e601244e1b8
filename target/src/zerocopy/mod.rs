//! The zero-copy sender and its notification bookkeeping.
//!
//! See `ARCHITECTURE.md` ("The buffer-lifetime contract") for how this fits
//! with retirement: a message's payload comes back from the sender only after
//! the kernel has notified every `MSG_ZEROCOPY` call that carried it.

pub mod errqueue;
pub mod message;
pub mod policy;
pub mod reaper;
pub mod sender;
pub mod tracker;

pub use message::{Message, MessageError, INLINE_CAPACITY};
pub use sender::{
    CloseReport, Completion, Outcome, SenderCounters, Waiter, Woken, ZeroCopyPolicy,
    ZeroCopySender, COPIED_STREAK_LIMIT,
};
pub use tracker::NotificationTracker;
