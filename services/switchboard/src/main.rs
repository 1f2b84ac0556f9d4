//! `switchboard`: the operator's command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use switchboard::args::KeyValue;
use switchboard::ops::Env;
use switchboard::simulate::{JsonReport, SimulateRequest, render_text, simulate};
use switchboard_store::{Keyring, MasterKey, Store};
use switchboard_wire::Subjects;

/// Switchboard: Cerb-style SMS bots on Twilio.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Where Switchboard's state lives (not needed by `simulate`).
#[derive(Debug, Args)]
struct Global {
    /// PostgreSQL URL (its value, which may hold a password, is never shown in --help or
    /// errors).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// NATS (to tell running workers about changes; `run`, `send`, `lookup`, `jobs` and `dlq`
    /// use it): server URL(s), credentials, TLS (docs/nats-security.md).
    #[command(flatten)]
    nats: switchboard_telemetry::args::NatsArgs,
    /// Key that encrypts connected-account credentials (32 bytes, base64 or hex); the services
    /// need the same one. `accounts add` requires it and refuses a key that does not decrypt
    /// the accounts already stored. Make one for a new installation with
    /// `openssl rand -base64 32`.
    #[arg(
        long,
        env = "SWITCHBOARD_MASTER_KEY",
        hide_env_values = true,
        global = true
    )]
    master_key: Option<SecretString>,
    /// Old keys that still decrypt credentials during a key rotation (comma-separated, same
    /// encoding as SWITCHBOARD_MASTER_KEY, which encrypts): `accounts rekey` re-encrypts every
    /// stored token with SWITCHBOARD_MASTER_KEY, after which the old keys can go. The test
    /// suite's public key is refused here and as SWITCHBOARD_MASTER_KEY
    /// (SWITCHBOARD_ALLOW_TEST_KEY=1 lets tests use it; never set it elsewhere).
    #[arg(
        long,
        env = "SWITCHBOARD_OLD_MASTER_KEYS",
        hide_env_values = true,
        global = true
    )]
    old_master_keys: Option<SecretString>,
    /// Public base URL of ingress, for webhook URLs.
    #[arg(
        long,
        env = "PUBLIC_BASE_URL",
        default_value = "http://localhost:8080",
        global = true
    )]
    public_base_url: String,
    /// Prefix of every NATS subject.
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = switchboard_wire::DEFAULT_PREFIX, global = true)]
    subject_prefix: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one behavior of a package file with no server: prints a trace and the result.
    ///
    /// Prompts not given with --prompt get harmless sample values (listed in the output).
    /// Webhook behaviors get --param as a form body (or as the query string when --body is
    /// given or --method is GET or HEAD); macro behaviors get --var inputs.
    Simulate {
        /// The Cerb package JSON file.
        package: PathBuf,
        /// The uid of the behavior to run (e.g. behavior_43).
        #[arg(long, value_name = "UID")]
        behavior: String,
        /// Answer a package prompt.
        #[arg(long = "prompt", value_name = "KEY=VALUE")]
        prompts: Vec<KeyValue>,
        /// A webhook parameter (form field).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<KeyValue>,
        /// A webhook request header.
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<KeyValue>,
        /// The webhook request method [default: POST].
        #[arg(long, value_name = "VERB")]
        method: Option<String>,
        /// A raw webhook request body (params then go to the query string).
        #[arg(long, value_name = "TEXT")]
        body: Option<String>,
        /// A behavior variable input (macro behaviors).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<KeyValue>,
        /// Perform HTTP requests whose action is configured to run in the simulator.
        #[arg(long)]
        run_http: bool,
        /// Print one JSON object instead of the readable trace.
        #[arg(long)]
        json: bool,
    },
    /// Apply database migrations.
    Migrate,
    /// Connected accounts: Twilio, or another HTTP service's token, password or API key
    /// (encrypted at rest; sent only to the account's allowed hosts).
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Import a Cerb package (answering its prompts); prints the records and webhook URLs.
    Import {
        /// The Cerb package JSON file.
        package: PathBuf,
        /// Answer a package prompt (twilio_account_id is an id from `accounts add`).
        #[arg(long = "prompt", value_name = "KEY=VALUE")]
        prompts: Vec<KeyValue>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Webhook listeners.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Bots.
    #[command(subcommand)]
    Bots(BotsCmd),
    /// Behaviors.
    #[command(subcommand)]
    Behaviors(BehaviorsCmd),
    /// Run a macro behavior of a bot now, through a running behavior worker (over NATS); its
    /// HTTP requests go out through the outbound service. Prints the variables it set.
    ///
    /// Exits non-zero when the behavior could not run or its run recorded errors.
    Run {
        /// The bot: id, or package uid when unique (see `switchboard bots list`).
        bot: String,
        /// The behavior of that bot: id or package uid (see `switchboard behaviors list`).
        behavior: String,
        /// A behavior variable input (e.g. --var var_to=+15551234567).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<KeyValue>,
        /// How long to wait for the run, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send an SMS: publishes a send-SMS job (docs/jobs.md) for the outbound service; with
    /// --wait, prints its outcome (the Twilio SID, or Twilio's error code and message) and exits
    /// non-zero when the job failed.
    Send {
        /// Recipient, E.164 (+14155551234).
        #[arg(long)]
        to: String,
        /// Text, at most 1600 characters.
        #[arg(long)]
        body: String,
        /// Sender: an E.164 number, an alphanumeric sender ID, or a Messaging Service SID (MG…).
        #[arg(long, env = "SWITCHBOARD_SMS_FROM")]
        from: Option<String>,
        #[command(flatten)]
        job: JobOptions,
        /// Wait for the outcome and print it.
        #[arg(long)]
        wait: bool,
    },
    /// Inbound messages: what Twilio delivered to each webhook and the answer given
    /// (`messages list`, `messages show SID`).
    ///
    /// Lists read newest first, --limit rows at a time (default 50, at most 1000); when more
    /// match, the last line gives the --before of the next page. --json prints one JSON array
    /// (list) or object (show). Times are UTC, RFC 3339; --since and --until also take a date
    /// or an age (1h, 7d).
    #[command(subcommand)]
    Messages(switchboard::views::messages::MessagesCmd),
    /// Behavior runs, each with its trace as `simulate` prints one (`runs list`, `runs show
    /// ID`).
    ///
    /// Paging, --json and times as for `messages`.
    #[command(subcommand)]
    Runs(switchboard::views::runs::RunsCmd),
    /// Outbound send-SMS jobs: state, attempts, Twilio SID, delivery status, errors (`jobs
    /// list`, `jobs show KEY`).
    ///
    /// Paging, --json and times as for `messages`. `show` also reads the job's events from the
    /// events stream when NATS answers.
    #[command(subcommand)]
    Jobs(switchboard::views::jobs::JobsCmd),
    /// The dead-letter stream of failed jobs, over NATS (`dlq list`, `dlq show SEQ`, `dlq replay
    /// SEQ [--new-key]`).
    ///
    /// Needs NATS_URL (and the same SWITCHBOARD_SUBJECT_PREFIX as the outbound service);
    /// DATABASE_URL lets `replay` recognise a job the outbound service already finished.
    #[command(subcommand)]
    Dlq(switchboard::views::dlq::DlqCmd),
    /// Accounts' suppression lists: numbers no SMS is sent to (`suppressions list`, `add`,
    /// `remove`).
    #[command(subcommand)]
    Suppressions(switchboard::views::suppressions::SuppressionsCmd),
    /// Look a number up with Twilio's Lookup API (through the outbound service) and print the
    /// answer; exits non-zero when the lookup failed.
    Lookup {
        /// The number, E.164.
        number: String,
        /// A Lookup v2 field (validation, caller_name, line_type_intelligence, …); repeat or
        /// separate with commas. None: basic validation only, free of charge.
        #[arg(long = "field", value_delimiter = ',', conflicts_with = "v1_types")]
        fields: Vec<String>,
        /// Use Lookup v1 with these types (carrier, caller-name).
        #[arg(long = "v1-type", value_delimiter = ',')]
        v1_types: Vec<String>,
        #[command(flatten)]
        job: JobOptions,
    },
}

/// What `send` and `lookup` share.
#[derive(Debug, Args)]
struct JobOptions {
    /// The connected account (id or name from `switchboard accounts list`); may be left out
    /// when there is exactly one.
    #[arg(long)]
    account: Option<String>,
    /// Idempotency key (default: a fresh one); publish again with the same key to retry safely.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Seconds to wait for the outcome.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print the outcome event as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AccountsCmd {
    /// Add an account; prints its id.
    ///
    /// `--kind twilio` (the default): --account-sid and TWILIO_AUTH_TOKEN. For another HTTP
    /// service, `--kind bearer` (Authorization: Bearer TOKEN), `basic` (--username; Basic auth
    /// with the password), or `api-key` (--header NAME or --query-param NAME), each with
    /// --allowed-host for every host its credentials may go to; the token or key comes from
    /// ACCOUNT_TOKEN, the password from ACCOUNT_PASSWORD, or either from standard input with
    /// --secret-stdin (never from an argument).
    Add {
        #[arg(long)]
        name: String,
        /// twilio, bearer, basic or api-key.
        #[arg(long, default_value = "twilio", value_name = "KIND")]
        kind: switchboard_store::AccountKind,
        /// Twilio Account SID (AC + 32 hex digits); --kind twilio only.
        #[arg(long)]
        account_sid: Option<String>,
        /// Twilio auth token (or set TWILIO_AUTH_TOKEN, which keeps it out of the process list);
        /// --kind twilio only.
        #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<SecretString>,
        /// A host the credentials may be sent to (repeat for several; at least one for
        /// bearer, basic and api-key).
        #[arg(long = "allowed-host", value_name = "HOST")]
        allowed_hosts: Vec<String>,
        /// The user name of --kind basic (the password comes from ACCOUNT_PASSWORD).
        #[arg(long)]
        username: Option<String>,
        /// --kind api-key: the request header the key goes in (e.g. X-Api-Key).
        #[arg(long, value_name = "NAME")]
        header: Option<String>,
        /// --kind api-key: the query parameter the key goes in (e.g. api_key).
        #[arg(long, value_name = "NAME")]
        query_param: Option<String>,
        /// The service the account is for (e.g. slack, stripe): a package prompt asking for
        /// that service accepts it [default: http, any service].
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Read the token, key or password from the first line of standard input.
        #[arg(long)]
        secret_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// How long this account's inbound messages, behavior runs and finished outbound jobs are
    /// kept (the behavior worker's pruner deletes older ones): `--days N` (at least 1) overrides
    /// the worker's RETENTION_*_DAYS for the account's rows, shorter or longer; `--days default`
    /// returns to them.
    SetRetention {
        /// Account id or name.
        account: String,
        /// Days, or `default`.
        #[arg(long)]
        days: String,
        #[arg(long)]
        json: bool,
    },
    /// List accounts: kind, service, Account SID or where the credential goes, allowed hosts
    /// (never prints a token, password or key).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every stored auth token with SWITCHBOARD_MASTER_KEY (after a key rotation:
    /// the old key in SWITCHBOARD_OLD_MASTER_KEYS), in one transaction; prints how many were
    /// re-encrypted and the key ids found. Running it again changes nothing.
    Rekey {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WebhooksCmd {
    /// List webhook listeners with their URLs.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BotsCmd {
    /// List bots.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Enable a bot (id, or package uid when unique).
    Enable { bot: String },
    /// Disable a bot: its webhooks answer 503.
    Disable { bot: String },
    /// Update a bot in place from a new version of its package: behaviors and webhook
    /// listeners matched by package uid keep their ids and URLs; new ones are added, missing
    /// ones deleted. One transaction, kept as a new revision; running workers switch at once.
    Update {
        /// Bot id, or package uid when unique.
        bot: String,
        /// The Cerb package JSON file.
        package: PathBuf,
        /// Answer a package prompt, as for `import`.
        #[arg(long = "prompt", value_name = "KEY=VALUE")]
        prompts: Vec<KeyValue>,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a bot's revisions (every import, update and rollback).
    Revisions {
        bot: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a revision's behaviors and listeners, as a new revision.
    Rollback {
        bot: String,
        revision: i32,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the bot as a Cerb package (JSON) that imports to the same behaviors.
    Export {
        bot: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete a bot, its behaviors, webhook listeners (their URLs answer 404) and revisions;
    /// its runs and messages are kept until retention prunes them.
    Delete {
        bot: String,
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BehaviorsCmd {
    /// List a bot's behaviors.
    List {
        /// Bot id, or package uid when unique.
        #[arg(long)]
        bot: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a behavior (id, or package uid when unique).
    Enable { behavior: String },
    /// Disable a behavior: its webhooks answer 503.
    Disable { behavior: String },
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line naming the problem; `--help` has the rest.
            let rendered = e.to_string();
            let line: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{} (see --help)", line.join(" "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: could not install the TLS crypto provider");
        return ExitCode::FAILURE;
    }
    // `run`, `send`, `lookup` and `dlq replay` start a trace that the services continue;
    // exported when OTEL_EXPORTER_OTLP_ENDPOINT is set, flushed when this guard drops at exit.
    let _telemetry = switchboard_telemetry::init_cli("switchboard")
        .inspect_err(|e| eprintln!("warning: tracing is off: {e:#}"))
        .ok();
    let result = match cli.command {
        Command::Simulate {
            package,
            behavior,
            prompts,
            params,
            headers,
            method,
            body,
            vars,
            run_http,
            json,
        } => run_simulate(
            package, behavior, prompts, params, headers, method, body, vars, run_http, json,
        ),
        command => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run_store_command(cli.global, command)),
            Err(e) => Err(anyhow::anyhow!("starting the async runtime: {e}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The outcome is printed already.
        Err(e) if e.is::<switchboard::jobs::Unsuccessful>() => ExitCode::FAILURE,
        Err(e) => {
            // Passwords in URLs (DATABASE_URL, NATS_URL) never reach the output.
            let text = switchboard_telemetry::redact_passwords(&format!("{e:#}"));
            eprintln!("error: {}", text.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` into a closed pipe (`switchboard simulate ... | head`)
/// panics. Like other command-line tools, the CLI instead ends quietly when its reader has gone.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[allow(clippy::too_many_arguments)]
fn run_simulate(
    package: PathBuf,
    behavior: String,
    prompts: Vec<KeyValue>,
    params: Vec<KeyValue>,
    headers: Vec<KeyValue>,
    method: Option<String>,
    body: Option<String>,
    vars: Vec<KeyValue>,
    run_http: bool,
    json: bool,
) -> anyhow::Result<()> {
    let package_json = std::fs::read_to_string(&package)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", package.display()))?;
    let req = SimulateRequest {
        package_json,
        behavior_uid: behavior,
        prompts,
        params,
        headers,
        method,
        body,
        vars,
        run_http,
    };
    let sim = simulate(&req).map_err(|e| switchboard::refusal::report(e, json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&JsonReport::from(&sim.output))?
        );
        for note in &sim.notes {
            eprintln!("note: {note}");
        }
    } else {
        print!("{}", render_text(&sim));
    }
    Ok(())
}

async fn connect(global: &Global, need_key: Option<&str>) -> anyhow::Result<Env> {
    let url = global.database_url.as_deref().ok_or_else(|| {
        anyhow::anyhow!("DATABASE_URL (or --database-url) is required for this command")
    })?;
    Subjects::validate_prefix(&global.subject_prefix).map_err(anyhow::Error::msg)?;
    let key = match &global.master_key {
        Some(k) => Some(Keyring::with_old(
            MasterKey::parse(k.expose_secret())?,
            global.old_master_keys.as_ref().map(|k| k.expose_secret()),
        )?),
        None => {
            if let Some(who) = need_key {
                return Err(switchboard_store::SecretError::Missing(who.into()).into());
            }
            None
        }
    };
    let pool = switchboard_store::connect(url, 2).await?;
    // Options that do not fit together are an error even where NATS is optional.
    global
        .nats
        .plan(CLI_NATS_NAME)
        .map_err(anyhow::Error::msg)?;
    // NATS is optional for the CLI: it only announces changes to running workers.
    let nats = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        global.nats.connect(CLI_NATS_NAME),
    )
    .await
    .ok()
    .and_then(Result::ok);
    Ok(Env {
        store: Store::with_keys(pool, key),
        nats,
        subjects: Subjects::new(&global.subject_prefix),
        public_base_url: global.public_base_url.clone(),
    })
}

/// The CLI's name on NATS (and its reply subjects' prefix, `_INBOX_switchboard-cli`).
const CLI_NATS_NAME: &str = "switchboard-cli";

/// NATS for the commands that need it (`run`, `send`, `lookup`, `dlq`), within 5 s.
async fn connect_nats(global: &Global) -> anyhow::Result<async_nats::Client> {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        global.nats.connect(CLI_NATS_NAME),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "NATS at {} did not answer within 5 s",
            global.nats.display_url()
        )
    })?
}

/// The store alone, for the read commands (no NATS, no master key: nothing they read is
/// encrypted).
async fn connect_store(global: &Global) -> anyhow::Result<Store> {
    let url = global.database_url.as_deref().ok_or_else(|| {
        anyhow::anyhow!("DATABASE_URL (or --database-url) is required for this command")
    })?;
    Ok(Store::new(switchboard_store::connect(url, 2).await?, None))
}

/// `accounts set-retention --days`: a number of days (at least 1) or `default` (`None`).
fn parse_retention_days(value: &str) -> anyhow::Result<Option<u32>> {
    if value.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    match value.parse::<u32>() {
        Ok(d) if d >= 1 => Ok(Some(d)),
        _ => anyhow::bail!("--days: '{value}' is not a number of days (at least 1) or 'default'"),
    }
}

/// Prints the result of `bots update` / `bots rollback`.
fn print_update(report: &switchboard::lifecycle::UpdateReport, json: bool) -> anyhow::Result<()> {
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if json {
        return print_json(report);
    }
    match report.revision {
        None => println!("Bot {} (dry run, nothing changed):", report.bot_id),
        Some(r) => println!("Bot {} is at revision {r}:", report.bot_id),
    }
    print!(
        "{}",
        switchboard::lifecycle::render_changes(&report.changes)
    );
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `send` and `lookup`: NATS is required, the database only to check or choose the account.
async fn run_job(global: &Global, job: JobOptions, build: JobBuilder) -> anyhow::Result<()> {
    use switchboard::jobs;
    Subjects::validate_prefix(&global.subject_prefix).map_err(anyhow::Error::msg)?;
    let store = match &global.database_url {
        Some(url) => Some(Store::new(switchboard_store::connect(url, 2).await?, None)),
        None => None,
    };
    let account = jobs::resolve_account(job.account.as_deref(), store.as_ref()).await?;
    let key = job.idempotency_key.clone().unwrap_or_else(jobs::fresh_key);
    let subjects = jobs::subjects(&global.subject_prefix);
    let (subject, payload, wait) = match build {
        JobBuilder::Send(args, wait) => {
            let job = jobs::send_job(&args, account, &key)?;
            (subjects.sms_send(), serde_json::to_value(&job)?, wait)
        }
        JobBuilder::Lookup {
            number,
            fields,
            v1_types,
        } => {
            let job = jobs::lookup_job(&number, &fields, &v1_types, account, &key)?;
            (subjects.lookup(), serde_json::to_value(&job)?, true)
        }
    };
    let nats = connect_nats(global).await?;
    let wait = wait.then(|| std::time::Duration::from_secs(job.timeout.max(1)));
    let outcome = jobs::submit(&nats, &subject, &payload, &key, &key, wait).await?;
    if job.json {
        match &outcome.event {
            Some(event) => print_json(event)?,
            None => print_json(&outcome.published)?,
        }
    } else {
        print!("{}", jobs::render_text(&outcome));
    }
    if outcome.succeeded() {
        Ok(())
    } else {
        let kind = outcome.event.as_ref().map_or("", |e| e.kind.as_str());
        Err(jobs::Unsuccessful(kind.to_owned()).into())
    }
}

/// Which job `run_job` builds.
enum JobBuilder {
    Send(switchboard::jobs::SendArgs, bool),
    Lookup {
        number: String,
        fields: Vec<String>,
        v1_types: Vec<String>,
    },
}

async fn run_store_command(global: Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Send {
            to,
            body,
            from,
            job,
            wait,
        } => {
            let args = switchboard::jobs::SendArgs { to, body, from };
            run_job(&global, job, JobBuilder::Send(args, wait)).await?;
        }
        Command::Lookup {
            number,
            fields,
            v1_types,
            job,
        } => {
            let build = JobBuilder::Lookup {
                number,
                fields,
                v1_types,
            };
            run_job(&global, job, build).await?;
        }
        Command::Simulate { .. } => unreachable!("handled without the store"),
        Command::Run {
            bot,
            behavior,
            vars,
            timeout,
            json,
        } => {
            let request = switchboard::run::request(&bot, &behavior, &vars)?;
            Subjects::validate_prefix(&global.subject_prefix).map_err(anyhow::Error::msg)?;
            let nats = connect_nats(&global).await?;
            let result = switchboard::run::run_behavior(
                &nats,
                &Subjects::new(&global.subject_prefix),
                &request,
                std::time::Duration::from_secs(timeout.max(1)),
            )
            .await?;
            if json {
                print_json(&result)?;
            } else {
                print!("{}", switchboard::run::render_text(&result));
            }
            if !result.errors.is_empty() {
                anyhow::bail!("the run recorded {} error(s)", result.errors.len());
            }
        }
        Command::Messages(cmd) => {
            let env = connect_store(&global).await?;
            switchboard::views::messages::run(&env, cmd).await?;
        }
        Command::Runs(cmd) => {
            let env = connect_store(&global).await?;
            switchboard::views::runs::run(&env, cmd).await?;
        }
        Command::Jobs(cmd) => {
            let env = connect(&global, None).await?;
            let subjects = switchboard::jobs::subjects(&global.subject_prefix);
            switchboard::views::jobs::run(&env.store, env.nats.as_ref(), &subjects, cmd).await?;
        }
        Command::Suppressions(cmd) => {
            let env = connect_store(&global).await?;
            switchboard::views::suppressions::run(&env, cmd).await?;
        }
        Command::Dlq(cmd) => {
            Subjects::validate_prefix(&global.subject_prefix).map_err(anyhow::Error::msg)?;
            let nats = connect_nats(&global).await?;
            let store = match &global.database_url {
                Some(url) => Some(Store::new(switchboard_store::connect(url, 2).await?, None)),
                None => None,
            };
            let env = switchboard::views::dlq::DlqEnv {
                nats,
                subjects: switchboard::jobs::subjects(&global.subject_prefix),
                store,
            };
            switchboard::views::dlq::run(&env, cmd).await?;
        }
        Command::Migrate => {
            let env = connect(&global, None).await?;
            switchboard_store::migrate(env.store.pool()).await?;
            println!("migrations applied");
        }
        Command::Accounts(AccountsCmd::SetRetention {
            account,
            days,
            json,
        }) => {
            let days = parse_retention_days(&days)?;
            let store = connect_store(&global).await?;
            let accounts = store.list_accounts().await?;
            let found = accounts
                .iter()
                .find(|a| a.name == account || account.parse() == Ok(a.id))
                .ok_or_else(|| anyhow::anyhow!("no account with id or name '{account}'"))?;
            store.set_account_retention(found.id, days).await?;
            if json {
                print_json(&serde_json::json!({
                    "id": found.id,
                    "name": found.name,
                    "retention_days": days,
                }))?;
            } else {
                match days {
                    Some(d) => println!(
                        "account {} ({}): messages, runs and finished jobs kept {d} day(s)",
                        found.id, found.name
                    ),
                    None => println!(
                        "account {} ({}): the worker's RETENTION_*_DAYS apply",
                        found.id, found.name
                    ),
                }
            }
        }
        Command::Accounts(AccountsCmd::Add {
            name,
            kind,
            account_sid,
            auth_token,
            allowed_hosts,
            username,
            header,
            query_param,
            service,
            secret_stdin,
            json,
        }) => {
            use switchboard::accounts::{AddArgs, NewAccount, new_account};
            let new = new_account(
                AddArgs {
                    kind,
                    account_sid,
                    auth_token,
                    allowed_hosts,
                    username,
                    header,
                    query_param,
                    service,
                    secret_stdin,
                },
                |var| std::env::var(var).ok(),
                || std::io::read_to_string(std::io::stdin()),
            )?;
            let env = connect(&global, Some("switchboard accounts add")).await?;
            let account = match new {
                NewAccount::Twilio {
                    account_sid,
                    auth_token,
                } => env.add_account(&name, &account_sid, &auth_token).await?,
                NewAccount::Http {
                    service,
                    auth,
                    allowed_hosts,
                    secret,
                } => {
                    env.add_http_account(&name, service.as_deref(), &auth, &allowed_hosts, &secret)
                        .await?
                }
            };
            if json {
                print_json(&account)?;
            } else {
                println!("{}", account.id);
            }
        }
        Command::Accounts(AccountsCmd::Rekey { json }) => {
            let env = connect(&global, Some("switchboard accounts rekey")).await?;
            let report = env.store.rekey_accounts().await?;
            if json {
                print_json(&report)?;
            } else {
                let found: Vec<String> = report
                    .found
                    .iter()
                    .map(|(key, n)| format!("{key}: {n}"))
                    .collect();
                println!(
                    "re-encrypted {} of {} account(s) with key {}; key ids found: {}",
                    report.reencrypted,
                    report.accounts,
                    report.current_key_id,
                    if found.is_empty() {
                        "none".to_owned()
                    } else {
                        found.join(", ")
                    }
                );
            }
        }
        Command::Accounts(AccountsCmd::List { json }) => {
            let env = connect(&global, None).await?;
            let accounts = env.store.list_accounts().await?;
            if json {
                print_json(&accounts)?;
            } else {
                println!("{}", switchboard::accounts::list_header());
                for a in &accounts {
                    println!("{}", switchboard::accounts::list_line(a));
                }
            }
        }
        Command::Import {
            package,
            prompts,
            json,
        } => {
            let env = connect(&global, None).await?;
            let text = std::fs::read_to_string(&package)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", package.display()))?;
            let (report, notes) = env
                .import(&text, &prompts)
                .await
                .map_err(|e| switchboard::refusal::report(e, json))?;
            for n in notes {
                eprintln!("note: {n}");
            }
            if json {
                print_json(&report)?;
            } else {
                println!("Created:");
                for r in &report.records {
                    println!(
                        "  {:<18} {:<24} id {:<8} {}",
                        r.context, r.uid, r.id, r.label
                    );
                }
                println!(
                    "Webhook URLs (paste into the Twilio number's \"A message comes in\" field, HTTP POST):"
                );
                for w in &report.webhooks {
                    println!("  {}: {}", w.name, w.url);
                }
            }
        }
        Command::Webhooks(WebhooksCmd::List { json }) => {
            let env = connect(&global, None).await?;
            let rows = env.store.list_webhooks().await?;
            let out: Vec<serde_json::Value> = rows
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "id": w.id, "name": w.name, "url": switchboard::ops::webhook_url(&env.public_base_url, &w.guid),
                        "bot": w.bot_name, "bot_id": w.bot_id, "behavior": w.behavior_title, "behavior_id": w.behavior_id,
                        "verify_signature": w.verify_signature,
                    })
                })
                .collect();
            if json {
                print_json(&out)?;
            } else {
                for (w, o) in rows.iter().zip(&out) {
                    println!(
                        "{} {}\n  url: {}\n  bot: {}  behavior: {}  signature verification: {}",
                        w.id,
                        w.name,
                        o["url"].as_str().unwrap_or_default(),
                        w.bot_name.as_deref().unwrap_or("-"),
                        w.behavior_title.as_deref().unwrap_or("-"),
                        if w.verify_signature { "on" } else { "off" }
                    );
                }
            }
        }
        Command::Bots(BotsCmd::List { json }) => {
            let env = connect(&global, None).await?;
            let bots = env.store.list_bots().await?;
            if json {
                print_json(&bots)?;
            } else {
                println!(
                    "{:<8} {:<20} {:<24} {:<9} behaviors",
                    "ID", "UID", "NAME", "STATE"
                );
                for b in bots {
                    let state = if b.is_disabled { "disabled" } else { "enabled" };
                    println!(
                        "{:<8} {:<20} {:<24} {:<9} {}",
                        b.id, b.uid, b.name, state, b.behaviors
                    );
                }
            }
        }
        Command::Bots(BotsCmd::Enable { bot }) => {
            let id = connect(&global, None)
                .await?
                .set_bot_disabled(&bot, false)
                .await?;
            println!("bot {id} enabled");
        }
        Command::Bots(BotsCmd::Disable { bot }) => {
            let id = connect(&global, None)
                .await?
                .set_bot_disabled(&bot, true)
                .await?;
            println!("bot {id} disabled");
        }
        Command::Bots(BotsCmd::Update {
            bot,
            package,
            prompts,
            dry_run,
            json,
        }) => {
            let env = connect(&global, None).await?;
            let text = std::fs::read_to_string(&package)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", package.display()))?;
            let report = env
                .update_bot(&bot, &text, &prompts, dry_run)
                .await
                .map_err(|e| switchboard::refusal::report(e, json))?;
            print_update(&report, json)?;
        }
        Command::Bots(BotsCmd::Rollback {
            bot,
            revision,
            dry_run,
            json,
        }) => {
            let env = connect(&global, None).await?;
            let report = env.rollback_bot(&bot, revision, dry_run).await?;
            print_update(&report, json)?;
        }
        Command::Bots(BotsCmd::Revisions { bot, json }) => {
            let env = connect(&global, None).await?;
            let id = env.store.resolve_bot(&bot).await?;
            let rows = env.store.list_revisions(id).await?;
            if json {
                print_json(&rows)?;
            } else {
                println!(
                    "{:<8} {:<9} {:<21} {:<9} SUMMARY",
                    "REVISION", "KIND", "CREATED", "BEHAVIORS"
                );
                for r in rows {
                    println!(
                        "{:<8} {:<9} {:<21} {:<9} {}",
                        r.revision, r.kind, r.created_at, r.behaviors, r.summary
                    );
                }
            }
        }
        Command::Bots(BotsCmd::Export { bot, output }) => {
            let env = connect(&global, None).await?;
            let package = env.export_bot(&bot).await?;
            let text = serde_json::to_string_pretty(&package)? + "\n";
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                None => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(text.as_bytes())?;
                }
            }
        }
        Command::Bots(BotsCmd::Delete { bot, yes }) => {
            let env = connect(&global, None).await?;
            let id = env.store.resolve_bot(&bot).await?;
            if !yes {
                use std::io::{BufRead as _, IsTerminal as _, Write as _};
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!("bots delete: pass --yes to delete bot {id} without a terminal");
                }
                eprint!(
                    "Delete bot {id} with its behaviors, webhook listeners and revisions? [y/N] "
                );
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    anyhow::bail!("not deleted");
                }
            }
            let (deleted, notes) = env.delete_bot(&id.to_string()).await?;
            for n in notes {
                eprintln!("note: {n}");
            }
            println!(
                "bot {} deleted: {} behaviors, {} webhook listeners, {} revisions (runs and messages kept)",
                deleted.bot_id,
                deleted.behaviors.len(),
                deleted.webhooks.len(),
                deleted.revisions
            );
        }
        Command::Behaviors(BehaviorsCmd::List { bot, json }) => {
            let env = connect(&global, None).await?;
            let id = env.store.resolve_bot(&bot).await?;
            let rows = env.store.list_behaviors(id).await?;
            if json {
                print_json(&rows)?;
            } else {
                println!(
                    "{:<8} {:<14} {:<32} {:<24} STATE",
                    "ID", "UID", "TITLE", "EVENT"
                );
                for b in rows {
                    let state = if b.is_disabled { "disabled" } else { "enabled" };
                    println!(
                        "{:<8} {:<14} {:<32} {:<24} {state}",
                        b.id, b.uid, b.title, b.event
                    );
                }
            }
        }
        Command::Behaviors(BehaviorsCmd::Enable { behavior }) => {
            let id = connect(&global, None)
                .await?
                .set_behavior_disabled(&behavior, false)
                .await?;
            println!("behavior {id} enabled");
        }
        Command::Behaviors(BehaviorsCmd::Disable { behavior }) => {
            let id = connect(&global, None)
                .await?
                .set_behavior_disabled(&behavior, true)
                .await?;
            println!("behavior {id} disabled");
        }
    }
    Ok(())
}
