//! Shared helpers for integration tests: `use crate::support::project::*;`.
#![allow(dead_code)]

pub mod archive;
pub mod endless;
pub mod fleet;
pub mod haproxy;
pub mod http;
pub mod lb;
pub mod netns;
pub mod project;
pub mod sshd;
