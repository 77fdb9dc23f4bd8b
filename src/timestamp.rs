//! Event time: milliseconds since the Unix epoch, parsed from RFC 3339 text
//! or epoch milliseconds, and the calendar buckets (hour, day, month) that
//! metrics roll up into.
//!
//! The parser is hand-written because it sits on the hot path of every
//! record and must be total: any byte string yields `Some` or `None`,
//! never a panic.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// One second in milliseconds.
pub const SECOND_MS: Millis = 1_000;
/// One minute in milliseconds.
pub const MINUTE_MS: Millis = 60 * SECOND_MS;
/// One hour in milliseconds.
pub const HOUR_MS: Millis = 60 * MINUTE_MS;
/// One day in milliseconds.
pub const DAY_MS: Millis = 24 * HOUR_MS;

/// Earliest event time adflow accepts (2000-01-01T00:00:00Z); anything older is
/// a corrupt clock, not an ad event.
pub const MIN_EVENT_TIME: Millis = 946_684_800_000;
/// Latest event time adflow accepts (2100-01-01T00:00:00Z).
pub const MAX_EVENT_TIME: Millis = 4_102_444_800_000;

/// Days since the epoch of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The (year, month, day) of a count of days since the epoch.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both values are small by construction (1..=31 and 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Parses an RFC 3339 timestamp such as `2026-11-23T13:37:00.125Z` or
/// `2026-11-23 14:37:00+01:00`. Fractions beyond milliseconds are truncated.
///
/// ```
/// use adflow::timestamp::parse_rfc3339;
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500));
/// assert_eq!(parse_rfc3339("2026-02-30T00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = i64::from(digits(&b[11..13])?);
    let minute = i64::from(digits(&b[14..16])?);
    let second = i64::from(digits(&b[17..19])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 admits a leap second; it folds into the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let mut scale = 100;
        for &digit in &fraction[..len.min(3)] {
            millis += i64::from(digit - b'0') * scale;
            scale /= 10;
        }
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = i64::from(digits(&[*h1, *h2])?);
            let minutes = i64::from(digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds,
/// e.g. `2026-11-23T13:37:00.125Z`.
///
/// ```
/// use adflow::timestamp::{format_rfc3339, parse_rfc3339};
/// let text = format_rfc3339(1_795_441_020_125);
/// assert_eq!(text, "2026-11-23T13:37:00.125Z");
/// assert_eq!(parse_rfc3339(&text), Some(1_795_441_020_125));
/// ```
pub fn format_rfc3339(ts: Millis) -> String {
    let days = ts.div_euclid(DAY_MS);
    let in_day = ts.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / HOUR_MS,
        in_day % HOUR_MS / MINUTE_MS,
        in_day % MINUTE_MS / SECOND_MS,
        in_day % SECOND_MS
    )
}

/// The date of an instant as `YYYY-MM-DD` (UTC), used for `dt=` partitions.
pub fn format_date(ts: Millis) -> String {
    let (year, month, day) = civil_from_days(ts.div_euclid(DAY_MS));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Start of the UTC hour containing `ts`.
pub fn hour_start(ts: Millis) -> Millis {
    ts - ts.rem_euclid(HOUR_MS)
}

/// Start of the UTC day containing `ts`.
pub fn day_start(ts: Millis) -> Millis {
    ts - ts.rem_euclid(DAY_MS)
}

/// Start of the UTC calendar month containing `ts`.
pub fn month_start(ts: Millis) -> Millis {
    let (year, month, _) = civil_from_days(ts.div_euclid(DAY_MS));
    days_from_civil(year, month, 1) * DAY_MS
}

/// A duration that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a duration: {0:?} (use a number with ms, s, m, h, d or w, e.g. 250ms, 90s, 1.5h, 7d)")]
pub struct DurationError(pub String);

/// Parses a duration such as `500ms`, `10s`, `1.5h`, `7d` or a plain number
/// of milliseconds, exactly (no float rounding).
///
/// ```
/// use adflow::timestamp::parse_duration;
/// assert_eq!(parse_duration("90s"), Ok(90_000));
/// assert_eq!(parse_duration("1.5h"), Ok(5_400_000));
/// assert_eq!(parse_duration("7d"), Ok(604_800_000));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Millis, DurationError> {
    let error = || DurationError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: i128 = match unit.trim() {
        "" | "ms" => 1,
        "s" => i128::from(SECOND_MS),
        "m" | "min" => i128::from(MINUTE_MS),
        "h" => i128::from(HOUR_MS),
        "d" => i128::from(DAY_MS),
        "w" => i128::from(7 * DAY_MS),
        _ => return Err(error()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return Err(error());
    }
    let parse = |digits: &str| -> Result<i128, DurationError> {
        if digits.is_empty() {
            Ok(0)
        } else {
            digits.parse().map_err(|_| error())
        }
    };
    let denominator = 10i128.pow(u32::try_from(fraction.len()).unwrap_or(0));
    let numerator = parse(whole)?
        .checked_mul(denominator)
        .and_then(|value| value.checked_add(parse(fraction).ok()?))
        .ok_or_else(error)?;
    let millis = numerator
        .checked_mul(scale)
        .map(|value| (value + denominator / 2) / denominator)
        .ok_or_else(error)?;
    Millis::try_from(millis).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.123456Z"), Some(123));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T00:00:00",
            "2026-11-23T00:00:00.Z",
            "2026-11-23T00:00:00+1:00",
            "२०२६-11-23T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("3d"), Ok(3 * DAY_MS));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("0.5s"), Ok(500));
        assert_eq!(parse_duration(".25h"), Ok(900_000));
        for bad in ["", "h", "1.2.3s", "-1s", "1y", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets() {
        let ts = parse_rfc3339("2026-11-23T13:37:00.125Z").unwrap_or_default();
        assert_eq!(format_rfc3339(hour_start(ts)), "2026-11-23T13:00:00.000Z");
        assert_eq!(format_rfc3339(day_start(ts)), "2026-11-23T00:00:00.000Z");
        assert_eq!(format_rfc3339(month_start(ts)), "2026-11-01T00:00:00.000Z");
        assert_eq!(format_date(ts), "2026-11-23");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ts in MIN_EVENT_TIME..MAX_EVENT_TIME) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ts)), Some(ts));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }
    }
}
