//! UTC calendar fields of a `SystemTime`, for log timestamps (no time-zone
//! database: access logs are in UTC).

use std::time::{SystemTime, UNIX_EPOCH};

pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Howard Hinnant's `civil_from_days`.
pub fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil { year, month, day, hour: (rem / 3600) as u32, minute: (rem / 60 % 60) as u32, second: (rem % 60) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn matches_known_dates() {
        let at = |s: u64| civil(UNIX_EPOCH + Duration::from_secs(s));
        let c = at(0);
        assert_eq!((c.year, c.month, c.day, c.hour), (1970, 1, 1, 0));
        // 2000-02-29T12:34:56Z
        let c = at(951_827_696);
        assert_eq!((c.year, c.month, c.day, c.hour, c.minute, c.second), (2000, 2, 29, 12, 34, 56));
        // 2026-12-31T23:59:59Z
        let c = at(1_798_761_599);
        assert_eq!((c.year, c.month, c.day, c.hour, c.minute, c.second), (2026, 12, 31, 23, 59, 59));
    }
}
