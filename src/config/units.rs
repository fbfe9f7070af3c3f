//! Human-written units in the config: durations (`250ms`, `30s`), sizes
//! (`1MiB`), and rates (`10/s`, `1000/min`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why `value` does not match the schema's `pattern`, in the words of the
/// unit the pattern stands for (`None` for other patterns).
pub(crate) fn explain(pattern: &str, value: &serde_json::Value) -> Option<String> {
    let text = value.as_str()?;
    let why = |r: Result<(), String>| r.err();
    if pattern == DURATION_PATTERN {
        why(text.parse::<Duration>().map(drop))
    } else if pattern == SIZE_PATTERN {
        why(text.parse::<ByteSize>().map(drop))
    } else if pattern == RATE_PATTERN {
        why(text.parse::<Rate>().map(drop))
    } else if pattern == PERCENT_PATTERN {
        why(text.parse::<Percent>().map(drop))
    } else {
        None
    }
}

const SIZE_PATTERN: &str = "^[0-9]+\\s*(B|KB|kB|MB|GB|KiB|MiB|GiB)?$";
const RATE_PATTERN: &str = "^\\s*0*[1-9][0-9]*\\s*/\\s*(s|sec|second|m|min|minute|h|hour|d|day)\\s*$";
const PERCENT_PATTERN: &str = "^\\s*(0*100(\\.0+)?|0*[0-9]{1,2}(\\.[0-9]+)?)\\s*%\\s*$";

/// Deserializes any `FromStr` type from a YAML scalar, turning its parse
/// error into a serde error (which then carries the config path and line).
fn from_scalar<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let raw = String::deserialize(de)?;
    raw.parse().map_err(serde::de::Error::custom)
}

/// A duration such as `250ms`, `30s`, `5m`, `1h`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

/// The one grammar of durations, which `check` and the JSON Schema
/// (`DURATION_PATTERN`) both enforce: one or more parts, each a number
/// (decimals allowed) and a unit, spaces allowed between them.
const DURATION_UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];
/// The longest duration (ten years, in seconds): the gateway adds
/// durations to clocks and multiplies them (backoff, ejection times), and
/// `1e19s` overflowed there (a panic on every connection). Envoy caps its
/// durations too (about 10,000 years, in its own arithmetic).
const MAX_DURATION_SECS: u64 = 3650 * 86_400;
const DURATION_PATTERN: &str = "^\\s*([0-9]+(\\.[0-9]+)?\\s*(ns|us|ms|s|m|h|d)\\s*)+$";

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let bad = |why: &str| {
            format!(
                "`{text}` is not a duration{why}; write a number and a unit (ns, us, ms, s, m, h, d), like `250ms`, `30s`, `5m` or `1h30m`"
            )
        };
        let mut rest = text;
        let mut nanos: u128 = 0;
        if rest.is_empty() {
            return Err(bad(""));
        }
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let number = &rest[..number_len];
            let valid_number = !number.is_empty()
                && number.as_bytes()[0].is_ascii_digit()
                && !number.ends_with('.')
                && number.matches('.').count() <= 1;
            if !valid_number {
                return Err(bad(""));
            }
            rest = rest[number_len..].trim_start();
            let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            let Some((_, per)) = DURATION_UNITS.iter().find(|(u, _)| *u == &rest[..unit_len]) else {
                return Err(bad(if unit_len == 0 { " (a unit is needed)" } else { "" }));
            };
            rest = rest[unit_len..].trim_start();
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            let whole: u128 = whole.parse().map_err(|_| bad(""))?;
            let mut part = whole.saturating_mul(u128::from(*per));
            // The fraction, digit by digit (exact to the nanosecond).
            let mut scale = u128::from(*per);
            for d in fraction.bytes() {
                scale /= 10;
                part = part.saturating_add(u128::from(d - b'0') * scale);
            }
            nanos = nanos.saturating_add(part);
        }
        if nanos > u128::from(MAX_DURATION_SECS) * 1_000_000_000 {
            return Err(format!("`{text}` is too long: a duration is at most `3650d` (ten years)"));
        }
        let secs = (nanos / 1_000_000_000) as u64;
        Ok(Duration(StdDuration::new(secs, (nanos % 1_000_000_000) as u32)))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_scalar(de)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit (ns, us, ms, s, m, h, d), like `250ms`, `30s`, `5m` or `1h30m`",
            "examples": ["250ms", "30s"]
        })
    }
}

/// A size in bytes such as `512`, `64KiB`, `1MiB`, `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let bad = || not_a_size(s);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            // NGINX's spellings (`10k`, `1m`): name the two this reads.
            u @ ("k" | "K" | "kb" | "Kb" | "kib" | "m" | "M" | "mb" | "mib" | "g" | "G" | "gb" | "gib") => {
                let letter = u[..1].to_ascii_uppercase();
                return Err(format!(
                    "`{s}` is not a size: `{u}` is no unit here; write `{digits}{letter}iB` (powers of 1024, as NGINX's `{digits}{}`) or `{digits}{letter}B` (of 1000)",
                    u[..1].to_ascii_lowercase()
                ));
            }
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        // Plain numbers (`1024`) arrive as integers, units as strings;
        // anything else gets the same words as a bad string (an untagged
        // enum here said "data did not match any variant of untagged enum").
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like `512KiB`, `1MiB`, `10MB` or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| E::custom(not_a_size(n)))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(not_a_size(n)))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<ByteSize, E> {
                Err(E::custom(not_a_size(b)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }
        }
        de.deserialize_any(Size)
    }
}

fn not_a_size(v: impl fmt::Display) -> String {
    format!("`{v}` is not a size; write a whole number of bytes or one with a unit, like `512KiB`, `1MiB` or `10MB`")
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // One schema, not `anyOf` of the two: `pattern` holds for strings
        // only and `minimum` for numbers only, and a bad string then fails
        // on the pattern, which `explain` words as a size (under `anyOf`
        // it failed as "expected a whole number").
        json_schema!({
            "type": ["integer", "string"],
            "minimum": 0,
            "pattern": SIZE_PATTERN,
            "description": "A size: `512KiB`, `1MiB`, `10MB`, or a number of bytes"
        })
    }
}

/// A rate such as `10/s`, `1000/min`, `50000/h`, `1000000/day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: StdDuration,
}

impl Rate {
    /// The largest `count` (and `burst`) a rate limit takes.
    pub const MAX_COUNT: u64 = 1_000_000_000;
}

const MAX_COUNT: u64 = Rate::MAX_COUNT;

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate; write it like `10/s`, `1000/min` or `5000/h`");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let count: u64 = count.parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("`{s}`: a rate must allow at least one request"));
        }
        // Requests are spaced in nanoseconds: a billion a second is the finest rate.
        if count > MAX_COUNT {
            return Err(format!("`{s}`: at most {MAX_COUNT} requests a period"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3_600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        Ok(Rate { count, per: StdDuration::from_secs(per) })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3_600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_scalar(de)
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": RATE_PATTERN,
            "description": "A rate: `10/s`, `1000/min`, `5000/h`, `100000/day`"
        })
    }
}

/// A share such as `20%` or `12.5%` (0 to 100), kept as a fraction (0.2).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let hint = || format!("`{s}` is not a percentage; write it like `20%`");
        let number = s.strip_suffix('%').ok_or_else(hint)?.trim();
        // Digits and one decimal point only (f64's parser takes `1e2`, `inf`).
        let plain = number.split_once('.').map_or(number, |(w, f)| if f.is_empty() { "" } else { w });
        if plain.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            || number.matches('.').count() > 1
        {
            return Err(hint());
        }
        let n: f64 = number.parse().map_err(|_| hint())?;
        if !(0.0..=100.0).contains(&n) {
            return Err(format!("`{s}`: a percentage is between 0% and 100%"));
        }
        Ok(Percent(n / 100.0))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        from_scalar(de)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PERCENT_PATTERN,
            "description": "A percentage: `20%`, `12.5%`"
        })
    }
}

// Written back the way a config writes them (the admin's `/config`).
impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In the config's own grammar (`1h30m`, `250ms`, `0s`), so that what
/// `/config` shows loads again.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, per) in DURATION_UNITS.iter().rev() {
            let per = u128::from(*per);
            if nanos >= per {
                write!(f, "{}{unit}", nanos / per)?;
                nanos %= per;
            }
        }
        Ok(())
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}%", self.0 * 100.0))
    }
}

/// A date in the config: `2026-06-30` (midnight UTC) or an RFC 3339 time
/// in UTC (`2026-06-30T12:00:00Z`). Dates before 1970 are refused.
pub fn parse_date(s: &str) -> Option<std::time::SystemTime> {
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    let t = humantime::parse_rfc3339(&full).ok()?;
    (t >= std::time::UNIX_EPOCH + StdDuration::from_secs(1)).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("250ms".parse::<Duration>().unwrap().0, StdDuration::from_millis(250));
        assert_eq!("30s".parse::<Duration>().unwrap().0, StdDuration::from_secs(30));
        assert_eq!("5m".parse::<Duration>().unwrap().0, StdDuration::from_secs(300));
        assert!("fast".parse::<Duration>().is_err());
        assert!("10".parse::<Duration>().is_err());
        assert!("-1s".parse::<Duration>().is_err());
        assert_eq!("1h30m".parse::<Duration>().unwrap().0, StdDuration::from_secs(5400));
        assert_eq!("1h 30m".parse::<Duration>().unwrap().0, StdDuration::from_secs(5400));
        assert_eq!("1.5s".parse::<Duration>().unwrap().0, StdDuration::from_millis(1500));
        assert_eq!("2d".parse::<Duration>().unwrap().0, StdDuration::from_secs(172_800));
        assert!("10".parse::<Duration>().unwrap_err().contains("a unit is needed"));
        assert_eq!("3650d".parse::<Duration>().unwrap().0, StdDuration::from_secs(3650 * 86_400));
        for long in ["3650d 1ns", "3651d", "10000000000000000000s", "999999999999999999999999999999d"] {
            assert!(long.parse::<Duration>().unwrap_err().contains("at most `3650d`"), "{long}");
        }
        for text in ["0s", "250ms", "1h30m", "2d3h4m5s6ms7us8ns", "40d"] {
            assert_eq!(text.parse::<Duration>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn durations_follow_the_schema_pattern_exactly() {
        // check and the editor schema accept the same spellings: the
        // ones humantime took beyond the grammar are refused by both.
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "250ms", "30s", "5m", "1h", "1d", "1h30m", "1h 30m", "1.5s", " 10s ", "0s", "10 s", "100ns", "3us",
            "10sec", "10 sec", "2min", "1w", "10", "", "s", "1.s", ".5s", "1..5s", "-1s", "1h30", "5 m s", "1y",
            "1ms2", "${T}", "10S", "1M",
        ] {
            assert_eq!(pattern.is_match(text), text.parse::<Duration>().is_ok(), "`{text}`");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("1MiB".parse::<ByteSize>().unwrap().0, 1 << 20);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert_eq!("512".parse::<ByteSize>().unwrap().0, 512);
        assert!("1 parsec".parse::<ByteSize>().is_err());
        assert!("99999999999999999999GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn rates_follow_the_schema_pattern_exactly() {
        let pattern = regex::Regex::new(RATE_PATTERN).unwrap();
        for text in
            ["10/s", "1000/min", "5 / h", "1/day", "0/s", "00/s", "+5/s", "10/fortnight", "ten/s", "10", "/s", "007/s"]
        {
            assert_eq!(pattern.is_match(text), text.parse::<Rate>().is_ok(), "`{text}`");
        }
    }

    #[test]
    fn rates() {
        let r: Rate = "10/s".parse().unwrap();
        assert_eq!((r.count, r.per), (10, StdDuration::from_secs(1)));
        let r: Rate = "1000/min".parse().unwrap();
        assert_eq!((r.count, r.per.as_secs()), (1000, 60));
        assert_eq!(r.to_string(), "1000/min");
        assert!("0/s".parse::<Rate>().is_err());
        assert!("10/fortnight".parse::<Rate>().is_err());
        assert!("ten/s".parse::<Rate>().is_err());
    }

    #[test]
    fn percents_follow_the_schema_pattern_exactly() {
        let pattern = regex::Regex::new(PERCENT_PATTERN).unwrap();
        for text in [
            "20%", "12.5 %", "0%", "100%", "100.0%", "99.99%", "101%", "150%", "-1%", "20", "%", "1e2%", "007%",
            "0100%", "5.%", ".5%", "inf%",
        ] {
            assert_eq!(pattern.is_match(text), text.parse::<Percent>().is_ok(), "`{text}`");
        }
    }

    #[test]
    fn percents() {
        assert_eq!("20%".parse::<Percent>().unwrap().0, 0.2);
        assert_eq!("12.5 %".parse::<Percent>().unwrap().0, 0.125);
        assert!("20".parse::<Percent>().is_err());
        assert!("101%".parse::<Percent>().is_err());
        assert!("-1%".parse::<Percent>().is_err());
    }
}
