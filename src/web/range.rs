//! HTTP byte ranges (RFC 9110, 14): a single `Range: bytes=…` is answered with 206
//! and that part, one that cannot be satisfied with 416. Several ranges at once are
//! answered with the whole body (200), which the RFC allows: players ask for one.
//! Sans-IO.

/// How to answer a request for a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, the whole body.
    Whole,
    /// 206, bytes `start..end` (end exclusive).
    Part { start: u64, end: u64 },
    /// 416, with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// The answer to `range` (the `Range` header, if any). A header that is not a
/// bytes range, or not valid, is ignored, as the RFC says.
pub fn answer(range: Option<&str>, len: u64) -> Answer {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Answer::Whole;
    };
    if spec.contains(',') {
        return Answer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Answer::Whole;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                Answer::Unsatisfiable
            } else {
                Answer::Part {
                    start: len.saturating_sub(suffix),
                    end: len,
                }
            }
        }
        (false, Some(start), None) if last.trim().is_empty() => part(start, len, len),
        (false, Some(start), Some(last)) if last >= start => {
            part(start, last.saturating_add(1).min(len), len)
        }
        _ => Answer::Whole,
    }
}

fn part(start: u64, end: u64, len: u64) -> Answer {
    if start >= len {
        Answer::Unsatisfiable
    } else {
        Answer::Part { start, end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_ranges() {
        let p = |start, end| Answer::Part { start, end };
        assert_eq!(answer(None, 100), Answer::Whole);
        assert_eq!(answer(Some("bytes=0-9"), 100), p(0, 10));
        assert_eq!(answer(Some("bytes=90-"), 100), p(90, 100));
        assert_eq!(answer(Some("bytes=90-1000"), 100), p(90, 100));
        assert_eq!(answer(Some("bytes=-10"), 100), p(90, 100));
        assert_eq!(answer(Some("bytes=-1000"), 100), p(0, 100));
        assert_eq!(answer(Some("bytes=99-99"), 100), p(99, 100));
        assert_eq!(answer(Some("bytes=100-"), 100), Answer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=100-200"), 100), Answer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 100), Answer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-"), 0), Answer::Unsatisfiable);
    }

    #[test]
    fn what_is_not_one_valid_range_is_ignored() {
        for header in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(answer(Some(header), 100), Answer::Whole, "{header}");
        }
    }

    proptest! {
        #[test]
        fn a_part_is_always_inside_the_body(header in "bytes=[0-9 ]{0,6}-[0-9 ]{0,6}", len in 0u64..10_000) {
            if let Answer::Part { start, end } = answer(Some(&header), len) {
                prop_assert!(start < end && end <= len, "{header} {len}: {start}..{end}");
            }
        }

        #[test]
        fn any_text_is_answered(header in ".{0,40}", len in 0u64..1000) {
            let _ = answer(Some(&header), len);
        }
    }
}
