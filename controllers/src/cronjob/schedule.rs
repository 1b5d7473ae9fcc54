//! Cron schedules as CronJobs write them, and the instants they fire at.
//!
//! The grammar is the one Kubernetes accepts (robfig/cron's standard parser): five fields —
//! minute, hour, day of month, month, day of week — each `*` (or `?`), a number, a name
//! (`JAN`…`DEC`, `SUN`…`SAT`, any case), a range `a-b`, a step `*/n`, `a-b/n` or `a/n`
//! (`a` up to the field's maximum), or a comma list of those; day of week 0 and 7 are both
//! Sunday. When both day fields are restricted a day matches if *either* does (standard
//! cron); a field whose first item starts with `*` (or `?`) and steps by 1 counts as
//! unrestricted. Macros: `@yearly` `@annually` `@monthly` `@weekly` `@daily` `@midnight`
//! `@hourly`, and `@every <duration>` (`90s`, `1h30m`). `TZ=`/`CRON_TZ=` prefixes are
//! refused, as the API server refuses them: the CronJob's `spec.timeZone` says the zone.
//!
//! Times are matched on the wall clock of the schedule's zone. Across a daylight-saving gap
//! a wall time that does not exist fires at the instant it maps to (shifted by the gap);
//! a wall time that occurs twice fires once, at its first occurrence.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// How far ahead a fire time is searched for before the schedule counts as never firing
/// (`0 0 30 2 *` never fires; `0 0 29 2 *` fires every 4 to 8 years).
const SEARCH_YEARS: i16 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

fn err(msg: impl Into<String>) -> ScheduleError {
    ScheduleError(msg.into())
}

/// A parsed schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a fixed period (whole seconds, at least one).
    Every(i64),
}

/// One bit per allowed value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Day of month / day of week was written unrestricted (`*`, `?`, `*/1`).
    dom_star: bool,
    dow_star: bool,
}

struct FieldSpec {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const MINUTE: FieldSpec = FieldSpec {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    what: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    what: "month",
    min: 1,
    max: 12,
    names: &MONTH_NAMES,
};
// 7 is accepted as Sunday and folded onto 0 after parsing.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    what: "day of week",
    min: 0,
    max: 7,
    names: &DAY_NAMES,
};

impl Schedule {
    /// Parses `spec` for the zone named `time_zone` (IANA name; UTC when `None`).
    pub fn parse(spec: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match time_zone {
            None => TimeZone::UTC,
            Some(name) => time_zone_named(name)?,
        };
        Ok(Schedule {
            kind: parse_kind(spec)?,
            tz,
        })
    }

    /// The first fire time strictly after `after`, if the schedule fires in the next years.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(period) => {
                // robfig: the period from `after` with its sub-second part dropped.
                let base = Timestamp::from_second(after.as_second()).ok()?;
                base.checked_add(SignedDuration::from_secs(*period)).ok()
            }
            Kind::Fields(fields) => fields.next_after(after, &self.tz),
        }
    }

    /// The latest fire time in `(after, upto]`, if any.
    pub fn latest_in(&self, after: Timestamp, upto: Timestamp) -> Option<Timestamp> {
        if upto <= after {
            return None;
        }
        if let Kind::Every(period) = &self.kind {
            // Fire times are after + k·period (whole seconds of `after`).
            let base = after.as_second();
            let k = (upto.as_second() - base) / period;
            if k < 1 {
                return None;
            }
            return Timestamp::from_second(base + k * period).ok();
        }
        // Look back through growing windows so the search stays short for any schedule:
        // a window is walked forward with `next_after`, which jumps over non-matching
        // months, days and hours.
        for window_secs in [
            3_600i64,
            86_400,
            32 * 86_400,
            367 * 86_400,
            9 * 367 * 86_400,
        ] {
            let start =
                Timestamp::from_second((upto.as_second() - window_secs).max(after.as_second()))
                    .ok()?;
            let start = start.max(after);
            let mut latest = None;
            let mut t = start;
            while let Some(next) = self.next_after(t) {
                if next > upto {
                    break;
                }
                latest = Some(next);
                t = next;
            }
            if latest.is_some() || start == after {
                return latest;
            }
        }
        None
    }

    /// How many fire times fall in `(after, upto]`, counting at most to `limit`.
    pub fn count_in(&self, after: Timestamp, upto: Timestamp, limit: usize) -> usize {
        let mut count = 0;
        let mut t = after;
        while count < limit {
            match self.next_after(t) {
                Some(next) if next <= upto => {
                    count += 1;
                    t = next;
                }
                _ => break,
            }
        }
        count
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
}

/// The IANA zone `name` from the system's tz database (`/usr/share/zoneinfo`).
pub fn time_zone_named(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|e| err(format!("unknown time zone {name:?}: {e}")))
}

fn parse_kind(spec: &str) -> Result<Kind, ScheduleError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(err("empty schedule"));
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        return Err(err(
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    }
    if let Some(macro_name) = spec.strip_prefix('@') {
        let fields = match macro_name {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            other => match other.strip_prefix("every ") {
                Some(duration) => return Ok(Kind::Every(parse_every(duration.trim())?)),
                None => return Err(err(format!("unrecognized descriptor: @{other}"))),
            },
        };
        return parse_fields(fields).map(Kind::Fields);
    }
    parse_fields(spec).map(Kind::Fields)
}

fn parse_fields(spec: &str) -> Result<Fields, ScheduleError> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(err(format!(
            "expected exactly 5 fields, found {}: {spec:?}",
            parts.len()
        )));
    }
    let (minutes, _) = parse_field(parts[0], &MINUTE)?;
    let (hours, _) = parse_field(parts[1], &HOUR)?;
    let (days_of_month, dom_star) = parse_field(parts[2], &DAY_OF_MONTH)?;
    let (months, _) = parse_field(parts[3], &MONTH)?;
    let (mut days_of_week, dow_star) = parse_field(parts[4], &DAY_OF_WEEK)?;
    if days_of_week & (1 << 7) != 0 {
        days_of_week = (days_of_week & !(1 << 7)) | 1;
    }
    Ok(Fields {
        minutes,
        hours,
        days_of_month,
        months,
        days_of_week,
        dom_star,
        dow_star,
    })
}

/// A field's allowed values as bits, and whether it was written unrestricted.
fn parse_field(field: &str, spec: &FieldSpec) -> Result<(u64, bool), ScheduleError> {
    let mut bits = 0u64;
    let mut star = false;
    for (i, item) in field.split(',').enumerate() {
        let (item_bits, item_star) = parse_item(item, spec)
            .map_err(|reason| err(format!("{} field {field:?}: {reason}", spec.what)))?;
        bits |= item_bits;
        if i == 0 {
            star = item_star;
        }
    }
    Ok((bits, star))
}

fn parse_item(item: &str, spec: &FieldSpec) -> Result<(u64, bool), String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().map_err(|_| format!("invalid step {s:?}"))?;
            if step == 0 {
                return Err(format!("step of zero in {item:?}"));
            }
            (r, Some(step))
        }
        None => (item, None),
    };
    let (start, end, star) = if range == "*" || range == "?" {
        // The day-of-week `*` covers 0–6; 7 is only an alias.
        let max = if spec.max == 7 { 6 } else { spec.max };
        (spec.min, max, true)
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (value(a, spec)?, value(b, spec)?);
        if a > b {
            return Err(format!(
                "beginning of range ({a}) beyond end of range ({b})"
            ));
        }
        (a, b, false)
    } else {
        let a = value(range, spec)?;
        // `a/n` runs from a to the field's maximum.
        let end = if step.is_some() { spec.max } else { a };
        (a, end, false)
    };
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star && step == 1))
}

fn value(s: &str, spec: &FieldSpec) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(spec.min + i as u32);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("failed to parse {s:?} as a number"))?;
    if v < spec.min || v > spec.max {
        return Err(format!("{v} is out of range {}-{}", spec.min, spec.max));
    }
    Ok(v)
}

/// `@every` durations as Go writes them: `1h30m`, `90s`, `2.5h`, `500ms` (rounded down to
/// whole seconds, at least one).
fn parse_every(s: &str) -> Result<i64, ScheduleError> {
    let bad = || err(format!("failed to parse duration @every {s}"));
    if s.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return Err(bad()),
        };
        nanos += number * scale;
        rest = &rest[unit_len..];
    }
    let secs = (nanos / 1e9).floor();
    if !secs.is_finite() || secs > 1e12 {
        return Err(bad());
    }
    Ok((secs as i64).max(1))
}

impl Fields {
    fn has(bits: u64, v: i64) -> bool {
        (0..64).contains(&v) && bits & (1 << v) != 0
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = Fields::has(self.days_of_month, i64::from(date.day()));
        let dow = Fields::has(
            self.days_of_week,
            i64::from(date.weekday().to_sunday_zero_offset()),
        );
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        // The next whole minute on the wall clock.
        let mut t = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit_year = local.year().saturating_add(SEARCH_YEARS);
        loop {
            if t.year() > limit_year {
                return None;
            }
            if !Fields::has(self.months, i64::from(t.month())) {
                t = first_of_next_month(t)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !Fields::has(self.hours, i64::from(t.hour())) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !Fields::has(self.minutes, i64::from(t.minute())) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            // A wall time shifted back before `after` by a zone transition: keep looking.
            t = t.checked_add(1.minute()).ok()?;
        }
    }
}

fn first_of_next_month(t: DateTime) -> Option<DateTime> {
    let first = t.date().first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(jiff::civil::Time::midnight()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec, None)
            .unwrap()
            .next_after(at(after))
            .map(|t| t.to_string())
            .unwrap_or_else(|| "never".into())
    }

    /// The first `n` fire times after `after`.
    fn series(spec: &str, tz: Option<&str>, after: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(spec, tz).unwrap();
        let mut t = at(after);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.to_string());
        }
        out
    }

    #[test]
    fn every_five_minutes_fires_on_multiples_of_five_strictly_after() {
        assert_eq!(
            next("*/5 * * * *", "2026-03-01T10:00:00Z"),
            "2026-03-01T10:05:00Z"
        );
        assert_eq!(
            next("*/5 * * * *", "2026-03-01T10:04:59Z"),
            "2026-03-01T10:05:00Z"
        );
        assert_eq!(
            next("*/5 * * * *", "2026-03-01T10:05:00Z"),
            "2026-03-01T10:10:00Z"
        );
        assert_eq!(
            next("*/5 * * * *", "2026-03-01T23:58:00Z"),
            "2026-03-02T00:00:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-03-01T10:00:30.5Z"),
            "2026-03-01T10:01:00Z"
        );
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(
            series("1,2 * * * *", None, "2026-03-01T10:00:00Z", 3),
            [
                "2026-03-01T10:01:00Z",
                "2026-03-01T10:02:00Z",
                "2026-03-01T11:01:00Z"
            ]
        );
        assert_eq!(
            series("0 1-3 * * *", None, "2026-03-01T00:30:00Z", 4),
            [
                "2026-03-01T01:00:00Z",
                "2026-03-01T02:00:00Z",
                "2026-03-01T03:00:00Z",
                "2026-03-02T01:00:00Z"
            ]
        );
        assert_eq!(
            series("1-30/10 * * * *", None, "2026-03-01T10:00:00Z", 4),
            [
                "2026-03-01T10:01:00Z",
                "2026-03-01T10:11:00Z",
                "2026-03-01T10:21:00Z",
                "2026-03-01T11:01:00Z"
            ]
        );
        // `a/n` runs to the field's maximum.
        assert_eq!(
            series("50/4 * * * *", None, "2026-03-01T10:00:00Z", 4),
            [
                "2026-03-01T10:50:00Z",
                "2026-03-01T10:54:00Z",
                "2026-03-01T10:58:00Z",
                "2026-03-01T11:50:00Z"
            ]
        );
        assert_eq!(
            series("0 0 * * *", None, "2026-03-01T10:00:00Z", 2),
            ["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"]
        );
    }

    #[test]
    fn month_and_day_names_any_case() {
        // 2026-03-02 is a Monday.
        assert_eq!(
            next("0 9 * * MON", "2026-02-27T00:00:00Z"),
            "2026-03-02T09:00:00Z"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2026-02-28T00:00:00Z"),
            "2026-03-02T09:00:00Z"
        );
        assert_eq!(
            next("0 0 1 JAN *", "2026-03-01T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jun,Dec *", "2026-03-01T00:00:00Z"),
            "2026-06-01T00:00:00Z"
        );
    }

    #[test]
    fn zero_and_seven_are_sunday() {
        // 2026-03-01 is a Sunday.
        assert_eq!(
            next("0 12 * * 0", "2026-02-26T00:00:00Z"),
            "2026-03-01T12:00:00Z"
        );
        assert_eq!(
            next("0 12 * * 7", "2026-02-26T00:00:00Z"),
            "2026-03-01T12:00:00Z"
        );
        assert_eq!(
            next("0 12 * * 5-7", "2026-02-28T13:00:00Z"),
            "2026-03-01T12:00:00Z"
        );
        assert_eq!(
            next("0 12 * * SUN", "2026-02-26T00:00:00Z"),
            "2026-03-01T12:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 15th, or any Friday: 2026-03-06 is a Friday, before the 15th.
        assert_eq!(
            series("0 0 15 * FRI", None, "2026-03-01T00:00:00Z", 4),
            [
                "2026-03-06T00:00:00Z",
                "2026-03-13T00:00:00Z",
                "2026-03-15T00:00:00Z",
                "2026-03-20T00:00:00Z"
            ]
        );
        // Only one restricted: that one alone decides.
        assert_eq!(
            next("0 0 15 * *", "2026-03-01T00:00:00Z"),
            "2026-03-15T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * FRI", "2026-03-01T00:00:00Z"),
            "2026-03-06T00:00:00Z"
        );
        // A starred step with n > 1 restricts (robfig): `*/2` days AND Friday here would be
        // OR; Friday 2026-03-06 vs the 3rd (odd day) — the OR gives the 3rd.
        assert_eq!(
            next("0 0 */2 * FRI", "2026-03-01T00:00:00Z"),
            "2026-03-03T00:00:00Z"
        );
        // `*` day of month with a weekday: AND, so only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2026-03-07T00:00:00Z"),
            "2026-03-13T00:00:00Z"
        );
    }

    #[test]
    fn macros() {
        let after = "2026-03-01T10:30:00Z";
        assert_eq!(next("@yearly", after), "2027-01-01T00:00:00Z");
        assert_eq!(next("@annually", after), "2027-01-01T00:00:00Z");
        assert_eq!(next("@monthly", after), "2026-04-01T00:00:00Z");
        assert_eq!(next("@weekly", after), "2026-03-08T00:00:00Z");
        assert_eq!(next("@daily", after), "2026-03-02T00:00:00Z");
        assert_eq!(next("@midnight", after), "2026-03-02T00:00:00Z");
        assert_eq!(next("@hourly", after), "2026-03-01T11:00:00Z");
        assert_eq!(next("@every 90s", after), "2026-03-01T10:31:30Z");
        assert_eq!(next("@every 1h30m", after), "2026-03-01T12:00:00Z");
    }

    #[test]
    fn impossible_and_rare_dates() {
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), "never");
        assert_eq!(
            next("0 0 29 2 *", "2026-01-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0 31 * *", "2026-04-01T00:00:00Z"),
            "2026-05-31T00:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_which_field_and_why() {
        let e = |s: &str| Schedule::parse(s, None).unwrap_err().to_string();
        assert_eq!(
            e("* * * *"),
            "expected exactly 5 fields, found 4: \"* * * *\""
        );
        assert_eq!(
            e("60 * * * *"),
            "minute field \"60\": 60 is out of range 0-59"
        );
        assert_eq!(
            e("* 24 * * *"),
            "hour field \"24\": 24 is out of range 0-23"
        );
        assert_eq!(
            e("* * 0 * *"),
            "day of month field \"0\": 0 is out of range 1-31"
        );
        assert_eq!(
            e("* * * 13 *"),
            "month field \"13\": 13 is out of range 1-12"
        );
        assert_eq!(
            e("* * * * 8"),
            "day of week field \"8\": 8 is out of range 0-7"
        );
        assert_eq!(
            e("*/0 * * * *"),
            "minute field \"*/0\": step of zero in \"*/0\""
        );
        assert_eq!(
            e("5-1 * * * *"),
            "minute field \"5-1\": beginning of range (5) beyond end of range (1)"
        );
        assert_eq!(
            e("x * * * *"),
            "minute field \"x\": failed to parse \"x\" as a number"
        );
        assert_eq!(e("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(e("@every soon"), "failed to parse duration @every soon");
        assert_eq!(
            e("CRON_TZ=UTC * * * * *"),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        );
        assert_eq!(
            e("TZ=UTC * * * * *"),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        );
        assert_eq!(e(""), "empty schedule");
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .to_string()
            .starts_with("unknown time zone \"Mars/Olympus\""));
    }

    #[test]
    fn time_zones_come_from_the_system_tz_database() {
        // 09:00 in New York is 14:00 UTC in winter (EST) and 13:00 in summer (EDT).
        assert_eq!(
            series(
                "0 9 * * *",
                Some("America/New_York"),
                "2026-01-10T00:00:00Z",
                1
            ),
            ["2026-01-10T14:00:00Z"]
        );
        assert_eq!(
            series(
                "0 9 * * *",
                Some("America/New_York"),
                "2026-07-10T00:00:00Z",
                1
            ),
            ["2026-07-10T13:00:00Z"]
        );
        assert_eq!(
            series(
                "30 8 * * *",
                Some("Asia/Kolkata"),
                "2026-07-10T00:00:00Z",
                1
            ),
            ["2026-07-10T03:00:00Z"]
        );
    }

    #[test]
    fn daylight_saving_gaps_and_repeats() {
        // New York springs forward on 2026-03-08: 02:30 does not exist, and fires at 03:30
        // EDT (07:30Z); falls back on 2026-11-01: 01:30 happens twice and fires once.
        let tz = Some("America/New_York");
        assert_eq!(
            series("30 2 * * *", tz, "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"]
        );
        assert_eq!(
            series("30 1 * * *", tz, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn latest_fire_time_in_a_window_and_missed_counts() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        let t0 = at("2026-03-01T10:00:00Z");
        assert_eq!(s.latest_in(t0, at("2026-03-01T10:04:59Z")), None);
        assert_eq!(
            s.latest_in(t0, at("2026-03-01T10:05:00Z")),
            Some(at("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            s.latest_in(t0, at("2026-03-01T10:17:00Z")),
            Some(at("2026-03-01T10:15:00Z"))
        );
        // A year of missed runs: still quick, and the count stops at the limit.
        assert_eq!(
            s.latest_in(t0, at("2027-03-01T10:17:00Z")),
            Some(at("2027-03-01T10:15:00Z"))
        );
        assert_eq!(s.count_in(t0, at("2026-03-01T10:17:00Z"), 101), 3);
        assert_eq!(s.count_in(t0, at("2027-03-01T10:17:00Z"), 101), 101);
        // A rare schedule far back.
        let leap = Schedule::parse("0 0 29 2 *", None).unwrap();
        assert_eq!(
            leap.latest_in(at("2020-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z")),
            Some(at("2024-02-29T00:00:00Z"))
        );
        let every = Schedule::parse("@every 10m", None).unwrap();
        assert_eq!(
            every.latest_in(t0, at("2026-03-01T10:25:00Z")),
            Some(at("2026-03-01T10:20:00Z"))
        );
    }
}
