//! The legacy HTTP+SSE client transport (MCP spec 2024-11-05): GET the connector's URL as an
//! event stream, whose first `endpoint` event names the URL to POST JSON-RPC messages to;
//! answers and notifications arrive as `message` events on the stream. Events are parsed here,
//! with a bound: an event larger than the response limit is never buffered whole.

use super::fault::{Capped, Pending, Read};
use futures::{Stream, StreamExt};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use std::pin::Pin;
use std::time::Duration;

/// Events tolerated before `endpoint`.
const MAX_EVENTS_BEFORE_ENDPOINT: usize = 16;
/// Longest field name or event type kept; longer lines are ignored.
const MAX_NAME: usize = 64;

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

type Body = Pin<Box<dyn Stream<Item = Result<axum::body::Bytes, reqwest::Error>> + Send>>;

/// Which field the current line holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// Still reading its name.
    Name,
    Data,
    Event,
    /// Anything else, comments included: ignored.
    Other,
}

/// One dispatched event: its type and data (whole, or only its ends when over the limit).
struct Event {
    kind: Option<String>,
    data: Read,
}

/// A streaming SSE parser that keeps at most `max` bytes of an event's data.
struct Parser {
    field: Field,
    name: Vec<u8>,
    /// The next value byte is the first (one leading space is dropped).
    value_start: bool,
    /// This data line's value has begun (its joining newline is in `data`).
    value_begun: bool,
    line_started: bool,
    after_cr: bool,
    data: Capped,
    has_data: bool,
    kind: Vec<u8>,
}

impl Parser {
    fn new(max: usize) -> Self {
        Parser {
            field: Field::Name,
            name: Vec::new(),
            value_start: false,
            value_begun: false,
            line_started: false,
            after_cr: false,
            data: Capped::new(max),
            has_data: false,
            kind: Vec::new(),
        }
    }

    /// Parses `bytes` up to the end of the first event they complete; returns how many bytes
    /// were used and that event.
    fn feed(&mut self, bytes: &[u8]) -> (usize, Option<Event>) {
        let mut i = 0;
        while i < bytes.len() {
            if std::mem::take(&mut self.after_cr) && bytes[i] == b'\n' {
                i += 1;
                continue;
            }
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|p| i + p);
            self.segment(&bytes[i..end.unwrap_or(bytes.len())]);
            let Some(end) = end else {
                return (bytes.len(), None);
            };
            self.after_cr = bytes[end] == b'\r';
            i = end + 1;
            if let Some(event) = self.end_of_line() {
                return (i, Some(event));
            }
        }
        (i, None)
    }

    /// Part of a line (no line break in it).
    fn segment(&mut self, mut seg: &[u8]) {
        if seg.is_empty() {
            return;
        }
        self.line_started = true;
        if self.field == Field::Name {
            let colon = seg.iter().position(|&b| b == b':');
            let name = &seg[..colon.unwrap_or(seg.len())];
            if self.name.len() + name.len() > MAX_NAME {
                self.field = Field::Other;
                return;
            }
            self.name.extend_from_slice(name);
            let Some(colon) = colon else { return };
            self.field = self.named();
            if self.field == Field::Event {
                self.kind.clear();
            }
            self.value_start = true;
            seg = &seg[colon + 1..];
        }
        if self.value_start && !seg.is_empty() {
            self.value_start = false;
            seg = seg.strip_prefix(b" ").unwrap_or(seg);
        }
        match self.field {
            Field::Data => {
                self.begin_data_value();
                self.data.push(seg);
            }
            Field::Event => {
                if self.kind.len() + seg.len() <= MAX_NAME {
                    self.kind.extend_from_slice(seg);
                }
            }
            Field::Name | Field::Other => {}
        }
    }

    fn named(&self) -> Field {
        match self.name.as_slice() {
            b"data" => Field::Data,
            b"event" => Field::Event,
            _ => Field::Other,
        }
    }

    fn begin_data_value(&mut self) {
        if !self.value_begun {
            self.value_begun = true;
            if self.has_data {
                self.data.push(b"\n");
            }
            self.has_data = true;
        }
    }

    fn end_of_line(&mut self) -> Option<Event> {
        if !self.line_started {
            return self.dispatch();
        }
        if self.field == Field::Name {
            // A line without a colon is a field with an empty value.
            self.field = self.named();
            if self.field == Field::Event {
                self.kind.clear();
            }
        }
        if self.field == Field::Data {
            self.begin_data_value();
        }
        self.field = Field::Name;
        self.name.clear();
        self.value_start = false;
        self.value_begun = false;
        self.line_started = false;
        None
    }

    /// A blank line: the event is complete (one without data is not dispatched).
    fn dispatch(&mut self) -> Option<Event> {
        let kind = std::mem::take(&mut self.kind);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(Event {
            kind: (!kind.is_empty()).then(|| String::from_utf8_lossy(&kind).into_owned()),
            data: self.data.take(),
        })
    }
}

/// The response body as a stream of events.
struct Events {
    body: Body,
    chunk: axum::body::Bytes,
    parser: Parser,
    ended: bool,
}

impl Events {
    fn new(body: Body, max: usize) -> Self {
        Events {
            body,
            chunk: axum::body::Bytes::new(),
            parser: Parser::new(max),
            ended: false,
        }
    }

    /// The next event. Cancel-safe: a received chunk is kept until it is parsed.
    async fn next(&mut self) -> Option<Result<Event, SseError>> {
        loop {
            while !self.chunk.is_empty() {
                let (used, event) = self.parser.feed(&self.chunk);
                let _ = self.chunk.split_to(used);
                if let Some(event) = event {
                    return Some(Ok(event));
                }
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(SseError::Stream(super::describe_reqwest(&e))));
                }
                // An unfinished event is dropped, as the SSE spec says.
                None => self.ended = true,
            }
        }
    }

    fn max(&self) -> usize {
        self.parser.data.max()
    }
}

/// An open SSE session: the event stream and where to POST.
pub struct SseTransport {
    http: reqwest::Client,
    post_url: reqwest::Url,
    headers: http::HeaderMap,
    post_timeout: Duration,
    events: Events,
    pending: Pending,
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

/// Opens the event stream and waits for the endpoint (the caller bounds the wait). Events
/// larger than `max_bytes` are refused.
pub async fn connect(
    http: &reqwest::Client,
    url: &str,
    headers: http::HeaderMap,
    post_timeout: Duration,
    max_bytes: usize,
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
    let mut events = Events::new(Box::pin(res.bytes_stream()), max_bytes);
    let mut skipped = 0;
    let post_url = loop {
        match events.next().await {
            Some(Ok(Event {
                kind: Some(kind),
                data,
            })) if kind == "endpoint" => {
                let Read::Whole(data) = data else {
                    return Err(SseError::BadEndpoint);
                };
                break endpoint_url(&base, &String::from_utf8_lossy(&data))?;
            }
            Some(Ok(_)) if skipped < MAX_EVENTS_BEFORE_ENDPOINT => skipped += 1,
            Some(Ok(_)) | None => return Err(SseError::NoEndpoint),
            Some(Err(e)) => return Err(e),
        }
    };
    tracing::debug!(post_url = %post_url.path(), "SSE upstream endpoint");
    Ok(SseTransport {
        http: http.clone(),
        post_url,
        headers,
        post_timeout,
        events,
        pending: Pending::default(),
    })
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.pending.sent(&item);
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
            if !matches!(ev.kind.as_deref(), None | Some("message")) {
                continue;
            }
            match ev.data {
                Read::Whole(data) => match serde_json::from_slice::<ServerJsonRpcMessage>(&data) {
                    Ok(m) => {
                        self.pending.received(&m);
                        return Some(m);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SSE upstream sent a message that is not JSON-RPC; skipped")
                    }
                },
                Read::TooLarge(ends) => {
                    let max = self.events.max();
                    tracing::warn!(
                        max,
                        "SSE upstream sent a message over the size limit; dropped"
                    );
                    if let Some(error) = self.pending.too_large(&ends, max) {
                        return Some(error);
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Dropping the response ends the GET (and with it the upstream's session).
        self.events.body = Box::pin(futures::stream::empty());
        self.events.chunk = axum::body::Bytes::new();
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

    /// Parses `chunks` as one stream; returns each event's type and data (or `None` for data
    /// over the limit).
    fn parse(chunks: &[&[u8]], max: usize) -> Vec<(Option<String>, Option<String>)> {
        let mut p = Parser::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let (used, event) = p.feed(rest);
                rest = &rest[used..];
                if let Some(e) = event {
                    let data = match e.data {
                        Read::Whole(d) => Some(String::from_utf8(d).unwrap()),
                        Read::TooLarge(_) => None,
                    };
                    out.push((e.kind, data));
                }
            }
        }
        out
    }

    #[test]
    fn events_are_parsed_across_chunks_and_line_endings() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            parse(
                &[
                    b"event: endpoint\r\ndata: /m?s=1\r",
                    b"\n\r\n: a comment\n\nda",
                    b"ta:{\"a\":\ndata: 1}\n\nevent:x\ndata\n\nid: 7\n\n",
                ],
                100,
            ),
            vec![
                (s("endpoint"), s("/m?s=1")),
                (None, s("{\"a\":\n1}")),
                (s("x"), s("")),
            ]
        );
    }

    #[test]
    fn an_event_over_the_limit_is_not_kept_and_the_next_one_is() {
        let half = vec![b'x'; 50];
        let mut big = b"data: ".to_vec();
        big.extend_from_slice(&half);
        // Exactly at the limit (two lines joined by a newline) passes.
        let fits = [&big[..], b"\ndata: ", &half[..49], b"\n\n"];
        assert_eq!(parse(&fits, 100)[0].1.as_deref().map(str::len), Some(100));
        // One byte more, even over many chunks, does not; the stream goes on.
        let over = [&big[..], b"\ndata: ", &half[..], b"\n\n", b"data: next\n\n"];
        assert_eq!(
            parse(&over, 100),
            vec![(None, None), (None, Some("next".to_string()))]
        );
    }
}
