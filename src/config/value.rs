//! How values are spelled in the config file: durations and sizes as people write
//! them (`"5s"`, `"64M"`), addresses and encoder kinds as on the command line, and
//! an empty string for a setting that is off. Each serialises back to the spelling
//! it reads, so the effective configuration can be printed as a config file.
//!
//! Errors say only what is wrong; the key and the value are added by the caller.

use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

use crate::duration::DurationError;
use crate::size::SizeError;

pub(super) fn duration_problem(e: &DurationError) -> &'static str {
    match e {
        DurationError::Syntax(_) => "not a duration (examples: 5s, 500ms, 2m)",
        DurationError::NotPositive(_) => "must be more than zero",
    }
}

fn size_problem(e: &SizeError) -> &'static str {
    match e {
        SizeError::Syntax(_) => "not a size (examples: 1048576, 512K, 64M, 2G)",
        SizeError::Zero(_) => "must be more than zero bytes",
        SizeError::TooLarge(_) => "too large",
    }
}

/// `Duration` as `"5s"`.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse(&s).map_err(|e| de::Error::custom(duration_problem(&e)))
    }
}

/// A byte count as `"64M"` (a plain integer of bytes is read too).
pub mod size {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::size::format(*bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(SizeVisitor { auto: false })
            .map(|v| v.expect("only `auto` gives no size"))
    }

    pub(super) struct SizeVisitor {
        /// `"auto"` is a value (no fixed size).
        pub auto: bool,
    }

    impl Visitor<'_> for SizeVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(if self.auto {
                "a size such as \"64M\", or \"auto\""
            } else {
                "a size such as \"64M\""
            })
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(0) | Err(_) => Err(E::custom("must be more than zero bytes")),
                Ok(v) => Ok(Some(v)),
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if self.auto && v.trim() == "auto" {
                return Ok(None);
            }
            crate::size::parse(v)
                .map(Some)
                .map_err(|e| E::custom(size_problem(&e)))
        }
    }
}

/// An optional byte count: `"auto"` when the recorder decides.
pub mod size_or_auto {
    use super::size::SizeVisitor;
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&crate::size::format(*b)),
            None => s.serialize_str("auto"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(SizeVisitor { auto: true })
    }
}

/// An optional socket address: `""` for none.
pub mod addr_or_empty {
    use super::*;
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim() {
            "" => Ok(None),
            a => a.parse().map(Some).map_err(|_| {
                de::Error::custom(
                    "not an address (examples: 127.0.0.1:8080, [::]:80, \"\" for off)",
                )
            }),
        }
    }
}

/// An optional path: `""` for none.
pub mod path_or_empty {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(&p.to_string_lossy()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }
}

/// An optional text: `""` for none.
pub mod text_or_empty {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.is_empty()).then_some(s))
    }
}

/// An optional GPIO number: `""` for none.
pub mod pin_or_empty {
    use super::*;

    pub fn serialize<S: Serializer>(pin: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match pin {
            Some(pin) => s.serialize_u8(*pin),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        struct PinVisitor;
        impl Visitor<'_> for PinVisitor {
            type Value = Option<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a GPIO number, or \"\" for none")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u8::try_from(v)
                    .map(Some)
                    .map_err(|_| E::custom("not a GPIO number"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "" => Ok(None),
                    _ => Err(E::custom("a GPIO number, or \"\" for none")),
                }
            }
        }
        d.deserialize_any(PinVisitor)
    }
}

/// Anything with `FromStr` and `Display` as its string (addresses, encoder kinds,
/// picture sizes); the parser's own message says what is wrong.
pub mod string {
    use super::*;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}
