//! Benchmarks behind `recbox bench`: they print figures, they do not assert timing.

pub mod faults;
pub mod link;
pub mod mix;
pub mod scratch;
pub mod writer;
