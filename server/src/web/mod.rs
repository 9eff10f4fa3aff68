//! The dashboard over HTTP: Leptos SSR routes, server functions at `/fn/*`, static files under
//! `/pkg`, database-backed sessions, the sign-in redirect and the CSRF origin check.

mod connector_hooks;
pub mod session_store;

pub use session_store::DbSessionStore;

use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list, handle_server_fns_with_context};
use toolgate_app::auth::{DashboardContext, DashboardUser, SESSION_USER_KEY};
use toolgate_app::{App, shell};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The dashboard routes (everything that is not `/mcp`, `/api/v1` or a probe).
pub fn router(state: &AppState) -> Router<AppState> {
    let ctx = DashboardContext {
        store: state.store.clone(),
        snapshot: state.snapshot.clone(),
        audit: state.audit.clone(),
        public_url: state.config.public_url(),
        audit_policy: state.config.audit_policy(),
        workflow: state.workflow.clone(),
    };
    let hooks = crate::siem::dashboard_hooks(state.store.clone(), state.audit.clone());
    let connector_hooks = connector_hooks::dashboard_hooks(state);
    let routes = generate_route_list(App);
    let page_ctx = ctx.clone();
    let fn_ctx = ctx.clone();
    let page_hooks = hooks.clone();
    let page_connector_hooks = connector_hooks.clone();
    let options = state.leptos_options.clone();

    let sessions = session_layer(state);

    Router::new()
        .route("/audit/export", axum::routing::get(audit_export))
        .route(
            "/fn/{*name}",
            post(move |req: Request<Body>| {
                let ctx = fn_ctx.clone();
                let hooks = hooks.clone();
                let connector_hooks = connector_hooks.clone();
                async move {
                    handle_server_fns_with_context(
                        move || {
                            provide_context(ctx.clone());
                            provide_context(hooks.clone());
                            provide_context(connector_hooks.clone());
                        },
                        req,
                    )
                    .await
                }
            }),
        )
        .leptos_routes_with_context(
            state,
            routes,
            move || {
                provide_context(page_ctx.clone());
                provide_context(page_hooks.clone());
                provide_context(page_connector_hooks.clone());
            },
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn(require_sign_in))
        .layer(sessions)
        .layer(middleware::from_fn(same_origin_writes))
}

/// The Audit page's export links: the same streamed CSV / JSON Lines as the API, for signed-in
/// admins and auditors. Each export is itself audited.
async fn audit_export(
    session: Session,
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    query: Result<
        axum::extract::Query<crate::api::audit::AuditParams>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let user = match session.get::<DashboardUser>(SESSION_USER_KEY).await {
        Ok(Some(u)) if u.role.may(toolgate_app::auth::Page::Audit) => u,
        Ok(Some(_)) => {
            return (
                StatusCode::FORBIDDEN,
                "your role does not give access to the audit log",
            )
                .into_response();
        }
        _ => return Redirect::to("/login").into_response(),
    };
    let params = match query {
        Ok(axum::extract::Query(p)) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let format = match crate::api::audit::ExportFormat::parse(params.format.as_deref()) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let filter = params.filter();
    let event = toolgate_domain::store::NewAuditEvent {
        subject_kind: Some("admin".into()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect()),
        detail: serde_json::to_string(&filter).ok(),
        ..toolgate_domain::store::NewAuditEvent::new(
            state.store.clock().now(),
            "audit.export",
            &user.username,
        )
    };
    if let Err(e) = state.audit.record(event).await {
        tracing::error!(error = %e, "audit export refused: its own audit event was not written");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log is unavailable; export refused",
        )
            .into_response();
    }
    crate::api::audit::export_response(state.store.clone(), filter, format)
}

/// Dashboard sessions: in the database, HttpOnly, SameSite=Lax, `Secure` and `__Host-` over
/// HTTPS, ended after `session_ttl_hours` without activity.
pub fn session_layer(state: &AppState) -> SessionManagerLayer<DbSessionStore> {
    let https = state.config.is_https();
    SessionManagerLayer::new(DbSessionStore::new(state.store.clone()))
        // Why `__Host-`: over HTTPS the cookie is then bound to this exact origin and path.
        .with_name(if https {
            "__Host-toolgate_session"
        } else {
            "toolgate_session"
        })
        .with_secure(https)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(
            state.config.session_ttl_hours,
        )))
}

/// Pages need a signed-in user; others are sent to the login page. Static files, the login page
/// and server functions (which check roles themselves) pass.
async fn require_sign_in(session: Session, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = path == "/login"
        || path.starts_with("/pkg/")
        || path.starts_with("/fn/")
        || path == "/favicon.ico"
        || req.method() != Method::GET;
    if open {
        return next.run(req).await;
    }
    match session.get::<DashboardUser>(SESSION_USER_KEY).await {
        Ok(Some(_)) => next.run(req).await,
        _ => Redirect::to("/login").into_response(),
    }
}

/// CSRF defence for every state-changing dashboard request: the browser's `Origin` must be this
/// site (compared with the `Host` the request was sent to), or `Sec-Fetch-Site` must say
/// same-origin. Together with SameSite=Lax cookies this refuses cross-site form posts.
async fn same_origin_writes(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let same = match (origin, host) {
        (Some(o), Some(h)) => o
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(h)),
        (None, _) => fetch_site == Some("same-origin"),
        _ => false,
    };
    if same {
        next.run(req).await
    } else {
        tracing::warn!(?origin, ?host, "cross-site write to the dashboard refused");
        (StatusCode::FORBIDDEN, "cross-site request refused").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post as post_route;
    use tower::ServiceExt;

    async fn status(req: Request<Body>) -> StatusCode {
        let app: Router = Router::new()
            .route("/x", post_route(|| async { "ok" }).get(|| async { "ok" }))
            .layer(middleware::from_fn(same_origin_writes));
        app.oneshot(req).await.unwrap().status()
    }

    fn post_with(headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::builder().method("POST").uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn csrf_origin_check() {
        let same = post_with(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(status(same).await, StatusCode::OK);
        let cross = post_with(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(status(cross).await, StatusCode::FORBIDDEN);
        let null = post_with(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert_eq!(status(null).await, StatusCode::FORBIDDEN);
        let none = post_with(&[("host", "127.0.0.1:8080")]);
        assert_eq!(status(none).await, StatusCode::FORBIDDEN);
        let fetch_meta = post_with(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(status(fetch_meta).await, StatusCode::OK);
        let get = Request::builder().uri("/x").body(Body::empty()).unwrap();
        assert_eq!(status(get).await, StatusCode::OK);
    }
}
