//! The recorder: accepts media-link sessions and writes recording, index and playlist.

pub(crate) mod fragmenter;
pub mod index;
pub mod inspect;
pub mod integrity;
pub mod layout;
pub mod monitor;
pub(crate) mod playlist;
pub mod recording;
pub mod recovery;
pub mod resume;
pub mod service;
pub(crate) mod writer;
