//! Every committed fuzz corpus file (`gateway/fuzz/corpus/<target>/`) run
//! through its target's body as an ordinary test: the bodies and their
//! properties are `gateway/fuzz/src/lib.rs`, the very file the libFuzzer
//! targets call, included here so the properties the fuzzers checked keep
//! holding without a nightly toolchain. Deterministic and fast: a few
//! hundred small inputs.

// Helpers of the shared file that only the fuzz crate uses.
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod sluice_fuzz;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replay `target`'s corpus; every failing file is reported, not just the first.
fn replay(target: &str) {
    let (_, body) = sluice_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target `{target}`"));
    let files = corpus(target);
    assert!(!files.is_empty(), "the `{target}` corpus is empty");
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} `{target}` corpus files break a property:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn classify_corpus() {
    replay("classify");
}

#[test]
fn response_corpus() {
    replay("response");
}

#[test]
fn sse_corpus() {
    replay("sse");
}

#[test]
fn list_filter_corpus() {
    replay("list_filter");
}

#[test]
fn scope_corpus() {
    replay("scope");
}

#[test]
fn config_load_corpus() {
    replay("config_load");
}

#[test]
fn uri_corpus() {
    replay("uri");
}

#[test]
fn every_target_has_a_test() {
    let names: Vec<&str> = sluice_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "classify",
            "response",
            "sse",
            "list_filter",
            "scope",
            "config_load",
            "uri"
        ]
    );
}
