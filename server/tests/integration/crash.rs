//! Crash safety of the audit log: the real binary is killed with SIGKILL in the middle of a burst
//! of tool calls; afterwards every call whose answer reached the caller has its events, and the
//! hash chain is intact.

use crate::common::{mcp_client, spawn_upstream};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toolgate_domain::clock::SystemClock;
use toolgate_domain::crypto::MasterKey;
use toolgate_domain::store::Store;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_burst_loses_no_event_of_an_answered_call() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/tg.db", dir.path().display());
    let key = MasterKey::generate().to_base64();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_toolgate");
    let envs = [
        ("TOOLGATE_DATABASE_URL", db.clone()),
        ("TOOLGATE_MASTER_KEY", key.clone()),
        ("TOOLGATE_DATA_DIR", dir.path().display().to_string()),
        ("TOOLGATE_LISTEN", format!("127.0.0.1:{port}")),
    ];

    let out = std::process::Command::new(bin)
        .args(["token", "create", "--name", "crash-test", "--role", "admin"])
        .envs(envs.iter().cloned())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();

    let mut child = tokio::process::Command::new(bin)
        .arg("serve")
        .envs(envs.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let up = spawn_upstream("up").await;
    let api = |path: &str, body: Value| {
        let req = http
            .post(format!("{base}/api/v1{path}"))
            .bearer_auth(&admin)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{status}: {v}");
            v
        }
    };
    let connector = api(
        "/connectors",
        json!({"name": "up", "url": up.url, "transport": "streamable_http"}),
    )
    .await;
    let user = api(
        "/users",
        json!({"user_name": "burst", "display_name": "Burst"}),
    )
    .await;
    let group = api("/groups", json!({"display_name": "burst"})).await;
    let (gid, uid, cid) = (
        group["id"].as_str().unwrap().to_string(),
        user["id"].as_str().unwrap().to_string(),
        connector["id"].as_str().unwrap().to_string(),
    );
    let res = http
        .put(format!("{base}/api/v1/groups/{gid}/members/{uid}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let res = http
        .put(format!("{base}/api/v1/groups/{gid}/policies/{cid}"))
        .bearer_auth(&admin)
        .json(&json!({"allow": ["echo"], "block": []}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let token = api(&format!("/users/{uid}/tokens"), json!({"name": "burst"})).await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Eight agents call as fast as they can; each answered call is remembered.
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut agents = Vec::new();
    for a in 0..8 {
        let client = mcp_client(&format!("{base}/mcp"), Some(&token))
            .await
            .unwrap();
        let answered = answered.clone();
        agents.push(tokio::spawn(async move {
            for i in 0.. {
                let text = format!("burst-{a}-{i}");
                let call = CallToolRequestParams::new("up__echo")
                    .with_arguments(json!({ "text": text }).as_object().cloned().unwrap());
                match tokio::time::timeout(Duration::from_secs(10), client.call_tool(call)).await {
                    Ok(Ok(r)) if r.is_error != Some(true) => answered.lock().unwrap().push(text),
                    _ => return,
                }
            }
        }));
    }
    // Let the burst run, then pull the plug without warning.
    let started = Instant::now();
    while answered.lock().unwrap().len() < 200 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // Calls in flight at the kill never get an answer; the clients may keep retrying.
    for a in &agents {
        a.abort();
    }
    for a in agents {
        let _ = a.await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 200,
        "only {} calls answered",
        answered.len()
    );

    let store = Store::connect(
        &db,
        MasterKey::from_base64(&key).unwrap().cipher(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let events = store.audit_events_after(0, 10_000).await.unwrap();
    for text in &answered {
        let needle = format!("\"{text}\"");
        let call = events
            .iter()
            .find(|e| {
                e.kind == "tool_call"
                    && e.args_redacted
                        .as_deref()
                        .is_some_and(|a| a.contains(&needle))
            })
            .unwrap_or_else(|| panic!("answered call {text} has no tool_call event"));
        assert!(
            events
                .iter()
                .any(|e| e.kind == "tool_result" && e.call_id == call.call_id),
            "answered call {text} has no tool_result event"
        );
    }
    let report = store.verify_audit_chain(None, None).await.unwrap();
    assert!(report.first_break.is_none(), "{report:?}");
    eprintln!(
        "{} calls answered before SIGKILL; {} events on disk; chain intact",
        answered.len(),
        events.len()
    );
    store.close().await;
}
