//! A deliberately thin MCP client over streamable HTTP: JSON-RPC bodies formatted by hand, one
//! POST per request, the answer picked out of the SSE (or JSON) reply. It costs the shared CPU
//! less than rmcp's client (no worker task or channels per session), and the direct and gateway
//! sides use exactly the same code, so the ratio compares the servers, not two clients.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use std::time::Duration;

/// The protocol version the client asks for: the last one with sessions (`Mcp-Session-Id`).
pub const PROTOCOL_VERSION: &str = "2025-11-25";

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// One HTTP client for every session of a run (connection pool shared, Nagle off).
pub fn http_client() -> reqwest::Client {
    http_client_idle(Duration::from_secs(300))
}

/// The same with pooled connections closed after `idle` unused (the soak keeps it short, so a
/// burst's extra connections do not linger as file descriptors on both ends).
pub fn http_client_idle(idle: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(idle)
        .timeout(Duration::from_secs(60))
        .user_agent("toolgate-loadgen/1")
        .build()
        .expect("HTTP client builds")
}

/// Where the load goes: an MCP endpoint and its bearer token.
#[derive(Debug, Clone)]
pub struct Target {
    pub label: String,
    pub url: String,
    pub token: Option<String>,
}

/// An open MCP session (initialized) on one target.
pub struct Session {
    http: reqwest::Client,
    url: String,
    auth: Option<HeaderValue>,
    id: HeaderValue,
    next_id: u64,
}

/// A JSON-RPC error answer.
#[derive(Debug, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

/// One JSON-RPC message as far as the client looks at it.
#[derive(Deserialize)]
struct Envelope<T> {
    id: Option<serde_json::Value>,
    result: Option<T>,
    error: Option<RpcError>,
}

/// What a `tools/call` result is checked for: a tool error counts as a failed call.
#[derive(Deserialize)]
pub struct CallOutcome {
    #[serde(rename = "isError", default)]
    pub is_error: Option<bool>,
    #[serde(default)]
    content: Vec<ContentPeek>,
}

#[derive(Deserialize)]
struct ContentPeek {
    #[serde(default)]
    text: Option<String>,
}

impl CallOutcome {
    /// Characters of text in the result's content blocks.
    pub fn text_len(&self) -> usize {
        self.content
            .iter()
            .filter_map(|c| c.text.as_ref())
            .map(String::len)
            .sum()
    }
}

/// A `tools/list` result: how many tools it names.
#[derive(Deserialize)]
pub struct ToolList {
    pub tools: Vec<IgnoredAny>,
}

impl Session {
    /// `initialize` then `notifications/initialized`: a session as an agent opens one.
    pub async fn open(http: &reqwest::Client, target: &Target) -> Result<Session> {
        let auth = target
            .token
            .as_deref()
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .context("token is not a header value")?;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"toolgate-loadgen","version":"1"}}}}}}"#
        );
        let mut req = http
            .post(&target.url)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(a) = &auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("initialize at {}", target.url))?;
        let status = res.status();
        let id = res.headers().get(SESSION_HEADER).cloned();
        let ctype = content_type(&res);
        let body = res.bytes().await.context("initialize answer")?;
        if status != reqwest::StatusCode::OK {
            bail!(
                "initialize at {}: HTTP {status}: {}",
                target.url,
                snippet(&body)
            );
        }
        let id = id.ok_or_else(|| anyhow!("initialize at {}: no session id", target.url))?;
        answer::<IgnoredAny>(&ctype, &body, 0)?;
        let session = Session {
            http: http.clone(),
            url: target.url.clone(),
            auth,
            id,
            next_id: 1,
        };
        let res = session
            .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string())
            .send()
            .await
            .context("notifications/initialized")?;
        if res.status() != reqwest::StatusCode::ACCEPTED {
            bail!("notifications/initialized: HTTP {}", res.status());
        }
        Ok(session)
    }

    fn post(&self, body: String) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .header(SESSION_HEADER, self.id.clone())
            .header(VERSION_HEADER, PROTOCOL_VERSION)
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        req
    }

    /// One request; `params` is the JSON text of its params. Returns the result and the size of
    /// the HTTP answer in bytes. A JSON-RPC error is an `Err`.
    pub async fn request<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &str,
    ) -> Result<(T, usize)> {
        let id = self.next_id;
        self.next_id += 1;
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        let res = self.post(body).send().await.context(method.to_string())?;
        let status = res.status();
        let ctype = content_type(&res);
        let bytes = res.bytes().await.context(method.to_string())?;
        if status != reqwest::StatusCode::OK {
            bail!("{method}: HTTP {status}: {}", snippet(&bytes));
        }
        Ok((answer(&ctype, &bytes, id)?, bytes.len()))
    }

    /// `tools/call` of `params` (`{"name":…,"arguments":…}`); a tool error is an `Err`. Returns
    /// the characters of text content received.
    pub async fn call(&mut self, params: &str) -> Result<usize> {
        let (r, _) = self.request::<CallOutcome>("tools/call", params).await?;
        if r.is_error == Some(true) {
            bail!("tool error");
        }
        Ok(r.text_len())
    }

    /// `tools/list`: how many tools were listed.
    pub async fn list_tools(&mut self) -> Result<usize> {
        let (r, _) = self.request::<ToolList>("tools/list", "{}").await?;
        Ok(r.tools.len())
    }

    /// Opens the session's standalone SSE stream (`GET`), as agents do to hear the server's
    /// notifications; the stream stays open while the response is kept.
    pub async fn open_stream(&self) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .get(&self.url)
            .header(ACCEPT, "text/event-stream")
            .header(SESSION_HEADER, self.id.clone())
            .header(VERSION_HEADER, PROTOCOL_VERSION)
            // The stream lives as long as the caller keeps it, not the client's request timeout.
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let res = req.send().await.context("GET stream")?;
        if res.status() != reqwest::StatusCode::OK {
            bail!("GET stream: HTTP {}", res.status());
        }
        Ok(res)
    }

    /// Ends the session (`DELETE`); failures are ignored, the server reaps it anyway.
    pub async fn close(self) {
        let mut req = self
            .http
            .delete(&self.url)
            .header(SESSION_HEADER, self.id.clone())
            .header(VERSION_HEADER, PROTOCOL_VERSION);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        if let Ok(res) = req.send().await {
            let _ = res.bytes().await;
        }
    }
}

fn content_type(res: &reqwest::Response) -> String {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

/// The answer to request `id` in a reply body: plain JSON, or the SSE event that carries it
/// (other events — priming, notifications — are skipped).
pub fn answer<T: DeserializeOwned>(content_type: &str, body: &[u8], id: u64) -> Result<T> {
    if content_type.starts_with("application/json") {
        return settle(serde_json::from_slice::<Envelope<T>>(body)?, id)
            .ok_or_else(|| anyhow!("JSON reply is not the answer to request {id}"))?;
    }
    let text = std::str::from_utf8(body).context("SSE reply is not UTF-8")?;
    let mut data = String::new();
    // A blank line ends an event; the end of the body ends the last one.
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if let Some(found) = event(&mut data, id) {
                return found;
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    event(&mut data, id).unwrap_or_else(|| Err(anyhow!("no answer to request {id} in the reply")))
}

fn event<T: DeserializeOwned>(data: &mut String, id: u64) -> Option<Result<T>> {
    let d = std::mem::take(data);
    if d.trim().is_empty() {
        return None;
    }
    match serde_json::from_str::<Envelope<T>>(&d) {
        Ok(env) => settle(env, id),
        // Not shaped like our answer (say, a server request): only an error if it had our id.
        Err(e) => d
            .contains(&format!("\"id\":{id}"))
            .then(|| Err(anyhow!("answer to request {id} unreadable: {e}"))),
    }
}

fn settle<T>(env: Envelope<T>, id: u64) -> Option<Result<T>> {
    if env.id.as_ref().and_then(serde_json::Value::as_u64) != Some(id) {
        return None;
    }
    match (env.result, env.error) {
        (_, Some(e)) => Some(Err(anyhow!("JSON-RPC error {}: {}", e.code, e.message))),
        (Some(r), None) => Some(Ok(r)),
        (None, None) => Some(Err(anyhow!("answer to request {id} has no result"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_answer_after_priming_and_notification() {
        let body = "id: 0\nretry: 3000\ndata: \n\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n\
                    id: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}]}}\r\n\r\n";
        let r: CallOutcome = answer("text/event-stream", body.as_bytes(), 7).unwrap();
        assert_eq!(r.text_len(), 5);
        assert_eq!(r.is_error, None);
    }

    #[test]
    fn answers_to_other_ids_are_not_taken() {
        let body = "data: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{\"tools\":[]}}\n\n";
        let r = answer::<ToolList>("text/event-stream", body.as_bytes(), 7);
        assert!(r.is_err());
        let ok = answer::<ToolList>("text/event-stream", body.as_bytes(), 6).unwrap();
        assert!(ok.tools.is_empty());
    }

    #[test]
    fn json_rpc_errors_and_plain_json_replies() {
        let err = "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32602,\"message\":\"tool not permitted\"}}\n\n";
        let e = answer::<IgnoredAny>("text/event-stream", err.as_bytes(), 3).unwrap_err();
        assert!(e.to_string().contains("-32602"), "{e}");
        let json = br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#;
        let r: ToolList = answer("application/json", json, 2).unwrap();
        assert_eq!(r.tools.len(), 2);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let body = "data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{\"isError\":true}}\n";
        let r: CallOutcome = answer("text/event-stream", body.as_bytes(), 1).unwrap();
        assert_eq!(r.is_error, Some(true));
    }
}
