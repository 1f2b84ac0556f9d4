//! No Kubernetes cluster runs here, so the manifests of `deploy/kubernetes` are checked by what
//! can be: every overlay and example renders with `kubectl kustomize`, and each Switchboard
//! container in the rendering runs a binary and subcommand that exist and is given only
//! environment variables that binary's clap definition (the one its `main` parses) reads, with
//! values it accepts. `scripts/k8s-test` validates the same renderings against the Kubernetes
//! schemas and checks the deployment invariants (probes, resources, policies...).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use switchboard_e2e::repo_root;

use crate::compose::{command, nats_users};

const BINARIES: [&str; 5] = [
    "switchboard",
    "ingress",
    "behavior-worker",
    "outbound",
    "twilio-fake",
];

/// Read by libraries under every binary (tracing, OpenTelemetry), not by their clap definitions.
const KNOWN_ELSEWHERE: [&str; 3] = [
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
];

fn kubernetes_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// Every directory that `kubectl kustomize` should render: the overlays and the examples.
fn renderable() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for group in ["overlays", "examples"] {
        let entries = std::fs::read_dir(kubernetes_dir().join(group))
            .unwrap_or_else(|e| panic!("deploy/kubernetes/{group}: {e}"));
        for entry in entries {
            let dir = entry.unwrap().path();
            if dir.join("kustomization.yaml").exists() {
                dirs.push(dir);
            }
        }
    }
    dirs.sort();
    dirs
}

/// `kubectl kustomize DIR`, as documents.
fn render(dir: &Path) -> Vec<Value> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not installed: install kubectl 1.27 or newer (it bundles kustomize v5) \
             to check deploy/kubernetes; CI has it"
        ),
        Err(e) => panic!("running kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 rendering");
    // kustomize separates the documents with `---` lines.
    text.split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// A container of a workload in a rendering, with where it is.
struct Container<'a> {
    place: String,
    kind: &'a str,
    spec: &'a Value,
}

fn containers(docs: &[Value]) -> Vec<Container<'_>> {
    let mut out = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &doc["spec"]["template"]["spec"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_sequence().into_iter().flatten() {
                out.push(Container {
                    place: format!(
                        "{kind}/{} container {}",
                        doc["metadata"]["name"].as_str().unwrap_or("?"),
                        c["name"].as_str().unwrap_or("?")
                    ),
                    kind,
                    spec: c,
                });
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The Switchboard image: the one whose containers run a Switchboard binary.
fn is_switchboard_image(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last == "switchboard" || last.starts_with("switchboard:") || last.starts_with("switchboard@")
}

/// The container's environment as (name, value) pairs; values from Secrets, ConfigMaps and
/// the downward API become a sample that the option accepts where it has a parser.
fn environment(c: &Container<'_>, docs: &[Value]) -> Vec<(String, String)> {
    assert!(
        c.spec["envFrom"].is_null(),
        "{}: envFrom cannot be checked against the CLI; list the variables in env",
        c.place
    );
    let mut env = Vec::new();
    for e in c.spec["env"].as_sequence().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_owned()
        } else if let Some(r) = e["valueFrom"]["configMapKeyRef"].as_mapping() {
            let (cm, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            docs.iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm)
                .and_then(|d| d["data"][key].as_str())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {name} reads ConfigMap {cm} key {key}, not rendered",
                        c.place
                    )
                })
                .to_owned()
        } else if !e["valueFrom"]["secretKeyRef"].is_null() {
            // A Secret's value is the user's; a well-formed sample stands in for it.
            match name.as_str() {
                "DATABASE_URL" => "postgres://user:password@db.example.com:5432/switchboard".into(),
                "SWITCHBOARD_MASTER_KEY" => "0".repeat(64),
                _ => "sample".into(),
            }
        } else {
            "sample".into()
        };
        env.push((name, value));
    }
    env
}

/// The `command` (or, without one, `args`) of a Switchboard container: its binary and its
/// subcommand arguments.
fn argv(c: &Container<'_>) -> Vec<String> {
    let mut argv = strings(&c.spec["command"]);
    argv.extend(strings(&c.spec["args"]));
    argv
}

/// Parses a container's command line and environment with the binary's clap definition: each
/// variable becomes the option that reads it (`--long=value`), so clap checks the option exists
/// and its value parses, and the subcommand is checked the same way.
fn check_container(c: &Container<'_>, docs: &[Value]) -> Result<String, String> {
    let argv = argv(c);
    let bin = argv
        .first()
        .filter(|b| BINARIES.contains(&b.as_str()))
        .ok_or_else(|| format!("{}: runs {argv:?}, not a Switchboard binary", c.place))?
        .clone();
    let cmd = command(&bin);
    let mut args = argv.clone();
    let mut unknown = Vec::new();
    for (name, value) in environment(c, docs) {
        if KNOWN_ELSEWHERE.contains(&name.as_str()) {
            continue;
        }
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(name.as_str()))
        else {
            unknown.push(name);
            continue;
        };
        let long = arg
            .get_long()
            .ok_or_else(|| format!("{}: {name} has no long option", c.place))?;
        if arg.get_action().takes_values() {
            args.push(format!("--{long}={value}"));
        } else if !matches!(value.as_str(), "" | "0" | "false" | "off" | "no") {
            args.push(format!("--{long}"));
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "{}: {bin} does not read {}",
            c.place,
            unknown.join(", ")
        ));
    }
    cmd.try_get_matches_from(&args)
        .map_err(|e| format!("{}: {bin} rejects {args:?}:\n{e}", c.place))?;
    Ok(bin)
}

/// Where a container listens (`LISTEN_ADDR` or `METRICS_ADDR`), as a port number.
fn env_port(env: &[(String, String)], var: &str) -> Option<u64> {
    env.iter()
        .find(|(n, _)| n == var)
        .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
}

/// The port number a probe points at (a named port resolved through the container's ports).
fn probe_port(c: &Container<'_>, probe: &str) -> Option<u64> {
    let port = &c.spec[probe]["httpGet"]["port"];
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let name = port.as_str()?;
    c.spec["ports"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
}

#[test]
fn every_overlay_renders_and_runs_what_the_binaries_accept() {
    let dirs = renderable();
    let names: Vec<_> = dirs
        .iter()
        .map(|d| {
            d.strip_prefix(kubernetes_dir())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    for must in ["overlays/production", "overlays/sandbox"] {
        assert!(names.iter().any(|n| n == must), "{must} exists ({names:?})");
    }
    let mut problems = Vec::new();
    for (dir, overlay) in dirs.iter().zip(&names) {
        let docs = render(dir);
        let mut seen = Vec::new();
        for c in containers(&docs) {
            let image = c.spec["image"].as_str().unwrap_or_default();
            if !is_switchboard_image(image) {
                continue;
            }
            let command_line = argv(&c);
            if let [bin, rest @ ..] = command_line.as_slice() {
                let sub = rest.first().cloned().unwrap_or_default();
                seen.push((c.kind.to_owned(), bin.clone(), sub));
            }
            match check_container(&c, &docs) {
                Ok(bin) => {
                    // The probes point where the process listens.
                    let env = environment(&c, &docs);
                    let var = match bin.as_str() {
                        "ingress" | "twilio-fake" => "LISTEN_ADDR",
                        _ => "METRICS_ADDR",
                    };
                    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                        if c.spec[probe].is_null() {
                            continue;
                        }
                        let listens = env_port(&env, var);
                        if listens.is_none() || probe_port(&c, probe) != listens {
                            problems.push(format!(
                                "{overlay}: {}: {probe} on port {:?} but {var} is {:?}",
                                c.place,
                                probe_port(&c, probe),
                                listens
                            ));
                        }
                    }
                    // Credentials come from Secrets, never from the manifest.
                    for var in ["DATABASE_URL", "SWITCHBOARD_MASTER_KEY"] {
                        let literal = c.spec["env"].as_sequence().into_iter().flatten().any(|e| {
                            e["name"].as_str() == Some(var)
                                && e["valueFrom"]["secretKeyRef"].is_null()
                        });
                        if literal {
                            problems.push(format!(
                                "{overlay}: {}: {var} is not from a Secret",
                                c.place
                            ));
                        }
                    }
                }
                Err(e) => problems.push(format!("{overlay}: {e}")),
            }
        }
        for (kind, bin, sub) in [
            ("Job", "behavior-worker", "migrate"),
            ("Deployment", "ingress", "run"),
            ("Deployment", "behavior-worker", "run"),
            ("Deployment", "outbound", "run"),
        ] {
            if !seen
                .iter()
                .any(|(k, b, s)| (k.as_str(), b.as_str(), s.as_str()) == (kind, bin, sub))
            {
                problems.push(format!("{overlay}: no {kind} runs `{bin} {sub}`"));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn production_replicates_every_stream_on_the_three_nats_servers() {
    let docs = render(&kubernetes_dir().join("overlays/production"));
    let outbound = containers(&docs)
        .into_iter()
        .find(|c| c.kind == "Deployment" && argv(c).first().map(String::as_str) == Some("outbound"))
        .expect("an outbound Deployment");
    let env = environment(&outbound, &docs);
    assert!(
        env.iter()
            .any(|(n, v)| n == "JETSTREAM_REPLICAS" && v == "3"),
        "JETSTREAM_REPLICAS=3 on outbound: {env:?}"
    );
    let nats = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "nats")
        .expect("the NATS StatefulSet");
    assert_eq!(
        nats["spec"]["replicas"].as_u64(),
        Some(3),
        "three NATS servers"
    );
    let conf = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["nats.conf"].is_string())
        .and_then(|d| d["data"]["nats.conf"].as_str())
        .expect("the NATS configuration");
    assert!(conf.contains("jetstream {"), "JetStream on");
    for i in 0..3 {
        assert!(
            conf.contains(&format!("nats://nats-{i}.nats-headless:6222")),
            "a route to nats-{i}"
        );
    }
}

/// An env entry's Secret reference: (Secret, key), or `None` for a value.
fn secret_ref(e: &Value) -> Option<(&str, &str)> {
    let r = &e["valueFrom"]["secretKeyRef"];
    Some((r["name"].as_str()?, r["key"].as_str()?))
}

#[test]
fn nats_in_kubernetes_lets_each_service_in_as_its_own_user_only() {
    let compose_conf = std::fs::read_to_string(repo_root().join("deploy/nats/nats-server.conf"))
        .expect("deploy/nats/nats-server.conf");
    let authorization = &compose_conf[compose_conf
        .find("authorization {")
        .expect("an authorization block")..];
    let users = nats_users();
    assert_eq!(users.len(), 5, "five NATS users");
    for overlay in ["sandbox", "production"] {
        let docs = render(&kubernetes_dir().join("overlays").join(overlay));
        // The servers: the same users and permissions as docker compose's NATS.
        let conf = docs
            .iter()
            .find_map(|d| d["data"]["nats.conf"].as_str())
            .unwrap_or_else(|| panic!("{overlay}: no NATS configuration"));
        assert!(
            conf.contains(authorization),
            "{overlay}: the NATS configuration's authorization block differs from deploy/nats/nats-server.conf's"
        );
        // Each password the configuration reads is in the servers' environment, quoted, from
        // the Secret key of its user.
        let nats = containers(&docs)
            .into_iter()
            .find(|c| c.place == "StatefulSet/nats container nats")
            .unwrap_or_else(|| panic!("{overlay}: no NATS server"));
        let env = nats.spec["env"].as_sequence().expect("env");
        let entry = |name: &str| {
            env.iter()
                .find(|e| e["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("{overlay}: the NATS servers have no {name}"))
        };
        for (user, var) in &users {
            assert_eq!(
                entry(var)["value"].as_str(),
                Some(format!("\"$({var}_CLEAR)\"").as_str()),
                "{overlay}: {var} quoted, from {var}_CLEAR"
            );
            assert_eq!(
                secret_ref(entry(&format!("{var}_CLEAR"))),
                Some(("switchboard-nats", user.as_str())),
                "{overlay}: {var}_CLEAR from the Secret switchboard-nats, key {user}"
            );
        }
        // The services connect as their own user, with that user's password.
        for service in ["ingress", "behavior-worker", "outbound"] {
            let c = containers(&docs)
                .into_iter()
                .find(|c| c.place == format!("Deployment/{service} container {service}"))
                .unwrap_or_else(|| panic!("{overlay}: no {service}"));
            let env = c.spec["env"].as_sequence().expect("env");
            let entry = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name));
            assert_eq!(
                entry("NATS_USER").and_then(|e| e["value"].as_str()),
                Some(service),
                "{overlay}: {service}'s NATS_USER"
            );
            assert_eq!(
                entry("NATS_PASSWORD").and_then(secret_ref),
                Some(("switchboard-nats", service)),
                "{overlay}: {service}'s NATS_PASSWORD"
            );
        }
    }
}

#[test]
fn the_clap_check_catches_an_unknown_variable_and_a_bad_value() {
    // The check above must be able to fail: a variable no binary reads, and a value clap
    // refuses (REPLY_TIMEOUT_MS is bounded by Twilio's 15 s).
    let doc: Value = serde_yaml::from_str(
        r#"
kind: Deployment
metadata: {name: ingress}
spec:
  template:
    spec:
      containers:
        - name: ingress
          image: switchboard:0.1.0
          command: ["ingress", "run"]
          env: [{name: REPLY_TIMEOUT_MS, value: "10000"}]
"#,
    )
    .unwrap();
    let docs = vec![doc];
    let good = &containers(&docs)[0];
    assert_eq!(check_container(good, &docs), Ok("ingress".to_owned()));
    for (var, value, expect) in [
        ("DATABASE_URL", "postgres://x", "does not read DATABASE_URL"),
        ("REPLY_TIMEOUT_MS", "60000", "rejects"),
    ] {
        let mut bad = docs[0].clone();
        bad["spec"]["template"]["spec"]["containers"][0]["env"] =
            serde_yaml::from_str(&format!("[{{name: {var}, value: \"{value}\"}}]")).unwrap();
        let bad = vec![bad];
        let err = check_container(&containers(&bad)[0], &bad).unwrap_err();
        assert!(err.contains(expect), "{err}");
    }
    let mut bad = docs[0].clone();
    bad["spec"]["template"]["spec"]["containers"][0]["command"] =
        serde_yaml::from_str(r#"["ingress", "serve"]"#).unwrap();
    let bad = vec![bad];
    let err = check_container(&containers(&bad)[0], &bad).unwrap_err();
    assert!(err.contains("rejects"), "{err}");
}
