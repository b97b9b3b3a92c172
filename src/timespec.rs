//! Points in time and ages as people write them: `--to-time` and the
//! retention age.
//!
//! Owns parsing an RFC 3339 time or a Unix time into milliseconds since the
//! Unix epoch, and an age such as `30d` or `1d12h` into a duration. It must
//! not read the clock or a store, and it formats nothing (times are shown by
//! [`crate::utc_iso8601`], which this parser agrees with).
//!
//! Decision: fractions of a second below the millisecond are truncated, never
//! rounded: `10:00:00.9999Z` is `10:00:00.999Z`. A restore "at" a time then
//! never reaches a version received after the time written.
//!
//! Decision: a leap second (`23:59:60`, which RFC 3339 allows) is the last
//! millisecond of its minute, `23:59:59.999`, whatever fraction follows it:
//! Unix time has no leap seconds, and that is the latest instant before the
//! next minute that it can name.
//!
//! Decision: times before 1970-01-01T00:00:00Z are refused (no store holds
//! a version from before the Unix epoch, and the result is unsigned), and so
//! are years above 9999 (RFC 3339 has four digits for the year).
//!
//! ```
//! use cln_backup::timespec::{parse_age, parse_point};
//! use cln_backup::utc_iso8601;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let at = parse_point("2026-12-07T11:30:00.9999+01:00")?;
//! // Truncated to the millisecond, and shown in UTC.
//! assert_eq!(utc_iso8601(at, true), "2026-12-07T10:30:00.999Z");
//! // A retention age of a day and a half, before that time.
//! let cutoff = at - parse_age("1d12h")?.as_millis() as u64;
//! assert_eq!(utc_iso8601(cutoff, false), "2026-12-05T22:30:00Z");
//! # Ok(()) }
//! ```

use std::time::Duration;

/// What the error of [`parse_point`] says a time may be.
const POINT_FORMS: &str = "an RFC 3339 time such as 2026-12-07T10:30:00Z or 2026-12-07 11:30:00.250+01:00, \
                           or a Unix time in seconds such as 1796640000 or 1796640000.250";

/// What the error of [`parse_age`] says an age may be.
const AGE_FORMS: &str = "a number and a unit (s, m, h, d or w) such as 30d, 12h or 90m, or several such as 1d12h";

/// Parse a point in time: RFC 3339 (`2026-12-07T10:30:00Z`,
/// `2026-12-07T10:30:00.250+01:00`, with a space or a lower-case `t` in
/// place of the `T` too) or a Unix time in seconds with an optional
/// fraction (`1796640000`, `1796640000.5`). Returns milliseconds since the
/// Unix epoch; the error names `text` and what is wrong with it.
///
/// ```
/// use cln_backup::timespec::parse_point;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ms = parse_point("2026-12-07T10:30:00.250Z")?;
/// assert_eq!(parse_point("2026-12-07 11:30:00.250+01:00")?, ms);
/// assert_eq!(parse_point("1796639400.25")?, ms);
/// let err = parse_point("yesterday").unwrap_err();
/// assert!(err.starts_with("\"yesterday\" is not a time"), "{err}");
/// # Ok(()) }
/// ```
pub fn parse_point(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let parsed =
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') { unix_time(t) } else { rfc3339(t) };
    parsed.map_err(|why| format!("{text:?} is not a time: {why} (expected {POINT_FORMS})"))
}

/// Parse an age: numbers each followed by a unit, `s`, `m`, `h`, `d` (24
/// hours) or `w` (7 days): `90d`, `12h`, `1d12h`. Units go from the largest
/// to the smallest, each at most once; an age of zero is refused (it would
/// drop every snapshot but the newest at once, which is never what was
/// meant). The error names `text`.
///
/// ```
/// use cln_backup::timespec::parse_age;
/// use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(parse_age("1d12h")?, Duration::from_secs(36 * 3600));
/// assert_eq!(parse_age("2w")?, Duration::from_secs(14 * 86_400));
/// assert!(parse_age("0d").is_err(), "an age of zero");
/// assert!(parse_age("12h1d").is_err(), "units from the largest");
/// # Ok(()) }
/// ```
pub fn parse_age(text: &str) -> Result<Duration, String> {
    age(text.trim()).map_err(|why| format!("{text:?} is not an age: {why} (expected {AGE_FORMS})"))
}

fn age(t: &str) -> Result<Duration, String> {
    if t.is_empty() {
        return Err("it is empty".into());
    }
    let mut total: u64 = 0;
    // The last unit's size, to require decreasing units.
    let mut last: Option<(char, u64)> = None;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{:?} does not start with a number", rest));
        }
        let (number, after) = rest.split_at(digits);
        let unit = after.chars().next().ok_or_else(|| format!("{number} has no unit"))?;
        let secs: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            other => return Err(format!("{other:?} is not a unit")),
        };
        if let Some((prev, prev_secs)) = last {
            if secs >= prev_secs {
                return Err(format!("{unit} after {prev}: units go from the largest to the smallest, each once"));
            }
        }
        last = Some((unit, secs));
        let n: u64 = number.parse().map_err(|_| format!("{number} is too large"))?;
        total = n.checked_mul(secs).and_then(|s| total.checked_add(s)).ok_or("it is too long")?;
        rest = &after[unit.len_utf8()..];
    }
    if total == 0 {
        return Err("it is zero".into());
    }
    Ok(Duration::from_secs(total))
}

/// `1796640000` or `1796640000.250`: seconds, fraction truncated to ms.
fn unix_time(t: &str) -> Result<u64, String> {
    let (secs, frac) = match t.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (t, None),
    };
    if secs.is_empty() {
        return Err("the seconds are missing before the '.'".into());
    }
    let secs: u64 = secs.parse().map_err(|_| format!("{secs} seconds is too large"))?;
    let ms = match frac {
        Some(f) => fraction_ms(f)?,
        None => 0,
    };
    secs.checked_mul(1000).and_then(|s| s.checked_add(ms)).ok_or_else(|| format!("{secs} seconds is too large"))
}

/// The digits after a decimal point, as milliseconds (truncated).
fn fraction_ms(digits: &str) -> Result<u64, String> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a '.' must be followed by digits".into());
    }
    let mut ms = 0u64;
    for (i, b) in digits.bytes().take(3).enumerate() {
        ms += u64::from(b - b'0') * [100, 10, 1][i];
    }
    Ok(ms)
}

/// `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|±HH:MM)`.
fn rfc3339(t: &str) -> Result<u64, String> {
    let b = t.as_bytes();
    // The fixed part: date, separator, hour, minute and second.
    if b.len() < 19 {
        return Err("it is too short for a date and a time".into());
    }
    let field = |at: usize, len: usize, what: &str| -> Result<u32, String> {
        let s = t.get(at..at + len).ok_or_else(|| format!("the {what} is not {len} digits"))?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("the {what} {s:?} is not {len} digits"));
        }
        s.parse().map_err(|_| format!("the {what} {s:?} is not a number"))
    };
    let sep = |at: usize, want: &[u8], what: &str| -> Result<(), String> {
        if want.contains(&b[at]) {
            Ok(())
        } else {
            Err(format!("{what} is expected at position {}", at + 1))
        }
    };
    let year = field(0, 4, "year")?;
    sep(4, b"-", "'-' after the year")?;
    let month = field(5, 2, "month")?;
    sep(7, b"-", "'-' after the month")?;
    let day = field(8, 2, "day")?;
    sep(10, b"Tt ", "'T' or a space between the date and the time")?;
    let hour = field(11, 2, "hour")?;
    sep(13, b":", "':' after the hour")?;
    let minute = field(14, 2, "minute")?;
    sep(16, b":", "':' after the minute")?;
    let second = field(17, 2, "second")?;

    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} does not exist"));
    }
    let days_in_month = days_in_month(year, month);
    if day == 0 || day > days_in_month {
        return Err(format!("{year:04}-{month:02} has no day {day:02} (it has {days_in_month})"));
    }
    if hour > 23 {
        return Err(format!("hour {hour:02} does not exist"));
    }
    if minute > 59 {
        return Err(format!("minute {minute:02} does not exist"));
    }
    if second > 60 {
        return Err(format!("second {second:02} does not exist"));
    }

    // The fraction, then the offset.
    let mut rest = &t[19..];
    let mut ms = 0u64;
    if let Some(after) = rest.strip_prefix('.') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        ms = fraction_ms(&after[..digits])?;
        rest = &after[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        "" => return Err("the UTC offset is missing (Z, or +HH:MM or -HH:MM)".into()),
        _ => offset(rest)?,
    };
    if second == 60 {
        // Decision (see the module): a leap second is the minute's last millisecond.
        ms = 999;
    }
    let second = second.min(59);

    let days = days_since_epoch(year, month, day);
    let local = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let utc = local - offset_secs;
    if utc < 0 {
        return Err("it is before 1970-01-01T00:00:00Z".into());
    }
    Ok(utc as u64 * 1000 + ms)
}

/// `+HH:MM` or `-HH:MM` as seconds east of UTC.
fn offset(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let bad = || format!("{text:?} is not a UTC offset (Z, or +HH:MM or -HH:MM)");
    if b.len() != 6 || b[3] != b':' {
        return Err(bad());
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(bad()),
    };
    let two = |hi: u8, lo: u8| -> Result<i64, String> {
        if hi.is_ascii_digit() && lo.is_ascii_digit() {
            Ok(i64::from(hi - b'0') * 10 + i64::from(lo - b'0'))
        } else {
            Err(bad())
        }
    };
    let (h, m) = (two(b[1], b[2])?, two(b[4], b[5])?);
    if h > 23 || m > 59 {
        return Err(format!("{text:?} is not a UTC offset (hours up to 23, minutes up to 59)"));
    }
    Ok(sign * (h * 3600 + m * 60))
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-month-day` (negative before it).
fn days_since_epoch(year: u32, month: u32, day: u32) -> i64 {
    // Leap days in years 1..=y.
    let leaps = |y: i64| y / 4 - y / 100 + y / 400;
    let y = i64::from(year);
    let mut days = 365 * (y - 1970) + leaps(y - 1) - leaps(1969);
    for m in 1..month {
        days += i64::from(days_in_month(year, m));
    }
    days + i64::from(day) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::utc_iso8601;

    fn ms(text: &str) -> u64 {
        parse_point(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(text: &str, why: &str) {
        let err = parse_point(text).unwrap_err();
        assert!(err.contains(&format!("{text:?}")) && err.contains(why), "{text}: {err}");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(ms("1970-01-01T00:00:00Z"), 0);
        assert_eq!(ms("2026-12-07T10:30:00Z"), 1_796_639_400_000);
        assert_eq!(ms("2026-12-07 10:30:00z"), 1_796_639_400_000);
        assert_eq!(ms("2026-12-07t10:30:00Z"), 1_796_639_400_000);
        assert_eq!(ms("  2026-12-07T10:30:00Z\n"), 1_796_639_400_000);
        // Offsets: east of UTC is earlier in UTC.
        assert_eq!(ms("2026-12-07T11:30:00+01:00"), 1_796_639_400_000);
        assert_eq!(ms("2026-12-07T05:00:00-05:30"), 1_796_639_400_000);
        assert_eq!(ms("2026-12-08T00:00:00+13:30"), 1_796_639_400_000);
        assert_eq!(ms("2026-12-07T10:30:00+00:00"), ms("2026-12-07T10:30:00-00:00"));
        // An offset can move the day, the month and the year.
        assert_eq!(ms("2027-01-01T00:30:00+01:00"), ms("2026-12-31T23:30:00Z"));
        assert_eq!(ms("1970-01-01T01:00:00+01:00"), 0);
    }

    #[test]
    fn fractions_are_truncated_to_the_millisecond() {
        assert_eq!(ms("2026-12-07T10:30:00.250Z"), 1_796_639_400_250);
        assert_eq!(ms("2026-12-07T10:30:00.5Z"), 1_796_639_400_500);
        assert_eq!(ms("2026-12-07T10:30:00.25+01:00"), 1_796_635_800_250);
        assert_eq!(ms("2026-12-07T10:30:00.9999999Z"), 1_796_639_400_999);
        assert_eq!(ms("2026-12-07T10:30:00.0019Z"), 1_796_639_400_001);
        assert_eq!(ms("1796640000"), 1_796_640_000_000);
        assert_eq!(ms("1796640000.250"), 1_796_640_000_250);
        assert_eq!(ms("1796640000.5"), 1_796_640_000_500);
        assert_eq!(ms("1796640000.0009"), 1_796_640_000_000);
        assert_eq!(ms("0"), 0);
    }

    #[test]
    fn calendar_ranges_and_leap_years() {
        assert_eq!(ms("2024-02-29T00:00:00Z"), ms("2024-02-28T00:00:00Z") + 86_400_000);
        assert_eq!(ms("2024-03-01T00:00:00Z"), ms("2024-02-29T00:00:00Z") + 86_400_000);
        assert_eq!(ms("2000-02-29T12:00:00Z"), 951_825_600_000);
        assert_eq!(ms("2100-03-01T00:00:00Z"), ms("2100-02-28T00:00:00Z") + 86_400_000);
        refused("2023-02-29T00:00:00Z", "has no day 29 (it has 28)");
        refused("2100-02-29T00:00:00Z", "has no day 29");
        refused("2026-04-31T00:00:00Z", "has no day 31 (it has 30)");
        refused("2026-12-00T00:00:00Z", "has no day 00");
        refused("2026-13-01T00:00:00Z", "month 13");
        refused("2026-00-01T00:00:00Z", "month 00");
        refused("2026-12-07T24:00:00Z", "hour 24");
        refused("2026-12-07T10:60:00Z", "minute 60");
        refused("2026-12-07T10:30:61Z", "second 61");
    }

    #[test]
    fn a_leap_second_is_the_last_millisecond_of_its_minute() {
        assert_eq!(ms("2016-12-31T23:59:60Z"), ms("2016-12-31T23:59:59.999Z"));
        assert_eq!(ms("2016-12-31T23:59:60.5Z"), ms("2016-12-31T23:59:59.999Z"));
        assert_eq!(ms("2017-01-01T00:59:60+01:00"), ms("2016-12-31T23:59:59.999Z"));
        assert!(ms("2016-12-31T23:59:60Z") < ms("2017-01-01T00:00:00Z"));
    }

    #[test]
    fn bad_times_are_refused_naming_the_text() {
        refused("", "too short");
        refused("yesterday", "too short");
        refused("2026-12-07", "too short");
        refused("2026-12-07T10:30:00", "UTC offset is missing");
        refused("2026-12-07T10:30Z", "too short");
        refused("2026/12/07T10:30:00Z", "'-' after the year");
        refused("2026-12-07_10:30:00Z", "'T' or a space");
        refused("2026-12-07T10.30:00Z", "':' after the hour");
        refused("2026-1a-07T10:30:00Z", "month \"1a\"");
        refused("2026-12-07T10:30:00+0100", "not a UTC offset");
        refused("2026-12-07T10:30:00+24:00", "hours up to 23");
        refused("2026-12-07T10:30:00+01:60", "minutes up to 59");
        refused("2026-12-07T10:30:00 UTC", "not a UTC offset");
        refused("2026-12-07T10:30:00.Z", "followed by digits");
        refused("1969-12-31T23:59:59Z", "before 1970");
        refused("1970-01-01T00:30:00+01:00", "before 1970");
        refused("1796640000.", "followed by digits");
        refused("1796640000.2.5", "followed by digits");
        refused(".5", "seconds are missing");
        refused("99999999999999999999", "too large");
        refused("18446744073709552", "too large");
        refused("-5", "too short");
        // Each error says what a time may be.
        assert!(parse_point("x").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn agrees_with_the_formatter() {
        // Every format of utc_iso8601 parses back to the same instant,
        // across leap days, month and year ends and the millisecond.
        let mut t = 0u64;
        while t < 4_102_444_800_000 {
            let with_ms = utc_iso8601(t, true);
            assert_eq!(ms(&with_ms), t, "{with_ms}");
            let whole = utc_iso8601(t, false);
            assert_eq!(ms(&whole), t / 1000 * 1000, "{whole}");
            assert_eq!(utc_iso8601(ms(&with_ms), true), with_ms);
            t += 3_601_999_877;
        }
        for text in ["2024-02-29T23:59:59.999Z", "2000-01-01T00:00:00.000Z", "2099-12-31T12:00:00.001Z"] {
            assert_eq!(utc_iso8601(ms(text), true), text);
        }
        assert_eq!(utc_iso8601(ms("2026-12-07T11:30:00.250+01:00"), true), "2026-12-07T10:30:00.250Z");
    }

    #[test]
    fn ages() {
        let age = |t: &str| parse_age(t).unwrap_or_else(|e| panic!("{e}")).as_secs();
        assert_eq!(age("30d"), 30 * 86_400);
        assert_eq!(age("12h"), 12 * 3600);
        assert_eq!(age("90m"), 5400);
        assert_eq!(age("3600s"), 3600);
        assert_eq!(age("2w"), 14 * 86_400);
        assert_eq!(age("1d12h"), 36 * 3600);
        assert_eq!(age("1w2d3h4m5s"), 604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5);
        assert_eq!(age(" 0d1s "), 1);
        for (text, why) in [
            ("0d", "it is zero"),
            ("0h0m", "it is zero"),
            ("", "empty"),
            ("30", "30 has no unit"),
            ("d", "does not start with a number"),
            ("30x", "'x' is not a unit"),
            ("30D", "'D' is not a unit"),
            ("1.5d", "'.' is not a unit"),
            ("12h1d", "d after h"),
            ("1d1d", "d after d"),
            ("1d 12h", "\" 12h\" does not start with a number"),
            ("-1d", "does not start with a number"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999w", "too long"),
        ] {
            let err = parse_age(text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")) && err.contains(why), "{text}: {err}");
        }
    }
}
