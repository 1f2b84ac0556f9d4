//! The part of PHP's `strtotime()` that `_set_key`'s `expires_at` needs (docs/semantics.md §4.5):
//! Cerb 9.6 passes the rendered text to `strtotime` (`DevblocksEventHelper::runActionSetKey`,
//! `libs/devblocks/api/services/event/event_helper.php`). Times are UTC (docs/semantics.md,
//! Decision 14). Supported, case-insensitive, in any combination PHP accepts them in:
//!
//! - `now`, `today`, `midnight`, `noon`, `tomorrow`, `yesterday`;
//! - `@<unix timestamp>`;
//! - dates `2026-01-31` and times `13:45`, `13:45:10`, `8am`, `2:30pm`, a `T` between them and
//!   a trailing `Z`, `UTC`, `GMT` or `±HH:MM` zone (also RFC 3339 and RFC 2822 as a whole);
//! - relative amounts `+1 day`, `2 weeks`, `-3 hours`, `+1 week 2 days`, `3 days ago`,
//!   `next month`, `last year` (units `sec`/`second`, `min`/`minute`, `hour`, `day`, `week`,
//!   `fortnight`, `month`, `year`, singular or plural; months and years overflow like PHP's:
//!   January 31st plus a month is March 3rd or 2nd);
//! - weekdays `friday`, `next friday`, `last friday` (midnight of that day; `friday` may be
//!   today).
//!
//! Anything else is `None`, where PHP might have understood it.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset, Weekday};

/// The Unix time `text` names, relative to `now` (Unix seconds); `None` when it is not
/// understood.
pub fn strtotime(text: &str, now: i64) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc2822) {
        return Some(t.unix_timestamp());
    }
    if let Some(ts) = text.strip_prefix('@') {
        return ts.trim().parse().ok();
    }
    let now = OffsetDateTime::from_unix_timestamp(now).ok()?;
    let lower = text.to_ascii_lowercase();
    let tokens = tokenize(&lower);
    let mut date = now.date();
    let mut time = now.time();
    let mut offset = UtcOffset::UTC;
    // A time of day given explicitly wins over the midnight of `today`, `tomorrow` or a weekday.
    let mut time_set = false;
    let mut midnight = false;
    // Relative amounts: months (with years) and seconds (with days and weeks).
    let (mut rel_months, mut rel_seconds) = (0i64, 0i64);
    let mut weekday: Option<(Weekday, i8)> = None;
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i].as_str();
        match tok {
            "now" => {}
            "today" | "midnight" => midnight = true,
            "noon" => {
                time = Time::from_hms(12, 0, 0).ok()?;
                time_set = true;
            }
            "tomorrow" => {
                midnight = true;
                rel_seconds += 86_400;
            }
            "yesterday" => {
                midnight = true;
                rel_seconds -= 86_400;
            }
            "ago" => {
                rel_months = -rel_months;
                rel_seconds = -rel_seconds;
            }
            "z" | "utc" | "gmt" => offset = UtcOffset::UTC,
            "next" | "last" | "this" => {
                let sign: i64 = match tok {
                    "next" => 1,
                    "last" => -1,
                    _ => 0,
                };
                let next = tokens.get(i + 1)?;
                if let Some(day) = weekday_of(next) {
                    weekday = Some((day, sign as i8));
                } else {
                    let (months, seconds) = unit(next)?;
                    rel_months += sign * months;
                    rel_seconds += sign * seconds;
                }
                i += 1;
            }
            _ => {
                if let Some(day) = weekday_of(tok) {
                    weekday = Some((day, 0));
                } else if let Some(d) = parse_date(tok) {
                    date = d;
                    midnight = true;
                } else if let Some(t) = parse_time(tok, tokens.get(i + 1).map(String::as_str)) {
                    time = t.0;
                    time_set = true;
                    i += t.1;
                } else if let Some(o) = parse_offset(tok) {
                    offset = o;
                } else {
                    // A signed or unsigned amount, then its unit.
                    let (sign, digits) = match tok.as_bytes()[0] {
                        b'+' => (1, &tok[1..]),
                        b'-' => (-1, &tok[1..]),
                        _ => (1, tok),
                    };
                    let spaced = digits.is_empty();
                    let (digits, unit_word) = if spaced {
                        (tokens.get(i + 1)?.as_str(), tokens.get(i + 2)?)
                    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
                        (digits, tokens.get(i + 1)?)
                    } else {
                        return None;
                    };
                    if !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    i += if spaced { 2 } else { 1 };
                    let n: i64 = digits.parse().ok()?;
                    let (months, seconds) = unit(unit_word)?;
                    rel_months += sign * n * months;
                    rel_seconds += sign * n * seconds;
                }
            }
        }
        i += 1;
    }
    if (midnight || weekday.is_some()) && !time_set {
        time = Time::MIDNIGHT;
    }
    if let Some((day, dir)) = weekday {
        date = match dir {
            1 => date.next_occurrence(day),
            -1 => date.prev_occurrence(day),
            _ if date.weekday() == day => date,
            _ => date.next_occurrence(day),
        };
    }
    let date = add_months(date, rel_months)?;
    let at = date.with_time(time).assume_offset(offset);
    let at = at.checked_add(Duration::seconds(rel_seconds))?;
    Some(at.unix_timestamp())
}

/// Words, with `+`/`-` kept on their numbers and a `T` between a date and a time split off.
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        if word.is_empty() {
            continue;
        }
        // 2026-01-31t13:45:00z
        if word.len() > 11 && word.as_bytes()[10] == b't' && parse_date(&word[..10]).is_some() {
            out.push(word[..10].to_string());
            let rest = &word[11..];
            let zone_at = rest.find(['z', '+', '-']).unwrap_or(rest.len());
            out.push(rest[..zone_at].to_string());
            if zone_at < rest.len() {
                out.push(rest[zone_at..].to_string());
            }
            continue;
        }
        out.push(word.to_string());
    }
    out
}

fn weekday_of(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// A unit as (months, seconds).
fn unit(word: &str) -> Option<(i64, i64)> {
    let w = word.strip_suffix('s').unwrap_or(word);
    Some(match w {
        "sec" | "second" => (0, 1),
        "min" | "minute" => (0, 60),
        "hour" => (0, 3_600),
        "day" => (0, 86_400),
        "week" => (0, 7 * 86_400),
        "fortnight" => (0, 14 * 86_400),
        "month" => (1, 0),
        "year" => (12, 0),
        _ => return None,
    })
}

/// `YYYY-MM-DD`.
fn parse_date(word: &str) -> Option<Date> {
    let b = word.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = word[..4].parse().ok()?;
    let m: u8 = word[5..7].parse().ok()?;
    let d: u8 = word[8..10].parse().ok()?;
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

/// `HH:MM[:SS]`, `8am`, `2:30pm`, or `8 am` (then the next word is used too: the second value).
fn parse_time(word: &str, next: Option<&str>) -> Option<(Time, usize)> {
    let (clock, meridian, used) = if let Some(c) = word.strip_suffix("am") {
        (c, Some(false), 0)
    } else if let Some(c) = word.strip_suffix("pm") {
        (c, Some(true), 0)
    } else if matches!(next, Some("am" | "pm")) && word.bytes().all(|b| b.is_ascii_digit()) {
        (word, Some(next == Some("pm")), 1)
    } else {
        (word, None, 0)
    };
    let mut parts = clock.split(':');
    let h: u8 = parts.next()?.parse().ok()?;
    let m: u8 = match parts.next() {
        Some(p) if p.len() == 2 => p.parse().ok()?,
        Some(_) => return None,
        None if meridian.is_some() => 0,
        None => return None,
    };
    let s: u8 = match parts.next() {
        Some(p) if p.len() == 2 => p.parse().ok()?,
        Some(_) => return None,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    let h = match meridian {
        Some(pm) if (1..=12).contains(&h) => h % 12 + if pm { 12 } else { 0 },
        Some(_) => return None,
        None => h,
    };
    Some((Time::from_hms(h, m, s).ok()?, used))
}

/// `+02:00`, `-0500`.
fn parse_offset(word: &str) -> Option<UtcOffset> {
    let sign: i8 = match word.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = word[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || !word.contains(':') {
        // Without a colon, `-0500` would be read as an amount missing its unit: PHP's offsets
        // need a time before them, so only the `±HH:MM` spelling is taken.
        return None;
    }
    let h: i8 = digits[..2].parse().ok()?;
    let m: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

/// Adds calendar months, letting a day past the month's end roll over as PHP does.
fn add_months(date: Date, months: i64) -> Option<Date> {
    if months == 0 {
        return Some(date);
    }
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let first = Date::from_calendar_date(year, month, 1).ok()?;
    first.checked_add(Duration::days(i64::from(date.day()) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wednesday 2026-01-14 10:30:00 UTC.
    const NOW: i64 = 1_768_386_600;

    fn at(s: &str) -> i64 {
        OffsetDateTime::parse(s, &Rfc3339).unwrap().unix_timestamp()
    }

    #[test]
    fn the_forms_cerb_documents() {
        assert_eq!(
            OffsetDateTime::from_unix_timestamp(NOW)
                .unwrap()
                .format(&Rfc3339)
                .unwrap(),
            "2026-01-14T10:30:00Z"
        );
        for (text, expected) in [
            ("now", NOW),
            ("+1 day", NOW + 86_400),
            ("1 day", NOW + 86_400),
            ("+2 days", NOW + 2 * 86_400),
            ("-3 hours", NOW - 3 * 3_600),
            ("+ 30 minutes", NOW + 1_800),
            ("+1 week 2 days", NOW + 9 * 86_400),
            ("3 days ago", NOW - 3 * 86_400),
            ("next week", NOW + 7 * 86_400),
            ("+90 secs", NOW + 90),
            ("@1700000000", 1_700_000_000),
            ("tomorrow", at("2026-01-15T00:00:00Z")),
            ("today", at("2026-01-14T00:00:00Z")),
            ("Friday 8am", at("2026-01-16T08:00:00Z")),
            ("next Friday 2pm", at("2026-01-16T14:00:00Z")),
            ("wednesday", at("2026-01-14T00:00:00Z")),
            ("next wednesday", at("2026-01-21T00:00:00Z")),
            ("last monday", at("2026-01-12T00:00:00Z")),
            ("2026-03-01", at("2026-03-01T00:00:00Z")),
            ("2026-03-01 13:45", at("2026-03-01T13:45:00Z")),
            ("2026-03-01T13:45:10Z", at("2026-03-01T13:45:10Z")),
            ("2026-03-01T13:45:10+02:00", at("2026-03-01T11:45:10Z")),
            (
                "Sun, 01 Mar 2026 13:45:10 +0000",
                at("2026-03-01T13:45:10Z"),
            ),
            ("+1 month", at("2026-02-14T10:30:00Z")),
            ("2026-01-31 +1 month", at("2026-03-03T00:00:00Z")),
            ("+1 year", at("2027-01-14T10:30:00Z")),
            ("tomorrow noon", at("2026-01-15T12:00:00Z")),
            ("  NOW  ", NOW),
        ] {
            assert_eq!(strtotime(text, NOW), Some(expected), "{text}");
        }
    }

    #[test]
    fn what_is_not_understood_is_none() {
        for text in [
            "",
            "soon",
            "1",
            "+1 fortnights later",
            "25:00",
            "2026-13-01",
            "next",
            "@x",
        ] {
            assert_eq!(strtotime(text, NOW), None, "{text}");
        }
    }
}
