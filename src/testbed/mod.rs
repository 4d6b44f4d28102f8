//! The lab's testbed, shared by the demo, the benchmarks and the tests: small real
//! disks to break ([`scratch`], [`disk_fault`]) and a whole meeting on loopback
//! ([`meeting`]).

pub mod disk_fault;
pub mod meeting;
pub mod scratch;
