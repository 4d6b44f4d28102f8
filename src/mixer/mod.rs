//! The mixer role. For now its link to the recorder; mixing and compositing follow.

pub mod link;
pub mod timeline;
pub mod uplink;
