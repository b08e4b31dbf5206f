//! Human units in network files: byte sizes ("500 GiB") and bandwidth ("100 Mbit/s").
//!
//! Both are written as strings in TOML so that an operator never counts zeros; the parsed
//! value is an exact integer so that every agent computes the same assignment.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a size or rate string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a {what}: {reason}")]
pub struct UnitError {
    input: String,
    what: &'static str,
    reason: &'static str,
}

/// A number of bytes, written like `500 GiB`, `1.5 TB`, `4096` or `4096 B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// A bandwidth in bytes per second, written like `100 Mbit/s`, `20 MiB/s` or `1 Gbit/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate {
    /// Bytes per second.
    pub bytes_per_second: u64,
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("pib", 1 << 50),
];

/// Splits "1.5 GiB" into its number (as an exact decimal) and unit, and multiplies without
/// going through floating point, so "0.1 GB" is exactly 100,000,000 bytes.
fn scaled(
    input: &str,
    what: &'static str,
    unit_of: impl Fn(&str) -> Option<u64>,
) -> Result<u64, UnitError> {
    let err = |reason| UnitError { input: input.to_owned(), what, reason };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    if num.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let multiplier = unit_of(&unit.to_ascii_lowercase()).ok_or_else(|| err("unknown unit"))?;
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) if !f.is_empty() && !f.contains('.') => (i, f),
        Some(_) => return Err(err("malformed number")),
        None => (num, ""),
    };
    if frac.len() > 9 {
        return Err(err("more than 9 decimal places"));
    }
    let int: u64 =
        if int.is_empty() { 0 } else { int.parse().map_err(|_| err("number too large"))? };
    let frac_digits: u64 =
        if frac.is_empty() { 0 } else { frac.parse().map_err(|_| err("malformed number"))? };
    let frac_scale = 10u64.pow(frac.len() as u32);
    let whole = int.checked_mul(multiplier).ok_or_else(|| err("number too large"))?;
    let part = (u128::from(frac_digits) * u128::from(multiplier) / u128::from(frac_scale)) as u64;
    whole.checked_add(part).ok_or_else(|| err("number too large"))
}

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        scaled(s, "byte size", |u| {
            if u.is_empty() {
                return Some(1);
            }
            SIZE_UNITS.iter().find(|(n, _)| *n == u).map(|(_, m)| *m)
        })
        .map(ByteSize)
    }
}

impl FromStr for Rate {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        scaled(s, "rate", |u| {
            // "Mbps" is megabits; "MB/s" and "MBps" would be ambiguous, so only /s names bytes.
            let (per, bits_only) = match u.strip_suffix("bps") {
                Some(p) => (format!("{p}bit"), true),
                None => (u.strip_suffix("/s")?.to_owned(), false),
            };
            if let Some(bits) = per.strip_suffix("bit") {
                let m = match bits {
                    "" => 1,
                    "k" => 1_000,
                    "m" => 1_000_000,
                    "g" => 1_000_000_000,
                    _ => return None,
                };
                // Bits to bytes: only exact for multiples of 8, which all decimal prefixes are.
                return Some(m / 8).filter(|m| *m > 0);
            }
            if bits_only {
                return None;
            }
            SIZE_UNITS.iter().find(|(n, _)| *n == per).map(|(_, m)| *m)
        })
        .map(|bytes_per_second| Rate { bytes_per_second })
    }
}

impl ByteSize {
    /// The exact value in the largest binary unit that divides it, for writing files back:
    /// `Display` rounds for people, this never does.
    pub fn exact(&self) -> String {
        let units = [
            ("PiB", 1u64 << 50),
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, m) in units {
            if self.0 >= m && self.0 % m == 0 {
                return format!("{} {name}", self.0 / m);
            }
        }
        format!("{} B", self.0)
    }
}

impl Rate {
    /// The exact value, for writing files back.
    pub fn exact(&self) -> String {
        format!("{}/s", ByteSize(self.bytes_per_second).exact())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            ("PiB", 1u64 << 50),
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, m) in units {
            if self.0 >= m {
                let whole = self.0 / m;
                let tenths = (self.0 % m) * 10 / m;
                return if tenths == 0 {
                    write!(f, "{whole} {name}")
                } else {
                    write!(f, "{whole}.{tenths} {name}")
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", ByteSize(self.bytes_per_second))
    }
}

macro_rules! string_serde {
    ($t:ty, $desc:literal, $pattern:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.exact())
            }
        }
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($t).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": $desc,
                    "pattern": $pattern,
                })
            }
        }
    };
}

string_serde!(
    ByteSize,
    "A byte size such as \"500 GiB\", \"1.5 TB\" or \"4096\"",
    r"^\s*[0-9]*\.?[0-9]+\s*([kKmMgGtTpP][iI]?)?[bB]?\s*$"
);
string_serde!(
    Rate,
    "A bandwidth such as \"100 Mbit/s\" or \"20 MiB/s\"",
    r"^\s*[0-9]*\.?[0-9]+\s*(([kKmMgG]?bit/s)|([kKmMgG]?bps)|(([kKmMgGtTpP][iI]?)?[bB]/s))\s*$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_exactly() {
        let cases = [
            ("500 GiB", 500 << 30),
            ("1.5 TB", 1_500_000_000_000),
            ("0.1 GB", 100_000_000),
            ("4096", 4096),
            ("4096 B", 4096),
            ("1kib", 1024),
            ("  2 MiB ", 2 << 20),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(want)), "{input}");
        }
    }

    #[test]
    fn bad_sizes_name_the_problem() {
        for input in ["", "GiB", "1.2.3 GB", "5 parsecs", "99999999999999 PiB", "-1 GB", "1. GB"] {
            let err = input.parse::<ByteSize>().unwrap_err();
            assert!(err.to_string().contains(input.trim()), "{err}");
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!("100 Mbit/s".parse::<Rate>().unwrap().bytes_per_second, 12_500_000);
        assert_eq!("20 MiB/s".parse::<Rate>().unwrap().bytes_per_second, 20 << 20);
        assert_eq!("1 Gbps".parse::<Rate>().unwrap().bytes_per_second, 125_000_000);
        assert!("1 bit/s".parse::<Rate>().is_err());
        assert!("100 Mbit".parse::<Rate>().is_err());
    }

    #[test]
    fn serialisation_is_exact() {
        for n in [1_234_567u64, 500 << 30, 3, 1 << 20] {
            let text = ByteSize(n).exact();
            assert_eq!(text.parse::<ByteSize>().unwrap().0, n, "{text}");
            let r = Rate { bytes_per_second: n };
            assert_eq!(r.exact().parse::<Rate>().unwrap(), r);
        }
    }

    #[test]
    fn display_round_trips_for_round_numbers() {
        for s in ["500 GiB", "1 TiB", "12 B", "1.5 GiB"] {
            assert_eq!(s.parse::<ByteSize>().unwrap().to_string(), s);
        }
    }
}
