//! The mixer role: compositing participants' video into one picture at a steady
//! frame rate, and the link to the recorder.

pub mod compositor;
pub mod frame_clock;
pub mod layout;
pub mod scale;
pub mod uplink;
