//! The Prometheus rules shipped in `config/prometheus`: `promtool` (from
//! Debian's `prometheus` package, installed by .ci/setup) checks them and
//! runs their unit tests on synthetic series; and every `sluice_*` metric
//! they read is one the gateway exports, so the rules cannot drift from
//! the metric names.

mod support;

use std::process::Command;

use support::workspace;

fn promtool(args: &[&str]) -> String {
    let dir = workspace().join("config/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian package prometheus; .ci/setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_load_and_their_alerts_fire_where_they_should() {
    let checked = promtool(&["check", "rules", "sluice.rules.yml"]);
    assert!(checked.contains("SUCCESS: 13 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "sluice.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_metric_the_rules_read_is_exported() {
    let rules = std::fs::read_to_string(workspace().join("config/prometheus/sluice.rules.yml"))
        .expect("rules");
    let metrics =
        std::fs::read_to_string(workspace().join("gateway/src/metrics.rs")).expect("metrics.rs");
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("sluice_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let base = name
            .trim_start_matches("sluice_")
            .trim_end_matches("_bucket");
        assert!(
            metrics.contains(&format!("\"{base}\"")),
            "the rules read {name}, which gateway/src/metrics.rs does not register"
        );
    }
}
