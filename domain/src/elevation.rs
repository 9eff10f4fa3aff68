//! Just-in-time elevation and per-call approval: elevation profiles (which tools they unlock, who
//! may ask, who decides, for how long), elevation requests and their states, calls waiting for an
//! approver's yes, and the rules every path applies alike (validation, duration clamp,
//! separation of duties). Shared by the store, the proxy, the admin API and the dashboard.

use crate::policy::{ToolRules, validate_pattern};
use crate::risk::Risk;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest elevation a profile may grant: one week, in minutes.
pub const MAX_PROFILE_MINUTES: u32 = 7 * 24 * 60;
/// A request nobody decided is cancelled after this long.
pub const PENDING_TTL_MS: i64 = 24 * 3_600_000;
/// Default lifetime of a per-call approval (pending, then approved), in minutes.
pub const DEFAULT_APPROVAL_TTL_MINUTES: u32 = 15;
/// Most targets (connectors) in one profile, and groups in its eligible list.
pub const MAX_TARGETS: usize = 100;
/// Longest justification, ticket reference and decision comment (characters).
pub const MAX_JUSTIFICATION: usize = 2000;
pub const MAX_TICKET: usize = 128;
pub const MAX_COMMENT: usize = 1000;
/// The gateway's own tool agents may call to ask for an elevation on the person's behalf.
pub const REQUEST_TOOL: &str = "toolgate__request_elevation";

/// What a profile unlocks on one connector: tools by name or glob, and/or every tool up to a
/// risk level. Blocks of the caller's groups still win: an elevation is an extra allow, never an
/// override of a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProfileTarget {
    /// Connector name.
    pub connector: String,
    /// Tool names or globs (`get_*`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Every tool whose risk is at most this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_risk: Option<Risk>,
}

impl ProfileTarget {
    /// The target as policy rules (allows only).
    pub fn rules(&self) -> ToolRules {
        ToolRules {
            allow: self.tools.clone(),
            allow_risk: self.max_risk,
            ..ToolRules::default()
        }
    }
}

/// An elevation profile as admins define it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ElevationProfile {
    pub id: String,
    pub name: String,
    pub description: String,
    pub targets: Vec<ProfileTarget>,
    /// Group ids whose members (people and service principals) may request it.
    pub eligible_groups: Vec<String>,
    /// Group id whose members decide requests.
    pub approver_group: String,
    /// Longest elevation granted, in minutes.
    pub max_minutes: u32,
    pub justification_required: bool,
    pub ticket_required: bool,
    /// Requests are granted without an approver (still audited and notified).
    pub auto_approve: bool,
    /// The requester may ask for less than `max_minutes`; otherwise every grant lasts the maximum.
    pub requester_sets_duration: bool,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A profile to create or to replace one with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProfileInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub targets: Vec<ProfileTarget>,
    pub eligible_groups: Vec<String>,
    pub approver_group: String,
    pub max_minutes: u32,
    #[serde(default = "yes")]
    pub justification_required: bool,
    #[serde(default)]
    pub ticket_required: bool,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default = "yes")]
    pub requester_sets_duration: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn printable(field: &str, value: &str, max: usize, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{field} is required"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

impl ProfileInput {
    /// Checks every field and normalises lists (trimmed, duplicates removed, order kept). Group
    /// and connector existence is the store's to check.
    pub fn validated(mut self) -> Result<Self, String> {
        self.name = self.name.trim().to_string();
        printable("name", &self.name, 128, true)?;
        printable("description", &self.description, 1024, false)?;
        if self.targets.is_empty() {
            return Err("targets: name at least one connector and what it unlocks there".into());
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(format!("targets: at most {MAX_TARGETS}"));
        }
        let mut seen: Vec<String> = Vec::new();
        for t in &mut self.targets {
            t.connector = t.connector.trim().to_string();
            if t.connector.is_empty() {
                return Err("targets: every target names a connector".into());
            }
            if seen.contains(&t.connector) {
                return Err(format!(
                    "targets: connector \"{}\" is named twice; put its tools in one target",
                    t.connector
                ));
            }
            seen.push(t.connector.clone());
            let rules = ToolRules {
                allow: std::mem::take(&mut t.tools),
                ..ToolRules::default()
            }
            .validated()
            .map_err(|e| format!("targets ({}): {e}", t.connector))?;
            t.tools = rules.allow;
            if t.tools.is_empty() && t.max_risk.is_none() {
                return Err(format!(
                    "targets ({}): name tools or a risk level to unlock",
                    t.connector
                ));
            }
            for p in &t.tools {
                validate_pattern(p).map_err(|e| format!("targets ({}): {e}", t.connector))?;
            }
        }
        let mut groups: Vec<String> = Vec::new();
        for g in std::mem::take(&mut self.eligible_groups) {
            let g = g.trim().to_string();
            if !g.is_empty() && !groups.contains(&g) {
                groups.push(g);
            }
        }
        if groups.is_empty() {
            return Err("eligible_groups: name at least one group whose members may ask".into());
        }
        if groups.len() > MAX_TARGETS {
            return Err(format!("eligible_groups: at most {MAX_TARGETS}"));
        }
        self.eligible_groups = groups;
        self.approver_group = self.approver_group.trim().to_string();
        if self.approver_group.is_empty() {
            return Err("approver_group is required".into());
        }
        if self.max_minutes == 0 || self.max_minutes > MAX_PROFILE_MINUTES {
            return Err(format!(
                "max_minutes must be 1-{MAX_PROFILE_MINUTES} (one week)"
            ));
        }
        Ok(self)
    }
}

/// Where an elevation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ElevationStatus {
    /// Waiting for an approver.
    Pending,
    /// Approved and in force until `expires_at`.
    Active,
    Denied,
    /// Ended early by an approver or admin.
    Revoked,
    /// Ended early by the requester.
    Ended,
    /// Withdrawn, its profile deleted, or not decided in time.
    Cancelled,
    /// Ran its course.
    Expired,
}

impl ElevationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
            Self::Ended => "ended",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "denied" => Self::Denied,
            "revoked" => Self::Revoked,
            "ended" => Self::Ended,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// One elevation request and, once approved, the elevation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Elevation {
    pub id: String,
    pub profile_id: String,
    pub profile_name: String,
    /// `person` or `service_principal`.
    pub subject_kind: String,
    /// The person's user id or the service principal's id.
    pub subject_id: String,
    pub subject_name: String,
    /// Who asked (the person; for a service principal, the human who asked for it).
    pub requested_by: String,
    pub requested_by_name: String,
    /// `dashboard`, `agent` or `api`.
    pub source: String,
    pub justification: String,
    pub ticket: Option<String>,
    /// Duration granted (or asked for, while pending).
    pub minutes: u32,
    /// As stored; see `status_at` for what holds at a given time.
    pub status: ElevationStatus,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_by_name: Option<String>,
    pub comment: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by_name: Option<String>,
}

impl Elevation {
    /// The status at `now`: an active elevation past its expiry is expired, a pending request
    /// past `PENDING_TTL_MS` is cancelled, whatever the bookkeeping says.
    pub fn status_at(&self, now: DateTime<Utc>) -> ElevationStatus {
        match self.status {
            ElevationStatus::Active if self.expires_at.is_none_or(|at| at <= now) => {
                ElevationStatus::Expired
            }
            ElevationStatus::Pending
                if (now - self.created_at).num_milliseconds() >= PENDING_TTL_MS =>
            {
                ElevationStatus::Cancelled
            }
            s => s,
        }
    }

    /// Whole seconds left at `now` while active.
    pub fn remaining_secs(&self, now: DateTime<Utc>) -> Option<i64> {
        if self.status_at(now) != ElevationStatus::Active {
            return None;
        }
        self.expires_at.map(|at| (at - now).num_seconds().max(0))
    }
}

/// What a requester sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ElevationAsk {
    /// Profile id or name.
    pub profile: String,
    #[serde(default)]
    pub justification: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Shorter than the profile's maximum, when the profile lets the requester choose; `None`:
    /// the maximum.
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// The duration granted for a request: the profile's maximum unless the requester may choose
/// and asked for less. Zero is refused; more than the maximum is clamped to it.
pub fn granted_minutes(profile: &ElevationProfile, asked: Option<u32>) -> Result<u32, String> {
    match asked {
        Some(0) => Err("minutes must be at least 1".into()),
        Some(m) if profile.requester_sets_duration => Ok(m.min(profile.max_minutes)),
        _ => Ok(profile.max_minutes),
    }
}

/// Checks a request's text against the profile: justification and ticket when required, and
/// their lengths. Returns them trimmed.
pub fn check_ask(
    profile: &ElevationProfile,
    ask: &ElevationAsk,
) -> Result<(String, Option<String>), String> {
    let justification = ask.justification.trim().to_string();
    printable(
        "justification",
        &justification,
        MAX_JUSTIFICATION,
        profile.justification_required,
    )?;
    let ticket = ask
        .ticket
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if profile.ticket_required && ticket.is_none() {
        return Err("ticket is required by this profile".into());
    }
    if let Some(t) = &ticket {
        printable("ticket", t, MAX_TICKET, true)?;
    }
    Ok((justification, ticket))
}

/// Who may decide a request: a member of the approver group who neither asked nor would be
/// elevated. `decider_groups` are the decider's group ids.
pub fn check_decider(
    approver_group: &str,
    subject_id: &str,
    requested_by: &str,
    decider_id: &str,
    decider_groups: &[String],
) -> Result<(), String> {
    if decider_id == subject_id || decider_id == requested_by {
        return Err("nobody approves their own request".into());
    }
    if !decider_groups.iter().any(|g| g == approver_group) {
        return Err("only members of this request's approver group may decide it".into());
    }
    Ok(())
}

/// A decision comment: optional, bounded, printable.
pub fn check_comment(comment: Option<&str>) -> Result<Option<String>, String> {
    let c = comment.map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = c {
        printable("comment", c, MAX_COMMENT, false)?;
    }
    Ok(c.map(str::to_string))
}

/// Where a per-call approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    /// Approved and not used yet: the next identical call runs.
    Approved,
    Denied,
    /// The approved call ran.
    Used,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "used" => Self::Used,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// One call waiting for (or given) an approver's yes: bound to the caller, the tool and the
/// SHA-256 of the arguments, single-use, until `expires_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallApproval {
    pub id: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub subject_name: String,
    pub client_name: Option<String>,
    pub connector: String,
    pub tool: String,
    pub args_hash: String,
    /// The arguments after DLP redaction, as JSON text.
    pub args_redacted: Option<String>,
    pub approver_group: String,
    pub status: ApprovalStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_by_name: Option<String>,
    pub comment: Option<String>,
    pub used_at: Option<DateTime<Utc>>,
}

impl CallApproval {
    /// The status at `now` (pending or approved past the expiry: expired).
    pub fn status_at(&self, now: DateTime<Utc>) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved if self.expires_at <= now => {
                ApprovalStatus::Expired
            }
            s => s,
        }
    }
}

/// How notifications are formatted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"event": ..., "elevation"|"approval": {...}, "text": ..., "link": ...}`.
    #[default]
    Json,
    /// Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// Microsoft Teams incoming webhook: a MessageCard with a link button.
    Teams,
}

/// Elevation and approval settings (the webhook URL itself is a sealed secret setting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ElevationSettings {
    pub webhook_format: WebhookFormat,
    /// How long a per-call approval stays valid (pending, then again once approved), minutes.
    pub approval_ttl_minutes: u32,
    /// Offer `toolgate__request_elevation` to agents of eligible callers.
    pub agent_requests: bool,
}

impl Default for ElevationSettings {
    fn default() -> Self {
        ElevationSettings {
            webhook_format: WebhookFormat::Json,
            approval_ttl_minutes: DEFAULT_APPROVAL_TTL_MINUTES,
            agent_requests: true,
        }
    }
}

impl ElevationSettings {
    pub fn validated(self) -> Result<Self, String> {
        if self.approval_ttl_minutes == 0 || self.approval_ttl_minutes > 24 * 60 {
            return Err("approval_ttl_minutes must be 1-1440".into());
        }
        Ok(self)
    }
}

/// A person's view of their own access: groups, elevations, what they may ask for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MyAccess {
    /// Group display names.
    pub groups: Vec<String>,
    /// Active elevations and pending requests (newest first), then recent history.
    pub elevations: Vec<Elevation>,
    /// Profiles this person may request.
    pub eligible: Vec<ElevationProfile>,
    /// Calls of this person's agents waiting for approval, or recently decided.
    pub approvals: Vec<CallApproval>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProfileInput {
        ProfileInput {
            name: " Secrets ".into(),
            description: String::new(),
            targets: vec![ProfileTarget {
                connector: "github".into(),
                tools: vec![
                    "get_repository_secrets".into(),
                    " get_* ".into(),
                    "get_*".into(),
                ],
                max_risk: None,
            }],
            eligible_groups: vec!["g1".into(), "g1".into(), " ".into()],
            approver_group: "g2".into(),
            max_minutes: 60,
            justification_required: true,
            ticket_required: false,
            auto_approve: false,
            requester_sets_duration: true,
            enabled: true,
        }
    }

    fn profile(max: u32, choose: bool) -> ElevationProfile {
        let i = input().validated().unwrap();
        ElevationProfile {
            id: "p".into(),
            name: i.name,
            description: i.description,
            targets: i.targets,
            eligible_groups: i.eligible_groups,
            approver_group: i.approver_group,
            max_minutes: max,
            justification_required: true,
            ticket_required: true,
            auto_approve: false,
            requester_sets_duration: choose,
            enabled: true,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn profile_input_is_normalised() {
        let v = input().validated().unwrap();
        assert_eq!(v.name, "Secrets");
        assert_eq!(v.targets[0].tools, vec!["get_repository_secrets", "get_*"]);
        assert_eq!(v.eligible_groups, vec!["g1"]);
    }

    #[test]
    fn profile_input_refuses_what_cannot_work() {
        type Case = (fn(&mut ProfileInput), &'static str);
        let cases: Vec<Case> = vec![
            (|i| i.name = " ".into(), "name is required"),
            (|i| i.targets.clear(), "targets"),
            (
                |i| i.targets[0].tools = vec!["bad name".into()],
                "may contain only",
            ),
            (
                |i| {
                    i.targets[0].tools.clear();
                    i.targets[0].max_risk = None;
                },
                "name tools or a risk level",
            ),
            (
                |i| {
                    let t = i.targets[0].clone();
                    i.targets.push(t);
                },
                "named twice",
            ),
            (|i| i.eligible_groups = vec![" ".into()], "eligible_groups"),
            (|i| i.approver_group = String::new(), "approver_group"),
            (|i| i.max_minutes = 0, "max_minutes"),
            (|i| i.max_minutes = MAX_PROFILE_MINUTES + 1, "max_minutes"),
        ];
        for (change, expected) in cases {
            let mut i = input();
            change(&mut i);
            let err = i.validated().unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn duration_is_clamped_to_the_profile_maximum() {
        let p = profile(60, true);
        assert_eq!(granted_minutes(&p, None), Ok(60));
        assert_eq!(granted_minutes(&p, Some(15)), Ok(15));
        assert_eq!(granted_minutes(&p, Some(60)), Ok(60));
        assert_eq!(granted_minutes(&p, Some(61)), Ok(60));
        assert_eq!(granted_minutes(&p, Some(u32::MAX)), Ok(60));
        assert!(granted_minutes(&p, Some(0)).is_err());
        // A profile that does not let the requester choose grants the maximum.
        let fixed = profile(30, false);
        assert_eq!(granted_minutes(&fixed, Some(5)), Ok(30));
    }

    #[test]
    fn justification_and_ticket_follow_the_profile() {
        let p = profile(60, true);
        let ask = |j: &str, t: Option<&str>| ElevationAsk {
            profile: "p".into(),
            justification: j.into(),
            ticket: t.map(str::to_string),
            minutes: None,
        };
        assert!(check_ask(&p, &ask("  ", Some("T-1"))).is_err());
        assert!(check_ask(&p, &ask("rotate keys", None)).is_err());
        assert!(check_ask(&p, &ask("rotate keys", Some("  "))).is_err());
        assert_eq!(
            check_ask(&p, &ask(" rotate keys ", Some(" INC-42 "))),
            Ok(("rotate keys".into(), Some("INC-42".into())))
        );
        assert!(check_ask(&p, &ask(&"x".repeat(MAX_JUSTIFICATION + 1), Some("T"))).is_err());
        assert!(check_ask(&p, &ask("a\u{7}b", Some("T"))).is_err());
    }

    #[test]
    fn separation_of_duties() {
        let groups = vec!["approvers".to_string()];
        // Nobody approves their own request, even from the approver group.
        assert!(check_decider("approvers", "alice", "alice", "alice", &groups).is_err());
        // Nor a request made for a service principal they asked for.
        assert!(check_decider("approvers", "sp1", "alice", "alice", &groups).is_err());
        // Someone outside the approver group may not decide.
        assert!(check_decider("approvers", "alice", "alice", "bob", &["others".into()]).is_err());
        assert!(check_decider("approvers", "alice", "alice", "bob", &groups).is_ok());
    }

    #[test]
    fn status_follows_the_clock() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut e = Elevation {
            id: "e".into(),
            profile_id: "p".into(),
            profile_name: "P".into(),
            subject_kind: "person".into(),
            subject_id: "u".into(),
            subject_name: "u".into(),
            requested_by: "u".into(),
            requested_by_name: "u".into(),
            source: "dashboard".into(),
            justification: String::new(),
            ticket: None,
            minutes: 10,
            status: ElevationStatus::Active,
            created_at: t0,
            decided_at: Some(t0),
            decided_by: None,
            decided_by_name: None,
            comment: None,
            starts_at: Some(t0),
            expires_at: Some(t0 + chrono::Duration::minutes(10)),
            ended_at: None,
            ended_by_name: None,
        };
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        assert_eq!(e.status_at(at(599)), ElevationStatus::Active);
        assert_eq!(e.remaining_secs(at(599)), Some(1));
        // The boundary itself is expired.
        assert_eq!(e.status_at(at(600)), ElevationStatus::Expired);
        assert_eq!(e.remaining_secs(at(600)), None);
        e.status = ElevationStatus::Pending;
        assert_eq!(e.status_at(at(3600)), ElevationStatus::Pending);
        assert_eq!(e.status_at(at(24 * 3600)), ElevationStatus::Cancelled);
    }
}
