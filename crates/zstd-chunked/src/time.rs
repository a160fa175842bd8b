//! RFC 3339 timestamps as the TOC spells them (Go's `time.Time` JSON form).
//!
//! Go writes `2006-01-02T15:04:05.999999999Z07:00`: fractional seconds with trailing zeros
//! dropped (no fraction at all when zero), `Z` for UTC or a `±hh:mm` offset. strata writes
//! UTC; it reads any offset.

use strata_types::Timestamp;

/// Why a timestamp could not be parsed or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error("timestamp {0:?} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm))")]
    Syntax(String),
    #[error("timestamp {0:?} has a field out of range")]
    Range(String),
    #[error("time {secs}.{nanos:09}s since the epoch is outside years 0000-9999, which RFC 3339 cannot express")]
    Unrepresentable { secs: i64, nanos: u32 },
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats like Go's `time.Time.MarshalJSON` in UTC (without the quotes).
pub fn format_rfc3339(t: Timestamp) -> Result<String, TimeError> {
    let unrepresentable = || TimeError::Unrepresentable { secs: t.secs, nanos: t.nanos };
    if t.nanos >= 1_000_000_000 {
        return Err(unrepresentable());
    }
    let days = t.secs.div_euclid(86400);
    let sod = t.secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(unrepresentable());
    }
    let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if t.nanos != 0 {
        let frac = format!("{:09}", t.nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    Ok(s)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |acc, &c| acc.checked_mul(10)?.checked_add(u32::from(c - b'0')))
}

/// Parses an RFC 3339 date-time (any offset) to seconds and nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimeError> {
    let syntax = || TimeError::Syntax(s.to_owned());
    let range = || TimeError::Range(s.to_owned());
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(syntax());
    }
    let y = digits(&b[0..4]).ok_or_else(syntax)? as i64;
    let mo = digits(&b[5..7]).ok_or_else(syntax)?;
    let d = digits(&b[8..10]).ok_or_else(syntax)?;
    let h = digits(&b[11..13]).ok_or_else(syntax)?;
    let mi = digits(&b[14..16]).ok_or_else(syntax)?;
    let se = digits(&b[17..19]).ok_or_else(syntax)?;
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err(syntax());
        }
        nanos = digits(&frac[..n]).ok_or_else(syntax)? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = digits(&[*oh1, *oh2]).ok_or_else(syntax)?;
            let om = digits(&[*om1, *om2]).ok_or_else(syntax)?;
            if oh > 23 || om > 59 {
                return Err(range());
            }
            let v = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -v } else { v }
        }
        _ => return Err(syntax()),
    };
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
        return Err(range());
    }
    let secs = days_from_civil(y, mo, d) * 86400 + i64::from(h * 3600 + mi * 60 + se) - offset_secs;
    Ok(Timestamp::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let f = |s, n| format_rfc3339(Timestamp::new(s, n)).unwrap();
        assert_eq!(f(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(f(1795456404, 920729985), "2026-11-23T17:53:24.920729985Z");
        assert_eq!(f(1795456404, 216729990), "2026-11-23T17:53:24.21672999Z");
        assert_eq!(f(951782400, 500_000_000), "2000-02-29T00:00:00.5Z");
        assert_eq!(f(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(f(-62167219200, 0), "0000-01-01T00:00:00Z");
        assert!(format_rfc3339(Timestamp::new(253402300800, 0)).is_err(), "year 10000");
        assert!(format_rfc3339(Timestamp::new(-62167219201, 0)).is_err(), "year -1");
    }

    #[test]
    fn parses_offsets_fractions_and_round_trips() {
        let p = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(p("2026-11-23T17:53:24.21672999Z"), Timestamp::new(1795456404, 216729990));
        assert_eq!(p("2026-11-23T19:53:24.21672999+02:00"), Timestamp::new(1795456404, 216729990));
        assert_eq!(p("1970-01-01T00:00:00-00:30"), Timestamp::new(1800, 0));
        for secs in [-86401i64, -1, 0, 59, 86399, 951782400, 1795456404, 253402300799] {
            for nanos in [0u32, 1, 500_000_000, 999_999_999] {
                let t = Timestamp::new(secs, nanos);
                assert_eq!(p(&format_rfc3339(t).unwrap()), t);
            }
        }
    }

    #[test]
    fn rejects_malformed_and_out_of_range() {
        for bad in [
            "",
            "2026-11-23 17:53:24Z",
            "2026-11-23T17:53:24",
            "2026-11-23T17:53:24.Z",
            "2026-11-23T17:53:24.1234567890Z",
            "2026-11-23T17:53:24+0200",
            "2026-11-23T17:53:24z",
            "+026-11-23T17:53:24Z",
        ] {
            assert!(matches!(parse_rfc3339(bad), Err(TimeError::Syntax(_))), "{bad}");
        }
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00+24:00",
        ] {
            assert!(matches!(parse_rfc3339(bad), Err(TimeError::Range(_))), "{bad}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }
}
