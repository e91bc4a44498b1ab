//! Shared helpers for integration tests: `mod support;` then `use support::project::*;`.
#![allow(dead_code)]

pub mod netns;
pub mod project;
pub mod sshd;
