//! The store suite, run unchanged against SQLite and PostgreSQL.

use crate::common::{postgres_base_url, skip_postgres};
use chrono::{Duration, TimeZone, Utc};
use std::sync::Arc;
use toolgate_domain::Error;
use toolgate_domain::clock::ManualClock;
use toolgate_domain::crypto::MasterKey;
use toolgate_domain::model::{AuditDecision, Outcome, TokenKind, Transport};
use toolgate_domain::store::{AuditQuery, NewAuditEvent, NewConnector, NewUser, Store};

/// A fresh PostgreSQL schema, or None (with a note) when the run skips PostgreSQL explicitly.
async fn fresh_postgres() -> Option<String> {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return None;
    }
    Some(
        toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
            .await
            .unwrap(),
    )
}

async fn open(url: &str, key: &MasterKey, clock: Arc<ManualClock>) -> Store {
    let store = Store::connect(url, key.cipher(), clock)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrating twice is a no-op");
    store
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
    ))
}

fn event(principal: &str, tool: &str, decision: AuditDecision) -> NewAuditEvent {
    NewAuditEvent {
        connector: Some("c".into()),
        tool: Some(tool.into()),
        decision,
        rule: Some("r".into()),
        outcome: if decision == AuditDecision::Allow {
            Outcome::Ok
        } else {
            Outcome::Denied
        },
        latency_us: 1500,
        request_id: Some("req-1".into()),
        ..NewAuditEvent::new(
            Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
            "tool_call",
            principal,
        )
    }
}

async fn suite(url: String) {
    let key = MasterKey::generate();
    let clock = clock();
    let store = open(&url, &key, clock.clone()).await;
    store.ping().await.unwrap();

    // Users: created, unique case-insensitively, disabled.
    let alice = store
        .create_user(NewUser {
            user_name: "Alice@Example.com".into(),
            display_name: "Alice".into(),
            external_id: Some("oid-1".into()),
        })
        .await
        .unwrap();
    assert!(alice.active);
    assert_eq!(store.get_user(&alice.id).await.unwrap(), alice);
    let dup = store
        .create_user(NewUser {
            user_name: "alice@example.com".into(),
            display_name: "A2".into(),
            external_id: None,
        })
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    assert!(matches!(
        store.get_user("missing").await,
        Err(Error::NotFound("user"))
    ));
    let bob = store
        .create_user(NewUser {
            user_name: "bob".into(),
            display_name: "Bob".into(),
            external_id: None,
        })
        .await
        .unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 2);

    // Groups and memberships.
    let eng = store.create_group("Engineers", None).await.unwrap();
    assert!(matches!(
        store.create_group("engineers", None).await,
        Err(Error::Conflict(_))
    ));
    store.add_member(&eng.id, &alice.id).await.unwrap();
    store.add_member(&eng.id, &alice.id).await.unwrap();
    assert!(matches!(
        store.add_member(&eng.id, "nope").await,
        Err(Error::NotFound("user"))
    ));
    assert!(matches!(
        store.add_member("nope", &bob.id).await,
        Err(Error::NotFound("group"))
    ));
    assert_eq!(
        store.all_memberships().await.unwrap(),
        vec![(eng.id.clone(), alice.id.clone())]
    );
    store.remove_member(&eng.id, &bob.id).await.unwrap();
    assert_eq!(store.group_members(&eng.id).await.unwrap().len(), 1);

    // Connectors: secrets sealed under the key, bound to the row.
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Authorization".to_string(), "Bearer abc123".to_string());
    let gh = store
        .create_connector(NewConnector {
            headers,
            ..NewConnector::http("github", "https://x/mcp")
        })
        .await
        .unwrap();
    assert_eq!(gh.header_names, vec!["Authorization"]);
    let dup = store
        .create_connector(NewConnector::http("github", "https://y/mcp"))
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))));
    let raw = store.raw_sealed_headers(&gh.id).await.unwrap();
    assert!(!raw.contains("abc123"));
    let secrets = store.connectors_with_secrets().await.unwrap();
    assert_eq!(secrets[0].headers["Authorization"], "Bearer abc123");
    // The same database under another master key cannot open them, and says so by leaving it out.
    let other = Store::connect(&url, MasterKey::generate().cipher(), clock.clone())
        .await
        .unwrap();
    assert!(other.connectors_with_secrets().await.unwrap().is_empty());
    other.close().await;
    let off = store.set_connector_enabled(&gh.id, false).await.unwrap();
    assert!(!off.enabled);
    store.set_connector_enabled(&gh.id, true).await.unwrap();

    // Policies: upsert, validation, listing.
    let p = store
        .put_policy(&eng.id, &gh.id, vec!["get_*".into()], vec![])
        .await
        .unwrap();
    assert_eq!(p.allow, vec!["get_*"]);
    clock.advance(Duration::seconds(1));
    let p2 = store
        .put_policy(&eng.id, &gh.id, vec!["*".into()], vec!["delete_*".into()])
        .await
        .unwrap();
    assert_eq!(
        (p2.allow.clone(), p2.block.clone()),
        (vec!["*".to_string()], vec!["delete_*".to_string()])
    );
    assert!(p2.updated_at > p.updated_at);
    assert!(matches!(
        store
            .put_policy(&eng.id, &gh.id, vec!["bad pattern".into()], vec![])
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store.put_policy(&eng.id, "nope", vec![], vec![]).await,
        Err(Error::NotFound("connector"))
    ));
    let all = store.all_policies().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].rules.block, vec!["delete_*"]);

    // Tokens: only hashes stored; revoked and disabled-user tokens do not resolve.
    let (info, secret) = store
        .create_token(TokenKind::Personal, "laptop", Some(&alice.id))
        .await
        .unwrap();
    assert!(secret.starts_with(&info.prefix));
    let grant = store.find_token(&secret).await.unwrap().expect("found");
    assert_eq!(grant.user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(store.active_personal_tokens().await.unwrap().len(), 1);
    assert!(store.find_token("tgp_unknown").await.unwrap().is_none());
    store.set_user_active(&alice.id, false).await.unwrap();
    assert!(store.find_token(&secret).await.unwrap().is_none());
    assert!(matches!(
        store
            .create_token(TokenKind::Personal, "x", Some(&alice.id))
            .await,
        Err(Error::Invalid(_))
    ));
    store.set_user_active(&alice.id, true).await.unwrap();
    store.revoke_token(&info.id).await.unwrap();
    store.revoke_token(&info.id).await.unwrap();
    assert!(store.find_token(&secret).await.unwrap().is_none());
    assert!(store.list_user_tokens(&alice.id).await.unwrap()[0].revoked);
    let (_, admin) = store
        .create_token(TokenKind::Admin, "ci", None)
        .await
        .unwrap();
    assert_eq!(
        store.find_token(&admin).await.unwrap().unwrap().kind,
        TokenKind::Admin
    );
    assert!(matches!(
        store
            .create_token(TokenKind::Admin, "x", Some(&bob.id))
            .await,
        Err(Error::Invalid(_))
    ));

    // Local admins: argon2id, unknown name and wrong password look alike.
    store
        .create_admin("root", "correct horse battery")
        .await
        .unwrap();
    assert!(matches!(
        store.create_admin("ROOT", "another long password").await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.create_admin("x", "short").await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(
        store
            .verify_admin("Root", "correct horse battery")
            .await
            .unwrap()
            .username,
        "root"
    );
    assert!(matches!(
        store.verify_admin("root", "wrong").await,
        Err(Error::Unauthenticated)
    ));
    assert!(matches!(
        store.verify_admin("nobody", "correct horse battery").await,
        Err(Error::Unauthenticated)
    ));
    assert_eq!(store.count_admins().await.unwrap(), 1);

    // Sessions expire by the clock.
    let now_ms = clock_ms(&clock);
    assert!(
        store
            .create_session("s1", "{}", now_ms + 60_000, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .create_session("s1", "{}", now_ms + 60_000, None)
            .await
            .unwrap()
    );
    store
        .save_session("s1", "{\"a\":1}", now_ms + 60_000, Some(&alice.id))
        .await
        .unwrap();
    assert_eq!(
        store.load_session("s1").await.unwrap().unwrap().0,
        "{\"a\":1}"
    );
    clock.advance(Duration::minutes(2));
    assert!(store.load_session("s1").await.unwrap().is_none());
    assert_eq!(store.delete_expired_sessions().await.unwrap(), 1);
    // Offboarding ends a person's sessions.
    let later = clock_ms(&clock) + 60_000;
    store
        .save_session("s2", "{}", later, Some(&alice.id))
        .await
        .unwrap();
    store.save_session("s3", "{}", later, None).await.unwrap();
    store.set_user_active(&alice.id, false).await.unwrap();
    assert!(store.load_session("s2").await.unwrap().is_none());
    assert!(store.load_session("s3").await.unwrap().is_some());
    store.set_user_active(&alice.id, true).await.unwrap();
    store
        .save_session("s4", "{}", later, Some(&alice.id))
        .await
        .unwrap();
    assert_eq!(
        store.session_counts().await.unwrap(),
        vec![(alice.id.clone(), 1)]
    );
    assert_eq!(store.delete_user_sessions(&alice.id).await.unwrap(), 1);
    assert!(store.session_counts().await.unwrap().is_empty());

    // MCP sessions: stored by the hash of their id, owned once, forgotten after a day unused.
    store
        .save_mcp_session("mcp-1", "aggregate", "{\"p\":1}")
        .await
        .unwrap();
    let row = store.load_mcp_session("mcp-1").await.unwrap().unwrap();
    assert_eq!(
        (row.service.as_str(), row.owner, row.state.as_str()),
        ("aggregate", None, "{\"p\":1}")
    );
    assert!(store.claim_mcp_session("mcp-1", "person:a").await.unwrap());
    assert!(
        store.claim_mcp_session("mcp-1", "person:a").await.unwrap(),
        "claiming again as the owner is idempotent"
    );
    assert!(
        !store.claim_mcp_session("mcp-1", "person:b").await.unwrap(),
        "someone else's session cannot be claimed"
    );
    assert!(
        !store
            .claim_mcp_session("unknown", "person:a")
            .await
            .unwrap()
    );
    // Saving again (a replayed handshake) keeps the owner.
    store
        .save_mcp_session("mcp-1", "aggregate", "{\"p\":2}")
        .await
        .unwrap();
    let row = store.load_mcp_session("mcp-1").await.unwrap().unwrap();
    assert_eq!(
        (row.owner.as_deref(), row.state.as_str()),
        (Some("person:a"), "{\"p\":2}")
    );
    store
        .save_mcp_session("mcp-2", "connector", "{}")
        .await
        .unwrap();
    clock.advance(Duration::hours(23));
    store
        .touch_mcp_sessions(&["mcp-2".to_string()])
        .await
        .unwrap();
    clock.advance(Duration::hours(2));
    assert!(
        store.load_mcp_session("mcp-1").await.unwrap().is_none(),
        "unused for a day"
    );
    assert!(store.load_mcp_session("mcp-2").await.unwrap().is_some());
    assert_eq!(store.purge_mcp_sessions().await.unwrap(), 1);
    store.delete_mcp_session("mcp-2").await.unwrap();
    assert!(store.load_mcp_session("mcp-2").await.unwrap().is_none());
    clock.advance(-Duration::hours(25)); // back to where the rest of the suite expects it

    // Audit: batch insert, newest first, keyset paging, overview counts.
    let batch: Vec<NewAuditEvent> = (0..5)
        .map(|i| {
            event(
                "alice",
                &format!("t{i}"),
                if i % 2 == 0 {
                    AuditDecision::Allow
                } else {
                    AuditDecision::Deny
                },
            )
        })
        .collect();
    store.insert_audit_batch(&batch).await.unwrap();
    let page = store
        .list_audit(&AuditQuery {
            limit: 3,
            before_id: None,
        })
        .await
        .unwrap();
    let tools: Vec<_> = page.iter().map(|e| e.tool.clone().unwrap()).collect();
    assert_eq!(tools, vec!["t4", "t3", "t2"]);
    assert_eq!(page[0].latency_ms, 1.5);
    let rest = store
        .list_audit(&AuditQuery {
            limit: 3,
            before_id: Some(page[2].id),
        })
        .await
        .unwrap();
    let tools: Vec<_> = rest.iter().map(|e| e.tool.clone().unwrap()).collect();
    assert_eq!(tools, vec!["t1", "t0"]);
    let o = store.overview().await.unwrap();
    assert_eq!((o.users, o.groups, o.connectors), (2, 1, 1));
    // The clock moved 2 min past the events' time: all 5 are within 24 h; 2 were denials.
    assert_eq!((o.calls_24h, o.denied_24h), (5, 2));

    // Directory writes (SCIM): documents, versions, member changes in bulk, deletes.
    use toolgate_domain::store::{DirectoryKey, GroupWrite, MemberChange, UserWrite};
    let uw = |name: &str| UserWrite {
        user_name: name.into(),
        display_name: name.into(),
        external_id: Some(format!("ext-{name}")),
        active: true,
        doc: format!("{{\"userName\":\"{name}\"}}"),
    };
    let mut ids = vec![];
    for i in 0..250 {
        ids.push(
            store
                .directory_create_user(uw(&format!("dir{i}")), "scim")
                .await
                .unwrap()
                .user
                .id,
        );
    }
    let found = store
        .directory_users(Some((DirectoryKey::ExternalId, "ext-dir7")))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version, 1);
    let g = store
        .directory_create_group(
            GroupWrite {
                display_name: "Dir".into(),
                external_id: None,
                doc: "{}".into(),
            },
            &ids[..10],
            "scim",
        )
        .await
        .unwrap();
    assert_eq!(g.members.len(), 10);
    // More members than one statement chunk, with a duplicate and an overlap.
    let mut add: Vec<String> = ids[5..250].to_vec();
    add.push(ids[6].clone());
    let g = store
        .directory_update_group(
            &g.group.id,
            None,
            &MemberChange {
                add,
                remove: vec![ids[0].clone()],
                replace: None,
            },
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!((g.members.len(), g.version), (249, 2));
    let stale = store
        .directory_update_group(&g.group.id, None, &MemberChange::default(), Some(1))
        .await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_))));
    let bad = MemberChange {
        add: vec!["nope".into()],
        ..Default::default()
    };
    assert!(matches!(
        store
            .directory_update_group(&g.group.id, None, &bad, None)
            .await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(
        store
            .directory_group(&g.group.id)
            .await
            .unwrap()
            .members
            .len(),
        249,
        "nothing was written"
    );
    let replaced = MemberChange {
        replace: Some(vec![ids[1].clone()]),
        ..Default::default()
    };
    let g = store
        .directory_update_group(&g.group.id, None, &replaced, None)
        .await
        .unwrap();
    assert_eq!(g.members, vec![ids[1].clone()]);
    store.delete_user(&ids[1], None).await.unwrap();
    assert!(
        store
            .directory_group(&g.group.id)
            .await
            .unwrap()
            .members
            .is_empty()
    );
    assert!(matches!(
        store.delete_user(&ids[1], None).await,
        Err(Error::NotFound("user"))
    ));
    store.delete_group(&g.group.id, Some(4)).await.unwrap_err();
    store.delete_group(&g.group.id, None).await.unwrap();

    store.close().await;
}

fn clock_ms(c: &ManualClock) -> i64 {
    use toolgate_domain::clock::Clock;
    c.now().timestamp_millis()
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(format!("sqlite://{}/nested/dir/t.db", dir.path().display())).await;
    assert!(
        dir.path().join("nested/dir/t.db").exists(),
        "the SQLite file and folders are created"
    );
}

#[tokio::test]
async fn store_suite_on_postgres() {
    if skip_postgres() {
        eprintln!("TOOLGATE_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let url = toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
        .await
        .unwrap();
    suite(url).await;
}

async fn audit_chain_suite(url: String) {
    let store = open(&url, &MasterKey::generate(), clock()).await;
    for batch in 0..3 {
        let events: Vec<NewAuditEvent> = (0..4)
            .map(|i| event(&format!("p{batch}"), &format!("t{i}"), AuditDecision::Allow))
            .collect();
        store.insert_audit_batch(&events).await.unwrap();
    }
    let ok = store.verify_audit_chain(None, None).await.unwrap();
    assert_eq!(
        (ok.checked, ok.unchained, ok.first_break.clone()),
        (12, 0, None)
    );
    let ids: Vec<i64> = store
        .list_audit(&AuditQuery {
            limit: 100,
            before_id: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .rev()
        .collect();
    // A range check trusts its first row's recorded predecessor.
    let range = store
        .verify_audit_chain(Some(ids[4]), Some(ids[7]))
        .await
        .unwrap();
    assert_eq!((range.checked, range.first_break), (4, None));

    // An edited row is found.
    store
        .execute_raw(&format!(
            "UPDATE audit_events SET principal = 'mallory' WHERE id = {}",
            ids[5]
        ))
        .await
        .unwrap();
    let broken = store.verify_audit_chain(None, None).await.unwrap();
    let b = broken.first_break.expect("edit detected");
    assert_eq!(b.id, ids[5]);
    assert!(b.reason.contains("changed"), "{}", b.reason);
    assert_eq!(broken.checked, 5);
    store
        .execute_raw(&format!(
            "UPDATE audit_events SET principal = 'p1' WHERE id = {}",
            ids[5]
        ))
        .await
        .unwrap();
    assert!(
        store
            .verify_audit_chain(None, None)
            .await
            .unwrap()
            .first_break
            .is_none(),
        "restored"
    );

    // A deleted row breaks the link of the next one.
    store
        .execute_raw(&format!("DELETE FROM audit_events WHERE id = {}", ids[8]))
        .await
        .unwrap();
    let b = store
        .verify_audit_chain(None, None)
        .await
        .unwrap()
        .first_break
        .expect("deletion detected");
    assert_eq!(b.id, ids[9]);
    assert!(b.reason.contains("deleted"), "{}", b.reason);

    // Reordering (two rows trade places) breaks the chain too. PostgreSQL identity ids cannot
    // be updated at all, so the swap is done where it can be: SQLite.
    if url.starts_with("sqlite") {
        let swap = format!(
            "UPDATE audit_events SET id = -1 WHERE id = {a}; UPDATE audit_events SET id = {a} WHERE id = {b}; UPDATE audit_events SET id = {b} WHERE id = -1",
            a = ids[1],
            b = ids[2]
        );
        store.execute_raw(&swap).await.unwrap();
        let swapped = store.verify_audit_chain(None, Some(ids[3])).await.unwrap();
        assert_eq!(swapped.first_break.map(|b| b.id), Some(ids[1]));
    }
    store.close().await;
}

/// The chain is verified in batches (a few hundred rows per query): links across batch
/// boundaries are checked, and an edit far past the first batch is found.
#[tokio::test]
async fn audit_chain_is_verified_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = open(&url, &MasterKey::generate(), clock()).await;
    for batch in 0..13 {
        let events: Vec<NewAuditEvent> = (0..100)
            .map(|i| event(&format!("p{batch}"), &format!("t{i}"), AuditDecision::Allow))
            .collect();
        store.insert_audit_batch(&events).await.unwrap();
    }
    let ok = store.verify_audit_chain(None, None).await.unwrap();
    assert_eq!((ok.checked, ok.first_break.clone()), (1300, None));
    // The 1,201st event: in the third batch or later whatever the batch size below 1,200.
    store
        .execute_raw("UPDATE audit_events SET principal = 'mallory' WHERE id = (SELECT id FROM audit_events ORDER BY id LIMIT 1 OFFSET 1200)")
        .await
        .unwrap();
    let broken = store.verify_audit_chain(None, None).await.unwrap();
    assert_eq!(broken.checked, 1200, "the 1,200 before it verified");
    assert!(broken.first_break.is_some());
    store.close().await;
}

#[tokio::test]
async fn audit_chain_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    audit_chain_suite(format!("sqlite://{}/chain.db", dir.path().display())).await;
}

#[tokio::test]
async fn audit_chain_on_postgres() {
    if let Some(url) = fresh_postgres().await {
        audit_chain_suite(url).await;
    }
}

fn at(minute: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + Duration::minutes(minute)
}

/// Search filters, full text, keyset paging, folding results into calls, checkpoints and
/// retention — the same on both backends.
async fn audit_search_suite(url: String) {
    use toolgate_domain::model::AuditFilter;
    let clock = clock();
    let store = open(&url, &MasterKey::generate(), clock.clone()).await;
    let alice = store
        .create_user(NewUser {
            user_name: "alice".into(),
            display_name: "Alice".into(),
            external_id: None,
        })
        .await
        .unwrap();
    let eng = store.create_group("Engineering", None).await.unwrap();
    store.add_member(&eng.id, &alice.id).await.unwrap();

    let mut events = Vec::new();
    for i in 0..10i64 {
        let (who, who_id) = if i % 2 == 0 {
            ("alice", Some(alice.id.clone()))
        } else {
            ("bob", None)
        };
        let mut e = event(
            who,
            if i < 5 {
                "create_issue"
            } else {
                "delete_branch"
            },
            if i == 7 {
                AuditDecision::Deny
            } else {
                AuditDecision::Allow
            },
        );
        e.at = at(i);
        e.principal_id = who_id;
        e.connector = Some(if i < 8 { "github" } else { "jira" }.into());
        e.args_redacted = Some(format!("{{\"title\":\"quarterly report {i}\"}}"));
        e.elevation_id = (i == 3).then(|| "elev-1".to_string());
        events.push(e);
    }
    // A forwarded call and its result, folded into one row by the search.
    let mut call = event("carol", "search", AuditDecision::Allow);
    call.at = at(20);
    call.outcome = Outcome::Forwarded;
    call.call_id = Some("call-1".into());
    call.connector = Some("github".into());
    let mut result = NewAuditEvent::new(at(20), "tool_result", "carol");
    result.call_id = Some("call-1".into());
    result.outcome = Outcome::ToolError;
    result.bytes_out = Some(4096);
    result.error = Some("upstream said no".into());
    result.dlp_findings.insert("email".into(), 2);
    events.push(call);
    events.push(result);
    let mut sign_in = NewAuditEvent::new(at(21), "sign_in", "dave");
    sign_in.detail = Some("local account".into());
    events.push(sign_in);
    store.insert_audit_batch(&events).await.unwrap();

    let search = |f: AuditFilter| {
        let store = store.clone();
        async move {
            let (items, next) = store.search_audit(&f, None, 100).await.unwrap();
            assert!(next.is_none());
            items
        }
    };
    let all = search(AuditFilter::default()).await;
    assert_eq!(all.len(), 12, "tool_result rows fold into their call");
    assert_eq!(all[0].kind, "sign_in", "newest first");
    let carol = &all[1];
    assert_eq!(
        (carol.outcome, carol.bytes_out, carol.error.as_deref()),
        (Outcome::ToolError, Some(4096), Some("upstream said no"))
    );
    assert_eq!(carol.dlp_findings.get("email"), Some(&2));

    let n = |f: AuditFilter| async { search(f).await.len() };
    let f = AuditFilter::default;
    assert_eq!(
        n(AuditFilter {
            subject: Some("alice".into()),
            ..f()
        })
        .await,
        5
    );
    assert_eq!(
        n(AuditFilter {
            group: Some("Engineering".into()),
            ..f()
        })
        .await,
        5
    );
    assert_eq!(
        n(AuditFilter {
            connector: Some("github".into()),
            tool: Some("delete_branch".into()),
            ..f()
        })
        .await,
        3
    );
    assert_eq!(
        n(AuditFilter {
            decision: Some(AuditDecision::Deny),
            ..f()
        })
        .await,
        1
    );
    assert_eq!(
        n(AuditFilter {
            kind: Some("sign_in".into()),
            ..f()
        })
        .await,
        1
    );
    assert_eq!(
        n(AuditFilter {
            kind: Some("tool_result".into()),
            ..f()
        })
        .await,
        1
    );
    assert_eq!(
        n(AuditFilter {
            elevated_only: true,
            ..f()
        })
        .await,
        1
    );
    assert_eq!(
        n(AuditFilter {
            from: Some(at(2)),
            to: Some(at(5)),
            ..f()
        })
        .await,
        3,
        "from inclusive, to exclusive"
    );
    // Full text: every word must occur; quotes and operators are plain words.
    assert_eq!(
        n(AuditFilter {
            text: Some("quarterly".into()),
            ..f()
        })
        .await,
        10
    );
    assert_eq!(
        n(AuditFilter {
            text: Some("report 7".into()),
            ..f()
        })
        .await,
        1
    );
    assert_eq!(
        n(AuditFilter {
            text: Some("\"OR\" NOT".into()),
            ..f()
        })
        .await,
        0
    );
    assert_eq!(
        n(AuditFilter {
            text: Some("upstream".into()),
            ..f()
        })
        .await,
        1,
        "a call is found by words of its result"
    );
    assert_eq!(
        n(AuditFilter {
            text: Some("upstream".into()),
            kind: Some("tool_result".into()),
            ..f()
        })
        .await,
        1
    );

    // Keyset pages of 3 walk the same rows as one big page, without repeats.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = store
            .search_audit(&AuditFilter::default(), cursor, 3)
            .await
            .unwrap();
        paged.extend(items.into_iter().map(|e| e.id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, all.iter().map(|e| e.id).collect::<Vec<_>>());

    // Checkpoints: the first check signs the head; tampering with a new-model field is found.
    let status = store.audit_checkpoint().await.unwrap();
    assert!(status.ok, "{status:?}");
    let head = store.audit_head().await.unwrap();
    assert_eq!(status.checkpoint, Some(head));
    assert_eq!(store.audit_integrity().await.unwrap(), status);
    let tampered = all[5].id;
    store
        .execute_raw(&format!(
            "UPDATE audit_events SET args_redacted = '{{}}' WHERE id = {tampered}"
        ))
        .await
        .unwrap();
    let report = store.verify_audit_chain(None, None).await.unwrap();
    assert_eq!(report.first_break.map(|b| b.id), Some(tampered));
    // Restore: all[5] is the sixth newest (sign-in, carol, then i = 9, 8, 7, 6).
    store
        .execute_raw(&format!(
            "UPDATE audit_events SET args_redacted = '{{\"title\":\"quarterly report 6\"}}' WHERE id = {tampered}"
        ))
        .await
        .unwrap();
    assert!(
        store
            .verify_audit_chain(None, None)
            .await
            .unwrap()
            .first_break
            .is_none()
    );

    // Deleting the newest events (behind the checkpoint) is found through the checkpoint.
    let mut later = NewAuditEvent::new(at(30), "sign_in", "erin");
    later.detail = Some("x".into());
    store.insert_audit_batch(&[later]).await.unwrap();
    store
        .execute_raw(&format!("DELETE FROM audit_events WHERE id >= {head}"))
        .await
        .unwrap();
    let report = store.verify_audit_chain(None, None).await.unwrap();
    let b = report.first_break.expect("tail deletion found");
    assert!(b.reason.contains("missing"), "{}", b.reason);
    let status = store.audit_checkpoint().await.unwrap();
    assert!(!status.ok, "the dashboard status shows the break");
    store.close().await;

    // Retention on a fresh log: purge stops at a signed checkpoint and at the SIEM low water.
    let store = open(
        &match url.strip_suffix("search.db") {
            Some(base) => format!("{base}retention.db"),
            None => toolgate_domain::store::isolated_postgres_url(&postgres_base_url())
                .await
                .unwrap(),
        },
        &MasterKey::generate(),
        clock.clone(),
    )
    .await;
    let old: Vec<NewAuditEvent> = (0..6)
        .map(|i| {
            let mut e = event("alice", "t", AuditDecision::Allow);
            e.at = at(i);
            e
        })
        .collect();
    store.insert_audit_batch(&old).await.unwrap();
    let first_checkpoint = store.audit_checkpoint().await.unwrap().checkpoint.unwrap();
    let newer: Vec<NewAuditEvent> = (0..4)
        .map(|i| {
            let mut e = event("bob", "t", AuditDecision::Allow);
            e.at = at(60 * 24 * 40 + i);
            e
        })
        .collect();
    store.insert_audit_batch(&newer).await.unwrap();
    store.audit_checkpoint().await.unwrap();
    let cutoff = at(60 * 24 * 30);
    // A SIEM sink that has only received the first 3 events holds the purge back entirely.
    assert_eq!(
        store
            .purge_audit(cutoff, first_checkpoint - 3)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.purge_audit(cutoff, i64::MAX).await.unwrap(), 6);
    let report = store.verify_audit_chain(None, None).await.unwrap();
    assert_eq!(
        (report.checked, report.anchored_at, report.first_break),
        (4, Some(first_checkpoint), None)
    );
    // Removing the oldest retained event cannot be hidden behind the checkpoint.
    store
        .execute_raw("DELETE FROM audit_events WHERE id = (SELECT MIN(id) FROM audit_events)")
        .await
        .unwrap();
    let b = store
        .verify_audit_chain(None, None)
        .await
        .unwrap()
        .first_break
        .expect("deletion at the start found");
    assert!(b.reason.contains("deleted"), "{}", b.reason);
    store.close().await;
}

#[tokio::test]
async fn audit_search_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    audit_search_suite(format!("sqlite://{}/search.db", dir.path().display())).await;
}

#[tokio::test]
async fn audit_search_on_postgres() {
    if let Some(url) = fresh_postgres().await {
        audit_search_suite(url).await;
    }
}

/// Connectors of every transport with sealed secrets, changes, and the tool catalog's review
/// semantics: initial discovery accepted, later tools pending, changed definitions flagged,
/// reverting restores approval, vanished tools kept as not present, risk overrides.
async fn catalog_suite(url: String) {
    use toolgate_domain::model::UpstreamOAuth;
    use toolgate_domain::policy::Review;
    use toolgate_domain::risk::{Risk, ToolHints};
    use toolgate_domain::store::{ConnectorUpdate, DiscoveredTool};

    let key = MasterKey::generate();
    let store = open(&url, &key, clock()).await;

    let stdio = store
        .create_connector(NewConnector {
            transport: Transport::Stdio,
            url: String::new(),
            command: Some("npx".into()),
            args: vec![
                "-y".into(),
                "@modelcontextprotocol/server-everything".into(),
            ],
            env: [("API_TOKEN".to_string(), "env-secret-value".to_string())].into(),
            ..NewConnector::http("local", "")
        })
        .await
        .unwrap();
    assert_eq!(stdio.transport, Transport::Stdio);
    assert_eq!(stdio.env_names, vec!["API_TOKEN"]);
    assert_eq!(stdio.command.as_deref(), Some("npx"));
    let oauth = store
        .create_connector(NewConnector {
            transport: Transport::Sse,
            oauth: Some(UpstreamOAuth {
                token_url: "https://login.example.com/token".into(),
                client_id: "gateway".into(),
                scope: Some("mcp.read".into()),
                resource: None,
            }),
            oauth_client_secret: Some("oauth-secret-value".into()),
            timeout_ms: 5_000,
            max_concurrency: 4,
            ..NewConnector::http("crm", "https://crm.example.com/sse")
        })
        .await
        .unwrap();
    assert_eq!(oauth.timeout_ms, 5_000);
    assert_eq!(oauth.max_concurrency, 4);
    // Sealed at rest; the model never carries a value.
    for (id, secret) in [
        (&stdio.id, "env-secret-value"),
        (&oauth.id, "oauth-secret-value"),
    ] {
        let raw = store.raw_sealed_headers(id).await.unwrap();
        assert!(!raw.contains(secret), "{raw}");
        let c = store.get_connector(id).await.unwrap();
        assert!(!serde_json::to_string(&c).unwrap().contains(secret));
    }
    let all = store.connectors_with_secrets().await.unwrap();
    let local = all.iter().find(|c| c.connector.name == "local").unwrap();
    assert_eq!(local.env["API_TOKEN"], "env-secret-value");
    let crm = all.iter().find(|c| c.connector.name == "crm").unwrap();
    assert_eq!(
        crm.oauth_client_secret.as_deref(),
        Some("oauth-secret-value")
    );

    // A change keeps the secrets it does not mention, and bumps updated_at (reconnect).
    let changed = store
        .update_connector(
            &oauth.id,
            ConnectorUpdate {
                timeout_ms: Some(9_000),
                ..ConnectorUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.timeout_ms, 9_000);
    assert!(changed.updated_at > oauth.updated_at);
    let again = store.connector_with_secrets(&oauth.id).await.unwrap();
    assert_eq!(
        again.oauth_client_secret.as_deref(),
        Some("oauth-secret-value")
    );
    // An invalid change changes nothing.
    let bad = store
        .update_connector(
            &oauth.id,
            ConnectorUpdate {
                env: Some([("X".to_string(), "y".to_string())].into()),
                ..ConnectorUpdate::default()
            },
        )
        .await;
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
    assert_eq!(store.get_connector(&oauth.id).await.unwrap(), changed);

    let tool = |name: &str, desc: &str, ro: Option<bool>| DiscoveredTool {
        name: name.into(),
        description: desc.into(),
        input_schema: serde_json::json!({"type": "object"}),
        annotations: ToolHints {
            read_only_hint: ro,
            ..ToolHints::default()
        },
        presentation: serde_json::json!({"annotations": {"readOnlyHint": ro}}),
    };
    // First discovery: accepted as found, with suggested risks.
    let first = store
        .sync_catalog(
            &stdio.id,
            &[
                tool("get_file", "Reads a file", Some(true)),
                tool("delete_branch", "Deletes", None),
            ],
        )
        .await
        .unwrap();
    assert!(first.initial);
    assert_eq!(first.added.len(), 2);
    let cat = store.catalog(&stdio.id).await.unwrap();
    assert!(cat.iter().all(|t| t.review == Review::Approved));
    let del = cat.iter().find(|t| t.name == "delete_branch").unwrap();
    assert_eq!(del.risk, Risk::High);
    assert!(del.risk_reason.contains("delete"), "{}", del.risk_reason);
    // The same listing again changes nothing.
    let same = store
        .sync_catalog(
            &stdio.id,
            &[
                tool("get_file", "Reads a file", Some(true)),
                tool("delete_branch", "Deletes", None),
            ],
        )
        .await
        .unwrap();
    assert!(same.is_empty(), "{same:?}");
    // Later: a new tool waits, a changed description is flagged, a vanished tool is kept absent.
    let later = store
        .sync_catalog(
            &stdio.id,
            &[
                tool(
                    "get_file",
                    "Reads a file AND uploads it somewhere",
                    Some(true),
                ),
                tool("push", "Pushes", None),
            ],
        )
        .await
        .unwrap();
    assert!(!later.initial);
    assert_eq!(later.added, vec!["push"]);
    assert_eq!(later.changed, vec!["get_file"]);
    assert_eq!(later.removed, vec!["delete_branch"]);
    let get = store.catalog_tool(&stdio.id, "get_file").await.unwrap();
    assert_eq!(get.review, Review::Changed);
    assert_eq!(
        store.catalog_tool(&stdio.id, "push").await.unwrap().review,
        Review::Pending
    );
    assert!(
        !store
            .catalog_tool(&stdio.id, "delete_branch")
            .await
            .unwrap()
            .present
    );
    let queue: Vec<String> = store
        .review_queue()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(queue, vec!["get_file", "push"]);
    // Reverting to the approved definition restores approval without an admin.
    store
        .sync_catalog(
            &stdio.id,
            &[
                tool("get_file", "Reads a file", Some(true)),
                tool("push", "Pushes", None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .catalog_tool(&stdio.id, "get_file")
            .await
            .unwrap()
            .review,
        Review::Approved
    );
    // Review: approve and reject.
    let pushed = store.review_tool(&stdio.id, "push", true).await.unwrap();
    assert_eq!(pushed.review, Review::Approved);
    let rejected = store
        .review_tool(&stdio.id, "get_file", false)
        .await
        .unwrap();
    assert_eq!(rejected.review, Review::Rejected);
    assert!(store.review_queue().await.unwrap().is_empty());
    assert!(matches!(
        store.review_tool(&stdio.id, "nope", true).await,
        Err(Error::NotFound(_))
    ));
    // Risk: an override sticks through rediscovery; clearing it returns to the suggestion.
    let set = store
        .set_tool_risk(&stdio.id, "push", Some(Risk::Infrastructure))
        .await
        .unwrap();
    assert_eq!(set.risk, Risk::Infrastructure);
    assert!(set.risk_overridden);
    store
        .sync_catalog(&stdio.id, &[tool("push", "Pushes harder", None)])
        .await
        .unwrap();
    assert_eq!(
        store.catalog_tool(&stdio.id, "push").await.unwrap().risk,
        Risk::Infrastructure
    );
    let back = store.set_tool_risk(&stdio.id, "push", None).await.unwrap();
    assert_eq!(back.risk, Risk::Consequential);
    assert!(!back.risk_overridden);

    // From the wizard: the first discovery approves only the definitions the admin saw.
    let wizard = store
        .create_connector(NewConnector::http("wizard", "https://w.example.com/mcp"))
        .await
        .unwrap();
    let seen = tool("get_file", "Reads a file", Some(true));
    let reviewed = std::collections::HashSet::from([seen.hash()]);
    let shown_later = tool("get_file_v2", "Appeared between test and create", None);
    let changed_since = tool("push", "Pushes, but not as the test showed", None);
    let first = store
        .sync_catalog_reviewed(
            &wizard.id,
            &[seen.clone(), shown_later, changed_since],
            Some(&reviewed),
        )
        .await
        .unwrap();
    assert!(first.initial);
    let states: Vec<(String, Review)> = store
        .catalog(&wizard.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.review))
        .collect();
    assert_eq!(
        states,
        vec![
            ("get_file".to_string(), Review::Approved),
            ("get_file_v2".to_string(), Review::Pending),
            ("push".to_string(), Review::Pending),
        ]
    );

    // A policy file's changes go in one transaction: a failing change leaves none applied.
    use toolgate_domain::store::PolicyChange;
    let eng = store.create_group("Policy Engineers", None).await.unwrap();
    let put = PolicyChange::PutRules {
        group_id: eng.id.clone(),
        connector_id: stdio.id.clone(),
        rules: toolgate_domain::policy::ToolRules::names(vec!["push".into()], vec![]),
    };
    let failing = store
        .apply_policy_changes(&[
            put.clone(),
            PolicyChange::SetRisk {
                connector_id: stdio.id.clone(),
                tool: "no-such-tool".into(),
                risk: Some(Risk::Low),
            },
        ])
        .await;
    assert!(matches!(failing, Err(Error::NotFound(_))), "{failing:?}");
    assert!(store.group_policies(&eng.id).await.unwrap().is_empty());
    let levels = store
        .apply_policy_changes(&[
            put,
            PolicyChange::SetRisk {
                connector_id: stdio.id.clone(),
                tool: "push".into(),
                risk: Some(Risk::High),
            },
            PolicyChange::CatalogSettings(toolgate_domain::store::CatalogSettings {
                block_changed_tools: false,
            }),
        ])
        .await
        .unwrap();
    assert_eq!(levels, vec![(Risk::High, true)]);
    assert_eq!(store.group_policies(&eng.id).await.unwrap().len(), 1);
    assert!(!store.catalog_settings().await.unwrap().block_changed_tools);

    // Deleting a connector takes its catalog and policies with it.
    store.delete_connector(&stdio.id).await.unwrap();
    assert!(store.catalog(&stdio.id).await.unwrap().is_empty());
    assert!(matches!(
        store.get_connector(&stdio.id).await,
        Err(Error::NotFound(_))
    ));
    store.close().await;
}

#[tokio::test]
async fn catalog_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    catalog_suite(format!("sqlite://{}/c.db", dir.path().display())).await;
}

#[tokio::test]
async fn catalog_on_postgres() {
    if let Some(url) = fresh_postgres().await {
        catalog_suite(url).await;
    }
}
