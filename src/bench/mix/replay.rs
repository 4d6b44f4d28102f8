//! Replays the recorded inputs as RTP over loopback UDP at real-time pace, to where
//! one side listens: recbox takes every stream on one port (RTCP multiplexed, as an
//! SFU sends it); ffmpeg takes each stream of its SDP on a port of its own, RTCP on
//! the next one up. The packets are the same; the instant each marker state really
//! went out is kept for the latency.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::inputs::{Inputs, Item};
use super::measure::monotonic_ns;
use crate::ingest::rtcp;
use crate::sfu::sim::session::ntp_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Every stream's RTP and RTCP to one address.
    Muxed(SocketAddr),
    /// Stream `i` to `base_port + 2i` (RTCP to the port above), in the inputs' order.
    PerStream { host: IpAddr, base_port: u16 },
}

impl Destination {
    fn rtp(&self, stream: usize) -> SocketAddr {
        match *self {
            Destination::Muxed(addr) => addr,
            Destination::PerStream { host, base_port } => {
                SocketAddr::new(host, base_port + 2 * stream as u16)
            }
        }
    }

    fn rtcp(&self, stream: usize) -> SocketAddr {
        match *self {
            Destination::Muxed(addr) => addr,
            Destination::PerStream { host, base_port } => {
                SocketAddr::new(host, base_port + 2 * stream as u16 + 1)
            }
        }
    }
}

/// What the replay did, in [`monotonic_ns`] time.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayLog {
    pub(crate) started_ns: u64,
    ended_ns: u64,
    /// By marker state: when its first packet went out.
    pub(crate) state_sent_ns: Vec<Option<u64>>,
    /// Send calls that failed (nothing listening yet, a full socket buffer).
    pub(crate) send_errors: u64,
    /// How far behind its instant the latest packet went out, at worst.
    pub(crate) worst_lag: Duration,
}

/// Sends the whole schedule, sleeping until each packet is due. `at_offset(d)` is
/// called once the replay has run `d` for each `d` in `checkpoints` (ascending), to
/// take measurements on time.
pub(crate) fn replay(
    inputs: &Inputs,
    to: Destination,
    checkpoints: &[Duration],
    at_offset: &mut dyn FnMut(Duration),
) -> std::io::Result<ReplayLog> {
    replay_for(inputs, to, inputs.duration, checkpoints, at_offset)
}

/// [`replay`] for `total`, the schedule sent again and again back to back: lap
/// `k` goes out `k` times the inputs' duration later, its RTP sequence numbers and
/// timestamps moved on by what one lap holds, so every stream goes on without a
/// gap (inputs of whole groups of pictures begin each lap with a keyframe). Marker
/// states are logged on the first lap only.
pub(crate) fn replay_for(
    inputs: &Inputs,
    to: Destination,
    total: Duration,
    checkpoints: &[Duration],
    at_offset: &mut dyn FnMut(Duration),
) -> std::io::Result<ReplayLog> {
    let socket = UdpSocket::bind(match to.rtp(0).ip() {
        IpAddr::V4(_) => "0.0.0.0:0",
        IpAddr::V6(_) => "[::]:0",
    })?;
    let mut counts = vec![(0u32, 0u32); inputs.streams.len()];
    let mut log = ReplayLog {
        state_sent_ns: vec![None; inputs.marker_states as usize],
        ..ReplayLog::default()
    };
    let start = Instant::now();
    let unix_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    log.started_ns = monotonic_ns();
    let mut pending = checkpoints.iter().copied().peekable();
    // RTP packets of each stream in one lap: how far a lap moves its sequence numbers.
    let mut lap_packets = vec![0u16; inputs.streams.len()];
    for s in &inputs.schedule {
        if matches!(s.item, Item::Rtp { .. }) {
            lap_packets[s.stream] = lap_packets[s.stream].wrapping_add(1);
        }
    }
    let laps = (0u32..).map(|lap| (lap, inputs.duration * lap));
    let mut packet = Vec::new();
    'laps: for (lap, lap_start) in laps {
        for s in &inputs.schedule {
            let at = lap_start + s.at;
            if at >= total {
                break 'laps;
            }
            while let Some(&c) = pending.peek().filter(|&&c| c <= at) {
                sleep_until(start + c);
                at_offset(c);
                pending.next();
            }
            sleep_until(start + at);
            log.worst_lag = log.worst_lag.max(start.elapsed().saturating_sub(at));
            let stream = &inputs.streams[s.stream];
            let (packets, octets) = &mut counts[s.stream];
            let sent = match &s.item {
                Item::Rtp { data, marker_state } => {
                    if let Some(state) = marker_state.filter(|_| lap == 0) {
                        log.state_sent_ns[state as usize] = Some(monotonic_ns());
                    }
                    *packets = packets.wrapping_add(1);
                    *octets = octets.wrapping_add((data.len() - 12) as u32);
                    let ticks =
                        lap_start.as_micros() * u128::from(stream.kind.clock_rate()) / 1_000_000;
                    let seq = lap_packets[s.stream].wrapping_mul(lap as u16);
                    shift_rtp(data, seq, ticks as u32, &mut packet);
                    socket.send_to(&packet, to.rtp(s.stream))
                }
                Item::Report => {
                    let ticks = at.as_micros() * u128::from(stream.kind.clock_rate()) / 1_000_000;
                    let report = rtcp::sender_report(
                        stream.ssrc,
                        ntp_time(unix_start + at),
                        stream.ts0.wrapping_add(ticks as u32),
                        *packets,
                        *octets,
                    )
                    .expect("a sender report without blocks always fits");
                    socket.send_to(&report, to.rtcp(s.stream))
                }
            };
            log.send_errors += u64::from(sent.is_err());
        }
    }
    sleep_until(start + total);
    for c in pending {
        sleep_until(start + c);
        at_offset(c);
    }
    log.ended_ns = monotonic_ns();
    Ok(log)
}

/// `rtp` into `out` with its sequence number moved on by `seq` and its timestamp
/// by `ticks` (RFC 3550 header: sequence number at bytes 2-3, timestamp at 4-7).
fn shift_rtp(rtp: &[u8], seq: u16, ticks: u32, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(rtp);
    let old_seq = u16::from_be_bytes([rtp[2], rtp[3]]);
    out[2..4].copy_from_slice(&old_seq.wrapping_add(seq).to_be_bytes());
    let old_ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
    out[4..8].copy_from_slice(&old_ts.wrapping_add(ticks).to_be_bytes());
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rtp::{is_rtcp, peek_ssrc};
    use crate::sfu::sim::CodecMix;
    use crate::synth::PatternSpec;

    #[test]
    fn laps_go_on_with_sequence_numbers_and_timestamps() {
        let video = PatternSpec {
            width: 64,
            height: 48,
            ..PatternSpec::default()
        };
        let inputs =
            Inputs::record(1, Duration::from_millis(100), video, CodecMix::default(), 1).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let to = Destination::Muxed(socket.local_addr().unwrap());
        // Two and a half laps.
        let log = replay_for(&inputs, to, Duration::from_millis(250), &[], &mut |_| {}).unwrap();
        assert_eq!(log.send_errors, 0);
        let mut audio = Vec::new();
        let mut buf = [0u8; 2000];
        while let Ok(n) = socket.recv(&mut buf) {
            let p = &buf[..n];
            if !is_rtp_audio(p, &inputs) {
                continue;
            }
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            audio.push((seq, ts));
        }
        // 20 ms packets: 5 a lap, 13 in 250 ms, each one on from the one before.
        assert_eq!(audio.len(), 13, "{audio:?}");
        for w in audio.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "{audio:?}");
            assert_eq!(w[1].1, w[0].1.wrapping_add(960), "{audio:?}");
        }
    }

    fn is_rtp_audio(p: &[u8], inputs: &Inputs) -> bool {
        let audio = inputs
            .streams
            .iter()
            .find(|s| s.kind == crate::ingest::MediaKind::Audio)
            .unwrap();
        !is_rtcp(p) && peek_ssrc(p) == Some(audio.ssrc)
    }

    #[test]
    fn every_packet_reaches_its_port() {
        let video = PatternSpec {
            width: 64,
            height: 48,
            ..PatternSpec::default()
        };
        let inputs =
            Inputs::record(1, Duration::from_millis(200), video, CodecMix::default(), 1).unwrap();
        // Two streams: video on base, its RTCP on base+1, audio on base+2, RTCP base+3.
        let sockets: Vec<UdpSocket> = loop {
            let first = UdpSocket::bind("127.0.0.1:0").unwrap();
            let base = first.local_addr().unwrap().port();
            let rest: Option<Vec<_>> = (1..4)
                .map(|i| UdpSocket::bind(("127.0.0.1", base.checked_add(i)?)).ok())
                .collect();
            if let Some(rest) = rest.filter(|_| base % 2 == 0) {
                break std::iter::once(first).chain(rest).collect();
            }
        };
        let base = sockets[0].local_addr().unwrap().port();
        for s in &sockets {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        let mut seen = Vec::new();
        let to = Destination::PerStream {
            host: "127.0.0.1".parse().unwrap(),
            base_port: base,
        };
        let log = replay(&inputs, to, &[Duration::from_millis(100)], &mut |d| {
            seen.push(d)
        })
        .unwrap();
        assert_eq!(seen, [Duration::from_millis(100)]);
        assert_eq!(log.send_errors, 0);
        assert!(log.ended_ns >= log.started_ns + 200_000_000);
        assert_eq!(log.state_sent_ns.len(), 2);
        assert!(log.state_sent_ns.iter().all(Option::is_some));
        let mut buf = [0u8; 2000];
        for (i, socket) in sockets.iter().enumerate() {
            let stream = &inputs.streams[i / 2];
            let n = socket.recv(&mut buf).unwrap();
            let rtcp = i % 2 == 1;
            assert_eq!(is_rtcp(&buf[..n]), rtcp, "port {i}");
            // A sender report names its SSRC right after its 4-byte header.
            let ssrc = if rtcp {
                peek_ssrc(&[&[0; 4], &buf[..n]].concat())
            } else {
                peek_ssrc(&buf[..n])
            };
            assert_eq!(ssrc, Some(stream.ssrc), "port {i}");
        }
    }
}
