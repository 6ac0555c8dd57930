//! The SQLite file behind control: one connection, used from the blocking
//! pool so the async runtime never waits on disk. WAL mode lets readers of
//! the inbox run while gateways write audit batches.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use sluice_config::locks::Recover;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS published (
    version INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    source TEXT NOT NULL,
    yaml TEXT NOT NULL,
    published_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gateways (
    id TEXT PRIMARY KEY,
    version INTEGER,
    ok INTEGER NOT NULL,
    error TEXT,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    tenant TEXT,
    subject TEXT NOT NULL,
    session TEXT,
    upstream TEXT NOT NULL,
    tool TEXT NOT NULL,
    tool_hash TEXT,
    arguments TEXT NOT NULL,
    args_hash TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    rule TEXT NOT NULL,
    approvers TEXT NOT NULL,
    allow_self INTEGER NOT NULL,
    gateway TEXT,
    request_id TEXT,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    reason TEXT,
    used_ms INTEGER,
    reported_ms INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_key ON approvals (subject, upstream, tool, args_hash);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals (state, created_ms);
CREATE TABLE IF NOT EXISTS audit (
    event_id TEXT PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    tenant TEXT,
    subject TEXT,
    upstream TEXT,
    target TEXT,
    method TEXT,
    decision TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time_ms);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, time_ms);
CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject, time_ms);
";

/// Schema changes after the first, in order; `PRAGMA user_version` says
/// how many a database has had. Each runs once, in a transaction.
const MIGRATIONS: &[&str] = &[
    // 1: audit events' place in their gateway's hash chain, and each
    // chain's head as last stored.
    "ALTER TABLE audit ADD COLUMN chain_id TEXT;
     ALTER TABLE audit ADD COLUMN chain_seq INTEGER;
     CREATE INDEX IF NOT EXISTS audit_chain ON audit (chain_id, chain_seq);
     CREATE TABLE IF NOT EXISTS audit_chains (
         id TEXT PRIMARY KEY,
         seq INTEGER NOT NULL,
         hash TEXT NOT NULL
     );",
    // 2: tool definitions reported by gateways, and the pins operators made.
    "CREATE TABLE IF NOT EXISTS definitions (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         upstream TEXT NOT NULL,
         tool TEXT NOT NULL,
         digest TEXT NOT NULL,
         definition TEXT NOT NULL,
         finding TEXT NOT NULL,
         reason TEXT,
         state TEXT NOT NULL,
         gateway TEXT NOT NULL,
         first_seen_ms INTEGER NOT NULL,
         decided_by TEXT,
         decided_ms INTEGER,
         UNIQUE (upstream, tool, digest)
     );
     CREATE INDEX IF NOT EXISTS definitions_state ON definitions (state, upstream, tool);",
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {step}\nPRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

#[derive(Clone)]
pub struct Db(Arc<Mutex<Connection>>);

impl Db {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Self(Arc::new(Mutex::new(conn))))
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().recover();
            f(&mut c).map_err(DbError::Sql)
        })
        .await
        .map_err(|_| DbError::Task)?
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database task failed")]
    Task,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// 128 random bits, hex.
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// RFC 3339 UTC with seconds, for pages and API answers.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = sluice_config::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses what [`rfc3339`] and the gateway write (`…T…Z`, optional millis).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let millis = match b.get(19) {
        Some(b'.') => n(20..23).unwrap_or(0),
        _ => 0,
    };
    let days = sluice_config::days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(d).ok()?);
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_round_trip() {
        for ms in [0, 1_700_000_000_000, 1_795_000_123_000, 951_782_400_000] {
            let s = super::rfc3339(ms);
            assert_eq!(super::parse_rfc3339(&s), Some(ms), "{s}");
        }
        assert_eq!(
            super::parse_rfc3339("2026-11-21T10:00:00.250Z"),
            Some(super::parse_rfc3339("2026-11-21T10:00:00Z").unwrap_or(0) + 250)
        );
        assert_eq!(super::parse_rfc3339("yesterday"), None);
    }
}
