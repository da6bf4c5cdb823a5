//! Audit timestamps: the fast forms of `normalize._parse_ts`, anything else is declined.

use crate::normalize::{Fallback, R};

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The value of a short all-ASCII-digit field (callers pass at most 6 digits; longer ones saturate).
fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |acc, d| acc.saturating_mul(10).saturating_add((d - b'0') as i64)))
}

/// `_parse_ts`'s fast forms: `YYYY-MM-DD[T ]HH:MM:SS[.f+][Z]` -> (canonical string, epoch µs).
pub(crate) fn parse_ts(value: &str) -> R<(String, i64)> {
    let b = value.as_bytes();
    if b.len() < 19 || b[16] != b':' || !value.is_ascii() {
        return Err(Fallback);
    }
    if !(b[4] == b'-' && b[7] == b'-' && b[13] == b':' && (b[10] == b'T' || b[10] == b' ') && b[0] != b'0') {
        return Err(Fallback);
    }
    let (y, mo, d, h, mi) = match (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]), digits(&b[11..13]), digits(&b[14..16])) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi)) => (y, mo, d, h, mi),
        _ => return Err(Fallback),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] || h > 23 || mi > 59 {
        return Err(Fallback);
    }
    let sec = match digits(&b[17..19]) {
        Some(s) if s <= 59 => s,
        _ => return Err(Fallback),
    };
    let minute_prefix = format!("{}T{}", &value[..10], &value[11..16]);
    let epoch = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1_000_000;
    let size = b.len();
    if size == 27 && b[26] == b'Z' && b[19] == b'.' {
        let frac = digits(&b[20..26]).ok_or(Fallback)?;
        let text = if b[10] == b'T' { value.to_string() } else { format!("{}{}", minute_prefix, &value[16..]) };
        return Ok((text, epoch + frac));
    }
    if size == 19 || (size == 20 && b[19] == b'Z') {
        return Ok((format!("{}{}.000000Z", minute_prefix, &value[16..19]), epoch));
    }
    if b[19] == b'.' {
        let frac = if b[size - 1] == b'Z' { &value[20..size - 1] } else { &value[20..] };
        if digits(frac.as_bytes()).is_none() {
            return Err(Fallback);
        }
        let frac6: String = if frac.len() >= 6 { frac[..6].to_string() } else { format!("{:0<6}", frac) };
        let micros = digits(frac6.as_bytes()).ok_or(Fallback)?;
        return Ok((format!("{}{}.{}Z", minute_prefix, &value[16..19], frac6), epoch + micros));
    }
    Err(Fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("2024-02-29T10:11:12.123456Z").unwrap(), ("2024-02-29T10:11:12.123456Z".into(), 1709201472123456));
        assert_eq!(parse_ts("2024-02-29 10:11:12").unwrap().0, "2024-02-29T10:11:12.000000Z");
        assert_eq!(parse_ts("2024-02-29T10:11:12.5Z").unwrap().0, "2024-02-29T10:11:12.500000Z");
        assert!(parse_ts("2023-02-29T10:11:12Z").is_err());
        assert!(parse_ts("2024-02-29T10:11:12+02:00").is_err());
    }
}
