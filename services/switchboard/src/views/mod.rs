//! The operator's read commands: what the system records, readable without SQL.
//!
//! `messages`, `runs`, `jobs` and `suppressions` read PostgreSQL through the store's `views`
//! module; `dlq` reads the dead-letter stream over NATS. Every list prints an aligned table
//! (long values truncated, times in UTC RFC 3339) or, with `--json`, one JSON array; every
//! `show` prints a readable report or one JSON object. Lists are newest first, `--limit` rows
//! at a time (default 50, at most 1000); when more rows match, the table's last line (stderr
//! with `--json`) gives the `--before` of the next page. Credentials and signature headers are
//! never printed.

pub mod dlq;
pub mod jobs;
pub mod messages;
pub mod runs;
pub mod suppressions;

use clap::Args;
use serde_json::Value;
use switchboard_store::Store;
use switchboard_store::views::{Before, Window};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `--limit` and `--json`, shared by every list.
#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Rows per page, 1 to 1000.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Print one JSON array instead of the table (the next page's `--before` goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `--since` and `--until`, shared by every list.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Only rows at or after TIME: RFC 3339 (2026-11-25T19:00:00Z, any offset), a UTC date
    /// (2026-11-25), or an age (30s, 15m, 1h, 7d, 2w: that long ago).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Only rows before TIME (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
}

impl WindowArgs {
    /// The store's window; `--since` after `--until` is refused, naming both.
    pub fn window(&self) -> anyhow::Result<Window> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            anyhow::bail!(
                "--since {} is not before --until {}: nothing can match",
                rfc3339(since),
                rfc3339(until)
            );
        }
        Ok(Window {
            since: self.since,
            until: self.until,
        })
    }
}

/// Parses a time as `--since`, `--until` and cursors take it: RFC 3339, a UTC date, or an age
/// (`30s`, `15m`, `1h`, `7d`, `2w`) before now.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    parse_time_at(s, OffsetDateTime::now_utc())
}

fn parse_time_at(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let t = s.trim();
    let expected = "expected RFC 3339 (2026-11-25T19:00:00Z), a UTC date (2026-11-25) or an age (30s, 15m, 1h, 7d, 2w)";
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at.to_offset(time::UtcOffset::UTC));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(t, &date_format) {
        return Ok(date.midnight().assume_utc());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_secs: i64 = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("'{s}' is not a time: {expected}")),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a time: {expected}"))?;
    n.checked_mul(unit_secs)
        .and_then(|secs| now.checked_sub(time::Duration::seconds(secs)))
        .ok_or_else(|| format!("'{s}' is too long ago"))
}

/// Parses a list cursor: `TIME` or `TIME/KEY`, as the previous page printed it.
pub fn parse_cursor(s: &str) -> Result<Before, String> {
    let (time, key) = match s.split_once('/') {
        Some((time, key)) => (time, Some(key.to_owned()).filter(|k| !k.is_empty())),
        None => (s, None),
    };
    let at = parse_time(time).map_err(|e| format!("{e} (a cursor is TIME or TIME/KEY)"))?;
    Ok(Before { at, key })
}

/// A cursor as `--before` takes it back: the time to the microsecond, `/`, the key.
pub fn cursor(at: OffsetDateTime, key: &str) -> String {
    format!("{}/{key}", rfc3339(at))
}

/// RFC 3339 in UTC with the stored precision (JSON and cursors).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// RFC 3339 in UTC to the second (tables).
pub fn short_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// RFC 3339 in UTC with how long ago it was (`show` reports).
pub fn time_and_age(at: OffsetDateTime) -> String {
    format!("{} ({})", rfc3339(at), age(OffsetDateTime::now_utc() - at))
}

fn age(d: time::Duration) -> String {
    let secs = d.whole_seconds();
    if secs < 0 {
        return "in the future".into();
    }
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// Optional time for JSON.
pub fn json_time(at: Option<OffsetDateTime>) -> Value {
    at.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

/// A duration in microseconds, readable (`850 µs`, `12.3 ms`, `2.10 s`).
pub fn duration_us(us: i64) -> String {
    match us {
        ..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// An aligned text table: a header row, columns as wide as their widest cell up to each
/// column's maximum (longer cells end in `…`), control characters shown as spaces.
pub struct Table {
    headers: Vec<&'static str>,
    max: Vec<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns: (header, maximum width in characters).
    pub fn new(columns: &[(&'static str, usize)]) -> Table {
        Table {
            headers: columns.iter().map(|(h, _)| *h).collect(),
            max: columns.iter().map(|(_, m)| *m).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        let cells = cells
            .into_iter()
            .zip(&self.max)
            .map(|(cell, max)| truncate(&one_line(&cell), *max))
            .collect();
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let last = cells.len() - 1;
            let mut text = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                text.push_str(cell);
                if i < last {
                    let pad = widths[i] - cell.chars().count() + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(self.headers.clone(), &mut out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

/// Control characters (newlines, tabs...) as spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters, the last one `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `-` for nothing.
pub fn or_dash(s: Option<impl ToString>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| s.to_string())
}

/// The rows of a page (the store answers up to `limit + 1`) and the cursor of the next page
/// when there is one.
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(key);
    (rows, next)
}

/// The line under a table: how many rows, and how to get the next page.
pub fn footer(shown: usize, what: &str, next: Option<&str>) -> String {
    // `what` is plural: one row is `1 run`, `1 suppressed number`.
    let what = match shown {
        1 => what.strip_suffix('s').unwrap_or(what),
        _ => what,
    };
    match (shown, next) {
        (0, _) => format!("no {what} match\n"),
        (n, Some(cursor)) => format!(
            "{n} {what} shown, newest first; next page: the same command with --before {cursor}\n"
        ),
        (n, None) => format!("{n} {what} shown, newest first; no more\n"),
    }
}

/// Prints a list: the table and its footer, or the JSON array (the next page's cursor on
/// stderr).
pub fn print_list(
    json: bool,
    items: Vec<Value>,
    table: &Table,
    what: &str,
    next: Option<String>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(items))?);
        if let Some(cursor) = next {
            eprintln!("next page: --before {cursor}");
        }
    } else {
        if !table.is_empty() {
            print!("{}", table.render());
        }
        print!("{}", footer(items.len(), what, next.as_deref()));
    }
    Ok(())
}

/// Whether a request field or header may hold a secret (tokens, signatures, passwords): such
/// values are never printed.
pub fn is_sensitive(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "signature",
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "api_key",
        "apikey",
        "cookie",
    ];
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|w| name.contains(w))
}

/// What stands in for a hidden value.
pub const HIDDEN: &str = "(hidden)";

/// The connected account of `--account` (id or name), or the only one when not given.
pub async fn account_id(store: &Store, given: Option<&str>) -> anyhow::Result<i64> {
    use switchboard_wire::outbound::AccountRef;
    match crate::jobs::resolve_account(given, Some(store)).await? {
        AccountRef::Id(id) => Ok(id),
        AccountRef::Name(name) => Ok(store
            .account_by_name(&name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("--account {name}: no connected account has this name"))?
            .id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn times_are_rfc3339_dates_or_ages() {
        let now = at("2026-11-25T19:00:00Z");
        assert_eq!(
            parse_time_at("2026-11-25T21:00:00+02:00", now).unwrap(),
            now
        );
        assert_eq!(
            parse_time_at("2026-11-25", now).unwrap(),
            at("2026-11-25T00:00:00Z")
        );
        assert_eq!(
            parse_time_at("1h", now).unwrap(),
            at("2026-11-25T18:00:00Z")
        );
        assert_eq!(
            parse_time_at("7d", now).unwrap(),
            at("2026-11-18T19:00:00Z")
        );
        assert_eq!(
            parse_time_at("90s", now).unwrap(),
            at("2026-11-25T18:58:30Z")
        );
        for bad in ["yesterdayish", "1y", "h", "", "-1h", "2026-13-01"] {
            let e = parse_time_at(bad, now).unwrap_err();
            assert!(e.contains("expected RFC 3339"), "{bad}: {e}");
        }
        assert!(parse_time_at("99999999999999w", now).is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let t = at("2026-11-25T19:00:00.123456Z");
        let c = cursor(t, "SMabc");
        assert_eq!(c, "2026-11-25T19:00:00.123456Z/SMabc");
        assert_eq!(
            parse_cursor(&c).unwrap(),
            Before {
                at: t,
                key: Some("SMabc".into())
            }
        );
        // Keys may hold slashes (idempotency keys): only the first one splits.
        assert_eq!(
            parse_cursor("2026-11-25T19:00:00Z/a/b")
                .unwrap()
                .key
                .as_deref(),
            Some("a/b")
        );
        assert_eq!(parse_cursor("2026-11-25T19:00:00Z").unwrap().key, None);
        assert!(
            parse_cursor("soon/x")
                .unwrap_err()
                .contains("a cursor is TIME or TIME/KEY")
        );
    }

    #[test]
    fn tables_align_and_truncate() {
        let mut t = Table::new(&[("ID", 10), ("BODY", 8), ("LAST", 20)]);
        t.row(vec!["1".into(), "hello\nworld, long".into(), "x".into()]);
        t.row(vec!["12345".into(), "ok".into(), "".into()]);
        assert_eq!(
            t.render(),
            "ID     BODY      LAST\n1      hello w…  x\n12345  ok\n"
        );
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
    }

    #[test]
    fn pages_carry_the_next_cursor_only_when_more_rows_match() {
        let (rows, next) = split_page(vec![3, 2, 1], 2, |n| n.to_string());
        assert_eq!((rows, next.as_deref()), (vec![3, 2], Some("2")));
        let (rows, next) = split_page(vec![3, 2], 2, |n| n.to_string());
        assert_eq!((rows, next), (vec![3, 2], None));
        assert_eq!(
            footer(2, "runs", Some("17")),
            "2 runs shown, newest first; next page: the same command with --before 17\n"
        );
        assert_eq!(footer(0, "runs", None), "no runs match\n");
        assert_eq!(
            footer(1, "suppressed numbers", None),
            "1 suppressed number shown, newest first; no more\n"
        );
    }

    #[test]
    fn secrets_are_recognised_by_name() {
        for name in [
            "X-Twilio-Signature",
            "auth_token",
            "Authorization",
            "password",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["From", "To", "Body", "MessageSid", "AccountSid"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn durations_and_ages_read_well() {
        assert_eq!(duration_us(850), "850 µs");
        assert_eq!(duration_us(12_345), "12.3 ms");
        assert_eq!(duration_us(2_100_000), "2.10 s");
        assert_eq!(age(time::Duration::seconds(59)), "59 s ago");
        assert_eq!(age(time::Duration::minutes(5)), "5 min ago");
        assert_eq!(age(time::Duration::days(3)), "3 d ago");
    }
}
