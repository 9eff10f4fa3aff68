//! Security headers on every response (where a handler has not set its own, stricter ones, as
//! the consent page does): no framing, no MIME sniffing, no referrer to other sites, no plugins
//! or foreign `<base>`, and HSTS when Toolgate is reached over HTTPS.
//!
//! The referrer policy is `same-origin`, not `no-referrer`: with `no-referrer` browsers send
//! `Origin: null` on form posts, and the dashboard's same-origin check would refuse its own forms.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// `frame-ancestors` and the rest that do not constrain the hydrated dashboard's own scripts.
const CSP: &str = "frame-ancestors 'none'; base-uri 'self'; object-src 'none'";
const HSTS: &str = "max-age=31536000";

/// Whether the public URL is HTTPS (then HSTS is sent).
#[derive(Clone, Copy, Debug)]
pub struct Https(pub bool);

pub async fn add(State(Https(https)): State<Https>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    if https && !h.contains_key(header::STRICT_TRANSPORT_SECURITY) {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    res
}
