//! PHP's `date()` format letters on Unix timestamps and ISO-like date strings, for Twig's `date`
//! filter and function. Time zones are UTC or fixed offsets (`+02:00`); there is no tz database.

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};
use time::{Duration, OffsetDateTime, UtcOffset, Weekday};

use crate::php;

fn fail(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// A time zone argument: empty/null is UTC; `UTC`, `GMT`, `Z` or `±HH[:]MM`.
fn zone(tz: &Value) -> Result<(UtcOffset, String), Error> {
    if tz.is_undefined() || tz.is_none() || php::to_php_string(tz).is_empty() {
        return Ok((UtcOffset::UTC, "UTC".into()));
    }
    let name = php::to_php_string(tz);
    parse_offset(&name)
        .map(|o| {
            (
                o,
                if o == UtcOffset::UTC && !name.starts_with(['+', '-']) {
                    "UTC".into()
                } else {
                    fmt_offset(o, true)
                },
            )
        })
        .ok_or_else(|| fail(format!("Unknown or bad timezone ({name})")))
}

fn parse_offset(name: &str) -> Option<UtcOffset> {
    if matches!(
        name.to_ascii_uppercase().as_str(),
        "UTC" | "GMT" | "Z" | "UCT" | "ETC/UTC"
    ) {
        return Some(UtcOffset::UTC);
    }
    let sign = match name.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = name[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    UtcOffset::from_whole_seconds(sign * (h * 3600 + m * 60)).ok()
}

fn fmt_offset(o: UtcOffset, colon: bool) -> String {
    let secs = o.whole_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// The instant a Twig date value names: null is now, numbers are Unix timestamps, strings are
/// `now`, `@<ts>`, numeric, or ISO-like dates (`2024-01-31`, `2024-01-31 13:45[:10]`, `T`,
/// fraction, `Z` or `±HH:MM`).
fn instant(v: &Value, default_tz: UtcOffset) -> Result<(OffsetDateTime, Option<UtcOffset>), Error> {
    let from_ts = |f: f64| -> Result<OffsetDateTime, Error> {
        let nanos = (f * 1e9).round();
        if !nanos.is_finite() || nanos.abs() > 2.5e20 {
            return Err(fail("timestamp out of range"));
        }
        OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).map_err(|e| fail(e.to_string()))
    };
    // Twig's date converter: null and "now" are now; a string of digits (optionally after `-`)
    // is a Unix timestamp; anything else is parsed as a date.
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Ok((OffsetDateTime::now_utc(), None)),
        ValueKind::Seq | ValueKind::Map => Err(fail("an array is not a date")),
        _ => {
            let text = php::to_php_string(v);
            let digits = text.strip_prefix('-').unwrap_or(&text);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                let ts: f64 = text.parse().map_err(|_| fail("timestamp out of range"))?;
                return Ok((from_ts(ts)?, None));
            }
            let t = text.trim();
            if t.is_empty() || t.eq_ignore_ascii_case("now") {
                return Ok((OffsetDateTime::now_utc(), None));
            }
            if let Some(ts) = t.strip_prefix('@')
                && let Some(n) = php::numeric_str(ts)
            {
                return Ok((from_ts(n.as_f64())?, Some(UtcOffset::UTC)));
            }
            parse_iso(t, default_tz).ok_or_else(|| {
                fail(format!(
                    "Failed to parse time string ({t}) at position 0 ({})",
                    t.chars().next().unwrap_or(' ')
                ))
            })
        }
    }
}

fn parse_iso(t: &str, default_tz: UtcOffset) -> Option<(OffsetDateTime, Option<UtcOffset>)> {
    let b = t.as_bytes();
    let num = |a: usize, n: usize| -> Option<u32> {
        let s = t.get(a..a + n)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let mut i = 10;
    let (mut h, mut mi, mut s, mut nanos) = (0, 0, 0, 0u32);
    if matches!(b.get(i), Some(b'T' | b't' | b' ')) && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    {
        h = num(i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        mi = num(i + 4, 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            s = num(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                let frac: String = t[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                i += 1 + frac.len();
                let padded = format!("{:0<9}", &frac[..frac.len().min(9)]);
                nanos = padded.parse().ok()?;
            }
        }
    }
    let rest = t[i..].trim_start();
    let tz = if rest.is_empty() {
        None
    } else {
        Some(parse_offset(rest)?)
    };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(y as i32, month, u8::try_from(d).ok()?).ok()?;
    let tm = time::Time::from_hms_nano(h as u8, mi as u8, s as u8, nanos).ok()?;
    let dt = time::PrimitiveDateTime::new(date, tm).assume_offset(tz.unwrap_or(default_tz));
    Some((dt, tz))
}

/// The Unix timestamp of a date value (the `date()` function; Twig returns a DateTime there).
pub(crate) fn timestamp(v: &Value, tz: &Value) -> Result<i64, Error> {
    let (offset, _) = zone(tz)?;
    Ok(instant(v, offset)?.0.unix_timestamp())
}

/// Twig's `date(format, timezone)` filter.
pub(crate) fn format_value(v: &Value, format: &str, tz: &Value) -> Result<String, Error> {
    let (offset, name) = zone(tz)?;
    // Twig parses in the default time zone (UTC) and always converts to the argument's zone, or
    // to the default one: a date's own offset never shows.
    let (at, _) = instant(v, UtcOffset::UTC)?;
    Ok(format_date(at.to_offset(offset), format, &name))
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// PHP's `date()` formatting of one instant.
pub(crate) fn format_date(dt: OffsetDateTime, format: &str, zone_name: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    let wd = dt.weekday().number_days_from_monday() as usize;
    let (iso_year, iso_week, _) = dt.to_iso_week_date();
    let month = u8::from(dt.month()) as usize;
    let leap = time::util::is_leap_year(dt.year());
    let h12 = match dt.hour() % 12 {
        0 => 12,
        h => h,
    };
    while let Some(c) = chars.next() {
        let _ = match c {
            'd' => write!(out, "{:02}", dt.day()),
            'D' => write!(out, "{}", &DAYS[wd][..3]),
            'j' => write!(out, "{}", dt.day()),
            'l' => write!(out, "{}", DAYS[wd]),
            'N' => write!(out, "{}", wd + 1),
            'S' => write!(
                out,
                "{}",
                match dt.day() {
                    1 | 21 | 31 => "st",
                    2 | 22 => "nd",
                    3 | 23 => "rd",
                    _ => "th",
                }
            ),
            'w' => write!(out, "{}", dt.weekday().number_days_from_sunday()),
            'z' => write!(out, "{}", dt.ordinal() - 1),
            'W' => write!(out, "{iso_week:02}"),
            'F' => write!(out, "{}", MONTHS[month - 1]),
            'm' => write!(out, "{month:02}"),
            'M' => write!(out, "{}", &MONTHS[month - 1][..3]),
            'n' => write!(out, "{month}"),
            't' => write!(out, "{}", time::util::days_in_month(dt.month(), dt.year())),
            'L' => write!(out, "{}", u8::from(leap)),
            'o' => write!(out, "{iso_year}"),
            'Y' => write!(out, "{}", dt.year()),
            'y' => write!(out, "{:02}", dt.year().rem_euclid(100)),
            'a' => write!(out, "{}", if dt.hour() < 12 { "am" } else { "pm" }),
            'A' => write!(out, "{}", if dt.hour() < 12 { "AM" } else { "PM" }),
            'g' => write!(out, "{h12}"),
            'G' => write!(out, "{}", dt.hour()),
            'h' => write!(out, "{h12:02}"),
            'H' => write!(out, "{:02}", dt.hour()),
            'i' => write!(out, "{:02}", dt.minute()),
            's' => write!(out, "{:02}", dt.second()),
            'u' => write!(out, "{:06}", dt.microsecond()),
            'v' => write!(out, "{:03}", dt.millisecond()),
            'e' => write!(out, "{zone_name}"),
            'T' => write!(
                out,
                "{}",
                if dt.offset() == UtcOffset::UTC && zone_name == "UTC" {
                    "UTC".to_string()
                } else {
                    format!("GMT{}", fmt_offset(dt.offset(), false))
                }
            ),
            'P' => write!(out, "{}", fmt_offset(dt.offset(), true)),
            'p' => write!(
                out,
                "{}",
                if dt.offset() == UtcOffset::UTC {
                    "Z".to_string()
                } else {
                    fmt_offset(dt.offset(), true)
                }
            ),
            'O' => write!(out, "{}", fmt_offset(dt.offset(), false)),
            'Z' => write!(out, "{}", dt.offset().whole_seconds()),
            'U' => write!(out, "{}", dt.unix_timestamp()),
            'I' => write!(out, "0"),
            'B' => {
                let secs = (dt.unix_timestamp() + 3600).rem_euclid(86400);
                write!(out, "{:03}", (secs * 10 / 864) % 1000)
            }
            'c' => write!(out, "{}", format_date(dt, "Y-m-d\\TH:i:sP", zone_name)),
            'r' => write!(out, "{}", format_date(dt, "D, d M Y H:i:s O", zone_name)),
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
                Ok(())
            }
            other => {
                out.push(other);
                Ok(())
            }
        };
    }
    let _ = (Duration::ZERO, Weekday::Monday);
    out
}
