//! The legacy HTTP+SSE client transport (MCP spec 2024-11-05): GET the connector's URL as an
//! event stream, whose first `endpoint` event names the URL to POST JSON-RPC messages to;
//! answers and notifications arrive as `message` events on the stream.

use futures::{Stream, StreamExt};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use sse_stream::{Sse, SseStream};
use std::pin::Pin;
use std::time::Duration;

/// Largest SSE event accepted (as rmcp's streamable HTTP client).
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Events tolerated before `endpoint`.
const MAX_EVENTS_BEFORE_ENDPOINT: usize = 16;

/// Why the SSE transport failed.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("{}", super::describe_reqwest(.0))]
    Http(reqwest::Error),
    /// The upstream refused the credentials (a new OAuth token may help).
    #[error("the upstream answered HTTP 401 (unauthorized)")]
    Unauthorized,
    #[error("the upstream answered HTTP {0}")]
    Status(u16),
    #[error("the upstream did not answer with an event stream")]
    NotEventStream,
    #[error("the event stream ended before its endpoint event")]
    NoEndpoint,
    #[error("the endpoint event does not hold a usable URL")]
    BadEndpoint,
    /// Why: the POST would carry the connector's credentials to a host nobody configured.
    #[error("the endpoint event names another origin ({0}); refused")]
    ForeignEndpoint(String),
    #[error("the event stream broke: {0}")]
    Stream(String),
}

type Events = Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>;

/// An open SSE session: the event stream and where to POST.
pub struct SseTransport {
    http: reqwest::Client,
    post_url: reqwest::Url,
    headers: http::HeaderMap,
    post_timeout: Duration,
    events: Events,
}

/// Fails a byte stream once one SSE event grows past [`MAX_EVENT_BYTES`] (a blank line ends
/// an event), so a peer cannot make the parser buffer without bound.
fn limited<B, E>(
    stream: impl Stream<Item = Result<B, E>>,
) -> impl Stream<Item = Result<B, std::io::Error>>
where
    B: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut line = 0usize;
    let mut event = 0usize;
    stream.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        for &b in chunk.as_ref() {
            match b {
                b'\n' if line == 0 => event = 0,
                b'\n' => line = 0,
                b'\r' => {}
                _ => {
                    line += 1;
                    event += 1;
                }
            }
            if event > MAX_EVENT_BYTES {
                return Err(std::io::Error::other("an SSE event exceeded 16 MiB"));
            }
        }
        Ok(chunk)
    })
}

/// Resolves the `endpoint` event's data against the SSE URL; only the same origin is accepted.
fn endpoint_url(base: &reqwest::Url, data: &str) -> Result<reqwest::Url, SseError> {
    let url = base.join(data.trim()).map_err(|_| SseError::BadEndpoint)?;
    if url.origin() != base.origin() {
        return Err(SseError::ForeignEndpoint(
            url.origin().ascii_serialization(),
        ));
    }
    Ok(url)
}

/// Opens the event stream and waits for the endpoint (the caller bounds the wait).
pub async fn connect(
    http: &reqwest::Client,
    url: &str,
    headers: http::HeaderMap,
    post_timeout: Duration,
) -> Result<SseTransport, SseError> {
    let base = reqwest::Url::parse(url).map_err(|_| SseError::BadEndpoint)?;
    let res = http
        .get(base.clone())
        .headers(headers.clone())
        .header(http::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(SseError::Http)?;
    match res.status() {
        s if s == reqwest::StatusCode::UNAUTHORIZED => return Err(SseError::Unauthorized),
        s if !s.is_success() => return Err(SseError::Status(s.as_u16())),
        _ => {}
    }
    let is_stream = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    if !is_stream {
        return Err(SseError::NotEventStream);
    }
    let mut events: Events = Box::pin(SseStream::from_bytes_stream(limited(res.bytes_stream())));
    let mut skipped = 0;
    let post_url = loop {
        match events.next().await {
            Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => {
                break endpoint_url(&base, ev.data.as_deref().unwrap_or_default())?;
            }
            Some(Ok(_)) if skipped < MAX_EVENTS_BEFORE_ENDPOINT => skipped += 1,
            Some(Ok(_)) | None => return Err(SseError::NoEndpoint),
            Some(Err(e)) => return Err(SseError::Stream(e.to_string())),
        }
    };
    tracing::debug!(post_url = %post_url.path(), "SSE upstream endpoint");
    Ok(SseTransport {
        http: http.clone(),
        post_url,
        headers,
        post_timeout,
        events,
    })
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = self
            .http
            .post(self.post_url.clone())
            .headers(self.headers.clone())
            .timeout(self.post_timeout)
            .json(&item);
        async move {
            let res = request.send().await.map_err(SseError::Http)?;
            match res.status() {
                s if s == reqwest::StatusCode::UNAUTHORIZED => Err(SseError::Unauthorized),
                s if !s.is_success() => Err(SseError::Status(s.as_u16())),
                // The answer comes on the event stream; the POST's body is only an ack.
                _ => Ok(()),
            }
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            let ev = match self.events.next().await? {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "SSE upstream stream broke");
                    return None;
                }
            };
            // An event without a type is a `message` (the SSE default).
            if !matches!(ev.event.as_deref(), None | Some("message")) {
                continue;
            }
            let Some(data) = ev.data else { continue };
            match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "SSE upstream sent a message that is not JSON-RPC; skipped")
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Dropping the response ends the GET (and with it the upstream's session).
        self.events = Box::pin(futures::stream::empty());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_must_be_on_the_same_origin() {
        let base = reqwest::Url::parse("http://up.example:8080/sse").unwrap();
        let ok = |d: &str| endpoint_url(&base, d).map(|u| u.to_string());
        assert_eq!(
            ok("/message?sessionId=abc").unwrap(),
            "http://up.example:8080/message?sessionId=abc"
        );
        assert_eq!(
            ok("messages/1").unwrap(),
            "http://up.example:8080/messages/1"
        );
        assert_eq!(
            ok(" http://up.example:8080/m ").unwrap(),
            "http://up.example:8080/m"
        );
        for foreign in [
            "http://evil.example:8080/m",
            "https://up.example:8080/m",
            "http://up.example:8081/m",
            "//evil.example/m",
        ] {
            assert!(
                matches!(
                    endpoint_url(&base, foreign),
                    Err(SseError::ForeignEndpoint(_))
                ),
                "{foreign}"
            );
        }
    }

    #[tokio::test]
    async fn an_oversized_event_fails_the_stream() {
        type Chunks = Vec<Result<Vec<u8>, std::io::Error>>;
        let half = vec![b'x'; MAX_EVENT_BYTES / 2];
        // Two events of exactly the cap, split across chunks and lines, pass.
        let fits: Chunks = vec![
            Ok(half.clone()),
            Ok(b"\n".to_vec()),
            Ok(half.clone()),
            Ok(b"\r\n\r\n".to_vec()),
            Ok(half.clone()),
            Ok(half.clone()),
            Ok(b"\n\n".to_vec()),
        ];
        let out: Vec<_> = limited(futures::stream::iter(fits)).collect().await;
        assert!(out.iter().all(|r| r.is_ok()), "events at the cap pass");
        // One byte more fails.
        let huge: Chunks = vec![Ok(half.clone()), Ok(half), Ok(b"y".to_vec())];
        let out: Vec<_> = limited(futures::stream::iter(huge)).collect().await;
        assert!(out[0].is_ok() && out[1].is_ok());
        assert!(out[2].is_err(), "one byte past the cap fails");
    }
}
