//! When simulated participants join and leave: `join 5@10s, leave 2@20s` — a
//! comma-separated list of `join N@TIME` / `leave N@TIME`, participants numbered
//! 1..=16, times from the moment the mixer connects (`500ms`, `10s`, `1.5m`).
//! `announce N@TIME` sends a present participant's join again, unchanged, as an SFU
//! that repeats its roster does.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::duration;

/// Participants a simulated SFU can send: one per colour of the palette.
pub const MAX_PARTICIPANTS: u8 = crate::synth::PALETTE.len() as u8;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("schedule item `{0}` is not `join N@TIME`, `leave N@TIME` or `announce N@TIME` (e.g. `join 5@10s`)")]
    Syntax(String),
    #[error("schedule item `{item}`: participant must be 1..={MAX_PARTICIPANTS}")]
    Participant { item: String },
    #[error("schedule item `{item}`: {source}")]
    Time {
        item: String,
        #[source]
        source: duration::DurationError,
    },
    #[error("schedule item `{0}`: that participant is already in the meeting then")]
    AlreadyPresent(String),
    #[error("schedule item `{0}`: that participant is not in the meeting then")]
    NotPresent(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Join,
    Leave,
    /// The join of a participant in the meeting, sent again.
    Announce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleEvent {
    pub at: Duration,
    pub action: Action,
    /// Participant number, 1..=MAX_PARTICIPANTS.
    pub participant: u8,
}

impl fmt::Display for ScheduleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Join => "join",
            Action::Leave => "leave",
            Action::Announce => "announce",
        };
        write!(f, "{action} {}@{:?}", self.participant, self.at)
    }
}

/// Events in time order (items with equal times keep their written order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    events: Vec<ScheduleEvent>,
}

impl Schedule {
    pub fn events(&self) -> &[ScheduleEvent] {
        &self.events
    }

    /// Checks that every join is of someone absent and every leave of someone present,
    /// starting with participants 1..=`initial` in the meeting.
    pub fn check(&self, initial: u8) -> Result<(), ScheduleError> {
        let mut present: BTreeSet<u8> = (1..=initial).collect();
        for e in &self.events {
            match e.action {
                Action::Join if !present.insert(e.participant) => {
                    return Err(ScheduleError::AlreadyPresent(e.to_string()))
                }
                Action::Leave if !present.remove(&e.participant) => {
                    return Err(ScheduleError::NotPresent(e.to_string()))
                }
                Action::Announce if !present.contains(&e.participant) => {
                    return Err(ScheduleError::NotPresent(e.to_string()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        let mut events = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let syntax = || ScheduleError::Syntax(item.to_owned());
            let (action, rest) = item.split_once(char::is_whitespace).ok_or_else(syntax)?;
            let action = match action {
                "join" => Action::Join,
                "leave" => Action::Leave,
                "announce" => Action::Announce,
                _ => return Err(syntax()),
            };
            let (who, at) = rest.trim().split_once('@').ok_or_else(syntax)?;
            let participant = who
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=MAX_PARTICIPANTS).contains(n))
                .ok_or_else(|| ScheduleError::Participant {
                    item: item.to_owned(),
                })?;
            let at = duration::parse(at).map_err(|source| ScheduleError::Time {
                item: item.to_owned(),
                source,
            })?;
            events.push(ScheduleEvent {
                at,
                action,
                participant,
            });
        }
        events.sort_by_key(|e| e.at);
        Ok(Self { events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_by_time() {
        let s: Schedule = "leave 2@20s, join 5@10s,join 2@1.5m".parse().unwrap();
        let got: Vec<String> = s.events().iter().map(ToString::to_string).collect();
        assert_eq!(got, ["join 5@10s", "leave 2@20s", "join 2@90s"]);
        assert!(s.check(4).is_ok());
        assert_eq!("".parse::<Schedule>(), Ok(Schedule::default()));
    }

    #[test]
    fn explains_what_is_wrong() {
        let err = |s: &str| s.parse::<Schedule>().unwrap_err().to_string();
        assert!(err("dance 1@2s").contains("is not `join N@TIME`"));
        assert!(err("join 1").contains("is not `join N@TIME`"));
        assert!(err("join 17@2s").contains("1..=16"));
        assert!(err("join x@2s").contains("1..=16"));
        assert!(err("join 3@soon").contains("not a duration"));
        let s: Schedule = "join 3@5s".parse().unwrap();
        assert_eq!(
            s.check(4),
            Err(ScheduleError::AlreadyPresent("join 3@5s".into()))
        );
        let s: Schedule = "leave 2@1s, leave 2@2s".parse().unwrap();
        assert_eq!(
            s.check(4),
            Err(ScheduleError::NotPresent("leave 2@2s".into()))
        );
        let s: Schedule = "announce 2@1s, leave 2@2s, announce 2@3s".parse().unwrap();
        assert_eq!(
            s.check(4),
            Err(ScheduleError::NotPresent("announce 2@3s".into()))
        );
        assert!("announce 2@1s"
            .parse::<Schedule>()
            .unwrap()
            .check(2)
            .is_ok());
    }
}
