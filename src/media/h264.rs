//! H.264 bitstream helpers: Annex B NAL splitting and conversion to the AVCC
//! (length-prefixed) form that MP4 samples use.

use thiserror::Error;

/// Sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// Coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum H264Error {
    #[error("access unit is not Annex B: it does not begin with a 00 00 01 start code")]
    NotAnnexB,
    #[error("access unit has no NAL units besides parameter sets and delimiters")]
    NoPictureData,
    #[error("AVCC sample: a NAL unit length runs past the end")]
    BadLength,
    #[error("SPS ends before its chroma format and bit depths")]
    ShortSps,
    #[error("SPS has an exp-Golomb code longer than 32 bits")]
    BadGolomb,
}

/// The fields of a High-family SPS that `avcC` repeats (ISO/IEC 14496-15, 5.3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpsChroma {
    pub(crate) chroma_format_idc: u8,
    pub(crate) bit_depth_luma_minus8: u8,
    pub(crate) bit_depth_chroma_minus8: u8,
}

/// Whether an SPS of `profile_idc` carries chroma format and bit depths (H.264
/// 7.3.2.1.1), which `avcC` must then repeat.
fn has_chroma_fields(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Reads chroma format and bit depths from an SPS NAL unit (header byte included);
/// `None` for profiles without them (Baseline, Main, Extended: 4:2:0, 8 bits).
pub(crate) fn sps_chroma(sps: &[u8]) -> Result<Option<SpsChroma>, H264Error> {
    let profile_idc = *sps.get(1).ok_or(H264Error::ShortSps)?;
    if !has_chroma_fields(profile_idc) {
        return Ok(None);
    }
    let rbsp = unescape(sps.get(4..).ok_or(H264Error::ShortSps)?);
    let mut bits = Bits::new(&rbsp);
    bits.ue()?; // seq_parameter_set_id
    let chroma_format_idc = bits.ue()?;
    if chroma_format_idc == 3 {
        bits.bit()?; // separate_colour_plane_flag
    }
    let luma = bits.ue()?;
    let chroma = bits.ue()?;
    // The ranges H.264 allows; anything else is not an SPS worth describing.
    let small = |v: u32, max: u32| u8::try_from(v).ok().filter(|&v| u32::from(v) <= max);
    match (
        small(chroma_format_idc, 3),
        small(luma, 6),
        small(chroma, 6),
    ) {
        (Some(c), Some(l), Some(ch)) => Ok(Some(SpsChroma {
            chroma_format_idc: c,
            bit_depth_luma_minus8: l,
            bit_depth_chroma_minus8: ch,
        })),
        _ => Err(H264Error::ShortSps),
    }
}

/// The RBSP of a NAL unit body: every `00 00 03` loses its `03`.
fn unescape(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut zeros = 0;
    for &b in body {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader for exp-Golomb fields.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, H264Error> {
        let byte = self.data.get(self.pos / 8).ok_or(H264Error::ShortSps)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    /// An unsigned exp-Golomb code, `ue(v)`.
    fn ue(&mut self) -> Result<u32, H264Error> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(H264Error::BadGolomb);
            }
        }
        let mut rest = 0u32;
        for _ in 0..zeros {
            rest = (rest << 1) | self.bit()?;
        }
        Ok((1u32 << zeros) - 1 + rest)
    }
}

/// The NAL unit type (low five bits of the first header byte); 0 for an empty unit.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// True when `data` starts with a 3- or 4-byte start code (optionally after more
/// leading zero bytes, which Annex B allows).
pub fn is_annex_b(data: &[u8]) -> bool {
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    zeros >= 2 && data.get(zeros) == Some(&1)
}

/// Iterator over the NAL units of an Annex B buffer, without start codes and
/// without the trailing zero bytes that belong to a following 4-byte start code.
pub struct NalUnits<'a> {
    rest: &'a [u8],
}

/// Splits an Annex B buffer into NAL units. Bytes before the first start code are
/// skipped; use [`is_annex_b`] first to reject such input.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    let rest = match find_start_code(data) {
        Some((_, end)) => &data[end..],
        None => &[],
    };
    NalUnits { rest }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (nal, rest) = match find_start_code(self.rest) {
                Some((start, end)) => (&self.rest[..start], &self.rest[end..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            // A NAL unit never ends in a zero byte (trailing_zero_8bits belong to the
            // stream, e.g. the first byte of a 4-byte start code).
            let len = nal.len() - nal.iter().rev().take_while(|&&b| b == 0).count();
            if len > 0 {
                return Some(&nal[..len]);
            }
        }
    }
}

/// Position of the first `00 00 01` in `data`: (start of the code, first byte after it).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 2;
    while i < data.len() {
        // Skip ahead fast: a start code ends in 01 preceded by two zeros.
        match data[i] {
            1 if data[i - 1] == 0 && data[i - 2] == 0 => return Some((i - 2, i + 1)),
            0 => i += 1,
            _ => i += 3,
        }
    }
    None
}

/// Converts one Annex B access unit to AVCC samples (4-byte big-endian length before
/// each NAL), dropping SPS, PPS and AUD units: the parameter sets live in `avcC`.
pub(crate) fn annex_b_to_avcc(au: &[u8]) -> Result<Vec<u8>, H264Error> {
    if !is_annex_b(au) {
        return Err(H264Error::NotAnnexB);
    }
    let mut out = Vec::with_capacity(au.len() + 16);
    for nal in nal_units(au) {
        if matches!(nal_type(nal), NAL_SPS | NAL_PPS | NAL_AUD) {
            continue;
        }
        // Media frames are bounded far below 4 GiB by the link's frame limit.
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    if out.is_empty() {
        return Err(H264Error::NoPictureData);
    }
    Ok(out)
}

/// An MP4 (AVCC, 4-byte length-prefixed) sample back in Annex B form, as the media
/// link carries it.
pub(crate) fn avcc_to_annex_b(sample: &[u8]) -> Result<Vec<u8>, H264Error> {
    let mut out = Vec::with_capacity(sample.len());
    let mut rest = sample;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or(H264Error::BadLength)?;
        let len = u32::from_be_bytes(*len) as usize;
        let nal = tail.get(..len).ok_or(H264Error::BadLength)?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &tail[len..];
    }
    Ok(out)
}

/// The first SPS and PPS found in an Annex B access unit.
pub(crate) fn parameter_sets(au: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let mut sps = None;
    let mut pps = None;
    for nal in nal_units(au) {
        match nal_type(nal) {
            NAL_SPS if sps.is_none() => sps = Some(nal),
            NAL_PPS if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    (sps, pps)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let nals: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
    }

    #[test]
    fn avcc_drops_parameter_sets_and_delimiters() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 7, 8,
        ];
        assert_eq!(annex_b_to_avcc(&au).unwrap(), vec![0, 0, 0, 3, 0x65, 7, 8]);
        assert_eq!(
            parameter_sets(&au),
            (Some(&[0x67, 1][..]), Some(&[0x68, 2][..]))
        );
    }

    #[test]
    fn avcc_converts_back_to_annex_b() {
        let avcc = [0, 0, 0, 3, 0x65, 7, 8, 0, 0, 0, 2, 0x41, 9];
        let au = avcc_to_annex_b(&avcc).unwrap();
        assert_eq!(au, [0, 0, 0, 1, 0x65, 7, 8, 0, 0, 0, 1, 0x41, 9]);
        assert_eq!(annex_b_to_avcc(&au).unwrap(), avcc);
        assert_eq!(
            avcc_to_annex_b(&[0, 0, 0, 5, 0x65]),
            Err(H264Error::BadLength)
        );
        assert_eq!(avcc_to_annex_b(&[0, 0]), Err(H264Error::BadLength));
    }

    /// The SPS x264 writes for `-profile:v high` at 1280x720 (4:2:0, 8 bits).
    pub(crate) const X264_HIGH_SPS: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];

    #[test]
    fn chroma_of_a_high_profile_sps() {
        assert_eq!(
            sps_chroma(&X264_HIGH_SPS),
            Ok(Some(SpsChroma {
                chroma_format_idc: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
            }))
        );
        // Constrained Baseline and Main carry none.
        assert_eq!(sps_chroma(&[0x67, 0x42, 0xc0, 0x1f, 0xda]), Ok(None));
        assert_eq!(sps_chroma(&[0x67, 0x4d, 0x40, 0x1f, 0xda]), Ok(None));
        assert_eq!(sps_chroma(&X264_HIGH_SPS[..4]), Err(H264Error::ShortSps));
        assert_eq!(sps_chroma(&[0x67]), Err(H264Error::ShortSps));
    }

    #[test]
    fn chroma_of_high_444_at_10_bits() {
        // sps_id 0 (1), chroma 3 (00100), separate planes 0, luma 2 (011), chroma 2 (011).
        let sps = [0x67, 0xf4, 0x00, 0x1f, 0b1001_0000, 0b1101_1000];
        assert_eq!(
            sps_chroma(&sps),
            Ok(Some(SpsChroma {
                chroma_format_idc: 3,
                bit_depth_luma_minus8: 2,
                bit_depth_chroma_minus8: 2,
            }))
        );
    }

    #[test]
    fn emulation_prevention_is_removed_before_reading_bits() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
        // A High SPS whose sps_id starts with 24 zero bits, so the encoder escaped
        // them (00 00 03 00): read as bits, the 03 would shift every later field.
        let sps = [0x67, 0x64, 0x00, 0x1f, 0, 0, 3, 0, 0x80, 0, 0, 0x2e];
        assert_eq!(
            sps_chroma(&sps),
            Ok(Some(SpsChroma {
                chroma_format_idc: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
            }))
        );
        assert_eq!(Bits::new(&[0x00, 0x80, 0x00]).ue(), Ok(255));
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0]).ue(), Err(H264Error::BadGolomb));
    }

    #[test]
    fn rejects_non_annex_b_and_parameter_set_only_units() {
        assert_eq!(
            annex_b_to_avcc(&[0, 0, 0, 3, 0x65, 1, 2]),
            Err(H264Error::NotAnnexB)
        );
        assert_eq!(annex_b_to_avcc(&[]), Err(H264Error::NotAnnexB));
        assert_eq!(
            annex_b_to_avcc(&[0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2]),
            Err(H264Error::NoPictureData)
        );
    }

    /// A NAL payload that cannot contain a start code: no `00 00` followed by a byte
    /// <= 3 (what emulation prevention guarantees), no trailing zero, not empty.
    fn nal_payload() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|mut v| {
            let mut i = 2;
            while i < v.len() {
                if v[i - 2] == 0 && v[i - 1] == 0 && v[i] <= 3 {
                    v.insert(i, 3);
                }
                i += 1;
            }
            if v.len() >= 2 && v[v.len() - 2] == 0 && v[v.len() - 1] == 0 {
                v.push(3);
            }
            if v.last() == Some(&0) {
                v.push(0x80);
            }
            v
        })
    }

    proptest! {
        #[test]
        fn sps_chroma_never_panics(sps in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = sps_chroma(&sps);
        }

        #[test]
        fn split_round_trips(
            nals in proptest::collection::vec((nal_payload(), any::<bool>()), 0..12)
        ) {
            let mut stream = Vec::new();
            for (nal, long) in &nals {
                if *long {
                    stream.push(0);
                }
                stream.extend_from_slice(&[0, 0, 1]);
                stream.extend_from_slice(nal);
            }
            let got: Vec<Vec<u8>> = nal_units(&stream).map(<[u8]>::to_vec).collect();
            let want: Vec<Vec<u8>> = nals.into_iter().map(|(n, _)| n).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = annex_b_to_avcc(&data);
            let _ = parameter_sets(&data);
        }
    }
}
