//! Timestamps as Harbor's API writes and reads them: RFC 3339 in UTC with milliseconds, and
//! the looser forms its `q` ranges accept (`2024-01-02 03:04:05`, a date, Unix seconds).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Unix milliseconds now (the clock read once; 0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds: `2024-01-02T03:04:05.678Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// A point in time as a query may name it, in Unix milliseconds, and whether it was given
/// to the millisecond (else it names a whole second or day, which `end_ms` extends to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePoint {
    pub ms: i64,
    /// The last millisecond of what was named (the same second, or the same day).
    pub end_ms: i64,
}

/// Parse `2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.678+02:00`, `2024-01-02 03:04:05`,
/// `2024-01-02` (UTC unless an offset is given) or Unix seconds.
pub fn parse_time(text: &str) -> Option<TimePoint> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() <= 12 {
        let secs: i64 = text.parse().ok()?;
        let ms = secs.checked_mul(1000)?;
        return Some(TimePoint {
            ms,
            end_ms: ms + 999,
        });
    }
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let date = text.get(..10)?;
    let (year, month, day) = (
        num(date.get(..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let day_ms = days_from_civil(year, month, day).checked_mul(86_400_000)?;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(TimePoint {
            ms: day_ms,
            end_ms: day_ms + 86_399_999,
        });
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (hour, minute, second) = (
        num(rest.get(..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    if rest.as_bytes()[2] != b':' || rest.as_bytes()[5] != b':' {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut millis = None;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = fraction[..digits]
            .chars()
            .chain("00".chars())
            .take(3)
            .collect();
        millis = Some(num(&first3)?);
        rest = &fraction[digits..];
    }
    let offset_ms = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (num(rest.get(1..3)?)?, num(rest.get(4..6)?)?);
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (h * 3600 + m * 60) * 1000
        }
    };
    let ms = day_ms + ((hour * 60 + minute) * 60 + second) * 1000 + millis.unwrap_or(0) - offset_ms;
    Some(TimePoint {
        ms,
        end_ms: if millis.is_some() { ms } else { ms + 999 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_704_164_645_678),
            "2024-01-02T03:04:05.678Z"
        );
        assert_eq!(rfc3339_millis(951_825_600_001), "2000-02-29T12:00:00.001Z");
    }

    #[test]
    fn parses_what_harbor_clients_send() {
        let at = 1_704_164_645_000;
        for text in [
            "2024-01-02T03:04:05Z",
            "2024-01-02 03:04:05",
            "2024-01-02T05:04:05+02:00",
            "1704164645",
        ] {
            assert_eq!(
                parse_time(text),
                Some(TimePoint {
                    ms: at,
                    end_ms: at + 999
                }),
                "{text}"
            );
        }
        assert_eq!(
            parse_time("2024-01-02T03:04:05.678Z").map(|t| (t.ms, t.end_ms)),
            Some((at + 678, at + 678))
        );
        let day = parse_time("2024-01-02").expect("a date");
        assert_eq!((day.ms, day.end_ms), (1_704_153_600_000, 1_704_239_999_999));
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-01-02T25:00:00Z",
            "2024-01-02T03:04",
            "2024-01-02T03:04:05.Z",
            "2024/01/02",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        let round = parse_time(&rfc3339_millis(at + 5)).expect("round trip");
        assert_eq!(round.ms, at + 5);
    }
}
