//! Reading timestamps: Unix milliseconds, RFC 3339, and naive
//! `YYYY-MM-DD HH:MM:SS[.fff]` date-times in a fixed time zone.
//!
//! ```
//! use weir_plugin::time::{TimeZone, parse_timestamp, parse_timestamp_in};
//!
//! assert_eq!(parse_timestamp("2015-02-04 17:51:00"), Ok(1_423_072_260_000)); // naive = UTC
//! let cet = TimeZone::parse("+01:00").unwrap();
//! assert_eq!(parse_timestamp_in("2015-02-04 18:51:00", cet), Ok(1_423_072_260_000));
//! assert_eq!(parse_timestamp("1423072260000"), Ok(1_423_072_260_000));
//! ```

/// A fixed offset from UTC, used for naive date-times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TimeZone {
    /// Minutes east of UTC.
    pub offset_minutes: i32,
}

impl TimeZone {
    /// UTC.
    pub const UTC: TimeZone = TimeZone { offset_minutes: 0 };

    /// Parses `UTC`, `Z`, `+01:00`, `-0530` or `+02`.
    pub fn parse(text: &str) -> Result<TimeZone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" || t == "z" {
            return Ok(TimeZone::UTC);
        }
        parse_offset(t)
            .map(|offset_minutes| TimeZone { offset_minutes })
            .ok_or_else(|| {
                format!(
                    "invalid time zone {text:?}: use UTC or a fixed offset such as +01:00 or -05:30"
                )
            })
    }
}

fn parse_offset(rest: &str) -> Option<i32> {
    let sign = match rest.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let r = &rest.as_bytes()[1..];
    let (h, m) = match r.len() {
        5 if r[2] == b':' => (digits::<2>(r, 0)?, digits::<2>(r, 3)?),
        4 => (digits::<2>(r, 0)?, digits::<2>(r, 2)?),
        2 => (digits::<2>(r, 0)?, 0),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m) as i32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses a timestamp into Unix milliseconds; naive date-times are UTC.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    parse_timestamp_in(text, TimeZone::UTC)
}

/// Parses a timestamp into Unix milliseconds: an integer (or decimal) of
/// milliseconds, RFC 3339 with `T` or a space and an optional fractional
/// part and offset, or a naive date-time read in `zone`.
pub fn parse_timestamp_in(text: &str, zone: TimeZone) -> Result<i64, String> {
    let t = text.trim().trim_matches('"');
    if looks_like_datetime(t)
        && let Some(ms) = parse_datetime(t, zone)
    {
        return Ok(ms);
    }
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        return Ok(f.round() as i64);
    }
    parse_datetime(t, zone).ok_or_else(|| {
        format!("cannot read timestamp {t:?}: expected Unix milliseconds, RFC 3339 or YYYY-MM-DD HH:MM:SS")
    })
}

/// The number written by the `N` ASCII digits at `b[at..]`; `None` if any
/// is not a digit. Straight-line code (the loop has a fixed count), where
/// `str::parse` checks signs, overflow and length on each call.
#[inline(always)]
fn digits<const N: usize>(b: &[u8], at: usize) -> Option<i64> {
    let d: [u8; N] = b.get(at..at + N)?.try_into().ok()?;
    let mut n = 0i64;
    let mut ok = true;
    for c in d {
        ok &= c.is_ascii_digit();
        n = n * 10 + i64::from(c.wrapping_sub(b'0'));
    }
    ok.then_some(n)
}

/// Whether `t` has the shape of a date-time (`YYYY-MM-DD` then a time),
/// which no number has: such text skips the number parsers.
fn looks_like_datetime(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 19 && b[4] == b'-' && b[7] == b'-'
}

fn parse_datetime(t: &str, zone: TimeZone) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits::<4>(b, 0)?, digits::<2>(b, 5)?, digits::<2>(b, 8)?);
    let (h, mi, s) = (
        digits::<2>(b, 11)?,
        digits::<2>(b, 14)?,
        digits::<2>(b, 17)?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let ms_digits = &frac[..n.min(3)];
        millis = ms_digits.parse::<i64>().ok()? * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "" => zone.offset_minutes as i64,
        "Z" | "z" => 0,
        _ => parse_offset(rest)? as i64,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_min * 60) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(parse_timestamp("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Ok(1000));
        assert_eq!(
            parse_timestamp("\"2015-02-04 17:51:00\""),
            Ok(1_423_072_260_000)
        );
        assert_eq!(
            parse_timestamp("2015-02-04T17:51:00.5Z"),
            Ok(1_423_072_260_500)
        );
        assert_eq!(
            parse_timestamp("2015-02-04T18:51:00+01:00"),
            Ok(1_423_072_260_000)
        );
        assert_eq!(parse_timestamp("1969-12-31 23:59:59"), Ok(-1000));
        assert_eq!(
            parse_timestamp("2016-02-29 00:00:00"),
            Ok(1_456_704_000_000)
        );
        assert!(parse_timestamp("2015-02-29 00:00:00").is_err());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2015-13-04 17:51:00").is_err());
        // Every digit position is checked, and signs are not digits.
        for bad in [
            "2015-02-0x 17:51:00",
            "2015-02-04 1:51:000",
            "+015-02-04 17:51:00",
            "2015-02-04 17:51:-1",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
        // Numbers still read as milliseconds, whatever their length.
        assert_eq!(parse_timestamp("1423072260000.4"), Ok(1_423_072_260_000));
        assert_eq!(parse_timestamp("-1000"), Ok(-1000));
    }

    #[test]
    fn zones() {
        assert_eq!(TimeZone::parse("UTC"), Ok(TimeZone::UTC));
        assert_eq!(TimeZone::parse("-05:30").unwrap().offset_minutes, -330);
        assert_eq!(TimeZone::parse("+0200").unwrap().offset_minutes, 120);
        assert!(TimeZone::parse("Europe/Paris").is_err());
        let z = TimeZone::parse("-05:00").unwrap();
        assert_eq!(
            parse_timestamp_in("1970-01-01 00:00:00", z),
            Ok(5 * 3_600_000)
        );
        // An explicit offset in the text wins over the zone.
        assert_eq!(parse_timestamp_in("1970-01-01T00:00:00Z", z), Ok(0));
    }
}
