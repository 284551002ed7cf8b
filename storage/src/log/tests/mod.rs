//! Specification tests for the partition log, one file per area of behaviour.

pub(crate) mod support;

mod append_and_read;
mod crash_recovery;
mod log_start_and_rewrite;
mod retention_and_truncation;
mod timestamps;
