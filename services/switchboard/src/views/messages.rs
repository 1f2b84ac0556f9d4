//! `switchboard messages list|show`: the inbound message log (`inbound_messages`): each
//! message Twilio delivered to a webhook listener, with the answer given and the run that gave
//! it.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use switchboard_store::Store;
use switchboard_store::views::{Before, MessageFilter, MessageRow};

use super::{
    HIDDEN, PageArgs, Table, WindowArgs, cursor, is_sensitive, json_time, or_dash, parse_cursor,
    print_list, short_time, split_page, time_and_age,
};

/// The inbound message log.
#[derive(Debug, Subcommand)]
pub enum MessagesCmd {
    /// List inbound messages, newest first: when, the MessageSid, the listener and its bot,
    /// From, To, Body, and the answer (`answered` with its HTTP status, or `pending` while a
    /// worker is still answering).
    List(MessagesList),
    /// Show one message: the request's fields as logged (never a signature header or a
    /// secret), the answer given (status, headers, body) and the run that gave it (see `runs
    /// show`).
    Show {
        /// The MessageSid (SM…, from `messages list`).
        sid: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Whether a message was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageStatus {
    /// Answered: the response is stored (a repeated delivery gets it again).
    Answered,
    /// Claimed by a worker that has not answered yet.
    Pending,
}

#[derive(Debug, Args)]
pub struct MessagesList {
    /// Only messages to the webhooks of this bot (id, or package uid when unique).
    #[arg(long, value_name = "BOT")]
    pub bot: Option<String>,
    /// Only messages to this webhook listener (id, name or guid; see `webhooks list`).
    #[arg(long, value_name = "LISTENER")]
    pub listener: Option<String>,
    /// Only messages from or to this number (From or To, exactly as Twilio posts it).
    #[arg(long, value_name = "NUMBER")]
    pub number: Option<String>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only answered, or only pending, messages.
    #[arg(long, value_enum)]
    pub status: Option<MessageStatus>,
    /// The next page: the cursor the previous page ended with (TIME/MessageSid).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub before: Option<Before>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub async fn run(store: &Store, cmd: MessagesCmd) -> anyhow::Result<()> {
    match cmd {
        MessagesCmd::List(args) => list(store, args).await,
        MessagesCmd::Show { sid, json } => show(store, sid.trim(), json).await,
    }
}

async fn list(store: &Store, args: MessagesList) -> anyhow::Result<()> {
    let mut listener_ids: Option<Vec<i64>> = None;
    if let Some(bot) = &args.bot {
        let bot_id = store
            .resolve_bot(bot.trim())
            .await
            .map_err(|e| anyhow::anyhow!("--bot {bot}: {e}"))?;
        listener_ids = Some(store.bot_listener_ids(bot_id).await?);
    }
    if let Some(listener) = &args.listener {
        let id = store
            .resolve_listener(listener)
            .await
            .map_err(|e| anyhow::anyhow!("--listener {listener}: {e}"))?;
        listener_ids = Some(match listener_ids {
            Some(of_bot) => of_bot.into_iter().filter(|l| *l == id).collect(),
            None => vec![id],
        });
    }
    let filter = MessageFilter {
        listener_ids,
        number: args
            .number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        window: args.window.window()?,
        answered: args.status.map(|s| s == MessageStatus::Answered),
        before: args.before.clone(),
        limit: i64::from(args.page.limit),
    };
    let rows = store.view_messages(&filter).await?;
    let (rows, next) = split_page(rows, args.page.limit, |m| {
        cursor(m.received_at, &m.message_sid)
    });
    let mut table = Table::new(&[
        ("RECEIVED", 20),
        ("MESSAGE SID", 34),
        ("LISTENER", 18),
        ("BOT", 16),
        ("FROM", 16),
        ("TO", 16),
        ("BODY", 32),
        ("ANSWER", 12),
        ("RUN", 10),
    ]);
    for m in &rows {
        table.row(vec![
            short_time(m.received_at),
            m.message_sid.clone(),
            m.listener_name
                .clone()
                .unwrap_or_else(|| m.listener_id.to_string()),
            or_dash(m.bot_name.as_deref()),
            or_dash(m.param("From")),
            or_dash(m.param("To")),
            m.param("Body").unwrap_or_default().to_owned(),
            answer_label(m),
            or_dash(m.run_id),
        ]);
    }
    let items = rows.iter().map(list_json).collect();
    print_list(args.page.json, items, &table, "messages", next)
}

/// `answered 200` or `pending`.
fn answer_label(m: &MessageRow) -> String {
    match &m.response {
        Some(r) => match r["status"].as_u64() {
            Some(status) => format!("answered {status}"),
            None => "answered".into(),
        },
        None => "pending".into(),
    }
}

fn list_json(m: &MessageRow) -> Value {
    json!({
        "message_sid": m.message_sid,
        "received_at": json_time(Some(m.received_at)),
        "completed_at": json_time(m.completed_at),
        "listener_id": m.listener_id,
        "listener": m.listener_name,
        "bot_id": m.bot_id,
        "bot": m.bot_name,
        "behavior_id": m.behavior_id,
        "behavior": m.behavior_title,
        "account_sid": m.account_sid,
        "from": m.param("From"),
        "to": m.param("To"),
        "body": m.param("Body"),
        "status": if m.response.is_some() { "answered" } else { "pending" },
        "response_status": m.response.as_ref().and_then(|r| r["status"].as_u64()),
        "run_id": m.run_id,
    })
}

/// The request as logged, with any field whose name suggests a secret hidden.
fn redacted_request(request: &Value) -> Value {
    let params: Vec<Value> = request["params"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|pair| {
                    let name = pair.get(0).and_then(Value::as_str).unwrap_or_default();
                    let value = pair.get(1).cloned().unwrap_or(Value::Null);
                    if is_sensitive(name) {
                        json!([name, HIDDEN])
                    } else {
                        json!([name, value])
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "method": request["method"],
        "query": redacted_query(request["query"].as_str().unwrap_or_default()),
        "params": params,
        "client_ip": request["client_ip"],
    })
}

/// The stored answer with the values of secret-looking headers hidden.
fn redacted_answer(response: &Value) -> Value {
    let mut answer = response.clone();
    if let Some(headers) = answer["headers"].as_array_mut() {
        for header in headers {
            let name = header[0].as_str().unwrap_or_default();
            if is_sensitive(name) && header.get(1).is_some() {
                header[1] = json!(HIDDEN);
            }
        }
    }
    answer
}

/// A query string with the values of secret-looking names hidden.
fn redacted_query(query: &str) -> String {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((name, _)) if is_sensitive(name) => format!("{name}={HIDDEN}"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn show(store: &Store, sid: &str, json: bool) -> anyhow::Result<()> {
    let Some(m) = store.view_message(sid).await? else {
        anyhow::bail!("no message {sid} in the log (see `switchboard messages list`)");
    };
    let request = redacted_request(&m.request);
    let run = match m.run_id {
        Some(id) => store.view_run(id).await?,
        None => None,
    };
    if json {
        let mut doc = list_json(&m);
        doc["request_id"] = json!(m.request_id);
        doc["request"] = request;
        doc["answer"] = m.response.as_ref().map_or(Value::Null, redacted_answer);
        doc["run"] = run.as_ref().map_or(Value::Null, |r| {
            json!({
                "id": r.id, "exit_state": r.exit_state, "status": r.status,
                "duration_us": r.duration_us, "trace_id": r.trace_id,
                "errors": r.errors,
            })
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let mut out = String::new();
    out.push_str(&format!("Message {}\n", m.message_sid));
    out.push_str(&format!("  received   {}\n", time_and_age(m.received_at)));
    if let Some(done) = m.completed_at {
        out.push_str(&format!("  answered   {}\n", super::rfc3339(done)));
    }
    out.push_str(&format!(
        "  listener   {} (id {})\n",
        m.listener_name.as_deref().unwrap_or("(deleted)"),
        m.listener_id
    ));
    if let (Some(bot), Some(bot_id)) = (&m.bot_name, m.bot_id) {
        out.push_str(&format!("  bot        {bot} (id {bot_id})\n"));
    }
    if let (Some(title), Some(id)) = (&m.behavior_title, m.behavior_id) {
        out.push_str(&format!("  behavior   {title} (id {id})\n"));
    }
    out.push_str(&format!(
        "  account    {}\n",
        or_dash(m.account_sid.as_deref())
    ));
    out.push_str(&format!(
        "  request id {}\n",
        or_dash(m.request_id.as_deref())
    ));
    match &run {
        Some(r) => out.push_str(&format!(
            "  run        {} ({}, {}; `switchboard runs show {}` prints its trace)\n",
            r.id,
            r.exit_state,
            super::duration_us(r.duration_us),
            r.id
        )),
        None => out.push_str("  run        - (not answered yet)\n"),
    }
    out.push_str("\n== Request ==\n");
    let query = request["query"].as_str().unwrap_or_default();
    out.push_str(&format!(
        "{}{}{} from {}\n",
        request["method"].as_str().unwrap_or("?"),
        if query.is_empty() { "" } else { " ?" },
        query,
        request["client_ip"].as_str().unwrap_or("?")
    ));
    for pair in request["params"].as_array().into_iter().flatten() {
        let name = pair[0].as_str().unwrap_or_default();
        let value = pair[1].as_str().unwrap_or_default();
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push_str("\n== Answer ==\n");
    match &m.response {
        Some(r) => {
            let r = redacted_answer(r);
            out.push_str(&format!("HTTP {}\n", r["status"]));
            for header in r["headers"].as_array().into_iter().flatten() {
                let name = header[0].as_str().unwrap_or_default();
                let value = header[1].as_str().unwrap_or_default();
                out.push_str(&format!("{name}: {value}\n"));
            }
            let body = r["body"].as_str().unwrap_or_default();
            out.push('\n');
            out.push_str(body);
            if !body.ends_with('\n') {
                out.push('\n');
            }
        }
        None => out.push_str("(none yet: a worker claimed the message and is answering it)\n"),
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_logged_request_are_hidden() {
        let logged = json!({
            "method": "POST",
            "query": "a=1&auth_token=xyz&b",
            "params": [["From", "+1555"], ["X-Twilio-Signature", "abc="], ["Body", "hi"]],
            "client_ip": "10.0.0.1",
        });
        let shown = redacted_request(&logged);
        assert_eq!(shown["query"], "a=1&auth_token=(hidden)&b");
        assert_eq!(
            shown["params"],
            json!([
                ["From", "+1555"],
                ["X-Twilio-Signature", "(hidden)"],
                ["Body", "hi"]
            ])
        );
        assert!(!shown.to_string().contains("xyz"));
        assert!(!shown.to_string().contains("abc="));
        let answer = redacted_answer(&json!({
            "status": 200,
            "headers": [["content-type", "text/plain"], ["Set-Cookie", "session=s3cret"]],
            "body": "ok",
        }));
        assert_eq!(
            answer["headers"],
            json!([["content-type", "text/plain"], ["Set-Cookie", "(hidden)"]])
        );
    }
}
