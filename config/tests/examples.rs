//! Every file under `config/examples/` must validate.

#[test]
fn every_example_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        if let Err(e) = sluice_config::load(&text, 1) {
            panic!("{} is invalid:\n{e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 3, "expected at least 3 examples, found {n}");
}

/// The multi-replica example's policy is a template (`run.sh` fills in the
/// ports and the demo key's hash): filled in, it validates.
#[test]
fn the_replicas_template_validates_once_filled_in() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/replicas/gateway.yaml");
    let mut text = std::fs::read_to_string(&path).expect("readable");
    for (k, v) in [
        ("@ALICE_SHA256@", "0".repeat(64)),
        ("@DEMO_PORT@", "17009".to_owned()),
        ("@LLM_PORT@", "17010".to_owned()),
        ("@REDIS_PORT@", "17008".to_owned()),
    ] {
        text = text.replace(k, &v);
    }
    assert!(
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains('@')),
        "every placeholder filled"
    );
    if let Err(e) = sluice_config::load(&text, 1) {
        panic!("{} is invalid:\n{e}", path.display());
    }
}
