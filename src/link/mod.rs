//! The media link between mixer and recorder: a sans-IO frame codec, Noise handshake,
//! record layer and session state machines, and a thin tokio transport over TCP or
//! Unix sockets.

pub mod codec;
pub mod frame;
pub mod handshake;
pub mod keyfile;
pub mod record;
pub mod session;
pub mod transport;
