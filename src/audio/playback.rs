//! Chimes on the box's speaker, on a thread of their own so that whoever asks for one
//! never waits for the sound card.
//!
//! One chime plays at a time and at most one waits: a newer request takes the waiting
//! one's place, and a chime already playing or waiting is not asked for twice, so a
//! burst of events gives a chime or two, never a queue that goes on for seconds.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tracing::{debug, warn};

use super::chime::Chime;
use super::device::Speaker;
use super::DeviceError;

#[derive(Debug, Default)]
struct Slots {
    playing: Option<Chime>,
    waiting: Option<Chime>,
    /// The speaker failed: no more chimes.
    failed: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    slots: Mutex<Slots>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // A panic elsewhere leaves the slots consistent: every update is one assignment.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Plays chimes without blocking its caller; silent when there is no speaker.
#[derive(Debug)]
pub struct ChimePlayer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ChimePlayer {
    /// Plays on the ALSA PCM `device` (e.g. `default`, `hw:1,0`). A missing card, a
    /// device that cannot be opened or a build without ALSA is logged once, as a
    /// warning, and gives a silent player.
    pub fn open(device: &str) -> Self {
        match super::open_speaker(device) {
            Ok(speaker) => Self::new(speaker),
            Err(e) => {
                warn!(device, "no chimes: {e}");
                Self::silent()
            }
        }
    }

    pub fn new(speaker: Box<dyn Speaker>) -> Self {
        let shared = Arc::new(Shared::default());
        // The thread logs where its creator does.
        let log = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name("chime-player".into())
            .spawn({
                let shared = shared.clone();
                move || tracing::dispatcher::with_default(&log, || play_chimes(&shared, speaker))
            })
            .expect("spawning the chime thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// A player that plays nothing (chimes turned off, or no speaker).
    pub(crate) fn silent() -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            thread: None,
        }
    }

    /// Whether chimes are heard: false without a speaker or after it failed.
    pub fn is_enabled(&self) -> bool {
        self.thread.is_some() && !self.shared.lock().failed
    }

    /// Asks for `chime` and returns at once; false if it will not be played (no
    /// speaker, or the same chime is already playing or waiting).
    pub fn play(&self, chime: Chime) -> bool {
        if self.thread.is_none() {
            return false;
        }
        let mut slots = self.shared.lock();
        if slots.failed || slots.closed {
            return false;
        }
        if slots.playing == Some(chime) || slots.waiting == Some(chime) {
            debug!(%chime, "chime already on its way");
            return false;
        }
        if let Some(dropped) = slots.waiting.replace(chime) {
            debug!(%dropped, %chime, "chime dropped for a newer one");
        }
        self.shared.wake.notify_all();
        true
    }
}

impl Drop for ChimePlayer {
    /// Lets the chime playing and the one waiting finish (a stop chime at shutdown is
    /// heard), then ends the thread.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn play_chimes(shared: &Shared, mut speaker: Box<dyn Speaker>) {
    loop {
        let chime = {
            let mut slots = shared.lock();
            loop {
                if let Some(chime) = slots.waiting.take() {
                    slots.playing = Some(chime);
                    break chime;
                }
                if slots.closed {
                    return;
                }
                slots = shared.wake.wait(slots).unwrap_or_else(|e| e.into_inner());
            }
        };
        debug!(%chime, speaker = speaker.name(), "chime");
        let played = speaker.play(&chime.pcm());
        let mut slots = shared.lock();
        slots.playing = None;
        if let Err(e) = played {
            warn!(speaker = speaker.name(), %chime, "speaker failed, no more chimes: {e}");
            slots.failed = true;
            slots.waiting = None;
            return;
        }
    }
}

/// A speaker that keeps what it is given, for tests. Each play can be held until the
/// test lets it finish, and the speaker can fail after a number of chimes.
#[derive(Debug, Clone, Default)]
pub struct SimulatedSpeaker {
    played: Arc<Mutex<Vec<Vec<i16>>>>,
    gate: Option<Arc<Mutex<std::sync::mpsc::Receiver<()>>>>,
    fail_after: Option<usize>,
}

impl SimulatedSpeaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Each play waits for one `()` on the returned sender (or its drop) before it ends.
    #[cfg(test)]
    fn gated(mut self) -> (Self, std::sync::mpsc::Sender<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.gate = Some(Arc::new(Mutex::new(rx)));
        (self, tx)
    }

    /// Plays `n` chimes, then fails as an unplugged card would.
    #[cfg(test)]
    fn failing_after(mut self, n: usize) -> Self {
        self.fail_after = Some(n);
        self
    }

    /// The samples of every chime played so far.
    pub fn played(&self) -> Vec<Vec<i16>> {
        self.played.lock().unwrap().clone()
    }
}

impl Speaker for SimulatedSpeaker {
    fn name(&self) -> &str {
        "simulated"
    }

    fn play(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        if self.fail_after == Some(self.played.lock().unwrap().len()) {
            return Err(DeviceError::Simulated("the speaker is gone".into()));
        }
        if let Some(gate) = &self.gate {
            let _ = gate.lock().unwrap().recv();
        }
        self.played.lock().unwrap().push(pcm.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::{logged, wait_until};

    fn chimes(played: &[Vec<i16>]) -> Vec<Chime> {
        played
            .iter()
            .map(|pcm| {
                *Chime::ALL
                    .iter()
                    .find(|c| c.pcm() == *pcm)
                    .expect("a chime")
            })
            .collect()
    }

    #[test]
    fn plays_in_order_without_blocking_and_drops_rather_than_queues() {
        let (speaker, release) = SimulatedSpeaker::new().gated();
        let player = ChimePlayer::new(Box::new(speaker.clone()));
        assert!(player.is_enabled());
        // The speaker holds the first chime; the caller goes on.
        assert!(player.play(Chime::Start));
        wait_until(|| player.shared.lock().playing.is_some());
        assert!(!player.play(Chime::Start), "already playing");
        assert!(player.play(Chime::Fault));
        assert!(!player.play(Chime::Fault), "already waiting");
        // A newer chime takes the waiting one's place.
        assert!(player.play(Chime::Stop));
        drop(release);
        drop(player);
        assert_eq!(chimes(&speaker.played()), [Chime::Start, Chime::Stop]);
    }

    #[test]
    fn dropping_the_player_lets_the_last_chime_finish() {
        let speaker = SimulatedSpeaker::new();
        let player = ChimePlayer::new(Box::new(speaker.clone()));
        player.play(Chime::Stop);
        drop(player);
        assert_eq!(chimes(&speaker.played()), [Chime::Stop]);
    }

    #[test]
    fn a_failing_speaker_is_logged_once_and_turns_chimes_off() {
        let speaker = SimulatedSpeaker::new().failing_after(1);
        let ((), log) = logged(|| {
            let player = ChimePlayer::new(Box::new(speaker.clone()));
            player.play(Chime::Start);
            wait_until(|| !speaker.played().is_empty());
            player.play(Chime::Fault);
            wait_until(|| !player.is_enabled());
            assert!(!player.play(Chime::Stop));
        });
        assert_eq!(chimes(&speaker.played()), [Chime::Start]);
        assert_eq!(log.matches("WARN").count(), 1, "{log}");
        assert!(log.contains("speaker failed, no more chimes"), "{log}");
    }

    #[test]
    fn a_silent_player_plays_nothing() {
        let player = ChimePlayer::silent();
        assert!(!player.is_enabled());
        assert!(!player.play(Chime::Fault));
    }

    #[cfg(not(feature = "alsa"))]
    #[test]
    fn without_alsa_opening_a_speaker_says_so_and_carries_on() {
        let (player, log) = logged(|| ChimePlayer::open("default"));
        assert!(!player.is_enabled());
        assert!(!player.play(Chime::Start));
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("built without the alsa feature"), "{log}");
    }
}
