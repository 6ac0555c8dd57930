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
    #[arg(long, short = 'c', required_unless_present = "print_schema")]
    config: Option<std::path::PathBuf>,
    /// Check the settings (and a directory source's gateway config), then exit.
    #[arg(long)]
    validate: bool,
    /// Print the settings file's JSON Schema (for editors) and exit.
    #[arg(long)]
    print_schema: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The audit store.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Check the gateways' hash chains in the store (or in an exported
    /// JSON Lines file): say every event missing or altered; exit 1 if any.
    Verify {
        /// An exported file (one event per line) instead of the store.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events at or before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
}

fn main() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if cli.print_schema {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "{:#}",
            sluice_control::settings::schema()
        );
        std::process::exit(0)
    }
    let config = cli.config.clone().unwrap_or_default();
    let settings = match sluice_control::settings::Settings::load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1)
        }
    };
    if cli.validate {
        // A directory source is checked too, with the gateway's own rules
        // (a Git source is checked when control pulls it).
        if let Ok(sluice_control::settings::ConfigSource::Dir(d)) = settings.source() {
            let path = d.path.join(&d.file);
            let checked = std::fs::read_to_string(&path)
                .map_err(|e| vec![e.to_string()])
                .and_then(|yaml| {
                    sluice_config::load(&yaml, 1)
                        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
                });
            if let Err(errors) = checked {
                for e in errors {
                    eprintln!("error: {}: {e}", path.display());
                }
                std::process::exit(1)
            }
            println!("settings and {} are valid", path.display());
        } else {
            println!("settings are valid");
        }
        std::process::exit(0)
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    if let Some(Command::Audit {
        what: AuditCommand::Verify { file, since, until },
    }) = cli.command
    {
        let checked = rt.block_on(sluice_control::audit::verify_cli(
            &settings,
            file.as_deref(),
            (since.as_deref(), until.as_deref()),
        ));
        match checked {
            Ok(true) => std::process::exit(0),
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2)
            }
        }
    }
    if let Err(e) = rt.block_on(sluice_control::run(settings)) {
        eprintln!("error: {e:#}");
        std::process::exit(1)
    }
}
