//! HLS (version 7) playlist text for a recording: the fMP4 file is both the
//! initialization section and every media segment, addressed with byte ranges.
//! The live writer appends [`entry`] lines; recovery writes [`playlist`] whole.

use std::time::Duration;

use super::index::IndexRecord;
use super::layout::MP4_FILE;

pub const END: &str = "#EXT-X-ENDLIST\n";

/// `EXT-X-TARGETDURATION`: the fragment limit rounded up to whole seconds.
pub fn target_duration_secs(max_fragment: Duration) -> u64 {
    let secs = max_fragment.as_secs() + u64::from(max_fragment.subsec_nanos() > 0);
    secs.max(1)
}

/// Everything before the first segment.
pub fn header(target_duration_secs: u64, init_len: u64) -> String {
    format!(
        "#EXTM3U\n\
         #EXT-X-VERSION:7\n\
         #EXT-X-TARGETDURATION:{target_duration_secs}\n\
         #EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:EVENT\n\
         #EXT-X-MAP:URI=\"{MP4_FILE}\",BYTERANGE=\"{init_len}@0\"\n"
    )
}

/// The lines of one segment (fragment).
pub fn entry(record: &IndexRecord) -> String {
    let secs = record.duration_us / 1_000_000;
    let micros = record.duration_us % 1_000_000;
    format!(
        "#EXTINF:{secs}.{micros:06},\n#EXT-X-BYTERANGE:{}@{}\n{MP4_FILE}\n",
        record.length, record.offset
    )
}

/// A whole playlist for the given records.
pub fn playlist(
    target_duration_secs: u64,
    init_len: u64,
    records: &[IndexRecord],
    ended: bool,
) -> String {
    let mut text = header(target_duration_secs, init_len);
    for r in records {
        text.push_str(&entry(r));
    }
    if ended {
        text.push_str(END);
    }
    text
}

/// The target duration a playlist declares, if it is readable.
pub fn parse_target_duration(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("#EXT-X-TARGETDURATION:")?
            .trim()
            .parse()
            .ok()
    })
}

/// The playlist with its target duration set to `target_duration_secs`.
pub fn retarget(text: &str, target_duration_secs: u64) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split_inclusive('\n') {
        if line.starts_with("#EXT-X-TARGETDURATION:") {
            out.push_str(&format!("#EXT-X-TARGETDURATION:{target_duration_secs}\n"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// True when the playlist was ended (the recording finished cleanly).
pub fn is_ended(text: &str) -> bool {
    text.lines().any(|l| l.trim() == END.trim())
}

/// Target duration that covers every record: `EXTINF` rounded to the nearest
/// second must not exceed it.
pub fn covering_target_duration(records: &[IndexRecord]) -> u64 {
    let longest = records.iter().map(|r| r.duration_us).max().unwrap_or(0);
    (u64::from(longest).div_ceil(1_000_000)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retargets_only_the_target_duration() {
        let record = IndexRecord {
            duration_us: 4_000_000,
            offset: 900,
            length: 5000,
            ..Default::default()
        };
        let text = playlist(2, 900, &[record], false);
        let wider = retarget(&text, covering_target_duration(&[record]));
        assert_eq!(wider, playlist(4, 900, &[record], false));
        assert_eq!(parse_target_duration(&wider), Some(4));
    }

    #[test]
    fn renders_a_finished_playlist() {
        let records = [
            IndexRecord {
                duration_us: 2_000_000,
                offset: 900,
                length: 5000,
                ..Default::default()
            },
            IndexRecord {
                duration_us: 1_033_333,
                offset: 5900,
                length: 700,
                ..Default::default()
            },
        ];
        let text = playlist(2, 900, &records, true);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-MAP:URI=\"recording.mp4\",BYTERANGE=\"900@0\"\n\
             #EXTINF:2.000000,\n#EXT-X-BYTERANGE:5000@900\nrecording.mp4\n\
             #EXTINF:1.033333,\n#EXT-X-BYTERANGE:700@5900\nrecording.mp4\n#EXT-X-ENDLIST\n"
        );
        assert!(is_ended(&text));
        assert_eq!(parse_target_duration(&text), Some(2));
        assert!(!is_ended(&playlist(2, 900, &records, false)));
    }

    #[test]
    fn target_duration_rounds_up() {
        assert_eq!(target_duration_secs(Duration::from_secs(2)), 2);
        assert_eq!(target_duration_secs(Duration::from_millis(2500)), 3);
        assert_eq!(target_duration_secs(Duration::from_millis(10)), 1);
        let r = IndexRecord {
            duration_us: 2_000_001,
            ..Default::default()
        };
        assert_eq!(covering_target_duration(&[r]), 3);
        assert_eq!(covering_target_duration(&[]), 1);
    }
}
