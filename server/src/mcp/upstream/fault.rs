//! Faults reported in-band: when an upstream's answer is too large or breaks off, the transport
//! puts a marked JSON-RPC error in its place for the request it answers, so the caller learns why
//! at once (instead of waiting out the timeout) and the gateway can tell it from the upstream's own.

use rmcp::model::{
    ClientJsonRpcMessage, ErrorCode, ErrorData, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use std::collections::HashSet;
use std::sync::OnceLock;

/// What went wrong with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    /// It was larger than the limit (bytes).
    TooLarge(usize),
    /// It broke off or could not be read (what happened).
    Broken(String),
}

/// Key of the marker in the error's `data`.
const MARKER: &str = "toolgate/upstreamFault";

/// A per-process secret in every marker: an upstream cannot dress its own error up as one.
fn token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static TOKEN: OnceLock<u64> = OnceLock::new();
    *TOKEN.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(b"toolgate upstream fault");
        h.finish()
    })
}

impl Fault {
    /// The error standing in for the answer to `id`.
    pub(super) fn answer(&self, id: RequestId) -> ServerJsonRpcMessage {
        let (message, detail) = match self {
            Fault::TooLarge(max) => (
                format!("the answer exceeds the {max}-byte limit"),
                serde_json::json!({ "too_large": max }),
            ),
            Fault::Broken(why) => (why.clone(), serde_json::json!({ "broken": why })),
        };
        let data = serde_json::json!({ MARKER: { "token": token(), "fault": detail } });
        ServerJsonRpcMessage::error(
            ErrorData::new(ErrorCode::INTERNAL_ERROR, message, Some(data)),
            Some(id),
        )
    }

    /// The fault a transport reported, if `e` stands for one.
    pub(super) fn of(e: &ErrorData) -> Option<Fault> {
        let marker = e.data.as_ref()?.get(MARKER)?;
        if marker.get("token")?.as_u64()? != token() {
            return None;
        }
        let fault = marker.get("fault")?;
        if let Some(max) = fault.get("too_large").and_then(|v| v.as_u64()) {
            return Some(Fault::TooLarge(max as usize));
        }
        let why = fault.get("broken")?.as_str()?;
        Some(Fault::Broken(why.to_string()))
    }
}

/// How much of each end of an oversized message is kept to find its id.
const KEEP: usize = 4096;

/// A message read piece by piece: whole up to `max` bytes; past that only its ends are kept,
/// so memory stays bounded whatever the peer sends.
pub(super) struct Capped {
    max: usize,
    whole: Vec<u8>,
    over: Option<Ends>,
}

/// The first and last few KiB of a message too large to keep.
#[derive(Debug, Default)]
pub(super) struct Ends {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Ends {
    fn push(&mut self, bytes: &[u8]) {
        if self.head.len() < KEEP {
            let n = (KEEP - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * KEEP {
            self.tail.drain(..self.tail.len() - KEEP);
        }
    }

    /// The id of the JSON-RPC message these are the ends of, if it can be found: at the top
    /// level near the start (`{"jsonrpc":"2.0","id":1,"result":…`) or as the last member
    /// (`{"result":…,"jsonrpc":"2.0","id":1}`).
    pub(super) fn id(&self) -> Option<RequestId> {
        id_at_start(&self.head).or_else(|| id_at_end(&self.tail))
    }
}

/// What a finished [`Capped`] read holds.
pub(super) enum Read {
    Whole(Vec<u8>),
    TooLarge(Ends),
}

impl Capped {
    pub(super) fn new(max: usize) -> Self {
        Capped {
            max,
            whole: Vec::new(),
            over: None,
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        if let Some(over) = self.over.as_mut() {
            over.push(bytes);
        } else if self.whole.len() + bytes.len() > self.max {
            let mut over = Ends::default();
            over.push(&self.whole);
            over.push(bytes);
            self.whole = Vec::new();
            self.over = Some(over);
        } else {
            self.whole.extend_from_slice(bytes);
        }
    }

    /// The message read so far; starts the next one.
    pub(super) fn take(&mut self) -> Read {
        match self.over.take() {
            Some(over) => Read::TooLarge(over),
            None => Read::Whole(std::mem::take(&mut self.whole)),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End of the JSON string starting at `b[i] == '"'` (index after the closing quote).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End of the JSON value starting at `b[i]` (strings, nesting and scalars).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            (j < b.len()).then_some(j)
        }
    }
}

/// A JSON-RPC id (number or string) from its JSON text.
fn parse_id(text: &[u8]) -> Option<RequestId> {
    serde_json::from_slice::<RequestId>(text).ok()
}

/// The top-level `id` of the object `b` starts with, if it comes before `b` is cut off.
fn id_at_start(b: &[u8]) -> Option<RequestId> {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key = &b[i..key_end];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = value_end(b, i)?;
        if key == b"\"id\"" {
            return parse_id(&b[i..end]);
        }
        i = skip_ws(b, end);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i += 1;
    }
}

/// The `id` if it is the last member of the object `b` ends with (`…,"id":7}`).
fn id_at_end(b: &[u8]) -> Option<RequestId> {
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    if end == 0 || b[end - 1] != b'}' {
        return None;
    }
    let body = &b[..end - 1];
    let at = body.windows(4).rposition(|w| w == b"\"id\"")?;
    // A member of the outer object: after `{` or `,`, and the value runs to the closing brace.
    let before = body[..at].iter().rev().find(|c| !c.is_ascii_whitespace());
    if !matches!(before, Some(b',') | Some(b'{')) {
        return None;
    }
    let mut i = skip_ws(body, at + 4);
    if body.get(i) != Some(&b':') {
        return None;
    }
    i = skip_ws(body, i + 1);
    let value = &body[i..];
    let trimmed = value.trim_ascii_end();
    match trimmed.first()? {
        b'"' if string_end(trimmed, 0)? == trimmed.len() => parse_id(trimmed),
        b'-' | b'0'..=b'9' if trimmed.iter().all(|c| c.is_ascii_digit() || *c == b'-') => {
            parse_id(trimmed)
        }
        _ => None,
    }
}

/// Requests sent and not answered yet on one connection, to pin an oversized answer on.
#[derive(Debug, Default)]
pub(super) struct Pending(HashSet<RequestId>);

impl Pending {
    pub(super) fn sent(&mut self, m: &ClientJsonRpcMessage) {
        if let JsonRpcMessage::Request(r) = m {
            self.0.insert(r.id.clone());
        }
    }

    pub(super) fn received(&mut self, m: &ServerJsonRpcMessage) {
        match m {
            JsonRpcMessage::Response(r) => {
                self.0.remove(&r.id);
            }
            JsonRpcMessage::Error(e) => {
                if let Some(id) = &e.id {
                    self.0.remove(id);
                }
            }
            _ => {}
        }
    }

    /// The error standing in for an answer larger than `max`: for the pending request whose
    /// id it carries, else for the only pending one. `None` (the message is dropped) when it
    /// answers nothing pending (a notification, or a request to us).
    pub(super) fn too_large(&mut self, ends: &Ends, max: usize) -> Option<ServerJsonRpcMessage> {
        let id = match ends.id() {
            Some(id) => self.0.take(&id)?,
            None if self.0.len() == 1 => self.0.drain().next()?,
            None => return None,
        };
        Some(Fault::TooLarge(max).answer(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends_of(message: &[u8], max: usize) -> Ends {
        let mut c = Capped::new(max);
        for piece in message.chunks(1000) {
            c.push(piece);
        }
        match c.take() {
            Read::TooLarge(ends) => ends,
            Read::Whole(_) => panic!("not over the limit"),
        }
    }

    fn big_text() -> String {
        "x".repeat(50_000)
    }

    #[test]
    fn a_message_within_the_limit_is_kept_whole_and_one_byte_more_is_not() {
        let mut c = Capped::new(10);
        c.push(b"12345");
        c.push(b"67890");
        assert!(matches!(c.take(), Read::Whole(b) if b == b"1234567890"));
        // The next message starts empty.
        c.push(b"1");
        assert!(matches!(c.take(), Read::Whole(b) if b == b"1"));
        c.push(b"12345678901");
        let Read::TooLarge(ends) = c.take() else {
            panic!("over the limit")
        };
        assert_eq!(ends.head, b"12345678901");
        // Past the limit memory stays bounded by the kept ends.
        let mut c = Capped::new(10);
        for _ in 0..10_000 {
            c.push(&[b'y'; 1000]);
        }
        let Read::TooLarge(ends) = c.take() else {
            panic!("over the limit")
        };
        assert_eq!(ends.head.len(), KEEP);
        assert!(ends.tail.len() <= 2 * KEEP);
    }

    #[test]
    fn the_id_is_found_first_or_last_but_not_inside() {
        let t = big_text();
        let first = format!(
            r#"{{"jsonrpc":"2.0","id":42,"result":{{"content":[{{"type":"text","text":"{t}"}}]}}}}"#
        );
        assert_eq!(
            ends_of(first.as_bytes(), 100).id(),
            Some(RequestId::Number(42))
        );
        let last = format!(
            r#"{{"result":{{"content":[{{"text":"{t}","id":9}}]}},"jsonrpc":"2.0", "id" : "req-7" }}"#
        );
        assert_eq!(
            ends_of(last.as_bytes(), 100).id(),
            Some(RequestId::String("req-7".into()))
        );
        // An "id" inside the result is not the message's.
        let nested = format!(r#"{{"result":{{"text":"{t}","item":{{"id":9}}}},"jsonrpc":"2.0"}}"#);
        assert_eq!(ends_of(nested.as_bytes(), 100).id(), None);
        let quoted = format!(r#"{{"result":{{"text":"{t} \"id\":9}}"}},"jsonrpc":"2.0"}}"#);
        assert_eq!(ends_of(quoted.as_bytes(), 100).id(), None);
        // A notification has none.
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"{t}"}}}}"#
        );
        assert_eq!(ends_of(note.as_bytes(), 100).id(), None);
    }

    #[test]
    fn an_oversized_answer_fails_its_own_pending_request() {
        let t = big_text();
        let mut pending = Pending::default();
        pending
            .0
            .extend([RequestId::Number(1), RequestId::Number(2)]);
        let answer = format!(r#"{{"jsonrpc":"2.0","id":2,"result":{{"text":"{t}"}}}}"#);
        let e = pending
            .too_large(&ends_of(answer.as_bytes(), 1000), 1000)
            .expect("an error for request 2");
        let JsonRpcMessage::Error(e) = e else {
            panic!("an error")
        };
        assert_eq!(e.id, Some(RequestId::Number(2)));
        assert_eq!(e.error.message, "the answer exceeds the 1000-byte limit");
        assert_eq!(Fault::of(&e.error), Some(Fault::TooLarge(1000)));
        assert_eq!(pending.0.len(), 1);
        // Without an id the only pending request is meant; an id nobody waits for is dropped.
        let no_id = format!(r#"{{"result":{{"text":"{t}"}},"jsonrpc":"2.0"}}"#);
        assert!(
            pending
                .too_large(&ends_of(no_id.as_bytes(), 1000), 1000)
                .is_some()
        );
        assert!(pending.0.is_empty());
        assert!(
            pending
                .too_large(&ends_of(answer.as_bytes(), 1000), 1000)
                .is_none()
        );
    }

    #[test]
    fn an_upstream_cannot_forge_the_marker() {
        let genuine = match Fault::Broken("it broke".into()).answer(RequestId::Number(1)) {
            JsonRpcMessage::Error(e) => e.error,
            _ => unreachable!(),
        };
        assert_eq!(Fault::of(&genuine), Some(Fault::Broken("it broke".into())));
        let mut forged = genuine.clone();
        forged.data.as_mut().unwrap()[MARKER]["token"] = serde_json::json!(token().wrapping_add(1));
        assert_eq!(Fault::of(&forged), None);
        assert_eq!(Fault::of(&ErrorData::internal_error("plain", None)), None);
    }
}
