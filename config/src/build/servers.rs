//! Builds the `servers` section: each virtual server's sources resolved to
//! upstreams, their prefixes made distinct, their filters and overrides
//! checked. Names that could collide and are known now are errors here;
//! the rest (tools an upstream lists later) are refused at list time.

use super::check::check_name;
use crate::error::ConfigError;
use crate::model::{
    glob, HttpTool, NameFilter, PinMode, Pins, Screen, Server, Source, ToolOverride, ToolState,
};
use crate::raw::{
    RawHttpTool, RawNameFilter, RawPin, RawPinMode, RawScreen, RawServer, RawSource,
    RawToolOverride, RawToolState,
};

const DEFAULT_SEPARATOR: &str = "_";

/// Servers in file order; a server with any error is left out.
pub(crate) fn build_servers(
    raw: &[RawServer],
    upstreams: &[String],
    errs: &mut Vec<ConfigError>,
) -> Vec<Server> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let at = format!("servers[{i}]");
        let before = errs.len();
        check_name(&s.name, &format!("{at}.name"), &mut seen, errs);
        let separator = s.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
        if !valid_separator(separator) {
            errs.push(ConfigError::new(
                format!("{at}.separator"),
                format!("`{separator}` must be 1-3 characters of `_`, `-` and `.`"),
            ));
        }
        if s.idempotency_window_s == Some(0) {
            errs.push(ConfigError::new(
                format!("{at}.idempotency_window_s"),
                "must be above 0",
            ));
        }
        if s.sources.is_empty() {
            errs.push(ConfigError::new(
                format!("{at}.sources"),
                "a server needs at least one source",
            ));
        }
        let sources: Vec<Source> = s
            .sources
            .iter()
            .enumerate()
            .filter_map(|(j, src)| {
                build_source(
                    src,
                    separator,
                    upstreams,
                    &format!("{at}.sources[{j}]"),
                    errs,
                )
            })
            .collect();
        check_prefixes(&sources, &at, errs);
        if errs.len() == before {
            out.push(Server {
                name: s.name.clone(),
                sources,
                catalog: s.catalog,
                idempotency_window: std::time::Duration::from_secs(
                    s.idempotency_window_s.unwrap_or(86_400),
                ),
            });
        }
    }
    out
}

fn build_source(
    raw: &RawSource,
    separator: &str,
    upstreams: &[String],
    at: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<Source> {
    let upstream = upstreams.iter().position(|u| *u == raw.upstream);
    if upstream.is_none() {
        errs.push(ConfigError::new(
            format!("{at}.upstream"),
            format!("unknown upstream `{}`", raw.upstream),
        ));
    }
    let prefix = raw.prefix.as_deref().unwrap_or(&raw.upstream);
    if !prefix.is_empty() && !valid_name(prefix, 64) {
        errs.push(ConfigError::new(
            format!("{at}.prefix"),
            format!("`{prefix}` must be 1-64 characters of [A-Za-z0-9_.-], or empty"),
        ));
    }
    let tools = build_filter(&raw.tools, &format!("{at}.tools"), errs);
    let prompts = build_filter(&raw.prompts, &format!("{at}.prompts"), errs);
    let resources = build_filter(&raw.resources, &format!("{at}.resources"), errs);
    let overrides = build_overrides(raw, &tools, &format!("{at}.overrides"), errs);
    let pin = raw.pin.map(|m| match m {
        RawPinMode::Tofu => PinMode::TrustOnFirstUse,
        RawPinMode::ApproveFirst => PinMode::ApproveFirst,
    });
    let state = raw.state.map_or(ToolState::Published, tool_state);
    let screen = raw
        .screen
        .as_ref()
        .map(|s| build_screen(s, &format!("{at}.screen"), errs));
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}{separator}")
    };
    Some(Source {
        upstream: upstream?,
        prefix,
        tools,
        prompts,
        resources,
        overrides,
        pin,
        screen,
        state,
        http_tools: build_http_tools(&raw.http_tools, &format!("{at}.http_tools"), errs),
    })
}

/// HTTP tools: valid names, once each; a known method; a path from `/`;
/// an object input schema naming every `{argument}` used; headers that are
/// not the gateway's to set.
fn build_http_tools(raw: &[RawHttpTool], at: &str, errs: &mut Vec<ConfigError>) -> Vec<HttpTool> {
    let mut out: Vec<HttpTool> = Vec::with_capacity(raw.len());
    for (k, t) in raw.iter().enumerate() {
        let at = format!("{at}[{k}]");
        if !valid_name(&t.name, 128) || out.iter().any(|o| o.name == t.name) {
            errs.push(ConfigError::new(
                format!("{at}.name"),
                format!(
                    "`{}` must be 1-128 characters of [A-Za-z0-9_.-], once per source",
                    t.name
                ),
            ));
        }
        let method = t.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            errs.push(ConfigError::new(
                format!("{at}.method"),
                "GET, POST, PUT, PATCH or DELETE",
            ));
        }
        if !t.path.starts_with('/') || t.path.contains(['?', '#', ' ']) {
            errs.push(ConfigError::new(
                format!("{at}.path"),
                "a path from `/`, without query or fragment",
            ));
        }
        let props = t.input_schema.get("properties").and_then(|p| p.as_object());
        if t.input_schema.get("type").and_then(|v| v.as_str()) != Some("object") {
            errs.push(ConfigError::new(
                format!("{at}.input_schema"),
                "an object schema (`type: object`)",
            ));
        }
        let mut used = Vec::new();
        placeholders(&t.path, &mut used);
        for v in t.query.values().chain(t.headers.values()) {
            placeholders(v, &mut used);
        }
        if let Some(b) = &t.body {
            body_placeholders(b, &mut used);
        }
        for name in used {
            if !props.is_some_and(|p| p.contains_key(&name)) {
                errs.push(ConfigError::new(
                    &at,
                    format!("`{{{name}}}` is not a property of the input schema"),
                ));
            }
        }
        for h in t.headers.keys() {
            let lower = h.to_ascii_lowercase();
            let reserved = [
                "host",
                "authorization",
                "content-length",
                "transfer-encoding",
                "connection",
                "cookie",
            ];
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if reserved.contains(&lower.as_str()) || h.is_empty() || !h.bytes().all(token) {
                errs.push(ConfigError::new(
                    format!("{at}.headers.{h}"),
                    "a header name (an HTTP token), not one the gateway sets (credentials come from the upstream's)",
                ));
            }
        }
        let mut definition = serde_json::Map::new();
        definition.insert("name".into(), t.name.clone().into());
        if let Some(v) = &t.title {
            definition.insert("title".into(), v.clone().into());
        }
        if let Some(v) = &t.description {
            definition.insert("description".into(), v.clone().into());
        }
        definition.insert("inputSchema".into(), t.input_schema.clone());
        if let Some(v) = &t.output_schema {
            definition.insert("outputSchema".into(), v.clone());
        }
        if let Some(v) = &t.annotations {
            definition.insert("annotations".into(), v.clone());
        }
        out.push(HttpTool {
            definition: serde_json::Value::Object(definition),
            name: t.name.clone(),
            method,
            path: t.path.clone(),
            query: t.query.clone().into_iter().collect(),
            headers: t.headers.clone().into_iter().collect(),
            body: t.body.clone(),
            max_response_bytes: t.max_response_bytes.unwrap_or(1 << 20),
        });
    }
    out
}

/// The `{name}`s in a template.
fn placeholders(s: &str, out: &mut Vec<String>) {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + close].to_owned());
        rest = &rest[open + close + 1..];
    }
}

fn body_placeholders(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => placeholders(s, out),
        serde_json::Value::Array(a) => a.iter().for_each(|x| body_placeholders(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| body_placeholders(x, out)),
        _ => {}
    }
}

pub(crate) fn tool_state(s: RawToolState) -> ToolState {
    match s {
        RawToolState::Draft => ToolState::Draft,
        RawToolState::Published => ToolState::Published,
        RawToolState::Deprecated => ToolState::Deprecated,
        RawToolState::Disabled => ToolState::Disabled,
    }
}

fn build_screen(raw: &RawScreen, at: &str, errs: &mut Vec<ConfigError>) -> Screen {
    let folded = |p: &str| {
        p.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let phrases: Vec<String> = raw.phrases.iter().map(|p| folded(p)).collect();
    for (k, p) in phrases.iter().enumerate() {
        if p.chars().count() < 4 || p.len() > 256 {
            errs.push(ConfigError::new(
                format!("{at}.phrases[{k}]"),
                "a phrase is 4-256 characters (shorter ones would match ordinary text)",
            ));
        }
    }
    let link_domains = raw.link_domains.as_ref().map(|ds| {
        ds.iter()
            .enumerate()
            .map(|(k, d)| {
                let d = d.trim_start_matches("*.").to_ascii_lowercase();
                if d.is_empty() || d.contains(['/', ':', '*', ' ']) {
                    errs.push(ConfigError::new(
                        format!("{at}.link_domains[{k}]"),
                        format!("`{d}` is not a domain name"),
                    ));
                }
                d
            })
            .collect()
    });
    for (field, v) in [
        ("max_description_chars", raw.max_description_chars),
        ("max_definition_bytes", raw.max_definition_bytes),
    ] {
        if v == Some(0) {
            errs.push(ConfigError::new(format!("{at}.{field}"), "must be above 0"));
        }
    }
    Screen {
        max_description_chars: raw.max_description_chars.unwrap_or(4096),
        max_definition_bytes: raw.max_definition_bytes.unwrap_or(65_536),
        unicode: raw.unicode.unwrap_or(true),
        instructions: raw.instructions.unwrap_or(true),
        phrases,
        link_domains,
    }
}

/// Pins by upstream and tool; a digest is 64 lower-case hex digits, a tool
/// pinned once. A pin for an upstream this config lacks is kept (control
/// keeps pins across config changes) but warned about.
pub(crate) fn build_pins(
    raw: &[RawPin],
    upstreams: &[String],
    errs: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Pins {
    let mut pins = Pins::default();
    for (i, p) in raw.iter().enumerate() {
        let at = format!("pins[{i}]");
        let hex = p.digest.len() == 64
            && p.digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            errs.push(ConfigError::new(
                format!("{at}.digest"),
                "a digest is 64 lower-case hex digits (sluice_config::definition_digest)",
            ));
            continue;
        }
        if !upstreams.contains(&p.upstream) {
            warnings.push(ConfigError::new(
                format!("{at}.upstream"),
                format!("no upstream `{}`: the pin applies to nothing", p.upstream),
            ));
        }
        let tools = pins.0.entry(p.upstream.clone()).or_default();
        if tools.insert(p.tool.clone(), p.digest.clone()).is_some() {
            errs.push(ConfigError::new(
                format!("{at}.tool"),
                format!("`{}` on `{}` is pinned twice", p.tool, p.upstream),
            ));
        }
    }
    pins
}

fn build_filter(raw: &RawNameFilter, at: &str, errs: &mut Vec<ConfigError>) -> NameFilter {
    for (field, globs) in [("include", &raw.include), ("exclude", &raw.exclude)] {
        for (k, g) in globs.iter().enumerate() {
            if g.is_empty() || g.len() > 256 || g.chars().any(char::is_control) {
                errs.push(ConfigError::new(
                    format!("{at}.{field}[{k}]"),
                    "a name glob is 1-256 characters, no control characters",
                ));
            }
        }
    }
    NameFilter {
        include: raw.include.clone(),
        exclude: raw.exclude.clone(),
    }
}

/// Overrides sorted by tool; renames valid and distinct; an override for a
/// tool the filter leaves out (it would never apply) is an error, as is an
/// argument both fixed and defaulted.
fn build_overrides(
    raw: &RawSource,
    filter: &NameFilter,
    at: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<ToolOverride> {
    let mut out = Vec::with_capacity(raw.overrides.len());
    for (tool, o) in &raw.overrides {
        let path = format!("{at}.{tool}");
        if !admits(filter, tool) {
            errs.push(ConfigError::new(
                &path,
                format!("the tool filter leaves `{tool}` out, so this override never applies"),
            ));
        }
        check_override(tool, o, &path, errs);
        out.push(ToolOverride {
            tool: tool.clone(),
            name: o.name.clone(),
            title: o.title.clone(),
            description: o.description.clone(),
            fixed: o.fixed.clone(),
            defaults: o.defaults.clone(),
            state: o.state.map(tool_state),
            version: o.version.clone(),
        });
    }
    check_renames(&out, at, errs);
    out
}

fn check_override(tool: &str, o: &RawToolOverride, at: &str, errs: &mut Vec<ConfigError>) {
    if let Some(name) = &o.name {
        if !valid_name(name, 128) {
            errs.push(ConfigError::new(
                format!("{at}.name"),
                format!("`{name}` must be 1-128 characters of [A-Za-z0-9_.-]"),
            ));
        }
    }
    if tool.is_empty() {
        errs.push(ConfigError::new(at, "an override names a tool"));
    }
    for key in o.fixed.keys().filter(|k| o.defaults.contains_key(*k)) {
        errs.push(ConfigError::new(
            format!("{at}.defaults.{key}"),
            "an argument is either fixed or defaulted, not both",
        ));
    }
    for key in o.fixed.keys().chain(o.defaults.keys()) {
        if key.is_empty() {
            errs.push(ConfigError::new(at, "an argument name is not empty"));
        }
    }
}

/// Two tools of one source may not take the same name: a rename onto
/// another rename, or onto another overridden tool that keeps its name.
fn check_renames(overrides: &[ToolOverride], at: &str, errs: &mut Vec<ConfigError>) {
    let exposed = |o: &ToolOverride| o.name.clone().unwrap_or_else(|| o.tool.clone());
    for (i, a) in overrides.iter().enumerate() {
        for b in &overrides[..i] {
            if exposed(a) == exposed(b) {
                errs.push(ConfigError::new(
                    format!("{at}.{}.name", a.tool),
                    format!("`{}` is also the name of `{}`", exposed(a), b.tool),
                ));
            }
        }
    }
}

/// No two sources of a server share a prefix: any tool could collide.
fn check_prefixes(sources: &[Source], at: &str, errs: &mut Vec<ConfigError>) {
    for (j, a) in sources.iter().enumerate() {
        if let Some(k) = sources[..j].iter().position(|b| b.prefix == a.prefix) {
            let shown = if a.prefix.is_empty() {
                "no prefix".to_owned()
            } else {
                format!("the prefix `{}`", a.prefix)
            };
            errs.push(ConfigError::new(
                format!("{at}.sources[{j}].prefix"),
                format!("{shown} is also sources[{k}]'s: their names could collide"),
            ));
        }
    }
}

fn admits(f: &NameFilter, name: &str) -> bool {
    let any = |globs: &[String]| globs.iter().any(|g| glob(g.as_bytes(), name.as_bytes()));
    (f.include.is_empty() || any(&f.include)) && !any(&f.exclude)
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn valid_separator(s: &str) -> bool {
    (1..=3).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'_' | b'-' | b'.'))
}
