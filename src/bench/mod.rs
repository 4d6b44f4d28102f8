//! Benchmarks behind `recbox bench`: they print figures, they do not assert timing.

pub mod link;
pub mod writer;
