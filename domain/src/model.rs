//! Entities as the dashboard, the admin API and the proxy see them. Serializable and free of
//! server-only types so the same structs compile into the hydrated wasm dashboard.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A person, provisioned by an admin (and later by SCIM). Agents act on a user's behalf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub user_name: String,
    pub display_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    /// Where the identity came from: `api` (admin API or dashboard) or `scim`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A group of users; policies are granted to groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// Where the group came from: `api` or `scim` (membership then managed by the IdP).
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A group with its members and per-connector rules, as the Groups page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupDetail {
    pub group: Group,
    pub members: Vec<User>,
    pub policies: Vec<ToolPolicy>,
}

/// How the gateway reaches an upstream MCP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// MCP streamable HTTP (spec 2025-03-26 and later).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (spec 2024-11-05): GET an event stream, POST to its endpoint.
    Sse,
    /// A local command the gateway spawns and supervises, speaking MCP on stdin/stdout.
    Stdio,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::StreamableHttp, Transport::Sse, Transport::Stdio];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Transport::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// OAuth 2.0 client credentials the gateway uses to get tokens for an upstream; the secret is
/// sealed at rest and never returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpstreamOAuth {
    /// The authorization server's token endpoint (https).
    pub token_url: String,
    pub client_id: String,
    /// Space-separated scopes to ask for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8707 resource indicator to send, if the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// An upstream MCP server the gateway holds credentials for. Secret values (headers,
/// environment, OAuth client secret) are encrypted at rest: only their names ever leave the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connector {
    pub id: String,
    pub name: String,
    pub transport: Transport,
    /// The upstream endpoint (HTTP transports); empty for stdio.
    pub url: String,
    /// The program to run (stdio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments (stdio).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Names of the stored headers; the values are encrypted at rest and never returned.
    pub header_names: Vec<String>,
    /// Names of the environment variables given to a stdio command (values sealed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_names: Vec<String>,
    /// OAuth client credentials to the upstream (the secret is never returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<UpstreamOAuth>,
    /// How long one request to the upstream may take, in milliseconds.
    pub timeout_ms: u64,
    /// Most requests in flight to the upstream at once (from this replica).
    pub max_concurrency: u32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Health of a connector as this replica sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorHealth {
    /// `unknown` (not tried yet), `healthy`, `unhealthy` or `disabled`.
    pub status: String,
    /// The last failure, if the connector is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was last checked (ping or call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
    /// Failures in a row.
    pub failures: u32,
}

/// A connector with its live health and catalog counts, as the dashboard and API list it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorStatus {
    #[serde(flatten)]
    pub connector: Connector,
    pub health: ConnectorHealth,
    /// Tools in the catalog, and those waiting for review (new or changed).
    pub tools: u32,
    pub tools_to_review: u32,
}

/// One tool in a connector's catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogTool {
    pub connector_id: String,
    pub connector_name: String,
    pub name: String,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input_schema: serde_json::Value,
    pub annotations: crate::risk::ToolHints,
    /// SHA-256 of everything an agent is shown (name, description, input schema, title,
    /// annotations, output schema).
    pub hash: String,
    pub review: crate::policy::Review,
    pub risk: crate::risk::Risk,
    /// Why this level: the suggestion's reason, or "set by an admin".
    pub risk_reason: String,
    pub risk_overridden: bool,
    /// Still listed by the upstream at the last discovery.
    pub present: bool,
    pub first_seen: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Each call needs a yes from a member of this group (id), when set.
    #[serde(default)]
    pub approval_group: Option<String>,
}

/// What one group may do on one connector: tool patterns and risk levels allowed and blocked (a
/// block wins), resources and prompts allowed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolPolicy {
    pub group_id: String,
    pub connector_id: String,
    pub connector_name: String,
    pub allow: Vec<String>,
    pub block: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_risk: Option<crate::risk::Risk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_risk: Option<crate::risk::Risk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl ToolPolicy {
    /// The rules alone.
    pub fn rules(&self) -> crate::policy::ToolRules {
        crate::policy::ToolRules {
            allow: self.allow.clone(),
            block: self.block.clone(),
            allow_risk: self.allow_risk,
            block_risk: self.block_risk,
            resources: self.resources.clone(),
            prompts: self.prompts.clone(),
        }
    }
}

/// What a bearer token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Admin API access (`/api/v1`).
    Admin,
    /// An agent acting for one user at `/mcp`.
    Personal,
    /// A SCIM provisioning client (Microsoft Entra) at `/scim/v2`.
    Scim,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Personal => "personal",
            TokenKind::Scim => "scim",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(TokenKind::Admin),
            "personal" => Some(TokenKind::Personal),
            "scim" => Some(TokenKind::Scim),
            _ => None,
        }
    }
}

/// A token's metadata; the secret itself is shown once at creation and only its hash is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub kind: TokenKind,
    pub user_id: Option<String>,
    /// The first characters of the token, to recognise it in lists and logs.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
    /// After this instant the token is refused (personal tokens may have no expiry).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// What a personal token may do on `/mcp` (`mcp:read`, `mcp:tools`).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The policy decision recorded for a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    #[default]
    Allow,
    Deny,
}

impl AuditDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(AuditDecision::Allow),
            "deny" => Some(AuditDecision::Deny),
            _ => None,
        }
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered with a result (or, for other events, the action succeeded).
    #[default]
    Ok,
    /// The upstream answered with a tool error (`isError: true`).
    ToolError,
    /// The upstream could not be reached or failed at the protocol level.
    UpstreamError,
    /// Policy refused the call; nothing was forwarded.
    Denied,
    /// Allowed and recorded, then sent to the upstream; a `tool_result` event with the same
    /// `call_id` records how it ended.
    Forwarded,
    /// The upstream answered, but DLP withheld the response from the caller.
    Blocked,
    /// Allowed by policy, but the tool needs an approver's yes for this exact call; nothing was
    /// forwarded (the event names the approval).
    PendingApproval,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Denied => "denied",
            Outcome::Forwarded => "forwarded",
            Outcome::Blocked => "blocked",
            Outcome::PendingApproval => "pending_approval",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Outcome::Ok),
            "tool_error" => Some(Outcome::ToolError),
            "upstream_error" => Some(Outcome::UpstreamError),
            "denied" => Some(Outcome::Denied),
            "forwarded" => Some(Outcome::Forwarded),
            "blocked" => Some(Outcome::Blocked),
            "pending_approval" => Some(Outcome::PendingApproval),
            _ => None,
        }
    }
}

/// One audit event: a tool call, its result, a resource or prompt read, a sign-in, a SCIM or
/// admin change, a token change. Fields that do not apply to a kind are empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// What happened: `tool_call`, `tool_result`, `sign_in`, `scim.user.create`, `admin.*`...
    pub kind: String,
    /// The user name (or token name) the action was taken as.
    pub principal: String,
    pub principal_id: Option<String>,
    /// `person`, `service_principal`, `admin`, `scim` or `system`.
    pub subject_kind: Option<String>,
    /// The MCP client's self-reported name and version (`clientInfo`).
    pub client_name: Option<String>,
    /// The OAuth client id or token id the caller used.
    pub client_id: Option<String>,
    /// The MCP session id.
    pub session_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub connector: Option<String>,
    pub tool: Option<String>,
    pub decision: AuditDecision,
    /// The rule that decided, in words.
    pub rule: Option<String>,
    pub outcome: Outcome,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub request_id: Option<String>,
    /// Links a `tool_call` event with its `tool_result`.
    pub call_id: Option<String>,
    /// The call's arguments as JSON, after DLP redaction (and cut at 8 KiB).
    pub args_redacted: Option<String>,
    /// SHA-256 (hex) of the arguments as sent, before redaction.
    pub args_hash: Option<String>,
    pub elevation_id: Option<String>,
    pub approval_id: Option<String>,
    /// Request and response sizes in bytes (JSON).
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    /// DLP findings by detector (`{"email": 2}`); never the matched text.
    pub dlp_findings: BTreeMap<String, u64>,
    /// For events other than tool calls: what changed, in words or JSON (`{"before":..,"after":..}`).
    pub detail: Option<String>,
}

/// A search of the audit log: every field is optional and all given ones must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[serde(default)]
pub struct AuditFilter {
    /// Events at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The principal's name, exactly.
    pub subject: Option<String>,
    /// Events of the current members of this group (display name).
    pub group: Option<String>,
    pub connector: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<AuditDecision>,
    /// The event kind (`tool_call`, `sign_in`, ...). Results of calls are folded into their
    /// `tool_call` unless `tool_result` is asked for.
    pub kind: Option<String>,
    /// Only calls made under an elevation.
    pub elevated_only: bool,
    /// Words that must all occur in the arguments, error, detail or names.
    pub text: Option<String>,
}

impl AuditFilter {
    /// Empty strings mean "not given" (forms send them).
    pub fn normalized(mut self) -> Self {
        for f in [
            &mut self.subject,
            &mut self.group,
            &mut self.connector,
            &mut self.tool,
            &mut self.kind,
            &mut self.text,
        ] {
            if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *f = None;
            } else if let Some(v) = f {
                *v = v.trim().to_string();
            }
        }
        self
    }
}

/// How the audit log is run (from the server's configuration), shown to admins and auditors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPolicy {
    /// Days events are kept; 0 = forever.
    pub retention_days: u32,
    /// Calls are forwarded even when their event cannot be written.
    pub fail_open: bool,
    /// Seconds between integrity checks (each signs a checkpoint).
    pub checkpoint_secs: u64,
    /// SQLite durability (`full` or `normal`); None on PostgreSQL.
    pub sqlite_synchronous: Option<String>,
}

/// The Audit page's status line: the last integrity check and how the log is run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditStatus {
    pub integrity: AuditIntegrity,
    pub policy: AuditPolicy,
}

/// Where the last audit integrity check got to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditIntegrity {
    pub checked_at: Option<DateTime<Utc>>,
    /// True when every event checked so far links up and matches its hash and checkpoints.
    pub ok: bool,
    /// The newest event covered by the check.
    pub verified_to: Option<i64>,
    /// The newest signed checkpoint.
    pub checkpoint: Option<i64>,
    /// Where the chain breaks, and why.
    pub break_id: Option<i64>,
    pub reason: Option<String>,
}

/// Charts for the Overview, drawn from the audit log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditStats {
    /// The last 60 minutes, oldest first: (minute start, calls, denied).
    pub per_minute: Vec<(DateTime<Utc>, i64, i64)>,
    /// Most called tools in 24 h: (`connector__tool`, calls).
    pub top_tools: Vec<(String, i64)>,
    /// Most active principals in 24 h: (name, calls).
    pub top_users: Vec<(String, i64)>,
    /// Per connector in the last hour: (name, results, upstream errors).
    pub connector_health: Vec<(String, i64, i64)>,
}

/// Live counts for the Overview page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    pub users: i64,
    pub groups: i64,
    pub connectors: i64,
    pub calls_24h: i64,
    pub denied_24h: i64,
}

/// How a person signing in with the OpenID Provider is matched to a provisioned user the first
/// time (afterwards the stable subject is bound to the user).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OidcMatch {
    /// `userName` equals the token's `preferred_username` (Entra: the UPN), case-insensitively.
    #[default]
    UserName,
    /// `externalId` equals the token's `oid` (Entra object id).
    ExternalId,
}

/// Sign-in with an OpenID Provider (Microsoft Entra ID first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcSettings {
    /// Issuer URL, e.g. `https://login.microsoftonline.com/{tenant}/v2.0`; a multi-tenant issuer
    /// keeps the literal `{tenantid}`, replaced by the token's `tid` and compared exactly.
    pub issuer: String,
    pub client_id: String,
    /// Whether a client secret is stored (the secret itself is never returned).
    #[serde(default)]
    pub client_secret_set: bool,
    /// Label of the sign-in button.
    #[serde(default = "default_provider_name")]
    pub display_name: String,
    #[serde(default)]
    pub match_by: OidcMatch,
    /// Create unknown people at first sign-in instead of refusing them (default: refuse; IT
    /// provisions by SCIM).
    #[serde(default)]
    pub jit_provisioning: bool,
    /// Also use the token's `groups` claim (group object ids matched to groups' `externalId`);
    /// SCIM memberships are always used.
    #[serde(default)]
    pub use_groups_claim: bool,
}

fn default_provider_name() -> String {
    "Microsoft Entra ID".into()
}

/// Which groups give which dashboard role (group ids). A person gets the most powerful role any
/// of their groups maps to, otherwise `user`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleMappings {
    #[serde(default)]
    pub admin: Vec<String>,
    #[serde(default)]
    pub approver: Vec<String>,
    #[serde(default)]
    pub auditor: Vec<String>,
}

/// OIDC settings as written; `client_secret` is kept when omitted or empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OidcInput {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub match_by: OidcMatch,
    #[serde(default)]
    pub jit_provisioning: bool,
    #[serde(default)]
    pub use_groups_claim: bool,
}

/// A change of the identity settings; `oidc: null` turns sign-in with the provider off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IdentitySettingsInput {
    pub oidc: Option<OidcInput>,
    #[serde(default)]
    pub role_mappings: RoleMappings,
}

/// A person as the Users page shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonRow {
    pub user: User,
    pub groups: Vec<String>,
    pub tokens: Vec<ApiToken>,
    /// Live dashboard sessions.
    pub sessions: i64,
    /// Agents (OAuth clients) the person has authorized.
    #[serde(default)]
    pub consents: Vec<Consent>,
}

/// One logged SCIM request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScimRequestRow {
    pub at: DateTime<Utc>,
    pub client: String,
    pub method: String,
    pub path: String,
    pub status: i64,
    pub duration_ms: f64,
}

/// What the Settings page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingsView {
    pub oidc: Option<OidcSettings>,
    /// Group display names per role.
    pub admin_groups: Vec<String>,
    pub approver_groups: Vec<String>,
    pub auditor_groups: Vec<String>,
    pub redirect_uri: String,
    pub scim_tenant_url: String,
    pub scim_tokens: Vec<ApiToken>,
    pub scim_requests: Vec<ScimRequestRow>,
    pub last_sync: Option<DateTime<Utc>>,
}

/// One tool's answer in the effective-access simulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolAccess {
    pub tool: String,
    pub risk: crate::risk::Risk,
    pub review: crate::policy::Review,
    pub allowed: bool,
    /// The rule that decided, in words.
    pub rule: String,
}

/// Every catalog tool of one connector with its decision for the simulated subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorAccess {
    pub connector: String,
    pub enabled: bool,
    pub tools: Vec<ToolAccess>,
}

/// Who (or what) the simulator decided for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatedSubject {
    /// `user` or `group` (service principals join when they exist).
    pub kind: String,
    pub id: String,
    pub name: String,
    /// Names of the groups whose rules applied.
    pub groups: Vec<String>,
}

/// The effective-access simulator's answer for one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Simulation {
    pub subject: SimulatedSubject,
    pub connectors: Vec<ConnectorAccess>,
}

/// One subject's decision for "who can call tool X".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectDecision {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub allowed: bool,
    pub rule: String,
}

/// "Who can call tool X": every group and every active person, allowed or not, with the rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoCanCall {
    pub connector: String,
    pub tool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::risk::Risk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<crate::policy::Review>,
    pub groups: Vec<SubjectDecision>,
    pub users: Vec<SubjectDecision>,
}

/// What a token may do on the MCP endpoint. `mcp:read`: initialize, list tools, resources and
/// prompts, read resources, get prompts. `mcp:tools`: call tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);
    pub const READ: Scopes = Scopes(1);
    pub const TOOLS: Scopes = Scopes(2);
    pub const ALL: Scopes = Scopes(3);
    pub const READ_NAME: &'static str = "mcp:read";
    pub const TOOLS_NAME: &'static str = "mcp:tools";
    /// Every scope the gateway knows, in the order it advertises them.
    pub const SUPPORTED: [&'static str; 2] = [Self::READ_NAME, Self::TOOLS_NAME];

    /// Parses a space-separated scope string (RFC 6749 §3.3); unknown scopes are an error that
    /// names them. An empty string gives no scope.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        let mut out = Scopes::NONE;
        let mut unknown = Vec::new();
        for s in text.split(' ').filter(|s| !s.is_empty()) {
            match s {
                Self::READ_NAME => out.0 |= Self::READ.0,
                Self::TOOLS_NAME => out.0 |= Self::TOOLS.0,
                other => unknown.push(other),
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(format!("unknown scope {}", unknown.join(", ")))
        }
    }

    /// A requested scope string as RFC 6749 §3.3 lets a server treat it: the scopes it knows
    /// are kept, others (`offline_access`, `openid`, …) are ignored; nothing known means the
    /// default, every scope.
    pub fn requested(text: &str) -> Scopes {
        let known = text
            .split(' ')
            .filter_map(|s| Self::parse(s).ok())
            .fold(Scopes::NONE, Scopes::union);
        if known.is_empty() { Scopes::ALL } else { known }
    }

    /// Scopes from a list of names (e.g. an API field).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Scopes, String> {
        let joined: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        if joined.iter().any(|s| s.contains(' ')) {
            return Err("a scope name has no spaces".into());
        }
        Self::parse(&joined.join(" "))
    }

    pub fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    pub fn intersection(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    pub fn names(self) -> Vec<String> {
        let mut v = Vec::new();
        if self.contains(Self::READ) {
            v.push(Self::READ_NAME.to_string());
        }
        if self.contains(Self::TOOLS) {
            v.push(Self::TOOLS_NAME.to_string());
        }
        v
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

/// How Toolgate came to know an OAuth client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OAuthClientKind {
    /// Registered by an admin (dashboard or API).
    Preregistered,
    /// Client ID Metadata Document: the client id is the URL of its metadata.
    Cimd,
    /// Dynamic Client Registration (RFC 7591).
    Dcr,
}

impl OAuthClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preregistered => "preregistered",
            Self::Cimd => "cimd",
            Self::Dcr => "dcr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "preregistered" => Some(Self::Preregistered),
            "cimd" => Some(Self::Cimd),
            "dcr" => Some(Self::Dcr),
            _ => None,
        }
    }
}

/// An OAuth client of the gateway's authorization server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthClient {
    pub id: String,
    pub kind: OAuthClientKind,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Whether the client authenticates with a secret (`client_secret_basic`/`_post`).
    pub confidential: bool,
    pub auth_method: String,
    pub client_uri: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub disabled: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The authorization server's switches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct OAuthSettings {
    /// Clients registered by an admin may sign in.
    pub preregistered_enabled: bool,
    /// Client ID Metadata Documents (an https URL as client id) are accepted.
    pub cimd_enabled: bool,
    /// Dynamic Client Registration (RFC 7591) is open.
    pub dcr_enabled: bool,
    /// Development only: CIMD documents on http://127.0.0.1 / localhost are fetched.
    pub allow_loopback_cimd: bool,
    /// Lifetime of access tokens, in seconds (60-3600).
    pub access_token_secs: u32,
    /// Lifetime of a refresh token, in days (1-365); each use gives a new one.
    pub refresh_token_days: u32,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            preregistered_enabled: true,
            cimd_enabled: true,
            dcr_enabled: true,
            allow_loopback_cimd: false,
            access_token_secs: 600,
            refresh_token_days: 30,
        }
    }
}

impl OAuthSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(60..=3600).contains(&self.access_token_secs) {
            return Err("access_token_secs must be between 60 and 3600".into());
        }
        if !(1..=365).contains(&self.refresh_token_days) {
            return Err("refresh_token_days must be between 1 and 365".into());
        }
        Ok(())
    }
}

/// A person's consent to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Consent {
    pub client_id: String,
    pub client_name: String,
    pub client_kind: Option<OAuthClientKind>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Live authorizations (refresh-token families) of the client for this person.
    pub live_grants: i64,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One client secret of a service principal (the secret itself is shown once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpSecret {
    pub id: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

/// An unattended agent with groups of its own; policy applies to it as to a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServicePrincipal {
    /// Also its OAuth `client_id` for the client credentials grant.
    pub id: String,
    pub name: String,
    pub description: String,
    /// Who answers for it (a person's name or mail).
    pub owner: String,
    /// The Entra application (client) id whose app-only tokens act as this principal.
    pub entra_app_id: Option<String>,
    /// Group ids.
    pub groups: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub secrets: Vec<SpSecret>,
}

/// Acceptance of Microsoft Entra ID app-only tokens (client credentials of an Entra app
/// registration) for service principals. Stored as the `entra_apps` setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct EntraAppSettings {
    pub enabled: bool,
    /// The directory (tenant) id, a GUID.
    pub tenant_id: String,
    /// Accepted `aud` values: the gateway's application id URI (e.g. `api://toolgate`) and/or
    /// its application (client) id.
    pub audiences: Vec<String>,
    /// An app role every token must carry in `roles`.
    pub required_role: Option<String>,
    /// Override of the key set URL (default: the tenant's v2.0 keys).
    pub jwks_url: Option<String>,
    /// Override of `https://login.microsoftonline.com` in the expected issuer (tests, sovereign
    /// clouds).
    pub issuer_base: Option<String>,
}
