//! The load harness still runs: a one-second pass of `loadtest/run.sh` over
//! the debug binaries, every scenario that needs no extra peer, against the
//! plain and the full-policy gateway (and the bare Pingora floor when it was
//! built), a 20-stream pass of `loadtest/idle_streams.sh`, and three calls
//! per scenario through `loadtest/callgrind.sh`. No figure is asserted — only that every contender answered every checked request (or
//! held every stream) and the report came out.

use std::path::Path;
use std::process::Command;

/// The debug binaries' directory, and whether the bare Pingora floor was built.
fn binaries() -> (&'static Path, bool) {
    let gateway = Path::new(env!("CARGO_BIN_EXE_sluice-gateway"));
    let bin_dir = gateway.parent().expect("target dir");
    (bin_dir, bin_dir.join("bare-pingora").exists())
}

/// Runs `loadtest/SCRIPT` over the debug binaries with `env`; its stdout and
/// stderr, after checking it exited 0.
fn run_script(script: &str, env: &[(&str, &str)]) -> (String, String) {
    let (bin_dir, _) = binaries();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("bash")
        .arg(root.join("loadtest").join(script))
        .env("BIN_DIR", bin_dir)
        .env("SKIP_BUILD", "1")
        .env("OUT_DIR", out_dir.path())
        .envs(env.iter().copied())
        .output()
        .expect(script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The last cell of a markdown table row.
fn last_cell(row: &str) -> &str {
    row.trim_end_matches('|')
        .rsplit('|')
        .next()
        .unwrap_or("")
        .trim()
}

#[test]
fn the_load_harness_runs_end_to_end() {
    let mut contenders = String::from("direct gateway gateway-policy");
    if binaries().1 {
        contenders.push_str(" bare");
    }
    let (stdout, stderr) = run_script(
        "run.sh",
        &[
            ("DURATION", "1"),
            ("ROUNDS", "1"),
            ("VUS", "2"),
            ("RATE", "20"),
            ("SCENARIOS", "json list llm"),
            ("CONTENDERS", &contenders),
        ],
    );
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
        assert_eq!(
            last_cell(row),
            "0",
            "a contender failed requests: {row}\n{stderr}"
        );
    }
}

/// The idle-stream memory script still runs: a few streams held through the
/// debug gateway (and the bare floor when built). Only that every stream was
/// held and a figure printed.
#[test]
fn the_idle_stream_script_runs_end_to_end() {
    let mut contenders = vec!["gateway"];
    if binaries().1 {
        contenders.push("bare");
    }
    let (stdout, stderr) = run_script(
        "idle_streams.sh",
        &[("N", "20"), ("CONTENDERS", &contenders.join(" "))],
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

/// The instruction-count script still runs: three calls per scenario under
/// callgrind through the debug gateway (json and the LLM stream), nginx on
/// the same stream, and the bare floor when built. Only that every scenario
/// got its row with a count.
#[test]
fn the_instruction_count_script_runs_end_to_end() {
    let mut scenarios = vec!["json", "llm", "nginx-llm"];
    if binaries().1 {
        scenarios.push("bare-llm");
    }
    let (stdout, stderr) = run_script(
        "callgrind.sh",
        &[("REQUESTS", "3"), ("SCENARIOS", &scenarios.join(" "))],
    );
    for scen in scenarios {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {scen} | 3 |")))
            .unwrap_or_else(|| panic!("no row for {scen}:\n{stdout}\n{stderr}"));
        let per_request: u64 = last_cell(row)
            .replace(',', "")
            .parse()
            .unwrap_or_else(|e| panic!("{row}: {e}"));
        assert!(per_request > 0, "{row}");
    }
}
