//! Which video codec each simulated participant sends: H.264 unless named, e.g.
//! `--vp8 2,4` (a [`ParticipantList`]: numbers and ranges such as `1-3,7`).

use std::collections::BTreeSet;
use std::str::FromStr;

use thiserror::Error;

use super::schedule::MAX_PARTICIPANTS;
use crate::synth::PatternCodec;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecMixError {
    #[error("`{0}` is not a list of participants 1..={MAX_PARTICIPANTS} such as 2,4 or 1-3,7")]
    List(String),
    #[error("participant {0} is given two video codecs")]
    Twice(u8),
}

/// Participant numbers, 1..=[`MAX_PARTICIPANTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantList(BTreeSet<u8>);

impl ParticipantList {
    pub fn contains(&self, number: u8) -> bool {
        self.0.contains(&number)
    }
}

impl FromStr for ParticipantList {
    type Err = CodecMixError;

    fn from_str(s: &str) -> Result<Self, CodecMixError> {
        let bad = || CodecMixError::List(s.to_owned());
        let number = |n: &str| match n.trim().parse::<u8>() {
            Ok(n) if (1..=MAX_PARTICIPANTS).contains(&n) => Ok(n),
            _ => Err(bad()),
        };
        let mut set = BTreeSet::new();
        for item in s.split(',').filter(|i| !i.trim().is_empty()) {
            let (from, to) = match item.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(item)?, number(item)?),
            };
            if from > to {
                return Err(bad());
            }
            set.extend(from..=to);
        }
        Ok(Self(set))
    }
}

/// Each participant's video codec, by participant number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodecMix([PatternCodec; MAX_PARTICIPANTS as usize]);

impl CodecMix {
    /// This mix with `codec` for the participants in `list`, each of which must still
    /// be H.264.
    pub fn with(
        mut self,
        list: &ParticipantList,
        codec: PatternCodec,
    ) -> Result<Self, CodecMixError> {
        for &n in &list.0 {
            let slot = &mut self.0[usize::from(n - 1)];
            if *slot != PatternCodec::H264 {
                return Err(CodecMixError::Twice(n));
            }
            *slot = codec;
        }
        Ok(self)
    }

    /// The codec of participant `number` (1-based).
    pub fn of(&self, number: u8) -> PatternCodec {
        self.0[usize::from(number - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> ParticipantList {
        s.parse().unwrap()
    }

    #[test]
    fn lists_and_ranges_name_participants() {
        assert_eq!(list("2, 4,1-3").0, BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(list("").0, BTreeSet::new());
        assert_eq!(list("16").0, BTreeSet::from([16]));
        for bad in ["0", "17", "x", "3-1", "1-", "2;4"] {
            assert_eq!(
                bad.parse::<ParticipantList>(),
                Err(CodecMixError::List(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_mix_gives_each_participant_one_codec() {
        let mix = CodecMix::default()
            .with(&list("2,4"), PatternCodec::Vp8)
            .unwrap()
            .with(&list("3"), PatternCodec::Vp9)
            .unwrap();
        let codecs: Vec<PatternCodec> = (1..=5).map(|n| mix.of(n)).collect();
        use PatternCodec::*;
        assert_eq!(codecs, [H264, Vp8, Vp9, Vp8, H264]);
        assert_eq!(mix.with(&list("1-2"), Vp9), Err(CodecMixError::Twice(2)));
    }
}
