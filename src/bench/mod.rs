//! Benchmarks behind `recbox bench`: they print figures, they do not assert timing.

pub mod faults;
pub mod faults_e2e;
pub mod latency;
pub mod link;
pub mod mix;
pub mod soak;
pub mod writer;

use std::str::FromStr;

/// A part of `recbox bench`, run by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchPart {
    /// Media-link throughput over loopback.
    Link,
    /// The recorder's write throughput against a plain sequential write.
    Writer,
    /// Fault to `Fault` frame at a link client (root).
    Faults,
    /// Fault to the announcement at the meeting's terminals, through the whole
    /// chain (root and loop devices).
    FaultsE2e,
    /// The mixer side by side with ffmpeg (xstack + amix) on the same RTP inputs.
    Mix,
    /// A long meeting through mixer and recorder, sampled every minute; only when
    /// named (it lasts `--minutes`).
    Soak,
}

impl BenchPart {
    const ALL: [BenchPart; 6] = [
        BenchPart::Link,
        BenchPart::Writer,
        BenchPart::Faults,
        BenchPart::FaultsE2e,
        BenchPart::Mix,
        BenchPart::Soak,
    ];
    /// What runs when no part is named: all but the long soak.
    pub const DEFAULT: [BenchPart; 5] = [
        BenchPart::Link,
        BenchPart::Writer,
        BenchPart::Faults,
        BenchPart::FaultsE2e,
        BenchPart::Mix,
    ];

    fn name(self) -> &'static str {
        match self {
            BenchPart::Link => "link",
            BenchPart::Writer => "writer",
            BenchPart::Faults => "faults",
            BenchPart::FaultsE2e => "faults-e2e",
            BenchPart::Mix => "mix",
            BenchPart::Soak => "soak",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a bench part: one of {names}", names = BenchPart::ALL.map(BenchPart::name).join(", "))]
pub struct BenchPartError(String);

impl FromStr for BenchPart {
    type Err = BenchPartError;

    fn from_str(s: &str) -> Result<Self, BenchPartError> {
        BenchPart::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| BenchPartError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_by_name() {
        for p in BenchPart::ALL {
            assert_eq!(p.name().parse(), Ok(p));
        }
        let e = "mixer".parse::<BenchPart>().unwrap_err().to_string();
        assert_eq!(
            e,
            "`mixer` is not a bench part: one of link, writer, faults, faults-e2e, mix, soak"
        );
    }
}
