//! NCRONTAB schedules, as the Functions timer trigger reads them.
//!
//! Six fields, seconds first: `{second} {minute} {hour} {day} {month} {day-of-week}`, evaluated in
//! UTC. Each field takes `*`, numbers, ranges `a-b`, steps `*/n` or `a-b/n`, and comma lists; months
//! and weekdays also take three-letter names. Day-of-week runs 0 (Sunday) to 6. As in NCrontab (the
//! library the host uses), a time matches only when the day of month *and* the day of week match.
//! Five-field (minute-resolution) expressions are refused: the Windows Consumption host refuses them
//! and the documentation asks for six.

use std::fmt;
use std::str::FromStr;

use time::{Duration, OffsetDateTime, Time};

/// A parsed six-field NCRONTAB expression.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
}

/// Why an expression is not a valid schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{expression}' is not a valid 6-field NCRONTAB expression: {reason}")]
pub struct ScheduleError {
    expression: String,
    reason: String,
}

impl Schedule {
    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first matching instant strictly after `after`, at whole seconds, or `None` when the
    /// expression never matches within the next eight years (for example 30 February).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut t = after.replace_nanosecond(0).ok()? + Duration::seconds(1);
        let limit = after + Duration::days(366 * 8);
        while t <= limit {
            if !bit(self.months as u64, u8::from(t.month()) as u32) {
                let (year, month) = match t.month() {
                    time::Month::December => (t.year() + 1, time::Month::January),
                    m => (t.year(), m.next()),
                };
                t = t
                    .replace_day(1)
                    .ok()?
                    .replace_time(Time::MIDNIGHT)
                    .replace_year(year)
                    .ok()?
                    .replace_month(month)
                    .ok()?;
                continue;
            }
            let weekday = t.weekday().number_days_from_sunday() as u32;
            if !bit(self.days as u64, t.day() as u32) || !bit(self.weekdays as u64, weekday) {
                t = t.replace_time(Time::MIDNIGHT) + Duration::days(1);
                continue;
            }
            if !bit(self.hours as u64, t.hour() as u32) {
                t = t.replace_time(Time::from_hms(t.hour(), 0, 0).ok()?) + Duration::hours(1);
                continue;
            }
            if !bit(self.minutes, t.minute() as u32) {
                t = t.replace_time(Time::from_hms(t.hour(), t.minute(), 0).ok()?)
                    + Duration::minutes(1);
                continue;
            }
            if !bit(self.seconds, t.second() as u32) {
                t += Duration::seconds(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(fail(format!(
                "expected 6 fields (second minute hour day month day-of-week), found {}",
                fields.len()
            )));
        }
        let parse = |index: usize, name: &str, min: u32, max: u32, names: &[&str]| {
            parse_field(fields[index], min, max, names)
                .map_err(|reason| fail(format!("{name} field '{}': {reason}", fields[index])))
        };
        let schedule = Schedule {
            expression: expression.to_owned(),
            seconds: parse(0, "second", 0, 59, &[])?,
            minutes: parse(1, "minute", 0, 59, &[])?,
            hours: parse(2, "hour", 0, 23, &[])? as u32,
            days: parse(3, "day", 1, 31, &[])? as u32,
            months: parse(4, "month", 1, 12, &MONTHS)? as u16,
            weekdays: parse(5, "day-of-week", 0, 6, &WEEKDAYS)? as u8,
        };
        let probe = OffsetDateTime::UNIX_EPOCH + Duration::days(365 * 30);
        if schedule.next_after(probe).is_none() {
            return Err(fail("it never matches a real date".into()));
        }
        Ok(schedule)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expression).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn bit(set: u64, value: u32) -> bool {
    set & (1u64 << value) != 0
}

/// Parses one field into a bit set over `min..=max`; `names[i]` stands for `min + i`.
fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |text: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(min + i as u32);
        }
        let v: u32 = text
            .parse()
            .map_err(|_| format!("'{text}' is not a number"))?;
        if v < min || v > max {
            return Err(format!("{v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut set = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step '{step}' is not a positive number"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(range)?, max),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if low > high {
            return Err(format!("range {low}-{high} runs backwards"));
        }
        set |= (low..=high)
            .step_by(step as usize)
            .fold(0u64, |acc, v| acc | (1u64 << v));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expression: &str, after: OffsetDateTime) -> OffsetDateTime {
        expression
            .parse::<Schedule>()
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    #[test]
    fn common_schedules_fire_when_expected() {
        let cases = [
            (
                "0 */5 * * * *",
                datetime!(2024-05-01 10:17:30 UTC),
                datetime!(2024-05-01 10:20:00 UTC),
            ),
            (
                "*/10 * * * * *",
                datetime!(2024-05-01 10:17:30 UTC),
                datetime!(2024-05-01 10:17:40 UTC),
            ),
            (
                "0 30 9 * * 1-5",
                datetime!(2024-05-03 09:30:00 UTC),
                datetime!(2024-05-06 09:30:00 UTC),
            ),
            (
                "0 0 6 * * MON-FRI",
                datetime!(2024-05-04 12:00:00 UTC),
                datetime!(2024-05-06 06:00:00 UTC),
            ),
            (
                "0 0 0 1 JAN *",
                datetime!(2024-05-01 00:00:00 UTC),
                datetime!(2025-01-01 00:00:00 UTC),
            ),
            (
                "0 0 12 29 2 *",
                datetime!(2024-03-01 00:00:00 UTC),
                datetime!(2028-02-29 12:00:00 UTC),
            ),
            (
                "5,35 0 0 * * *",
                datetime!(2024-05-01 00:00:05 UTC),
                datetime!(2024-05-01 00:00:35 UTC),
            ),
            (
                "0 0 0 13 * 5",
                datetime!(2024-01-01 00:00:00 UTC),
                datetime!(2024-09-13 00:00:00 UTC),
            ),
            (
                "0 0 */6 * * *",
                datetime!(2024-12-31 23:00:00 UTC),
                datetime!(2025-01-01 00:00:00 UTC),
            ),
            (
                "10/20 * * * * *",
                datetime!(2024-05-01 00:00:31 UTC),
                datetime!(2024-05-01 00:00:50 UTC),
            ),
        ];
        for (expression, after, expected) in cases {
            assert_eq!(
                next(expression, after),
                expected,
                "{expression} after {after}"
            );
        }
    }

    #[test]
    fn next_is_strictly_later_even_on_a_match() {
        let at = datetime!(2024-05-01 10:20:00 UTC);
        assert_eq!(
            next("0 */5 * * * *", at),
            datetime!(2024-05-01 10:25:00 UTC)
        );
    }

    #[test]
    fn invalid_expressions_say_why() {
        let cases = [
            ("0 */5 * * *", "expected 6 fields"),
            ("0 */5 * * * * *", "expected 6 fields"),
            ("60 * * * * *", "second field '60': 60 is outside 0-59"),
            ("0 0 24 * * *", "hour field"),
            ("0 0 0 0 * *", "day field '0': 0 is outside 1-31"),
            ("0 0 0 * 13 *", "month field"),
            ("0 0 0 * * 7", "day-of-week field '7'"),
            ("0 */0 * * * *", "step '0'"),
            ("0 30-10 * * * *", "runs backwards"),
            ("0 x * * * *", "'x' is not a number"),
            ("0 0 0 30 2 *", "never matches"),
            ("00:05:00", "expected 6 fields"),
        ];
        for (expression, expected) in cases {
            let error = expression.parse::<Schedule>().unwrap_err().to_string();
            assert!(error.contains(expected), "{expression}: {error}");
        }
    }
}
