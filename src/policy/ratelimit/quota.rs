//! Quotas: fixed budgets per calendar minute, hour, day or month, in UTC.
//! Windows are computed from a Unix time given by the caller.

pub use super::config::Period;

/// `(window id, first second of the next window)` for Unix second `now`.
pub fn window(period: Period, now: u64) -> (u64, u64) {
    match period {
        Period::Minute => (now / 60, (now / 60 + 1) * 60),
        Period::Hour => (now / 3600, (now / 3600 + 1) * 3600),
        Period::Day => (now / 86_400, (now / 86_400 + 1) * 86_400),
        Period::Month => {
            let (y, m) = year_month(now / 86_400);
            let next = if m == 12 { days_from_civil(y + 1, 1) } else { days_from_civil(y, m + 1) };
            (y as u64 * 12 + m as u64, next as u64 * 86_400)
        }
    }
}

/// Civil date of a day number (days since 1970-01-01), Howard Hinnant's algorithm.
fn year_month(days: u64) -> (i64, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-02-28T23:59:59Z and the second after.
    const FEB_END: u64 = 1_772_323_199;

    #[test]
    fn windows_follow_the_calendar() {
        let (w1, reset1) = window(Period::Month, FEB_END);
        let (w2, _) = window(Period::Month, FEB_END + 1);
        assert_ne!(w1, w2, "March starts a new month");
        assert_eq!(reset1, FEB_END + 1);
        let (d1, dreset) = window(Period::Day, FEB_END);
        assert_eq!(dreset, FEB_END + 1);
        assert_eq!(window(Period::Day, FEB_END - 3600).0, d1);
        assert_eq!(window(Period::Minute, 120).1, 180);
        // Leap year: 2028-02-29 is still February.
        let feb29 = days_from_civil(2028, 2) as u64 * 86_400 + 28 * 86_400;
        assert_eq!(year_month(feb29 / 86_400), (2028, 2));
        assert_eq!(year_month(feb29 / 86_400 + 1), (2028, 3));
    }
}
