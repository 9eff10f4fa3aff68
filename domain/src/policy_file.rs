//! Policy as a file: every (group, connector) rule, the admins' risk levels and the catalog
//! setting, exported as TOML and applied back as a plan (add, change, remove) against the
//! database. Parsing, checking, the diff and its rendering are pure; `PolicyState::load` and
//! `apply` are the only parts that talk to the store.

use crate::policy::ToolRules;
use crate::risk::Risk;
use crate::store::{CatalogSettings, NewAuditEvent, PolicyRow, Store};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The comment at the top of every export.
const HEADER: &str = "\
# Toolgate policy, as `toolgate policy export` writes it.
#
# `toolgate policy apply -f FILE` makes the database match this file: a [[rule]] missing here is
# removed, and a [[risk]] missing here goes back to the suggested level. Without [settings], the
# settings stay as they are. Try a change with --dry-run first.
#
# [[rule]]: one group's rules on one connector, by the group's display name and the connector's
# name. allow / block: tool names, `*` matching any run (`get_*`); a block beats every allow.
# allow_risk / block_risk: allow tools up to, block tools from, a level. resources: URI patterns;
# prompts: prompt names. Levels: low, normal, consequential, high, infrastructure.
# Semantics: docs/policy.md.
";

/// Why a policy file cannot be applied: one line per problem, naming its line in the file where
/// it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct InvalidFile {
    pub problems: Vec<String>,
}

impl InvalidFile {
    fn one(problem: String) -> Self {
        InvalidFile {
            problems: vec![problem],
        }
    }
}

/// `[settings]`: catalog-wide settings; a missing key leaves the setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_changed_tools: Option<bool>,
}

/// `[[rule]]`: one group's rules on one connector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// The group's display name (case does not matter, as in the directory).
    pub group: String,
    /// The connector's name.
    pub connector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_risk"
    )]
    pub allow_risk: Option<Risk>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_risk"
    )]
    pub block_risk: Option<Risk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
}

impl RuleEntry {
    fn rules(&self) -> ToolRules {
        ToolRules {
            allow: self.allow.clone(),
            block: self.block.clone(),
            allow_risk: self.allow_risk,
            block_risk: self.block_risk,
            resources: self.resources.clone(),
            prompts: self.prompts.clone(),
        }
    }
}

/// `[[risk]]`: an admin's risk level for one catalog tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskEntry {
    pub connector: String,
    pub tool: String,
    #[serde(deserialize_with = "risk")]
    pub level: Risk,
}

/// Risk levels as people write them: `high`, `High`, `HIGH`.
fn risk<'de, D: Deserializer<'de>>(d: D) -> Result<Risk, D::Error> {
    let s = String::deserialize(d)?;
    Risk::parse(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown risk level {s:?}: expected low, normal, consequential, high or infrastructure"
        ))
    })
}

fn some_risk<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Risk>, D::Error> {
    risk(d).map(Some)
}

/// The document as read: entries keep where they start, for messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadDoc {
    #[serde(default)]
    settings: Option<SettingsEntry>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleEntry>>,
    #[serde(default)]
    risk: Vec<toml::Spanned<RiskEntry>>,
}

/// The document as written.
#[derive(Serialize)]
struct WriteDoc<'a> {
    settings: &'a SettingsEntry,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    rule: &'a [RuleEntry],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    risk: &'a [RiskEntry],
}

/// A file entry with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub line: usize,
    pub entry: T,
}

/// A parsed policy file, not yet checked against the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFile {
    pub settings: SettingsEntry,
    pub rules: Vec<Located<RuleEntry>>,
    pub risks: Vec<Located<RiskEntry>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads a policy file. Syntax errors, unknown keys and unknown risk levels are reported with
/// their line and column (as the toml crate words them).
pub fn parse(text: &str) -> Result<PolicyFile, InvalidFile> {
    let doc: ReadDoc =
        toml::from_str(text).map_err(|e| InvalidFile::one(e.to_string().trim_end().into()))?;
    let locate = |span: std::ops::Range<usize>| line_of(text, span.start);
    Ok(PolicyFile {
        settings: doc.settings.unwrap_or_default(),
        rules: doc
            .rule
            .into_iter()
            .map(|s| Located {
                line: locate(s.span()),
                entry: s.into_inner(),
            })
            .collect(),
        risks: doc
            .risk
            .into_iter()
            .map(|s| Located {
                line: locate(s.span()),
                entry: s.into_inner(),
            })
            .collect(),
    })
}

/// A catalog tool's risk level, and whether an admin set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRisk {
    pub connector_id: String,
    pub tool: String,
    pub risk: Risk,
    pub overridden: bool,
}

/// What the database holds, as far as the policy file is concerned.
#[derive(Clone, Debug, Default)]
pub struct PolicyState {
    /// (id, display name) of every group.
    pub groups: Vec<(String, String)>,
    /// (id, name) of every connector.
    pub connectors: Vec<(String, String)>,
    pub rules: Vec<PolicyRow>,
    /// Every catalog tool (present or not): overrides can only name tools the catalog knows.
    pub tools: Vec<ToolRisk>,
    pub block_changed_tools: bool,
}

impl PolicyState {
    /// Reads groups, connectors, rules, the catalog and the catalog setting.
    pub async fn load(store: &Store) -> crate::Result<Self> {
        let groups = store.list_groups().await?;
        let connectors = store.list_connectors().await?;
        let rules = store.all_policies().await?;
        let catalog = store.all_catalogs().await?;
        let settings = store.catalog_settings().await?;
        Ok(PolicyState {
            groups: groups.into_iter().map(|g| (g.id, g.display_name)).collect(),
            connectors: connectors.into_iter().map(|c| (c.id, c.name)).collect(),
            rules,
            tools: catalog
                .into_iter()
                .map(|t| ToolRisk {
                    connector_id: t.connector_id,
                    tool: t.name,
                    risk: t.risk,
                    overridden: t.risk_overridden,
                })
                .collect(),
            block_changed_tools: settings.block_changed_tools,
        })
    }

    fn group_name(&self, id: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(g, _)| g == id)
            .map(|(_, n)| n.as_str())
    }

    fn connector_name(&self, id: &str) -> Option<&str> {
        self.connectors
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, n)| n.as_str())
    }
}

/// The policy in the database as a TOML document, sorted (rules by group then connector, risk
/// levels by connector then tool) so that two exports of the same policy are byte-identical.
pub fn export(state: &PolicyState) -> String {
    let groups: HashMap<&str, &str> = state
        .groups
        .iter()
        .map(|(id, n)| (id.as_str(), n.as_str()))
        .collect();
    let connectors: HashMap<&str, &str> = state
        .connectors
        .iter()
        .map(|(id, n)| (id.as_str(), n.as_str()))
        .collect();
    let mut rules: Vec<RuleEntry> = state
        .rules
        .iter()
        .filter_map(|p| {
            let r = &p.rules;
            Some(RuleEntry {
                group: (*groups.get(p.group_id.as_str())?).to_string(),
                connector: (*connectors.get(p.connector_id.as_str())?).to_string(),
                allow: r.allow.clone(),
                block: r.block.clone(),
                allow_risk: r.allow_risk,
                block_risk: r.block_risk,
                resources: r.resources.clone(),
                prompts: r.prompts.clone(),
            })
        })
        .collect();
    rules.sort_by(|a, b| {
        (a.group.to_lowercase(), &a.group, &a.connector).cmp(&(
            b.group.to_lowercase(),
            &b.group,
            &b.connector,
        ))
    });
    let mut risks: Vec<RiskEntry> = state
        .tools
        .iter()
        .filter(|t| t.overridden)
        .filter_map(|t| {
            Some(RiskEntry {
                connector: (*connectors.get(t.connector_id.as_str())?).to_string(),
                tool: t.tool.clone(),
                level: t.risk,
            })
        })
        .collect();
    risks.sort_by(|a, b| (&a.connector, &a.tool).cmp(&(&b.connector, &b.tool)));
    let settings = SettingsEntry {
        block_changed_tools: Some(state.block_changed_tools),
    };
    let body = toml::to_string(&WriteDoc {
        settings: &settings,
        rule: &rules,
        risk: &risks,
    })
    .unwrap_or_else(|e| format!("# export failed: {e}\n"));
    format!("{HEADER}\n{body}")
}

/// One rule change: `before` None is an addition, `after` None a removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleChange {
    pub group_id: String,
    pub group: String,
    pub connector_id: String,
    pub connector: String,
    pub before: Option<ToolRules>,
    pub after: Option<ToolRules>,
}

/// One risk-level change: `after` None goes back to the suggested level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskChange {
    pub connector_id: String,
    pub connector: String,
    pub tool: String,
    /// The tool's level now (an admin's, or the suggestion when `before` is None).
    pub current: Risk,
    /// The admin's level now, if any.
    pub before: Option<Risk>,
    pub after: Option<Risk>,
}

/// What applying a file would change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `block_changed_tools`: (now, then).
    pub block_changed_tools: Option<(bool, bool)>,
    pub rules: Vec<RuleChange>,
    pub risks: Vec<RiskChange>,
}

/// Finds a group by display name: exactly, else ignoring case (names are unique that way).
fn find_group<'a>(state: &'a PolicyState, name: &str) -> Option<&'a (String, String)> {
    state.groups.iter().find(|(_, n)| n == name).or_else(|| {
        let lower = name.to_lowercase();
        state.groups.iter().find(|(_, n)| n.to_lowercase() == lower)
    })
}

/// Checks a file against the database (names, patterns, catalog tools, duplicates) and works out
/// what applying it would change. The file is the whole truth for rules and risk levels.
pub fn plan(file: &PolicyFile, state: &PolicyState) -> Result<Plan, InvalidFile> {
    let mut problems = Vec::new();
    let connector_ids: HashMap<&str, &str> = state
        .connectors
        .iter()
        .map(|(id, n)| (n.as_str(), id.as_str()))
        .collect();

    // Wanted rules by (group id, connector id): (line, group name, connector name, rules).
    let mut wanted: BTreeMap<(&str, &str), (usize, &str, &str, ToolRules)> = BTreeMap::new();
    for Located { line, entry } in &file.rules {
        let group = find_group(state, &entry.group);
        if group.is_none() {
            problems.push(format!("line {line}: unknown group {:?}", entry.group));
        }
        let connector = connector_ids.get(entry.connector.as_str()).copied();
        if connector.is_none() {
            problems.push(format!(
                "line {line}: unknown connector {:?}",
                entry.connector
            ));
        }
        let rules = entry.rules().validated().map_err(|e| {
            problems.push(format!(
                "line {line}: rule {:?} x {:?}: {e}",
                entry.group, entry.connector
            ))
        });
        let (Some((gid, gname)), Some(cid), Ok(rules)) = (group, connector, rules) else {
            continue;
        };
        if let Some((first, ..)) = wanted.get(&(gid.as_str(), cid)) {
            problems.push(format!(
                "line {line}: a second rule for group {gname:?} on connector {:?} (the first is at line {first})",
                entry.connector
            ));
            continue;
        }
        wanted.insert(
            (gid.as_str(), cid),
            (*line, gname.as_str(), entry.connector.as_str(), rules),
        );
    }

    let tools: HashMap<(&str, &str), &ToolRisk> = state
        .tools
        .iter()
        .map(|t| ((t.connector_id.as_str(), t.tool.as_str()), t))
        .collect();
    let mut wanted_risk: BTreeMap<(&str, &str), (usize, &str, Risk)> = BTreeMap::new();
    for Located { line, entry } in &file.risks {
        let Some(&cid) = connector_ids.get(entry.connector.as_str()) else {
            problems.push(format!(
                "line {line}: unknown connector {:?}",
                entry.connector
            ));
            continue;
        };
        if !tools.contains_key(&(cid, entry.tool.as_str())) {
            problems.push(format!(
                "line {line}: connector {:?} has no tool {:?} in its catalog",
                entry.connector, entry.tool
            ));
            continue;
        }
        if let Some((first, ..)) = wanted_risk.get(&(cid, entry.tool.as_str())) {
            problems.push(format!(
                "line {line}: a second risk level for tool {:?} on connector {:?} (the first is at line {first})",
                entry.tool, entry.connector
            ));
            continue;
        }
        wanted_risk.insert(
            (cid, entry.tool.as_str()),
            (*line, entry.connector.as_str(), entry.level),
        );
    }
    if !problems.is_empty() {
        return Err(InvalidFile { problems });
    }

    let mut rules = Vec::new();
    let current: HashMap<(&str, &str), &PolicyRow> = state
        .rules
        .iter()
        .map(|p| ((p.group_id.as_str(), p.connector_id.as_str()), p))
        .collect();
    for (&(gid, cid), (_, gname, cname, after)) in &wanted {
        let before = current.get(&(gid, cid)).map(|p| &p.rules);
        if before == Some(after) {
            continue;
        }
        rules.push(RuleChange {
            group_id: gid.into(),
            group: (*gname).into(),
            connector_id: cid.into(),
            connector: (*cname).into(),
            before: before.cloned(),
            after: Some(after.clone()),
        });
    }
    for p in &state.rules {
        if wanted.contains_key(&(p.group_id.as_str(), p.connector_id.as_str())) {
            continue;
        }
        rules.push(RuleChange {
            group_id: p.group_id.clone(),
            group: state.group_name(&p.group_id).unwrap_or("?").into(),
            connector_id: p.connector_id.clone(),
            connector: state.connector_name(&p.connector_id).unwrap_or("?").into(),
            before: Some(p.rules.clone()),
            after: None,
        });
    }
    rules.sort_by(|a, b| {
        (a.group.to_lowercase(), &a.connector).cmp(&(b.group.to_lowercase(), &b.connector))
    });

    let mut risks = Vec::new();
    for t in &state.tools {
        let key = (t.connector_id.as_str(), t.tool.as_str());
        let before = t.overridden.then_some(t.risk);
        let after = wanted_risk.get(&key).map(|(_, _, level)| *level);
        if before == after {
            continue;
        }
        risks.push(RiskChange {
            connector_id: t.connector_id.clone(),
            connector: state.connector_name(&t.connector_id).unwrap_or("?").into(),
            tool: t.tool.clone(),
            current: t.risk,
            before,
            after,
        });
    }
    risks.sort_by(|a, b| (&a.connector, &a.tool).cmp(&(&b.connector, &b.tool)));

    let block_changed_tools = file
        .settings
        .block_changed_tools
        .filter(|&v| v != state.block_changed_tools)
        .map(|v| (state.block_changed_tools, v));
    Ok(Plan {
        block_changed_tools,
        rules,
        risks,
    })
}

fn list(v: &[String]) -> String {
    format!("{v:?}")
}

fn level(r: Option<Risk>) -> &'static str {
    r.map_or("(none)", Risk::as_str)
}

/// A rule's fields in one line: `allow ["get_*"], block_risk high`.
fn describe(r: &ToolRules) -> String {
    let mut parts = Vec::new();
    for (name, v) in [
        ("allow", &r.allow),
        ("block", &r.block),
        ("resources", &r.resources),
        ("prompts", &r.prompts),
    ] {
        if !v.is_empty() {
            parts.push(format!("{name} {}", list(v)));
        }
    }
    if let Some(l) = r.allow_risk {
        parts.push(format!("allow_risk {}", l.as_str()));
    }
    if let Some(l) = r.block_risk {
        parts.push(format!("block_risk {}", l.as_str()));
    }
    if parts.is_empty() {
        "(no rules: allows nothing)".into()
    } else {
        parts.join(", ")
    }
}

/// `field old -> new` for every field that differs.
fn field_changes(a: &ToolRules, b: &ToolRules) -> Vec<String> {
    let mut out = Vec::new();
    for (name, x, y) in [
        ("allow", &a.allow, &b.allow),
        ("block", &a.block, &b.block),
        ("resources", &a.resources, &b.resources),
        ("prompts", &a.prompts, &b.prompts),
    ] {
        if x != y {
            out.push(format!("{name} {} -> {}", list(x), list(y)));
        }
    }
    for (name, x, y) in [
        ("allow_risk", a.allow_risk, b.allow_risk),
        ("block_risk", a.block_risk, b.block_risk),
    ] {
        if x != y {
            out.push(format!("{name} {} -> {}", level(x), level(y)));
        }
    }
    out
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.block_changed_tools.is_none() && self.rules.is_empty() && self.risks.is_empty()
    }

    /// How many changes applying makes.
    pub fn len(&self) -> usize {
        usize::from(self.block_changed_tools.is_some()) + self.rules.len() + self.risks.len()
    }

    /// The plan for people: `+` added, `~` changed (old -> new per field), `-` removed; then a
    /// count. "No changes" when the database already matches the file.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "No changes: the database already matches the file.\n".into();
        }
        let mut out = String::new();
        if let Some((old, new)) = self.block_changed_tools {
            out.push_str(&format!("~ setting block_changed_tools: {old} -> {new}\n"));
        }
        for c in &self.rules {
            let head = format!("rule {:?} x {:?}", c.group, c.connector);
            match (&c.before, &c.after) {
                (None, Some(a)) => out.push_str(&format!("+ {head}: {}\n", describe(a))),
                (Some(b), None) => out.push_str(&format!("- {head} (was: {})\n", describe(b))),
                (Some(b), Some(a)) => {
                    out.push_str(&format!("~ {head}:\n"));
                    for line in field_changes(b, a) {
                        out.push_str(&format!("      {line}\n"));
                    }
                }
                (None, None) => {}
            }
        }
        for r in &self.risks {
            let head = format!("risk {:?} tool {:?}", r.connector, r.tool);
            match (r.before, r.after) {
                (None, Some(a)) => out.push_str(&format!(
                    "+ {head}: {} (suggested level {})\n",
                    a.as_str(),
                    r.current.as_str()
                )),
                (Some(b), Some(a)) => {
                    out.push_str(&format!("~ {head}: {} -> {}\n", b.as_str(), a.as_str()))
                }
                (Some(b), None) => out.push_str(&format!(
                    "- {head}: {} (back to the suggested level)\n",
                    b.as_str()
                )),
                (None, None) => {}
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `Plan: 1 rule to add, 2 to change, 0 to remove; 1 risk level to set, 0 to clear; 1 setting to change.`
    pub fn summary(&self) -> String {
        let count = |f: fn(&RuleChange) -> bool| self.rules.iter().filter(|c| f(c)).count();
        let added = count(|c| c.before.is_none());
        let removed = count(|c| c.after.is_none());
        let changed = self.rules.len() - added - removed;
        let set = self.risks.iter().filter(|r| r.after.is_some()).count();
        format!(
            "Plan: {added} rule{} to add, {changed} to change, {removed} to remove; {set} risk level{} to set, {} to clear; {} setting{} to change.",
            if added == 1 { "" } else { "s" },
            if set == 1 { "" } else { "s" },
            self.risks.len() - set,
            usize::from(self.block_changed_tools.is_some()),
            if self.block_changed_tools.is_some() {
                ""
            } else {
                "s"
            },
        )
    }
}

fn rule_view(c: &RuleChange, rules: &ToolRules) -> serde_json::Value {
    let mut v = serde_json::to_value(rules).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("group_id".into(), c.group_id.clone().into());
        m.insert("group".into(), c.group.clone().into());
        m.insert("connector_id".into(), c.connector_id.clone().into());
        m.insert("connector".into(), c.connector.clone().into());
    }
    v
}

fn risk_view(r: &RiskChange, risk: Risk, overridden: bool) -> serde_json::Value {
    serde_json::json!({
        "connector_id": r.connector_id, "connector": r.connector, "tool": r.tool,
        "risk": risk, "overridden": overridden,
    })
}

/// Carries out a plan through the store in ONE transaction (all changes or none), then records
/// every change in the audit log as made by `principal` (subject kind `system`, as the other
/// console commands) with the same event kinds as the admin API, and tells other replicas to
/// reload. Returns the number of changes made.
pub async fn apply(store: &Store, plan: &Plan, principal: &str) -> crate::Result<usize> {
    use crate::store::PolicyChange;
    let mut changes = Vec::with_capacity(plan.len());
    if let Some((_, new)) = plan.block_changed_tools {
        changes.push(PolicyChange::CatalogSettings(CatalogSettings {
            block_changed_tools: new,
        }));
    }
    for c in &plan.rules {
        changes.push(match &c.after {
            Some(rules) => PolicyChange::PutRules {
                group_id: c.group_id.clone(),
                connector_id: c.connector_id.clone(),
                rules: rules.clone(),
            },
            None => PolicyChange::DeleteRules {
                group_id: c.group_id.clone(),
                connector_id: c.connector_id.clone(),
            },
        });
    }
    for r in &plan.risks {
        changes.push(PolicyChange::SetRisk {
            connector_id: r.connector_id.clone(),
            tool: r.tool.clone(),
            risk: r.after,
        });
    }
    if changes.is_empty() {
        return Ok(0);
    }
    let levels = store.apply_policy_changes(&changes).await?;

    let event = |kind: &str, before, after| NewAuditEvent {
        client_name: Some("toolgate policy apply".into()),
        ..NewAuditEvent::change(
            store.clock().now(),
            kind,
            principal,
            "system",
            before,
            after,
        )
    };
    let mut events = Vec::with_capacity(changes.len());
    if let Some((old, new)) = plan.block_changed_tools {
        events.push(event(
            "admin.settings.catalog",
            serde_json::to_value(CatalogSettings {
                block_changed_tools: old,
            })
            .ok(),
            serde_json::to_value(CatalogSettings {
                block_changed_tools: new,
            })
            .ok(),
        ));
    }
    for c in &plan.rules {
        let before = c.before.as_ref().map(|b| rule_view(c, b));
        events.push(match &c.after {
            Some(rules) => event("admin.policy.put", before, Some(rule_view(c, rules))),
            None => event("admin.policy.delete", before, None),
        });
    }
    for (r, (level, overridden)) in plan.risks.iter().zip(&levels) {
        events.push(event(
            "admin.catalog.risk",
            Some(risk_view(r, r.current, r.before.is_some())),
            Some(risk_view(r, *level, *overridden)),
        ));
    }
    let done = changes.len();
    // Running servers rebuild their snapshot (PostgreSQL NOTIFY; a marker they poll on SQLite).
    store.announce_change(principal).await?;
    store.insert_audit_batch(&events).await.map_err(|e| {
        crate::Error::Internal(format!(
            "all {done} changes were made but could not be audited: {e}"
        ))
    })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PolicyState {
        let row = |g: &str, c: &str, rules: ToolRules| PolicyRow {
            group_id: g.into(),
            connector_id: c.into(),
            rules,
        };
        let tool = |c: &str, t: &str, risk: Risk, overridden: bool| ToolRisk {
            connector_id: c.into(),
            tool: t.into(),
            risk,
            overridden,
        };
        PolicyState {
            groups: vec![
                ("g1".into(), "Senior Engineers".into()),
                ("g2".into(), "Sales".into()),
                ("g3".into(), "Contractors".into()),
            ],
            connectors: vec![
                ("c1".into(), "github".into()),
                ("c2".into(), "salesforce".into()),
            ],
            rules: vec![
                row(
                    "g1",
                    "c1",
                    ToolRules {
                        allow: vec!["get_*".into(), "create_pull_request".into()],
                        block: vec!["delete_*".into()],
                        allow_risk: Some(Risk::Normal),
                        block_risk: Some(Risk::High),
                        resources: vec!["repo://*".into()],
                        prompts: vec!["review".into()],
                    },
                ),
                row(
                    "g3",
                    "c1",
                    ToolRules::names(vec!["get_file".into()], vec![]),
                ),
                row("g2", "c2", ToolRules::default()),
            ],
            tools: vec![
                tool("c1", "create_webhook", Risk::High, true),
                tool("c1", "get_file", Risk::Low, false),
                tool("c1", "delete_repo", Risk::High, false),
                tool("c2", "export_leads", Risk::Infrastructure, true),
            ],
            block_changed_tools: true,
        }
    }

    fn plan_of(text: &str, s: &PolicyState) -> Result<Plan, InvalidFile> {
        plan(&parse(text)?, s)
    }

    #[test]
    fn export_then_apply_is_no_change() {
        let s = state();
        let text = export(&s);
        let p = plan_of(&text, &s).unwrap();
        assert!(p.is_empty(), "{p:?}\n{text}");
        assert!(p.render().contains("No changes"));
        assert_eq!(export(&s), text, "deterministic");
    }

    #[test]
    fn export_is_sorted_and_omits_empty_fields() {
        let text = export(&state());
        assert!(text.starts_with("# Toolgate policy"));
        assert!(
            text.contains("[settings]\nblock_changed_tools = true\n"),
            "{text}"
        );
        let c = text.find("group = \"Contractors\"").unwrap();
        let s = text.find("group = \"Sales\"").unwrap();
        let e = text.find("group = \"Senior Engineers\"").unwrap();
        assert!(c < s && s < e, "{text}");
        // Sales has empty rules: only its names are written.
        let sales = &text[s..e];
        assert!(!sales.contains("allow"), "{sales}");
        assert!(text.contains("allow_risk = \"normal\""), "{text}");
        assert!(text.contains("block_risk = \"high\""), "{text}");
        // Only admin levels are exported, by connector then tool.
        let w = text.find("tool = \"create_webhook\"").unwrap();
        let x = text.find("tool = \"export_leads\"").unwrap();
        assert!(w < x);
        assert!(!text.contains("tool = \"get_file\""), "{text}");
    }

    #[test]
    fn rules_added_changed_and_removed() {
        let s = state();
        let text = r#"
[[rule]]
group = "senior engineers"
connector = "github"
allow = ["get_*", "create_pull_request", "merge_*"]
block = ["delete_*"]
allow_risk = "normal"
resources = ["repo://*"]
prompts = ["review"]

[[rule]]
group = "Sales"
connector = "salesforce"

[[rule]]
group = "Sales"
connector = "github"
allow = ["get_file"]

[[risk]]
connector = "github"
tool = "create_webhook"
level = "high"

[[risk]]
connector = "salesforce"
tool = "export_leads"
level = "infrastructure"
"#;
        let p = plan_of(text, &s).unwrap();
        assert_eq!(p.rules.len(), 3, "{p:?}");
        assert!(p.risks.is_empty() && p.block_changed_tools.is_none());
        let out = p.render();
        assert!(
            out.contains("+ rule \"Sales\" x \"github\": allow [\"get_file\"]"),
            "{out}"
        );
        assert!(
            out.contains("~ rule \"Senior Engineers\" x \"github\":"),
            "{out}"
        );
        assert!(
            out.contains(
                "allow [\"get_*\", \"create_pull_request\"] -> [\"get_*\", \"create_pull_request\", \"merge_*\"]"
            ),
            "{out}"
        );
        assert!(out.contains("block_risk high -> (none)"), "{out}");
        assert!(
            !out.contains("block ["),
            "unchanged fields are not shown: {out}"
        );
        assert!(
            out.contains("- rule \"Contractors\" x \"github\" (was: allow [\"get_file\"])"),
            "{out}"
        );
        assert!(
            out.contains("Plan: 1 rule to add, 1 to change, 1 to remove; 0 risk levels to set, 0 to clear; 0 settings to change."),
            "{out}"
        );
        let changed = p
            .rules
            .iter()
            .find(|c| c.group == "Senior Engineers")
            .unwrap();
        assert_eq!(changed.after.as_ref().unwrap().block_risk, None);
        assert_eq!(
            changed.before.as_ref().unwrap().block_risk,
            Some(Risk::High)
        );
    }

    #[test]
    fn risk_levels_set_changed_and_cleared_and_settings() {
        let s = state();
        let mut text = export(&s);
        text = text.replace("block_changed_tools = true", "block_changed_tools = false");
        text = text.replace("level = \"infrastructure\"", "level = \"consequential\"");
        text = text.replace(
            "[[risk]]\nconnector = \"github\"\ntool = \"create_webhook\"\nlevel = \"high\"\n",
            "[[risk]]\nconnector = \"github\"\ntool = \"get_file\"\nlevel = \"Normal\"\n",
        );
        let p = plan_of(&text, &s).unwrap();
        assert!(p.rules.is_empty(), "{p:?}");
        assert_eq!(p.block_changed_tools, Some((true, false)));
        let out = p.render();
        assert!(
            out.contains("~ setting block_changed_tools: true -> false"),
            "{out}"
        );
        assert!(
            out.contains(
                "- risk \"github\" tool \"create_webhook\": high (back to the suggested level)"
            ),
            "{out}"
        );
        assert!(
            out.contains("+ risk \"github\" tool \"get_file\": normal (suggested level low)"),
            "{out}"
        );
        assert!(
            out.contains(
                "~ risk \"salesforce\" tool \"export_leads\": infrastructure -> consequential"
            ),
            "{out}"
        );
        assert_eq!(p.len(), 4);
        assert!(
            out.contains("2 risk levels to set, 1 to clear; 1 setting to change."),
            "{out}"
        );
    }

    #[test]
    fn a_file_without_settings_leaves_them() {
        let s = state();
        let text = export(&s).replace("[settings]\nblock_changed_tools = true\n", "");
        assert!(!text.lines().any(|l| l == "[settings]"), "{text}");
        assert!(plan_of(&text, &s).unwrap().is_empty());
    }

    #[test]
    fn an_empty_file_removes_every_rule_and_level() {
        let s = state();
        let p = plan_of("", &s).unwrap();
        assert_eq!(p.rules.len(), 3);
        assert!(p.rules.iter().all(|c| c.after.is_none()));
        assert_eq!(p.risks.len(), 2);
        assert!(p.risks.iter().all(|r| r.after.is_none()));
    }

    #[test]
    fn unknown_names_are_named_with_their_lines() {
        let s = state();
        let text = "[[rule]]\ngroup = \"Marketing\"\nconnector = \"github\"\n\n[[rule]]\ngroup = \"Sales\"\nconnector = \"jira\"\n\n[[risk]]\nconnector = \"github\"\ntool = \"nope\"\nlevel = \"low\"\n";
        let err = plan_of(text, &s).unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "line 1: unknown group \"Marketing\"".to_string(),
                "line 5: unknown connector \"jira\"".to_string(),
                "line 9: connector \"github\" has no tool \"nope\" in its catalog".to_string(),
            ]
        );
    }

    #[test]
    fn invalid_patterns_and_duplicates_are_refused() {
        let s = state();
        let text = "[[rule]]\ngroup = \"Sales\"\nconnector = \"github\"\nallow = [\"get file\"]\n\n[[rule]]\ngroup = \"Contractors\"\nconnector = \"github\"\n\n[[rule]]\ngroup = \"contractors\"\nconnector = \"github\"\n";
        let err = plan_of(text, &s).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.problems[0]
                .starts_with("line 1: rule \"Sales\" x \"github\": allow: pattern \"get file\""),
            "{err}"
        );
        assert!(
            err.problems[1].contains("line 10: a second rule for group \"Contractors\" on connector \"github\" (the first is at line 6)"),
            "{err}"
        );
    }

    #[test]
    fn syntax_unknown_fields_and_levels_carry_lines() {
        let e = parse("[[rule]]\ngroup = \"Sales\"\nconnector = \"github\"\nalow = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4") && e.contains("unknown field `alow`"),
            "{e}"
        );
        let e =
            parse("[[rule]]\ngroup = \"Sales\"\nconnector = \"github\"\nblock_risk = \"severe\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("line 4") && e.contains("unknown risk level \"severe\""),
            "{e}"
        );
        let e = parse("[[rule]\ngroup = 1\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("[[rule]]\nconnector = \"github\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `group`"), "{e}");
        let e = parse("[setings]\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `setings`"), "{e}");
    }

    // ---- fuzz targets (`make fuzz`) -----------------------------------------------------------

    use crate::fuzz::{config, mutate_text, short_hostile_string};
    use proptest::prelude::*;

    /// Pieces that make a policy file almost right.
    const POLICY_TOKENS: &[&str] = &[
        "",
        "\n",
        "[[rule]]\n",
        "[[risk]]\n",
        "[settings]\n",
        "[rule]\n",
        "=",
        "\"",
        "'",
        "[",
        "]",
        ",",
        "#",
        "\\",
        "\\u0000",
        "group = \"Sales\"\n",
        "connector = \"github\"\n",
        "allow = [\"a b\"]\n",
        "level = \"severe\"\n",
        "block_risk = 3\n",
        "block_changed_tools = \"yes\"\n",
        "tool = \"get_file\"\n",
        "nope = 1\n",
        "\u{feff}",
        "\u{0}",
    ];

    /// A parse or plan failure names at least one problem, none of them blank.
    fn check_problems(e: &InvalidFile) -> Result<(), TestCaseError> {
        prop_assert!(!e.problems.is_empty());
        for p in &e.problems {
            prop_assert!(!p.trim().is_empty(), "blank problem in {:?}", e.problems);
        }
        prop_assert!(!e.to_string().is_empty());
        Ok(())
    }

    /// Parses `text`, plans it against `state` and renders the plan: errors are well-formed and
    /// nothing panics.
    fn parse_and_plan(text: &str, s: &PolicyState) -> Result<(), TestCaseError> {
        match parse(text) {
            Err(e) => check_problems(&e)?,
            Ok(file) => match plan(&file, s) {
                Err(e) => {
                    check_problems(&e)?;
                    for p in &e.problems {
                        prop_assert!(p.starts_with("line "), "{p}");
                    }
                }
                Ok(p) => {
                    let out = p.render();
                    prop_assert!(out.ends_with('\n'));
                    prop_assert!(p.is_empty() || out.contains(&p.summary()), "{out}");
                }
            },
        }
        Ok(())
    }

    /// Valid tool-name patterns (a list without duplicates, as the database keeps it).
    fn patterns() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-zA-Z0-9_.*-]{1,12}", 0..4)
            .prop_map(|s| s.into_iter().collect())
    }

    fn risk() -> impl Strategy<Value = Risk> {
        prop::sample::select(Risk::ALL.to_vec())
    }

    fn tool_rules() -> impl Strategy<Value = ToolRules> {
        (
            patterns(),
            patterns(),
            prop::option::of(risk()),
            prop::option::of(risk()),
            prop::collection::btree_set("[!-~]{1,20}", 0..3),
            patterns(),
        )
            .prop_map(
                |(allow, block, allow_risk, block_risk, resources, prompts)| ToolRules {
                    allow,
                    block,
                    allow_risk,
                    block_risk,
                    resources: resources.into_iter().collect(),
                    prompts,
                },
            )
    }

    /// A database state whose group, connector and tool names are hostile text (control
    /// characters, quotes, odd Unicode, names equal but for case).
    fn hostile_state() -> impl Strategy<Value = PolicyState> {
        let names = |max| {
            prop::collection::btree_set(short_hostile_string(), 1..max)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>())
        };
        (names(5), names(4), any::<bool>())
            .prop_flat_map(|(groups, connectors, block_changed_tools)| {
                let (ng, nc) = (groups.len(), connectors.len());
                let rules = prop::collection::btree_map((0..ng, 0..nc), tool_rules(), 0..6);
                let tools = prop::collection::btree_map(
                    (0..nc, short_hostile_string()),
                    (risk(), any::<bool>()),
                    0..6,
                );
                (
                    Just(groups),
                    Just(connectors),
                    rules,
                    tools,
                    Just(block_changed_tools),
                )
            })
            .prop_map(
                |(groups, connectors, rules, tools, block_changed_tools)| PolicyState {
                    groups: groups
                        .into_iter()
                        .enumerate()
                        .map(|(i, n)| (format!("g{i}"), n))
                        .collect(),
                    connectors: connectors
                        .into_iter()
                        .enumerate()
                        .map(|(i, n)| (format!("c{i}"), n))
                        .collect(),
                    rules: rules
                        .into_iter()
                        .map(|((g, c), rules)| PolicyRow {
                            group_id: format!("g{g}"),
                            connector_id: format!("c{c}"),
                            rules,
                        })
                        .collect(),
                    tools: tools
                        .into_iter()
                        .map(|((c, tool), (risk, overridden))| ToolRisk {
                            connector_id: format!("c{c}"),
                            tool,
                            risk,
                            overridden,
                        })
                        .collect(),
                    block_changed_tools,
                },
            )
    }

    proptest! {
        #![proptest_config(config(300))]

        #[test]
        fn fuzz_policy_file_any_text(text in prop_oneof![any::<String>(), crate::fuzz::hostile_string()]) {
            parse_and_plan(&text, &state())?;
        }

        #[test]
        fn fuzz_policy_file_near_misses(
            text in (1..4usize).prop_flat_map(|n| {
                // One to three mutations of a real export.
                let mut s = mutate_text(export(&state()), POLICY_TOKENS).boxed();
                for _ in 1..n {
                    s = s.prop_flat_map(|t| mutate_text(t, POLICY_TOKENS)).boxed();
                }
                s
            })
        ) {
            parse_and_plan(&text, &state())?;
        }

        #[test]
        fn fuzz_policy_file_export_round_trips(s in hostile_state()) {
            // Whatever the names, the export reads back as exactly the database's policy.
            let text = export(&s);
            prop_assert!(!text.contains("# export failed"), "{text}");
            let file = match parse(&text) {
                Ok(f) => f,
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
            };
            prop_assert_eq!(file.rules.len(), s.rules.len());
            let p = match plan(&file, &s) {
                Ok(p) => p,
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
            };
            prop_assert!(p.is_empty(), "{}\n{}", p.render(), text);
            prop_assert_eq!(export(&s), text);
        }
    }
}
