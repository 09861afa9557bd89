//! The clock behind `strftime_now(fmt)`.
//!
//! transformers implements it as `datetime.now().strftime(format)` (local
//! time of the Python process). Here the time comes from the request, so
//! renders are reproducible; without one the system clock is read as UTC.
//! `strftime` is implemented for the C89/POSIX conversions with the C
//! locale's English names, which is what CPython on glibc prints under the
//! default locale.
//!
//! Deliberately absent: time zones (`%z` prints nothing, `%Z` prints
//! nothing, as for a naive `datetime`), locale-dependent output, and the
//! glibc `%-d`-style padding modifiers.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A naive calendar date and wall-clock time (no time zone), like a Python
/// `datetime` without `tzinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms", `days_from_civil`).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Inverse of [`days_from_civil`] (same source, `civil_from_days`).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

impl CivilTime {
    /// A checked constructor: `None` for an impossible date or time.
    pub fn new(
        year: i32,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Option<CivilTime> {
        let ok = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        ok.then_some(CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// UTC civil time of a Unix timestamp.
    pub fn from_unix(secs: i64) -> CivilTime {
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400);
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// The system clock, in UTC.
    pub fn now_utc() -> CivilTime {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        CivilTime::from_unix(secs)
    }

    /// 0 = Monday .. 6 = Sunday (Python `date.weekday()`).
    fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday (3).
        (days_from_civil(self.year, self.month, self.day) + 3).rem_euclid(7) as usize
    }

    /// 1-based day of the year.
    fn yday(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1) + 1
    }

    /// Python `datetime.strftime(fmt)` for the C/POSIX conversions.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars();
        let month_name = MONTHS[usize::from(self.month.clamp(1, 12)) - 1];
        let wd = self.weekday();
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(spec) = chars.next() else {
                out.push('%');
                break;
            };
            let _ = match spec {
                'Y' => write!(out, "{}", self.year),
                'y' => write!(out, "{:02}", self.year.rem_euclid(100)),
                'C' => write!(out, "{:02}", self.year.div_euclid(100)),
                'm' => write!(out, "{:02}", self.month),
                'd' => write!(out, "{:02}", self.day),
                'e' => write!(out, "{:>2}", self.day),
                'H' => write!(out, "{:02}", self.hour),
                'I' => write!(out, "{:02}", hour12),
                'M' => write!(out, "{:02}", self.minute),
                'S' => write!(out, "{:02}", self.second),
                'p' => write!(out, "{}", if self.hour < 12 { "AM" } else { "PM" }),
                'B' => write!(out, "{month_name}"),
                'b' | 'h' => write!(out, "{}", &month_name[..3]),
                'A' => write!(out, "{}", WEEKDAYS[wd]),
                'a' => write!(out, "{}", &WEEKDAYS[wd][..3]),
                'u' => write!(out, "{}", wd + 1),
                'w' => write!(out, "{}", (wd + 1) % 7),
                'j' => write!(out, "{:03}", self.yday()),
                'F' => write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day),
                'D' => write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    self.year.rem_euclid(100)
                ),
                'T' => write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                ),
                'R' => write!(out, "{:02}:{:02}", self.hour, self.minute),
                'c' => write!(
                    out,
                    "{} {} {:>2} {:02}:{:02}:{:02} {}",
                    &WEEKDAYS[wd][..3],
                    &month_name[..3],
                    self.day,
                    self.hour,
                    self.minute,
                    self.second,
                    self.year
                ),
                'x' => write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    self.year.rem_euclid(100)
                ),
                'X' => write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                ),
                'n' => out.write_char('\n'),
                't' => out.write_char('\t'),
                '%' => write!(out, "%"),
                'z' | 'Z' => Ok(()),
                other => write!(out, "%{other}"),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip_and_weekday() {
        let t = CivilTime::from_unix(1_741_944_413); // 2025-03-14 09:26:53 UTC
        assert_eq!(t, CivilTime::new(2025, 3, 14, 9, 26, 53).unwrap());
        assert_eq!(
            t.strftime("%a %A %d %b %B %Y %j %I%p %y %%"),
            "Fri Friday 14 Mar March 2025 073 09AM 25 %"
        );
        assert_eq!(
            CivilTime::from_unix(0).strftime("%F %T %A"),
            "1970-01-01 00:00:00 Thursday"
        );
        assert_eq!(
            CivilTime::from_unix(951_782_400).strftime("%F %j"),
            "2000-02-29 060"
        );
        assert!(CivilTime::new(2023, 2, 29, 0, 0, 0).is_none());
    }
}
