//! The PostgreSQL engine: connecting (with the password from a secret
//! reference), running the schema's migrations, binding
//! [`Value`]s, transaction-scoped advisory locks, `NOTIFY`/`LISTEN`
//! between control processes, and the session lock one process holds
//! while it pulls from Git.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{schema, DbError, Row, ToParam, Topic, Value};
use crate::settings::PostgresSettings;

/// The session lock held while migrating, so replicas starting together
/// migrate once.
const MIGRATION_LOCK: i64 = 0x51_u64 as i64 * 1_000_003;

/// Where the database is, how to sign in, and the TLS to reach it with.
#[derive(Clone)]
pub(super) struct Target(
    postgres::Config,
    Option<tokio_postgres_rustls::MakeRustlsConnect>,
);

/// TLS trusting only `ca_file`'s certificates (and checking the host name).
fn tls(ca_file: &std::path::Path) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| anyhow::anyhow!("database.ca_file {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| anyhow::anyhow!("database.ca_file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("database.ca_file: {e}"))?;
    }
    anyhow::ensure!(!roots.is_empty(), "database.ca_file holds no certificate");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl Target {
    pub(super) fn new(s: &PostgresSettings) -> anyhow::Result<Self> {
        let mut config: postgres::Config = s
            .postgres
            .parse()
            .map_err(|e| anyhow::anyhow!("database.postgres: {e}"))?;
        if config.get_password().is_some() {
            anyhow::bail!(
                "database.postgres: a password is a secret; name it in database.password (env or file)"
            );
        }
        if let Some(p) = &s.password {
            let pw = p
                .read()
                .map_err(|e| anyhow::anyhow!("database.password: {e}"))?;
            config.password(pw);
        }
        if config.get_application_name().is_none() {
            config.application_name("sluice-control");
        }
        // A database that stops answering fails calls instead of hanging
        // them: bounded connect, TCP timeouts, and a statement timeout.
        config
            .connect_timeout(Duration::from_secs(5))
            .tcp_user_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(10))
            .options("-c statement_timeout=15000");
        let wants_tls = config.get_ssl_mode() == postgres::config::SslMode::Require;
        let tls = match (&s.ca_file, wants_tls) {
            (Some(ca), _) => Some(tls(ca)?),
            (None, true) => anyhow::bail!(
                "database.postgres asks for TLS (sslmode=require): name the server's CA in database.ca_file"
            ),
            (None, false) => None,
        };
        if tls.is_some() && !wants_tls {
            // A CA given means TLS, never a silent fall back to plain text.
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        Ok(Self(config, tls))
    }

    pub(super) fn connect(&self) -> Result<PgConn, DbError> {
        let client = match &self.1 {
            Some(tls) => self.0.connect(tls.clone())?,
            None => self.0.connect(NoTls)?,
        };
        Ok(PgConn {
            client: Some(client),
            statements: HashMap::new(),
        })
    }

    pub(super) fn connect_and_migrate(&self) -> anyhow::Result<PgConn> {
        let mut c = self.connect()?;
        let client = c.client();
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let migrated = migrate(client);
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
        migrated?;
        Ok(c)
    }

    pub(super) fn try_exclusive(&self, name: &str) -> Result<Option<Exclusive>, DbError> {
        let mut c = self.connect()?;
        let got: bool = c
            .client()
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&name])?
            .get(0);
        Ok(got.then(|| Exclusive(Some(c))))
    }

    /// A thread of its own holding a `LISTEN` connection; made again with
    /// backoff when it breaks.
    pub(super) fn listen(self, on: impl Fn(Topic) + Send + 'static) {
        std::thread::spawn(move || {
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.listen_once(&on) {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => tracing::warn!(error = %e, "database notifications interrupted"),
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    fn listen_once(&self, on: &impl Fn(Topic)) -> Result<(), DbError> {
        let mut c = self.connect()?;
        let client = c.client();
        let listen: String = Topic::ALL
            .iter()
            .map(|t| format!("LISTEN {};", t.channel()))
            .collect();
        client.batch_execute(&listen)?;
        // Whatever happened while nobody listened.
        for t in Topic::ALL {
            on(t);
        }
        loop {
            let mut seen = Vec::new();
            {
                let mut n = client.notifications();
                let mut it = n.timeout_iter(Duration::from_secs(5));
                while let Some(note) = postgres::fallible_iterator::FallibleIterator::next(&mut it)?
                {
                    seen.push(note.channel().to_owned());
                }
            }
            for t in Topic::ALL {
                if seen.iter().any(|ch| ch == t.channel()) {
                    on(t);
                }
            }
            if client.is_closed() {
                return Ok(());
            }
            // An idle connection that died quietly shows here.
            client.is_valid(Duration::from_secs(5))?;
        }
    }
}

/// The first schema and every change after it, in PostgreSQL's types;
/// `sluice_schema` says how many steps ran.
fn migrate(client: &mut Client) -> Result<(), DbError> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)")?;
    let done: i64 = client
        .query_opt("SELECT version FROM sluice_schema", &[])?
        .map_or(0, |r| r.get(0));
    let steps = std::iter::once(schema::BASE).chain(schema::MIGRATIONS.iter().copied());
    for (i, step) in steps.enumerate().skip(done.max(0) as usize) {
        let mut tx = client.transaction()?;
        tx.batch_execute(&schema::for_postgres(step))?;
        tx.execute("DELETE FROM sluice_schema", &[])?;
        tx.execute(
            "INSERT INTO sluice_schema (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

/// A session lock held on a connection of its own; released when dropped
/// (the connection closes) or with [`Exclusive::release`].
pub struct Exclusive(Option<PgConn>);

impl Exclusive {
    pub(super) fn local() -> Self {
        Self(None)
    }

    pub async fn release(mut self) {
        if let Some(c) = self.0.take() {
            let _ = tokio::task::spawn_blocking(move || drop(c)).await;
        }
    }
}

/// One PostgreSQL connection and the statements prepared on it.
pub struct PgConn {
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

impl Drop for PgConn {
    /// The client owns a runtime, which may not be dropped on an async
    /// thread.
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            std::thread::spawn(move || drop(c));
        }
    }
}

/// `?1` → `$1`: the one placeholder form both engines' callers write.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(ch);
        }
    }
    out
}

impl PgConn {
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("a live PgConn has a client")
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client().prepare(&numbered(sql))?;
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    pub(super) fn execute(&mut self, sql: &str, p: &[&dyn ToParam]) -> Result<u64, DbError> {
        let st = self.statement(sql)?;
        let binds = bind(p);
        let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as _).collect();
        Ok(self.client().execute(&st, &refs)?)
    }

    pub(super) fn query(&mut self, sql: &str, p: &[&dyn ToParam]) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        let binds = bind(p);
        let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as _).collect();
        let rows = self.client().query(&st, &refs)?;
        rows.iter().map(read_row).collect()
    }

    pub(super) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.client().batch_execute(sql)?)
    }

    pub(super) fn xact_lock(&mut self, key: &str) -> Result<(), DbError> {
        self.query(
            "SELECT pg_advisory_xact_lock(hashtext(?1))",
            crate::params![key],
        )?;
        Ok(())
    }

    pub(super) fn notify(&mut self, topic: Topic, payload: &str) -> Result<(), DbError> {
        self.query(
            "SELECT pg_notify(?1, ?2)",
            crate::params![topic.channel(), payload],
        )?;
        Ok(())
    }
}

fn read_row(r: &postgres::Row) -> Result<Row, DbError> {
    let mut cols = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::VOID {
            None
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(DbError::Decode(format!("column {i} of type {ty}")));
        };
        cols.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(cols))
}

/// A value bound as whatever type the server inferred for its parameter.
#[derive(Debug)]
struct Bind(Value);

fn bind(p: &[&dyn ToParam]) -> Vec<Bind> {
    p.iter().map(|v| Bind(v.to_value())).collect()
}

impl ToSql for Bind {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Int(i) if *ty == Type::FLOAT8 => (*i as f64).to_sql(ty, out),
            Value::Int(i) => i.to_string().as_str().to_sql(ty, out),
            Value::Real(f) if *ty == Type::FLOAT8 => f.to_sql(ty, out),
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            v => Err(format!("{v:?} for a parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_in_the_url_is_refused_without_being_repeated() {
        for url in [
            "postgres://sluice:hunter2@db/sluice",
            "host=db user=sluice password=hunter2",
        ] {
            let s = super::PostgresSettings {
                postgres: url.into(),
                password: None,
                ca_file: None,
            };
            let e = super::Target::new(&s).err().expect("refused").to_string();
            assert!(e.contains("database.password"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let plain = super::PostgresSettings {
            postgres: "postgres://sluice@db/sluice".into(),
            password: None,
            ca_file: None,
        };
        assert!(super::Target::new(&plain).is_ok());
        // TLS asked for with no CA to check the server against: refused,
        // never TLS that trusts whoever answers.
        let unverified = super::PostgresSettings {
            postgres: "postgres://sluice@db/sluice?sslmode=require".into(),
            password: None,
            ca_file: None,
        };
        let e = super::Target::new(&unverified)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("database.ca_file"), "{e}");
    }

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            super::numbered("SELECT a FROM t WHERE b = ?1 AND c IS ?12 OR d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c IS $12 OR d = '?'"
        );
    }
}
