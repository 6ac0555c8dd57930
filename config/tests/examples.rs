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
