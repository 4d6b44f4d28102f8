//! The one rule for a name that becomes a single path component on the recorder's
//! disk (a room, a recording id). It is checked where such names arrive (the link's
//! `Hello` and `Start`), where the writer uses them and where the configuration gives
//! them, so all three refuse the same names.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what} {value:?} cannot be used in a path: {reason}")]
pub struct UnsafeName {
    pub(crate) what: &'static str,
    pub(crate) value: String,
    pub(crate) reason: &'static str,
}

/// Checks that `value` is safe as one path component: not empty, not `.` or `..`, no
/// path separator, no control characters.
pub(crate) fn check(what: &'static str, value: &str) -> Result<(), UnsafeName> {
    let reason = if value.is_empty() {
        "empty"
    } else if value == "." || value == ".." {
        "'.' and '..' are not names"
    } else if value.contains(['/', '\\']) {
        "contains a path separator"
    } else if value.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(UnsafeName {
        what,
        value: value.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", "x\u{7f}"] {
            assert!(
                matches!(check("room", bad), Err(UnsafeName { .. })),
                "{bad:?}"
            );
        }
        for good in ["room-1", "Salle Ä", "a..b", ".hidden"] {
            check("room", good).unwrap();
        }
    }
}
