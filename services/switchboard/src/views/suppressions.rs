//! `switchboard suppressions list|add|remove`: each connected account's suppression list
//! (`sms_suppressions`): numbers the outbound service does not send to. Recipients get on it by
//! texting STOP (or another opt-out keyword), by Twilio refusing a send with 21610, or by an
//! operator's `add`; they leave it by texting START, YES or UNSTOP, or by `remove`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use switchboard_store::Store;
use switchboard_store::views::{Before, SuppressionFilter, SuppressionRow};

use super::{
    PageArgs, Table, WindowArgs, account_id, cursor, json_time, parse_cursor, print_list,
    short_time, split_page,
};

/// Suppression lists (opt-outs).
#[derive(Debug, Subcommand)]
pub enum SuppressionsCmd {
    /// List suppressed numbers, newest first: the account, the number, why (keyword: the
    /// recipient texted an opt-out keyword; twilio_21610: Twilio refused a send; operator:
    /// `suppressions add`), what was seen (the keyword, Twilio's message, the operator's
    /// reason) and since when.
    List(SuppressionsList),
    /// Suppress a number for an account: its send jobs then fail with `suppressed` without
    /// calling Twilio, until it is removed (or the recipient texts START, YES or UNSTOP). A
    /// number already suppressed keeps its first reason.
    Add {
        /// The number, E.164 (+14155551234).
        number: String,
        /// The connected account (id or name); may be left out when there is exactly one.
        #[arg(long)]
        account: Option<String>,
        /// Why (kept with the entry and named in the failed jobs' error message).
        #[arg(long)]
        reason: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a number from an account's suppression list, whatever put it there: sends to it
    /// resume. Exits 1 when the number was not on the list.
    Remove {
        /// The number, E.164.
        number: String,
        /// The connected account (id or name); may be left out when there is exactly one.
        #[arg(long)]
        account: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Why a number is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReasonArg {
    /// The recipient texted an opt-out keyword (STOP, …).
    Keyword,
    /// Twilio refused a send with 21610.
    #[value(name = "twilio_21610")]
    Twilio21610,
    /// An operator added it.
    Operator,
}

#[derive(Debug, Args)]
pub struct SuppressionsList {
    /// Only this connected account's list (id or name); default: every account's.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// Only this number (E.164).
    #[arg(long, value_name = "NUMBER")]
    pub number: Option<String>,
    /// Only numbers suppressed for this reason.
    #[arg(long, value_enum)]
    pub reason: Option<ReasonArg>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// The next page: the cursor the previous page ended with (TIME/ACCOUNT:NUMBER).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub before: Option<Before>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub async fn run(store: &Store, cmd: SuppressionsCmd) -> anyhow::Result<()> {
    match cmd {
        SuppressionsCmd::List(args) => list(store, args).await,
        SuppressionsCmd::Add {
            number,
            account,
            reason,
            json,
        } => add(store, &number, account.as_deref(), &reason, json).await,
        SuppressionsCmd::Remove {
            number,
            account,
            json,
        } => remove(store, &number, account.as_deref(), json).await,
    }
}

/// The number, checked as E.164 (the form the outbound service compares jobs' `to` with).
fn e164(number: &str) -> anyhow::Result<String> {
    let number = number.trim();
    switchboard_twilio::E164::parse(number).map_err(|e| anyhow::anyhow!("NUMBER {number}: {e}"))?;
    Ok(number.to_owned())
}

async fn list(store: &Store, args: SuppressionsList) -> anyhow::Result<()> {
    let account_id = match &args.account {
        Some(a) => Some(account_id(store, Some(a)).await?),
        None => None,
    };
    let filter = SuppressionFilter {
        account_id,
        number: args
            .number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        reason: args
            .reason
            .and_then(|r| r.to_possible_value())
            .map(|v| v.get_name().to_owned()),
        window: args.window.window()?,
        before: args.before.clone(),
        limit: i64::from(args.page.limit),
    };
    let rows = store.view_suppressions(&filter).await?;
    let (rows, next) = split_page(rows, args.page.limit, |s| cursor(s.created_at, &s.key()));
    let mut table = Table::new(&[
        ("SINCE", 20),
        ("ACCOUNT", 20),
        ("NUMBER", 16),
        ("REASON", 12),
        ("DETAIL", 60),
    ]);
    for s in &rows {
        table.row(vec![
            short_time(s.created_at),
            format!("{} ({})", s.account_name, s.account_id),
            s.number.clone(),
            s.reason.clone(),
            s.detail.clone(),
        ]);
    }
    let items = rows.iter().map(suppression_json).collect();
    print_list(args.page.json, items, &table, "suppressed numbers", next)
}

fn suppression_json(s: &SuppressionRow) -> Value {
    json!({
        "account_id": s.account_id,
        "account": s.account_name,
        "number": s.number,
        "reason": s.reason,
        "detail": s.detail,
        "created_at": json_time(Some(s.created_at)),
    })
}

async fn add(
    store: &Store,
    number: &str,
    account: Option<&str>,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let number = e164(number)?;
    let reason = reason.trim();
    if reason.is_empty() {
        anyhow::bail!("--reason is empty: say why the number is suppressed");
    }
    let account = account_id(store, account).await?;
    let (row, added) = store.operator_suppress(account, &number, reason).await?;
    if json {
        let mut doc = suppression_json(&row);
        doc["added"] = json!(added);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if added {
        println!(
            "{number} suppressed for account {} ({}): its send jobs fail with `suppressed`, Twilio not called",
            row.account_name, row.account_id
        );
    } else {
        println!(
            "{number} was already suppressed for account {} ({}) since {} ({}: {}); left as it was",
            row.account_name,
            row.account_id,
            super::rfc3339(row.created_at),
            row.reason,
            row.detail
        );
    }
    Ok(())
}

async fn remove(
    store: &Store,
    number: &str,
    account: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let number = e164(number)?;
    let account = account_id(store, account).await?;
    let Some(row) = store.operator_unsuppress(account, &number).await? else {
        anyhow::bail!(
            "{number} is not on account {account}'s suppression list (see `switchboard suppressions list --account {account}`)"
        );
    };
    if json {
        let mut doc = suppression_json(&row);
        doc["removed"] = json!(true);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{number} removed from account {} ({})'s suppression list (it was there since {}: {}, {}); sends to it resume",
            row.account_name,
            row.account_id,
            super::rfc3339(row.created_at),
            row.reason,
            row.detail
        );
    }
    Ok(())
}
