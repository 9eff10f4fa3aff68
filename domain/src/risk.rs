//! Risk levels of tools, and the suggestion made for a newly discovered tool from its MCP
//! annotations and its name. The suggestion names its reason; an admin can override it.

use serde::{Deserialize, Serialize};

/// How much harm a tool can do, lowest first. Policy rules compare against this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reads only; nothing changes anywhere.
    Low,
    /// Ordinary writes that are easy to undo.
    Normal,
    /// Changes others see or that leave the company: pushes, merges, messages, exports.
    Consequential,
    /// Destroys data or touches secrets and credentials.
    High,
    /// Runs code, changes infrastructure or permissions.
    Infrastructure,
}

impl Risk {
    pub const ALL: [Risk; 5] = [
        Risk::Low,
        Risk::Normal,
        Risk::Consequential,
        Risk::High,
        Risk::Infrastructure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Normal => "normal",
            Risk::Consequential => "consequential",
            Risk::High => "high",
            Risk::Infrastructure => "infrastructure",
        }
    }

    /// Parses `low`, `Normal`, `CONSEQUENTIAL`...: case does not matter.
    pub fn parse(s: &str) -> Option<Self> {
        Risk::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The level as people write it: `Low`, `Normal`...
    pub fn label(self) -> &'static str {
        match self {
            Risk::Low => "Low",
            Risk::Normal => "Normal",
            Risk::Consequential => "Consequential",
            Risk::High => "High",
            Risk::Infrastructure => "Infrastructure",
        }
    }
}

impl std::fmt::Display for Risk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The MCP tool annotations the suggestion reads (all hints are optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ToolHints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// Name words by the level they suggest, highest first; a word matches a whole part of the
/// name split at `_`, `-`, `.` and case changes (`deleteBranch` -> `delete`, `branch`).
const NAME_WORDS: &[(Risk, &[&str])] = &[
    (
        Risk::Infrastructure,
        &[
            "exec",
            "execute",
            "shell",
            "command",
            "terraform",
            "kubectl",
            "deploy",
            "provision",
            "iam",
            "permission",
            "permissions",
            "role",
            "roles",
            "sudo",
            "admin",
            "infrastructure",
            "cluster",
        ],
    ),
    (
        Risk::High,
        &[
            "delete",
            "drop",
            "destroy",
            "remove",
            "purge",
            "truncate",
            "wipe",
            "erase",
            "secret",
            "secrets",
            "credential",
            "credentials",
            "password",
            "token",
            "tokens",
            "key",
            "keys",
            "force",
            "revoke",
            "env",
            "environment",
        ],
    ),
    (
        Risk::Consequential,
        &[
            "push", "merge", "publish", "release", "send", "email", "post", "webhook", "webhooks",
            "export", "bulk", "transfer", "pay", "payment", "invite", "share", "approve",
        ],
    ),
    (
        Risk::Normal,
        &[
            "create", "update", "write", "edit", "set", "add", "put", "patch", "upload", "move",
            "rename", "comment", "assign", "close", "open",
        ],
    ),
    (
        Risk::Low,
        &[
            "get", "list", "read", "search", "find", "query", "describe", "show", "fetch", "view",
            "count", "echo", "ping", "status",
        ],
    ),
];

/// Splits a tool name into lower-case words.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        cur.push(ch.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The highest level a name word suggests, with the word.
fn from_name(name: &str) -> Option<(Risk, String)> {
    let words = words(name);
    NAME_WORDS.iter().find_map(|(risk, list)| {
        words
            .iter()
            .find(|w| list.contains(&w.as_str()))
            .map(|w| (*risk, w.clone()))
    })
}

/// Suggests a level for a tool, with the reason in words. Rules, strongest first:
/// a name word of level High or Infrastructure sets that level whatever the hints say (a server
/// cannot talk a `delete_*` tool down); `destructiveHint: true` means at least High;
/// `readOnlyHint: true` means Low unless the name says more; otherwise the name decides, an
/// `openWorldHint` raises Low to Normal, and a tool with no clue at all is Normal.
pub fn suggest(name: &str, hints: &ToolHints) -> (Risk, String) {
    let by_name = from_name(name);
    if let Some((r, w)) = &by_name
        && *r >= Risk::High
    {
        return (*r, format!("name contains \"{w}\""));
    }
    if hints.destructive_hint == Some(true) && hints.read_only_hint != Some(true) {
        return (Risk::High, "annotation destructiveHint".into());
    }
    if hints.read_only_hint == Some(true) {
        return match by_name {
            Some((r, w)) if r > Risk::Low => (r, format!("name contains \"{w}\"")),
            _ => (Risk::Low, "annotation readOnlyHint".into()),
        };
    }
    match by_name {
        Some((Risk::Low, w)) if hints.open_world_hint == Some(true) => (
            Risk::Normal,
            format!("name contains \"{w}\" but annotation openWorldHint"),
        ),
        Some((r, w)) => (r, format!("name contains \"{w}\"")),
        None if hints.open_world_hint == Some(true) => {
            (Risk::Normal, "annotation openWorldHint".into())
        }
        None => (
            Risk::Normal,
            "no annotation or name pattern (default)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(ro: Option<bool>, destructive: Option<bool>, open: Option<bool>) -> ToolHints {
        ToolHints {
            read_only_hint: ro,
            destructive_hint: destructive,
            idempotent_hint: None,
            open_world_hint: open,
        }
    }

    #[test]
    fn order_and_parsing() {
        assert!(Risk::Low < Risk::Normal && Risk::High < Risk::Infrastructure);
        assert_eq!(Risk::parse("Consequential"), Some(Risk::Consequential));
        assert_eq!(Risk::parse(" HIGH "), Some(Risk::High));
        assert_eq!(Risk::parse("severe"), None);
        for r in Risk::ALL {
            assert_eq!(Risk::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    #[test]
    fn words_split_snake_kebab_and_camel() {
        assert_eq!(words("deleteBranch"), ["delete", "branch"]);
        assert_eq!(
            words("get_repository-secrets.v2"),
            ["get", "repository", "secrets", "v2"]
        );
        assert_eq!(words("HTTPGet"), ["httpget"]);
    }

    #[test]
    fn suggestions_table() {
        let none = ToolHints::default();
        let cases: &[(&str, ToolHints, Risk, &str)] = &[
            ("get_file", none.clone(), Risk::Low, "\"get\""),
            ("echo", none.clone(), Risk::Low, "\"echo\""),
            (
                "create_pull_request",
                none.clone(),
                Risk::Normal,
                "\"create\"",
            ),
            (
                "push_to_branch",
                none.clone(),
                Risk::Consequential,
                "\"push\"",
            ),
            (
                "bulk_export_records",
                none.clone(),
                Risk::Consequential,
                "\"bulk\"",
            ),
            ("delete_branch", none.clone(), Risk::High, "\"delete\""),
            (
                "get_repository_secrets",
                none.clone(),
                Risk::High,
                "\"secrets\"",
            ),
            ("get-env", none.clone(), Risk::High, "\"env\""),
            (
                "create_webhook",
                none.clone(),
                Risk::Consequential,
                "\"webhook\"",
            ),
            (
                "run_shell_command",
                none.clone(),
                Risk::Infrastructure,
                "\"shell\"",
            ),
            ("frobnicate", none.clone(), Risk::Normal, "default"),
            // Hints
            (
                "frobnicate",
                hints(Some(true), None, None),
                Risk::Low,
                "readOnlyHint",
            ),
            (
                "frobnicate",
                hints(None, Some(true), None),
                Risk::High,
                "destructiveHint",
            ),
            (
                "frobnicate",
                hints(None, None, Some(true)),
                Risk::Normal,
                "openWorldHint",
            ),
            (
                "search_web",
                hints(None, None, Some(true)),
                Risk::Normal,
                "openWorldHint",
            ),
            // A read-only hint does not talk a dangerous name down.
            (
                "delete_all",
                hints(Some(true), None, None),
                Risk::High,
                "\"delete\"",
            ),
            (
                "export_csv",
                hints(Some(true), None, None),
                Risk::Consequential,
                "\"export\"",
            ),
            // Nor does destructiveHint: false.
            (
                "drop_table",
                hints(None, Some(false), None),
                Risk::High,
                "\"drop\"",
            ),
            ("deleteBranch", none.clone(), Risk::High, "\"delete\""),
        ];
        for (name, h, want, reason) in cases {
            let (got, why) = suggest(name, h);
            assert_eq!(got, *want, "{name} {h:?}: {why}");
            assert!(
                why.contains(reason),
                "{name}: reason {why:?} lacks {reason:?}"
            );
        }
    }
}
