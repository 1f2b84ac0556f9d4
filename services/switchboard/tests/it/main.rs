//! Tests of the `switchboard` CLI: the simulator on the seed package (golden outputs), and the
//! binary's interface (exit codes, one-line errors).

mod account_kinds;
mod cli;
mod jobs;
mod lifecycle;
mod retention;
mod rotation;
mod seed;
mod views;

/// The fixtures: the repository root, the seed package (`examples/twilio-bot.package.json`)
/// and its golden replies (`tests/golden/seed/`).
pub use switchboard_test_support::{
    golden, repo_root, seed_package, seed_package_path as seed_path,
};

/// What a run of the `switchboard` binary printed, and its exit code.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Standard output as the one JSON document it must be.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("one JSON document ({e}): {}", self.stdout))
    }

    /// Asserts the run succeeded (its output in the message when not).
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// A failure explained in one line of stderr.
    pub fn one_line_error(&self) -> &str {
        assert_ne!(self.code, 0, "{}", self.stdout);
        assert_eq!(self.stderr.lines().count(), 1, "one line: {}", self.stderr);
        self.stderr.trim_end()
    }

    /// The rows of a table (header and footer left out).
    pub fn rows(&self) -> Vec<&str> {
        let lines: Vec<&str> = self.stdout.lines().collect();
        match lines.len() {
            0 | 1 => Vec::new(),
            n => lines[1..n - 1].to_vec(),
        }
    }

    /// The `--before` the footer (or, with `--json`, stderr) gives for the next page.
    pub fn next_page(&self) -> Option<String> {
        let text = format!("{}{}", self.stdout, self.stderr);
        text.split("--before ").nth(1).map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    }
}

/// Runs `command` off the runtime's threads (the services a test starts run on them) and
/// collects what it printed.
pub async fn output(mut command: std::process::Command) -> Out {
    let out = tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `switchboard ARGS` with `env` and none of the caller's Switchboard settings, its
/// standard input closed.
pub async fn cli(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args);
    for var in [
        "SWITCHBOARD_MASTER_KEY",
        "SWITCHBOARD_OLD_MASTER_KEYS",
        "SWITCHBOARD_ALLOW_TEST_KEY",
        "DATABASE_URL",
        "NATS_URL",
        "SWITCHBOARD_SMS_FROM",
        "TWILIO_AUTH_TOKEN",
        "ACCOUNT_TOKEN",
        "ACCOUNT_PASSWORD",
    ] {
        command.env_remove(var);
    }
    command.stdin(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    output(command).await
}
