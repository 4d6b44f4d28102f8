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
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| DurationError::Syntax(s.to_owned()))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(DurationError::NotPositive(s.to_owned()));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|_| DurationError::Syntax(s.to_owned()))
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
}
