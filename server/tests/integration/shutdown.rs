//! Shutdown as a load balancer needs it: `/readyz` turns 503 first while requests are still
//! served, then a tool call in flight when the listener closes still gets its answer.

use crate::common::{agent_allowed, mcp_client, raw_session_at};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct WaitArgs {
    ms: u64,
}

/// An upstream whose one tool answers after a while.
#[derive(Clone)]
struct Slow {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Slow {
    #[tool(description = "Answer after `ms` milliseconds")]
    async fn wait(&self, Parameters(a): Parameters<WaitArgs>) -> Result<CallToolResult, ErrorData> {
        tokio::time::sleep(Duration::from_millis(a.ms)).await;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "waited {} ms",
            a.ms
        ))]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Slow {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
    }
}

async fn slow_upstream() -> String {
    let service = StreamableHttpService::new(
        || {
            Ok(Slow {
                tool_router: Slow::tool_router(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().route_service("/mcp", service)).await;
    });
    format!("http://{addr}/mcp")
}

#[tokio::test]
async fn shutdown_turns_unready_first_and_drains_a_call_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = toolgate::config::Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/toolgate.db", dir.path().display()),
        data_dir: dir.path().to_path_buf(),
        shutdown_delay_secs: 1,
        shutdown_grace_secs: 10,
        ..Default::default()
    };
    let server = toolgate::start(config).await.expect("start");
    let http = reqwest::Client::new();
    let base = server.base_url.clone();
    let token = agent_allowed(&server, "slow", &slow_upstream().await, "wait").await;
    let client = mcp_client(&format!("{base}/mcp"), Some(&token))
        .await
        .expect("connect");
    let ready = |http: reqwest::Client, url: String| async move {
        http.get(url).send().await.map(|r| r.status().as_u16())
    };
    assert_eq!(
        ready(http.clone(), format!("{base}/readyz")).await.ok(),
        Some(200)
    );

    // An agent listening for notifications (a GET stream that never ends by itself) must not
    // hold the shutdown until the grace period runs out.
    let session = raw_session_at(&http, &base, &token).await;
    let mut listening = http
        .get(format!("{base}/mcp"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET stream");
    assert_eq!(listening.status(), 200);
    let stream_ended =
        tokio::spawn(async move { while let Ok(Some(_)) = listening.chunk().await {} });

    // A call that takes 1.8 s: it is in flight when the listener closes (after the 1 s delay).
    let call = tokio::spawn(async move {
        client
            .call_tool(
                CallToolRequestParams::new("slow__wait")
                    .with_arguments(json!({"ms": 1800}).as_object().cloned().unwrap_or_default()),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // During the delay: not ready, but still serving.
    assert_eq!(
        ready(http.clone(), format!("{base}/readyz")).await.ok(),
        Some(503)
    );
    assert_eq!(
        ready(http.clone(), format!("{base}/healthz")).await.ok(),
        Some(200)
    );
    let answer = call
        .await
        .expect("task")
        .expect("the call in flight got its answer");
    assert_eq!(
        answer
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone()),
        Some("waited 1800 ms".to_string())
    );
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("shutdown ended within 15 s")
        .expect("shutdown");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "the listener stayed open for the delay"
    );
    assert!(
        took < Duration::from_secs(8),
        "shutdown waited {took:?}: the open GET stream held it towards the 10 s grace period"
    );
    tokio::time::timeout(Duration::from_secs(1), stream_ended)
        .await
        .expect("the GET stream ended with the shutdown")
        .expect("task");
    assert!(
        ready(http.clone(), format!("{base}/healthz"))
            .await
            .is_err(),
        "closed after shutdown"
    );
}
