//! Analysis gates: sampled during the rollout's bakes.

pub(crate) mod gate;
