//! Control's tables, written once in the SQL both engines read: the first
//! schema, then the changes after it in order. PostgreSQL gets them through
//! [`for_postgres`] (64-bit integers, a sequence for the one
//! auto-increment key).

pub const BASE: &str = "
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

/// Schema changes after the first, in order, each run once in a
/// transaction; a database records how many it has had (SQLite in `PRAGMA
/// user_version`, PostgreSQL in `sluice_schema`).
pub const MIGRATIONS: &[&str] = &[
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
    // 3: sign-in sessions and the form-token key in the store (shared by
    // control processes on PostgreSQL); the candidate each version was made
    // from, offered again when pins change.
    "CREATE TABLE IF NOT EXISTS sessions (
         id_hash TEXT PRIMARY KEY,
         user_name TEXT NOT NULL,
         expires_ms INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
     ALTER TABLE published ADD COLUMN candidate TEXT;",
    // 4: sign-ins through the identity provider: the ones under way
    // (state, PKCE verifier, nonce), and the person a session is for when
    // they are not in the settings.
    "CREATE TABLE IF NOT EXISTS oidc_logins (
         state_hash TEXT PRIMARY KEY,
         verifier TEXT NOT NULL,
         nonce TEXT NOT NULL,
         expires_ms INTEGER NOT NULL
     );
     ALTER TABLE sessions ADD COLUMN profile TEXT;",
];

/// `sql` in PostgreSQL's types: SQLite's `INTEGER` is 64-bit, PostgreSQL's
/// is not.
pub fn for_postgres(sql: &str) -> String {
    sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_gets_64_bit_integers_and_a_sequence() {
        let all: String = std::iter::once(super::BASE)
            .chain(super::MIGRATIONS.iter().copied())
            .map(super::for_postgres)
            .collect();
        assert!(!all.contains("INTEGER") && !all.contains("AUTOINCREMENT"));
        assert!(all.contains("id BIGSERIAL PRIMARY KEY"));
    }
}
