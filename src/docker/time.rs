//! RFC 3339 timestamps as Docker writes them (`2024-05-01T12:34:56.123456789Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an RFC 3339 timestamp with optional fraction (up to nanoseconds; more digits
/// are truncated) and `Z` or `±HH:MM` offset. `Ok(None)` for instants before the Unix
/// epoch, such as Go's zero time `0001-01-01T00:00:00Z` that Docker uses for "never".
pub fn parse_rfc3339(s: &str) -> Result<Option<SystemTime>, String> {
    let err = || format!("invalid RFC 3339 timestamp {s:?}");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        Ok(part.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(err());
    }
    if hour > 23 || min > 59 || sec > 60 {
        return Err(err());
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return Err(err());
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = num(i + 1..i + 3)?;
            let mm = num(i + 4..i + 6)?;
            let _ = (h1, h2, m1, m2);
            if hh > 23 || mm > 59 {
                return Err(err());
            }
            let o = i64::from(hh * 3600 + mm * 60);
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(err()),
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec) - offset;
    if secs < 0 {
        return Ok(None);
    }
    Ok(Some(UNIX_EPOCH + Duration::new(secs as u64, nanos)))
}

fn is_leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn parses_docker_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), at(0, 0));
        assert_eq!(
            parse_rfc3339("2026-12-02T12:53:57.661475771Z").unwrap(),
            at(1_796_216_037, 661_475_771)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T23:59:59.5+01:00").unwrap(),
            at(951_865_199, 500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00.1234567891-00:30").unwrap(),
            at(1_704_069_000, 123_456_789)
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z").unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-0aT00:00:00Z",
            "2024-01-01T00:00:00+01:60",
            "२०२४-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }
}
