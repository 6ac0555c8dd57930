//! `sluice-control`: the out-of-band process beside the gateways. It keeps
//! the gateway config (from a directory or a Git repository) and publishes
//! validated versions to subscribed gateways; it holds approval requests
//! and serves the inbox where people decide them; it stores the audit
//! trail gateways ship and fans it out to a webhook.
//!
//! Gateways never wait on control for a decision they can make alone: they
//! keep their last good snapshot when control is away. Approvals are the
//! one out-of-band wait, bounded by the rule's hold time.

pub mod api;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod db;
pub mod definitions;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod publish;
pub mod settings;
pub mod slack;
pub mod source;
pub mod web;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use settings::Settings;

/// Everything the handlers share.
pub struct App {
    pub settings: Settings,
    pub public_url: String,
    pub publisher: Arc<publish::Publisher>,
    pub syncer: Arc<source::Syncer>,
    pub approvals: Arc<approvals::Approvals>,
    pub audit: audit::AuditStore,
    pub definitions: definitions::Definitions,
    pub auth: auth::Auth,
    /// Sign-in with the identity provider, when configured.
    pub oidc: Option<oidc::Oidc>,
    /// The store, for what the handlers keep beside the modules' own.
    pub db: db::Db,
    pub metrics: metrics::Metrics,
    pub slack_secret: Option<String>,
    /// Keys the inbox's form tokens; made once per store.
    pub csrf_key: String,
}

/// How often pending approvals are checked for expiry.
const EXPIRY_TICK: Duration = Duration::from_millis(500);
/// How often old audit events are deleted.
const RETENTION_TICK: Duration = Duration::from_secs(3600);

/// Open the store, sync the config once, and serve until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let metrics = metrics::Metrics::new();
    let db = db::Db::connect(&settings.database).await?;
    let gateway_token = settings
        .gateway_token
        .read()
        .map_err(|e| anyhow::anyhow!("gateway_token: {e}"))?;
    let slack_secret = match &settings.slack {
        Some(s) => Some(
            s.signing_secret
                .read()
                .map_err(|e| anyhow::anyhow!("slack.signing_secret: {e}"))?,
        ),
        None => None,
    };
    let webhook = match &settings.audit.webhook {
        Some(w) => {
            let secret = match &w.secret {
                Some(s) => Some(
                    s.read()
                        .map_err(|e| anyhow::anyhow!("audit.webhook.secret: {e}"))?,
                ),
                None => None,
            };
            Some(Arc::new(webhook::Webhook::new(
                w.url.clone(),
                secret,
                w.backlog.unwrap_or(10_000),
                metrics.clone(),
            )))
        }
        None => None,
    };
    let public_url = settings.public_url();
    let publisher = publish::Publisher::open(db.clone(), metrics.clone()).await?;
    let syncer = source::Syncer::new(settings.source()?, publisher.clone(), db.clone());
    match syncer.sync().await {
        Ok(outcome) => tracing::info!(?outcome, "config source read"),
        Err(e) => {
            tracing::error!(error = %e, "config source unreadable at start; serving the last published version")
        }
    }
    let slack_notify = match settings.slack.as_ref().and_then(|s| s.notify.as_ref()) {
        Some(url) => Some(notify::SlackNotifier::start(
            url.read()
                .map_err(|e| anyhow::anyhow!("slack.notify: {e}"))?,
            metrics.clone(),
        )),
        None => None,
    };
    let approvals = approvals::Approvals::new(
        db.clone(),
        &public_url,
        metrics.clone(),
        webhook.clone(),
        slack_notify,
    );
    let audit = audit::AuditStore::new(db.clone(), metrics.clone(), webhook.clone());
    let auth = auth::Auth::new(
        &gateway_token,
        settings.users.clone(),
        db.clone(),
        settings.session_ttl(),
    );
    // One key for every control process on this store: a form rendered by
    // one is accepted by another.
    let csrf_key = db::shared_key(&db, "csrf").await?;
    // News from the other control processes on a shared database.
    {
        let (publisher, approvals) = (publisher.clone(), approvals.clone());
        let rt = tokio::runtime::Handle::current();
        db.listen(move |topic| match topic {
            db::Topic::Approvals => approvals.changed_elsewhere(),
            db::Topic::Published => {
                let publisher = publisher.clone();
                rt.spawn(async move {
                    if let Err(e) = publisher.refresh().await {
                        tracing::warn!(error = %e, "reading a version another control process published failed");
                    }
                });
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    tracing::info!(address = %listener.local_addr()?, %public_url, "control listening");
    let app = Arc::new(App {
        public_url,
        publisher,
        syncer: syncer.clone(),
        approvals: approvals.clone(),
        audit,
        definitions: definitions::Definitions::new(db.clone(), metrics.clone()),
        auth,
        oidc: match &settings.oidc {
            Some(o) => Some(oidc::Oidc::new(o.clone())?),
            None => None,
        },
        db: db.clone(),
        metrics,
        slack_secret,
        csrf_key,
        settings,
    });

    tokio::spawn(syncer.run());
    if let Some(w) = webhook {
        tokio::spawn(w.run());
    }
    tokio::spawn(async move {
        loop {
            if let Err(e) = approvals.expire().await {
                tracing::error!(error = %e, "approval expiry failed");
            }
            tokio::time::sleep(EXPIRY_TICK).await;
        }
    });
    let trim_app = app.clone();
    tokio::spawn(async move {
        loop {
            match trim_app.audit.trim(trim_app.settings.retention()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "audit events past retention deleted"),
                Err(e) => tracing::error!(error = %e, "audit retention failed"),
            }
            tokio::time::sleep(RETENTION_TICK).await;
        }
    });

    axum::serve(listener, api::router(app))
        .with_graceful_shutdown(shutdown())
        .await?;
    tracing::info!("control stopped");
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
