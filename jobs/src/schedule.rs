//! Cron schedules: parsing (5 fields, or 6 with seconds first), the firings before and after
//! an instant in a time zone, and a plain-words description for ops.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use cron::Schedule;

/// Parses a 5- or 6-field cron expression.
pub fn parse(expr: &str) -> Result<Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 { format!("0 {expr}") } else { expr.to_owned() };
    Schedule::from_str(&full).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// The latest firing at or before `now` within `window`, if any.
pub fn previous(schedule: &Schedule, tz: Tz, now: DateTime<Utc>, window: Duration) -> Option<DateTime<Utc>> {
    let from = (now - chrono::Duration::from_std(window).ok()?).with_timezone(&tz);
    schedule.after(&from).map(|t| t.with_timezone(&Utc)).take_while(|t| *t <= now).last()
}

/// The next `n` firings after `now`.
pub fn next(schedule: &Schedule, tz: Tz, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    schedule.after(&now.with_timezone(&tz)).take(n).map(|t| t.with_timezone(&Utc)).collect()
}

/// `expr` in plain words where it has a common shape ("every day at 02:00 (UTC)"), else the
/// expression itself.
pub fn describe(expr: &str, tz: Tz) -> String {
    let f: Vec<&str> = expr.split_whitespace().collect();
    let f: &[&str] = match f.len() {
        5 => &f,
        6 if f[0] == "0" => &f[1..],
        _ => return format!("cron “{expr}” ({tz})"),
    };
    let (min, hour, dom, month, dow) = (f[0], f[1], f[2], f[3], f[4]);
    let num = |s: &str| s.parse::<u32>().ok();
    let at = match (num(min), num(hour)) {
        (Some(m), Some(h)) if m < 60 && h < 24 => Some(format!("{h:02}:{m:02}")),
        _ => None,
    };
    const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    let words = match (at, dom, month, dow) {
        (Some(at), "*", "*", "*") => format!("every day at {at}"),
        (Some(at), "*", "*", d) if num(d).is_some_and(|d| d < 7) => format!("every {} at {at}", DAYS[num(d).unwrap_or(0) as usize]),
        (Some(at), "*", "*", "1-5" | "MON-FRI") => format!("every weekday at {at}"),
        (Some(at), d, "*", "*") if num(d).is_some() => format!("on day {d} of every month at {at}"),
        (None, "*", "*", "*") if hour == "*" && min.starts_with("*/") => format!("every {} minutes", &min[2..]),
        (None, "*", "*", "*") if hour == "*" && num(min).is_some() => format!("every hour at minute {min}"),
        _ => return format!("cron “{expr}” ({tz})"),
    };
    format!("{words} ({tz})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_firing_within_the_window() {
        let s = parse("0 2 * * *").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z").unwrap().to_utc();
        let prev = previous(&s, Tz::UTC, now, Duration::from_secs(86_400)).unwrap();
        assert_eq!(prev.to_rfc3339(), "2026-11-26T02:00:00+00:00");
        let early = DateTime::parse_from_rfc3339("2026-11-26T01:00:00Z").unwrap().to_utc();
        assert!(previous(&s, Tz::UTC, early, Duration::from_secs(3600)).is_none());
        let berlin = previous(&s, Tz::Europe__Berlin, now, Duration::from_secs(86_400)).unwrap();
        assert_eq!(berlin.to_rfc3339(), "2026-11-26T01:00:00+00:00", "02:00 in Berlin is 01:00 UTC in winter");
        assert!(parse("not cron").is_err());
        assert!(parse("*/5 * * * * *").is_ok(), "six fields with seconds");
    }

    #[test]
    fn next_three_firings() {
        let s = parse("0 3 * * *").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z").unwrap().to_utc();
        let n: Vec<String> = next(&s, Tz::UTC, now, 3).iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(n, ["2026-11-27T03:00:00+00:00", "2026-11-28T03:00:00+00:00", "2026-11-29T03:00:00+00:00"]);
    }

    #[test]
    fn plain_words() {
        assert_eq!(describe("0 2 * * *", Tz::UTC), "every day at 02:00 (UTC)");
        assert_eq!(describe("30 3 * * 1", Tz::Europe__Berlin), "every Monday at 03:30 (Europe/Berlin)");
        assert_eq!(describe("*/15 * * * *", Tz::UTC), "every 15 minutes (UTC)");
        assert_eq!(describe("0 0 2 * * *", Tz::UTC), "every day at 02:00 (UTC)");
        assert_eq!(describe("0 2 1,15 * *", Tz::UTC), "cron “0 2 1,15 * *” (UTC)");
    }
}
