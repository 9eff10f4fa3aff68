//! Request limits on every endpoint: header size (431), body size (413), JSON nesting depth and
//! JSON-RPC batch length (400), each answered in the endpoint's own error format so clients
//! (agents, Entra's SCIM client, OAuth clients) understand the refusal. Nothing behind the
//! limit sees a refused request.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// The configured limits (see `Config`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body: usize,
    pub max_headers: usize,
    pub max_depth: usize,
    pub max_batch: usize,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Limits {
            max_body: c.max_request_bytes,
            max_headers: c.max_header_bytes,
            max_depth: c.max_json_depth,
            max_batch: c.max_batch_messages,
        }
    }
}

/// Which protocol a path speaks, for the shape of its error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `/mcp`: JSON-RPC error objects.
    Mcp,
    /// `/scim/v2`: SCIM error resources (RFC 7644 §3.12).
    Scim,
    /// `/oauth/*`: RFC 6749 error objects.
    OAuth,
    /// `/api/v1`: `{"error":{"code","message"}}`.
    Api,
    /// The dashboard and the rest: plain text.
    Other,
}

impl Protocol {
    pub fn of(path: &str) -> Self {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/mcp") {
            Protocol::Mcp
        } else if under("/scim/v2") {
            Protocol::Scim
        } else if under("/oauth") {
            Protocol::OAuth
        } else if under("/api/v1") {
            Protocol::Api
        } else {
            Protocol::Other
        }
    }
}

/// A refusal in the protocol's own format. `retry_after` adds the header (429).
pub fn refusal(
    protocol: Protocol,
    status: StatusCode,
    message: &str,
    retry_after: Option<Duration>,
) -> Response {
    let (content_type, body) = match protocol {
        Protocol::Mcp => (
            "application/json",
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": jsonrpc_code(status), "message": message},
            })
            .to_string(),
        ),
        Protocol::Scim => {
            let mut error = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": status.as_u16().to_string(),
                "detail": message,
            });
            if status == StatusCode::BAD_REQUEST {
                error["scimType"] = "invalidSyntax".into();
            }
            ("application/scim+json", error.to_string())
        }
        Protocol::OAuth => (
            "application/json",
            serde_json::json!({
                "error": if status == StatusCode::TOO_MANY_REQUESTS {
                    "temporarily_unavailable"
                } else {
                    "invalid_request"
                },
                "error_description": message,
            })
            .to_string(),
        ),
        Protocol::Api => (
            "application/json",
            serde_json::json!({
                "error": {"code": api_code(status), "message": message},
            })
            .to_string(),
        ),
        Protocol::Other => ("text/plain; charset=utf-8", message.to_string()),
    };
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(wait) = retry_after {
        // Whole seconds, rounded up: a client retrying at once would be refused again.
        let secs = wait.as_millis().div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    res
}

/// JSON-RPC error codes for HTTP-level refusals: -32600 (invalid request) for malformed or
/// oversized input, -32000 (server-defined) for throttling.
fn jsonrpc_code(status: StatusCode) -> i64 {
    if status == StatusCode::TOO_MANY_REQUESTS {
        -32000
    } else {
        -32600
    }
}

fn api_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ => "invalid_request",
    }
}

/// Middleware: checks headers, reads the body up to the limit, checks JSON depth and batch
/// length, and hands the buffered body on.
pub async fn enforce(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let protocol = Protocol::of(req.uri().path());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if header_bytes > limits.max_headers {
        return refusal(
            protocol,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "the request line and headers exceed {} bytes",
                limits.max_headers
            ),
            None,
        );
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && req.headers().get(header::CONTENT_LENGTH).is_none()
        && req.headers().get(header::TRANSFER_ENCODING).is_none()
    {
        return next.run(req).await;
    }
    let too_large = || {
        refusal(
            protocol,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body exceeds {} bytes", limits.max_body),
            None,
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limits.max_body).await {
        Ok(b) => b,
        Err(e) => {
            // Over the limit while streaming, or the client went away mid-body.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if over {
                too_large()
            } else {
                refusal(
                    protocol,
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                    None,
                )
            };
        }
    };
    if looks_like_json(&parts.headers, &bytes) {
        let shape = json_shape(&bytes);
        if shape.depth > limits.max_depth {
            return refusal(
                protocol,
                StatusCode::BAD_REQUEST,
                &format!(
                    "the JSON body nests deeper than {} levels",
                    limits.max_depth
                ),
                None,
            );
        }
        if protocol == Protocol::Mcp && shape.top_level_items > limits.max_batch {
            return refusal(
                protocol,
                StatusCode::BAD_REQUEST,
                &format!(
                    "a batch may hold at most {} JSON-RPC messages",
                    limits.max_batch
                ),
                None,
            );
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// JSON by content type, or a body that starts like JSON (agents do not always say).
fn looks_like_json(headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    declared
        || body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{' || *b == b'[')
}

/// What [`json_shape`] measures.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JsonShape {
    /// Deepest nesting of arrays and objects.
    pub depth: usize,
    /// Items of a top-level array (a JSON-RPC batch); 0 for anything else.
    pub top_level_items: usize,
}

/// Measures nesting and top-level array length in one pass without parsing (so a hostile body
/// costs no allocation). Strings are skipped, escapes included; malformed JSON is measured as
/// far as it goes and left to the parser to refuse.
pub fn json_shape(body: &[u8]) -> JsonShape {
    let mut shape = JsonShape::default();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut top_is_array = false;
    let mut top_has_item = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && top_is_array && !top_has_item {
                    top_has_item = true;
                    shape.top_level_items += 1;
                }
            }
            b'[' | b'{' => {
                if depth == 0 {
                    top_is_array = b == b'[';
                } else if depth == 1 && top_is_array && !top_has_item {
                    top_has_item = true;
                    shape.top_level_items += 1;
                }
                depth += 1;
                shape.depth = shape.depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 && top_is_array => top_has_item = false,
            b if b.is_ascii_whitespace() => {}
            _ => {
                if depth == 1 && top_is_array && !top_has_item {
                    top_has_item = true;
                    shape.top_level_items += 1;
                }
            }
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_of_json() {
        assert_eq!(json_shape(b"{}").depth, 1);
        assert_eq!(json_shape(br#"{"a":[{"b":"[[[["}]}"#).depth, 3);
        assert_eq!(json_shape(br#"{"a":"\"{{{"}"#).depth, 1);
        assert_eq!(json_shape(b"[[[[[[1]]]]]]").depth, 6);
        assert_eq!(json_shape(b"42").depth, 0);
        assert_eq!(
            json_shape(b"[1, 2, {\"x\": [3,4]}, \"a,b\", []]").top_level_items,
            5
        );
        assert_eq!(json_shape(b"[]").top_level_items, 0);
        assert_eq!(json_shape(b"{\"a\": [1,2,3]}").top_level_items, 0);
        // Unbalanced input does not underflow or panic.
        assert_eq!(json_shape(b"]]]}}{").depth, 1);
    }

    #[test]
    fn protocol_by_path() {
        assert_eq!(Protocol::of("/mcp"), Protocol::Mcp);
        assert_eq!(Protocol::of("/mcp/github"), Protocol::Mcp);
        assert_eq!(Protocol::of("/mcpx"), Protocol::Other);
        assert_eq!(Protocol::of("/scim/v2/Users"), Protocol::Scim);
        assert_eq!(Protocol::of("/oauth/token"), Protocol::OAuth);
        assert_eq!(Protocol::of("/api/v1/audit"), Protocol::Api);
        assert_eq!(Protocol::of("/fn/login"), Protocol::Other);
    }

    #[tokio::test]
    async fn refusals_in_each_format() {
        let body = |res: Response| async move {
            let bytes = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let res = refusal(
            Protocol::Mcp,
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        let v = body(res).await;
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["error"]["code"], -32000);
        let res = refusal(Protocol::Scim, StatusCode::PAYLOAD_TOO_LARGE, "big", None);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/scim+json");
        let v = body(res).await;
        assert_eq!(v["status"], "413");
        assert_eq!(
            v["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        let v = body(refusal(
            Protocol::OAuth,
            StatusCode::TOO_MANY_REQUESTS,
            "x",
            None,
        ))
        .await;
        assert_eq!(v["error"], "temporarily_unavailable");
        let v = body(refusal(
            Protocol::Api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "x",
            None,
        ))
        .await;
        assert_eq!(v["error"]["code"], "payload_too_large");
    }
}
