//! Control's HTTP surface, one router: the gateway API (config subscribe
//! and ack, approvals filing/wait/consume, audit batches), the people API
//! (decisions, lists, audit queries), the web pages, the Slack endpoint,
//! health and metrics. Refusals are JSON `{"error": …}` with the status.

// The small checks below return the refusal `Response` itself as their
// error: it is written to the wire either way, so boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use sluice_config::wire::{ConfigAck, ConfigVersion, Consume};

use crate::approvals::{DecideError, FileError, Filing, State as AState};
use crate::auth::SESSION_COOKIE;
use crate::settings::User;
use crate::{web, App};

/// Longest a gateway may wait on one config long-poll.
const MAX_CONFIG_WAIT: Duration = Duration::from_secs(60);
/// Longest a gateway may wait on one approval.
const MAX_APPROVAL_WAIT: Duration = Duration::from_secs(120);

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/config", get(config_poll))
        .route("/v1/config/ack", post(config_ack))
        .route("/v1/status", get(status))
        .route("/v1/sync", post(sync))
        .route("/v1/approvals", post(file_approval).get(list_approvals))
        .route("/v1/approvals/{id}", get(get_approval))
        .route("/v1/approvals/{id}/consume", post(consume))
        .route("/v1/approvals/{id}/decision", post(api_decide))
        .route(
            "/v1/audit",
            post(ingest_audit)
                .get(query_audit)
                .layer(DefaultBodyLimit::max(32 * 1024 * 1024)),
        )
        .route(
            "/v1/definitions",
            post(report_definition).get(list_definitions),
        )
        .route("/v1/definitions/{id}/decision", post(api_decide_definition))
        .route("/definitions", get(definitions_page))
        .route("/catalog", get(catalog_page))
        .route("/definitions/{id}/decide", post(web_decide_definition))
        .route("/slack/interactions", post(slack))
        .route("/", get(|| async { Redirect::to("/inbox") }))
        .route("/login", get(login_page).post(login))
        .route("/login/oidc", get(oidc_start))
        .route("/login/oidc/callback", get(oidc_callback))
        .route("/logout", post(logout))
        .route("/inbox", get(inbox))
        .route("/inbox/{id}", get(inbox_one))
        .route("/inbox/{id}/decide", post(web_decide))
        .route("/audit", get(audit_page))
        .route("/gateways", get(gateways_page))
        .with_state(app)
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn gateway_only(app: &App, h: &HeaderMap) -> Result<(), Response> {
    if app.auth.is_gateway(h) {
        return Ok(());
    }
    app.metrics
        .auth_failures
        .with_label_values(&["gateway"])
        .inc();
    Err(error(StatusCode::UNAUTHORIZED, "gateway token required"))
}

async fn person(app: &App, h: &HeaderMap) -> Result<User, Response> {
    app.auth.user(h).await.map_err(unavailable)?.ok_or_else(|| {
        app.metrics.auth_failures.with_label_values(&["user"]).inc();
        error(StatusCode::UNAUTHORIZED, "sign in or send a user token")
    })
}

/// The store failed (or is away): the caller may try again, or try
/// another control process.
fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "control store unavailable");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store unavailable; try again",
    )
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

#[derive(Deserialize)]
struct PollQuery {
    gateway: String,
    /// The version the gateway runs; absent on its first call.
    have: Option<u64>,
    wait_s: Option<u64>,
}

/// Long-poll: answers at once with a version other than `have`, else waits
/// for a publication (up to `wait_s`) and answers 304 if none came.
async fn config_poll(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<PollQuery>,
) -> Response {
    if let Err(r) = gateway_only(&app, &h) {
        return r;
    }
    if q.gateway.is_empty() || q.gateway.len() > 128 {
        return error(StatusCode::BAD_REQUEST, "gateway id: 1 to 128 characters");
    }
    if let Err(e) = app.publisher.seen(q.gateway.clone()).await {
        return unavailable(e);
    }
    let wait = Duration::from_secs(q.wait_s.unwrap_or(25)).min(MAX_CONFIG_WAIT);
    let mut rx = app.publisher.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = rx.borrow_and_update().clone();
        if let Some(p) = current.filter(|p| Some(p.version) != q.have) {
            return Json(ConfigVersion {
                version: p.version,
                hash: p.hash.clone(),
                source: p.source.clone(),
                published: p.published.clone(),
                yaml: p.yaml.to_string(),
            })
            .into_response();
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return StatusCode::NOT_MODIFIED.into_response(),
        }
    }
}

async fn config_ack(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Json(a): Json<ConfigAck>,
) -> Response {
    if let Err(r) = gateway_only(&app, &h) {
        return r;
    }
    let error_text = a.error.map(|e| e.chars().take(4000).collect());
    match app
        .publisher
        .ack(a.gateway, a.version, a.ok, error_text)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unavailable(e),
    }
}

async fn status(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    if !app.auth.is_gateway(&h) {
        if let Err(r) = person(&app, &h).await {
            return r;
        }
    }
    let gateways = match app.publisher.gateways().await {
        Ok(g) => g,
        Err(e) => return unavailable(e),
    };
    let current = app.publisher.current();
    Json(json!({
        "version": current.as_ref().map(|p| p.version),
        "hash": current.as_ref().map(|p| p.hash.clone()),
        "source": current.as_ref().map(|p| p.source.clone()),
        "refused": app.publisher.refused(),
        "gateways": gateways,
    }))
    .into_response()
}

/// The push webhook: pull now. Unauthenticated on purpose (a Git host's
/// hook cannot always send a bearer token); it only makes control read the
/// source it is configured with, and pulls coalesce.
async fn sync(State(app): State<Arc<App>>) -> Response {
    app.syncer.wake.notify_one();
    (StatusCode::ACCEPTED, Json(json!({ "sync": "started" }))).into_response()
}

async fn file_approval(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Json(f): Json<Filing>,
) -> Response {
    if let Err(r) = gateway_only(&app, &h) {
        return r;
    }
    match app.approvals.file(f).await {
        Ok(a) => Json(a).into_response(),
        Err(FileError::Db(e)) => unavailable(e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

async fn get_approval(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Response {
    let gateway = app.auth.is_gateway(&h);
    let user = if gateway {
        None
    } else {
        match person(&app, &h).await {
            Ok(u) => Some(u),
            Err(r) => return r,
        }
    };
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_APPROVAL_WAIT);
    match app.approvals.wait(&id, wait).await {
        Ok(Some(a)) if user.is_none_or(|u| u.serves_tenant(a.tenant.as_deref())) => {
            if gateway && matches!(a.state, AState::Denied | AState::Expired) {
                // The caller is being told: a repeat files anew.
                if let Err(e) = app.approvals.mark_reported(&a.id).await {
                    return unavailable(e);
                }
            }
            Json(a).into_response()
        }
        Ok(_) => error(StatusCode::NOT_FOUND, "no such approval"),
        Err(e) => unavailable(e),
    }
}

async fn consume(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(c): Json<Consume>,
) -> Response {
    if let Err(r) = gateway_only(&app, &h) {
        return r;
    }
    match app.approvals.consume(&id, &c.args_hash).await {
        Ok(true) => Json(json!({ "used": true })).into_response(),
        Ok(false) => error(
            StatusCode::CONFLICT,
            "not approved, already used, expired, or granted for other arguments",
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    view: Option<String>,
}

async fn list_approvals(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let user = match person(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    match app
        .approvals
        .list(q.view.as_deref().unwrap_or("pending"), Some(user))
        .await
    {
        Ok(l) => Json(l).into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct Decision {
    decision: String,
    #[serde(default)]
    reason: String,
}

fn decision_response(r: Result<crate::approvals::Approval, DecideError>) -> Response {
    match r {
        Ok(a) => Json(a).into_response(),
        Err(DecideError::NotFound) => error(StatusCode::NOT_FOUND, "no such approval"),
        Err(DecideError::Forbidden(why)) => error(StatusCode::FORBIDDEN, why),
        Err(e @ DecideError::Final(_)) => error(StatusCode::CONFLICT, e),
        Err(DecideError::Db(e)) => unavailable(e),
    }
}

fn parse_decision(d: &str) -> Option<bool> {
    match d {
        "approve" => Some(true),
        "deny" => Some(false),
        _ => None,
    }
}

async fn api_decide(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(d): Json<Decision>,
) -> Response {
    let user = match person(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let Some(approve) = parse_decision(&d.decision) else {
        return error(StatusCode::BAD_REQUEST, "decision: approve or deny");
    };
    decision_response(
        app.approvals
            .decide(&id, user, approve, &d.reason, "api")
            .await,
    )
}

async fn ingest_audit(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Json(events): Json<Vec<serde_json::Value>>,
) -> Response {
    if let Err(r) = gateway_only(&app, &h) {
        return r;
    }
    match app.audit.ingest(events).await {
        Ok(n) => Json(n).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn query_audit(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<crate::audit::Query>,
) -> Response {
    let user = match person(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let q = scoped(user, q);
    match app.audit.query(q).await {
        Ok(events) => Json(events).into_response(),
        Err(crate::audit::QueryError::Db(e)) => unavailable(e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// A user who serves some tenants sees only theirs: an unscoped query is
/// narrowed to their one tenant, or refused if they serve several.
fn scoped(user: &User, mut q: crate::audit::Query) -> crate::audit::Query {
    if user.tenants.iter().any(|t| t == "*") {
        return q;
    }
    match &q.tenant {
        Some(t) if user.tenants.contains(t) => {}
        _ => q.tenant = Some(user.tenants.first().cloned().unwrap_or_default()),
    }
    q
}

async fn slack(State(app): State<Arc<App>>, h: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &app.slack_secret else {
        return error(StatusCode::NOT_FOUND, "Slack is not configured");
    };
    let now = crate::db::now_ms() / 1000;
    let interaction = match crate::slack::verify(secret, &h, &body, now) {
        Ok(i) => i,
        Err(e) => {
            app.metrics
                .auth_failures
                .with_label_values(&["slack"])
                .inc();
            tracing::warn!(error = %e, "Slack interaction refused");
            return error(StatusCode::UNAUTHORIZED, e);
        }
    };
    let user = app
        .settings
        .slack
        .as_ref()
        .and_then(|s| s.users.get(&interaction.user.id))
        .and_then(|name| app.auth.user_by_name(name));
    let Some(user) = user else {
        return Json(json!({
            "response_type": "ephemeral",
            "text": "Your Slack account is not linked to a Sluice approver.",
        }))
        .into_response();
    };
    let Some(action) = interaction.actions.first() else {
        return error(StatusCode::BAD_REQUEST, "no action");
    };
    let Some(approve) = parse_decision(&action.action_id) else {
        return error(StatusCode::BAD_REQUEST, "action_id: approve or deny");
    };
    let text = match app
        .approvals
        .decide(&action.value, user, approve, "via Slack", "slack")
        .await
    {
        Ok(a) => format!(
            "{} {} for {} on {}/{}",
            if approve { "Approved" } else { "Denied" },
            a.id,
            a.subject,
            a.upstream,
            a.tool
        ),
        Err(DecideError::Db(e)) => return unavailable(e),
        Err(e) => format!("Not recorded: {e}"),
    };
    Json(json!({ "response_type": "ephemeral", "replace_original": false, "text": text }))
        .into_response()
}

// ---- web pages ----

fn session_csrf(app: &App, h: &HeaderMap) -> String {
    crate::auth::cookie(h, SESSION_COOKIE)
        .map(|sid| web::csrf_token(&app.csrf_key, sid))
        .unwrap_or_default()
}

async fn page_user(app: &App, h: &HeaderMap) -> Result<User, Response> {
    app.auth
        .user(h)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Redirect::to("/login").into_response())
}

/// The signed-in user posting a form that carries this session's token.
async fn form_user(app: &App, h: &HeaderMap, csrf: &str) -> Result<User, Response> {
    let user = page_user(app, h).await?;
    check_csrf(app, h, csrf)?;
    Ok(user)
}

fn check_csrf(app: &App, h: &HeaderMap, token: &str) -> Result<(), Response> {
    let want = session_csrf(app, h);
    if want.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            token.as_bytes(),
        ))
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "form token mismatch; reload the page",
        ));
    }
    Ok(())
}

async fn login_page(State(app): State<Arc<App>>) -> Html<String> {
    Html(web::login(None, app.oidc.as_ref().map(|o| o.label())))
}

/// The redirect URI registered with the identity provider.
fn oidc_redirect(app: &App) -> String {
    format!(
        "{}/login/oidc/callback",
        app.public_url.trim_end_matches('/')
    )
}

/// Begin signing in with the identity provider.
async fn oidc_start(State(app): State<Arc<App>>) -> Response {
    let Some(oidc) = &app.oidc else {
        return error(
            StatusCode::NOT_FOUND,
            "sign-in with an identity provider is not configured",
        );
    };
    match oidc.start(&app.db, &oidc_redirect(&app)).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => oidc_failed(&app, e),
    }
}

#[derive(Deserialize)]
struct OidcCallback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Back from the identity provider: a session for the person it vouched for.
async fn oidc_callback(State(app): State<Arc<App>>, Query(q): Query<OidcCallback>) -> Response {
    let Some(oidc) = &app.oidc else {
        return error(
            StatusCode::NOT_FOUND,
            "sign-in with an identity provider is not configured",
        );
    };
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        let why = q
            .error
            .as_deref()
            .filter(|e| e.len() <= 64)
            .unwrap_or("no code");
        return oidc_failed(&app, crate::oidc::OidcError::Refused(why.to_owned()));
    };
    let user = match oidc
        .finish(&app.db, code, state, &oidc_redirect(&app))
        .await
    {
        Ok(u) => u,
        Err(e) => return oidc_failed(&app, e),
    };
    match app.auth.sign_in_as(&user).await {
        Ok(sid) => {
            tracing::info!(user = %user.name, via = "oidc", "signed in");
            session_redirect(&app, &sid)
        }
        Err(e) => unavailable(e),
    }
}

fn oidc_failed(app: &App, e: crate::oidc::OidcError) -> Response {
    tracing::warn!(error = %e, "sign-in with the identity provider failed");
    app.metrics.auth_failures.with_label_values(&["oidc"]).inc();
    (
        StatusCode::UNAUTHORIZED,
        Html(web::login(
            Some(&e.to_string()),
            app.oidc.as_ref().map(|o| o.label()),
        )),
    )
        .into_response()
}

/// To the inbox, with the session's cookie.
fn session_redirect(app: &App, sid: &str) -> Response {
    let secure = if app.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Lax, not Strict: the browser arrives from the identity provider.
    let cookie = format!(
        "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        app.auth.ttl().as_secs()
    );
    let mut resp = Redirect::to("/inbox").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(app): State<Arc<App>>, Form(f): Form<LoginForm>) -> Response {
    match app.auth.sign_in(f.token.trim()).await {
        Err(e) => unavailable(e),
        Ok(Some((sid, user))) => {
            tracing::info!(user = %user.name, "signed in");
            let secure = if app.public_url.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                app.auth.ttl().as_secs()
            );
            let mut resp = Redirect::to("/inbox").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(http::header::SET_COOKIE, v);
            }
            resp
        }
        Ok(None) => {
            app.metrics.auth_failures.with_label_values(&["user"]).inc();
            (
                StatusCode::UNAUTHORIZED,
                Html(web::login(
                    Some("That token is not recognised."),
                    app.oidc.as_ref().map(|o| o.label()),
                )),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(app): State<Arc<App>>, h: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Err(r) = check_csrf(&app, &h, &f.csrf) {
        return r;
    }
    if let Err(e) = app.auth.sign_out(&h).await {
        return unavailable(e);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        http::header::SET_COOKIE,
        HeaderValue::from_static("sluice_session=; Path=/; Max-Age=0"),
    );
    resp
}

async fn inbox(State(app): State<Arc<App>>, h: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let user = match page_user(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let view = match q.view.as_deref() {
        Some("in_process") => "in_process",
        Some("completed") => "completed",
        _ => "pending",
    };
    match app.approvals.list(view, Some(user)).await {
        Ok(items) => Html(web::inbox(user, view, &items, &session_csrf(&app, &h))).into_response(),
        Err(e) => unavailable(e),
    }
}

/// One approval, whatever its state: where a decision lands.
async fn inbox_one(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let user = match page_user(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    match app.approvals.get(&id).await {
        Ok(Some(a)) if user.serves_tenant(a.tenant.as_deref()) => Html(web::inbox(
            user,
            "one",
            std::slice::from_ref(&a),
            &session_csrf(&app, &h),
        ))
        .into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no such approval"),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct DecideForm {
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

async fn web_decide(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let user = match form_user(&app, &h, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let csrf = session_csrf(&app, &h);
    let Some(approve) = parse_decision(&f.decision) else {
        return error(StatusCode::BAD_REQUEST, "decision: approve or deny");
    };
    match app
        .approvals
        .decide(&id, user, approve, &f.reason, "inbox")
        .await
    {
        Ok(a) => Redirect::to(&format!("/inbox/{}", a.id)).into_response(),
        Err(DecideError::Db(e)) => unavailable(e),
        Err(e) => {
            let status = match e {
                DecideError::NotFound => StatusCode::NOT_FOUND,
                DecideError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            (
                status,
                Html(web::message(
                    "Not recorded",
                    Some(user),
                    &e.to_string(),
                    &csrf,
                )),
            )
                .into_response()
        }
    }
}

async fn audit_page(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<crate::audit::Query>,
) -> Response {
    let user = match page_user(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let csrf = session_csrf(&app, &h);
    let shown = q.clone();
    match app.audit.query(scoped(user, q)).await {
        Ok(events) => Html(web::audit(user, &shown, &events, None, &csrf)).into_response(),
        Err(crate::audit::QueryError::Db(e)) => unavailable(e),
        Err(e) => Html(web::audit(user, &shown, &[], Some(&e.to_string()), &csrf)).into_response(),
    }
}

async fn gateways_page(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    let user = match page_user(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    match app.publisher.gateways().await {
        Ok(g) => Html(web::gateways(
            user,
            app.publisher.current().as_deref(),
            app.publisher.refused().as_ref(),
            &g,
            &session_csrf(&app, &h),
        ))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn report_definition(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Json(seen): Json<sluice_config::wire::DefinitionSeen>,
) -> Response {
    if let Err(r) = gateway_only(&app, &h) {
        return r;
    }
    match app.definitions.report(seen).await {
        Ok(pinned) => {
            if pinned {
                if let Err(e) = app.publisher.republish().await {
                    return unavailable(e);
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(crate::definitions::ReportError::Db(e)) => unavailable(e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct DefinitionsQuery {
    state: Option<String>,
}

async fn list_definitions(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<DefinitionsQuery>,
) -> Response {
    if let Err(r) = person(&app, &h).await {
        return r;
    }
    match app.definitions.list(q.state.as_deref()).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => unavailable(e),
    }
}

/// Pin or reject a definition, then publish the pins: `approve` or `reject`.
async fn decide_definition(app: &App, user: &User, id: i64, decision: &str) -> Response {
    if !user.has_role(&app.settings.definition_approvers) {
        return error(
            StatusCode::FORBIDDEN,
            "only definition approvers (settings: definition_approvers) decide tool definitions",
        );
    }
    let pin = match decision {
        "approve" => true,
        "reject" => false,
        _ => return error(StatusCode::BAD_REQUEST, "decision: approve or reject"),
    };
    use crate::definitions::DecideError as D;
    match app.definitions.decide(id, &user.name, pin).await {
        Ok(()) => {}
        Err(D::Db(e)) => return unavailable(e),
        Err(D::NotFound) => return error(StatusCode::NOT_FOUND, D::NotFound),
        Err(e) => return error(StatusCode::CONFLICT, e),
    }
    if pin {
        match app.publisher.republish().await {
            Ok(crate::publish::Outcome::Refused) => {
                return error(
                    StatusCode::CONFLICT,
                    "pinned, but the config with the pin was refused: see /gateways",
                )
            }
            Ok(_) => {}
            Err(e) => return unavailable(e),
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn api_decide_definition(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<i64>,
    Json(d): Json<Decision>,
) -> Response {
    let user = match person(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    decide_definition(&app, user, id, &d.decision).await
}

async fn definitions_page(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    let user = match page_user(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    match app.definitions.list(None).await {
        Ok(d) => {
            let may = user.has_role(&app.settings.definition_approvers);
            Html(web::definitions(user, &d, may, &session_csrf(&app, &h))).into_response()
        }
        Err(e) => unavailable(e),
    }
}

async fn web_decide_definition(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<DecideForm>,
) -> Response {
    let user = match form_user(&app, &h, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let resp = decide_definition(&app, user, id, &f.decision).await;
    if resp.status().is_success() {
        return Redirect::to("/definitions").into_response();
    }
    resp
}

/// The catalog as the live config declares it: servers, their sources'
/// tool states, versions and pins.
async fn catalog_page(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    let user = match page_user(&app, &h).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = &user;
    let live = app.publisher.current();
    let snapshot = live
        .as_ref()
        .and_then(|p| sluice_config::load(&p.yaml, 1).ok());
    let csrf = session_csrf(&app, &h);
    Html(web::catalog(
        user,
        live.as_deref(),
        snapshot.as_ref(),
        &csrf,
    ))
    .into_response()
}
