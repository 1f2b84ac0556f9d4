//! deploy/observability: the Grafana dashboard and the Prometheus alert rules refer only to
//! metrics the services export (a renamed metric would leave a panel empty and an alert
//! silent), the dashboard is well-formed, and promtool accepts the rules and the scrape
//! configuration (when promtool is installed: Debian's `prometheus` package).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use switchboard_test_support::repo_root;

/// The metric names the services register: every string literal naming one in the sources of
/// the services and the telemetry crate, with the suffixes Prometheus exposition adds.
fn exported_names(root: &Path) -> BTreeSet<String> {
    let literal =
        regex::Regex::new(r#""((?:switchboard|http_server|http_client|process)_[a-z0-9_]+)""#)
            .unwrap();
    let mut bases = BTreeSet::new();
    let mut stack = vec![root.join("services"), root.join("crates/telemetry/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("tests") && !path.ends_with("openapi") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for c in literal.captures_iter(&text) {
                    bases.insert(c[1].to_owned());
                }
            }
        }
    }
    let suffixes = [
        "",
        "_total",
        "_seconds",
        "_seconds_bucket",
        "_seconds_count",
        "_seconds_sum",
        "_seconds_total",
        "_bytes",
    ];
    bases
        .iter()
        .flat_map(|b| suffixes.iter().map(move |s| format!("{b}{s}")))
        .collect()
}

/// The metric names a PromQL expression uses (identifiers with our prefixes).
fn used_names(expr: &str) -> Vec<String> {
    let ident =
        regex::Regex::new(r"\b((?:switchboard|http_server|http_client|process)_[a-z0-9_]+)")
            .unwrap();
    ident.captures_iter(expr).map(|c| c[1].to_owned()).collect()
}

#[test]
fn the_dashboard_and_the_alerts_use_only_exported_metrics() {
    let root = repo_root();
    let exported = exported_names(&root);
    assert!(
        exported.contains("switchboard_webhooks_total")
            && exported.contains("http_server_request_duration_seconds_bucket")
            && exported.contains("process_resident_memory_bytes"),
        "the source scan finds the metrics: {exported:?}"
    );
    let dir = root.join("deploy/observability");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("grafana/dashboards/switchboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard["uid"], "switchboard");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut unknown = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has queries", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = used_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                if !exported.contains(&name) {
                    unknown.push(format!("dashboard '{}': {name}", panel["title"]));
                }
            }
        }
    }
    let alerts: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts.yml")).unwrap()).unwrap();
    let mut rules = 0;
    for group in alerts["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            rules += 1;
            let name = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            for used in used_names(expr) {
                if !exported.contains(&used) {
                    unknown.push(format!("alert {name}: {used}"));
                }
            }
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "alert {name} has a summary"
            );
        }
    }
    assert!(rules >= 6, "{rules} rules");
    assert!(
        unknown.is_empty(),
        "metrics nobody exports:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_configuration() {
    let dir = repo_root().join("deploy/observability");
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        eprintln!("promtool is not installed (Debian: apt install prometheus): not run");
        return;
    };
    assert!(out.status.success());
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.join("alerts.yml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    // The configuration names the rules at their path in the Prometheus container.
    let tmp = std::env::temp_dir().join(switchboard_test_support::unique("sb-prom"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(dir.join("alerts.yml"), tmp.join("alerts.yml")).unwrap();
    let config = std::fs::read_to_string(dir.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/alerts.yml",
            tmp.join("alerts.yml").to_str().unwrap(),
        );
    std::fs::write(tmp.join("prometheus.yml"), config).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(tmp.join("prometheus.yml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let _ = std::fs::remove_dir_all(&tmp);
}
