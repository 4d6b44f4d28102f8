//! The mixer role: the participants' audio mixed and encoded, and the link to the
//! recorder; compositing follows.

pub mod tone;
pub mod uplink;
