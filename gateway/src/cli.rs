//! Command-line flags and the config source they select: a file, the
//! zero-config sidecar flags, or the embedded demo default.

use std::path::PathBuf;

use clap::Parser;

use crate::reload::Source;

/// The demo config the quick start serves when no config is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/examples/demo.yaml");

#[derive(Debug, Parser)]
#[command(
    name = "sluice-gateway",
    version,
    about = "Sluice: an inline gateway for MCP traffic"
)]
pub struct Cli {
    /// YAML config file; reloaded on change and on SIGHUP.
    #[arg(long, short = 'c', conflicts_with = "upstream")]
    pub config: Option<PathBuf>,
    /// Check the config, print every error, exit non-zero if any.
    #[arg(long)]
    pub validate: bool,
    /// Print the config file's JSON Schema (for editors) and exit.
    #[arg(long)]
    pub print_schema: bool,
    /// Zero-config sidecar: proxy this one MCP server (its URL's path is served as is).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Listen address for the sidecar mode.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Admin listener (health, readiness, metrics) for the sidecar mode.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: String,
    /// Host names clients use to reach the sidecar (DNS-rebinding protection); `*` for any.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Worker threads (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Take over the listeners of a running gateway (Pingora graceful upgrade).
    #[arg(long)]
    pub upgrade: bool,
    /// The control process to take config from, file approvals with and
    /// ship audit to (token in SLUICE_CONTROL_TOKEN); several replicas
    /// separated by commas, failed over in turn.
    #[arg(long, conflicts_with_all = ["config", "upstream"])]
    pub control: Option<String>,
    /// This gateway's name at control. Default: host name and process id.
    #[arg(long)]
    pub gateway_id: Option<String>,
    /// Where the last good config from control is kept, so a restart
    /// without control still serves.
    #[arg(long, default_value = "/var/lib/sluice")]
    pub state_dir: PathBuf,
    /// Listen somewhere else than the config says: `NAME=ADDRESS` for a
    /// listener by name, or `admin=ADDRESS` (repeatable). For replicas
    /// sharing one config from control on one host.
    #[arg(long = "bind", value_name = "NAME=ADDRESS")]
    pub binds: Vec<String>,
    /// With --control and no kept config: how long to wait for control at start.
    #[arg(long, default_value_t = 30)]
    pub control_wait_s: u64,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tasks other than serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// OpenAPI documents as HTTP tools.
    Openapi {
        #[command(subcommand)]
        action: OpenApi,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum OpenApi {
    /// Print every operation of SPEC (OpenAPI 3.0/3.1, JSON or YAML) as an
    /// HTTP tool of a source entry, YAML to paste under a server's
    /// `sources` and commit.
    Import {
        spec: PathBuf,
        /// The upstream the tools call (its URL is the API's base).
        #[arg(long)]
        source: String,
    },
}

/// `openapi import`: the source entry's YAML.
pub fn openapi_import(spec: &std::path::Path, upstream: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(spec).map_err(|e| anyhow::anyhow!("{}: {e}", spec.display()))?;
    let doc = sluice_config::openapi::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.display()))?;
    let imported = sluice_config::openapi::import(&doc)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.display()))?;
    sluice_config::openapi::to_yaml(&imported, upstream).map_err(|e| anyhow::anyhow!(e))
}

impl Cli {
    /// The control client, when `--control` is given.
    pub fn control(&self) -> anyhow::Result<Option<std::sync::Arc<crate::control::ControlClient>>> {
        let Some(url) = &self.control else {
            return Ok(None);
        };
        let token = std::env::var(crate::control::TOKEN_ENV).map_err(|_| {
            anyhow::anyhow!(
                "--control needs the gateway token in {}",
                crate::control::TOKEN_ENV
            )
        })?;
        let id = self.gateway_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "gateway".into());
            format!("{host}-{}", std::process::id())
        });
        Ok(Some(std::sync::Arc::new(
            crate::control::ControlClient::new(url, token, id, self.state_dir.clone())?,
        )))
    }

    pub fn source(&self) -> Source {
        if let Some(p) = &self.config {
            return Source::File(p.clone());
        }
        if let Some(u) = &self.upstream {
            return Source::Text(sidecar_yaml(
                u,
                &self.listen,
                &self.admin,
                &self.allowed_hosts,
            ));
        }
        Source::Text(EMBEDDED_DEFAULT.to_owned())
    }
}

/// The config the sidecar flags stand for: one listener, one upstream at the
/// URL's origin, one route `/` so every path maps to the same upstream path.
pub fn sidecar_yaml(upstream: &str, listen: &str, admin: &str, hosts: &[String]) -> String {
    let origin = match upstream.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        }
        None => upstream.to_owned(),
    };
    let mut allowed: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    if let Some(host) = listen.rsplit_once(':').map(|(h, _)| h) {
        if !host.is_empty() && host != "0.0.0.0" && host != "[::]" {
            allowed.push(host.to_owned());
        }
    }
    allowed.extend(hosts.iter().cloned());
    let allowed = allowed
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "listeners:\n  - {{ name: main, address: {listen:?} }}\nadmin: {{ address: {admin:?} }}\n\
         upstreams:\n  - {{ name: upstream, url: {origin:?} }}\n\
         routes:\n  - {{ name: upstream, path: /, upstream: upstream, hosts: {{ allowed_hosts: [{allowed}] }} }}\n"
    )
}
