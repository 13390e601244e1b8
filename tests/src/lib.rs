//! Shared helpers for zctarget integration tests.
