//! `sluice-control`: read the settings, then serve.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-control",
    version,
    about = "Sluice control: config distribution, approvals inbox, audit store"
)]
struct Cli {
    /// Control's settings file (YAML).
    #[arg(long, short = 'c')]
    config: std::path::PathBuf,
    /// Check the settings and the gateway config they point at, then exit.
    #[arg(long)]
    validate: bool,
}

fn main() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let settings = match sluice_control::settings::Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1)
        }
    };
    if cli.validate {
        println!("settings are valid");
        std::process::exit(0)
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    if let Err(e) = rt.block_on(sluice_control::run(settings)) {
        eprintln!("error: {e:#}");
        std::process::exit(1)
    }
}
