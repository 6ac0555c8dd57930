//! Where the gateway config comes from: a directory (re-read when the file
//! changes) or a Git repository kept in sync with the `git` command (cloned
//! once, then fetched and reset to the branch head on an interval and on the
//! push webhook). Whatever is read is offered to the [`Publisher`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::publish::{Outcome, Publisher};
use crate::settings::ConfigSource;

/// How often a directory's file is checked for a change.
const DIR_POLL: Duration = Duration::from_millis(500);

/// How long a sync waits for another control process's sync to finish.
const SYNC_LOCK_WAIT: Duration = Duration::from_secs(60);

pub struct Syncer {
    source: ConfigSource,
    publisher: Arc<Publisher>,
    db: crate::db::Db,
    /// Woken by `POST /v1/sync`.
    pub wake: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("another control process has been syncing for {0:?}")]
    Busy(Duration),
}

impl Syncer {
    pub fn new(source: ConfigSource, publisher: Arc<Publisher>, db: crate::db::Db) -> Arc<Self> {
        Arc::new(Self {
            source,
            publisher,
            db,
            wake: Notify::new(),
        })
    }

    /// Read the source once and offer what it holds. Control processes
    /// sharing a database take turns: one pulls and publishes at a time,
    /// and the next one, after it, finds the same commit already live.
    pub async fn sync(&self) -> Result<Outcome, SyncError> {
        let deadline = tokio::time::Instant::now() + SYNC_LOCK_WAIT;
        let mut waited = false;
        let turn = loop {
            if let Some(t) = self.db.try_exclusive("config-sync").await? {
                break t;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SyncError::Busy(SYNC_LOCK_WAIT));
            }
            if !waited {
                tracing::info!("config sync waits: another control process is syncing");
                waited = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let out = self.sync_alone().await;
        turn.release().await;
        out
    }

    async fn sync_alone(&self) -> Result<Outcome, SyncError> {
        let (path, origin) = match &self.source {
            ConfigSource::Dir(d) => {
                let p = d.path.join(&d.file);
                let origin = format!("dir:{}", p.display());
                (p, origin)
            }
            ConfigSource::Git(g) => {
                let commit = git_pull(&g.url, &g.branch, &g.checkout).await?;
                (g.checkout.join(&g.file), format!("git:{commit}"))
            }
        };
        let yaml = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| SyncError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(self.publisher.offer(yaml, origin).await?)
    }

    /// Keep syncing: on file change (dir), on the interval (git), and
    /// whenever woken.
    pub async fn run(self: Arc<Self>) {
        let interval = match &self.source {
            ConfigSource::Dir(_) => DIR_POLL,
            ConfigSource::Git(g) => Duration::from_secs(g.interval_s.max(1)),
        };
        let mut stamp = self.stamp();
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {
                    if matches!(self.source, ConfigSource::Dir(_)) {
                        let now = self.stamp();
                        if now == stamp {
                            continue;
                        }
                        stamp = now;
                    }
                }
            }
            if let Err(e) = self.sync().await {
                tracing::error!(error = %e, "config sync failed; the last good version stays live");
            }
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match &self.source {
            ConfigSource::Dir(d) => std::fs::metadata(d.path.join(&d.file))
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
            ConfigSource::Git(_) => None,
        }
    }
}

/// Clone `url` into `checkout` if it is not there yet, else fetch `branch`
/// and reset to it (the checkout is control's own: local edits are
/// discarded). Returns the commit now checked out.
async fn git_pull(url: &str, branch: &str, checkout: &Path) -> Result<String, SyncError> {
    if !checkout.join(".git").exists() {
        if let Some(parent) = checkout.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        let target = checkout.display().to_string();
        git(
            None,
            &[
                "clone",
                "--quiet",
                "--single-branch",
                "--branch",
                branch,
                url,
                &target,
            ],
        )
        .await?;
    } else {
        git(Some(checkout), &["fetch", "--quiet", "origin", branch]).await?;
        git(
            Some(checkout),
            &["reset", "--quiet", "--hard", "FETCH_HEAD"],
        )
        .await?;
    }
    let head = git(Some(checkout), &["rev-parse", "HEAD"]).await?;
    Ok(head.trim().to_owned())
}

async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, SyncError> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(PathBuf::from(d));
    }
    // Never prompt for credentials: a sync must fail, not hang.
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| SyncError::Git {
            args: args.join(" "),
            message: "timed out".into(),
        })?
        .map_err(|e| SyncError::Git {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SyncError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
