//! Cron schedules as CronJobs write them: five fields (minute, hour, day of
//! month, month, day of week) of `*`, `?`, values, names (`JAN`, `MON`),
//! ranges, steps (`*/15`, `1-30/2`) and lists, or a macro (`@hourly`,
//! `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`).
//! When both day fields are restricted, a day matching either is a day of
//! the schedule (as in Vixie cron and Kubernetes). Times are read in a time
//! zone, so `0 9 * * *` in `Europe/Paris` is nine o'clock in Paris, summer
//! and winter.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day of month or of week is `*` (then both must match).
    any_day: bool,
}

/// One field: its name, bounds, and the names its values may have.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let named = self.names.iter().position(|n| n.eq_ignore_ascii_case(text));
        let value = match named {
            Some(at) => at as u32 + if self.min == 1 { 1 } else { 0 },
            None => text
                .parse()
                .map_err(|_| format!("{} {text:?} is not a number", self.name))?,
        };
        if value < self.min || value > self.max {
            return Err(format!(
                "{} {value} is out of range {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(value)
    }

    /// The bits of the values of `text`, and whether it is `*` or `?`.
    fn parse(&self, text: &str) -> Result<(u64, bool), String> {
        let mut bits = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{} step {step:?} is not a positive number", self.name)
                    })?;
                    (range, step)
                }
                None => (part, 1),
            };
            let (from, to) = match range {
                "*" | "?" => (self.min, self.max),
                _ => match range.split_once('-') {
                    Some((from, to)) => (self.value(from)?, self.value(to)?),
                    // `5/15`: from 5 to the end, every 15.
                    None if step > 1 => (self.value(range)?, self.max),
                    None => {
                        let v = self.value(range)?;
                        (v, v)
                    }
                },
            };
            if from > to {
                return Err(format!("{} range {range:?} goes backwards", self.name));
            }
            for v in (from..=to).step_by(step as usize) {
                bits |= 1 << v;
            }
        }
        Ok((bits, text == "*" || text == "?"))
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err("a time zone in the schedule is not supported: use timeZone".into());
        }
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(format!("unknown macro {other:?}")),
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "expected 5 fields, found {}: {text:?}",
                parts.len()
            ));
        }
        let mut fields = FIELDS.iter().zip(&parts).map(|(f, p)| f.parse(p));
        let mut next = || fields.next().expect("five fields");
        let (minutes, _) = next()?;
        let (hours, _) = next()?;
        let (days, any_dom) = next()?;
        let (months, _) = next()?;
        let (mut weekdays, any_dow) = next()?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day: any_dom || any_dow,
        })
    }
}

/// The time zone named `name` (IANA: `Europe/Paris`), or this machine's
/// when there is no name, as Kubernetes reads a CronJob's `timeZone`.
pub fn zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::system()),
        Some(name) => TimeZone::get(name).map_err(|_| format!("unknown time zone {name:?}")),
    }
}

fn has(bits: u64, value: impl Into<i64>) -> bool {
    let value = value.into();
    (0..64).contains(&value) && bits & (1 << value) != 0
}

impl Schedule {
    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.days, date.day());
        let dow = has(self.weekdays, date.weekday().to_sunday_zero_offset());
        if self.any_day { dom && dow } else { dom || dow }
    }

    /// The first time of the schedule after `after`, read in `zone`; `None`
    /// if there is none in the next five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let start = zone.to_datetime(after);
        let mut at = start.checked_add(1.minute()).ok()?;
        at = at.with().second(0).subsec_nanosecond(0).build().ok()?;
        let end = start.checked_add(5.years()).ok()?;
        while at < end {
            if !has(self.months, at.month()) {
                let first = Date::new(at.year(), at.month(), 1).ok()?;
                at = first
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(Time::midnight());
            } else if !self.day_matches(at.date()) {
                at = at.date().tomorrow().ok()?.to_datetime(Time::midnight());
            } else if !has(self.hours, at.hour()) {
                let hour = DateTime::from_parts(at.date(), Time::new(at.hour(), 0, 0, 0).ok()?);
                at = hour.checked_add(1.hour()).ok()?;
            } else if !has(self.minutes, at.minute()) {
                at = at.checked_add(1.minute()).ok()?;
            } else {
                // A time skipped by a clock change runs when the clock
                // moves past it.
                let when = zone.to_ambiguous_timestamp(at).compatible().ok()?;
                if when > after {
                    return Some(when);
                }
                at = at.checked_add(1.minute()).ok()?;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(schedule: &str, after: &str, zone: &str) -> String {
        let schedule: Schedule = schedule.parse().unwrap();
        let zone = super::zone(Some(zone)).unwrap();
        let after: Timestamp = after.parse().unwrap();
        schedule.next_after(after, &zone).unwrap().to_string()
    }

    #[test]
    fn schedules_give_their_next_time() {
        assert_eq!(
            next("* * * * *", "2026-03-01T10:00:30Z", "UTC"),
            "2026-03-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-03-01T10:01:00Z", "UTC"),
            "2026-03-01T10:15:00Z"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2026-03-06T10:00:00Z", "UTC"),
            "2026-03-09T09:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-03-06T10:00:00Z", "UTC"),
            "2026-04-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z", "UTC"),
            "2028-02-29T00:00:00Z"
        );
        // Day of month or day of week when both are given: the 13th or a Friday.
        assert_eq!(
            next("0 0 13 * 5", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-08T00:00:00Z"
        );
    }

    #[test]
    fn a_time_zone_keeps_local_time_through_summer() {
        assert_eq!(
            next("0 9 * * *", "2026-01-10T12:00:00Z", "Europe/Paris"),
            "2026-01-11T08:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2026-07-10T12:00:00Z", "Europe/Paris"),
            "2026-07-11T07:00:00Z"
        );
        // 02:30 does not exist on the day clocks go forward: it runs at 03:30.
        assert_eq!(
            next("30 2 * * *", "2026-03-28T12:00:00Z", "Europe/Paris"),
            "2026-03-29T01:30:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let error = |s: &str| s.parse::<Schedule>().unwrap_err();
        assert_eq!(error("* * * *"), "expected 5 fields, found 4: \"* * * *\"");
        assert_eq!(error("61 * * * *"), "minute 61 is out of range 0-59");
        assert_eq!(error("* * * FOO *"), "month \"FOO\" is not a number");
        assert_eq!(
            error("*/0 * * * *"),
            "minute step \"0\" is not a positive number"
        );
        assert!(error("TZ=UTC * * * * *").contains("use timeZone"));
        assert_eq!(
            zone(Some("Mars/Olympus")).unwrap_err(),
            "unknown time zone \"Mars/Olympus\""
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-03-01T00:00:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
    }
}
