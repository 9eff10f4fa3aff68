//! The policy engine: which tools a caller may use, decided from the rules of the caller's groups
//! and the tool's catalog entry (risk level, review state). Default deny; any block (by name or
//! by risk) in any of the caller's groups beats every allow; every decision carries the rule that
//! made it, in words, for the audit log, the simulator and the dashboard. Semantics:
//! `docs/policy.md`.

use crate::risk::Risk;
use serde::{Deserialize, Serialize};
/// Name sets of compiled rules: foldhash (randomly seeded, several times faster than SipHash on
/// short tool names; the sets are built from admins' rules, so lookups cannot flood them).
type NameSet = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// Most patterns one allow or block list may hold.
pub const MAX_PATTERNS: usize = 512;

/// One group's rules on one connector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolRules {
    /// Tool names or globs (`get_*`) allowed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Tool names or globs blocked; a block beats every allow.
    #[serde(default)]
    pub block: Vec<String>,
    /// Allow every tool whose risk is at most this level (`risk <= Normal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_risk: Option<Risk>,
    /// Block every tool whose risk is at least this level ("block Consequential and above").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_risk: Option<Risk>,
    /// Resource URIs (globs, `*` any run) this group may read on the connector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Prompt names (globs) this group may get on the connector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
}

impl ToolRules {
    /// Name allow and block lists only (the Foundation's shape).
    pub fn names(allow: Vec<String>, block: Vec<String>) -> Self {
        ToolRules {
            allow,
            block,
            ..ToolRules::default()
        }
    }

    /// Validates and normalises (trims, de-duplicates, keeps order) both name lists.
    pub fn normalized(allow: Vec<String>, block: Vec<String>) -> Result<Self, String> {
        ToolRules::names(allow, block).validated()
    }

    /// Validates and normalises every list.
    pub fn validated(self) -> Result<Self, String> {
        Ok(ToolRules {
            allow: normalize_list("allow", self.allow, validate_pattern)?,
            block: normalize_list("block", self.block, validate_pattern)?,
            allow_risk: self.allow_risk,
            block_risk: self.block_risk,
            resources: normalize_list("resources", self.resources, validate_uri_pattern)?,
            prompts: normalize_list("prompts", self.prompts, validate_pattern)?,
        })
    }

    /// True when the rules neither allow nor block anything.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.block.is_empty()
            && self.allow_risk.is_none()
            && self.block_risk.is_none()
            && self.resources.is_empty()
            && self.prompts.is_empty()
    }
}

fn normalize_list(
    field: &str,
    list: Vec<String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    if list.len() > MAX_PATTERNS {
        return Err(format!("{field} may hold at most {MAX_PATTERNS} patterns"));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for p in list {
        let p = p.trim().to_string();
        check(&p).map_err(|e| format!("{field}: {e}"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// A resource URI pattern: 1-512 printable ASCII characters without spaces; `*` any run.
pub fn validate_uri_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 512 || !p.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "resource pattern {p:?} must be 1-512 printable characters without spaces"
        ));
    }
    Ok(())
}

/// A pattern is a tool name as the upstream names it (`create_pull_request`), where `*` stands
/// for any run of characters (`get_*`, `*`).
pub fn validate_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 128 {
        return Err(format!("pattern {p:?} must be 1-128 characters"));
    }
    if !p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*'))
    {
        return Err(format!(
            "pattern {p:?} may contain only letters, digits, '_', '.', '-' and '*'"
        ));
    }
    Ok(())
}

/// Glob match where `*` matches any run (also empty); everything else matches itself exactly.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A policy decision with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Verdict {
    Allow { rule: String },
    Deny { rule: String },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }

    pub fn rule(&self) -> &str {
        match self {
            Verdict::Allow { rule } | Verdict::Deny { rule } => rule,
        }
    }
}

/// Where a tool stands in its connector's catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Review {
    /// Found when the connector was added, or approved by an admin.
    Approved,
    /// Appeared later; blocked until an admin reviews it.
    Pending,
    /// Approved once, but its description or input schema changed since.
    Changed,
    /// Refused by an admin: never callable, whatever the rules say.
    Rejected,
}

impl Review {
    pub fn as_str(self) -> &'static str {
        match self {
            Review::Approved => "approved",
            Review::Pending => "pending",
            Review::Changed => "changed",
            Review::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Review::Approved,
            Review::Pending,
            Review::Changed,
            Review::Rejected,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// What the catalog knows about a tool, as far as policy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolFacts {
    pub risk: Risk,
    pub review: Review,
}

/// One group's rules on one connector, compiled for matching: exact names in hash sets, globs in
/// lists, the group's name kept for the explanation.
#[derive(Clone, Debug, Default)]
pub struct CompiledRules {
    pub group: String,
    exact_allow: NameSet,
    glob_allow: Vec<String>,
    exact_block: NameSet,
    glob_block: Vec<String>,
    allow_risk: Option<Risk>,
    block_risk: Option<Risk>,
    resources: Vec<String>,
    prompts: Vec<String>,
}

fn split_globs(list: &[String]) -> (NameSet, Vec<String>) {
    let mut exact = NameSet::default();
    let mut globs = Vec::new();
    for p in list {
        if p.contains('*') {
            globs.push(p.clone());
        } else {
            exact.insert(p.clone());
        }
    }
    (exact, globs)
}

fn first_match<'a>(exact: &'a NameSet, globs: &'a [String], name: &str) -> Option<&'a str> {
    exact.get(name).map(String::as_str).or_else(|| {
        globs
            .iter()
            .find(|p| pattern_matches(p, name))
            .map(String::as_str)
    })
}

impl CompiledRules {
    pub fn compile(group: &str, rules: &ToolRules) -> Self {
        let (exact_allow, glob_allow) = split_globs(&rules.allow);
        let (exact_block, glob_block) = split_globs(&rules.block);
        CompiledRules {
            group: group.to_string(),
            exact_allow,
            glob_allow,
            exact_block,
            glob_block,
            allow_risk: rules.allow_risk,
            block_risk: rules.block_risk,
            resources: rules.resources.clone(),
            prompts: rules.prompts.clone(),
        }
    }

    fn blocks(&self, tool: &str) -> Option<&str> {
        first_match(&self.exact_block, &self.glob_block, tool)
    }

    fn allows(&self, tool: &str) -> Option<&str> {
        first_match(&self.exact_allow, &self.glob_allow, tool)
    }
}

/// What decided, before it is put into words (no allocation: `tools/list` decides every tool).
#[derive(Clone, Copy, Debug)]
enum Decided<'a> {
    NotInCatalog,
    Pending,
    Rejected,
    Changed,
    NameBlock(&'a str, &'a str),
    RiskBlock(&'a str, Risk),
    NameAllow(&'a str, &'a str),
    RiskAllow(&'a str, Risk),
    Default,
}

impl Decided<'_> {
    fn allowed(self) -> bool {
        matches!(self, Decided::NameAllow(..) | Decided::RiskAllow(..))
    }
}

/// The decision procedure behind `decide` and `allows`.
fn evaluate<'a>(
    grants: &[&'a CompiledRules],
    tool: &str,
    facts: Option<ToolFacts>,
    block_changed: bool,
) -> Decided<'a> {
    let Some(facts) = facts else {
        return Decided::NotInCatalog;
    };
    match facts.review {
        Review::Pending => return Decided::Pending,
        Review::Rejected => return Decided::Rejected,
        Review::Changed if block_changed => return Decided::Changed,
        _ => {}
    }
    for g in grants {
        if let Some(p) = g.blocks(tool) {
            return Decided::NameBlock(&g.group, p);
        }
    }
    for g in grants {
        if let Some(limit) = g.block_risk
            && facts.risk >= limit
        {
            return Decided::RiskBlock(&g.group, limit);
        }
    }
    for g in grants {
        if let Some(p) = g.allows(tool) {
            return Decided::NameAllow(&g.group, p);
        }
    }
    for g in grants {
        if let Some(limit) = g.allow_risk
            && facts.risk <= limit
        {
            return Decided::RiskAllow(&g.group, limit);
        }
    }
    Decided::Default
}

/// Decides whether `tool` on `connector` is allowed for a caller whose groups have `grants` on
/// this connector, given what the catalog knows of the tool (`None`: not in the catalog).
/// `block_changed`: a tool whose definition changed since approval is refused until re-approved.
///
/// Order: catalog state (unknown, awaiting review, rejected, changed) -> name blocks -> risk
/// blocks -> name allows -> risk allows -> default deny. Any block in any group beats every allow.
pub fn decide(
    grants: &[&CompiledRules],
    connector: &str,
    tool: &str,
    facts: Option<ToolFacts>,
    block_changed: bool,
) -> Verdict {
    decide_explained(grants, connector, tool, facts, block_changed).0
}

/// `decide`, also telling whether the deny is the default one (nothing blocked, nothing
/// allowed): the only case an elevation can turn into an allow.
pub fn decide_explained(
    grants: &[&CompiledRules],
    connector: &str,
    tool: &str,
    facts: Option<ToolFacts>,
    block_changed: bool,
) -> (Verdict, bool) {
    let decided = evaluate(grants, tool, facts, block_changed);
    (
        in_words(decided, connector, tool, facts),
        matches!(decided, Decided::Default),
    )
}

fn in_words(
    decided: Decided<'_>,
    connector: &str,
    tool: &str,
    facts: Option<ToolFacts>,
) -> Verdict {
    let changed = if facts.is_some_and(|f| f.review == Review::Changed) {
        " (definition changed since approval)"
    } else {
        ""
    };
    let risk = facts.map(|f| f.risk).unwrap_or(Risk::Normal);
    match decided {
        Decided::NotInCatalog => Verdict::Deny {
            rule: format!(
                "tool \"{tool}\" is not in the catalog of connector \"{connector}\" (not discovered yet)"
            ),
        },
        Decided::Pending => Verdict::Deny {
            rule: format!(
                "tool \"{tool}\" on connector \"{connector}\" appeared after the connector was added and awaits an admin's review"
            ),
        },
        Decided::Rejected => Verdict::Deny {
            rule: format!("tool \"{tool}\" on connector \"{connector}\" was rejected by an admin"),
        },
        Decided::Changed => Verdict::Deny {
            rule: format!(
                "tool \"{tool}\" on connector \"{connector}\" changed its description or input schema since it was approved and awaits re-approval"
            ),
        },
        Decided::NameBlock(group, p) => Verdict::Deny {
            rule: format!("blocked by group \"{group}\" rule \"{p}\" on connector \"{connector}\""),
        },
        Decided::RiskBlock(group, limit) => Verdict::Deny {
            rule: format!(
                "blocked by group \"{group}\" rule \"risk >= {limit}\" on connector \"{connector}\" (tool risk {risk})"
            ),
        },
        Decided::NameAllow(group, p) => Verdict::Allow {
            rule: format!(
                "allowed by group \"{group}\" rule \"{p}\" on connector \"{connector}\"{changed}"
            ),
        },
        Decided::RiskAllow(group, limit) => Verdict::Allow {
            rule: format!(
                "allowed by group \"{group}\" rule \"risk <= {limit}\" on connector \"{connector}\" (tool risk {risk}){changed}"
            ),
        },
        Decided::Default => Verdict::Deny {
            rule: format!(
                "no rule of the caller's groups allows \"{tool}\" on connector \"{connector}\" (default deny)"
            ),
        },
    }
}

/// Whether `decide` would allow, without putting the reason into words (for listings).
pub fn allows(
    grants: &[&CompiledRules],
    tool: &str,
    facts: Option<ToolFacts>,
    block_changed: bool,
) -> bool {
    evaluate(grants, tool, facts, block_changed).allowed()
}

/// Whether a caller may read resource `uri` on `connector`: some group's resource pattern must
/// match (no pattern: no resources).
pub fn decide_resource(grants: &[&CompiledRules], connector: &str, uri: &str) -> Verdict {
    for g in grants {
        if let Some(p) = g.resources.iter().find(|p| pattern_matches(p, uri)) {
            return Verdict::Allow {
                rule: format!(
                    "allowed by group \"{}\" resource rule \"{p}\" on connector \"{connector}\"",
                    g.group
                ),
            };
        }
    }
    Verdict::Deny {
        rule: format!(
            "no resource rule of the caller's groups matches \"{uri}\" on connector \"{connector}\" (default deny)"
        ),
    }
}

/// Whether a caller may get prompt `name` on `connector`.
pub fn decide_prompt(grants: &[&CompiledRules], connector: &str, name: &str) -> Verdict {
    for g in grants {
        if let Some(p) = g.prompts.iter().find(|p| pattern_matches(p, name)) {
            return Verdict::Allow {
                rule: format!(
                    "allowed by group \"{}\" prompt rule \"{p}\" on connector \"{connector}\"",
                    g.group
                ),
            };
        }
    }
    Verdict::Deny {
        rule: format!(
            "no prompt rule of the caller's groups matches \"{name}\" on connector \"{connector}\" (default deny)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(allow: &[&str], block: &[&str]) -> ToolRules {
        ToolRules::names(
            allow.iter().map(|s| s.to_string()).collect(),
            block.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn approved(risk: Risk) -> Option<ToolFacts> {
        Some(ToolFacts {
            risk,
            review: Review::Approved,
        })
    }

    fn run(groups: &[(&str, &ToolRules)], tool: &str, facts: Option<ToolFacts>) -> Verdict {
        let compiled: Vec<CompiledRules> = groups
            .iter()
            .map(|(g, r)| CompiledRules::compile(g, r))
            .collect();
        let refs: Vec<&CompiledRules> = compiled.iter().collect();
        decide(&refs, "gh", tool, facts, true)
    }

    #[test]
    fn glob_matching() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("get_*", "get_file"));
        assert!(!pattern_matches("get_*", "set_file"));
        assert!(pattern_matches("*_branch", "delete_branch"));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(!pattern_matches("a*b*c", "axxbyy"));
        assert!(pattern_matches("echo", "echo"));
        assert!(!pattern_matches("echo", "echoes"));
        assert!(!pattern_matches("echo", "ech"));
        assert!(pattern_matches("**x", "abx"));
        assert!(pattern_matches("file:///docs/*", "file:///docs/a/b.md"));
    }

    #[test]
    fn default_deny_without_rules() {
        let v = run(&[], "create_pr", approved(Risk::Low));
        assert!(!v.is_allowed());
        assert!(v.rule().contains("default deny"), "{}", v.rule());
    }

    #[test]
    fn allow_names_the_rule() {
        let r = rules(&["create_*"], &[]);
        let v = run(&[("Engineers", &r)], "create_pr", approved(Risk::Normal));
        assert_eq!(
            v,
            Verdict::Allow {
                rule: "allowed by group \"Engineers\" rule \"create_*\" on connector \"gh\"".into()
            }
        );
        assert!(!run(&[("Engineers", &r)], "delete_branch", approved(Risk::High)).is_allowed());
    }

    #[test]
    fn block_beats_allow_within_and_across_groups() {
        let same = rules(&["*"], &["delete_*"]);
        assert!(!run(&[("G", &same)], "delete_branch", approved(Risk::Low)).is_allowed());
        assert!(run(&[("G", &same)], "read_file", approved(Risk::Low)).is_allowed());

        let allow_all = rules(&["*"], &[]);
        let block_one = rules(&[], &["push"]);
        let v = run(
            &[("A", &allow_all), ("B", &block_one)],
            "push",
            approved(Risk::Low),
        );
        assert!(!v.is_allowed());
        assert!(v.rule().contains("group \"B\""), "{}", v.rule());
        // Order of groups does not matter.
        assert!(
            !run(
                &[("B", &block_one), ("A", &allow_all)],
                "push",
                approved(Risk::Low)
            )
            .is_allowed()
        );
    }

    #[test]
    fn risk_rules_allow_up_to_and_block_from_a_level() {
        let up_to_normal = ToolRules {
            allow_risk: Some(Risk::Normal),
            ..ToolRules::default()
        };
        let v = run(
            &[("Eng", &up_to_normal)],
            "create_pr",
            approved(Risk::Normal),
        );
        assert_eq!(
            v.rule(),
            "allowed by group \"Eng\" rule \"risk <= Normal\" on connector \"gh\" (tool risk Normal)"
        );
        assert!(
            !run(
                &[("Eng", &up_to_normal)],
                "merge",
                approved(Risk::Consequential)
            )
            .is_allowed()
        );

        // A name allow does not survive a risk block, in the same group or another.
        let all_but_high = ToolRules {
            allow: vec!["*".into()],
            block_risk: Some(Risk::High),
            ..ToolRules::default()
        };
        let v = run(
            &[("Mgr", &all_but_high)],
            "delete_branch",
            approved(Risk::High),
        );
        assert_eq!(
            v.rule(),
            "blocked by group \"Mgr\" rule \"risk >= High\" on connector \"gh\" (tool risk High)"
        );
        assert!(
            run(
                &[("Mgr", &all_but_high)],
                "merge",
                approved(Risk::Consequential)
            )
            .is_allowed()
        );
        let named = rules(&["delete_branch"], &[]);
        assert!(
            !run(
                &[("Ops", &named), ("Mgr", &all_but_high)],
                "delete_branch",
                approved(Risk::High)
            )
            .is_allowed()
        );
    }

    #[test]
    fn catalog_state_comes_first() {
        let all = rules(&["*"], &[]);
        let v = run(&[("G", &all)], "new_tool", None);
        assert!(
            !v.is_allowed() && v.rule().contains("not in the catalog"),
            "{}",
            v.rule()
        );
        let pending = Some(ToolFacts {
            risk: Risk::Low,
            review: Review::Pending,
        });
        let v = run(&[("G", &all)], "new_tool", pending);
        assert!(
            !v.is_allowed() && v.rule().contains("awaits an admin's review"),
            "{}",
            v.rule()
        );
        let changed = Some(ToolFacts {
            risk: Risk::Low,
            review: Review::Changed,
        });
        let rejected = Some(ToolFacts {
            risk: Risk::Low,
            review: Review::Rejected,
        });
        let v = run(&[("G", &all)], "echo", rejected);
        assert!(
            !v.is_allowed() && v.rule().contains("rejected"),
            "{}",
            v.rule()
        );
        let v = run(&[("G", &all)], "echo", changed);
        assert!(
            !v.is_allowed() && v.rule().contains("re-approval"),
            "{}",
            v.rule()
        );
        // With the setting off, a changed tool is served and the rule says it changed.
        let c = CompiledRules::compile("G", &all);
        let v = decide(&[&c], "gh", "echo", changed, false);
        assert!(
            v.is_allowed() && v.rule().contains("changed since approval"),
            "{}",
            v.rule()
        );
    }

    #[test]
    fn resources_and_prompts_need_their_own_rules() {
        let tools_only = rules(&["*"], &[]);
        let c = CompiledRules::compile("G", &tools_only);
        assert!(!decide_resource(&[&c], "docs", "file:///a").is_allowed());
        assert!(!decide_prompt(&[&c], "docs", "summarise").is_allowed());
        let r = ToolRules {
            resources: vec!["file:///public/*".into()],
            prompts: vec!["summ*".into()],
            ..ToolRules::default()
        };
        let c = CompiledRules::compile("Readers", &r);
        let v = decide_resource(&[&c], "docs", "file:///public/a.md");
        assert!(
            v.is_allowed() && v.rule().contains("\"Readers\""),
            "{}",
            v.rule()
        );
        assert!(!decide_resource(&[&c], "docs", "file:///private/a.md").is_allowed());
        assert!(decide_prompt(&[&c], "docs", "summarise").is_allowed());
    }

    #[test]
    fn normalisation_validates_and_dedupes() {
        let r = ToolRules::normalized(vec![" echo ".into(), "echo".into(), "get_*".into()], vec![])
            .unwrap();
        assert_eq!(r.allow, vec!["echo", "get_*"]);
        assert!(ToolRules::normalized(vec!["bad name".into()], vec![]).is_err());
        assert!(ToolRules::normalized(vec![], vec!["".into()]).is_err());
        assert!(ToolRules::normalized(vec!["x".into(); MAX_PATTERNS + 1], vec![]).is_err());
        let r = ToolRules {
            resources: vec!["has space".into()],
            ..ToolRules::default()
        };
        assert!(r.validated().is_err());
    }

    /// The example roles of docs/policy.md, as a table: (groups, connector, tool, risk, allowed).
    #[test]
    fn role_tables() {
        let senior_gh = ToolRules {
            allow_risk: Some(Risk::Normal),
            block: vec!["delete_*".into()],
            ..ToolRules::default()
        };
        let manager_gh = ToolRules {
            allow: vec!["*".into()],
            block_risk: Some(Risk::High),
            ..ToolRules::default()
        };
        let sales_sf = ToolRules {
            allow: vec![
                "get_*".into(),
                "search_*".into(),
                "create_record".into(),
                "update_record".into(),
            ],
            block: vec!["bulk_*".into(), "*export*".into()],
            ..ToolRules::default()
        };
        let contractors_gh = rules(&[], &["push_*"]);
        let policy: &[(&str, &str, &ToolRules)] = &[
            ("Senior Engineers", "github", &senior_gh),
            ("Engineering Managers", "github", &manager_gh),
            ("Sales Reps", "salesforce", &sales_sf),
            ("Contractors", "github", &contractors_gh),
        ];
        use Risk::*;
        let table: &[(&[&str], &str, &str, Risk, bool)] = &[
            // Senior Engineer: read files, create PRs; nothing destructive, no merges.
            (&["Senior Engineers"], "github", "get_file", Low, true),
            (
                &["Senior Engineers"],
                "github",
                "list_pull_requests",
                Low,
                true,
            ),
            (
                &["Senior Engineers"],
                "github",
                "create_pull_request",
                Normal,
                true,
            ),
            (
                &["Senior Engineers"],
                "github",
                "merge_pull_request",
                Consequential,
                false,
            ),
            (
                &["Senior Engineers"],
                "github",
                "push_to_branch",
                Consequential,
                false,
            ),
            (
                &["Senior Engineers"],
                "github",
                "delete_branch",
                High,
                false,
            ),
            (
                &["Senior Engineers"],
                "github",
                "delete_comment",
                Normal,
                false,
            ),
            (
                &["Senior Engineers"],
                "github",
                "get_repository_secrets",
                High,
                false,
            ),
            (
                &["Senior Engineers"],
                "salesforce",
                "get_record",
                Low,
                false,
            ),
            // Engineering Manager: also merges and pushes; never secrets or deletions.
            (
                &["Engineering Managers"],
                "github",
                "merge_pull_request",
                Consequential,
                true,
            ),
            (
                &["Engineering Managers"],
                "github",
                "push_to_branch",
                Consequential,
                true,
            ),
            (
                &["Engineering Managers"],
                "github",
                "create_webhook",
                Consequential,
                true,
            ),
            (
                &["Engineering Managers"],
                "github",
                "delete_branch",
                High,
                false,
            ),
            (
                &["Engineering Managers"],
                "github",
                "get_repository_secrets",
                High,
                false,
            ),
            (
                &["Engineering Managers"],
                "github",
                "run_workflow_shell",
                Infrastructure,
                false,
            ),
            // Sales Rep: read and update records, never bulk-export.
            (&["Sales Reps"], "salesforce", "get_record", Low, true),
            (&["Sales Reps"], "salesforce", "search_records", Low, true),
            (&["Sales Reps"], "salesforce", "update_record", Normal, true),
            (
                &["Sales Reps"],
                "salesforce",
                "bulk_export",
                Consequential,
                false,
            ),
            (
                &["Sales Reps"],
                "salesforce",
                "export_report",
                Consequential,
                false,
            ),
            (&["Sales Reps"], "salesforce", "delete_record", High, false),
            (&["Sales Reps"], "github", "get_file", Low, false),
            // Union of allows across groups; a block in any group wins.
            (
                &["Sales Reps", "Senior Engineers"],
                "github",
                "create_pull_request",
                Normal,
                true,
            ),
            (
                &["Sales Reps", "Senior Engineers"],
                "salesforce",
                "update_record",
                Normal,
                true,
            ),
            (
                &["Engineering Managers", "Contractors"],
                "github",
                "push_to_branch",
                Consequential,
                false,
            ),
            (
                &["Engineering Managers", "Contractors"],
                "github",
                "merge_pull_request",
                Consequential,
                true,
            ),
            (
                &["Senior Engineers", "Engineering Managers"],
                "github",
                "merge_pull_request",
                Consequential,
                true,
            ),
            (
                &["Senior Engineers", "Engineering Managers"],
                "github",
                "delete_comment",
                Normal,
                false,
            ),
        ];
        for (groups, connector, tool, risk, want) in table {
            let compiled: Vec<CompiledRules> = policy
                .iter()
                .filter(|(g, c, _)| groups.contains(g) && c == connector)
                .map(|(g, _, r)| CompiledRules::compile(g, r))
                .collect();
            let refs: Vec<&CompiledRules> = compiled.iter().collect();
            let v = decide(&refs, connector, tool, approved(*risk), true);
            assert_eq!(
                v.is_allowed(),
                *want,
                "{groups:?} {connector} {tool}: {}",
                v.rule()
            );
        }
    }

    fn arb_pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            "[a-c]{1,2}".prop_map(|s| s),
            "[a-c]{0,1}".prop_map(|s| format!("{s}*")),
            "[a-c]{0,1}".prop_map(|s| format!("*{s}")),
        ]
    }

    fn arb_risk() -> impl Strategy<Value = Option<Risk>> {
        prop_oneof![Just(None), (0usize..5).prop_map(|i| Some(Risk::ALL[i]))]
    }

    fn arb_rules() -> impl Strategy<Value = ToolRules> {
        (
            proptest::collection::vec(arb_pattern(), 0..3),
            proptest::collection::vec(arb_pattern(), 0..2),
            arb_risk(),
            arb_risk(),
        )
            .prop_map(|(allow, block, allow_risk, block_risk)| ToolRules {
                allow,
                block,
                allow_risk,
                block_risk,
                ..ToolRules::default()
            })
    }

    fn verdict_of(groups: &[ToolRules], tool: &str, risk: Risk) -> Verdict {
        let compiled: Vec<CompiledRules> = groups
            .iter()
            .enumerate()
            .map(|(i, r)| CompiledRules::compile(&format!("g{i}"), r))
            .collect();
        let refs: Vec<&CompiledRules> = compiled.iter().collect();
        decide(&refs, "c", tool, approved(risk), true)
    }

    proptest! {
        /// A tool that any group blocks (by name or by risk) is denied, whatever the others allow.
        #[test]
        fn block_always_wins(groups in proptest::collection::vec(arb_rules(), 1..4),
                             tool in "[a-c]{1,3}", ri in 0usize..5) {
            let risk = Risk::ALL[ri];
            let blocked = groups.iter().any(|g| g.block.iter().any(|p| pattern_matches(p, &tool))
                || g.block_risk.is_some_and(|b| risk >= b));
            if blocked {
                prop_assert!(!verdict_of(&groups, &tool, risk).is_allowed());
            }
        }

        /// With no allow that matches, the answer is no.
        #[test]
        fn no_rule_means_deny(groups in proptest::collection::vec(arb_rules(), 0..4),
                              tool in "[a-c]{1,3}", ri in 0usize..5) {
            let risk = Risk::ALL[ri];
            let allowed_somewhere = groups.iter().any(|g| g.allow.iter().any(|p| pattern_matches(p, &tool))
                || g.allow_risk.is_some_and(|a| risk <= a));
            if !allowed_somewhere {
                prop_assert!(!verdict_of(&groups, &tool, risk).is_allowed());
            }
        }

        /// Adding an allow (a pattern, a risk ceiling, or a whole group of allows) never takes
        /// access away.
        #[test]
        fn adding_an_allow_never_removes_access(groups in proptest::collection::vec(arb_rules(), 1..4),
                                                extra in arb_pattern(), ceiling in arb_risk(),
                                                which in 0usize..4, tool in "[a-c]{1,3}", ri in 0usize..5) {
            let risk = Risk::ALL[ri];
            let before = verdict_of(&groups, &tool, risk).is_allowed();
            let mut more = groups.clone();
            let i = which % more.len();
            more[i].allow.push(extra);
            if ceiling > more[i].allow_risk {
                more[i].allow_risk = ceiling;
            }
            more.push(ToolRules { allow: vec!["a*".into()], ..ToolRules::default() });
            if before {
                prop_assert!(verdict_of(&more, &tool, risk).is_allowed());
            }
        }

        /// The quick answer for listings agrees with the explained one.
        #[test]
        fn allows_agrees_with_decide(groups in proptest::collection::vec(arb_rules(), 0..4),
                                     tool in "[a-c]{1,3}", ri in 0usize..5, ci in 0usize..5) {
            let compiled: Vec<CompiledRules> = groups
                .iter()
                .enumerate()
                .map(|(i, r)| CompiledRules::compile(&format!("g{i}"), r))
                .collect();
            let refs: Vec<&CompiledRules> = compiled.iter().collect();
            let review = [Review::Approved, Review::Pending, Review::Changed, Review::Rejected, Review::Approved][ci];
            let facts = (ci < 4).then_some(ToolFacts { risk: Risk::ALL[ri], review });
            for block_changed in [true, false] {
                prop_assert_eq!(
                    allows(&refs, &tool, facts, block_changed),
                    decide(&refs, "c", &tool, facts, block_changed).is_allowed()
                );
            }
        }

        /// The explanation always names a real rule of a real group (or the default).
        #[test]
        fn rule_is_explained(groups in proptest::collection::vec(arb_rules(), 0..4),
                             tool in "[a-c]{1,3}", ri in 0usize..5) {
            let v = verdict_of(&groups, &tool, Risk::ALL[ri]);
            prop_assert!(v.rule().contains("default deny") || v.rule().contains("by group \"g"));
        }
    }
}
