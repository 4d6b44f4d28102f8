//! The simulated SFU's sans-IO core for one connected mixer: the hello, the
//! participants and their schedule, keyframe requests and notices in; control
//! messages, datagrams and events out. Time is passed in.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use tracing::{debug, info, warn};

use super::participant::{Datagram, RtpPorts, SimParticipant};
use super::schedule::{Action, ScheduleEvent};
use super::{KeyframeCause, SimConfig, SimError, SimEvent, MAX_PARTICIPANTS};
use crate::ingest::rtcp::{self, RtcpMessage};
use crate::link::frame::text;
use crate::sfu::control::{Hello, MixerMessage, SfuMessage, CONTROL_VERSION};
use crate::sfu::notice::{Announcement, Audience};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The name the simulated SFU gives in its welcome.
pub const SFU_NAME: &str = "recbox sfu-sim";

#[derive(Debug, Clone, PartialEq)]
pub enum SimOutput {
    /// Send on the control channel.
    Control(SfuMessage),
    /// Send to the mixer's RTP host.
    Datagram(Datagram),
    Event(SimEvent),
}

pub struct SimSession {
    config: SimConfig,
    ports: RtpPorts,
    rng: StdRng,
    /// The session's start, and the Unix time then (for sender reports).
    t0: Instant,
    unix_t0: Duration,
    schedule: VecDeque<ScheduleEvent>,
    participants: BTreeMap<u8, SimParticipant>,
    /// How often each participant number has joined (new SSRCs every time).
    generations: [u16; MAX_PARTICIPANTS as usize],
}

impl SimSession {
    /// Starts a session for a mixer that sent `hello` at `now` (Unix time `unix_now`):
    /// the welcome and the initial participants' joins come out.
    pub fn new(
        config: &SimConfig,
        hello: &Hello,
        rng: StdRng,
        now: Instant,
        unix_now: Duration,
    ) -> Result<(Self, Vec<SimOutput>), SimError> {
        if hello.version != CONTROL_VERSION {
            return Err(SimError::Version(hello.version));
        }
        let ports = RtpPorts {
            audio: hello
                .audio_port
                .or(config.audio_port)
                .ok_or(SimError::NoPort("audio"))?,
            video: hello
                .video_port
                .or(config.video_port)
                .ok_or(SimError::NoPort("video"))?,
        };
        let mut session = Self {
            config: config.clone(),
            ports,
            rng,
            t0: now,
            unix_t0: unix_now,
            schedule: config.schedule.events().iter().copied().collect(),
            participants: BTreeMap::new(),
            generations: [0; MAX_PARTICIPANTS as usize],
        };
        let mut out = vec![
            SimOutput::Control(SfuMessage::Welcome {
                version: CONTROL_VERSION,
                sfu: text(SFU_NAME),
            }),
            SimOutput::Event(SimEvent::MixerConnected {
                name: hello.name.to_string(),
            }),
        ];
        for number in 1..=config.participants {
            session.join(number, &mut out)?;
        }
        Ok((session, out))
    }

    pub fn ports(&self) -> RtpPorts {
        self.ports
    }

    fn join(&mut self, number: u8, out: &mut Vec<SimOutput>) -> Result<(), SimError> {
        let generation = &mut self.generations[usize::from(number - 1)];
        let participant =
            SimParticipant::new(number, *generation, &self.config, self.ports, &mut self.rng)?;
        *generation += 1;
        info!(participant = number, "joins");
        out.push(SimOutput::Control(SfuMessage::Join {
            participant: participant.info().clone(),
        }));
        self.participants.insert(number, participant);
        Ok(())
    }

    fn leave(&mut self, number: u8, out: &mut Vec<SimOutput>) {
        if let Some(p) = self.participants.remove(&number) {
            info!(participant = number, "leaves");
            out.push(SimOutput::Control(SfuMessage::Leave {
                id: p.info().id.clone(),
            }));
        }
    }

    fn announce(&self, number: u8, out: &mut Vec<SimOutput>) {
        if let Some(p) = self.participants.get(&number) {
            info!(participant = number, "announced again");
            out.push(SimOutput::Control(SfuMessage::Join {
                participant: p.info().clone(),
            }));
        }
    }

    fn by_id(&mut self, id: &str) -> Option<&mut SimParticipant> {
        let found = self.participants.values_mut().find(|p| p.info().id == id);
        if found.is_none() {
            warn!(
                id,
                "the mixer named a participant that is not in the meeting"
            );
        }
        found
    }

    fn force_keyframe(participant: &mut SimParticipant, cause: KeyframeCause) -> SimOutput {
        participant.force_keyframe();
        debug!(
            participant = participant.number(),
            ?cause,
            "keyframe forced"
        );
        SimOutput::Event(SimEvent::KeyframeForced {
            participant: participant.number(),
            cause,
        })
    }

    /// A control message from the mixer.
    pub fn on_message(&mut self, message: MixerMessage, now: Instant) -> Vec<SimOutput> {
        match message {
            MixerMessage::Hello(_) => {
                warn!("second hello from the mixer ignored");
                Vec::new()
            }
            MixerMessage::Forward { id } => {
                if let Some(p) = self.by_id(&id) {
                    p.start(now);
                }
                Vec::new()
            }
            MixerMessage::KeyframeRequest { id } => self
                .by_id(&id)
                .map(|p| Self::force_keyframe(p, KeyframeCause::Control))
                .into_iter()
                .collect(),
            MixerMessage::Notice(notice) => {
                let mut announcement = Announcement::new(&notice);
                if announcement.to == Audience::Terminals {
                    // Shown on every terminal in the meeting now.
                    announcement.terminals = self
                        .participants
                        .values()
                        .map(|p| p.info().id.to_string())
                        .collect();
                }
                vec![SimOutput::Event(SimEvent::Announcement(announcement))]
            }
        }
    }

    /// RTCP from the mixer on the RTP port: PLIs are answered, the rest is ignored.
    pub fn on_rtcp(&mut self, data: &[u8]) -> Vec<SimOutput> {
        let messages = match rtcp::parse(data) {
            Ok(m) => m,
            Err(e) => {
                debug!("ignoring RTCP from the mixer: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for m in messages {
            if let RtcpMessage::Pli { media_ssrc, .. } = m {
                let target = self
                    .participants
                    .values_mut()
                    .find(|p| p.info().video.ssrc == media_ssrc);
                match target {
                    Some(p) => out.push(Self::force_keyframe(p, KeyframeCause::Pli)),
                    None => debug!(media_ssrc, "PLI for a stream not sent"),
                }
            }
        }
        out
    }

    /// Everything due at `now`: joins and leaves of the schedule, media, reports.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<SimOutput>, SimError> {
        let mut out = Vec::new();
        while let Some(event) = self.schedule.front().filter(|e| self.t0 + e.at <= now) {
            let event = *event;
            self.schedule.pop_front();
            match event.action {
                Action::Join => self.join(event.participant, &mut out)?,
                Action::Leave => self.leave(event.participant, &mut out),
                Action::Announce => self.announce(event.participant, &mut out),
            }
        }
        let (t0, unix_t0) = (self.t0, self.unix_t0);
        let ntp = |at: Instant| ntp_time(unix_t0 + (at - t0));
        let mut datagrams = Vec::new();
        let mut sent = Vec::new();
        for p in self.participants.values_mut() {
            p.poll(now, ntp, &mut datagrams, &mut sent)?;
        }
        out.extend(datagrams.into_iter().map(SimOutput::Datagram));
        out.extend(
            sent.into_iter()
                .map(|s| SimOutput::Event(SimEvent::Sent(s))),
        );
        Ok(out)
    }

    /// When [`poll`](Self::poll) has work next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let scheduled = self.schedule.front().map(|e| self.t0 + e.at);
        self.participants
            .values()
            .filter_map(SimParticipant::next_due)
            .chain(scheduled)
            .min()
    }
}

/// NTP time (32.32 fixed point seconds since 1900) of a Unix time.
pub fn ntp_time(unix: Duration) -> u64 {
    let secs = unix.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
    secs << 32 | frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rtp::{is_rtcp, peek_ssrc, RtpPacket};
    use crate::ingest::{Demux, IngestOutput, MediaKind, StreamConfig};
    use crate::link::frame::Stats;
    use crate::sfu::control::ParticipantInfo;
    use crate::sfu::notice::Notice;
    use crate::sfu::sim::SentMedia;
    use crate::synth::PatternSpec;
    use rand::SeedableRng;

    fn config(participants: u8) -> SimConfig {
        SimConfig {
            participants,
            video: PatternSpec {
                width: 64,
                height: 48,
                ..PatternSpec::default()
            },
            report_sent: true,
            ..SimConfig::default()
        }
    }

    fn hello(video_port: Option<u16>) -> Hello {
        Hello {
            version: CONTROL_VERSION,
            name: text("test mixer"),
            audio_port: Some(5004),
            video_port,
        }
    }

    fn joined(out: &[SimOutput]) -> Vec<ParticipantInfo> {
        out.iter()
            .filter_map(|o| match o {
                SimOutput::Control(SfuMessage::Join { participant }) => Some(participant.clone()),
                _ => None,
            })
            .collect()
    }

    fn start(config: &SimConfig, t0: Instant) -> (SimSession, Vec<SimOutput>) {
        SimSession::new(
            config,
            &hello(Some(5006)),
            StdRng::seed_from_u64(config.seed),
            t0,
            Duration::from_secs(1_700_000_000),
        )
        .unwrap()
    }

    /// Runs the session in 5 ms steps up to `until`, returning everything it put out.
    fn run(sim: &mut SimSession, from: Instant, until: Instant) -> Vec<SimOutput> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= until {
            out.extend(sim.poll(now).unwrap());
            now += Duration::from_millis(5);
        }
        out
    }

    #[test]
    fn welcome_then_distinct_participants_on_the_requested_ports() {
        let t0 = Instant::now();
        let (sim, out) = start(&config(3), t0);
        assert!(matches!(
            &out[0],
            SimOutput::Control(SfuMessage::Welcome { version: 1, .. })
        ));
        let people = joined(&out);
        assert_eq!(people.len(), 3);
        assert_eq!(people[1].id, "p2");
        assert_eq!(people[1].name, "Participant 2");
        assert_eq!((people[0].audio.port, people[0].video.port), (5004, 5006));
        let mut ssrcs: Vec<u32> = people
            .iter()
            .flat_map(|p| [p.audio.ssrc, p.video.ssrc])
            .collect();
        ssrcs.sort_unstable();
        ssrcs.dedup();
        assert_eq!(ssrcs.len(), 6);
        // Nothing is sent before the mixer asks.
        assert_eq!(sim.next_wakeup(), None);
    }

    #[test]
    fn ports_come_from_hello_or_config() {
        let t0 = Instant::now();
        let rng = || StdRng::seed_from_u64(1);
        let err = SimSession::new(&config(1), &hello(None), rng(), t0, Duration::ZERO)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the mixer gave no video port and none is configured (--video-port)"
        );
        let mut c = config(1);
        c.video_port = Some(7000);
        let (sim, _) = SimSession::new(&c, &hello(None), rng(), t0, Duration::ZERO).unwrap();
        assert_eq!(
            sim.ports(),
            RtpPorts {
                audio: 5004,
                video: 7000
            }
        );
        let old = Hello {
            version: 9,
            ..hello(Some(1))
        };
        assert!(matches!(
            SimSession::new(&c, &old, rng(), t0, Duration::ZERO),
            Err(SimError::Version(9))
        ));
    }

    #[test]
    fn forwarded_media_is_paced_and_depacketizes_exactly() {
        let t0 = Instant::now();
        let (mut sim, out) = start(&config(2), t0);
        let people = joined(&out);
        sim.on_message(
            MixerMessage::Forward {
                id: people[0].id.clone(),
            },
            t0,
        );
        let out = run(&mut sim, t0, t0 + Duration::from_millis(995));
        let mut demux = Demux::new(1);
        let sfu = "127.0.0.1:40000".parse().unwrap();
        for s in [&people[0].audio, &people[0].video] {
            let kind = if s.payload_type == 96 {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            demux
                .add_stream(StreamConfig::new(s.ssrc, kind, s.payload_type))
                .unwrap();
        }
        let mut received = Vec::new();
        let mut srs = 0;
        for o in &out {
            if let SimOutput::Datagram(d) = o {
                if is_rtcp(&d.data) {
                    srs += 1;
                    continue;
                }
                let ssrc = peek_ssrc(&d.data).unwrap();
                assert!(ssrc == people[0].audio.ssrc || ssrc == people[0].video.ssrc);
                let rtp = RtpPacket::parse(&d.data, 1500).unwrap();
                assert_eq!(rtp.ssrc == people[0].video.ssrc, d.port == 5006);
                received.extend(demux.push_datagram(&d.data, sfu, t0));
            }
        }
        received.extend(demux.poll(t0 + Duration::from_secs(5)));
        let sent: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                SimOutput::Event(SimEvent::Sent(s)) => Some(s),
                _ => None,
            })
            .collect();
        // One second: 30 video frames and 50 audio packets, one sender report each.
        let count = |k| sent.iter().filter(|s| s.kind == k).count();
        assert_eq!((count(MediaKind::Video), count(MediaKind::Audio)), (30, 50));
        assert_eq!(srs, 2);
        assert!(sent[0].keyframe);
        let frames: Vec<_> = received
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), sent.len());
        for s in &sent {
            assert!(frames
                .iter()
                .any(|f| f.ssrc == s.ssrc && f.ts as u32 == s.ts && f.data == s.data));
        }
    }

    #[test]
    fn participants_send_the_codec_their_join_names() {
        use crate::media::codec::VideoFormat;
        use crate::synth::PatternCodec;
        let t0 = Instant::now();
        let mut c = config(3);
        c.codecs = super::super::CodecMix::default()
            .with(&"2".parse().unwrap(), PatternCodec::Vp8)
            .unwrap()
            .with(&"3".parse().unwrap(), PatternCodec::Vp9)
            .unwrap();
        let (mut sim, out) = start(&c, t0);
        let people = joined(&out);
        let names: Vec<&str> = people.iter().map(|p| p.video_codec.name()).collect();
        assert_eq!(names, ["h264", "vp8", "vp9"]);
        for p in &people[1..] {
            sim.on_message(MixerMessage::Forward { id: p.id.clone() }, t0);
        }
        let out = run(&mut sim, t0, t0 + Duration::from_millis(495));
        let mut demux = Demux::new(1);
        let mut vp8 = StreamConfig::new(people[1].video.ssrc, MediaKind::Video, 96);
        vp8.format = VideoFormat::Vp8;
        demux.add_stream(vp8).unwrap();
        let sfu = "127.0.0.1:40000".parse().unwrap();
        let mut frames = Vec::new();
        let mut vp9_packets = 0;
        for o in &out {
            if let SimOutput::Datagram(d) = o {
                if is_rtcp(&d.data) {
                    continue;
                }
                if peek_ssrc(&d.data) == Some(people[2].video.ssrc) {
                    vp9_packets += 1;
                }
                frames.extend(demux.push_datagram(&d.data, sfu, t0));
            }
        }
        frames.extend(demux.poll(t0 + Duration::from_secs(5)));
        let sent: Vec<&SentMedia> = out
            .iter()
            .filter_map(|o| match o {
                SimOutput::Event(SimEvent::Sent(s)) if s.ssrc == people[1].video.ssrc => Some(s),
                _ => None,
            })
            .collect();
        let got: Vec<&crate::ingest::Frame> = frames
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        // 15 VP8 frames in half a second, through the depacketizer bit-exact.
        assert_eq!((sent.len(), got.len()), (15, 15));
        for (s, f) in sent.iter().zip(&got) {
            assert!(f.data == s.data && f.keyframe == s.keyframe);
        }
        assert!(got[0].keyframe);
        assert!(vp9_packets >= 15, "{vp9_packets} VP9 packets");
    }

    #[test]
    fn pli_and_control_requests_force_keyframes() {
        let t0 = Instant::now();
        let mut c = config(2);
        c.video.gop = 1000;
        let (mut sim, out) = start(&c, t0);
        let people = joined(&out);
        sim.on_message(
            MixerMessage::Forward {
                id: people[1].id.clone(),
            },
            t0,
        );
        run(&mut sim, t0, t0 + Duration::from_millis(100));
        let pli = rtcp::pli(7, people[1].video.ssrc).unwrap();
        assert_eq!(
            sim.on_rtcp(&pli),
            vec![SimOutput::Event(SimEvent::KeyframeForced {
                participant: 2,
                cause: KeyframeCause::Pli
            })]
        );
        let keyframes = |out: &[SimOutput]| {
            out.iter()
                .filter(|o| matches!(o, SimOutput::Event(SimEvent::Sent(s)) if s.keyframe && s.kind == MediaKind::Video))
                .count()
        };
        let t1 = t0 + Duration::from_millis(105);
        assert_eq!(
            keyframes(&run(&mut sim, t1, t1 + Duration::from_millis(100))),
            1
        );
        let request = MixerMessage::KeyframeRequest {
            id: people[1].id.clone(),
        };
        assert_eq!(sim.on_message(request, t1).len(), 1);
        let t2 = t1 + Duration::from_millis(105);
        assert_eq!(
            keyframes(&run(&mut sim, t2, t2 + Duration::from_millis(100))),
            1
        );
        // Unknown SSRCs, unknown ids and garbage are ignored.
        assert!(sim.on_rtcp(&rtcp::pli(7, 1).unwrap()).is_empty());
        assert!(sim.on_rtcp(&[0x81, 206]).is_empty());
        assert!(sim
            .on_message(MixerMessage::KeyframeRequest { id: text("p9") }, t2)
            .is_empty());
    }

    #[test]
    fn schedule_joins_and_leaves_with_fresh_ssrcs() {
        let t0 = Instant::now();
        let mut c = config(2);
        c.schedule = "leave 2@1s, join 5@1s, join 2@2s, announce 5@2s"
            .parse()
            .unwrap();
        let (mut sim, first) = start(&c, t0);
        let old_p2 = joined(&first)[1].clone();
        assert_eq!(sim.next_wakeup(), Some(t0 + Duration::from_secs(1)));
        let out = run(&mut sim, t0, t0 + Duration::from_secs(2));
        let controls: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                SimOutput::Control(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(controls.len(), 4);
        assert_eq!(controls[0], SfuMessage::Leave { id: text("p2") });
        let again = joined(&out);
        assert_eq!(again[0].id, "p5");
        assert_eq!(again[1].id, "p2");
        assert_ne!(again[1].video.ssrc, old_p2.video.ssrc);
        // Announced again: the same join, word for word.
        assert_eq!(again[2], again[0]);
    }

    #[test]
    fn notices_become_announcements() {
        let t0 = Instant::now();
        let (mut sim, _) = start(&config(1), t0);
        let stats = Stats {
            file_bytes: 1,
            index_bytes: 2,
            duration_ms: 3000,
            free_bytes: 4,
            at: 5,
        };
        let stats = Notice::Stats {
            stats,
            faults: Vec::new(),
        };
        let out = sim.on_message(MixerMessage::Notice(stats.clone()), t0);
        assert_eq!(
            out,
            vec![SimOutput::Event(SimEvent::Announcement(Announcement::new(
                &stats
            )))]
        );
        // A fault is shown on the terminal of the one participant in the meeting.
        let fault = Notice::Fault(crate::link::frame::Fault {
            recording: crate::link::frame::text("r"),
            kind: crate::link::frame::FaultKind::DiskFull,
            target: crate::link::frame::FaultTarget::Storage,
            detail: crate::link::frame::text(""),
            at: 6,
        });
        let out = sim.on_message(MixerMessage::Notice(fault), t0);
        let [SimOutput::Event(SimEvent::Announcement(a))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(a.terminals, ["p1"]);
    }

    #[test]
    fn ntp_time_of_unix_time() {
        assert_eq!(ntp_time(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp_time(Duration::from_millis(1500)),
            (NTP_UNIX_OFFSET + 1) << 32 | 1 << 31
        );
    }
}
