//! Byte sizes written as integers or human strings (`"256MiB"`, `"1.5G"`).
//!
//! The parser is written by hand rather than taken from a crate such as
//! `bytesize` or `parse-size` because the config format needs three properties
//! at once that no single crate guarantees: (1) `K/M/G/T` mean *binary*
//! multiples while `KB/MB/GB/TB` mean decimal ones, (2) values are exact
//! (`"1.3KiB"` is rejected instead of silently rounded) with overflow detected
//! against `u64`, and (3) [`Display`](std::fmt::Display) output always parses
//! back to the same value. It is ~80 lines, so owning it is cheaper than
//! adapting a dependency's semantics.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes.
///
/// Parses from `"4096"`, `"512B"`, `"10KiB"`, `"1.5GiB"`, `"2G"` (binary),
/// `"5MB"` (decimal), case-insensitively, with optional spaces between number
/// and unit. Displays in the shortest exact form, e.g. `256MiB`, `1TB`, `1000B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SizeError(String);

impl ByteSize {
    /// 1 KiB = 1024 bytes.
    pub const KIB: u64 = 1 << 10;
    /// 1 MiB = 1024 KiB.
    pub const MIB: u64 = 1 << 20;
    /// 1 GiB = 1024 MiB.
    pub const GIB: u64 = 1 << 30;
    /// 1 TiB = 1024 GiB.
    pub const TIB: u64 = 1 << 40;

    /// `n` KiB, saturating at `u64::MAX`.
    pub const fn kib(n: u64) -> Self {
        Self(n.saturating_mul(Self::KIB))
    }

    /// `n` MiB, saturating at `u64::MAX`.
    pub const fn mib(n: u64) -> Self {
        Self(n.saturating_mul(Self::MIB))
    }

    /// `n` GiB, saturating at `u64::MAX`.
    pub const fn gib(n: u64) -> Self {
        Self(n.saturating_mul(Self::GIB))
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Accepted units (lower-cased) and their multipliers.
const PARSE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", ByteSize::KIB),
    ("kib", ByteSize::KIB),
    ("m", ByteSize::MIB),
    ("mib", ByteSize::MIB),
    ("g", ByteSize::GIB),
    ("gib", ByteSize::GIB),
    ("t", ByteSize::TIB),
    ("tib", ByteSize::TIB),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
];

/// Units used by `Display`; binary first so it wins ties.
const DISPLAY_UNITS: &[(&str, u64)] = &[
    ("TiB", ByteSize::TIB),
    ("GiB", ByteSize::GIB),
    ("MiB", ByteSize::MIB),
    ("KiB", ByteSize::KIB),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
];

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(input: &str) -> Result<Self, SizeError> {
        let s = input.trim();
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = (&s[..num_end], s[num_end..].trim_start());
        let bad = |why: &str| SizeError(format!("invalid size `{input}`: {why}"));
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty()
            || frac_part.contains('.')
            || (number.contains('.') && frac_part.is_empty())
        {
            return Err(bad("expected a number such as `512`, `64MiB` or `1.5GiB`"));
        }
        let unit_lc = unit.to_ascii_lowercase();
        let Some(&(_, mult)) = PARSE_UNITS.iter().find(|(u, _)| *u == unit_lc) else {
            return Err(bad(
                "unknown unit (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB or TB)",
            ));
        };
        if frac_part.len() > 18 {
            return Err(bad("too many decimal places"));
        }
        let too_big = || bad("does not fit in 64 bits");
        let int: u128 = int_part.parse::<u64>().map_err(|_| too_big())?.into();
        let mut total = int * u128::from(mult);
        if !frac_part.is_empty() {
            // Both parsed values are < 10^18, so these u128 products cannot overflow.
            let frac: u128 = frac_part.parse::<u64>().map_err(|_| too_big())?.into();
            let scale = 10u128.pow(frac_part.len() as u32);
            let scaled = frac * u128::from(mult);
            if scaled % scale != 0 {
                return Err(bad("not a whole number of bytes"));
            }
            total += scaled / scale;
        }
        u64::try_from(total).map(ByteSize).map_err(|_| too_big())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let best = DISPLAY_UNITS
            .iter()
            .filter(|(_, m)| n != 0 && n % m == 0)
            .min_by_key(|(_, m)| n / m);
        match best {
            Some((unit, m)) => write!(f, "{}{unit}", n / m),
            None => write!(f, "{n}B"),
        }
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> Self {
        Self(n)
    }
}

impl Serialize for ByteSize {
    /// Serializes as the human string (`"256MiB"`), which also sidesteps
    /// TOML's signed 64-bit integer limit.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes or a string such as \"64MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("size must not be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<u64, SizeError> {
        s.parse::<ByteSize>().map(ByteSize::bytes)
    }

    #[test]
    fn parses_units() {
        assert_eq!(p("0").unwrap(), 0);
        assert_eq!(p("4096").unwrap(), 4096);
        assert_eq!(p("512B").unwrap(), 512);
        assert_eq!(p("10KiB").unwrap(), 10 * 1024);
        assert_eq!(p("256MiB").unwrap(), 256 << 20);
        assert_eq!(p("1GiB").unwrap(), 1 << 30);
        assert_eq!(p("2TiB").unwrap(), 2 << 40);
        assert_eq!(p("4K").unwrap(), 4096);
        assert_eq!(p("3M").unwrap(), 3 << 20);
        assert_eq!(p("1G").unwrap(), 1 << 30);
        assert_eq!(p("1T").unwrap(), 1 << 40);
        assert_eq!(p("5KB").unwrap(), 5_000);
        assert_eq!(p("5MB").unwrap(), 5_000_000);
        assert_eq!(p("5GB").unwrap(), 5_000_000_000);
        assert_eq!(p("5TB").unwrap(), 5_000_000_000_000);
        assert_eq!(p(" 1 gib ").unwrap(), 1 << 30);
        assert_eq!(p("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(p("0.5K").unwrap(), 512);
        assert_eq!(p("18446744073709551615B").unwrap(), u64::MAX);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "GiB",
            "1.5B",
            "1.3KiB",
            "1..5G",
            "1.G",
            ".5G",
            "-1",
            "1 XB",
            "1GiBs",
            "16EiB",
            "18446744073709551616",
            "16777216TiB",
            "1e9",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            p("1.3KiB").unwrap_err().to_string(),
            "invalid size `1.3KiB`: not a whole number of bytes"
        );
    }

    #[test]
    fn displays_shortest_exact_form() {
        let d = |n: u64| ByteSize(n).to_string();
        assert_eq!(d(0), "0B");
        assert_eq!(d(1), "1B");
        assert_eq!(d(1000), "1KB");
        assert_eq!(d(1001), "1001B");
        assert_eq!(d(4096), "4KiB");
        assert_eq!(d(256 << 20), "256MiB");
        assert_eq!(d(1 << 30), "1GiB");
        assert_eq!(d(3 << 29), "1536MiB");
        assert_eq!(d(1_000_000_000_000), "1TB");
        assert_eq!(d(4_096_000), "4000KiB");
        assert_eq!(d(u64::MAX), "18446744073709551615B");
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(n in any::<u64>()) {
            prop_assert_eq!(ByteSize(n).to_string().parse::<ByteSize>(), Ok(ByteSize(n)));
        }

        #[test]
        fn unit_multiples_round_trip(n in 0u64..(1 << 20), shift in prop::sample::select(vec![0u32, 10, 20, 30, 40])) {
            let v = ByteSize(n << shift);
            prop_assert_eq!(v.to_string().parse::<ByteSize>(), Ok(v));
        }
    }
}
