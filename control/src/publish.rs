//! Publication of gateway configs: every candidate is validated with the
//! gateway's own rules (`sluice_config::load`); a valid one that differs from
//! the live one becomes the next version, is stored, and wakes every
//! subscribed gateway. An invalid one is refused with its errors and the
//! last good version stays live. Also the registry of which gateway runs
//! which version.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::db::{now_ms, rfc3339, Db, DbError};
use crate::metrics::Metrics;
use sluice_config::locks::Recover;

#[derive(Debug, Clone)]
pub struct Published {
    pub version: u64,
    /// The config's content hash, as the gateway computes it.
    pub hash: String,
    /// Where it came from: `dir:<path>` or `git:<commit>`.
    pub source: String,
    pub yaml: Arc<str>,
    pub published: String,
}

/// The last candidate that was refused, kept for the status page and API.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub source: String,
    pub errors: Vec<String>,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayState {
    pub id: String,
    pub version: Option<u64>,
    pub ok: bool,
    pub error: Option<String>,
    pub last_seen: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Published(u64),
    Unchanged(u64),
    Refused,
}

pub struct Publisher {
    db: Db,
    /// The live version; moved by this process's offers and by
    /// [`Publisher::refresh`] when another process published.
    tx: watch::Sender<Option<Arc<Published>>>,
    refused: Mutex<Option<Refused>>,
    metrics: Metrics,
}

impl Publisher {
    /// Starts from the last version stored, so versions only go up across
    /// restarts and gateways holding it are not sent it again.
    pub async fn open(db: Db, metrics: Metrics) -> Result<Arc<Self>, DbError> {
        let last = db.call(latest).await?;
        if let Some(p) = &last {
            metrics.config_version.set(p.version as i64);
        }
        let (tx, _) = watch::channel(last.map(Arc::new));
        Ok(Arc::new(Self {
            db,
            tx,
            refused: Mutex::new(None),
            metrics,
        }))
    }

    /// Another control process published: take its version if it is newer.
    pub async fn refresh(&self) -> Result<(), DbError> {
        let Some(last) = self.db.call(latest).await? else {
            return Ok(());
        };
        let newer = self.current().is_none_or(|c| c.version < last.version);
        if newer {
            tracing::info!(
                version = last.version,
                "config version published by another control process"
            );
            self.metrics.config_version.set(last.version as i64);
            self.tx.send_replace(Some(Arc::new(last)));
        }
        Ok(())
    }

    pub fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.tx.subscribe()
    }

    pub fn refused(&self) -> Option<Refused> {
        self.refused.lock().recover().clone()
    }

    /// Offer the live version's candidate again: the pins changed.
    pub async fn republish(&self) -> Result<Outcome, DbError> {
        let base = self
            .db
            .call(|c| {
                c.query_opt(
                    "SELECT COALESCE(candidate, yaml), source FROM published ORDER BY version DESC LIMIT 1",
                    crate::params![],
                )?
                .map(|r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))
                .transpose()
            })
            .await?;
        match base {
            Some((yaml, source)) => self.offer(yaml, source).await,
            None => Ok(Outcome::Refused),
        }
    }

    /// Validate `yaml`, with the pins operators made, and publish it if it
    /// is new.
    pub async fn offer(&self, yaml: String, source: String) -> Result<Outcome, DbError> {
        let candidate = yaml.clone();
        let pins = crate::definitions::Definitions::pins(&self.db).await?;
        let yaml = match crate::definitions::with_pins(&yaml, &pins) {
            Ok(y) => y,
            // Unreadable YAML: the loader below says why.
            Err(_) => yaml,
        };
        let snapshot = match sluice_config::load(&yaml, 1) {
            Ok(s) => s,
            Err(errors) => {
                let errors: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                tracing::error!(%source, errors = ?errors, "config refused; the last good version stays live");
                self.metrics
                    .config_offers
                    .with_label_values(&["refused"])
                    .inc();
                *self.refused.lock().recover() = Some(Refused {
                    source,
                    errors,
                    at: rfc3339(now_ms()),
                });
                return Ok(Outcome::Refused);
            }
        };
        // The next version, decided in the store: another control process
        // may have published meanwhile.
        let hash = snapshot.version.hash.clone();
        let now = now_ms();
        let yaml: Arc<str> = Arc::from(yaml.as_str());
        let stored = {
            let (yaml, source, hash) = (yaml.clone(), source.clone(), hash.clone());
            self.db
                .call(move |c| {
                    c.transaction(|c| {
                        c.lock("published")?;
                        let head = c.query_opt(
                            "SELECT version, hash FROM published ORDER BY version DESC LIMIT 1",
                            crate::params![],
                        )?;
                        let head = match head {
                            Some(r) => Some((r.get::<i64>(0)?, r.get::<String>(1)?)),
                            None => None,
                        };
                        if let Some((v, _)) = head.as_ref().filter(|(_, h)| *h == hash) {
                            return Ok(Err(*v as u64));
                        }
                        let version = head.map_or(1, |(v, _)| v + 1);
                        c.execute(
                            "INSERT INTO published (version, hash, source, yaml, published_ms, candidate)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            crate::params![version, hash, source, &*yaml, now, candidate],
                        )?;
                        // Keep the last 100 versions for history.
                        c.execute(
                            "DELETE FROM published WHERE version <= ?1",
                            crate::params![version - 100],
                        )?;
                        c.notify(crate::db::Topic::Published, &version.to_string())?;
                        Ok(Ok(version as u64))
                    })
                })
                .await?
        };
        let version = match stored {
            Ok(v) => v,
            Err(live) => {
                self.metrics
                    .config_offers
                    .with_label_values(&["unchanged"])
                    .inc();
                // Another process may have published it: serve it here too.
                self.refresh().await?;
                return Ok(Outcome::Unchanged(live));
            }
        };
        let published = Published {
            version,
            hash,
            source,
            yaml,
            published: rfc3339(now),
        };
        tracing::info!(version, source = %published.source, "config published");
        self.metrics
            .config_offers
            .with_label_values(&["published"])
            .inc();
        self.metrics.config_version.set(version as i64);
        *self.refused.lock().recover() = None;
        self.tx.send_replace(Some(Arc::new(published)));
        Ok(Outcome::Published(version))
    }

    /// A gateway reports the version it runs (or why it refused one).
    pub async fn ack(
        &self,
        gateway: String,
        version: Option<u64>,
        ok: bool,
        error: Option<String>,
    ) -> Result<(), DbError> {
        if !ok {
            tracing::warn!(%gateway, ?version, error = error.as_deref().unwrap_or(""), "gateway refused a published config");
        }
        let now = now_ms();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO gateways (id, version, ok, error, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET version = excluded.version, ok = excluded.ok,
                       error = excluded.error, last_seen_ms = excluded.last_seen_ms",
                    crate::params![gateway, version.map(|v| v as i64), ok, error, now],
                )
            })
            .await?;
        Ok(())
    }

    /// A gateway asked for config: it is alive.
    pub async fn seen(&self, gateway: String) -> Result<(), DbError> {
        let now = now_ms();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO gateways (id, version, ok, error, last_seen_ms) VALUES (?1, NULL, 1, NULL, ?2)
                     ON CONFLICT(id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                    crate::params![gateway, now],
                )
            })
            .await?;
        Ok(())
    }

    pub async fn gateways(&self) -> Result<Vec<GatewayState>, DbError> {
        self.db
            .call(|c| {
                c.query(
                    "SELECT id, version, ok, error, last_seen_ms FROM gateways ORDER BY id",
                    crate::params![],
                )?
                .iter()
                .map(|r| {
                    Ok(GatewayState {
                        id: r.get(0)?,
                        version: r.get::<Option<i64>>(1)?.map(|v| v as u64),
                        ok: r.get(2)?,
                        error: r.get(3)?,
                        last_seen: rfc3339(r.get(4)?),
                    })
                })
                .collect()
            })
            .await
    }
}

/// The newest stored version.
fn latest(c: &mut crate::db::Conn) -> Result<Option<Published>, DbError> {
    c.query_opt(
        "SELECT version, hash, source, yaml, published_ms FROM published ORDER BY version DESC LIMIT 1",
        crate::params![],
    )?
    .map(|r| {
        Ok(Published {
            version: r.get::<i64>(0)? as u64,
            hash: r.get(1)?,
            source: r.get(2)?,
            yaml: Arc::from(r.get::<String>(3)?),
            published: rfc3339(r.get(4)?),
        })
    })
    .transpose()
}
