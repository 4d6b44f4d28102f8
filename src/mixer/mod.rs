//! The mixer role: the participants' audio mixed and encoded, and the link to the
//! recorder; compositing follows.

pub mod audio_encoder;
pub mod audio_mixer;
pub mod tone;
pub mod uplink;
