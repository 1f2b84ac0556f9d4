//! Static checks of docker-compose.yml (scripts/compose-test runs it for real): it parses, its
//! services use flags and environment variables the binaries really accept (each binary's
//! `--help`), it runs what the README promises, and it keeps the rules that make it work with
//! Compose v1 (Debian's docker-compose 1.29) as well as v2.

use switchboard_e2e::repo_root;

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))
        .expect("docker-compose.yml exists");
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    v.apply_merge().expect("YAML merge keys resolve");
    v
}

/// The clap definition of a service binary, the same its `main` parses (also used by
/// `kubernetes.rs`).
pub(crate) fn command(bin: &str) -> clap::Command {
    use clap::CommandFactory;
    match bin {
        "ingress" => ingress::cli::Cli::command(),
        "behavior-worker" => behavior_worker::cli::Cli::command(),
        "outbound" => outbound::cli::Cli::command(),
        "twilio-fake" => {
            <twilio_fake::Config as clap::Args>::augment_args(clap::Command::new("twilio-fake"))
        }
        other => panic!("unknown binary {other}"),
    }
}

/// The `--help` text of a service binary, from the same clap definition its `main` parses.
fn help(bin: &str) -> String {
    command(bin).render_long_help().to_string()
}

fn compose_text() -> String {
    std::fs::read_to_string(repo_root().join("docker-compose.yml")).expect("docker-compose.yml")
}

/// The services that run until stopped (not migrate, not the cli).
const LONG_RUNNING: [&str; 6] = [
    "nats",
    "postgres",
    "ingress",
    "behavior-worker",
    "outbound",
    "twilio-fake",
];

/// `${VAR:-default}` → `default`; anything else as it is.
fn default_of(value: &str) -> &str {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
        .map_or(value, |(_, default)| default)
}

/// Seconds of a compose duration such as `25s` or `1m30s`.
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in duration.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number
                    .parse()
                    .unwrap_or_else(|_| panic!("duration {duration}"));
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => panic!("duration {duration}"),
        }
    }
    assert!(number.is_empty(), "duration {duration} needs a unit");
    total
}

#[test]
fn compose_runs_the_whole_system() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    for name in [
        "nats",
        "postgres",
        "migrate",
        "ingress",
        "behavior-worker",
        "twilio-fake",
        "outbound",
        "cli",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    assert!(
        c["services"]["nats"]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some("-js")),
        "JetStream on"
    );
    // Compose v1 (1.29, a file without `version:`) honours deploy.replicas as v2 does, without
    // --compatibility (scripts/compose-test counts the containers). No `scale` beside it: v2
    // refuses the two when they differ.
    assert_eq!(
        c["services"]["behavior-worker"]["deploy"]["replicas"].as_u64(),
        Some(2),
        "two worker replicas"
    );
    assert!(c["services"]["behavior-worker"]["scale"].is_null());
    assert!(
        c.get("version").is_none(),
        "no version key: the Compose spec format"
    );
}

#[test]
fn compose_works_with_compose_v1_and_needs_nothing_outside_the_repository() {
    let text = compose_text();
    // Compose v1 does not expand a default inside a default (outbound exited 2 on the literal
    // "${PUBLIC_BASE_URL:-..." it was given as STATUS_CALLBACK_BASE_URL).
    for (i, line) in text.lines().enumerate() {
        if let Some(at) = line.find("${") {
            assert!(
                !line[at + 2..].contains("${"),
                "line {}: a nested ${{...}} default: {line}",
                i + 1
            );
        }
    }
    assert!(
        !text.contains("../"),
        "compose reads nothing outside the repository"
    );
    let c = compose();
    // The example package is in the image, and ./examples is mounted for the cli.
    assert!(
        c["services"]["cli"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some("./examples:/examples:ro")),
        "cli mounts ./examples"
    );
    let dockerfile =
        std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    assert!(
        dockerfile.contains("COPY examples/ /usr/share/switchboard/examples/"),
        "the image carries the example package"
    );
    assert!(
        repo_root()
            .join("examples/twilio-bot.package.json")
            .is_file()
    );
}

#[test]
fn the_master_key_is_required_and_has_no_default() {
    let c = compose();
    let key = c["x-switchboard-env"]["SWITCHBOARD_MASTER_KEY"]
        .as_str()
        .expect("SWITCHBOARD_MASTER_KEY");
    assert!(
        key.starts_with("${SWITCHBOARD_MASTER_KEY:?") && !key.contains(":-"),
        "required, no default: {key}"
    );
    assert!(
        key.contains("openssl rand -base64 32") && !key.contains('\n'),
        "one line that says how to make one: {key}"
    );
    for service in ["migrate", "behavior-worker", "outbound", "cli"] {
        assert_eq!(
            c["services"][service]["environment"]["SWITCHBOARD_MASTER_KEY"].as_str(),
            Some(key),
            "{service} gets the key"
        );
    }
    let example =
        std::fs::read_to_string(repo_root().join(".env.example")).expect(".env.example exists");
    assert!(example.contains("SWITCHBOARD_MASTER_KEY=") && example.contains("openssl rand"));
    assert!(
        !example
            .lines()
            .any(|l| l.trim_start().starts_with("SWITCHBOARD_MASTER_KEY=")),
        ".env.example has no key of its own"
    );
}

#[test]
fn host_ports_are_local_and_configurable() {
    let c = compose();
    let published = [
        ("ingress", "SWITCHBOARD_HTTP_PORT", 8080, 8080),
        ("nats", "SWITCHBOARD_NATS_PORT", 4222, 4222),
        ("twilio-fake", "SWITCHBOARD_SANDBOX_PORT", 8090, 8090),
        // The optional observability profile's user interfaces.
        ("prometheus", "SWITCHBOARD_PROMETHEUS_PORT", 9091, 9090),
        ("grafana", "SWITCHBOARD_GRAFANA_PORT", 3000, 3000),
        ("jaeger", "SWITCHBOARD_JAEGER_PORT", 16686, 16686),
    ];
    for (service, variable, default, port) in published {
        let ports = c["services"][service]["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} ports"));
        assert_eq!(
            ports
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>(),
            [format!("127.0.0.1:${{{variable}:-{default}}}:{port}")],
            "{service}"
        );
    }
    for (name, service) in c["services"].as_mapping().unwrap() {
        if !published.iter().any(|(s, ..)| *s == name.as_str().unwrap()) {
            assert!(service["ports"].is_null(), "{name:?} publishes no port");
        }
    }
}

#[test]
fn every_long_running_service_is_health_checked_restarted_and_stopped_in_time() {
    let c = compose();
    for service in LONG_RUNNING {
        let s = &c["services"][service];
        let test = s["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} has a health check"));
        assert_eq!(test[0].as_str(), Some("CMD"), "{service}");
        assert!(
            ["unless-stopped", "on-failure", "always"]
                .contains(&s["restart"].as_str().unwrap_or("")),
            "{service} restarts"
        );
        let grace = seconds(
            s["stop_grace_period"]
                .as_str()
                .unwrap_or_else(|| panic!("{service} stop_grace_period")),
        );
        let shutdown: u64 = s["environment"]["SHUTDOWN_TIMEOUT_SECS"]
            .as_str()
            .map_or(10, |v| v.parse().unwrap());
        assert!(
            grace > shutdown,
            "{service}: stop_grace_period {grace} s must exceed SHUTDOWN_TIMEOUT_SECS {shutdown} s"
        );
    }
    // The workers and outbound answer their health check from their own /readyz.
    for service in ["behavior-worker", "outbound", "ingress"] {
        let s = &c["services"][service];
        let test: Vec<&str> = s["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(test, ["CMD", service, "healthcheck"], "{service}");
        assert!(
            s["environment"]["SHUTDOWN_TIMEOUT_SECS"].as_str().is_some(),
            "{service}: SHUTDOWN_TIMEOUT_SECS"
        );
    }
    for service in ["behavior-worker", "outbound"] {
        assert_eq!(
            c["services"][service]["environment"]["METRICS_ADDR"].as_str(),
            Some("0.0.0.0:9090"),
            "{service}: healthcheck asks /readyz at METRICS_ADDR"
        );
    }
    // PostgreSQL over TCP: the first start's temporary server listens on the socket only.
    let pg: Vec<&str> = c["services"]["postgres"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        pg.contains(&"pg_isready") && pg.windows(2).any(|w| w == ["-h", "127.0.0.1"]),
        "{pg:?}"
    );
    for service in ["migrate", "behavior-worker", "outbound"] {
        assert_eq!(
            c["services"][service]["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy"),
            "{service} waits for a healthy PostgreSQL"
        );
    }
    for service in ["behavior-worker", "outbound", "cli"] {
        assert_eq!(
            c["services"][service]["depends_on"]["migrate"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{service} waits for the migrations"
        );
    }
}

#[test]
fn status_callbacks_reach_ingress_and_verify() {
    let c = compose();
    // The sandbox posts to STATUS_CALLBACK_BASE_URL/twilio/status and signs that URL; ingress
    // checks against PUBLIC_BASE_URL + path: the same by default, and both follow PUBLIC_BASE_URL.
    let callback = c["services"]["outbound"]["environment"]["STATUS_CALLBACK_BASE_URL"]
        .as_str()
        .unwrap();
    let public = c["services"]["ingress"]["environment"]["PUBLIC_BASE_URL"]
        .as_str()
        .unwrap();
    assert_eq!(callback, public);
    assert_eq!(default_of(public), "http://ingress:8080");
    assert!(public.starts_with("${PUBLIC_BASE_URL:-"));
    assert_eq!(
        c["services"]["cli"]["environment"]["PUBLIC_BASE_URL"].as_str(),
        Some(public),
        "the cli prints webhook URLs with the URL ingress checks"
    );
    assert_eq!(
        c["services"]["ingress"]["environment"]["LISTEN_ADDR"].as_str(),
        Some("0.0.0.0:8080")
    );
    for base in ["TWILIO_API_BASE", "TWILIO_LOOKUPS_BASE"] {
        assert_eq!(
            default_of(
                c["services"]["outbound"]["environment"][base]
                    .as_str()
                    .unwrap()
            ),
            "http://twilio-fake:8090",
            "{base} defaults to the sandbox"
        );
    }
}

#[test]
fn every_environment_variable_in_compose_is_one_the_binary_reads() {
    let c = compose();
    let known_elsewhere = [
        "POSTGRES_PASSWORD",
        "POSTGRES_USER",
        "POSTGRES_DB",
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        // no-color.org, read by the logging library (tracing-subscriber)
        "NO_COLOR",
    ];
    for (service, bin) in [
        ("ingress", "ingress"),
        ("behavior-worker", "behavior-worker"),
        ("migrate", "behavior-worker"),
        ("twilio-fake", "twilio-fake"),
        ("outbound", "outbound"),
    ] {
        let help = help(bin);
        let cmd = c["services"][service]["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} command"));
        assert_eq!(cmd[0].as_str(), Some(bin), "{service} runs {bin}");
        let env = c["services"][service]["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{service} environment"));
        for key in env.keys() {
            let key = key.as_str().unwrap();
            if known_elsewhere.contains(&key) {
                continue;
            }
            assert!(
                help.contains(&format!("[env: {key}")),
                "{service}: {bin} does not read {key}"
            );
        }
        for arg in cmd.iter().skip(1).filter_map(|a| a.as_str()) {
            if arg.starts_with("--") {
                let flag = arg.split('=').next().unwrap();
                assert!(help.contains(flag), "{service}: {bin} has no flag {flag}");
            } else {
                assert!(
                    help.contains(&format!("  {arg} ")),
                    "{service}: {bin} has no subcommand {arg}"
                );
            }
        }
    }
}

/// The users of deploy/nats/nats-server.conf and the variables of their passwords, in order.
pub(crate) fn nats_users() -> Vec<(String, String)> {
    let conf = std::fs::read_to_string(repo_root().join("deploy/nats/nats-server.conf"))
        .expect("deploy/nats/nats-server.conf");
    let mut users = Vec::new();
    let mut user = None;
    for line in conf.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("user: ") {
            user = Some(name.to_owned());
        } else if let Some(var) = line.strip_prefix("password: $") {
            users.push((user.take().expect("user before password"), var.to_owned()));
        }
    }
    users
}

#[test]
fn nats_requires_credentials_and_each_service_has_its_own_user() {
    let c = compose();
    let nats = &c["services"]["nats"];
    let command: Vec<&str> = nats["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        command
            .windows(2)
            .any(|w| w == ["-c", "/etc/nats/nats-server.conf"]),
        "{command:?}"
    );
    assert!(
        nats["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v.as_str()
                == Some("./deploy/nats/nats-server.conf:/etc/nats/nats-server.conf:ro")),
        "the nats service mounts deploy/nats/nats-server.conf"
    );
    let users = nats_users();
    assert_eq!(
        users
            .iter()
            .map(|(u, v)| (u.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [
            ("ingress", "NATS_INGRESS_PASSWORD"),
            ("behavior-worker", "NATS_WORKER_PASSWORD"),
            ("outbound", "NATS_OUTBOUND_PASSWORD"),
            ("cli", "NATS_CLI_PASSWORD"),
            ("integrator", "NATS_INTEGRATOR_PASSWORD"),
        ]
    );
    let example =
        std::fs::read_to_string(repo_root().join(".env.example")).expect(".env.example exists");
    for (user, var) in &users {
        // Required, no default, quoted for nats-server (it parses the value as configuration).
        let given = nats["environment"][var.as_str()]
            .as_str()
            .unwrap_or_else(|| panic!("the nats service gets {var}"));
        let required = given
            .strip_prefix('"')
            .and_then(|g| g.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{var} in double quotes: {given}"));
        assert!(
            required.starts_with(&format!("${{{var}:?")) && !required.contains(":-"),
            "{var} is required, without default: {required}"
        );
        assert!(required.contains(".env.example"), "{required}");
        assert!(
            example.contains(&format!("#{var}=")),
            ".env.example shows {var}"
        );
        assert!(
            !example
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{var}="))),
            ".env.example has no {var} of its own"
        );
        // Each service connects as its own user with that password, unquoted.
        let service = match user.as_str() {
            "integrator" => continue,
            "cli" => "cli",
            other => other,
        };
        let env = &c["services"][service]["environment"];
        assert_eq!(env["NATS_USER"].as_str(), Some(user.as_str()), "{service}");
        assert_eq!(
            env["NATS_PASSWORD"].as_str(),
            Some(required),
            "{service} gets {var}"
        );
    }
    assert!(
        c["services"]["migrate"]["environment"]["NATS_USER"].is_null(),
        "migrate does not use NATS"
    );
}

/// The observability profile is optional: `up` without it starts none of its services, and
/// they are there for users who ask (`--profile observability`).
#[test]
fn observability_is_an_optional_profile() {
    let c = compose();
    for service in ["prometheus", "grafana", "jaeger"] {
        let profiles = c["services"][service]["profiles"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service} has profiles"));
        assert_eq!(
            profiles
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>(),
            ["observability"],
            "{service}"
        );
    }
    for (name, service) in c["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if ["ingress", "behavior-worker", "outbound"].contains(&name) {
            assert_eq!(
                service["environment"]["METRICS_ADDR"].as_str(),
                Some("0.0.0.0:9090"),
                "{name} serves metrics where prometheus.yml scrapes them"
            );
        }
    }
    let scrape = std::fs::read_to_string(
        switchboard_test_support::repo_root().join("deploy/observability/prometheus.yml"),
    )
    .unwrap();
    for target in [
        "ingress:9090",
        "outbound:9090",
        "names: [\"behavior-worker\"]",
    ] {
        assert!(scrape.contains(target), "prometheus.yml scrapes {target}");
    }
}
