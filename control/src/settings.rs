//! The control process's own settings (`control.yaml`): where it listens,
//! where the gateway config comes from, its database, the people who may
//! sign in to the inbox, Slack and the audit webhook. Secrets are never
//! written here: they are named by environment variable or file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The address people and gateways use to reach control; inbox links
    /// point here. Default `http://<listen>`.
    pub public_url: Option<String>,
    /// Where approvals, the audit trail, published versions, sign-ins and
    /// gateway acknowledgements are kept: a SQLite file (one control
    /// process), or `{ postgres: URL, password: {env|file} }` for several
    /// control processes sharing one database.
    pub database: DatabaseSettings,
    pub config: RawConfigSource,
    /// The token gateways present (`Authorization: Bearer`).
    pub gateway_token: Secret,
    #[serde(default)]
    pub users: Vec<User>,
    /// Inbox sign-ins last this long. Default 12 hours.
    pub session_ttl_s: Option<u64>,
    #[serde(default)]
    pub slack: Option<Slack>,
    #[serde(default)]
    pub audit: AuditSettings,
    /// Sign-in to control's pages with the organisation's identity provider
    /// (OpenID Connect, authorization code with PKCE); personal tokens keep
    /// working beside it.
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
    /// Roles whose users may pin (approve) and reject tool definitions.
    /// Default `[admin]`.
    #[serde(default = "default_definition_approvers")]
    pub definition_approvers: Vec<String>,
}

/// Where the store is: `database: path/to/control.db` or
/// `database: { postgres: "postgres://user@host/db", password: {env: …} }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum DatabaseSettings {
    /// A SQLite file: one control process.
    File(std::path::PathBuf),
    /// A PostgreSQL database: any number of control processes.
    Postgres(PostgresSettings),
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// A libpq URL or key=value string, without a password.
    pub postgres: String,
    /// The password, from the environment or a file.
    pub password: Option<Secret>,
    /// The CA that signed the server's certificate (PEM). With it the
    /// connection is TLS (`sslmode=require` whatever the URL says), the
    /// server's certificate verified against this CA and the host name;
    /// `sslmode=require` without it is refused.
    pub ca_file: Option<PathBuf>,
}

/// The identity provider people sign in with.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer; its `/.well-known/openid-configuration` is read.
    pub issuer: String,
    pub client_id: String,
    /// For a confidential client (HTTP Basic at the token endpoint); a
    /// public client relies on PKCE alone.
    pub client_secret: Option<Secret>,
    /// Default `[openid, profile, email]`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The sign-in button's text. Default: the issuer.
    pub label: Option<String>,
    /// The claim naming the person in control's pages and audit of
    /// decisions. Default `email` (`sub` when absent).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// The claim with the subject the gateway knows them by (self-approval
    /// check). Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim listing their roles. Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim listing the tenants they serve (`*` for all). Default
    /// `tenants`.
    #[serde(default = "default_tenants_claim")]
    pub tenants_claim: String,
}

fn default_oidc_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}
fn default_name_claim() -> String {
    "email".to_owned()
}
fn default_subject_claim() -> String {
    "sub".to_owned()
}
fn default_roles_claim() -> String {
    "roles".to_owned()
}
fn default_tenants_claim() -> String {
    "tenants".to_owned()
}

fn default_definition_approvers() -> Vec<String> {
    vec!["admin".to_owned()]
}

/// `config: { dir: {...} }` or `config: { git: {...} }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfigSource {
    pub dir: Option<DirSource>,
    pub git: Option<GitSource>,
}

/// A directory holding the gateway config; re-read when the file changes.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirSource {
    pub path: PathBuf,
    #[serde(default = "default_file")]
    pub file: String,
}

/// A Git repository kept in sync: cloned into `checkout`, pulled every
/// `interval_s` and on `POST /v1/sync` (a push webhook). Credentials come
/// from the environment's Git setup (SSH key, credential helper), never
/// from this file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    pub url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default = "default_file")]
    pub file: String,
    pub checkout: PathBuf,
    #[serde(default = "default_interval")]
    pub interval_s: u64,
}

#[derive(Debug, Clone)]
pub enum ConfigSource {
    Dir(DirSource),
    Git(GitSource),
}

fn default_file() -> String {
    "gateway.yaml".into()
}
fn default_branch() -> String {
    "main".into()
}
fn default_interval() -> u64 {
    30
}

/// A secret named, never written: `{ env: NAME }` or `{ file: /path }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl Secret {
    pub fn read(&self) -> anyhow::Result<String> {
        let v = match (&self.env, &self.file) {
            (Some(name), None) => std::env::var(name)
                .map_err(|_| anyhow::anyhow!("environment variable {name} is not set"))?,
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                .trim_end()
                .to_owned(),
            _ => anyhow::bail!("name the secret with exactly one of `env` or `file`"),
        };
        anyhow::ensure!(!v.is_empty(), "secret {self:?} is empty");
        Ok(v)
    }
}

/// Someone who may sign in to the inbox and decide approvals.
#[derive(Debug, Clone, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// Hex SHA-256 of the user's sign-in token (the token itself lives with
    /// the user). `printf %s "$TOKEN" | sha256sum`.
    pub token_sha256: String,
    /// The subject the gateway knows this person as, for the self-approval
    /// check. Default: `name`.
    pub subject: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tenants whose approvals this user may decide; `*` for all.
    #[serde(default)]
    pub tenants: Vec<String>,
}

impl User {
    pub fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.name)
    }
    /// Has one of `roles`.
    pub fn has_role(&self, roles: &[String]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }

    pub fn serves_tenant(&self, tenant: Option<&str>) -> bool {
        // Without tenants every approval is in one space.
        tenant.is_none()
            || self
                .tenants
                .iter()
                .any(|t| t == "*" || Some(t.as_str()) == tenant)
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// The app's signing secret, to verify interaction requests.
    pub signing_secret: Secret,
    /// Slack user id → control user name.
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, String>,
    /// An incoming-webhook URL (a secret: it lets anyone post) where each
    /// new approval request is announced with Approve / Deny buttons.
    pub notify: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Events older than this are deleted. Default 90 days.
    pub retention_days: Option<u64>,
    pub webhook: Option<Webhook>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Events waiting for delivery; beyond it the oldest are dropped and
    /// counted. Default 10,000.
    pub backlog: Option<usize>,
    /// Signs each delivery: `X-Sluice-Signature: sha256=<hex HMAC of the body>`.
    pub secret: Option<Secret>,
}

impl Settings {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let s: Settings =
            serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        s.check()?;
        Ok(s)
    }

    /// The config source the settings name.
    pub fn source(&self) -> anyhow::Result<ConfigSource> {
        match (&self.config.dir, &self.config.git) {
            (Some(d), None) => Ok(ConfigSource::Dir(d.clone())),
            (None, Some(g)) => Ok(ConfigSource::Git(g.clone())),
            _ => anyhow::bail!("config: name exactly one of `dir` or `git`"),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        self.source()?;
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            anyhow::ensure!(
                names.insert(u.name.as_str()),
                "users[{i}]: name `{}` used twice",
                u.name
            );
            anyhow::ensure!(
                u.token_sha256.len() == 64 && u.token_sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "users[{i}].token_sha256: expected 64 hex characters (the SHA-256 of the token, not the token)"
            );
        }
        if let Some(s) = &self.slack {
            for (id, name) in &s.users {
                anyhow::ensure!(
                    names.contains(name.as_str()),
                    "slack.users.{id}: no user named `{name}`"
                );
            }
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_s.unwrap_or(12 * 3600))
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.audit.retention_days.unwrap_or(90) * 86_400)
    }
}

/// The JSON Schema of control's settings file, derived from the types they
/// are read into.
pub fn schema() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(Settings)).unwrap_or_default();
    s["title"] = "Sluice control settings".into();
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_settings_load() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/control.yaml");
        let s = super::Settings::load(&path).expect("example is valid");
        assert!(matches!(s.source(), Ok(super::ConfigSource::Git(_))));
        assert_eq!(s.users.len(), 2);
        assert_eq!(s.public_url(), "https://sluice-control.example.internal");
    }

    #[test]
    fn a_token_instead_of_its_hash_is_refused() {
        let yaml = "listen: \"127.0.0.1:1\"\ndatabase: x.db\nconfig: { dir: { path: . } }\n\
                    gateway_token: { env: T }\nusers: [{ name: a, token_sha256: my-token }]\n";
        let s: super::Settings = serde_yaml::from_str(yaml).expect("parses");
        let e = s.check().expect_err("refused");
        assert!(e.to_string().contains("token_sha256"), "{e}");
    }
}
