//! The console commands that work on the database directly, run as the real binary on SQLite and
//! PostgreSQL: `policy export` / `policy apply` (round trip, dry run, plan, audit, invalid files,
//! replicas told) and `keys generate` / `keys rotate` (every sealed value moves to the new key in
//! one transaction, or nothing does).

use crate::common::{postgres_base_url, skip_postgres};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;
use toolgate_domain::clock::SystemClock;
use toolgate_domain::crypto::MasterKey;
use toolgate_domain::model::{Transport, UpstreamOAuth};
use toolgate_domain::policy::ToolRules;
use toolgate_domain::risk::{Risk, ToolHints};
use toolgate_domain::siem::{NewSink, SinkConfig, SinkKind};
use toolgate_domain::snapshot::SnapshotHandle;
use toolgate_domain::store::{
    AuditQuery, DiscoveredTool, NewAuditEvent, NewConnector, Store, setting_keys,
};

async fn open(url: &str, key: &MasterKey) -> Store {
    let store = Store::connect(url, key.cipher(), Arc::new(SystemClock))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/toolgate.db", dir.display())
}

async fn postgres_url() -> Option<String> {
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

/// Runs `toolgate` with the database and the master key in its environment.
async fn toolgate(
    dir: &Path,
    url: &str,
    key: &MasterKey,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .env_remove("TOOLGATE_CONFIG")
        .env_remove("TOOLGATE_NEW_MASTER_KEY")
        .env("TOOLGATE_DATABASE_URL", url)
        .env("TOOLGATE_MASTER_KEY", key.to_base64())
        .env("TOOLGATE_DATA_DIR", dir)
        .env("TOOLGATE_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .await
        .expect("run toolgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn tool(name: &str) -> DiscoveredTool {
    DiscoveredTool {
        name: name.into(),
        description: format!("{name} tool"),
        input_schema: serde_json::json!({"type": "object"}),
        annotations: ToolHints::default(),
        presentation: serde_json::Value::Null,
    }
}

const EDITED: &str = r#"
# Edited by hand: one rule changed, one added, one removed; a risk level moved; a setting.
[settings]
block_changed_tools = false

[[rule]]
group = "Senior Engineers"
connector = "github"
allow = ["get_*", "create_pull_request", "merge_pull_request"]
block = ["delete_*"]
allow_risk = "normal"

[[rule]]
group = "sales"
connector = "salesforce"
allow = ["export_leads"]

[[risk]]
connector = "salesforce"
tool = "export_leads"
level = "infrastructure"
"#;

async fn policy_suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key = MasterKey::generate();
    let store = open(&url, &key).await;
    let eng = store.create_group("Senior Engineers", None).await.unwrap();
    let sales = store.create_group("Sales", None).await.unwrap();
    let contractors = store.create_group("Contractors", None).await.unwrap();
    let gh = store
        .create_connector(NewConnector::http("github", "https://gh.example.com/mcp"))
        .await
        .unwrap();
    let sf = store
        .create_connector(NewConnector::http(
            "salesforce",
            "https://sf.example.com/mcp",
        ))
        .await
        .unwrap();
    store
        .sync_catalog(
            &gh.id,
            &[
                tool("get_file"),
                tool("create_webhook"),
                tool("delete_repo"),
            ],
        )
        .await
        .unwrap();
    store
        .sync_catalog(&sf.id, &[tool("export_leads")])
        .await
        .unwrap();
    store
        .put_rules(
            &eng.id,
            &gh.id,
            ToolRules {
                allow: vec!["get_*".into(), "create_pull_request".into()],
                block: vec!["delete_*".into()],
                allow_risk: Some(Risk::Normal),
                block_risk: Some(Risk::High),
                ..ToolRules::default()
            },
        )
        .await
        .unwrap();
    store
        .put_rules(
            &contractors.id,
            &gh.id,
            ToolRules::names(vec!["get_file".into()], vec![]),
        )
        .await
        .unwrap();
    store
        .set_tool_risk(&gh.id, "create_webhook", Some(Risk::High))
        .await
        .unwrap();

    // On PostgreSQL, a replica following changes must hear about the apply.
    let replica = if url.starts_with("postgres") {
        let handle = SnapshotHandle::load(store.clone()).await.unwrap();
        let mut changes = handle.subscribe();
        let follower = tokio::spawn(handle.clone().follow_changes(url.clone()));
        // The follower reloads once it listens: from then on a NOTIFY reaches it.
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .expect("the follower listens")
            .unwrap();
        Some((handle, changes, follower))
    } else {
        None
    };

    // Export: every rule by names, the admin's level, the setting; sorted.
    let out = toolgate(dir, &url, &key, &["policy", "export"], &[]).await;
    assert_exit(&out, 0);
    let exported = stdout(&out);
    assert!(exported.starts_with("# Toolgate policy"), "{exported}");
    for want in [
        "[settings]\nblock_changed_tools = true\n",
        "[[rule]]\ngroup = \"Contractors\"\nconnector = \"github\"\nallow = [\"get_file\"]\n",
        "group = \"Senior Engineers\"\nconnector = \"github\"\nallow = [\"get_*\", \"create_pull_request\"]\nblock = [\"delete_*\"]\nallow_risk = \"normal\"\nblock_risk = \"high\"\n",
        "[[risk]]\nconnector = \"github\"\ntool = \"create_webhook\"\nlevel = \"high\"\n",
    ] {
        assert!(exported.contains(want), "{want:?} missing from\n{exported}");
    }
    assert!(exported.find("Contractors") < exported.find("Senior Engineers"));

    // The export applied back is no change.
    let same = dir.join("same.toml");
    std::fs::write(&same, &exported).unwrap();
    let out = toolgate(
        dir,
        &url,
        &key,
        &["policy", "apply", "-f", same.to_str().unwrap()],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));

    // A dry run prints the plan and changes nothing.
    let edited = dir.join("edited.toml");
    std::fs::write(&edited, EDITED).unwrap();
    let edited_path = edited.to_str().unwrap();
    let out = toolgate(
        dir,
        &url,
        &key,
        &["policy", "apply", "-f", edited_path, "--dry-run"],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    let plan = stdout(&out);
    for want in [
        "~ setting block_changed_tools: true -> false",
        "- rule \"Contractors\" x \"github\" (was: allow [\"get_file\"])",
        "+ rule \"Sales\" x \"salesforce\": allow [\"export_leads\"]",
        "~ rule \"Senior Engineers\" x \"github\":",
        "allow [\"get_*\", \"create_pull_request\"] -> [\"get_*\", \"create_pull_request\", \"merge_pull_request\"]",
        "block_risk high -> (none)",
        "- risk \"github\" tool \"create_webhook\": high (back to the suggested level)",
        "+ risk \"salesforce\" tool \"export_leads\": infrastructure",
        "Plan: 1 rule to add, 1 to change, 1 to remove; 1 risk level to set, 1 to clear; 1 setting to change.",
        "Dry run: nothing was changed.",
    ] {
        assert!(plan.contains(want), "{want:?} missing from\n{plan}");
    }
    let out = toolgate(dir, &url, &key, &["policy", "export"], &[]).await;
    assert_eq!(stdout(&out), exported, "a dry run changes nothing");
    assert_eq!(store.list_audit(&audit_page()).await.unwrap().len(), 0);

    // Apply: the database matches the file, each change audited as made by "cli".
    let out = toolgate(
        dir,
        &url,
        &key,
        &["policy", "apply", "-f", edited_path],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("Applied 6 changes;"),
        "{}",
        stdout(&out)
    );
    let mut rules: Vec<(String, String, ToolRules)> = store
        .all_policies()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.group_id, p.connector_id, p.rules))
        .collect();
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (
            eng.id.clone(),
            gh.id.clone(),
            ToolRules {
                allow: vec![
                    "get_*".into(),
                    "create_pull_request".into(),
                    "merge_pull_request".into(),
                ],
                block: vec!["delete_*".into()],
                allow_risk: Some(Risk::Normal),
                ..ToolRules::default()
            },
        ),
        (
            sales.id.clone(),
            sf.id.clone(),
            ToolRules::names(vec!["export_leads".into()], vec![]),
        ),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(rules, want);
    let leads = store.catalog_tool(&sf.id, "export_leads").await.unwrap();
    assert_eq!(
        (leads.risk, leads.risk_overridden),
        (Risk::Infrastructure, true)
    );
    let webhook = store.catalog_tool(&gh.id, "create_webhook").await.unwrap();
    assert!(!webhook.risk_overridden);
    assert_eq!(webhook.risk, Risk::Consequential, "back to the suggestion");
    assert!(!store.catalog_settings().await.unwrap().block_changed_tools);
    let events = store.list_audit(&audit_page()).await.unwrap();
    let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "admin.catalog.risk",
            "admin.catalog.risk",
            "admin.policy.delete",
            "admin.policy.put",
            "admin.policy.put",
            "admin.settings.catalog",
        ]
    );
    assert!(events.iter().all(|e| e.principal == "cli"));
    let removed = events
        .iter()
        .find(|e| e.kind == "admin.policy.delete")
        .unwrap();
    assert!(
        removed.detail.as_deref().unwrap().contains("Contractors"),
        "{removed:?}"
    );

    if let Some((handle, mut changes, follower)) = replica {
        // Told by NOTIFY, the replica rebuilt its snapshot: Sales may now export leads.
        let sales_groups = [sales.id.clone()];
        tokio::time::timeout(Duration::from_secs(10), async {
            while !handle
                .get()
                .decide_for_groups(&sales_groups, "salesforce", "export_leads")
                .is_allowed()
            {
                changes.changed().await.unwrap();
            }
        })
        .await
        .expect("the replica reloaded after the apply");
        follower.abort();
    }

    // Applying the same file again: nothing to do.
    let out = toolgate(
        dir,
        &url,
        &key,
        &["policy", "apply", "-f", edited_path],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));
    let after = toolgate(dir, &url, &key, &["policy", "export"], &[])
        .await
        .stdout;

    // Invalid files: exit code 2, the problem named with its line, nothing changed.
    for (text, problem) in [
        (
            "[[rule]]\ngroup = \"Sales\"\nconnector = \"github\"\nalow = [\"x\"]\n",
            "unknown field `alow`",
        ),
        (
            "[[rule]]\ngroup = \"Marketing\"\nconnector = \"github\"\n",
            "line 1: unknown group \"Marketing\"",
        ),
        (
            "\n[[rule]]\ngroup = \"Sales\"\nconnector = \"jira\"\n",
            "line 2: unknown connector \"jira\"",
        ),
        (
            "[[rule]]\ngroup = \"Sales\"\nconnector = \"github\"\nallow = [\"get file\"]\n",
            "allow: pattern \"get file\"",
        ),
        (
            "[[risk]]\nconnector = \"github\"\ntool = \"create_webhook\"\nlevel = \"severe\"\n",
            "unknown risk level \"severe\"",
        ),
        ("[[rule]\n", "line 1"),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = toolgate(
            dir,
            &url,
            &key,
            &["policy", "apply", "-f", bad.to_str().unwrap()],
            &[],
        )
        .await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(problem),
            "{problem:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "no plan: {}", stdout(&out));
    }
    let out = toolgate(
        dir,
        &url,
        &key,
        &["policy", "apply", "-f", "/nonexistent/policy.toml"],
        &[],
    )
    .await;
    assert_exit(&out, 1);
    let now = toolgate(dir, &url, &key, &["policy", "export"], &[])
        .await
        .stdout;
    assert_eq!(now, after, "invalid files change nothing");
    store.close().await;
}

fn audit_page() -> AuditQuery {
    AuditQuery {
        limit: 100,
        before_id: None,
    }
}

#[tokio::test]
async fn policy_export_and_apply_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    policy_suite(sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn policy_export_and_apply_postgres() {
    if let Some(url) = postgres_url().await {
        policy_suite(url).await;
    }
}

#[tokio::test]
async fn policy_help_explains_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let url = sqlite_url(dir.path());
    let out = toolgate(dir.path(), &url, &key, &["policy", "--help"], &[]).await;
    assert_exit(&out, 0);
    let help = stdout(&out);
    assert!(help.contains("export") && help.contains("apply"), "{help}");
    let out = toolgate(dir.path(), &url, &key, &["policy", "apply", "--help"], &[]).await;
    let help = stdout(&out);
    for want in ["--dry-run", "--file", "whole truth", "Exit codes"] {
        assert!(help.contains(want), "{want:?} missing from\n{help}");
    }
    let out = toolgate(dir.path(), &url, &key, &["keys", "rotate", "--help"], &[]).await;
    let help = stdout(&out);
    for want in [
        "--new-key-file",
        "TOOLGATE_NEW_MASTER_KEY",
        "one database transaction",
    ] {
        assert!(help.contains(want), "{want:?} missing from\n{help}");
    }
}

/// Connector secrets of every kind, a secret setting, a SIEM secret and a signed checkpoint.
async fn seed_secrets(store: &Store) -> (String, Vec<(String, ExpectedSecrets)>) {
    let github = store
        .create_connector(NewConnector {
            headers: [("Authorization".to_string(), "Bearer gh-secret".to_string())].into(),
            ..NewConnector::http("github", "https://gh.example.com/mcp")
        })
        .await
        .unwrap();
    let local = store
        .create_connector(NewConnector {
            transport: Transport::Stdio,
            url: String::new(),
            command: Some("npx".into()),
            env: [("API_TOKEN".to_string(), "env-secret".to_string())].into(),
            ..NewConnector::http("local", "")
        })
        .await
        .unwrap();
    let crm = store
        .create_connector(NewConnector {
            transport: Transport::Sse,
            headers: [("X-Tenant".to_string(), "crm-header".to_string())].into(),
            oauth: Some(UpstreamOAuth {
                token_url: "https://login.example.com/token".into(),
                client_id: "gateway".into(),
                scope: None,
                resource: None,
            }),
            oauth_client_secret: Some("oauth-secret".into()),
            ..NewConnector::http("crm", "https://crm.example.com/sse")
        })
        .await
        .unwrap();
    store
        .put_secret_setting(setting_keys::OIDC_SECRET, "oidc-secret")
        .await
        .unwrap();
    let sink = store
        .create_siem_sink(NewSink {
            name: "splunk".into(),
            kind: SinkKind::SplunkHec,
            config: SinkConfig {
                url: Some("https://splunk.example.com:8088/services/collector/event".into()),
                ..SinkConfig::default()
            },
            secret: Some("hec-token".into()),
            enabled: false,
            start_at_head: false,
        })
        .await
        .unwrap();
    let events: Vec<NewAuditEvent> = (0..5)
        .map(|i| NewAuditEvent::new(store.clock().now(), "admin.test", &format!("seed-{i}")))
        .collect();
    store.insert_audit_batch(&events).await.unwrap();
    let status = store.audit_checkpoint().await.unwrap();
    assert!(status.ok && status.checkpoint.is_some(), "{status:?}");
    let expected = vec![
        (
            github.id,
            ExpectedSecrets {
                headers: [("Authorization", "Bearer gh-secret")].into(),
                env: BTreeMap::new(),
                oauth: None,
            },
        ),
        (
            local.id,
            ExpectedSecrets {
                headers: BTreeMap::new(),
                env: [("API_TOKEN", "env-secret")].into(),
                oauth: None,
            },
        ),
        (
            crm.id,
            ExpectedSecrets {
                headers: [("X-Tenant", "crm-header")].into(),
                env: BTreeMap::new(),
                oauth: Some("oauth-secret"),
            },
        ),
    ];
    (sink.id, expected)
}

struct ExpectedSecrets {
    headers: BTreeMap<&'static str, &'static str>,
    env: BTreeMap<&'static str, &'static str>,
    oauth: Option<&'static str>,
}

/// Everything sealed opens under `store`'s key with the values it was given.
async fn assert_secrets_open(store: &Store, sink_id: &str, expected: &[(String, ExpectedSecrets)]) {
    let all = store.connectors_with_secrets().await.unwrap();
    assert_eq!(all.len(), expected.len(), "every connector opens");
    for (id, want) in expected {
        let c = all.iter().find(|c| &c.connector.id == id).unwrap();
        let headers: BTreeMap<&str, &str> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let env: BTreeMap<&str, &str> = c
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(headers, want.headers);
        assert_eq!(env, want.env);
        assert_eq!(c.oauth_client_secret.as_deref(), want.oauth);
    }
    assert_eq!(
        store
            .secret_setting(setting_keys::OIDC_SECRET)
            .await
            .unwrap()
            .as_deref(),
        Some("oidc-secret")
    );
    let (_, secret) = store.siem_sink_with_secret(sink_id).await.unwrap();
    assert_eq!(secret.unwrap().expose(), "hec-token");
    let chain = store.verify_audit_chain(None, None).await.unwrap();
    assert!(chain.first_break.is_none(), "{:?}", chain.first_break);
}

async fn rotation_suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let old = MasterKey::generate();
    let store_old = open(&url, &old).await;
    let (sink_id, expected) = seed_secrets(&store_old).await;
    assert_secrets_open(&store_old, &sink_id, &expected).await;
    let sealed_before = store_old.raw_sealed_headers(&expected[2].0).await.unwrap();

    // A new key from `keys generate`, in a new private file.
    let key_file = dir.join("new.key");
    let out = toolgate(
        dir,
        &url,
        &old,
        &["keys", "generate", "--out", key_file.to_str().unwrap()],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let new = MasterKey::from_base64(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let out = toolgate(dir, &url, &old, &["keys", "generate"], &[]).await;
    assert_exit(&out, 0);
    assert!(MasterKey::from_base64(stdout(&out).trim()).is_ok());

    // Input mistakes: exit 2, nothing changed.
    let out = toolgate(dir, &url, &old, &["keys", "rotate"], &[]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no new key"), "{}", stderr(&out));
    let old_b64 = old.to_base64();
    let out = toolgate(
        dir,
        &url,
        &old,
        &["keys", "rotate"],
        &[("TOOLGATE_NEW_MASTER_KEY", old_b64.as_str())],
    )
    .await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("is the current one"),
        "{}",
        stderr(&out)
    );

    // A sealed value that does not open under the current key stops the rotation whole.
    store_old
        .put_setting(
            "test.broken_secret",
            &"v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .await
        .unwrap();
    let out = toolgate(
        dir,
        &url,
        &old,
        &[
            "keys",
            "rotate",
            "--new-key-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("setting \"test.broken_secret\" cannot be opened")
            && stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        store_old.raw_sealed_headers(&expected[2].0).await.unwrap(),
        sealed_before
    );
    assert_secrets_open(&store_old, &sink_id, &expected).await;
    store_old
        .execute_raw("DELETE FROM settings WHERE key = 'test.broken_secret'")
        .await
        .unwrap();

    // The rotation: counts per kind.
    let out = toolgate(
        dir,
        &url,
        &old,
        &[
            "keys",
            "rotate",
            "--new-key-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    let report = stdout(&out);
    for want in [
        "Master key rotated: 8 values moved to the new key.",
        "3  connector headers",
        "1  connector environments",
        "1  connector OAuth client secrets",
        "1  secret settings",
        "1  SIEM sink secrets",
        "1  audit checkpoints",
    ] {
        assert!(report.contains(want), "{want:?} missing from\n{report}");
    }

    // The new key opens everything, and the signed checkpoint verifies under it.
    let store_new = open(&url, &new).await;
    assert_secrets_open(&store_new, &sink_id, &expected).await;
    let status = store_new.audit_checkpoint().await.unwrap();
    assert!(status.ok, "{status:?}");
    let events = store_new.list_audit(&audit_page()).await.unwrap();
    let rotated = events
        .iter()
        .find(|e| e.kind == "admin.keys.rotate")
        .expect("the rotation is audited");
    assert_eq!(rotated.principal, "cli");

    // The old key opens nothing any more.
    assert!(
        store_old
            .connectors_with_secrets()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store_old
            .secret_setting(setting_keys::OIDC_SECRET)
            .await
            .is_err()
    );
    assert!(store_old.siem_sink_with_secret(&sink_id).await.is_err());
    let chain = store_old.verify_audit_chain(None, None).await.unwrap();
    assert!(
        chain.first_break.is_some(),
        "checkpoints no longer verify under the old key"
    );

    // A checkpoint whose MAC does not verify is never signed again: nothing changes.
    store_new
        .execute_raw("UPDATE audit_checkpoints SET mac = 'forged'")
        .await
        .unwrap();
    let newer = MasterKey::generate().to_base64();
    let out = toolgate(
        dir,
        &url,
        &new,
        &["keys", "rotate"],
        &[("TOOLGATE_NEW_MASTER_KEY", newer.as_str())],
    )
    .await;
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("carries a MAC that does not verify"),
        "{}",
        stderr(&out)
    );
    assert_eq!(store_new.connectors_with_secrets().await.unwrap().len(), 3);
    store_old.close().await;
    store_new.close().await;
}

#[tokio::test]
async fn master_key_rotation_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    rotation_suite(sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn master_key_rotation_postgres() {
    if let Some(url) = postgres_url().await {
        rotation_suite(url).await;
    }
}

#[tokio::test]
async fn rotation_needs_a_current_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["keys", "rotate"])
        .env_remove("TOOLGATE_CONFIG")
        .env_remove("TOOLGATE_MASTER_KEY")
        .env("TOOLGATE_DATABASE_URL", sqlite_url(dir.path()))
        .env("TOOLGATE_DATA_DIR", dir.path())
        .env("TOOLGATE_NEW_MASTER_KEY", MasterKey::generate().to_base64())
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("no current master key"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("master.key").exists(),
        "no key is generated to rotate away from"
    );
}

/// API tokens are listed (never their secrets) and revoked from the console; a revoked token is
/// refused at once (admin and SCIM tokens are checked against the database on every request),
/// the revocation is audited, and an unknown id changes nothing.
#[tokio::test]
async fn api_tokens_are_listed_and_revoked_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let key = MasterKey::generate();
    assert_exit(
        &toolgate(dir.path(), &url, &key, &["migrate"], &[]).await,
        0,
    );
    let created = toolgate(
        dir.path(),
        &url,
        &key,
        &["token", "create", "--name", "terraform", "--role", "admin"],
        &[],
    )
    .await;
    assert_exit(&created, 0);
    let secret = stdout(&created).trim().to_string();
    let listed = toolgate(dir.path(), &url, &key, &["token", "list"], &[]).await;
    assert_exit(&listed, 0);
    let row = stdout(&listed)
        .lines()
        .find(|l| l.contains("terraform"))
        .map(str::to_string)
        .expect("the token is listed");
    assert!(row.ends_with("active"), "{row}");
    assert!(!stdout(&listed).contains(&secret), "never the secret");
    let id = row.split('\t').next().unwrap().to_string();

    let unknown = toolgate(dir.path(), &url, &key, &["token", "revoke", "nope"], &[]).await;
    assert_exit(&unknown, 2);
    let store = open(&url, &key).await;
    assert!(store.find_token(&secret).await.unwrap().is_some());

    let revoked = toolgate(dir.path(), &url, &key, &["token", "revoke", &id], &[]).await;
    assert_exit(&revoked, 0);
    assert!(
        store.find_token(&secret).await.unwrap().is_none(),
        "refused from now on"
    );
    let listed = toolgate(dir.path(), &url, &key, &["token", "list"], &[]).await;
    assert!(stdout(&listed).contains(&format!("{id}\t")), "still listed");
    assert!(
        stdout(&listed)
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("revoked")),
        "{}",
        stdout(&listed)
    );
    let events = store
        .audit_events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect::<Vec<_>>();
    assert!(
        events.contains(&"admin.token.revoke".to_string()),
        "{events:?}"
    );
}
