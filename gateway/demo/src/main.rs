//! The `sluice-demo` binary: parses flags, serves until SIGINT/SIGTERM.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use sluice_demo::DemoOptions;

/// A small MCP server for Sluice's quick start, tests and load runs.
#[derive(Debug, Parser)]
#[command(name = "sluice-demo", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Answer POSTs with application/json instead of text/event-stream.
    #[arg(long)]
    json_response: bool,
    /// Milliseconds between the events of streaming tools (ticker).
    #[arg(long, default_value_t = 300)]
    sse_interval_ms: u64,
    /// Accept only these hosts in Host/Origin (repeatable); default: any.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Add N echo tools tool_000… to tools/list.
    #[arg(long, default_value_t = 0, value_name = "N")]
    extra_tools: usize,
    /// Serve the mock OpenAI-compatible model API (`/v1/...`) instead of MCP.
    #[arg(long)]
    llm: bool,
    /// With --llm: words (SSE chunks) in each answer.
    #[arg(long, default_value_t = 10)]
    llm_chunks: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal, not a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.llm {
        let server = sluice_demo::llm::spawn_llm(
            args.listen,
            sluice_demo::llm::LlmOptions {
                chunks: args.llm_chunks,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "sluice-demo llm listening on {}", server.url())?;
        stdout.flush()?;
        drop(stdout);
        wait_for_signal().await?;
        server.shutdown().await;
        return Ok(());
    }
    let opts = DemoOptions {
        json_response: args.json_response,
        sse_interval_ms: args.sse_interval_ms,
        allowed_hosts: (!args.allowed_hosts.is_empty()).then_some(args.allowed_hosts),
        extra_tools: args.extra_tools,
    };
    let server = sluice_demo::spawn(args.listen, opts)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Scripts wait for this exact line, so it goes to stdout and is flushed.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "sluice-demo listening on {}", server.url())?;
    stdout.flush()?;
    drop(stdout);
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
