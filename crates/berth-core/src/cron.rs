//! Cron schedules, in UTC: the five fields of crontab (`min hour day month weekday`) or
//! Harbor's six (a leading seconds field, `0 0 3 * * *`), and the `@hourly`-style names.
//!
//! Each field is `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of
//! these; weekdays are 0–7 (0 and 7 are Sunday). As in crontab, when both day of month and
//! weekday are restricted, a day matching either runs.

use std::fmt;
use std::str::FromStr;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day-of-month / weekday field was `*` (crontab's "either" rule).
    any_day: bool,
    any_weekday: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {text:?}: {reason}")]
pub struct CronError {
    text: String,
    reason: String,
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Cron, CronError> {
        let error = |reason: String| CronError {
            text: text.to_owned(),
            reason,
        };
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let fields: Vec<&str> = match fields.len() {
            5 => std::iter::once("0").chain(fields).collect(),
            6 => fields,
            n => {
                return Err(error(format!(
                    "{n} fields; give 5 (min hour day month weekday) or 6 (with seconds first)"
                )));
            }
        };
        let field = |i: usize, name: &str, min: u32, max: u32| {
            parse_field(fields[i], min, max).map_err(|e| error(format!("{name}: {e}")))
        };
        let mut weekdays = field(5, "weekday", 0, 7)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Cron {
            text: text.trim().to_owned(),
            seconds: field(0, "seconds", 0, 59)?,
            minutes: field(1, "minutes", 0, 59)?,
            hours: field(2, "hours", 0, 23)?,
            days: field(3, "day of month", 1, 31)?,
            months: field(4, "month", 1, 12)?,
            weekdays,
            any_day: fields[3] == "*" || fields[3] == "?",
            any_weekday: fields[5] == "*" || fields[5] == "?",
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One field as a bit set of the values it allows.
fn parse_field(text: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (range, step)
            }
            None => (part, 1),
        };
        let value = |v: &str| -> Result<u32, String> {
            let n: u32 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
            if n < min || n > max {
                return Err(format!("{n} is outside {min}-{max}"));
            }
            Ok(n)
        };
        let (low, high) = match range {
            "*" | "?" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15` means from 5 to the end, every 15.
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
        for v in (low..=high).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

impl Cron {
    /// The first time strictly after `after` (Unix seconds, UTC) the schedule fires; `None`
    /// if it never does within five years (e.g. the 31st of February).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut t = after + 1;
        let limit = after + 5 * 366 * 86_400;
        while t <= limit {
            let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
            let (_, month, day) = civil_from_days(days);
            // Sunday is 0; 1970-01-01 was a Thursday (4).
            let weekday = (days + 4).rem_euclid(7) as u32;
            if !has(self.months, month) || !self.day_matches(day, weekday) {
                t = (days + 1) * 86_400;
                continue;
            }
            let (hour, minute, second) = (secs / 3600, secs % 3600 / 60, secs % 60);
            if !has(self.hours, hour as u32) {
                t = days * 86_400 + (hour + 1) * 3600;
                continue;
            }
            if !has(self.minutes, minute as u32) {
                t = days * 86_400 + hour * 3600 + (minute + 1) * 60;
                continue;
            }
            if !has(self.seconds, second as u32) {
                t += 1;
                continue;
            }
            return Some(t);
        }
        None
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let by_day = has(self.days, day);
        let by_weekday = has(self.weekdays, weekday);
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => by_day,
            (true, false) => by_weekday,
            (false, false) => by_day || by_weekday,
        }
    }
}

fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(cron: &str, after: i64) -> Option<i64> {
        cron.parse::<Cron>().expect("valid").next_after(after)
    }

    // 2026-11-30T07:45:10Z, a Monday.
    const NOW: i64 = 1_796_024_710;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(NOW / 86_400), (2026, 11, 30));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn schedules_fire_when_they_say() {
        let midnight = (NOW / 86_400 + 1) * 86_400;
        assert_eq!(next("0 0 * * *", NOW), Some(midnight));
        assert_eq!(next("0 0 0 * * *", NOW), Some(midnight));
        assert_eq!(next("@daily", NOW), Some(midnight));
        assert_eq!(next("@hourly", NOW), Some(NOW - NOW % 3600 + 3600));
        assert_eq!(next("*/15 * * * *", NOW), Some(NOW - NOW % 3600 + 3600));
        assert_eq!(next("* * * * * *", NOW), Some(NOW + 1));
        // 03:30 on weekdays: Tuesday morning.
        assert_eq!(next("30 3 * * 1-5", NOW), Some(midnight + 3 * 3600 + 1800));
        // Sundays, as 0 or 7: 2026-12-06.
        let sunday = midnight + 5 * 86_400;
        assert_eq!(next("0 0 * * 0", NOW), Some(sunday));
        assert_eq!(next("0 0 * * 7", NOW), Some(sunday));
        // The first of the month or a Friday (crontab's "either" rule): Tuesday the 1st
        // comes before Friday the 4th; the 4th alone, or Fridays alone, give the Friday.
        assert_eq!(next("0 0 1 * 5", NOW), Some(midnight));
        assert_eq!(next("0 0 4 * *", NOW), Some(midnight + 3 * 86_400));
        assert_eq!(next("0 0 * * 5", NOW), Some(midnight + 3 * 86_400));
        assert_eq!(next("0 0 1 12 *", NOW), Some(midnight));
        assert_eq!(next("0 0 31 2 *", NOW), None);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "* * * * * * *",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad:?}");
        }
        let e = "61 * * * *".parse::<Cron>().expect_err("bad");
        assert!(e.to_string().contains("minutes"), "{e}");
    }
}
