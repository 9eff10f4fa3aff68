//! Streamable HTTP upstreams: rmcp's client over reqwest with the response limit applied to every
//! JSON body and SSE event, and an answer that overflows, breaks off or is not JSON-RPC reported
//! as a fault for the request it answers (instead of a dropped stream the caller waits out).

use super::fault::Fault;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, RequestId};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use std::collections::HashMap;
use std::sync::Arc;

/// What the caller learns when an answer breaks off.
const BROKE_OFF: &str = "the answer broke off before it was complete";

type Events = BoxStream<'static, Result<Sse, SseError>>;
type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

/// reqwest with a limit on each response: a JSON body or SSE event of at most `max` bytes.
#[derive(Clone)]
pub(super) struct CappedHttp {
    pub(super) http: reqwest::Client,
    pub(super) max: usize,
}

impl CappedHttp {
    fn limits(&self) -> StreamableHttpResponseLimits {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_json_response_size = self.max;
        limits.max_sse_event_size = self.max;
        limits
    }

    /// A failed answer to request `id` as the fault that stands in for it; other errors as they
    /// are (a connection that could not be made is not an answer).
    fn answer(&self, id: RequestId, result: PostResult) -> PostResult {
        let fault = match result {
            Ok(StreamableHttpPostResponse::Sse(events, session)) => {
                return Ok(StreamableHttpPostResponse::Sse(
                    guarded(events, id, self.max),
                    session,
                ));
            }
            Err(StreamableHttpError::ResponseBodyTooLarge { .. }) => Fault::TooLarge(self.max),
            Err(StreamableHttpError::Client(e)) if e.is_body() || e.is_decode() => {
                tracing::warn!(error = %super::describe_reqwest(&e), "an upstream answer broke off");
                Fault::Broken(BROKE_OFF.into())
            }
            // rmcp's words for a 2xx JSON body that is not a JSON-RPC message.
            Err(StreamableHttpError::UnexpectedServerResponse(m))
                if m.starts_with("could not parse JSON") =>
            {
                tracing::warn!(error = %m, "an upstream answer is not JSON-RPC");
                Fault::Broken("the answer is not valid JSON-RPC".into())
            }
            other => return other,
        };
        Ok(StreamableHttpPostResponse::Json(fault.answer(id), None))
    }
}

/// Whether an SSE error is rmcp's event size limit.
fn too_large(e: &SseError) -> bool {
    matches!(e, SseError::Body(inner) if inner.to_string().contains("exceeded the maximum size"))
}

/// The event standing in for the answer to `id`.
fn fault_event(fault: &Fault, id: RequestId) -> Sse {
    Sse::default().data(serde_json::to_string(&fault.answer(id)).unwrap_or_default())
}

/// The event stream of a POST answering request `id`: if it fails or ends where rmcp could not
/// resume it (no event id seen), a fault for `id` follows. After the answer itself rmcp stops
/// listening, so the fault then reaches nobody.
fn guarded(events: Events, id: RequestId, max: usize) -> Events {
    struct State {
        events: Events,
        id: RequestId,
        resumable: bool,
        done: bool,
    }
    let state = State {
        events,
        id,
        resumable: false,
        done: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        let fault = match s.events.next().await {
            Some(Ok(event)) => {
                s.resumable |= event.id.is_some();
                return Some((Ok(event), s));
            }
            Some(Err(e)) if too_large(&e) => Fault::TooLarge(max),
            // rmcp resumes the stream from the last event id.
            Some(Err(e)) if s.resumable => {
                s.done = true;
                return Some((Err(e), s));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "an upstream answer stream broke off");
                Fault::Broken(BROKE_OFF.into())
            }
            None if s.resumable => return None,
            None => {
                Fault::Broken("the upstream ended the answer's stream without answering".into())
            }
        };
        s.done = true;
        let event = fault_event(&fault, s.id.clone());
        Some((Ok(event), s))
    })
    .boxed()
}

fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        JsonRpcMessage::Request(r) => Some(r.id.clone()),
        _ => None,
    }
}

impl StreamableHttpClient for CappedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> PostResult {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            self.limits(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        _max_sse_event_size: usize,
    ) -> PostResult {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            self.limits(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> PostResult {
        let mut limits = limits;
        limits.max_json_response_size = self.max;
        limits.max_sse_event_size = self.max;
        let id = request_id(&message);
        let result = StreamableHttpClient::post_message_with_response_limits(
            &self.http,
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await;
        match id {
            Some(id) => self.answer(id, result),
            None => result,
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        StreamableHttpClient::delete_session(
            &self.http,
            uri,
            session_id,
            auth_header,
            custom_headers,
        )
        .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<Events, StreamableHttpError<Self::Error>> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            self.max,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        _max_sse_event_size: usize,
    ) -> Result<Events, StreamableHttpError<Self::Error>> {
        StreamableHttpClient::get_stream_with_max_sse_event_size(
            &self.http,
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            self.max,
        )
        .await
    }
}
