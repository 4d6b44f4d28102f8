//! The lab's testbed, shared by the demo, the benchmarks and the tests: small real
//! disks to break ([`scratch`], [`disk_fault`]), a whole meeting on loopback
//! ([`meeting`]), and a real Janus meeting in a network namespace of its own
//! ([`janus`], [`netns`], [`process`]).

pub mod disk_fault;
pub mod janus;
pub mod meeting;
pub mod netns;
pub mod process;
pub mod scratch;
