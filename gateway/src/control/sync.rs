//! The config subscription: long-poll control with the version held, apply
//! what arrives atomically, keep the last good one on disk, acknowledge the
//! version served (or why one was refused). When control is away the
//! gateway keeps serving, retries with jittered backoff, and exports how
//! stale it is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ControlClient, ControlError, Pushed};

/// How long one long-poll waits for a publication.
const POLL_WAIT: Duration = Duration::from_secs(25);
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn cache_path(dir: &Path) -> PathBuf {
    dir.join("control-config.json")
}

/// The last good config control sent, if one was kept.
pub fn read_cache(dir: &Path) -> Option<Pushed> {
    let text = std::fs::read_to_string(cache_path(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Keep `p` as the last good config: written aside, then renamed over, so
/// a crash mid-write leaves the previous one.
pub fn write_cache(dir: &Path, p: &Pushed) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".control-config.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(p)?)?;
    std::fs::rename(tmp, cache_path(dir))
}

/// First start without a cached config: ask control, retrying until
/// `deadline` passes.
pub async fn bootstrap(client: &ControlClient, within: Duration) -> anyhow::Result<Pushed> {
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.poll(None, Duration::ZERO).await {
            Ok(Some(p)) => {
                if let Err(e) = write_cache(&client.state_dir, &p) {
                    tracing::warn!(error = %e, "could not keep the config from control on disk");
                }
                return Ok(p);
            }
            Ok(None) => anyhow::bail!("control has no config published yet"),
            Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                tracing::warn!(error = %e, "waiting for control");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => anyhow::bail!(
                "no cached config in {} and control unreachable: {e}",
                client.state_dir.display()
            ),
        }
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// How current the served config is known to be, for the staleness metric.
#[derive(Default)]
pub struct Contact {
    /// When control last answered (ms since epoch); at start, when the
    /// kept copy was last confirmed.
    last_ms: AtomicU64,
    /// A subscription is live: the config is current by construction.
    connected: std::sync::atomic::AtomicBool,
}

impl Contact {
    fn up(&self, dir: &Path) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
        // The kept copy's mtime records the last confirmation, so a restart
        // without control reports staleness from there.
        if let Ok(f) = std::fs::File::options().append(true).open(cache_path(dir)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    fn down(&self, dir: &Path) {
        self.connected.store(false, Ordering::Relaxed);
        if self.last_ms.load(Ordering::Relaxed) == 0 {
            let confirmed = std::fs::metadata(cache_path(dir))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(now_ms(), |d| d.as_millis() as u64);
            self.last_ms.store(confirmed, Ordering::Relaxed);
        }
    }

    /// Seconds since the config was last known to be current; 0 while connected.
    pub fn staleness_s(&self) -> i64 {
        let last = self.last_ms.load(Ordering::Relaxed);
        if self.connected.load(Ordering::Relaxed) || last == 0 {
            return 0;
        }
        (now_ms().saturating_sub(last) / 1000) as i64
    }
}

/// What serves a config control pushed: the gateway's reloader.
#[async_trait::async_trait]
pub trait ApplyConfig: Sync {
    /// Build and swap in the config `yaml`; the errors say why it was refused.
    async fn apply_yaml(&self, yaml: &str) -> Result<(), sluice_config::ConfigErrors>;
}

/// Subscribe until `stop` resolves.
pub async fn run(
    reloader: &impl ApplyConfig,
    client: &ControlClient,
    contact: &Contact,
    metrics: &crate::metrics::Metrics,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut running = read_cache(&client.state_dir).map(|p| p.version);
    if let Some(v) = running {
        metrics.control_version.set(v as i64);
    }
    // The last version seen, served or refused: not asked for again.
    let mut seen = running;
    let mut acked = false;
    let mut backoff = MIN_BACKOFF;
    // The first poll answers at once, so the connection state is known early.
    let mut wait = Duration::ZERO;
    loop {
        let polled = tokio::select! {
            _ = &mut stop => return,
            r = client.poll(seen, wait) => r,
        };
        match polled {
            Ok(next) => {
                wait = POLL_WAIT;
                contact.up(&client.state_dir);
                metrics.control_connected.set(1);
                backoff = MIN_BACKOFF;
                if let Some(p) = next {
                    seen = Some(p.version);
                    match reloader.apply_yaml(&p.yaml).await {
                        Ok(_) => {
                            tracing::info!(version = p.version, "config from control applied");
                            if let Err(e) = write_cache(&client.state_dir, &p) {
                                tracing::warn!(error = %e, "could not keep the config from control on disk");
                            }
                            running = Some(p.version);
                            metrics.control_version.set(p.version as i64);
                            report(client, running, None).await;
                        }
                        Err(e) => {
                            tracing::error!(version = p.version, error = %e, "config from control refused; the previous one keeps serving");
                            let why = format!("version {} refused: {e}", p.version);
                            report(client, running, Some(&why)).await;
                        }
                    }
                    acked = true;
                } else if !acked {
                    report(client, running, None).await;
                    acked = true;
                }
            }
            Err(e) => {
                contact.down(&client.state_dir);
                metrics.control_connected.set(0);
                let wait = backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                if !matches!(e, ControlError::Unreachable(_)) || backoff == MIN_BACKOFF {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "control unavailable; serving the last good config");
                }
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn report(client: &ControlClient, version: Option<u64>, error: Option<&str>) {
    if let Err(e) = client.ack(version, error).await {
        tracing::warn!(error = %e, "could not acknowledge the config version to control");
    }
}
