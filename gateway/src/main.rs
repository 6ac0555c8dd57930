//! `sluice-gateway`: parse flags, validate or build the server, run it.
//! A plain `fn main`: Pingora owns the runtimes.

use clap::Parser;
use sluice_gateway::cli::Cli;
use sluice_gateway::{reload, server};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,pingora_core=warn,pingora_proxy=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // One JSON object per line for log pipelines; readable text otherwise.
    if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    if let Some(sluice_gateway::cli::Command::Openapi {
        action: sluice_gateway::cli::OpenApi::Import { spec, source },
    }) = &cli.command
    {
        use std::io::Write;
        match sluice_gateway::cli::openapi_import(spec, source) {
            Ok(yaml) => {
                let _ = std::io::stdout().write_all(yaml.as_bytes());
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1)
            }
        }
    }
    if cli.print_schema {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{:#}", sluice_config::schema());
        std::process::exit(0)
    }
    let control = match cli.control() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    };
    let source = match &control {
        Some(c) => reload::Source::Control(c.clone()),
        None => cli.source(),
    };
    if cli.validate {
        match reload::validate(&source) {
            Ok(s) => {
                println!(
                    "config is valid: {} routes, version {}",
                    s.routes.len(),
                    s.version
                );
                std::process::exit(0)
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("error: {e}");
                }
                std::process::exit(1)
            }
        }
    }
    let binds = match sluice_gateway::binds::Binds::parse(&cli.binds) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    };
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let server = server::build(server::Options {
        source,
        threads,
        upgrade: cli.upgrade,
        control,
        control_wait: std::time::Duration::from_secs(cli.control_wait_s),
        binds,
    });
    match server {
        Ok(s) => s.run_forever(),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1)
        }
    }
}
