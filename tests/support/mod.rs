//! Shared helpers for integration tests: `mod support;` then `use support::sshd::*;`.

pub mod sshd;
