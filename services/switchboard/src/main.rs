//! `switchboard`: the operator's command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::args::KeyValue;
use switchboard::simulate::{JsonReport, SimulateRequest, render_text, simulate};

/// Switchboard: Cerb-style SMS bots on Twilio.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one behavior of a package file with no server: prints a trace and the result.
    ///
    /// Prompts not given with --prompt get harmless sample values (listed in the output).
    /// Webhook behaviors get --param as a form body (or as the query string when --body is
    /// given); macro behaviors get --var inputs.
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
        /// The webhook request method.
        #[arg(long, value_name = "VERB", default_value = "POST")]
        method: String,
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
}

fn main() -> ExitCode {
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
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        eprintln!("error: could not install the TLS crypto provider");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate { package, behavior, prompts, params, headers, method, body, vars, run_http, json } => {
            let package_json = std::fs::read_to_string(&package)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", package.display()))?;
            let req = SimulateRequest {
                package_json,
                behavior_uid: behavior,
                prompts,
                params,
                headers,
                method: Some(method),
                body,
                vars,
                run_http,
            };
            let sim = simulate(&req)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&JsonReport::from(&sim.output))?);
                for note in &sim.notes {
                    eprintln!("note: {note}");
                }
            } else {
                print!("{}", render_text(&sim));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
