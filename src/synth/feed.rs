//! One synthetic participant as a media-link feed: pattern video and tone audio
//! interleaved in time order, exactly as the mixer sends them to the recorder.

use super::audio::{AudioError, EncodedPacket, ToneSource, ToneSpec};
use super::video::{PatternCodec, PatternError, PatternSource, PatternSpec};
use crate::encoder::EncodedVideo;
use crate::link::frame::{
    text, AudioCodec, AudioParams, Media, StartParams, Track, VideoCodec, VideoParams,
};
use crate::media::h264;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Video(#[from] PatternError),
    #[error("the media link carries H.264 only, not {0:?}")]
    NotH264(PatternCodec),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("the encoder's first frame has no {0}")]
    MissingParameterSet(&'static str),
    #[error("parameter set of {0} bytes does not fit the Start frame")]
    ParameterSetTooLong(usize),
}

pub struct SyntheticFeed {
    video: PatternSource,
    audio: ToneSource,
    next_video: EncodedVideo,
    next_audio: EncodedPacket,
    video_params: VideoParams,
    audio_params: AudioParams,
}

impl SyntheticFeed {
    pub fn new(video: PatternSpec, tone: ToneSpec) -> Result<Self, FeedError> {
        if video.codec != PatternCodec::H264 {
            return Err(FeedError::NotH264(video.codec));
        }
        let mut video_src = PatternSource::new(video)?;
        let mut audio_src = ToneSource::new(tone)?;
        let first = video_src.next_frame()?;
        let (sps, pps) = h264::parameter_sets(&first.data);
        let sps = sps.ok_or(FeedError::MissingParameterSet("SPS"))?;
        let pps = pps.ok_or(FeedError::MissingParameterSet("PPS"))?;
        let video_params = VideoParams {
            codec: VideoCodec::H264,
            sps: heapless::Vec::from_slice(sps)
                .map_err(|_| FeedError::ParameterSetTooLong(sps.len()))?,
            pps: heapless::Vec::from_slice(pps)
                .map_err(|_| FeedError::ParameterSetTooLong(pps.len()))?,
            width: video.width,
            height: video.height,
            fps: video.fps,
        };
        let audio_params = AudioParams {
            codec: AudioCodec::Opus,
            sample_rate: 48_000,
            channels: audio_src.channels(),
            pre_skip: audio_src.pre_skip(),
        };
        let next_audio = audio_src.next_packet()?;
        Ok(Self {
            video: video_src,
            audio: audio_src,
            next_video: first,
            next_audio,
            video_params,
            audio_params,
        })
    }

    pub fn start_params(&self, recording: &str, room: &str) -> StartParams {
        StartParams {
            recording: text(recording),
            room: text(room),
            video: self.video_params.clone(),
            audio: self.audio_params,
        }
    }

    /// Asks the video encoder for a keyframe as soon as possible.
    pub fn force_keyframe(&mut self) {
        self.video.force_keyframe();
    }

    /// The next media frame in time order (video first on a tie).
    pub fn next_media(&mut self) -> Result<Media, FeedError> {
        // Compare pts/90000 with pts/48000 without rounding.
        let video_first = self.next_video.pts * 48_000 <= self.next_audio.pts * 90_000;
        Ok(if video_first {
            let f = std::mem::replace(&mut self.next_video, self.video.next_frame()?);
            Media {
                track: Track::Video,
                pts: f.pts,
                dts: f.pts,
                keyframe: f.keyframe,
                data: f.data,
            }
        } else {
            let p = std::mem::replace(&mut self.next_audio, self.audio.next_packet()?);
            Media {
                track: Track::Audio,
                pts: p.pts,
                dts: p.pts,
                keyframe: true,
                data: p.data,
            }
        })
    }

    /// Media time in microseconds of the frame `next_media` will return.
    pub fn next_time_us(&self) -> u64 {
        let v = self.next_video.pts as u64 * 1_000_000 / 90_000;
        let a = self.next_audio.pts as u64 * 1_000_000 / 48_000;
        v.min(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_in_time_order_and_carries_parameter_sets() {
        let mut feed = SyntheticFeed::new(PatternSpec::default(), ToneSpec::default()).unwrap();
        let start = feed.start_params("rec-1", "room");
        assert_eq!(start.video.sps[0] & 0x1f, 7);
        assert_eq!(start.video.pps[0] & 0x1f, 8);
        let mut last_us = 0u64;
        let (mut video, mut audio) = (0, 0);
        for _ in 0..100 {
            let m = feed.next_media().unwrap();
            let us = m.dts as u64 * 1_000_000 / u64::from(m.track.timescale());
            assert!(us >= last_us, "time went backwards");
            last_us = us;
            match m.track {
                Track::Video => video += 1,
                Track::Audio => audio += 1,
            }
        }
        // 30 fps video and 50 packets/s audio.
        assert!((36..=40).contains(&video), "video {video}");
        assert_eq!(video + audio, 100);
    }

    #[test]
    fn only_h264_goes_over_the_media_link() {
        let vp8 = PatternSpec {
            codec: PatternCodec::Vp8,
            ..PatternSpec::default()
        };
        assert!(matches!(
            SyntheticFeed::new(vp8, ToneSpec::default()),
            Err(FeedError::NotH264(PatternCodec::Vp8))
        ));
    }
}
