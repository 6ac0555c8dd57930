//! `sluice-control --validate`: the settings and a directory source's
//! gateway config, checked with the gateway's own rules, before serving.

use std::process::Command;

fn validate(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-control"))
        .arg("--config")
        .arg(dir.join("control.yaml"))
        .arg("--validate")
        .output()
        .expect("run sluice-control");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn validate_checks_the_settings_and_the_gateway_config() {
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).expect("conf");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/approvals.yaml");
    let good = std::fs::read_to_string(example).expect("example");
    std::fs::write(conf.join("gateway.yaml"), &good).expect("write");
    std::fs::write(
        dir.path().join("control.yaml"),
        format!(
            "listen: \"127.0.0.1:0\"\ndatabase: \"{}\"\nconfig: {{ dir: {{ path: \"{}\" }} }}\ngateway_token: {{ env: T }}\n",
            dir.path().join("c.db").display(),
            conf.display()
        ),
    )
    .expect("settings");
    let (ok, text) = validate(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("are valid"), "{text}");

    std::fs::write(
        conf.join("gateway.yaml"),
        good.replace("upstream: payments }", "upstream: nope }"),
    )
    .expect("write");
    let (ok, text) = validate(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("routes[0].upstream: unknown upstream `nope`"),
        "{text}"
    );

    // A user entry with the token itself instead of its hash is refused.
    std::fs::write(conf.join("gateway.yaml"), &good).expect("write");
    let settings = std::fs::read_to_string(dir.path().join("control.yaml")).expect("read");
    std::fs::write(
        dir.path().join("control.yaml"),
        format!("{settings}users: [{{ name: a, token_sha256: plain-token }}]\n"),
    )
    .expect("write");
    let (ok, text) = validate(dir.path());
    assert!(!ok && text.contains("token_sha256"), "{text}");
}
