//! `format: date-time` (RFC 3339) for the shortcut, with `jsonschema`'s
//! answers: its check is not public, and reaching it through a one-keyword
//! validator cost ~270 instructions a value against ~150 here (callgrind,
//! the non-LTO bench build; a 1 KiB order has thirteen). A property test
//! holds the two to the same answers.

/// Two ASCII digits at `b[at]`, `b[at + 1]` as a number (`None` past the end).
#[inline(always)]
fn two(b: &[u8], at: usize) -> Option<u8> {
    let (h, l) = (b.get(at)?.wrapping_sub(b'0'), b.get(at + 1)?.wrapping_sub(b'0'));
    (h < 10 && l < 10).then(|| h * 10 + l)
}

/// `YYYY-MM-DD`, a day that exists.
#[inline(always)]
fn date(b: &[u8; 10]) -> bool {
    if b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(century), Some(year), Some(month), Some(day)) = (two(b, 0), two(b, 2), two(b, 5), two(b, 8)) else {
        return false;
    };
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            let year = u16::from(century) * 100 + u16::from(year);
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 { 29 } else { 28 }
        }
        _ => return false,
    };
    day != 0 && day <= days
}

/// `HH:MM:SS[.frac](Z|±HH:MM)`; a leap second only at 23:59 UTC.
#[inline(always)]
fn time(b: &[u8]) -> bool {
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (two(b, 0), two(b, 3), two(b, 6)) else { return false };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 8;
    if b[i] == b'.' {
        i += 1;
        let first = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == first {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i == b.len() - 1 && (second != 60 || (hour == 23 && minute == 59)),
        Some(&sign @ (b'+' | b'-')) => {
            if b.len() - i != 6 || b[i + 3] != b':' {
                return false;
            }
            let (Some(off_h), Some(off_m)) = (two(b, i + 1), two(b, i + 4)) else { return false };
            if off_h > 23 || off_m > 59 {
                return false;
            }
            if second != 60 {
                return true;
            }
            // The leap second's time in UTC must be 23:59.
            let (off_h, off_m) = (i16::from(off_h), i16::from(off_m));
            let (mut h, mut m) = (i16::from(hour), i16::from(minute));
            if sign == b'+' {
                h -= off_h;
                m -= off_m;
            } else {
                h += off_h;
                m += off_m;
            }
            h += m / 60;
            m %= 60;
            if m < 0 {
                m += 60;
                h -= 1;
            }
            (h + 24) % 24 == 23 && m == 59
        }
        _ => false,
    }
}

/// Whether `s` is an RFC 3339 date-time as `jsonschema` checks it (it
/// splits at the first `T` or `t`; a date is ten bytes without either,
/// so that split is at byte 10 or the answer is no).
pub(super) fn is_date_time(s: &[u8]) -> bool {
    match (s.get(..10), s.get(10), s.get(11..)) {
        (Some(d), Some(b'T' | b't'), Some(t)) => d.try_into().is_ok_and(date) && time(t),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn jsonschema_says(s: &str) -> bool {
        let v = jsonschema::options().should_validate_formats(true).build(&json!({ "format": "date-time" })).unwrap();
        v.is_valid(&json!(s))
    }

    #[test]
    fn known_answers() {
        for (s, ok) in [
            ("2024-01-01T00:00:00Z", true),
            ("2024-02-29t23:59:60z", true),
            ("2023-02-29T00:00:00Z", false),
            ("2000-02-29T00:00:00.123456+05:30", true),
            ("2024-12-31T18:59:60-05:00", true),
            ("2024-12-31T18:59:60+05:00", false),
            ("2024-13-01T00:00:00Z", false),
            ("2024-01-01 00:00:00Z", false),
            ("2024-01-01T00:00:00", false),
            ("2024-01-01T24:00:00Z", false),
            ("2024-01-01T00:00:00.Z", false),
            ("2024-01-01T00:00:00+0100", false),
        ] {
            assert_eq!(is_date_time(s.as_bytes()), ok, "{s}");
            assert_eq!(jsonschema_says(s), ok, "{s}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn the_same_answers_as_jsonschema(
            s in prop_oneof![
                "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{0,3})?([Zz]|[+-][0-2][0-9]:[0-5][0-9])",
                "[0-9Tt:.+Zz-]{0,26}",
                "(1900|2000|2023|2024)-02-(28|29|30)T23:59:60(Z|[+-](00|01|23):(00|01|59))",
            ]
        ) {
            prop_assert_eq!(is_date_time(s.as_bytes()), jsonschema_says(&s), "{}", s);
        }
    }
}
