//! The policy engine: which tools a caller may use, decided from the rules of the caller's groups.
//! Default deny; a block in any of the caller's groups beats an allow in any other; every
//! decision carries the rule that made it, in words, for the audit log and the dashboard.

use serde::{Deserialize, Serialize};

/// Most patterns one allow or block list may hold.
pub const MAX_PATTERNS: usize = 512;

/// One group's rules on one connector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRules {
    pub allow: Vec<String>,
    pub block: Vec<String>,
}

impl ToolRules {
    /// Validates and normalises (trims, de-duplicates, keeps order) both lists.
    pub fn normalized(allow: Vec<String>, block: Vec<String>) -> Result<Self, String> {
        Ok(ToolRules {
            allow: normalize_list("allow", allow)?,
            block: normalize_list("block", block)?,
        })
    }
}

fn normalize_list(field: &str, list: Vec<String>) -> Result<Vec<String>, String> {
    if list.len() > MAX_PATTERNS {
        return Err(format!("{field} may hold at most {MAX_PATTERNS} patterns"));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for p in list {
        let p = p.trim().to_string();
        validate_pattern(&p).map_err(|e| format!("{field}: {e}"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
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

/// Decides whether `tool` on `connector` is allowed, given `(group name, rules on this connector)`
/// for every group of the caller. Blocks are looked at first: one block anywhere wins.
pub fn decide<'a, I>(grants: I, connector: &str, tool: &str) -> Verdict
where
    I: IntoIterator<Item = (&'a str, &'a ToolRules)> + Clone,
{
    for (group, rules) in grants.clone() {
        if let Some(p) = rules.block.iter().find(|p| pattern_matches(p, tool)) {
            return Verdict::Deny {
                rule: format!(
                    "blocked by group \"{group}\" rule \"{p}\" on connector \"{connector}\""
                ),
            };
        }
    }
    for (group, rules) in grants {
        if let Some(p) = rules.allow.iter().find(|p| pattern_matches(p, tool)) {
            return Verdict::Allow {
                rule: format!(
                    "allowed by group \"{group}\" rule \"{p}\" on connector \"{connector}\""
                ),
            };
        }
    }
    Verdict::Deny {
        rule: format!(
            "no rule of the caller's groups allows \"{tool}\" on connector \"{connector}\" (default deny)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], block: &[&str]) -> ToolRules {
        ToolRules {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            block: block.iter().map(|s| s.to_string()).collect(),
        }
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
    }

    #[test]
    fn default_deny_without_rules() {
        let none: Vec<(&str, &ToolRules)> = vec![];
        let v = decide(none, "github", "create_pr");
        assert!(!v.is_allowed());
        assert!(v.rule().contains("default deny"), "{}", v.rule());
    }

    #[test]
    fn allow_names_the_rule() {
        let r = rules(&["create_*"], &[]);
        let v = decide([("Engineers", &r)], "github", "create_pr");
        assert_eq!(
            v,
            Verdict::Allow {
                rule: "allowed by group \"Engineers\" rule \"create_*\" on connector \"github\""
                    .into()
            }
        );
        assert!(!decide([("Engineers", &r)], "github", "delete_branch").is_allowed());
    }

    #[test]
    fn block_beats_allow_within_and_across_groups() {
        let same = rules(&["*"], &["delete_*"]);
        assert!(!decide([("G", &same)], "gh", "delete_branch").is_allowed());
        assert!(decide([("G", &same)], "gh", "read_file").is_allowed());

        let allow_all = rules(&["*"], &[]);
        let block_one = rules(&[], &["push"]);
        let v = decide([("A", &allow_all), ("B", &block_one)], "gh", "push");
        assert!(!v.is_allowed());
        assert!(v.rule().contains("group \"B\""), "{}", v.rule());
        // Order of groups does not matter.
        assert!(!decide([("B", &block_one), ("A", &allow_all)], "gh", "push").is_allowed());
    }

    #[test]
    fn normalisation_validates_and_dedupes() {
        let r = ToolRules::normalized(vec![" echo ".into(), "echo".into(), "get_*".into()], vec![])
            .unwrap();
        assert_eq!(r.allow, vec!["echo", "get_*"]);
        assert!(ToolRules::normalized(vec!["bad name".into()], vec![]).is_err());
        assert!(ToolRules::normalized(vec![], vec!["".into()]).is_err());
        assert!(ToolRules::normalized(vec!["x".into(); MAX_PATTERNS + 1], vec![]).is_err());
    }
}
