//! Byte counts as people type them on a command line or in the config: `1048576`,
//! `512K`, `64M`, `2G` (binary multiples).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("`{0}` is not a size (examples: 1048576, 512M, 2G)")]
    Syntax(String),
    #[error("`{0}` must be more than zero bytes")]
    Zero(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

const UNITS: [(char, u32); 3] = [('G', 30), ('M', 20), ('K', 10)];

pub fn parse(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) => match UNITS.iter().find(|(u, _)| c.eq_ignore_ascii_case(u)) {
            Some(&(_, shift)) => (&t[..i], shift),
            None => (t, 0),
        },
        None => (t, 0),
    };
    let value: u64 = num
        .trim()
        .parse()
        .map_err(|_| SizeError::Syntax(s.to_owned()))?;
    match value.checked_mul(1 << shift) {
        Some(0) => Err(SizeError::Zero(s.to_owned())),
        Some(bytes) => Ok(bytes),
        None => Err(SizeError::TooLarge(s.to_owned())),
    }
}

/// The shortest exact spelling that [`parse`] reads back: `64M`, not `67108864`.
pub fn format(bytes: u64) -> String {
    for (unit, shift) in UNITS {
        if bytes != 0 && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert_eq!(parse("512K"), Ok(512 << 10));
        assert_eq!(parse(" 64m "), Ok(64 << 20));
        assert_eq!(parse("2G"), Ok(2 << 30));
        assert_eq!(parse("0"), Err(SizeError::Zero("0".into())));
        for bad in ["", "G", "1.5G", "-1M", "0", "99999999999999G", "12X"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format(64 << 20), "64M");
        assert_eq!(format(1 << 30), "1G");
        assert_eq!(format(1536 << 20), "1536M");
        assert_eq!(format(1000), "1000");
        assert_eq!(format(4096), "4K");
    }

    proptest! {
        #[test]
        fn format_reads_back(bytes in 1u64..=(1 << 50)) {
            prop_assert_eq!(parse(&format(bytes)), Ok(bytes));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
        }
    }
}
