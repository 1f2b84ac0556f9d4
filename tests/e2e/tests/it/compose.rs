//! Docker cannot run here, so the compose file is checked by what can: it parses, its services
//! use flags and environment variables the binaries really accept (each binary's `--help`), and
//! it runs what the README promises.

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
    assert_eq!(
        c["services"]["behavior-worker"]["deploy"]["replicas"].as_u64(),
        Some(2),
        "two worker replicas"
    );
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
