//! The mixer's view of the SFU: participants come and go (roster events in), and the
//! mixer asks for their media, asks for keyframes and reports on the recording
//! (notices out). The protocol behind it is the adapter's business; the pieces it is
//! built from ([`super::control`], [`super::roster`]) are sans-IO.

use std::future::Future;

use super::control::ParticipantId;
use super::notice::Notice;
use super::roster::RosterEvent;

pub trait SfuAdapter {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The next change of the roster; `Ok(None)` once the SFU has gone away.
    fn next_event(
        &mut self,
    ) -> impl Future<Output = Result<Option<RosterEvent>, Self::Error>> + Send;

    /// Start sending a participant's RTP (once the mixer can receive its SSRCs).
    fn forward(&self, participant: &ParticipantId) -> Result<(), Self::Error>;

    /// Ask a participant's sender for a video keyframe.
    fn request_keyframe(&self, participant: &ParticipantId) -> Result<(), Self::Error>;

    /// Report a fault, its clearing or stats to the meeting.
    fn send_notice(&self, notice: Notice) -> Result<(), Self::Error>;

    /// Leave the meeting: what was sent before goes out, then the SFU's resources
    /// for the mixer (forwards, sessions) are released.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
