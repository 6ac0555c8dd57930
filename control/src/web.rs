//! The web pages people use: sign-in, the approvals inbox (pending, in
//! process, completed) with approve and deny buttons, the audit trail with
//! filters, and the gateways' config versions. Server-rendered HTML with no
//! script: forms post back, every value is escaped, and each form carries a
//! token bound to the session (the cookie is also `SameSite=Strict`).

use std::fmt::Write as _;

use crate::approvals::{Approval, Approvals, State};
use crate::definitions::{line_diff, Definition};
use crate::publish::{GatewayState, Published, Refused};
use crate::settings::User;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The form token for a session: a keyed hash of the session id.
pub fn csrf_token(key: &str, session: &str) -> String {
    crate::webhook::sign(key, format!("csrf:{session}").as_bytes())
}

fn page(title: &str, user: Option<&User>, body: &str, csrf: &str) -> String {
    let nav = match user {
        Some(u) => format!(
            r#"<nav><a href="/inbox">Inbox</a> · <a href="/audit">Audit</a> · <a href="/catalog">Catalog</a> · <a href="/definitions">Definitions</a> · <a href="/gateways">Gateways</a>
<span class="who">Signed in as <b id="user">{}</b></span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button>Sign out</button></form></nav>"#,
            escape(&u.name),
            escape(csrf)
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{} · Sluice</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}
nav{{margin-bottom:1rem}} .who{{margin-left:2rem}} .inline{{display:inline}}
table{{border-collapse:collapse;width:100%}} td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}}
pre{{margin:0;white-space:pre-wrap;max-width:40rem}} .tabs a{{margin-right:1rem}} .tabs a.on{{font-weight:bold}}
.approved{{color:#075}} .add{{background:#e6ffec}} .del{{background:#ffebe9}} .denied,.expired{{color:#a00}} .error{{color:#a00}}
</style></head><body>
{}
<h1>{}</h1>
{}
</body></html>"#,
        escape(title),
        nav,
        escape(title),
        body
    )
}

/// The sign-in page: with the identity provider (`sso`, its label) when
/// configured, and with a personal token.
pub fn login(error: Option<&str>, sso: Option<&str>) -> String {
    let err = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" id="error">{}</p>"#, escape(e))
    });
    let sso = sso.map_or(String::new(), |label| {
        format!(
            r#"<p><a href="/login/oidc" id="sso">Sign in with {}</a></p>"#,
            escape(label)
        )
    });
    page(
        "Sign in",
        None,
        &format!(
            r#"{err}{sso}<form method="post" action="/login">
<label>Token <input type="password" name="token" id="token" autocomplete="off" required></label>
<button type="submit" id="signin">Sign in</button></form>"#
        ),
        "",
    )
}

pub fn message(title: &str, user: Option<&User>, text: &str, csrf: &str) -> String {
    page(
        title,
        user,
        &format!(
            r#"<p id="message">{}</p><p><a href="/inbox">Back to the inbox</a></p>"#,
            escape(text)
        ),
        csrf,
    )
}

pub fn inbox(user: &User, view: &str, items: &[Approval], csrf: &str) -> String {
    let mut b = String::new();
    b.push_str(r#"<p class="tabs">"#);
    for (v, label) in [
        ("pending", "In review"),
        ("in_process", "In process"),
        ("completed", "Completed"),
    ] {
        let on = if v == view { " class=\"on\"" } else { "" };
        let _ = write!(
            b,
            r#"<a href="/inbox?view={v}"{on} id="tab-{v}">{label}</a>"#
        );
    }
    b.push_str("</p>");
    if items.is_empty() {
        b.push_str(r#"<p id="empty">Nothing here.</p>"#);
        return page("Approvals", Some(user), &b, csrf);
    }
    b.push_str(
        "<table><thead><tr><th>Requested</th><th>Who</th><th>Tool</th><th>Arguments</th><th>Status</th><th></th></tr></thead><tbody>",
    );
    for a in items {
        let args = serde_json::to_string_pretty(&a.arguments).unwrap_or_default();
        let who = format!(
            "{}{}{}",
            escape(&a.subject),
            a.tenant
                .as_deref()
                .map_or(String::new(), |t| format!("<br>tenant {}", escape(t))),
            a.session
                .as_deref()
                .map_or(String::new(), |s| format!("<br>session {}", escape(s))),
        );
        let status = match a.state {
            State::Pending => format!("pending until {}", escape(&a.expires)),
            s => format!(
                r#"<span class="{0}">{0}{1}</span>{2}{3}{4}"#,
                s.as_str(),
                if a.used { ", used" } else { "" },
                a.decided_by
                    .as_deref()
                    .map_or(String::new(), |d| format!("<br>by {}", escape(d))),
                a.decided
                    .as_deref()
                    .map_or(String::new(), |d| format!("<br>at {}", escape(d))),
                a.reason.as_deref().map_or(String::new(), |r| format!(
                    r#"<br>“<span class="reason">{}</span>”"#,
                    escape(r)
                )),
            ),
        };
        let action = if a.state == State::Pending {
            match Approvals::may_decide(user, a) {
                Ok(()) => format!(
                    r#"<form method="post" action="/inbox/{id}/decide">
<input type="hidden" name="csrf" value="{csrf}">
<input name="reason" placeholder="Reason" aria-label="Reason" class="reason-input">
<button name="decision" value="approve" class="approve">Approve</button>
<button name="decision" value="deny" class="deny">Deny</button></form>"#,
                    id = escape(&a.id),
                    csrf = escape(csrf)
                ),
                Err(why) => format!(r#"<span class="cannot">{}</span>"#, escape(why)),
            }
        } else {
            String::new()
        };
        let _ = write!(
            b,
            r#"<tr id="a-{id}" data-id="{id}" data-state="{state}" data-used="{used}"><td>{created}<br><small>{rule}</small></td><td>{who}</td><td>{up}/{tool}</td><td><pre>{args}</pre></td><td class="status">{status}</td><td>{action}</td></tr>"#,
            id = escape(&a.id),
            state = a.state.as_str(),
            used = a.used,
            created = escape(&a.created),
            rule = escape(&a.rule),
            up = escape(&a.upstream),
            tool = escape(&a.tool),
            args = escape(&args),
        );
    }
    b.push_str("</tbody></table>");
    page("Approvals", Some(user), &b, csrf)
}

pub fn audit(
    user: &User,
    q: &crate::audit::Query,
    events: &[serde_json::Value],
    error: Option<&str>,
    csrf: &str,
) -> String {
    let mut b = String::from(r#"<form method="get" action="/audit">"#);
    for (name, v) in [
        ("tenant", &q.tenant),
        ("subject", &q.subject),
        ("tool", &q.tool),
        ("decision", &q.decision),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        let _ = write!(
            b,
            r#"<label>{name} <input name="{name}" value="{}"></label> "#,
            escape(v.as_deref().unwrap_or(""))
        );
    }
    b.push_str(r#"<button>Filter</button></form>"#);
    if let Some(e) = error {
        let _ = write!(b, r#"<p class="error">{}</p>"#, escape(e));
    }
    b.push_str("<table><thead><tr><th>Time</th><th>Tenant</th><th>Subject</th><th>Method</th><th>Target</th><th>Decision</th><th>Reason</th><th>Status</th></tr></thead><tbody>");
    for e in events {
        let s = |k: &str| escape(e.get(k).and_then(|v| v.as_str()).unwrap_or(""));
        let _ = write!(
            b,
            r#"<tr class="event"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            s("time"),
            s("tenant"),
            s("subject"),
            s("method"),
            s("target"),
            s("decision"),
            s("reason"),
            e.get("status").and_then(|v| v.as_u64()).unwrap_or(0)
        );
    }
    b.push_str("</tbody></table>");
    page("Audit trail", Some(user), &b, csrf)
}

pub fn gateways(
    user: &User,
    current: Option<&Published>,
    refused: Option<&Refused>,
    gws: &[GatewayState],
    csrf: &str,
) -> String {
    let mut b = String::new();
    match current {
        Some(p) => {
            let _ = write!(
                b,
                r#"<p>Live version <b id="version">{}</b> from {} ({}).</p>"#,
                p.version,
                escape(&p.source),
                escape(&p.published)
            );
        }
        None => b.push_str("<p>No config published yet.</p>"),
    }
    if let Some(r) = refused {
        let _ = write!(
            b,
            r#"<div class="error"><p>Refused {} at {}:</p><pre>{}</pre></div>"#,
            escape(&r.source),
            escape(&r.at),
            escape(&r.errors.join("\n"))
        );
    }
    b.push_str("<table><thead><tr><th>Gateway</th><th>Version</th><th>State</th><th>Last seen</th></tr></thead><tbody>");
    for g in gws {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&g.id),
            g.version.map_or("-".into(), |v| v.to_string()),
            if g.ok {
                "ok".to_owned()
            } else {
                format!(
                    r#"<span class="error">refused: {}</span>"#,
                    escape(g.error.as_deref().unwrap_or(""))
                )
            },
            escape(&g.last_seen)
        );
    }
    b.push_str("</tbody></table>");
    page("Gateways", Some(user), &b, csrf)
}

/// Tool definitions: those waiting for a decision first, each with a diff
/// against the definition pinned for its tool (approve pins it, reject
/// keeps it quarantined), then the rest with their state.
pub fn definitions(user: &User, defs: &[Definition], may_decide: bool, csrf: &str) -> String {
    let mut b = String::from(
        "<p>Tools listed by pinned or screened sources. A definition that is not pinned is quarantined: gateways leave it out of lists and answer calls to it as to an unknown tool.</p>",
    );
    let (waiting, rest): (Vec<&Definition>, Vec<&Definition>) =
        defs.iter().partition(|d| d.state == "pending");
    let _ = write!(b, r#"<h2>Waiting ({})</h2>"#, waiting.len());
    for d in waiting {
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let new = pretty(&d.definition);
        let old = d.pinned.as_ref().map(pretty).unwrap_or_default();
        let mut diff = String::new();
        for (mark, line) in line_diff(&old, &new) {
            let class = match mark {
                '+' => "add",
                '-' => "del",
                _ => "same",
            };
            let _ = writeln!(
                diff,
                r#"<span class="{class}">{mark} {}</span>"#,
                escape(line)
            );
        }
        let _ = write!(
            b,
            r#"<section class="definition" id="def-{id}"><h3>{tool} on {upstream}</h3>
<p>Found: <b class="finding">{finding}</b>{reason} · digest <code>{digest}</code> · first seen {seen} by {gw}</p>
<pre class="diff">{diff}</pre>"#,
            id = d.id,
            tool = escape(&d.tool),
            upstream = escape(&d.upstream),
            finding = escape(&d.finding),
            reason = d
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {}", escape(r))),
            digest = escape(&d.digest[..16.min(d.digest.len())]),
            seen = escape(&d.first_seen),
            gw = escape(&d.gateway),
        );
        if may_decide {
            let _ = write!(
                b,
                r#"<form method="post" action="/definitions/{id}/decide" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button name="decision" value="approve" id="approve-{id}">Approve and pin</button> <button name="decision" value="reject" id="reject-{id}">Reject</button></form>"#,
                id = d.id,
                csrf = escape(csrf)
            );
        }
        b.push_str("</section>");
    }
    b.push_str("<h2>Decided</h2><table><thead><tr><th>Tool</th><th>Upstream</th><th>State</th><th>Digest</th><th>Decided by</th><th>At</th></tr></thead><tbody>");
    for d in rest {
        let _ = write!(
            b,
            r#"<tr class="{state}"><td>{}</td><td>{}</td><td>{state}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>"#,
            escape(&d.tool),
            escape(&d.upstream),
            escape(&d.digest[..16.min(d.digest.len())]),
            escape(d.decided_by.as_deref().unwrap_or("")),
            escape(d.decided_at.as_deref().unwrap_or("")),
            state = escape(&d.state),
        );
    }
    b.push_str("</tbody></table>");
    page("Tool definitions", Some(user), &b, csrf)
}

/// The live config's virtual servers: which routes serve which tool states,
/// and per source its default state, pinning, screening, the tools with a
/// state or version of their own, and the pinned definitions.
pub fn catalog(
    user: &User,
    live: Option<&Published>,
    snap: Option<&sluice_config::Snapshot>,
    csrf: &str,
) -> String {
    let mut b = String::new();
    let (Some(p), Some(snap)) = (live, snap) else {
        b.push_str("<p>No config published yet.</p>");
        return page("Catalog", Some(user), &b, csrf);
    };
    let _ = write!(b, "<p>Version <b>{}</b>.</p>", p.version);
    for (k, server) in snap.servers.iter().enumerate() {
        let routes: Vec<String> = snap
            .routes
            .iter()
            .filter(|r| r.server == Some(k))
            .map(|r| {
                let states: Vec<&str> = r.serves.iter().map(|s| s.as_str()).collect();
                format!(
                    "{} ({}: {})",
                    escape(&r.name),
                    escape(&r.path),
                    states.join(", ")
                )
            })
            .collect();
        let _ = write!(
            b,
            r#"<section class="server" id="server-{name}"><h2>{name}{mode}</h2><p>Routes: {routes}</p>"#,
            name = escape(&server.name),
            mode = if server.catalog {
                " (catalog mode)"
            } else {
                ""
            },
            routes = if routes.is_empty() {
                "none".into()
            } else {
                routes.join("; ")
            },
        );
        b.push_str("<table><thead><tr><th>Source</th><th>Tool</th><th>State</th><th>Version</th><th>Pinned digest</th></tr></thead><tbody>");
        for src in &server.sources {
            let up = &snap.upstreams[src.upstream].name;
            let pin = match src.pin {
                Some(sluice_config::PinMode::TrustOnFirstUse) => "pinned on first use",
                Some(sluice_config::PinMode::ApproveFirst) => "pinned on approval",
                None => "not pinned",
            };
            let screened = if src.screen.is_some() {
                ", screened"
            } else {
                ""
            };
            let _ = write!(
                b,
                r#"<tr><td>{up}</td><td><i>every tool</i> ({pin}{screened})</td><td>{}</td><td></td><td></td></tr>"#,
                src.state.as_str(),
                up = escape(up),
            );
            let pins = snap.pins.0.get(up.as_str());
            let mut tools: Vec<&str> = src
                .overrides
                .iter()
                .filter(|o| o.state.is_some() || o.version.is_some())
                .map(|o| o.tool.as_str())
                .chain(pins.into_iter().flat_map(|p| p.keys().map(String::as_str)))
                .collect();
            tools.sort_unstable();
            tools.dedup();
            for tool in tools {
                let o = src.override_for(tool);
                let digest = pins
                    .and_then(|p| p.get(tool))
                    .map_or("", |d| &d[..16.min(d.len())]);
                let _ = write!(
                    b,
                    r#"<tr class="{state}"><td>{up}</td><td>{}</td><td>{state}</td><td>{}</td><td><code>{}</code></td></tr>"#,
                    escape(tool),
                    escape(o.and_then(|o| o.version.as_deref()).unwrap_or("")),
                    escape(digest),
                    up = escape(up),
                    state = src.state_of(tool).as_str(),
                );
            }
        }
        b.push_str("</tbody></table></section>");
    }
    page("Catalog", Some(user), &b, csrf)
}
