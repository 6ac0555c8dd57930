//! The load harness still runs: a one-second pass of `loadtest/run.sh` over
//! the debug binaries, every scenario that needs no extra peer, against the
//! plain and the full-policy gateway (and the bare Pingora floor when it was
//! built). No figure is asserted — only that every contender answered every
//! checked request and the report came out.

use std::path::Path;
use std::process::Command;

#[test]
fn the_load_harness_runs_end_to_end() {
    let gateway = Path::new(env!("CARGO_BIN_EXE_sluice-gateway"));
    let bin_dir = gateway.parent().expect("target dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut contenders = String::from("direct gateway gateway-policy");
    if bin_dir.join("bare-pingora").exists() {
        contenders.push_str(" bare");
    }
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("bash")
        .arg(root.join("loadtest/run.sh"))
        .env("BIN_DIR", bin_dir)
        .env("SKIP_BUILD", "1")
        .env("DURATION", "1")
        .env("ROUNDS", "1")
        .env("VUS", "2")
        .env("RATE", "20")
        .env("SCENARIOS", "json list llm")
        .env("CONTENDERS", &contenders)
        .env("OUT_DIR", out_dir.path())
        .output()
        .expect("run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.sh failed:\n{stdout}\n{stderr}");
    for row in [
        "| json | gateway |",
        "| list | gateway-policy |",
        "| llm | gateway |",
    ] {
        assert!(
            stdout.contains(row),
            "missing {row} in the report:\n{stdout}"
        );
    }
    // The last column of every row is the count of failed checks/requests.
    for row in stdout.lines().filter(|l| {
        ["| json |", "| list |", "| llm |"]
            .iter()
            .any(|s| l.starts_with(s))
    }) {
        let errors = row
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap_or("")
            .trim();
        assert_eq!(errors, "0", "a contender failed requests: {row}\n{stderr}");
    }
}

/// The idle-stream memory script still runs: a few streams held through the
/// debug gateway (and the bare floor when built). Only that every stream was
/// held and a figure printed.
#[test]
fn the_idle_stream_script_runs_end_to_end() {
    let gateway = Path::new(env!("CARGO_BIN_EXE_sluice-gateway"));
    let bin_dir = gateway.parent().expect("target dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut contenders = vec!["gateway"];
    if bin_dir.join("bare-pingora").exists() {
        contenders.push("bare");
    }
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("bash")
        .arg(root.join("loadtest/idle_streams.sh"))
        .env("BIN_DIR", bin_dir)
        .env("SKIP_BUILD", "1")
        .env("N", "20")
        .env("CONTENDERS", contenders.join(" "))
        .env("OUT_DIR", out_dir.path())
        .output()
        .expect("idle_streams.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "idle_streams.sh failed:\n{stdout}\n{stderr}"
    );
    for who in contenders {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(who) && l[who.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no line for {who}:\n{stdout}\n{stderr}"));
        assert!(
            line.contains("streams 20 of 20;") && line.contains("KiB per stream; errors 0"),
            "{line}\n{stderr}"
        );
    }
}
