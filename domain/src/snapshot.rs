//! The policy snapshot: everything the proxy needs per call (tokens, users, groups, connectors,
//! rules) in memory, swapped atomically when an admin changes something, so the hot path makes no
//! database round trip.

use crate::Result;
use crate::crypto::hash_token;
use crate::dlp::{DlpAction, DlpSettings, Scanner};
use crate::model::Scopes;
use crate::policy::{
    CompiledRules, ToolFacts, Verdict, allows, decide, decide_explained, decide_prompt,
    decide_resource,
};
use crate::store::{
    CatalogSettings, ConnectorSecrets, GrantInfo, SpSnapshotRow, Store, TokenGrant,
};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a caller is a person (through a personal token or an OAuth grant) or a service
/// principal (an unattended agent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubjectKind {
    #[default]
    Person,
    ServicePrincipal,
}

impl SubjectKind {
    /// The audit log's `subject_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::ServicePrincipal => "service_principal",
        }
    }
}

/// Who is calling, as resolved from a personal access token, an OAuth access token or a
/// service principal's token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    pub kind: SubjectKind,
    /// The person's user id, or the service principal's id.
    pub user_id: String,
    pub user_name: String,
    /// The credential: personal token id, OAuth grant id, secret id or `entra:{app id}`.
    pub token_id: String,
    /// Ids of the caller's groups.
    pub groups: Vec<String>,
    /// What the credential may do on `/mcp`.
    pub scopes: Scopes,
    /// The OAuth client acting for the person, if any.
    pub client_id: Option<String>,
    pub client_name: Option<String>,
}

/// A service principal as the proxy needs it.
#[derive(Clone, Debug)]
struct SnapSp {
    name: String,
    expires_at: Option<i64>,
    groups: Vec<String>,
    /// Live secrets: id -> expiry (unix ms).
    secrets: HashMap<String, Option<i64>>,
}

#[derive(Clone, Debug)]
struct SnapUser {
    user_name: String,
    active: bool,
    groups: Vec<String>,
}

/// Maps on the decision path: foldhash (randomly seeded; much faster than SipHash on short keys).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A connector's catalog by tool name.
pub type CatalogMap = FastMap<String, CatalogEntry>;

/// A tool as the catalog knows it.
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    pub facts: ToolFacts,
    /// Hash of the definition last discovered (to notice drift without a database round trip).
    pub hash: String,
    /// Each call needs a yes from this group (id), when set.
    pub approval_group: Option<Arc<str>>,
}

/// An elevation profile as the proxy needs it: who may ask, and its targets compiled per
/// connector name (allows only).
#[derive(Debug)]
struct SnapProfile {
    name: String,
    eligible: Vec<String>,
    rules: FastMap<String, CompiledRules>,
}

/// An approved elevation; in force while `expires_at` (unix ms) is after the decision's time.
#[derive(Clone, Debug)]
struct SnapElevation {
    id: String,
    profile_id: String,
    expires_at: i64,
}

/// What the proxy decided for one call, with what it needs next.
#[derive(Clone, Debug)]
pub struct CallDecision {
    pub verdict: Verdict,
    /// The elevation that allowed the call (id), when only an elevation did.
    pub elevation: Option<String>,
    /// Denied by default, but these profiles (names) would allow it: the caller may request one.
    pub eligible: Vec<String>,
    /// Allowed, but each call needs a yes from this group (id).
    pub approval_group: Option<Arc<str>>,
}

/// A connector with its catalog, and its index for rule lookups.
#[derive(Debug)]
pub struct SnapConnector {
    pub secrets: Arc<ConnectorSecrets>,
    index: u32,
    pub tools: CatalogMap,
    /// A digest of the catalog (tool names and definition hashes): equal digests, equal catalogs.
    digest: u64,
}

/// One immutable view of the configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    version: u64,
    tokens: HashMap<String, TokenGrant>,
    users: HashMap<String, SnapUser>,
    group_names: HashMap<String, String>,
    /// Group id -> index into the rule table.
    group_index: FastMap<String, u32>,
    connectors: BTreeMap<String, SnapConnector>,
    /// Compiled rules by (group index, connector index).
    rules: FastMap<(u32, u32), CompiledRules>,
    block_changed: bool,
    dlp: Option<Arc<Dlp>>,
    /// Live OAuth grants by id.
    oauth_grants: FastMap<String, GrantInfo>,
    /// Enabled service principals by id.
    service_principals: FastMap<String, SnapSp>,
    /// Entra application id (lower case) -> service principal id.
    entra_apps: FastMap<String, String>,
    /// Which Entra app-only tokens are accepted.
    entra_settings: Arc<crate::model::EntraAppSettings>,
    /// Enabled elevation profiles by id.
    profiles: FastMap<String, SnapProfile>,
    /// Approved elevations by subject (user or service principal id).
    elevations: FastMap<String, Vec<SnapElevation>>,
    elevation_settings: Arc<crate::elevation::ElevationSettings>,
}

/// DLP settings with their compiled scanner.
pub struct Dlp {
    pub settings: DlpSettings,
    pub scanner: Scanner,
}

impl std::fmt::Debug for Dlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dlp")
            .field("settings", &self.settings)
            .finish()
    }
}

/// What DLP does to one call: scan with this scanner, then act.
#[derive(Clone, Debug)]
pub struct DlpPlan {
    pub dlp: Arc<Dlp>,
    pub action: DlpAction,
}

impl Snapshot {
    /// DLP for a call by `principal` to `connector`; `None` when DLP is off.
    pub fn dlp_plan(&self, principal: &Principal, connector: &str) -> Option<DlpPlan> {
        let dlp = self.dlp.as_ref()?;
        let groups: Vec<&str> = principal
            .groups
            .iter()
            .filter_map(|g| self.group_names.get(g).map(String::as_str))
            .collect();
        Some(DlpPlan {
            action: dlp.settings.action_for(connector, &groups),
            dlp: dlp.clone(),
        })
    }

    /// Compiles the DLP settings, reusing the previous scanner when they have not changed (a
    /// reload per SCIM write must not recompile a dozen regexes). A stored setting that no
    /// longer compiles falls back to the built-in detectors (logged), never to no DLP.
    fn dlp_from(settings: DlpSettings, previous: Option<&Arc<Dlp>>) -> Option<Arc<Dlp>> {
        if !settings.enabled {
            return None;
        }
        if let Some(p) = previous
            && p.settings == settings
        {
            return Some(p.clone());
        }
        let scanner = match Scanner::new(&settings) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "DLP settings do not compile; using the built-in detectors");
                Scanner::new(&DlpSettings::default()).ok()?
            }
        };
        Some(Arc::new(Dlp { settings, scanner }))
    }

    async fn load(store: &Store, version: u64, previous: Option<&Snapshot>) -> Result<Self> {
        // Only people who hold a live token can call the proxy: a directory of 10,000 people
        // with a few hundred agents keeps the snapshot (and every rebuild) small.
        let users = store.users_with_tokens().await?;
        let groups = store.list_groups().await?;
        let memberships = store.memberships_of_token_holders().await?;
        let connectors = store.connectors_with_secrets().await?;
        let policies = store.all_policies().await?;
        let catalog = store.catalog_facts().await?;
        let tokens = store.active_personal_tokens().await?;
        let oauth_grants = store.live_grants().await?;
        let sps = store.snapshot_service_principals().await?;
        let profiles = store.list_elevation_profiles().await?;
        let elevations = store
            .active_elevations(crate::clock::to_millis(store.clock().now()))
            .await?;
        let entra_settings: crate::model::EntraAppSettings = store
            .setting(crate::store::setting_keys::ENTRA_APPS)
            .await?
            .unwrap_or_default();
        let dlp_settings: DlpSettings = store
            .setting(crate::store::setting_keys::DLP)
            .await?
            .unwrap_or_default();
        let catalog_settings: CatalogSettings = store.catalog_settings().await?;
        let dlp = Self::dlp_from(dlp_settings, previous.and_then(|p| p.dlp.as_ref()));

        let mut users: HashMap<String, SnapUser> = users
            .into_iter()
            .map(|u| {
                (
                    u.id,
                    SnapUser {
                        user_name: u.user_name,
                        active: u.active,
                        groups: vec![],
                    },
                )
            })
            .collect();
        for (group_id, user_id) in memberships {
            if let Some(u) = users.get_mut(&user_id) {
                u.groups.push(group_id);
            }
        }
        let mut snap = Self::assemble(
            version,
            tokens.into_iter().collect(),
            users,
            groups.into_iter().map(|g| (g.id, g.display_name)).collect(),
            connectors,
            policies,
            catalog,
            catalog_settings.block_changed_tools,
            dlp,
        );
        snap.oauth_grants = oauth_grants
            .into_iter()
            .map(|g| (g.grant_id.clone(), g))
            .collect();
        snap.set_service_principals(sps);
        snap.entra_settings = Arc::new(entra_settings);
        snap.set_elevations(profiles, elevations);
        snap.elevation_settings = Arc::new(
            store
                .setting(crate::store::setting_keys::ELEVATION)
                .await?
                .unwrap_or_default(),
        );
        Ok(snap)
    }

    /// Compiles enabled profiles and files approved elevations by subject. A disabled profile
    /// suspends its elevations (deleting one revokes them).
    pub fn set_elevations(
        &mut self,
        profiles: Vec<crate::elevation::ElevationProfile>,
        active: Vec<crate::store::ActiveElevationRow>,
    ) {
        self.profiles = profiles
            .into_iter()
            .filter(|p| p.enabled)
            .map(|p| {
                let label = format!("elevation \"{}\"", p.name);
                let rules = p
                    .targets
                    .iter()
                    .map(|t| {
                        (
                            t.connector.clone(),
                            CompiledRules::compile(&label, &t.rules()),
                        )
                    })
                    .collect();
                (
                    p.id,
                    SnapProfile {
                        name: p.name,
                        eligible: p.eligible_groups,
                        rules,
                    },
                )
            })
            .collect();
        self.elevations = FastMap::default();
        for e in active {
            if self.profiles.contains_key(&e.profile_id) {
                self.elevations
                    .entry(e.subject_id)
                    .or_default()
                    .push(SnapElevation {
                        id: e.id,
                        profile_id: e.profile_id,
                        expires_at: e.expires_at,
                    });
            }
        }
    }

    fn set_service_principals(&mut self, rows: Vec<SpSnapshotRow>) {
        for sp in rows {
            if let Some(app) = &sp.entra_app_id {
                self.entra_apps
                    .insert(app.to_ascii_lowercase(), sp.id.clone());
            }
            self.service_principals.insert(
                sp.id,
                SnapSp {
                    name: sp.name,
                    expires_at: sp.expires_at,
                    groups: sp.groups,
                    secrets: sp.secrets.into_iter().collect(),
                },
            );
        }
    }

    /// Builds the lookup tables from loaded rows (also used by benchmarks and tests).
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        version: u64,
        tokens: HashMap<String, TokenGrant>,
        users: HashMap<String, SnapUser>,
        groups: Vec<(String, String)>,
        connectors: Vec<ConnectorSecrets>,
        policies: Vec<crate::store::PolicyRow>,
        catalog: Vec<crate::store::CatalogFacts>,
        block_changed: bool,
        dlp: Option<Arc<Dlp>>,
    ) -> Self {
        let group_index: FastMap<String, u32> = groups
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.clone(), i as u32))
            .collect();
        let group_names: HashMap<String, String> = groups.into_iter().collect();
        let mut by_id: HashMap<String, String> = HashMap::new();
        let mut snap_connectors: BTreeMap<String, SnapConnector> = BTreeMap::new();
        for (i, c) in connectors.into_iter().enumerate() {
            by_id.insert(c.connector.id.clone(), c.connector.name.clone());
            snap_connectors.insert(
                c.connector.name.clone(),
                SnapConnector {
                    secrets: Arc::new(c),
                    index: i as u32,
                    tools: CatalogMap::default(),
                    digest: 0,
                },
            );
        }
        for t in catalog {
            if let Some(c) = by_id
                .get(&t.connector_id)
                .and_then(|n| snap_connectors.get_mut(n))
            {
                c.tools.insert(
                    t.name,
                    CatalogEntry {
                        facts: ToolFacts {
                            risk: t.risk,
                            review: t.review,
                        },
                        hash: t.hash,
                        approval_group: t.approval_group.map(Arc::from),
                    },
                );
            }
        }
        for c in snap_connectors.values_mut() {
            use std::hash::{Hash, Hasher};
            let mut entries: Vec<(&String, &String)> =
                c.tools.iter().map(|(n, e)| (n, &e.hash)).collect();
            entries.sort();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            entries.hash(&mut h);
            c.digest = h.finish();
        }
        let mut rules = FastMap::default();
        for p in policies {
            let (Some(&gi), Some(ci)) = (
                group_index.get(&p.group_id),
                by_id
                    .get(&p.connector_id)
                    .and_then(|n| snap_connectors.get(n))
                    .map(|c| c.index),
            ) else {
                continue;
            };
            let name = group_names
                .get(&p.group_id)
                .map(String::as_str)
                .unwrap_or("?");
            rules.insert((gi, ci), CompiledRules::compile(name, &p.rules));
        }
        Snapshot {
            version,
            tokens,
            users,
            group_names,
            group_index,
            connectors: snap_connectors,
            rules,
            block_changed,
            dlp,
            oauth_grants: FastMap::default(),
            service_principals: FastMap::default(),
            entra_apps: FastMap::default(),
            entra_settings: Arc::default(),
            profiles: FastMap::default(),
            elevations: FastMap::default(),
            elevation_settings: Arc::default(),
        }
    }

    /// A snapshot of connectors, groups, rules and catalog alone (no people), for benchmarks.
    #[cfg(feature = "test-util")]
    pub fn for_policy(
        groups: Vec<(String, String)>,
        connectors: Vec<ConnectorSecrets>,
        policies: Vec<crate::store::PolicyRow>,
        catalog: Vec<crate::store::CatalogFacts>,
    ) -> Self {
        Self::assemble(
            1,
            HashMap::new(),
            HashMap::new(),
            groups,
            connectors,
            policies,
            catalog,
            true,
            None,
        )
    }

    /// Monotonic per process; changes whenever the snapshot is rebuilt.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The caller behind a personal access token; `None` for unknown, revoked or expired
    /// (at `now_ms`) tokens and for disabled users (fail closed).
    pub fn principal_for_token(&self, secret: &str, now_ms: i64) -> Option<Principal> {
        let grant = self.tokens.get(&hash_token(secret))?;
        if grant.expires_at.is_some_and(|at| at <= now_ms) {
            return None;
        }
        let user_id = grant.user_id.as_ref()?;
        let user = self.users.get(user_id)?;
        if !user.active {
            return None;
        }
        Some(Principal {
            kind: SubjectKind::Person,
            user_id: user_id.clone(),
            user_name: user.user_name.clone(),
            token_id: grant.token_id.clone(),
            groups: user.groups.clone(),
            scopes: grant.scopes,
            client_id: None,
            client_name: None,
        })
    }

    /// The person behind an OAuth access token: its grant must be live (not revoked, client
    /// enabled, person active) and belong to `user_id` and `client_id`; the scopes are those of
    /// the token within the grant's.
    pub fn principal_for_grant(
        &self,
        grant_id: &str,
        user_id: &str,
        client_id: &str,
        scopes: Scopes,
    ) -> Option<Principal> {
        let grant = self.oauth_grants.get(grant_id)?;
        if grant.user_id != user_id || grant.client_id != client_id {
            return None;
        }
        let user = self.users.get(user_id).filter(|u| u.active)?;
        Some(Principal {
            kind: SubjectKind::Person,
            user_id: user_id.to_string(),
            user_name: user.user_name.clone(),
            token_id: grant_id.to_string(),
            groups: user.groups.clone(),
            scopes: scopes.intersection(grant.scopes),
            client_id: Some(grant.client_id.clone()),
            client_name: Some(grant.client_name.clone()),
        })
    }

    /// Whether a grant is live in this snapshot.
    pub fn has_grant(&self, grant_id: &str) -> bool {
        self.oauth_grants.contains_key(grant_id)
    }

    /// A service principal acting with one of its secrets (`secret_id`), or — `None` — through
    /// its Entra application; refused when disabled, expired at `now_ms`, or the secret is
    /// revoked or expired.
    pub fn principal_for_service(
        &self,
        sp_id: &str,
        secret_id: Option<&str>,
        now_ms: i64,
        scopes: Scopes,
    ) -> Option<Principal> {
        let sp = self.service_principals.get(sp_id)?;
        if sp.expires_at.is_some_and(|at| at <= now_ms) {
            return None;
        }
        let credential = match secret_id {
            Some(id) => {
                let expiry = sp.secrets.get(id)?;
                if expiry.is_some_and(|at| at <= now_ms) {
                    return None;
                }
                id.to_string()
            }
            None => format!("entra:{sp_id}"),
        };
        Some(Principal {
            kind: SubjectKind::ServicePrincipal,
            user_id: sp_id.to_string(),
            user_name: sp.name.clone(),
            token_id: credential,
            groups: sp.groups.clone(),
            scopes,
            client_id: Some(sp_id.to_string()),
            client_name: Some(sp.name.clone()),
        })
    }

    /// The Entra app-only token settings this snapshot was built with.
    pub fn entra_settings(&self) -> &Arc<crate::model::EntraAppSettings> {
        &self.entra_settings
    }

    /// The service principal an Entra application acts as.
    pub fn service_principal_for_app(&self, app_id: &str) -> Option<&str> {
        self.entra_apps
            .get(&app_id.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Whether the principal may call `tool` on the connector named `connector`.
    pub fn decide(&self, principal: &Principal, connector: &str, tool: &str) -> Verdict {
        self.decide_for_groups(&principal.groups, connector, tool)
    }

    /// The elevations of `subject` in force at `now_ms`: (elevation id, profile).
    fn elevations_at(
        &self,
        subject: &str,
        now_ms: i64,
    ) -> impl Iterator<Item = (&str, &SnapProfile)> {
        self.elevations
            .get(subject)
            .into_iter()
            .flatten()
            .filter(move |e| e.expires_at > now_ms)
            .filter_map(|e| Some((e.id.as_str(), self.profiles.get(&e.profile_id)?)))
    }

    /// Profiles the principal's groups may request: (id, profile).
    fn eligible_profiles<'s, 'p>(
        &'s self,
        principal: &'p Principal,
    ) -> impl Iterator<Item = (&'s str, &'s SnapProfile)> + use<'s, 'p> {
        self.profiles
            .iter()
            .filter(|(_, p)| p.eligible.iter().any(|g| principal.groups.contains(g)))
            .map(|(id, p)| (id.as_str(), p))
    }

    /// Elevation and approval settings.
    pub fn elevation_settings(&self) -> &crate::elevation::ElevationSettings {
        &self.elevation_settings
    }

    /// Names of the profiles the principal may request.
    pub fn eligible_profile_names(&self, principal: &Principal) -> Vec<String> {
        let mut v: Vec<String> = self
            .eligible_profiles(principal)
            .map(|(_, p)| p.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Decides one call at `now_ms` (the injected clock's time): the groups' rules first; a
    /// default deny may still be allowed by an elevation in force; otherwise the profiles that
    /// would allow it are named. Allowed calls carry their per-call approval group, if any.
    pub fn decide_call(
        &self,
        principal: &Principal,
        connector: &str,
        tool: &str,
        now_ms: i64,
    ) -> CallDecision {
        let Some((c, grants)) = self.grants(&principal.groups, connector) else {
            return CallDecision {
                verdict: Self::no_connector(connector),
                elevation: None,
                eligible: vec![],
                approval_group: None,
            };
        };
        let entry = c.tools.get(tool);
        let facts = entry.map(|t| t.facts);
        let (mut verdict, default_deny) =
            decide_explained(&grants, connector, tool, facts, self.block_changed);
        let mut elevation = None;
        let mut eligible = Vec::new();
        if default_deny {
            let by_elevation = self
                .elevations_at(&principal.user_id, now_ms)
                .find(|(_, p)| {
                    p.rules
                        .get(connector)
                        .is_some_and(|r| allows(&[r], tool, facts, self.block_changed))
                });
            if let Some((id, p)) = by_elevation {
                let until = self
                    .elevations
                    .get(&principal.user_id)
                    .and_then(|v| v.iter().find(|e| e.id == id))
                    .map(|e| crate::clock::from_millis(e.expires_at).to_rfc3339())
                    .unwrap_or_default();
                verdict = Verdict::Allow {
                    rule: format!(
                        "allowed by elevation {id} (profile \"{}\") until {until} on connector \"{connector}\"",
                        p.name
                    ),
                };
                elevation = Some(id.to_string());
            } else {
                eligible = self
                    .eligible_profiles(principal)
                    .filter(|(_, p)| {
                        p.rules
                            .get(connector)
                            .is_some_and(|r| allows(&[r], tool, facts, self.block_changed))
                    })
                    .map(|(_, p)| p.name.clone())
                    .collect();
                eligible.sort();
            }
        }
        let approval_group = entry
            .filter(|_| verdict.is_allowed())
            .and_then(|e| e.approval_group.clone());
        CallDecision {
            verdict,
            elevation,
            eligible,
            approval_group,
        }
    }

    /// The compiled rules of these groups on an enabled connector; `None` for an unknown or
    /// disabled connector.
    fn grants<'a>(
        &'a self,
        groups: &[String],
        connector: &str,
    ) -> Option<(&'a SnapConnector, Vec<&'a CompiledRules>)> {
        let c = self
            .connectors
            .get(connector)
            .filter(|c| c.secrets.connector.enabled)?;
        let grants = groups
            .iter()
            .filter_map(|g| {
                let gi = *self.group_index.get(g)?;
                self.rules.get(&(gi, c.index))
            })
            .collect();
        Some((c, grants))
    }

    fn no_connector(connector: &str) -> Verdict {
        // Why: an unknown connector is reported like a denied tool, so callers cannot probe names.
        Verdict::Deny {
            rule: format!("no enabled connector named \"{connector}\""),
        }
    }

    /// One connector as the principal sees it: the rules of the principal's groups there gathered
    /// once, so a listing decides each tool without looking them up again. `None` for an
    /// unknown or disabled connector.
    /// Elevations in force at `now_ms` add their allows; profiles the principal may request are
    /// kept aside so a listing can show what an elevation would unlock.
    pub fn listing<'a>(
        &'a self,
        principal: &Principal,
        connector: &str,
        now_ms: i64,
    ) -> Option<Listing<'a>> {
        let (c, mut grants) = self.grants(&principal.groups, connector)?;
        grants.extend(
            self.elevations_at(&principal.user_id, now_ms)
                .filter_map(|(_, p)| p.rules.get(connector)),
        );
        let eligible = self
            .eligible_profiles(principal)
            .filter_map(|(_, p)| Some((p.rules.get(connector)?, p.name.as_str())))
            .collect();
        Some(Listing {
            tools: &c.tools,
            grants,
            eligible,
            block_changed: self.block_changed,
        })
    }

    /// Whether the principal may call `tool` on `connector`, without the explanation (listings).
    pub fn allows(&self, principal: &Principal, connector: &str, tool: &str) -> bool {
        let Some((c, grants)) = self.grants(&principal.groups, connector) else {
            return false;
        };
        let facts = c.tools.get(tool).map(|t| t.facts);
        allows(&grants, tool, facts, self.block_changed)
    }

    /// Whether any of the principal's groups has rules on this enabled connector.
    pub fn has_rules_on(&self, principal: &Principal, connector: &str) -> bool {
        self.grants(&principal.groups, connector)
            .is_some_and(|(_, g)| !g.is_empty())
    }

    /// Whether members of exactly these groups (ids) may call `tool` on `connector`.
    pub fn decide_for_groups(&self, groups: &[String], connector: &str, tool: &str) -> Verdict {
        let Some((c, grants)) = self.grants(groups, connector) else {
            return Self::no_connector(connector);
        };
        let facts = c.tools.get(tool).map(|t| t.facts);
        decide(&grants, connector, tool, facts, self.block_changed)
    }

    /// Whether the principal may read resource `uri` on `connector`.
    pub fn decide_resource(&self, principal: &Principal, connector: &str, uri: &str) -> Verdict {
        match self.grants(&principal.groups, connector) {
            Some((_, grants)) => decide_resource(&grants, connector, uri),
            None => Self::no_connector(connector),
        }
    }

    /// Whether the principal may get prompt `name` on `connector`.
    pub fn decide_prompt(&self, principal: &Principal, connector: &str, name: &str) -> Verdict {
        match self.grants(&principal.groups, connector) {
            Some((_, grants)) => decide_prompt(&grants, connector, name),
            None => Self::no_connector(connector),
        }
    }

    /// The catalog entry of a tool on an enabled connector.
    pub fn catalog_entry(&self, connector: &str, tool: &str) -> Option<&CatalogEntry> {
        self.connectors
            .get(connector)
            .filter(|c| c.secrets.connector.enabled)?
            .tools
            .get(tool)
    }

    /// A digest of a connector's catalog (names and definition hashes).
    pub fn catalog_digest(&self, connector: &str) -> Option<u64> {
        self.connectors.get(connector).map(|c| c.digest)
    }

    /// The catalog of a connector (enabled or not), by tool name.
    pub fn catalog_of(&self, connector: &str) -> Option<&CatalogMap> {
        self.connectors.get(connector).map(|c| &c.tools)
    }

    /// A group's display name.
    pub fn group_name(&self, id: &str) -> Option<&str> {
        self.group_names.get(id).map(String::as_str)
    }

    /// Whether changed tool definitions are refused until re-approved.
    pub fn blocks_changed_tools(&self) -> bool {
        self.block_changed
    }

    /// Every catalog tool of every connector, decided for members of exactly these groups.
    pub fn simulate(&self, groups: &[String]) -> Vec<crate::model::ConnectorAccess> {
        self.connectors
            .iter()
            .map(|(name, c)| {
                let mut tools: Vec<crate::model::ToolAccess> = c
                    .tools
                    .iter()
                    .map(|(tool, entry)| {
                        let v = if c.secrets.connector.enabled {
                            self.decide_for_groups(groups, name, tool)
                        } else {
                            Verdict::Deny {
                                rule: format!("connector \"{name}\" is disabled"),
                            }
                        };
                        crate::model::ToolAccess {
                            tool: tool.clone(),
                            risk: entry.facts.risk,
                            review: entry.facts.review,
                            allowed: v.is_allowed(),
                            rule: v.rule().to_string(),
                        }
                    })
                    .collect();
                tools.sort_by(|a, b| a.tool.cmp(&b.tool));
                crate::model::ConnectorAccess {
                    connector: name.clone(),
                    enabled: c.secrets.connector.enabled,
                    tools,
                }
            })
            .collect()
    }

    /// A live preview of draft rules: every catalog tool of `connector` decided for a member of
    /// this group alone, as if its rules there were `draft`. `None` for an unknown connector.
    pub fn preview_rules(
        &self,
        group_name: &str,
        connector: &str,
        draft: &crate::policy::ToolRules,
    ) -> Option<crate::model::ConnectorAccess> {
        let c = self.connectors.get(connector)?;
        let compiled = CompiledRules::compile(group_name, draft);
        let mut tools: Vec<crate::model::ToolAccess> = c
            .tools
            .iter()
            .map(|(tool, entry)| {
                let v = decide(
                    &[&compiled],
                    connector,
                    tool,
                    Some(entry.facts),
                    self.block_changed,
                );
                crate::model::ToolAccess {
                    tool: tool.clone(),
                    risk: entry.facts.risk,
                    review: entry.facts.review,
                    allowed: v.is_allowed(),
                    rule: v.rule().to_string(),
                }
            })
            .collect();
        tools.sort_by(|a, b| a.tool.cmp(&b.tool));
        Some(crate::model::ConnectorAccess {
            connector: connector.to_string(),
            enabled: c.secrets.connector.enabled,
            tools,
        })
    }

    /// Group ids by display name order, for listings.
    pub fn groups(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .group_names
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(b.1));
        v
    }

    /// Enabled connectors, by name.
    pub fn enabled_connectors(&self) -> impl Iterator<Item = &Arc<ConnectorSecrets>> {
        self.connectors
            .values()
            .filter(|c| c.secrets.connector.enabled)
            .map(|c| &c.secrets)
    }

    /// Every connector (enabled or not), by name.
    pub fn all_connectors(&self) -> impl Iterator<Item = &Arc<ConnectorSecrets>> {
        self.connectors.values().map(|c| &c.secrets)
    }

    /// An enabled connector by name.
    pub fn connector(&self, name: &str) -> Option<&Arc<ConnectorSecrets>> {
        self.connectors
            .get(name)
            .filter(|c| c.secrets.connector.enabled)
            .map(|c| &c.secrets)
    }
}

/// A connector's catalog with the caller's rules there, for deciding a whole listing.
pub struct Listing<'a> {
    tools: &'a CatalogMap,
    /// The caller's groups' rules here, then those of its elevations in force.
    grants: Vec<&'a CompiledRules>,
    /// Rules of profiles the caller may request here, with the profile's name.
    eligible: Vec<(&'a CompiledRules, &'a str)>,
    block_changed: bool,
}

impl Listing<'_> {
    /// True when no rules of the caller (groups, elevations, eligible profiles) concern this
    /// connector: nothing here can be shown, and a listing can skip it whole.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.eligible.is_empty()
    }

    /// Not allowed now, but a profile the caller may request would allow it: that profile's
    /// name. Blocks of the caller's groups still win.
    pub fn eligible_for(&self, tool: &str) -> Option<&str> {
        if self.eligible.is_empty() {
            return None;
        }
        let facts = self.tools.get(tool).map(|t| t.facts);
        let mut with: Vec<&CompiledRules> = self.grants.clone();
        with.push(self.eligible[0].0);
        for (rules, name) in &self.eligible {
            with.pop();
            with.push(rules);
            if allows(&with, tool, facts, self.block_changed) {
                return Some(name);
            }
        }
        None
    }

    /// The group whose yes each call of `tool` needs, if any.
    pub fn approval_group(&self, tool: &str) -> Option<&str> {
        self.tools.get(tool)?.approval_group.as_deref()
    }

    /// Whether the caller may call `tool` (as `Snapshot::allows`).
    pub fn allows(&self, tool: &str) -> bool {
        if self.grants.is_empty() {
            return false;
        }
        let facts = self.tools.get(tool).map(|t| t.facts);
        allows(&self.grants, tool, facts, self.block_changed)
    }
}

/// The live snapshot, replaced atomically on reload; readers never wait.
#[derive(Debug)]
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    store: Store,
    versions: AtomicU64,
    /// Reload requests so far, and the request count the current snapshot covers: a caller whose
    /// change is already covered by a reload that started after it does not reload again.
    requested: AtomicU64,
    covered: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
    /// Tells watchers (open MCP streams) that a new snapshot is in place.
    changes: tokio::sync::watch::Sender<u64>,
    /// This process, so it can ignore its own change notifications.
    instance: String,
    /// PostgreSQL: whether the change listener is connected and LISTENing (a replica that is
    /// not would miss other replicas' changes; `/readyz` reports it).
    following: std::sync::atomic::AtomicBool,
}

impl SnapshotHandle {
    /// Loads the first snapshot.
    pub async fn load(store: Store) -> Result<Arc<Self>> {
        let first = Snapshot::load(&store, 1, None).await?;
        Ok(Arc::new(SnapshotHandle {
            current: ArcSwap::from_pointee(first),
            store,
            versions: AtomicU64::new(1),
            requested: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(1),
            instance: uuid::Uuid::new_v4().to_string(),
            following: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rebuilds from the store and returns once the snapshot reflects every change committed
    /// before the call. Concurrent callers share one rebuild (a burst of SCIM writes costs a few
    /// reloads, not one each); reloads are serialised so an older read never replaces a newer one.
    pub async fn reload(&self) -> Result<()> {
        let wanted = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = self.reload_lock.lock().await;
        if self.covered.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        // Every request counted so far committed its change before counting; this load sees them.
        let covers = self.requested.load(Ordering::SeqCst);
        let version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
        let previous = self.get();
        let next = Snapshot::load(&self.store, version, Some(&previous)).await?;
        self.current.store(Arc::new(next));
        self.covered.store(covers, Ordering::SeqCst);
        self.changes.send_replace(version);
        Ok(())
    }

    /// After a change made in this process: rebuild, then tell the other replicas (PostgreSQL
    /// `NOTIFY`) so they rebuild too.
    pub async fn publish(&self) -> Result<()> {
        self.reload().await?;
        self.store.notify_change(&self.instance).await
    }

    /// Follows changes made by other replicas: on every notification (and after every reconnect,
    /// when notifications may have been missed) the snapshot is rebuilt. Runs until the process
    /// ends; only PostgreSQL has other replicas.
    pub async fn follow_changes(self: Arc<Self>, database_url: String) {
        use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
        use std::str::FromStr;
        let options = match PgConnectOptions::from_str(&database_url) {
            Ok(o) => o.application_name(&self.listener_name()),
            Err(e) => {
                tracing::error!(error = %e, "change listener: bad database URL; not following changes");
                return;
            }
        };
        // One connection, named so operators (and tests) can tell it apart. A short acquire
        // timeout keeps reconnect attempts frequent: sqlx backs off up to a fifth of it between
        // refused connections, so the default 30 s would leave a replica deaf for up to 6 s
        // after the database is back.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_lazy_with(options);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(mut l) => {
                    // Report a lost connection at once (not after reconnecting), so the replica
                    // is not ready while it hears nothing, and reconnect below: LISTEN first,
                    // then catch up, or a change made in between would be missed.
                    l.eager_reconnect(false);
                    l
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener cannot connect; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(crate::store::CHANGE_CHANNEL).await {
                tracing::warn!(error = %e, "change listener cannot LISTEN; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            // Anything that changed while we were not listening.
            if !self.catch_up().await {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            loop {
                // `try_recv` (not `recv`, which reconnects silently) so a lost connection is
                // seen; what was notified meanwhile is caught up by a rebuild after reconnecting.
                match listener.try_recv().await {
                    Ok(Some(n)) if n.payload() == self.instance => {}
                    Ok(Some(_)) => {
                        // A change not applied is a change missed: not following until a
                        // reconnect has caught up (retried every second).
                        if let Err(e) = self.reload().await {
                            self.following.store(false, Ordering::SeqCst);
                            tracing::warn!(error = %e, "snapshot reload after a change notification failed; catching up");
                            break;
                        }
                    }
                    Ok(None) => {
                        self.following.store(false, Ordering::SeqCst);
                        tracing::warn!("change listener lost its connection; reconnecting");
                        break;
                    }
                    Err(e) => {
                        self.following.store(false, Ordering::SeqCst);
                        tracing::warn!(error = %e, "change listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    /// Rebuilds after a (re)connect of the change listener; following again when it worked.
    async fn catch_up(&self) -> bool {
        match self.reload().await {
            Ok(()) => {
                self.following.store(true, Ordering::SeqCst);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot reload failed; retrying in 1 s");
                false
            }
        }
    }

    /// The PostgreSQL `application_name` of this process's change listener.
    pub fn listener_name(&self) -> String {
        format!("toolgate-changes-{}", &self.instance[..8])
    }

    /// SQLite: follows changes made by other processes on the same file (the CLI's `policy
    /// apply`), which write a marker (`Store::announce_change`); polled every `every`.
    pub async fn watch_marker(self: Arc<Self>, every: std::time::Duration) {
        let mut seen = self.store.change_marker().await.ok().flatten();
        loop {
            tokio::time::sleep(every).await;
            match self.store.change_marker().await {
                Ok(now) if now != seen => {
                    seen = now;
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "snapshot reload after an outside change failed");
                    } else {
                        tracing::info!(
                            "configuration changed by another process; snapshot reloaded"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the change marker"),
            }
        }
    }

    /// PostgreSQL: whether this replica currently hears other replicas' changes.
    pub fn follows_changes(&self) -> bool {
        self.following.load(Ordering::SeqCst)
    }

    /// A receiver that wakes whenever a new snapshot is in place.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
