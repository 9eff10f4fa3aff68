//! Policy engine benchmarks at enterprise size: 1,000 groups x 100 connectors x 50 tools, a
//! principal in 5 groups, rules mixing exact names, globs and risk levels.
//!
//! - `decide/*`: one `Snapshot::decide` (the verdict with its reason, as `tools/call` makes it)
//!   per outcome, and `allows/*` (the verdict alone, as listings use it) (target <= 1 us);
//! - `tools_list/*`: what `Gateway::list_tools` does for that principal over every connector
//!   (`Snapshot::allows` for each tool, then the `connector__tool` name), upstream fetch
//!   excluded (target <= 100 us), and its parts to show where the time goes;
//! - `snapshot/assemble`: rebuilding the snapshot's lookup tables from loaded rows.
//!
//! Run with `cargo bench -p toolgate-domain --features test-util --bench policy` (`make bench-policy`).

use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;
use toolgate_domain::model::{Connector, Transport};
use toolgate_domain::names::exposed_tool_name;
use toolgate_domain::policy::{CompiledRules, Review, ToolFacts, ToolRules, allows};
use toolgate_domain::risk::{Risk, ToolHints, suggest};
use toolgate_domain::snapshot::{Principal, Snapshot};
use toolgate_domain::store::{CatalogFacts, ConnectorSecrets, PolicyRow};

const GROUPS: usize = 1_000;
const CONNECTORS: usize = 100;
const TOOLS: usize = 50;
/// Connectors each ordinary group has rules on.
const RULES_PER_GROUP: usize = 10;

const VERBS: [&str; 10] = [
    "get", "list", "search", "create", "update", "delete", "push", "run", "export", "admin",
];
const NOUNS: [&str; 5] = ["file", "issue", "branch", "workflow", "record"];

fn connector_name(c: usize) -> String {
    format!("conn-{c:03}")
}

/// 50 tools: every verb with every noun (`get_file`, `delete_branch`, `run_workflow`...).
fn tool_names() -> Vec<String> {
    VERBS
        .iter()
        .flat_map(|v| NOUNS.iter().map(move |n| format!("{v}_{n}")))
        .collect()
}

/// The rows a snapshot is built from.
struct Rows {
    groups: Vec<(String, String)>,
    connectors: Vec<ConnectorSecrets>,
    policies: Vec<PolicyRow>,
    catalog: Vec<CatalogFacts>,
}

/// Rule shapes, rotated over (group, connector): exact names, globs, risk levels, blocks.
fn rules_for(kind: usize) -> ToolRules {
    let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    match kind % 5 {
        0 => ToolRules::names(
            s(&[
                "get_file",
                "list_issue",
                "search_record",
                "create_issue",
                "update_issue",
            ]),
            vec![],
        ),
        1 => ToolRules::names(s(&["get_*", "list_*", "search_*"]), s(&["*_workflow"])),
        2 => ToolRules {
            allow_risk: Some(Risk::Normal),
            block_risk: Some(Risk::High),
            ..ToolRules::default()
        },
        3 => ToolRules {
            allow: s(&["*_file", "*_issue"]),
            block: s(&["delete_*"]),
            block_risk: Some(Risk::Infrastructure),
            ..ToolRules::default()
        },
        _ => ToolRules {
            allow: s(&["create_*", "update_file"]),
            block: s(&["push_branch"]),
            allow_risk: Some(Risk::Low),
            ..ToolRules::default()
        },
    }
}

fn rows() -> Rows {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let groups: Vec<(String, String)> = (0..GROUPS)
        .map(|g| (format!("g-{g:04}"), format!("Group {g}")))
        .collect();
    let connectors: Vec<ConnectorSecrets> = (0..CONNECTORS)
        .map(|c| ConnectorSecrets {
            connector: Connector {
                id: format!("c-{c:03}"),
                name: connector_name(c),
                transport: Transport::StreamableHttp,
                url: format!("https://mcp{c}.example.com/mcp"),
                command: None,
                args: vec![],
                header_names: vec!["Authorization".into()],
                env_names: vec![],
                oauth: None,
                timeout_ms: 30_000,
                max_concurrency: 32,
                enabled: true,
                created_at: t0,
                updated_at: t0,
            },
            headers: [("Authorization".to_string(), format!("Bearer token-{c}"))].into(),
            env: BTreeMap::new(),
            oauth_client_secret: None,
        })
        .collect();
    let mut catalog = Vec::with_capacity(CONNECTORS * TOOLS);
    for c in 0..CONNECTORS {
        for name in tool_names() {
            catalog.push(CatalogFacts {
                connector_id: format!("c-{c:03}"),
                hash: format!("{c}-{name}"),
                review: Review::Approved,
                risk: suggest(&name, &ToolHints::default()).0,
                name,
                approval_group: None,
            });
        }
    }
    // Every group has rules on 10 connectors; the principal's 5 groups (0-4) on all 100, so
    // each of its decisions weighs 5 groups' rules.
    let mut policies = Vec::new();
    for g in 0..GROUPS {
        let on: Vec<usize> = if g < 5 {
            (0..CONNECTORS).collect()
        } else {
            (0..RULES_PER_GROUP)
                .map(|i| (g * 7 + i * 13) % CONNECTORS)
                .collect()
        };
        for c in on {
            policies.push(PolicyRow {
                group_id: format!("g-{g:04}"),
                connector_id: format!("c-{c:03}"),
                rules: rules_for(g + c),
            });
        }
    }
    Rows {
        groups,
        connectors,
        policies,
        catalog,
    }
}

fn principal() -> Principal {
    Principal {
        user_id: "u-1".into(),
        user_name: "alice@example.com".into(),
        token_id: "t-1".into(),
        groups: (0..5).map(|g| format!("g-{g:04}")).collect(),
        ..Principal::default()
    }
}

/// A person in 5 ordinary groups (5-9), each with rules on 10 connectors: the common case.
fn typical_principal() -> Principal {
    Principal {
        user_id: "u-2".into(),
        user_name: "bob@example.com".into(),
        token_id: "t-2".into(),
        groups: (5..10).map(|g| format!("g-{g:04}")).collect(),
        ..Principal::default()
    }
}

fn snapshot(r: &Rows) -> Snapshot {
    Snapshot::for_policy(
        r.groups.clone(),
        r.connectors.clone(),
        r.policies.clone(),
        r.catalog.clone(),
    )
}

fn bench_decide(c: &mut Criterion) {
    let r = rows();
    let snap = snapshot(&r);
    let who = principal();
    let mut g = c.benchmark_group("decide");
    // The principal's groups hold every rule kind on each connector: exact names, globs with a
    // block, risk levels, globs with blocks, a mix. Each case ends at a different step of the
    // decision (catalog, name blocks, risk blocks, name allows, risk allows, default deny).
    let cases = [
        ("exact_allow", "get_file", true),
        ("glob_allow", "list_record", true),
        ("risk_allow", "update_record", true),
        ("name_block", "delete_branch", false),
        ("risk_block", "admin_record", false),
        ("default_deny", "push_record", false),
        ("not_in_catalog", "nope", false),
    ];
    for (label, tool, allowed) in cases {
        let v = snap.decide(&who, "conn-000", tool);
        assert_eq!(v.is_allowed(), allowed, "{label}: {tool}: {v:?}");
        g.bench_function(label, |b| {
            b.iter(|| black_box(snap.decide(black_box(&who), "conn-000", black_box(tool))))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("allows");
    for (label, tool, allowed) in cases {
        assert_eq!(snap.allows(&who, "conn-000", tool), allowed, "{label}");
        g.bench_function(label, |b| {
            b.iter(|| black_box(snap.allows(black_box(&who), "conn-000", black_box(tool))))
        });
    }
    g.finish();
    bench_decide_call(c, &r, &who);
}

/// `Snapshot::decide_call` (the gateway's decision) with just-in-time elevations: 20 profiles,
/// the caller eligible for all and holding one active elevation that unlocks `push_record`.
fn bench_decide_call(c: &mut Criterion, r: &Rows, who: &Principal) {
    use toolgate_domain::elevation::{ElevationProfile, ProfileTarget};
    let mut snap = snapshot(r);
    let now = chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("time");
    let profiles: Vec<ElevationProfile> = (0..20)
        .map(|i| ElevationProfile {
            id: format!("p-{i}"),
            name: format!("Profile {i}"),
            description: String::new(),
            targets: vec![ProfileTarget {
                connector: "conn-000".into(),
                tools: vec![if i == 0 {
                    "push_record".into()
                } else {
                    format!("tool_{i}")
                }],
                max_risk: None,
            }],
            eligible_groups: who.groups.clone(),
            approver_group: "g-0000".into(),
            max_minutes: 60,
            justification_required: true,
            ticket_required: false,
            auto_approve: false,
            requester_sets_duration: true,
            enabled: true,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let now_ms = now.timestamp_millis();
    snap.set_elevations(
        profiles,
        vec![toolgate_domain::store::ActiveElevationRow {
            id: "e-1".into(),
            subject_id: who.user_id.clone(),
            profile_id: "p-0".into(),
            expires_at: now_ms + 3_600_000,
        }],
    );
    let mut g = c.benchmark_group("decide_call");
    let cases = [
        ("group_allow", "get_file", now_ms, true),
        ("elevated", "push_record", now_ms, true),
        (
            "elevation_expired_eligible",
            "push_record",
            now_ms + 3_600_000,
            false,
        ),
        ("not_in_catalog", "merge_record", now_ms, false),
    ];
    for (label, tool, at, allowed) in cases {
        let d = snap.decide_call(who, "conn-000", tool, at);
        assert_eq!(d.verdict.is_allowed(), allowed, "{label}: {d:?}");
        g.bench_function(label, |b| {
            b.iter(|| black_box(snap.decide_call(black_box(who), "conn-000", black_box(tool), at)))
        });
    }
    g.finish();
}

/// `Gateway::list_tools` without the upstream fetch: the tools each connector listed are decided
/// for the principal (the principal's rules gathered once per connector) and the allowed ones
/// are copied from the connector's list of `connector__tool` names, which the gateway builds once
/// per upstream listing (`ExposedTools`), not per request.
/// One connector's listing: its name, the tools it listed and their exposed names.
type Listed = (String, Vec<String>, Vec<Option<String>>);

fn list_tools(snap: &Snapshot, who: &Principal, listed: &[Listed]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, tools, exposed) in listed {
        let Some(listing) = snap.listing(who, name, 0).filter(|l| !l.is_empty()) else {
            continue;
        };
        for (tool, renamed) in tools.iter().zip(exposed) {
            if let Some(renamed) = renamed
                && listing.allows(tool)
            {
                out.push(renamed.clone());
            }
        }
    }
    out
}

fn bench_tools_list(c: &mut Criterion) {
    let r = rows();
    let snap = snapshot(&r);
    let who = principal();
    let listed: Vec<Listed> = snap
        .enabled_connectors()
        .map(|c| {
            let name = c.connector.name.clone();
            let tools = tool_names();
            let exposed = tools.iter().map(|t| exposed_tool_name(&name, t)).collect();
            (name, tools, exposed)
        })
        .collect();
    let exposed = list_tools(&snap, &who, &listed);
    assert!(exposed.len() > 1_000 && exposed.len() < CONNECTORS * TOOLS);
    eprintln!(
        "tools/list: {} of {} tools exposed to the principal",
        exposed.len(),
        CONNECTORS * TOOLS
    );
    let mut g = c.benchmark_group("tools_list");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("5_groups_100_connectors_50_tools", |b| {
        b.iter(|| black_box(list_tools(&snap, &who, &listed)))
    });
    let typical = typical_principal();
    let typical_exposed = list_tools(&snap, &typical, &listed);
    eprintln!(
        "tools/list (typical): {} of {} tools exposed to a person whose 5 groups have rules on 10 connectors each",
        typical_exposed.len(),
        CONNECTORS * TOOLS
    );
    assert!(!typical_exposed.is_empty());
    g.bench_function("5_typical_groups_rules_on_10_connectors_each", |b| {
        b.iter(|| black_box(list_tools(&snap, &typical, &listed)))
    });
    // Its parts: the verdicts alone (5,000 `Snapshot::allows`), the engine alone on rules
    // already gathered (no per-call lookups of connector, groups and catalog entry), and the
    // exposed names alone.
    g.bench_function("part_allows_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (name, tools, _) in &listed {
                for tool in tools {
                    n += usize::from(snap.allows(&who, name, tool));
                }
            }
            black_box(n)
        })
    });
    let compiled: Vec<CompiledRules> = (0..5)
        .map(|g| CompiledRules::compile(&format!("Group {g}"), &rules_for(g)))
        .collect();
    let grants: Vec<&CompiledRules> = compiled.iter().collect();
    let facts: Vec<Option<ToolFacts>> = tool_names()
        .iter()
        .map(|t| {
            Some(ToolFacts {
                risk: suggest(t, &ToolHints::default()).0,
                review: Review::Approved,
            })
        })
        .collect();
    let names = tool_names();
    g.bench_function("part_engine_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for _ in 0..CONNECTORS {
                for (tool, f) in names.iter().zip(&facts) {
                    n += usize::from(allows(&grants, tool, *f, true));
                }
            }
            black_box(n)
        })
    });
    g.bench_function("part_exposed_names_only", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            for (name, tools, _) in &listed {
                for tool in tools {
                    out.extend(exposed_tool_name(name, tool));
                }
            }
            black_box(out)
        })
    });
    g.finish();
}

fn bench_assemble(c: &mut Criterion) {
    let r = rows();
    eprintln!(
        "snapshot: {} groups, {} connectors, {} catalog tools, {} policy rows",
        r.groups.len(),
        r.connectors.len(),
        r.catalog.len(),
        r.policies.len()
    );
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    // The rows are cloned outside the timed part: `assemble` takes them by value, as after a load.
    g.bench_function("assemble", |b| {
        b.iter_batched(
            || {
                (
                    r.groups.clone(),
                    r.connectors.clone(),
                    r.policies.clone(),
                    r.catalog.clone(),
                )
            },
            |(groups, connectors, policies, catalog)| {
                black_box(Snapshot::for_policy(groups, connectors, policies, catalog))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_decide, bench_tools_list, bench_assemble);
criterion_main!(benches);
