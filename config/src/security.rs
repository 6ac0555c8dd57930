//! The resolved identity, tenant, audit, injection and egress settings, with
//! their validation. Secrets stay references (`SecretRef`) here: they are
//! read by the gateway at load, never stored in the snapshot's text.

use std::net::IpAddr;

use crate::raw::*;
use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl SecretRef {
    pub(crate) fn from_raw(r: &RawSecretRef, path: &str, errs: &mut Vec<ConfigError>) -> Self {
        match (&r.env, &r.file) {
            (Some(v), None) if !v.is_empty() => SecretRef::Env(v.clone()),
            (None, Some(f)) if !f.is_empty() => SecretRef::File(f.clone()),
            _ => {
                errs.push(ConfigError::new(
                    path,
                    "give exactly one of env: NAME or file: PATH",
                ));
                SecretRef::Env(String::new())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub sha256: String,
    pub subject: String,
    pub tenants: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    JwksFile(String),
    JwksUrl(String),
    Hs256(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    pub issuer: String,
    pub keys: JwtKeys,
    pub algorithms: Vec<String>,
    pub tenant_claim: String,
    pub roles_claim: String,
    pub refresh_s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Authentication is on: some key or issuer is configured.
    pub enabled: bool,
    pub audience: String,
    pub authorization_servers: Vec<String>,
    pub api_keys: Vec<ApiKey>,
    pub jwt: Vec<JwtIssuer>,
    pub leeway_s: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub file: Option<String>,
    pub max_file_bytes: u64,
    pub keep_files: u32,
    pub sample_rate: f64,
    pub include_arguments: bool,
    pub redact: Vec<String>,
    pub queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub header: String,
    pub prefix: String,
    pub secret: SecretRef,
}

/// Where per-user secrets live: `dir/<subject>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub dir: String,
    pub header: String,
    pub prefix: String,
}

pub(crate) fn build_user_credentials(raw: &RawInjection) -> Option<UserCredentials> {
    raw.user_credentials.as_ref().map(|u| UserCredentials {
        dir: u.dir.clone(),
        header: u
            .header
            .clone()
            .unwrap_or_else(|| "authorization".into())
            .to_ascii_lowercase(),
        prefix: u.prefix.clone().unwrap_or_else(|| "Bearer ".into()),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRule {
    Net(IpAddr, u8),
    /// A host name, `*.` prefix allowed.
    Name(String),
}

impl EgressRule {
    fn parse(s: &str) -> Option<Self> {
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return (bits <= max).then_some(EgressRule::Net(ip, bits));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return Some(EgressRule::Net(ip, bits));
        }
        let valid = !s.is_empty()
            && s.trim_start_matches("*.")
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        valid.then(|| EgressRule::Name(s.to_ascii_lowercase()))
    }

    fn covers_ip(&self, ip: IpAddr) -> bool {
        match (self.clone(), ip) {
            (EgressRule::Net(IpAddr::V4(n), bits), IpAddr::V4(a)) => {
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(bits))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (EgressRule::Net(IpAddr::V6(n), bits), IpAddr::V6(a)) => {
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(bits))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    fn covers_name(&self, host: &str) -> bool {
        match self {
            EgressRule::Name(n) => match n.strip_prefix("*.") {
                Some(suffix) => host
                    .to_ascii_lowercase()
                    .strip_suffix(suffix)
                    .is_some_and(|p| p.ends_with('.')),
                None => n.eq_ignore_ascii_case(host),
            },
            EgressRule::Net(..) => false,
        }
    }
}

/// Addresses a name must never reach unless an IP rule allows them:
/// loopback, link-local (cloud metadata lives there), unspecified.
fn sensitive(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback() || v.is_link_local() || v.is_unspecified(),
        IpAddr::V6(v) => {
            v.is_loopback() || v.is_unspecified() || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The egress allowlist; empty allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress(pub Vec<EgressRule>);

impl Egress {
    /// May the gateway connect to `ip`, which `host` resolved to?
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        if self.0.iter().any(|r| r.covers_ip(ip)) {
            return true;
        }
        self.0.iter().any(|r| r.covers_name(host)) && !sensitive(ip)
    }
}

pub(crate) fn build_identity(raw: &RawConfig, errs: &mut Vec<ConfigError>) -> Identity {
    let id = &raw.identity;
    let mut api_keys = Vec::new();
    for (i, k) in id.api_keys.iter().enumerate() {
        let p = format!("identity.api_keys[{i}]");
        if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            errs.push(ConfigError::new(
                format!("{p}.sha256"),
                "must be the 64 hex digits of the key's SHA-256 (never the key itself)",
            ));
        }
        check_tenants(&k.tenants, &raw.tenants, &format!("{p}.tenants"), errs);
        check_roles(&k.roles, &raw.roles, &format!("{p}.roles"), errs);
        api_keys.push(ApiKey {
            id: k.id.clone(),
            sha256: k.sha256.to_ascii_lowercase(),
            subject: k.subject.clone(),
            tenants: k.tenants.clone(),
            roles: k.roles.clone(),
        });
    }
    let mut jwt = Vec::new();
    for (i, j) in id.jwt.iter().enumerate() {
        let p = format!("identity.jwt[{i}]");
        let keys = match (&j.jwks_file, &j.jwks_url, &j.hs256_secret) {
            (Some(f), None, None) => JwtKeys::JwksFile(f.clone()),
            (None, Some(u), None) => {
                if !(u.starts_with("https://")
                    || u.starts_with("http://127.")
                    || u.starts_with("http://localhost"))
                {
                    errs.push(ConfigError::new(
                        format!("{p}.jwks_url"),
                        "must be https (or loopback http)",
                    ));
                }
                JwtKeys::JwksUrl(u.clone())
            }
            (None, None, Some(s)) => {
                JwtKeys::Hs256(SecretRef::from_raw(s, &format!("{p}.hs256_secret"), errs))
            }
            _ => {
                errs.push(ConfigError::new(
                    &p,
                    "exactly one of jwks_file, jwks_url, hs256_secret",
                ));
                continue;
            }
        };
        let algorithms = if j.algorithms.is_empty() {
            match keys {
                JwtKeys::Hs256(_) => vec!["HS256".to_owned()],
                _ => vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()],
            }
        } else {
            j.algorithms.clone()
        };
        for a in &algorithms {
            let symmetric = a == "HS256";
            if !matches!(a.as_str(), "RS256" | "ES256" | "EdDSA" | "HS256") {
                errs.push(ConfigError::new(
                    format!("{p}.algorithms"),
                    format!("unsupported algorithm `{a}`"),
                ));
            } else if symmetric != matches!(keys, JwtKeys::Hs256(_)) {
                errs.push(ConfigError::new(
                    format!("{p}.algorithms"),
                    format!("`{a}` does not fit this issuer's key source (algorithm confusion)"),
                ));
            }
        }
        jwt.push(JwtIssuer {
            issuer: j.issuer.clone(),
            keys,
            algorithms,
            tenant_claim: j.tenant_claim.clone().unwrap_or_else(|| "tenant".into()),
            roles_claim: j.roles_claim.clone().unwrap_or_else(|| "roles".into()),
            refresh_s: j.refresh_s.unwrap_or(300).max(10),
        });
    }
    let enabled = !api_keys.is_empty() || !jwt.is_empty();
    if !jwt.is_empty() && id.audience.is_none() {
        errs.push(ConfigError::new(
            "identity.audience",
            "required with jwt issuers: tokens must be for this gateway",
        ));
    }
    Identity {
        enabled,
        audience: id.audience.clone().unwrap_or_default(),
        authorization_servers: id.authorization_servers.clone(),
        api_keys,
        jwt,
        leeway_s: id.leeway_s.unwrap_or(30),
    }
}

pub(crate) fn check_tenants(
    names: &[String],
    known: &[String],
    path: &str,
    errs: &mut Vec<ConfigError>,
) {
    for t in names {
        if !known.contains(t) {
            errs.push(ConfigError::new(path, format!("unknown tenant `{t}`")));
        }
    }
}

fn check_roles(names: &[String], known: &[RawRole], path: &str, errs: &mut Vec<ConfigError>) {
    for r in names {
        if !known.iter().any(|k| &k.name == r) {
            errs.push(ConfigError::new(path, format!("unknown role `{r}`")));
        }
    }
}

pub(crate) fn build_audit(raw: &RawAudit, errs: &mut Vec<ConfigError>) -> Audit {
    let rate = raw.sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&rate) {
        errs.push(ConfigError::new(
            "audit.sample_rate",
            "must be between 0 and 1",
        ));
    }
    for (i, p) in raw.redact.iter().enumerate() {
        if !p.starts_with('/') {
            errs.push(ConfigError::new(
                format!("audit.redact[{i}]"),
                "a JSON pointer starts with `/`",
            ));
        }
    }
    Audit {
        file: raw.file.clone(),
        max_file_bytes: raw.max_file_bytes.unwrap_or(100 << 20),
        keep_files: raw.keep_files.unwrap_or(5),
        sample_rate: rate,
        include_arguments: raw.include_arguments,
        redact: raw.redact.clone(),
        queue: raw.queue.unwrap_or(10_000).max(1),
    }
}

pub(crate) fn build_credential(
    raw: &RawInjection,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<Credential> {
    raw.credential.as_ref().map(|c| Credential {
        header: c
            .header
            .clone()
            .unwrap_or_else(|| "authorization".into())
            .to_ascii_lowercase(),
        prefix: c.prefix.clone().unwrap_or_else(|| "Bearer ".into()),
        secret: SecretRef::from_raw(&c.secret, &format!("{path}.inject.credential.secret"), errs),
    })
}

/// Credentials per tenant, in the same shape as `credential`.
pub(crate) fn build_tenant_credentials(
    raw: &RawInjection,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<(String, Credential)> {
    raw.tenant_credentials
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                c.tenant.clone(),
                Credential {
                    header: c
                        .header
                        .clone()
                        .unwrap_or_else(|| "authorization".into())
                        .to_ascii_lowercase(),
                    prefix: c.prefix.clone().unwrap_or_else(|| "Bearer ".into()),
                    secret: SecretRef::from_raw(
                        &c.secret,
                        &format!("{path}.inject.tenant_credentials[{i}].secret"),
                        errs,
                    ),
                },
            )
        })
        .collect()
}

pub(crate) fn build_egress(raw: &[String], errs: &mut Vec<ConfigError>) -> Egress {
    Egress(
        raw.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let r = EgressRule::parse(s);
                if r.is_none() {
                    errs.push(ConfigError::new(
                        format!("egress_allow[{i}]"),
                        format!("`{s}` is not a name, IP or CIDR"),
                    ));
                }
                r
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_checks_the_resolved_address() {
        let e = Egress(vec![
            EgressRule::parse("*.internal.example").expect("rule"),
            EgressRule::parse("10.0.0.0/8").expect("rule"),
        ]);
        assert!(e.allows("mcp.internal.example", "192.168.1.5".parse().expect("ip")));
        assert!(!e.allows(
            "mcp.internal.example",
            "169.254.169.254".parse().expect("ip")
        ));
        assert!(!e.allows("mcp.internal.example", "127.0.0.1".parse().expect("ip")));
        assert!(e.allows("anything", "10.2.3.4".parse().expect("ip")));
        assert!(!e.allows("evil.example", "8.8.8.8".parse().expect("ip")));
        assert!(!e.allows("internal.example", "192.168.1.5".parse().expect("ip")));
        let lo = Egress(vec![EgressRule::parse("127.0.0.1").expect("rule")]);
        assert!(lo.allows("localhost", "127.0.0.1".parse().expect("ip")));
        assert!(Egress::default().allows("x", "127.0.0.1".parse().expect("ip")));
    }
}
