//! Just-in-time elevation and per-call approval through the real gateway: time travel with an
//! injected clock (activation, expiry at the exact boundary, early revoke, requester's end,
//! duration clamp), separation of duties, blocks beating elevations, per-call approval (same
//! arguments run once, changed arguments refused, expired approval refused, replay refused,
//! concurrent retries), service principals, notifications, and the admin API's validation.

use crate::common::{TestApp, first_text, skip_postgres, spawn_app_clocked, spawn_upstream};
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, ServiceError};
use serde_json::{Value, json};
use std::sync::Arc;
use toolgate_domain::approvals::Actor;
use toolgate_domain::clock::{Clock, ManualClock};

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("time"),
    ))
}

/// A directory with engineers (eligible), approvers, and a git connector where engineers may
/// echo but not delete branches.
struct Lab {
    app: TestApp,
    clock: Arc<ManualClock>,
    carol: String,
    dave: String,
    erin: String,
    engineers: String,
    approvers: String,
    _upstream: crate::common::Upstream,
}

async fn lab(postgres: bool) -> Lab {
    let clock = clock();
    let app = spawn_app_clocked(clock.clone(), postgres).await;
    let upstream = spawn_upstream("git").await;
    app.create_connector("git", &upstream.url).await;
    let engineers = app.create_group("engineers").await;
    let approvers = app.create_group("approvers").await;
    let carol = app.create_user("carol").await;
    let dave = app.create_user("dave").await;
    let erin = app.create_user("erin").await;
    app.add_member(&engineers, &carol).await;
    app.add_member(&engineers, &erin).await;
    app.add_member(&approvers, &dave).await;
    app.set_policy(&engineers, "git", &["echo"], &[]).await;
    Lab {
        app,
        clock,
        carol,
        dave,
        erin,
        engineers,
        approvers,
        _upstream: upstream,
    }
}

impl Lab {
    fn person(&self, id: &str, name: &str) -> Actor {
        Actor {
            id: id.into(),
            name: name.into(),
            kind: "person",
        }
    }

    async fn profile(&self, body: Value) -> Value {
        let (s, p) = self.app.post("/api/v1/elevation/profiles", body).await;
        assert_eq!(s, 201, "{p}");
        p
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }
}

fn branch_profile(l: &Lab) -> Value {
    json!({
        "name": "Branch admin",
        "targets": [{"connector": "git", "tools": ["delete_branch"]}],
        "eligible_groups": [l.engineers],
        "approver_group": l.approvers,
        "max_minutes": 60,
        "justification_required": true
    })
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    a: Value,
) -> Result<CallToolResult, ServiceError> {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(a)))
        .await
}

/// The JSON-RPC error code and data of a refused call.
fn rpc_error(r: Result<CallToolResult, ServiceError>) -> (i32, String, Value) {
    match r {
        Err(ServiceError::McpError(e)) => {
            (e.code.0, e.message.to_string(), e.data.unwrap_or_default())
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<(String, String)> {
    client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.description.as_deref().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn audit(app: &TestApp, kind: &str) -> Vec<Value> {
    let (s, b) = app
        .get(&format!("/api/v1/audit?kind={kind}&limit=200"))
        .await;
    assert_eq!(s, 200, "{b}");
    b["items"].as_array().cloned().unwrap_or_default()
}

async fn elevation_lifecycle(postgres: bool) {
    let l = lab(postgres).await;
    let profile = l.profile(branch_profile(&l)).await;
    let token = l.app.personal_token(&l.carol).await;
    let client = l.app.mcp_client(&token).await;

    // Eligible, not active: the tool is listed with a note, the request tool is offered, and a
    // call says which profile to request and where.
    let tools = tool_names(&client).await;
    let delete = tools
        .iter()
        .find(|(n, _)| n == "git__delete_branch")
        .expect("eligible tool listed");
    assert!(
        delete
            .1
            .contains("Needs just-in-time elevation \"Branch admin\""),
        "{delete:?}"
    );
    assert!(
        tools
            .iter()
            .any(|(n, _)| n == "toolgate__request_elevation")
    );
    let (code, message, data) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "x"})).await);
    assert_eq!(code, -32004, "{message}");
    assert!(message.contains("\"Branch admin\""), "{message}");
    assert!(
        message.contains("/access?profile=Branch+admin"),
        "{message}"
    );
    assert_eq!(data["profiles"], json!(["Branch admin"]));

    // The agent asks on the person's behalf; 90 minutes are clamped to the profile's 60.
    let r = call(
        &client,
        "toolgate__request_elevation",
        json!({"profile": "Branch admin", "justification": "clean up stale branches", "minutes": 90}),
    )
    .await
    .expect("request tool answers");
    assert_ne!(r.is_error, Some(true), "{}", first_text(&r));
    assert!(
        first_text(&r).contains("waiting for an approver"),
        "{}",
        first_text(&r)
    );
    // A second request while one is pending is refused, as a tool error the agent can read.
    let again = call(
        &client,
        "toolgate__request_elevation",
        json!({"profile": "Branch admin", "justification": "again"}),
    )
    .await
    .expect("answers");
    assert_eq!(again.is_error, Some(true));
    assert!(
        first_text(&again).contains("already waiting"),
        "{}",
        first_text(&again)
    );
    // Missing justification is refused.
    let (s, pending) = l.app.get("/api/v1/elevations?status=pending").await;
    assert_eq!(s, 200);
    let pending = pending.as_array().expect("list").clone();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().expect("id").to_string();
    assert_eq!(pending[0]["minutes"], 60);
    assert_eq!(pending[0]["source"], "agent");
    assert_eq!(pending[0]["profile_id"], profile["id"]);

    // Still refused while pending.
    let (code, _, _) = rpc_error(call(&client, "git__delete_branch", json!({"name": "x"})).await);
    assert_eq!(code, -32004);

    // Separation of duties: not by the requester, not by someone outside the approver group.
    let wf = &l.app.server.state.workflow;
    let own = wf
        .decide(&id, true, &l.person(&l.carol, "carol"), None)
        .await;
    assert!(
        matches!(own, Err(toolgate_domain::Error::Forbidden(_))),
        "{own:?}"
    );
    let outsider = wf.decide(&id, true, &l.person(&l.erin, "erin"), None).await;
    assert!(
        matches!(outsider, Err(toolgate_domain::Error::Forbidden(_))),
        "{outsider:?}"
    );
    let approved = wf
        .decide(&id, true, &l.person(&l.dave, "dave"), Some("ok for today"))
        .await
        .expect("dave approves");
    assert_eq!(approved.minutes, 60);
    let expires = approved.expires_at.expect("expiry");
    // A decided request cannot be decided again.
    assert!(matches!(
        wf.decide(&id, false, &l.person(&l.dave, "dave"), None)
            .await,
        Err(toolgate_domain::Error::Conflict(_))
    ));

    // Active: the call runs and its audit event names the elevation.
    let ok = call(&client, "git__delete_branch", json!({"name": "stale"}))
        .await
        .expect("allowed under elevation");
    assert_eq!(first_text(&ok), "deleted stale");
    let calls = audit(&l.app, "tool_call").await;
    let elevated = calls
        .iter()
        .find(|e| e["tool"] == "delete_branch" && e["outcome"] == "ok")
        .unwrap_or_else(|| panic!("forwarded call recorded: {calls:#?}"));
    assert_eq!(elevated["elevation_id"], json!(id));
    assert!(
        elevated["rule"]
            .as_str()
            .unwrap_or_default()
            .contains("elevation")
    );
    let tools = tool_names(&client).await;
    let listed = tools
        .iter()
        .find(|(n, _)| n == "git__delete_branch")
        .expect("listed");
    assert!(
        !listed.1.contains("Needs just-in-time"),
        "active: listed plainly {listed:?}"
    );

    // One second before the expiry: allowed. At the expiry itself: refused (and eligible again).
    let left = (expires - l.clock.now()).num_seconds();
    assert_eq!(left, 3600);
    l.advance(left - 1);
    call(&client, "git__delete_branch", json!({"name": "a"}))
        .await
        .expect("still active one second before expiry");
    l.advance(1);
    let (code, _, _) = rpc_error(call(&client, "git__delete_branch", json!({"name": "b"})).await);
    assert_eq!(code, -32004, "refused at the exact expiry");

    // The sweep records the expiry after the fact.
    assert_eq!(wf.settle().await.expect("settle"), 1);
    let (_, e) = l.app.get(&format!("/api/v1/elevations/{id}")).await;
    assert_eq!(e["status"], "expired");
    assert_eq!(audit(&l.app, "elevation.expired").await.len(), 1);

    // Early revoke by an admin: the next call is refused at once.
    let (s, second) = l
        .app
        .post(
            "/api/v1/elevations",
            json!({"subject_kind": "person", "subject_id": l.carol, "profile": "Branch admin",
                   "justification": "release", "minutes": 10}),
        )
        .await;
    assert_eq!(s, 201, "{second}");
    let second_id = second["id"].as_str().expect("id").to_string();
    wf.decide(&second_id, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("approve");
    call(&client, "git__delete_branch", json!({"name": "c"}))
        .await
        .expect("active again");
    let (s, revoked) = l
        .app
        .post(&format!("/api/v1/elevations/{second_id}/revoke"), json!({}))
        .await;
    assert_eq!(s, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    let (code, _, _) = rpc_error(call(&client, "git__delete_branch", json!({"name": "d"})).await);
    assert_eq!(code, -32004, "refused right after the revoke");
    let (s, _) = l
        .app
        .post(&format!("/api/v1/elevations/{second_id}/revoke"), json!({}))
        .await;
    assert_eq!(s, 409, "nothing left to revoke");

    // The requester ends their own elevation early.
    let third = wf
        .request(
            l.app
                .server
                .state
                .store
                .elevation_subject("person", &l.carol)
                .await
                .expect("subject"),
            &l.person(&l.carol, "carol"),
            &toolgate_domain::elevation::ElevationAsk {
                profile: "Branch admin".into(),
                justification: "one more".into(),
                ticket: None,
                minutes: Some(5),
            },
            "dashboard",
        )
        .await
        .expect("request");
    wf.decide(&third.id, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("approve");
    let ended = wf
        .end(&third.id, &l.person(&l.carol, "carol"), false)
        .await
        .expect("end");
    assert_eq!(ended.status.as_str(), "ended");
    let (code, _, _) = rpc_error(call(&client, "git__delete_branch", json!({"name": "e"})).await);
    assert_eq!(code, -32004);

    for kind in [
        "elevation.requested",
        "elevation.approved",
        "elevation.activated",
        "elevation.revoked",
        "elevation.ended",
        "elevation.expired",
    ] {
        let rows = audit(&l.app, kind).await;
        assert!(!rows.is_empty(), "no {kind} event");
        assert!(
            rows.iter().all(|r| r["elevation_id"].is_string()),
            "{kind}: {rows:?}"
        );
    }
    client.cancel().await.ok();
}

#[tokio::test]
async fn elevation_lifecycle_with_time_travel_on_sqlite() {
    elevation_lifecycle(false).await;
}

#[tokio::test]
async fn elevation_lifecycle_with_time_travel_on_postgres() {
    if skip_postgres() {
        return;
    }
    elevation_lifecycle(true).await;
}

#[tokio::test]
async fn a_block_beats_an_elevation_and_ineligible_people_get_no_hint() {
    let l = lab(false).await;
    l.profile(branch_profile(&l)).await;
    // Contractors may echo and are blocked from deleting; they are not eligible either.
    let contractors = l.app.create_group("contractors").await;
    let frank = l.app.create_user("frank").await;
    l.app.add_member(&contractors, &frank).await;
    l.app.set_policy(&contractors, "git", &["echo"], &[]).await;
    let frank_client = l.app.mcp_client(&l.app.personal_token(&frank).await).await;
    let tools = tool_names(&frank_client).await;
    assert!(
        !tools.iter().any(|(n, _)| n == "git__delete_branch"),
        "{tools:?}"
    );
    assert!(
        !tools
            .iter()
            .any(|(n, _)| n == "toolgate__request_elevation")
    );
    let (code, message, _) =
        rpc_error(call(&frank_client, "git__delete_branch", json!({"name": "x"})).await);
    assert_eq!(code, -32602, "a plain refusal: {message}");
    assert!(message.contains("not permitted"));
    let r = call(
        &frank_client,
        "toolgate__request_elevation",
        json!({"profile": "Branch admin", "justification": "x"}),
    )
    .await;
    assert!(
        r.is_err(),
        "the request tool is not offered to the ineligible"
    );

    // Engineers with a block on the tool: an active elevation does not lift the block.
    l.app
        .set_policy(&l.engineers, "git", &["echo"], &["delete_branch"])
        .await;
    let wf = &l.app.server.state.workflow;
    let subject = l
        .app
        .server
        .state
        .store
        .elevation_subject("person", &l.carol)
        .await
        .expect("subject");
    let e = wf
        .request(
            subject,
            &l.person(&l.carol, "carol"),
            &toolgate_domain::elevation::ElevationAsk {
                profile: "Branch admin".into(),
                justification: "try".into(),
                ticket: None,
                minutes: None,
            },
            "dashboard",
        )
        .await
        .expect("request");
    wf.decide(&e.id, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("approve");
    let carol = l
        .app
        .mcp_client(&l.app.personal_token(&l.carol).await)
        .await;
    let (code, _, _) = rpc_error(call(&carol, "git__delete_branch", json!({"name": "x"})).await);
    assert_eq!(code, -32602, "blocked despite the elevation");
    let blocked = audit(&l.app, "tool_call").await;
    assert!(blocked.iter().any(|r| {
        r["rule"]
            .as_str()
            .unwrap_or_default()
            .contains("blocked by group \"engineers\"")
    }));
}

#[tokio::test]
async fn per_call_approval_runs_each_approved_call_exactly_once() {
    let l = lab(false).await;
    l.app
        .set_policy(&l.engineers, "git", &["echo", "delete_branch"], &[])
        .await;
    let (s, t) = l
        .app
        .put(
            "/api/v1/connectors/git/tools/delete_branch/approval",
            json!({"approver_group": l.approvers}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["approval_group"], json!(l.approvers));
    let client = l
        .app
        .mcp_client(&l.app.personal_token(&l.carol).await)
        .await;
    let tools = tool_names(&client).await;
    let listed = tools
        .iter()
        .find(|(n, _)| n == "git__delete_branch")
        .expect("listed");
    assert!(
        listed.1.contains("Each call needs an approver's yes"),
        "{listed:?}"
    );

    // First call: pending, with an approval id; the same call again names the same approval.
    let (code, message, data) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "release-1"})).await);
    assert_eq!(code, -32005, "{message}");
    let a1 = data["approval_id"]
        .as_str()
        .expect("approval id")
        .to_string();
    let (_, _, again) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "release-1"})).await);
    assert_eq!(again["approval_id"], json!(a1));
    let (_, pending) = l.app.get("/api/v1/approvals?status=pending").await;
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
    assert_eq!(pending[0]["tool"], "delete_branch");
    assert_eq!(pending[0]["subject_name"], "carol");
    assert!(
        pending[0]["args_redacted"]
            .as_str()
            .unwrap_or_default()
            .contains("release-1")
    );

    // Nobody approves their own call; someone outside the approver group cannot either.
    let wf = &l.app.server.state.workflow;
    assert!(matches!(
        wf.decide_call(&a1, true, &l.person(&l.carol, "carol"), None)
            .await,
        Err(toolgate_domain::Error::Forbidden(_))
    ));
    assert!(matches!(
        wf.decide_call(&a1, true, &l.person(&l.erin, "erin"), None)
            .await,
        Err(toolgate_domain::Error::Forbidden(_))
    ));
    wf.decide_call(&a1, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("dave approves");

    // Different arguments are not covered: a new approval is needed.
    let (code, _, other) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "main"})).await);
    assert_eq!(code, -32005);
    assert_ne!(other["approval_id"], json!(a1));
    // The approved call runs, once; the replay is a new request, not a second run.
    let ran = call(&client, "git__delete_branch", json!({"name": "release-1"}))
        .await
        .expect("approved call runs");
    assert_eq!(first_text(&ran), "deleted release-1");
    let (code, _, replay) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "release-1"})).await);
    assert_eq!(code, -32005, "replay refused");
    let a3 = replay["approval_id"].as_str().expect("id").to_string();
    assert_ne!(a3, a1);
    let (_, used) = l.app.get(&format!("/api/v1/approvals/{a1}")).await;
    assert_eq!(used["status"], "used");

    // Five identical retries at once against one approval: exactly one runs.
    wf.decide_call(&a3, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("approve");
    let results = futures::future::join_all(
        (0..5).map(|_| call(&client, "git__delete_branch", json!({"name": "release-1"}))),
    )
    .await;
    let runs = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(runs, 1, "{results:?}");
    let forwarded: Vec<Value> = audit(&l.app, "tool_call")
        .await
        .into_iter()
        .filter(|e| e["tool"] == "delete_branch" && e["outcome"] == "ok")
        .collect();
    assert_eq!(forwarded.len(), 2, "two approvals, two runs: {forwarded:?}");
    let mut ids: Vec<&str> = forwarded
        .iter()
        .filter_map(|e| e["approval_id"].as_str())
        .collect();
    ids.sort();
    let mut expected = vec![a1.as_str(), a3.as_str()];
    expected.sort();
    assert_eq!(ids, expected);

    // An approval not used within its lifetime (15 minutes by default) no longer runs the call.
    let a2 = other["approval_id"].as_str().expect("id").to_string();
    wf.decide_call(&a2, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("approve");
    l.advance(15 * 60);
    let (code, _, fresh) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "main"})).await);
    assert_eq!(code, -32005, "expired approval refused");
    assert_ne!(fresh["approval_id"], json!(a2));
    let (_, expired) = l.app.get("/api/v1/approvals?status=expired").await;
    assert!(
        expired
            .as_array()
            .expect("list")
            .iter()
            .any(|a| a["id"] == json!(a2))
    );

    // A denial is reported with the approver's comment.
    let a4 = fresh["approval_id"].as_str().expect("id").to_string();
    wf.decide_call(
        &a4,
        false,
        &l.person(&l.dave, "dave"),
        Some("not main, ever"),
    )
    .await
    .expect("deny");
    let (code, message, _) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "main"})).await);
    assert_eq!(code, -32006);
    assert!(message.contains("not main, ever"), "{message}");
    assert_eq!(audit(&l.app, "approval.approved").await.len(), 3);
    assert_eq!(audit(&l.app, "approval.denied").await.len(), 1);
    let pending_events: Vec<Value> = audit(&l.app, "tool_call")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "pending_approval")
        .collect();
    assert!(pending_events.iter().all(|e| e["approval_id"].is_string()));
}

#[tokio::test]
async fn service_principals_are_elevated_by_a_human_approver() {
    let l = lab(false).await;
    l.profile(branch_profile(&l)).await;
    let store = &l.app.server.state.store;
    let (sp, _) = store
        .create_service_principal(toolgate_domain::store::NewServicePrincipal {
            name: "nightly-cleanup".into(),
            owner: "carol".into(),
            groups: vec![l.engineers.clone()],
            ..Default::default()
        })
        .await
        .expect("sp");
    let (s, e) = l
        .app
        .post(
            "/api/v1/elevations",
            json!({"subject_kind": "service_principal", "subject_id": sp.id,
                   "profile": "Branch admin", "justification": "weekly cleanup"}),
        )
        .await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["subject_kind"], "service_principal");
    let id = e["id"].as_str().expect("id");
    let principal = toolgate_domain::snapshot::Principal {
        kind: toolgate_domain::snapshot::SubjectKind::ServicePrincipal,
        user_id: sp.id.clone(),
        user_name: sp.name.clone(),
        groups: vec![l.engineers.clone()],
        ..Default::default()
    };
    let now = || l.clock.now().timestamp_millis();
    let before =
        l.app
            .server
            .state
            .snapshot
            .get()
            .decide_call(&principal, "git", "delete_branch", now());
    assert!(!before.verdict.is_allowed());
    assert_eq!(before.eligible, vec!["Branch admin".to_string()]);
    l.app
        .server
        .state
        .workflow
        .decide(id, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("a person approves");
    let after =
        l.app
            .server
            .state
            .snapshot
            .get()
            .decide_call(&principal, "git", "delete_branch", now());
    assert!(after.verdict.is_allowed(), "{:?}", after.verdict);
    assert_eq!(after.elevation.as_deref(), Some(id));
    // The token the admin used cannot approve: approvals are people's acts.
    assert!(
        l.app
            .server
            .state
            .workflow
            .decide(
                id,
                false,
                &Actor {
                    id: "tok".into(),
                    name: "token:x".into(),
                    kind: "admin"
                },
                None
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn auto_approving_profiles_and_profile_deletion() {
    let l = lab(false).await;
    let mut body = branch_profile(&l);
    body["auto_approve"] = json!(true);
    body["requester_sets_duration"] = json!(false);
    let p = l.profile(body).await;
    let client = l
        .app
        .mcp_client(&l.app.personal_token(&l.carol).await)
        .await;
    let r = call(
        &client,
        "toolgate__request_elevation",
        json!({"profile": "Branch admin", "justification": "hotfix", "minutes": 5}),
    )
    .await
    .expect("answers");
    assert!(
        first_text(&r).contains("is active until"),
        "{}",
        first_text(&r)
    );
    let (_, active) = l.app.get("/api/v1/elevations?status=active").await;
    assert_eq!(
        active[0]["minutes"], 60,
        "fixed duration: the requester cannot choose"
    );
    call(&client, "git__delete_branch", json!({"name": "x"}))
        .await
        .expect("auto-approved elevation works");
    // Deleting the profile revokes what it granted.
    let pid = p["id"].as_str().expect("id");
    let (s, _) = l
        .app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/elevation/profiles/{pid}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (code, message, _) =
        rpc_error(call(&client, "git__delete_branch", json!({"name": "y"})).await);
    assert_eq!(code, -32602, "{message}");
    let (_, e) = l
        .app
        .get(&format!(
            "/api/v1/elevations/{}",
            active[0]["id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(e["status"], "revoked");
}

#[tokio::test]
async fn admin_api_validates_and_changes_nothing_on_bad_input() {
    let l = lab(false).await;
    let good = branch_profile(&l);
    let cases = [
        (json!({"eligible_groups": ["nope"]}), 422),
        (json!({"approver_group": "nope"}), 422),
        (
            json!({"targets": [{"connector": "nope", "tools": ["x"]}]}),
            422,
        ),
        (json!({"targets": [{"connector": "git", "tools": []}]}), 422),
        (json!({"max_minutes": 0}), 422),
        (json!({"max_minutes": 20000}), 422),
        (json!({"name": ""}), 422),
        (json!({"unknown_field": 1}), 400),
    ];
    for (change, status) in cases {
        let mut body = good.clone();
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (s, b) = l.app.post("/api/v1/elevation/profiles", body).await;
        assert_eq!(s, status, "{change}: {b}");
        assert!(b["error"]["message"].is_string(), "{b}");
    }
    let (_, list) = l.app.get("/api/v1/elevation/profiles").await;
    assert_eq!(list, json!([]), "nothing created by bad input");
    l.profile(good.clone()).await;
    let (s, _) = l.app.post("/api/v1/elevation/profiles", good).await;
    assert_eq!(s, 409, "duplicate name");
    let (s, _) = l.app.get("/api/v1/elevations?status=sideways").await;
    assert_eq!(s, 422);
    let (s, b) = l
        .app
        .post(
            "/api/v1/elevations",
            json!({"subject_kind": "person", "subject_id": l.dave, "profile": "Branch admin",
                   "justification": "not eligible"}),
        )
        .await;
    assert_eq!(s, 403, "dave is not in an eligible group: {b}");
    let (s, _) = l
        .app
        .post(
            "/api/v1/elevations",
            json!({"subject_kind": "person", "subject_id": l.carol, "profile": "Branch admin"}),
        )
        .await;
    assert_eq!(s, 422, "justification required");

    // Settings: bad values are refused whole; the webhook URL is sealed and never returned.
    let (s, _) = l
        .app
        .put(
            "/api/v1/settings/elevation",
            json!({"approval_ttl_minutes": 0, "webhook_url": "https://hooks.example.com/x"}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = l
        .app
        .put(
            "/api/v1/settings/elevation",
            json!({"webhook_url": "ftp://example.com"}),
        )
        .await;
    assert_eq!(s, 422);
    let (_, view) = l.app.get("/api/v1/settings/elevation").await;
    assert_eq!(view["webhook_configured"], false);
    assert_eq!(view["approval_ttl_minutes"], 15);
    let (s, view) = l
        .app
        .put("/api/v1/settings/elevation", json!({"approval_ttl_minutes": 30, "webhook_url": "https://hooks.example.com/secret-path"}))
        .await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["webhook_configured"], true);
    assert!(!view.to_string().contains("secret-path"));
    let (s, _) = l
        .app
        .put(
            "/api/v1/connectors/git/tools/delete_branch/approval",
            json!({"approver_group": "nope"}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = l
        .app
        .put(
            "/api/v1/connectors/git/tools/nope/approval",
            json!({"approver_group": null}),
        )
        .await;
    assert_eq!(s, 404);
}

/// Collects webhook posts.
async fn webhook_sink() -> (String, Arc<tokio::sync::Mutex<Vec<Value>>>) {
    let got: Arc<tokio::sync::Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().await.push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

async fn wait_for(got: &tokio::sync::Mutex<Vec<Value>>, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let v = got.lock().await.clone();
        if v.len() >= n {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    got.lock().await.clone()
}

#[tokio::test]
async fn notifications_go_to_the_webhook_in_each_format() {
    let l = lab(false).await;
    l.profile(branch_profile(&l)).await;
    let (url, got) = webhook_sink().await;
    let (s, _) = l
        .app
        .put(
            "/api/v1/settings/elevation",
            json!({"webhook_url": url, "webhook_format": "json"}),
        )
        .await;
    assert_eq!(s, 200);
    let client = l
        .app
        .mcp_client(&l.app.personal_token(&l.carol).await)
        .await;
    call(
        &client,
        "toolgate__request_elevation",
        json!({"profile": "Branch admin", "justification": "cleanup"}),
    )
    .await
    .expect("request");
    let posts = wait_for(&got, 1).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["event"], "elevation.requested");
    assert_eq!(posts[0]["elevation"]["subject_name"], "carol");
    assert!(
        posts[0]["link"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/approvals")
    );

    let (_, pending) = l.app.get("/api/v1/elevations?status=pending").await;
    let id = pending[0]["id"].as_str().expect("id").to_string();
    l.app
        .put(
            "/api/v1/settings/elevation",
            json!({"webhook_format": "slack"}),
        )
        .await;
    l.app
        .server
        .state
        .workflow
        .decide(&id, true, &l.person(&l.dave, "dave"), None)
        .await
        .expect("approve");
    let posts = wait_for(&got, 2).await;
    let text = posts[1]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("is active until") && text.contains("approved by dave"),
        "{text}"
    );

    l.app
        .put(
            "/api/v1/settings/elevation",
            json!({"webhook_format": "teams"}),
        )
        .await;
    l.advance(3600);
    l.app.server.state.workflow.settle().await.expect("settle");
    let posts = wait_for(&got, 3).await;
    assert_eq!(posts[2]["@type"], "MessageCard", "{:?}", posts[2]);
    assert!(
        posts[2]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("expired")
    );
}
