//! Control's store: one SQLite file (the embedded default) or a PostgreSQL
//! database that several control processes share. Callers write SQL once,
//! with `?1`-style parameters and the subset both engines read the same
//! way; [`Conn`] binds and reads values for whichever engine is behind it.
//! Work runs on the blocking pool, so the async runtime never waits on the
//! database.

mod pg;
mod schema;
mod sqlite;

use std::sync::{Arc, Mutex};

use sluice_config::locks::Recover;

use crate::settings::DatabaseSettings;

pub use pg::Exclusive;

/// One value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A Rust value that binds as a statement parameter.
pub trait ToParam {
    fn to_value(&self) -> Value;
}

impl ToParam for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToParam for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToParam for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToParam for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToParam::to_value)
    }
}
impl ToParam for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// Statement parameters: `params![a, b]` binds `?1`, `?2`.
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn $crate::db::ToParam),*] as &[&dyn $crate::db::ToParam]
    };
}
pub use params;

/// A row read: its columns in order.
#[derive(Debug)]
pub struct Row(Vec<Value>);

/// A Rust value read from a column.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl Row {
    /// Column `i` as `T`; a NULL or a value of another type is an error.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        self.0
            .get(i)
            .and_then(T::from_value)
            .ok_or_else(|| DbError::Decode(format!("column {i}: {:?}", self.0.get(i))))
    }
}

/// A connection to either engine.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<pg::PgConn>),
}

impl Conn {
    /// Run a statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, p: &[&dyn ToParam]) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite(c) => sqlite::execute(c, sql, p),
            Conn::Pg(c) => c.execute(sql, p),
        }
    }

    pub fn query(&mut self, sql: &str, p: &[&dyn ToParam]) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Sqlite(c) => sqlite::query(c, sql, p),
            Conn::Pg(c) => c.query(sql, p),
        }
    }

    /// The first row, if any.
    pub fn query_opt(&mut self, sql: &str, p: &[&dyn ToParam]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, p)?.into_iter().next())
    }

    /// The first row; none is an error.
    pub fn query_one(&mut self, sql: &str, p: &[&dyn ToParam]) -> Result<Row, DbError> {
        self.query_opt(sql, p)?
            .ok_or_else(|| DbError::Decode("no row".into()))
    }

    /// Run `f` in one transaction: committed if it returns `Ok`, rolled
    /// back otherwise. SQLite takes the write lock at the start
    /// (`IMMEDIATE`), so a read-then-write inside cannot be overtaken.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let begin = match self {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Pg(_) => "BEGIN",
        };
        self.batch(begin)?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Serialise this transaction with every other one, on any control
    /// process, that locks the same `key`: a read-then-write on shared rows
    /// (PostgreSQL's transaction-scoped advisory lock; SQLite's
    /// `BEGIN IMMEDIATE` already holds the one write lock).
    pub fn lock(&mut self, key: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(_) => Ok(()),
            Conn::Pg(c) => c.xact_lock(key),
        }
    }

    /// Tell every control process sharing the database that `topic`
    /// changed (PostgreSQL `NOTIFY`, delivered at commit). One SQLite file
    /// has one process: it already knows.
    pub fn notify(&mut self, topic: Topic, payload: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(_) => Ok(()),
            Conn::Pg(c) => c.notify(topic, payload),
        }
    }

    /// Statements without parameters, run as one.
    pub fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(DbError::Sql),
            Conn::Pg(c) => c.batch(sql),
        }
    }
}

/// What control processes tell each other about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A config version was published.
    Published,
    /// An approval was filed, decided, used or expired.
    Approvals,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Published, Topic::Approvals];

    pub fn channel(self) -> &'static str {
        match self {
            Topic::Published => "sluice_published",
            Topic::Approvals => "sluice_approvals",
        }
    }
}

#[derive(Clone)]
pub struct Db(Arc<Inner>);

struct Inner {
    conn: Mutex<Option<Conn>>,
    /// How to connect again after PostgreSQL went away.
    pg: Option<pg::Target>,
}

impl Db {
    /// Open (and migrate) the store the settings name.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        match settings {
            DatabaseSettings::File(path) => Self::open(path),
            DatabaseSettings::Postgres(p) => {
                let target = pg::Target::new(p)?;
                let t = target.clone();
                let conn = tokio::task::spawn_blocking(move || t.connect_and_migrate()).await??;
                Ok(Self(Arc::new(Inner {
                    conn: Mutex::new(Some(Conn::Pg(Box::new(conn)))),
                    pg: Some(target),
                })))
            }
        }
    }

    /// A SQLite file.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Inner {
            conn: Mutex::new(Some(Conn::Sqlite(sqlite::open(path)?))),
            pg: None,
        })))
    }

    pub fn is_shared(&self) -> bool {
        self.0.pg.is_some()
    }

    /// Runs `f` with the connection on the blocking pool. A PostgreSQL
    /// connection that broke is made again on the next call.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, DbError> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = inner.conn.lock().recover();
            if slot.is_none() {
                if let Some(t) = &inner.pg {
                    *slot = Some(Conn::Pg(Box::new(t.connect()?)));
                    tracing::info!("database connection made again");
                }
            }
            let conn = slot.as_mut().ok_or(DbError::Unavailable)?;
            let out = f(conn);
            if let Some(Conn::Pg(c)) = slot.as_ref() {
                if c.is_closed() {
                    tracing::warn!("database connection lost");
                    *slot = None;
                }
            }
            out
        })
        .await
        .map_err(|_| DbError::Task)?
    }

    /// Hold `name` across control processes while `f` runs, or `None` at
    /// once if another process holds it (a session advisory lock on a
    /// connection of its own; dropped with that process).
    pub async fn try_exclusive(&self, name: &'static str) -> Result<Option<Exclusive>, DbError> {
        match &self.0.pg {
            None => Ok(Some(Exclusive::local())),
            Some(t) => {
                let t = t.clone();
                tokio::task::spawn_blocking(move || t.try_exclusive(name))
                    .await
                    .map_err(|_| DbError::Task)?
            }
        }
    }

    /// Call `on` with every topic another process (or this one) announced,
    /// and with all of them after the listening connection was made again
    /// (news may have been missed meanwhile). Nothing to do for SQLite.
    pub fn listen(&self, on: impl Fn(Topic) + Send + 'static) {
        if let Some(t) = &self.0.pg {
            t.clone().listen(on);
        }
    }
}

/// A random key kept in the store under `name`: made by the first control
/// process to ask, read by the rest.
pub async fn shared_key(db: &Db, name: &'static str) -> Result<String, DbError> {
    let fresh = format!("{}{}", random_id(), random_id());
    db.call(move |c| {
        c.execute(
            "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO NOTHING",
            params![name, fresh],
        )?;
        c.query_one("SELECT v FROM kv WHERE k = ?1", params![name])?
            .get(0)
    })
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database: {0}")]
    Pg(#[from] postgres::Error),
    #[error("database: unexpected value in {0}")]
    Decode(String),
    #[error("database unavailable")]
    Unavailable,
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
