//! Where snapshots come from and how they are swapped: the config source
//! (a file, or text built in memory), the first load, and the background
//! task that reloads on file change and SIGHUP, re-resolves upstream
//! addresses, and reloads listener certificates. An invalid config never
//! replaces a good one: it is logged and counted, and the old one serves on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sluice_config::{ConfigErrors, Snapshot};

use crate::state::{Runtime, Shared};
use crate::tls::ReloadingCert;
use crate::upstream;
use sluice_config::locks::Recover;

/// How often the file's metadata is checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How often upstream host names are resolved again.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub enum Source {
    File(PathBuf),
    /// Built in memory: the embedded default or the sidecar flags.
    Text(String),
    /// Pushed by the control process; the last good one is kept on disk.
    Control(Arc<crate::control::ControlClient>),
}

impl Source {
    pub fn read(&self) -> Result<String, ConfigErrors> {
        match self {
            Source::Text(t) => Ok(t.clone()),
            Source::Control(c) => crate::control::sync::read_cache(&c.state_dir)
                .map(|p| p.yaml)
                .ok_or_else(|| {
                    sluice_config::ConfigError::new(
                        "control",
                        format!("no config from control kept in {}", c.state_dir.display()),
                    )
                    .into()
                }),
            Source::File(p) => std::fs::read_to_string(p).map_err(|e| {
                sluice_config::ConfigError::new(p.display().to_string(), e.to_string()).into()
            }),
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match self {
            Source::File(p) => std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
            Source::Text(_) | Source::Control(_) => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    New,
    Unchanged,
}

pub struct Reloader {
    shared: Arc<Shared>,
    source: Source,
    generation: AtomicU64,
    stamp: Mutex<Option<(SystemTime, u64)>>,
    certs: Vec<(String, Arc<ReloadingCert>)>,
    /// Background tasks a load produced (JWKS refreshers), started by the
    /// service loop: the first load runs on a runtime that does not last.
    tasks: Mutex<Vec<crate::identity::RefreshTask>>,
    /// When control last answered (control source only).
    contact: crate::control::sync::Contact,
    /// Listeners moved from where the config says (`--bind`).
    binds: crate::binds::Binds,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>, source: Source) -> Self {
        Self {
            shared,
            stamp: Mutex::new(source.stamp()),
            source,
            generation: AtomicU64::new(0),
            certs: Vec::new(),
            tasks: Mutex::new(Vec::new()),
            contact: Default::default(),
            binds: Default::default(),
        }
    }

    /// Listeners to move on every snapshot (`--bind`).
    pub fn with_binds(mut self, binds: crate::binds::Binds) -> Self {
        self.binds = binds;
        self
    }

    /// Certificates to re-read on every applied snapshot, by listener name.
    pub fn with_certs(mut self, certs: Vec<(String, Arc<ReloadingCert>)>) -> Self {
        self.certs = certs;
        self
    }

    /// Read, validate and resolve the source; publish it if it is new.
    pub async fn reload(&self) -> Result<Applied, ConfigErrors> {
        // A rotated access log goes on in a new file.
        if let Some(log) = self.shared.access_log.get() {
            log.reopen();
        }
        let outcome = match self.source.read() {
            Ok(text) => self.try_apply(&text).await,
            Err(e) => Err(e),
        };
        self.record(&outcome);
        outcome
    }

    /// Validate and resolve `text` (pushed by control); publish it if new.
    pub async fn apply_text(&self, text: &str) -> Result<Applied, ConfigErrors> {
        let outcome = self.try_apply(text).await;
        self.record(&outcome);
        outcome
    }

    fn record(&self, outcome: &Result<Applied, ConfigErrors>) {
        let m = &self.shared.metrics;
        match &outcome {
            Ok(Applied::New) => {
                m.config_reloads.with_label_values(&["applied"]).inc();
                m.config_last_reload_ok.set(1);
            }
            Ok(Applied::Unchanged) => {
                m.config_reloads.with_label_values(&["unchanged"]).inc();
                m.config_last_reload_ok.set(1);
            }
            Err(e) => {
                m.config_reloads.with_label_values(&["invalid"]).inc();
                m.config_last_reload_ok.set(0);
                tracing::error!(errors = %e, "config refused; the previous snapshot keeps serving");
            }
        }
    }

    async fn try_apply(&self, text: &str) -> Result<Applied, ConfigErrors> {
        let current = self.shared.current();
        let next_gen = self.generation.load(Ordering::Acquire) + 1;
        let mut snapshot = sluice_config::load(text, next_gen)?;
        self.binds.apply(&mut snapshot)?;
        // Certificates rotate without a config change: re-read them on every load.
        for (name, cert) in &self.certs {
            if let Some(tls) = snapshot
                .listeners
                .iter()
                .find(|l| &l.name == name)
                .and_then(|l| l.tls.as_ref())
            {
                if let Err(e) = cert.reload(&tls.cert_file, &tls.key_file) {
                    return Err(sluice_config::ConfigError::new(
                        format!("listeners.{name}.tls"),
                        e,
                    )
                    .into());
                }
            }
        }
        if self.shared.is_ready() && snapshot.version.hash == current.snapshot.version.hash {
            return Ok(Applied::Unchanged);
        }
        if self.shared.is_ready() && snapshot.listeners != current.snapshot.listeners {
            tracing::warn!("listener changes take effect on restart or graceful upgrade");
        }
        let mut credentials = Vec::with_capacity(snapshot.upstreams.len());
        for (i, up) in snapshot.upstreams.iter().enumerate() {
            credentials.push(match &up.credential {
                None => None,
                Some(c) => Some(crate::inject::credential(c).map_err(|e| {
                    sluice_config::ConfigError::new(format!("upstreams[{i}].inject.credential"), e)
                })?),
            });
        }
        let mut tenant_credentials = Vec::with_capacity(snapshot.upstreams.len());
        for (i, up) in snapshot.upstreams.iter().enumerate() {
            let mut set = Vec::with_capacity(up.tenant_credentials.len());
            for (tenant, c) in &up.tenant_credentials {
                let cred = crate::inject::credential(c).map_err(|e| {
                    sluice_config::ConfigError::new(
                        format!("upstreams[{i}].inject.tenant_credentials.{tenant}"),
                        e,
                    )
                })?;
                set.push((tenant.as_str().into(), cred));
            }
            tenant_credentials.push(set);
        }
        let mut user_credentials = Vec::with_capacity(snapshot.upstreams.len());
        for (i, up) in snapshot.upstreams.iter().enumerate() {
            user_credentials.push(match &up.user_credentials {
                None => None,
                Some(u) => Some(Arc::new(crate::inject::user_credentials(u).map_err(
                    |e| {
                        sluice_config::ConfigError::new(
                            format!("upstreams[{i}].inject.user_credentials"),
                            e,
                        )
                    },
                )?)),
            });
        }
        let mut exchangers = Vec::with_capacity(snapshot.upstreams.len());
        for (i, up) in snapshot.upstreams.iter().enumerate() {
            exchangers.push(crate::token_exchange::exchanger(up).map_err(|e| {
                sluice_config::ConfigError::new(format!("upstreams[{i}].inject.token_exchange"), e)
            })?);
        }
        for w in &snapshot.warnings {
            tracing::warn!(warning = %w, "config warning");
        }
        // HTTP tools' input schemas compile now, or the config is refused.
        for (i, server) in snapshot.servers.iter().enumerate() {
            for (j, src) in server.sources.iter().enumerate() {
                let up = &snapshot.upstreams[src.upstream].name;
                for (k, t) in src.http_tools.iter().enumerate() {
                    let key = crate::federation::validators::key(next_gen, up, &t.name);
                    let schema = &t.definition["inputSchema"];
                    self.shared.http_validators.get(key, schema).map_err(|e| {
                        let at = format!("servers[{i}].sources[{j}].http_tools[{k}].input_schema");
                        sluice_config::ConfigError::new(at, e)
                    })?;
                }
            }
        }
        let auth = crate::access::authenticator(&snapshot)
            .map_err(|e| sluice_config::ConfigError::new("identity", e))?;
        if let Some(a) = &auth {
            // Keys fetched by the previous snapshot serve until ours arrive.
            if let Some(prev) = &current.auth {
                a.jwt.inherit_keys(&prev.jwt);
            }
            let client = crate::identity::http_client()
                .map_err(|e| sluice_config::ConfigError::new("identity.jwt", e.to_string()))?;
            if let Err(e) = a.jwt.refresh_all(&client).await {
                tracing::warn!(error = %e, "JWKS fetch failed; retrying in the background");
            }
            self.tasks
                .lock()
                .recover()
                .extend(a.jwt.refreshers(&client));
        }
        let sampler = crate::audit::Sampler::new(snapshot.audit.sample_rate);
        let limits =
            crate::limits::Limits::build(&snapshot, Some(&current.limits), &self.shared.metrics)
                .map_err(|e| sluice_config::ConfigError::new("rate_limits.shared_store", e))?;
        let llm = Arc::new(crate::llm::LlmState::build(&snapshot, Some(&current.llm)));
        let health = crate::resilience::build(&snapshot, &current.health, &self.shared.metrics);
        let mut secrets = Vec::with_capacity(snapshot.session_keys.len());
        for (i, k) in snapshot.session_keys.iter().enumerate() {
            secrets.push(
                crate::inject::read_secret(k).map_err(|e| {
                    sluice_config::ConfigError::new(format!("session_keys[{i}]"), e)
                })?,
            );
        }
        let session_keys = Arc::new(crate::federation::seal::Keys::new(
            &secrets,
            &crate::state::PROCESS_KEY,
        ));
        let peers = upstream::build_peers(&snapshot).await;
        self.generation.store(next_gen, Ordering::Release);
        tracing::info!(version = %snapshot.version, routes = snapshot.routes.len(), "snapshot applied");
        self.shared.publish(Runtime {
            snapshot: Arc::new(snapshot),
            peers,
            credentials,
            tenant_credentials,
            user_credentials,
            exchangers,
            auth,
            sampler,
            limits: Arc::new(limits),
            health,
            llm,
            session_keys,
        });
        Ok(Applied::New)
    }

    /// Resolve upstream names again; publish the same snapshot with new peers.
    async fn refresh_peers(&self) {
        let current = self.shared.current();
        let peers = upstream::build_peers(&current.snapshot).await;
        let changed = peers.len() != current.peers.len()
            || peers.iter().zip(&current.peers).any(|(a, b)| {
                a.as_ref().map(|p| p._address.clone()) != b.as_ref().map(|p| p._address.clone())
            });
        if changed {
            tracing::info!("upstream addresses changed");
            self.shared.publish(Runtime {
                snapshot: current.snapshot.clone(),
                peers,
                credentials: current.credentials.clone(),
                tenant_credentials: current.tenant_credentials.clone(),
                user_credentials: current.user_credentials.clone(),
                exchangers: current.exchangers.clone(),
                auth: current.auth.clone(),
                sampler: current.sampler,
                limits: current.limits.clone(),
                health: current.health.clone(),
                llm: current.llm.clone(),
                session_keys: current.session_keys.clone(),
            });
        }
    }

    fn file_changed(&self) -> bool {
        let now = self.source.stamp();
        let mut last = self.stamp.lock().recover();
        if now.is_some() && *last != now {
            *last = now;
            return true;
        }
        false
    }
}

#[async_trait]
impl crate::control::sync::ApplyConfig for Reloader {
    async fn apply_yaml(&self, yaml: &str) -> Result<(), ConfigErrors> {
        self.apply_text(yaml).await.map(|_| ())
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Source::Control(client) = &self.source else {
            return self.watch(shutdown).await;
        };
        let mut stop = shutdown.clone();
        let subscription = crate::control::sync::run(
            self,
            client,
            &self.contact,
            &self.shared.metrics,
            async move {
                let _ = stop.changed().await;
            },
        );
        futures::future::join(self.watch(shutdown), subscription).await;
    }
}

impl Reloader {
    /// File changes, SIGHUP, limiter upkeep and address re-resolution.
    async fn watch(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP reload unavailable");
                None
            }
        };
        let mut watch = tokio::time::interval(WATCH_INTERVAL);
        let mut resolve = tokio::time::interval(RESOLVE_INTERVAL);
        resolve.tick().await;
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    tracing::info!("SIGHUP: reloading config");
                    let _ = self.reload().await;
                }
                _ = watch.tick() => {
                    for task in self.tasks.lock().recover().drain(..) {
                        tokio::spawn(task);
                    }
                    let rt = self.shared.current();
                    self.shared.metrics.control_staleness.set(self.contact.staleness_s());
                    rt.limits.maintain(&self.shared.metrics);
                    self.shared.idle.sweep();
                    if last_sweep.elapsed() >= rt.snapshot.rate_limits.sweep_interval {
                        // Bounded memory whatever the key cardinality.
                        rt.limits.sweep(&self.shared.metrics);
                        rt.llm.sweep();
                        last_sweep = tokio::time::Instant::now();
                    }
                    if self.file_changed() {
                        tracing::info!("config file changed: reloading");
                        let _ = self.reload().await;
                    }
                }
                _ = resolve.tick() => self.refresh_peers().await,
            }
        }
    }
}

/// Validate a config source without serving it (`--validate`).
pub fn validate(source: &Source) -> Result<Snapshot, ConfigErrors> {
    sluice_config::load(&source.read()?, 1)
}
