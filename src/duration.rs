//! Durations as people type them on a command line or in a schedule: `5s`, `500ms`,
//! `1.5s`, `2m` (a bare number is seconds).

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("`{0}` is not a duration (examples: 5s, 500ms, 2m)")]
    Syntax(String),
    #[error("`{0}` must be a positive duration")]
    NotPositive(String),
}

pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    // Milliseconds per unit.
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let num = num.trim();
    // Whole numbers exactly, without a round trip through floating point.
    if let Ok(n) = num.parse::<u64>() {
        return match n.checked_mul(unit_ms) {
            Some(0) => Err(DurationError::NotPositive(s.to_owned())),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Err(DurationError::Syntax(s.to_owned())),
        };
    }
    let value: f64 = num
        .parse()
        .map_err(|_| DurationError::Syntax(s.to_owned()))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(DurationError::NotPositive(s.to_owned()));
    }
    Duration::try_from_secs_f64(value * unit_ms as f64 / 1000.0)
        .map_err(|_| DurationError::Syntax(s.to_owned()))
}

/// A spelling that [`parse`] reads back: `2m`, `5s`, `200ms`, `0.0005s`.
pub fn format(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        let s = d.as_secs();
        if s != 0 && s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_nonsense() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(" 1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("fast"), Err(DurationError::Syntax("fast".into())));
        assert_eq!(parse("0s"), Err(DurationError::NotPositive("0s".into())));
        assert!(parse("1e300m").is_err());
    }

    #[test]
    fn formats_what_it_parses() {
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(200)), "200ms");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_micros(500)), "0.0005s");
    }

    proptest::proptest! {
        #[test]
        fn format_reads_back(ms in 1u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
        }
    }
}
