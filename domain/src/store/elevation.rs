//! Elevation profiles, elevation requests and per-call approvals in the database. State changes
//! are compare-and-set updates (`... WHERE status = 'pending'`), so two approvers, two replicas or
//! two retries of one call cannot both win.

use super::{ResultExt, Store, new_id, to_json_list};
use crate::clock::from_millis;
use crate::elevation::{
    ApprovalStatus, CallApproval, Elevation, ElevationProfile, ElevationStatus, PENDING_TTL_MS,
    ProfileInput, ProfileTarget, check_comment, check_decider,
};
use crate::{Error, Result};

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: String,
    name: String,
    description: String,
    targets: String,
    eligible_groups: String,
    approver_group: String,
    max_minutes: i64,
    justification_required: i64,
    ticket_required: i64,
    auto_approve: i64,
    requester_sets_duration: i64,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

impl ProfileRow {
    fn into_model(self) -> Result<ElevationProfile> {
        let targets: Vec<ProfileTarget> = serde_json::from_str(&self.targets)
            .map_err(|e| Error::Internal(format!("stored profile targets: {e}")))?;
        Ok(ElevationProfile {
            id: self.id,
            name: self.name,
            description: self.description,
            targets,
            eligible_groups: serde_json::from_str(&self.eligible_groups).unwrap_or_default(),
            approver_group: self.approver_group,
            max_minutes: u32::try_from(self.max_minutes).unwrap_or(0),
            justification_required: self.justification_required != 0,
            ticket_required: self.ticket_required != 0,
            auto_approve: self.auto_approve != 0,
            requester_sets_duration: self.requester_sets_duration != 0,
            enabled: self.enabled != 0,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

const PROFILE_COLUMNS: &str = "id, name, description, targets, eligible_groups, approver_group,
    max_minutes, justification_required, ticket_required, auto_approve, requester_sets_duration,
    enabled, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct ElevationRow {
    id: String,
    profile_id: String,
    profile_name: String,
    subject_kind: String,
    subject_id: String,
    subject_name: String,
    requested_by: String,
    requested_by_name: String,
    source: String,
    justification: String,
    ticket: Option<String>,
    minutes: i64,
    status: String,
    created_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    decided_by_name: Option<String>,
    comment: Option<String>,
    starts_at: Option<i64>,
    expires_at: Option<i64>,
    ended_at: Option<i64>,
    ended_by_name: Option<String>,
}

impl ElevationRow {
    fn into_model(self) -> Result<Elevation> {
        Ok(Elevation {
            status: ElevationStatus::parse(&self.status).ok_or_else(|| {
                Error::Internal(format!("unknown elevation status {:?}", self.status))
            })?,
            id: self.id,
            profile_id: self.profile_id,
            profile_name: self.profile_name,
            subject_kind: self.subject_kind,
            subject_id: self.subject_id,
            subject_name: self.subject_name,
            requested_by: self.requested_by,
            requested_by_name: self.requested_by_name,
            source: self.source,
            justification: self.justification,
            ticket: self.ticket,
            minutes: u32::try_from(self.minutes).unwrap_or(0),
            created_at: from_millis(self.created_at),
            decided_at: self.decided_at.map(from_millis),
            decided_by: self.decided_by,
            decided_by_name: self.decided_by_name,
            comment: self.comment,
            starts_at: self.starts_at.map(from_millis),
            expires_at: self.expires_at.map(from_millis),
            ended_at: self.ended_at.map(from_millis),
            ended_by_name: self.ended_by_name,
        })
    }
}

const ELEVATION_COLUMNS: &str = "id, profile_id, profile_name, subject_kind, subject_id,
    subject_name, requested_by, requested_by_name, source, justification, ticket, minutes, status,
    created_at, decided_at, decided_by, decided_by_name, comment, starts_at, expires_at, ended_at,
    ended_by_name";

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    id: String,
    subject_kind: String,
    subject_id: String,
    subject_name: String,
    client_name: Option<String>,
    connector: String,
    tool: String,
    args_hash: String,
    args_redacted: Option<String>,
    approver_group: String,
    status: String,
    created_at: i64,
    expires_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    decided_by_name: Option<String>,
    comment: Option<String>,
    used_at: Option<i64>,
}

impl ApprovalRow {
    fn into_model(self) -> Result<CallApproval> {
        Ok(CallApproval {
            status: ApprovalStatus::parse(&self.status).ok_or_else(|| {
                Error::Internal(format!("unknown approval status {:?}", self.status))
            })?,
            id: self.id,
            subject_kind: self.subject_kind,
            subject_id: self.subject_id,
            subject_name: self.subject_name,
            client_name: self.client_name,
            connector: self.connector,
            tool: self.tool,
            args_hash: self.args_hash,
            args_redacted: self.args_redacted,
            approver_group: self.approver_group,
            created_at: from_millis(self.created_at),
            expires_at: from_millis(self.expires_at),
            decided_at: self.decided_at.map(from_millis),
            decided_by: self.decided_by,
            decided_by_name: self.decided_by_name,
            comment: self.comment,
            used_at: self.used_at.map(from_millis),
        })
    }
}

const APPROVAL_COLUMNS: &str = "id, subject_kind, subject_id, subject_name, client_name,
    connector, tool, args_hash, args_redacted, approver_group, status, created_at, expires_at,
    decided_at, decided_by, decided_by_name, comment, used_at";

/// A subject (person or service principal) to elevate.
#[derive(Clone, Debug)]
pub struct ElevationSubject {
    /// `person` or `service_principal`.
    pub kind: String,
    pub id: String,
    pub name: String,
    /// Group ids.
    pub groups: Vec<String>,
}

/// A request, checked against its profile by the caller (`elevation::check_ask`,
/// `granted_minutes`).
#[derive(Clone, Debug)]
pub struct NewElevation {
    pub profile: ElevationProfile,
    pub subject: ElevationSubject,
    pub requested_by: String,
    pub requested_by_name: String,
    pub source: String,
    pub justification: String,
    pub ticket: Option<String>,
    pub minutes: u32,
}

/// Which elevations to list.
#[derive(Clone, Debug, Default)]
pub struct ElevationFilter {
    pub status: Option<ElevationStatus>,
    pub subject_id: Option<String>,
    pub profile_id: Option<String>,
    /// Only requests this approver group decides (group ids).
    pub approver_groups: Option<Vec<String>>,
    pub limit: Option<u32>,
}

/// Which per-call approvals to list.
#[derive(Clone, Debug, Default)]
pub struct ApprovalFilter {
    pub status: Option<ApprovalStatus>,
    pub subject_id: Option<String>,
    pub approver_groups: Option<Vec<String>>,
    pub limit: Option<u32>,
}

/// A call that needs approval, as the proxy sees it.
#[derive(Clone, Debug)]
pub struct CallBinding {
    pub subject_kind: String,
    pub subject_id: String,
    pub subject_name: String,
    pub client_name: Option<String>,
    pub connector: String,
    pub tool: String,
    pub args_hash: String,
    pub args_redacted: Option<String>,
    pub approver_group: String,
}

/// What a call that needs approval may do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// An approval for exactly this call was consumed: run it (once).
    Run(String),
    /// Waiting for an approver; `true` when this call created the request.
    Pending(String, bool),
    /// An approver said no (until the denial expires), with their comment.
    Denied(String, Option<String>),
}

/// An active elevation, as the snapshot holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveElevationRow {
    pub id: String,
    pub subject_id: String,
    pub profile_id: String,
    /// Unix ms.
    pub expires_at: i64,
}

fn limit(l: Option<u32>) -> i64 {
    i64::from(l.unwrap_or(200).clamp(1, 1000))
}

/// `$n, $n+1, ...` for an IN list starting at parameter `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    async fn check_profile_refs(&self, input: &ProfileInput) -> Result<()> {
        let groups: Vec<(String,)> = sqlx::query_as("SELECT id FROM access_groups")
            .fetch_all(&self.pool)
            .await?;
        let has = |g: &str| groups.iter().any(|(id,)| id == g);
        for g in input.eligible_groups.iter().chain([&input.approver_group]) {
            if !has(g) {
                return Err(Error::invalid(format!("group {g:?} does not exist")));
            }
        }
        let connectors: Vec<(String,)> = sqlx::query_as("SELECT name FROM connectors")
            .fetch_all(&self.pool)
            .await?;
        for t in &input.targets {
            if !connectors.iter().any(|(n,)| *n == t.connector) {
                return Err(Error::invalid(format!(
                    "connector {:?} does not exist",
                    t.connector
                )));
            }
        }
        Ok(())
    }

    /// Every profile, by name.
    pub async fn list_elevation_profiles(&self) -> Result<Vec<ElevationProfile>> {
        let sql = format!("SELECT {PROFILE_COLUMNS} FROM elevation_profiles ORDER BY lower(name)");
        let rows = sqlx::query_as::<_, ProfileRow>(&sql)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(ProfileRow::into_model).collect()
    }

    /// One profile by id or (exact) name.
    pub async fn elevation_profile(&self, id_or_name: &str) -> Result<ElevationProfile> {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM elevation_profiles WHERE id = $1
             UNION ALL SELECT {PROFILE_COLUMNS} FROM elevation_profiles WHERE name = $2"
        );
        sqlx::query_as::<_, ProfileRow>(&sql)
            .bind(id_or_name)
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("elevation profile"))?
            .into_model()
    }

    pub async fn create_elevation_profile(&self, input: ProfileInput) -> Result<ElevationProfile> {
        let input = input.validated().map_err(Error::invalid)?;
        self.check_profile_refs(&input).await?;
        let id = new_id();
        let now = self.now_ms();
        let targets =
            serde_json::to_string(&input.targets).map_err(|e| Error::Internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO elevation_profiles (id, name, description, targets, eligible_groups,
                approver_group, max_minutes, justification_required, ticket_required, auto_approve,
                requester_sets_duration, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(&id)
        .bind(&input.name)
        .bind(input.description.trim())
        .bind(targets)
        .bind(to_json_list(&input.eligible_groups))
        .bind(&input.approver_group)
        .bind(i64::from(input.max_minutes))
        .bind(i64::from(input.justification_required))
        .bind(i64::from(input.ticket_required))
        .bind(i64::from(input.auto_approve))
        .bind(i64::from(input.requester_sets_duration))
        .bind(i64::from(input.enabled))
        .bind(now)
        .execute(&self.pool)
        .await
        .on_unique(|| format!("an elevation profile named {:?} exists", input.name))?;
        self.elevation_profile(&id).await
    }

    /// Replaces a profile; returns it before and after. Elevations already granted keep their
    /// expiry (a shorter maximum applies to new requests).
    pub async fn update_elevation_profile(
        &self,
        id: &str,
        input: ProfileInput,
    ) -> Result<(ElevationProfile, ElevationProfile)> {
        let input = input.validated().map_err(Error::invalid)?;
        let before = self.elevation_profile(id).await?;
        self.check_profile_refs(&input).await?;
        let targets =
            serde_json::to_string(&input.targets).map_err(|e| Error::Internal(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE elevation_profiles SET name = $1, description = $2, targets = $3,
                eligible_groups = $4, approver_group = $5, max_minutes = $6,
                justification_required = $7, ticket_required = $8, auto_approve = $9,
                requester_sets_duration = $10, enabled = $11, updated_at = $12
             WHERE id = $13",
        )
        .bind(&input.name)
        .bind(input.description.trim())
        .bind(targets)
        .bind(to_json_list(&input.eligible_groups))
        .bind(&input.approver_group)
        .bind(i64::from(input.max_minutes))
        .bind(i64::from(input.justification_required))
        .bind(i64::from(input.ticket_required))
        .bind(i64::from(input.auto_approve))
        .bind(i64::from(input.requester_sets_duration))
        .bind(i64::from(input.enabled))
        .bind(self.now_ms())
        .bind(&before.id)
        .execute(&mut *tx)
        .await
        .on_unique(|| format!("an elevation profile named {:?} exists", input.name))?;
        sqlx::query("UPDATE elevations SET profile_name = $1 WHERE profile_id = $2")
            .bind(&input.name)
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let after = self.elevation_profile(&before.id).await?;
        Ok((before, after))
    }

    /// Deletes a profile: its pending requests are cancelled and its active elevations revoked
    /// (returned, for the audit log and notifications); history keeps the profile's name.
    pub async fn delete_elevation_profile(
        &self,
        id: &str,
        by_name: &str,
    ) -> Result<(ElevationProfile, Vec<Elevation>)> {
        let profile = self.elevation_profile(id).await?;
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {ELEVATION_COLUMNS} FROM elevations
             WHERE profile_id = $1 AND status IN ('pending', 'active')"
        );
        let open = sqlx::query_as::<_, ElevationRow>(&sql)
            .bind(&profile.id)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE elevations SET status = CASE status WHEN 'pending' THEN 'cancelled'
                 ELSE 'revoked' END, ended_at = $1, ended_by_name = $2
             WHERE profile_id = $3 AND status IN ('pending', 'active')",
        )
        .bind(now)
        .bind(by_name)
        .bind(&profile.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM elevation_profiles WHERE id = $1")
            .bind(&profile.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let ended = open
            .into_iter()
            .map(ElevationRow::into_model)
            .collect::<Result<Vec<_>>>()?;
        Ok((profile, ended))
    }

    /// The subject's groups: a person's memberships (refused when the person is disabled or
    /// unknown), or a service principal's groups (refused when disabled).
    pub async fn elevation_subject(&self, kind: &str, id: &str) -> Result<ElevationSubject> {
        match kind {
            "person" => {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT user_name, active FROM users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                let (name, active) = row.ok_or(Error::NotFound("user"))?;
                if active == 0 {
                    return Err(Error::invalid("this person is disabled"));
                }
                let groups: Vec<(String,)> =
                    sqlx::query_as("SELECT group_id FROM group_members WHERE user_id = $1")
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(ElevationSubject {
                    kind: kind.into(),
                    id: id.into(),
                    name,
                    groups: groups.into_iter().map(|(g,)| g).collect(),
                })
            }
            "service_principal" => {
                let sp = self.service_principal(id).await?;
                if sp.disabled {
                    return Err(Error::invalid("this service principal is disabled"));
                }
                Ok(ElevationSubject {
                    kind: kind.into(),
                    id: sp.id,
                    name: sp.name,
                    groups: sp.groups,
                })
            }
            _ => Err(Error::invalid(format!("unknown subject kind {kind:?}"))),
        }
    }

    /// Records a request; with `auto` (the profile auto-approves) it is active at once. One open
    /// request or active elevation per subject and profile.
    pub async fn create_elevation(&self, new: NewElevation, auto: bool) -> Result<Elevation> {
        let p = &new.profile;
        if !p.enabled {
            return Err(Error::invalid(format!(
                "elevation profile {:?} is disabled",
                p.name
            )));
        }
        if !new
            .subject
            .groups
            .iter()
            .any(|g| p.eligible_groups.contains(g))
        {
            return Err(Error::Forbidden(format!(
                "{} is not in a group eligible for elevation profile {:?}",
                new.subject.name, p.name
            )));
        }
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        let open: Option<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, status, expires_at FROM elevations
             WHERE subject_id = $1 AND profile_id = $2
               AND ((status = 'pending' AND created_at > $3)
                    OR (status = 'active' AND expires_at > $4))",
        )
        .bind(&new.subject.id)
        .bind(&p.id)
        .bind(now - PENDING_TTL_MS)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, status, expires)) = open {
            return Err(Error::Conflict(if status == "pending" {
                format!(
                    "a request for {:?} is already waiting for approval ({id})",
                    p.name
                )
            } else {
                format!(
                    "{:?} is already active ({id}) until {}",
                    p.name,
                    from_millis(expires.unwrap_or(now)).to_rfc3339()
                )
            }));
        }
        let id = new_id();
        let minutes = i64::from(new.minutes);
        let (status, starts, expires, decided_at, decided_by_name) = if auto {
            (
                "active",
                Some(now),
                Some(now + minutes * 60_000),
                Some(now),
                Some("auto-approved by profile"),
            )
        } else {
            ("pending", None, None, None, None)
        };
        sqlx::query(
            "INSERT INTO elevations (id, profile_id, profile_name, subject_kind, subject_id,
                subject_name, requested_by, requested_by_name, source, justification, ticket,
                minutes, status, created_at, decided_at, decided_by_name, starts_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&id)
        .bind(&p.id)
        .bind(&p.name)
        .bind(&new.subject.kind)
        .bind(&new.subject.id)
        .bind(&new.subject.name)
        .bind(&new.requested_by)
        .bind(&new.requested_by_name)
        .bind(&new.source)
        .bind(&new.justification)
        .bind(&new.ticket)
        .bind(minutes)
        .bind(status)
        .bind(now)
        .bind(decided_at)
        .bind(decided_by_name)
        .bind(starts)
        .bind(expires)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.elevation(&id).await
    }

    pub async fn elevation(&self, id: &str) -> Result<Elevation> {
        let sql = format!("SELECT {ELEVATION_COLUMNS} FROM elevations WHERE id = $1");
        sqlx::query_as::<_, ElevationRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("elevation"))?
            .into_model()
    }

    /// Elevations, newest first.
    pub async fn list_elevations(&self, f: &ElevationFilter) -> Result<Vec<Elevation>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let now = self.now_ms();
        let mut time_bind: Option<i64> = None;
        match f.status {
            // Stored states say less than the clock: filter on what holds now.
            Some(ElevationStatus::Active) => {
                clauses.push("status = 'active'".into());
                time_bind = Some(now);
                clauses.push(format!("expires_at > ${}", binds.len() + 1));
            }
            Some(ElevationStatus::Pending) => {
                clauses.push("status = 'pending'".into());
                time_bind = Some(now - PENDING_TTL_MS);
                clauses.push(format!("created_at > ${}", binds.len() + 1));
            }
            Some(ElevationStatus::Expired) => {
                time_bind = Some(now);
                clauses.push(format!(
                    "(status = 'expired' OR (status = 'active' AND expires_at <= ${}))",
                    binds.len() + 1
                ));
            }
            Some(s) => {
                clauses.push(format!("status = '{}'", s.as_str()));
            }
            None => {}
        }
        let mut next = if time_bind.is_some() { 2 } else { 1 };
        if let Some(s) = &f.subject_id {
            clauses.push(format!("subject_id = ${next}"));
            binds.push(s.clone());
            next += 1;
        }
        if let Some(p) = &f.profile_id {
            clauses.push(format!("profile_id = ${next}"));
            binds.push(p.clone());
            next += 1;
        }
        if let Some(groups) = &f.approver_groups {
            if groups.is_empty() {
                return Ok(vec![]);
            }
            let ids: Vec<(String,)> = {
                let sql = format!(
                    "SELECT id FROM elevation_profiles WHERE approver_group IN ({})",
                    placeholders(1, groups.len())
                );
                let mut q = sqlx::query_as(&sql);
                for g in groups {
                    q = q.bind(g);
                }
                q.fetch_all(&self.pool).await?
            };
            if ids.is_empty() {
                return Ok(vec![]);
            }
            clauses.push(format!("profile_id IN ({})", placeholders(next, ids.len())));
            binds.extend(ids.into_iter().map(|(i,)| i));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {ELEVATION_COLUMNS} FROM elevations {filter} ORDER BY created_at DESC, id LIMIT {}",
            limit(f.limit)
        );
        let mut q = sqlx::query_as::<_, ElevationRow>(&sql);
        if let Some(t) = time_bind {
            q = q.bind(t);
        }
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(ElevationRow::into_model)
            .collect()
    }

    /// Approves or denies a pending request. The decider (a person: `decider_id` is a user id)
    /// must be in the profile's approver group and neither the subject nor the requester.
    pub async fn decide_elevation(
        &self,
        id: &str,
        approve: bool,
        decider_id: &str,
        decider_name: &str,
        comment: Option<&str>,
    ) -> Result<Elevation> {
        let comment = check_comment(comment).map_err(Error::invalid)?;
        let e = self.elevation(id).await?;
        let now = self.now_ms();
        if e.status_at(from_millis(now)) != ElevationStatus::Pending {
            return Err(Error::Conflict(format!(
                "this request is {}, not waiting for a decision",
                e.status_at(from_millis(now)).as_str()
            )));
        }
        let profile = self.elevation_profile(&e.profile_id).await?;
        let decider_groups = self.group_ids_of(decider_id).await?;
        check_decider(
            &profile.approver_group,
            &e.subject_id,
            &e.requested_by,
            decider_id,
            &decider_groups,
        )
        .map_err(Error::Forbidden)?;
        let minutes = i64::from(e.minutes.min(profile.max_minutes));
        let done = if approve {
            sqlx::query(
                "UPDATE elevations SET status = 'active', decided_at = $1, decided_by = $2,
                    decided_by_name = $3, comment = $4, starts_at = $1, expires_at = $5,
                    minutes = $6
                 WHERE id = $7 AND status = 'pending'",
            )
            .bind(now)
            .bind(decider_id)
            .bind(decider_name)
            .bind(&comment)
            .bind(now + minutes * 60_000)
            .bind(minutes)
            .bind(id)
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query(
                "UPDATE elevations SET status = 'denied', decided_at = $1, decided_by = $2,
                    decided_by_name = $3, comment = $4
                 WHERE id = $5 AND status = 'pending'",
            )
            .bind(now)
            .bind(decider_id)
            .bind(decider_name)
            .bind(&comment)
            .bind(id)
            .execute(&self.pool)
            .await?
        };
        if done.rows_affected() == 0 {
            return Err(Error::Conflict(
                "someone else decided this request first".into(),
            ));
        }
        self.elevation(id).await
    }

    /// Ends an elevation early, or withdraws a pending request: `revoked` by an approver or
    /// admin, `ended` by the requester (their own), `cancelled` for a pending request.
    pub async fn end_elevation(&self, id: &str, by_name: &str, revoke: bool) -> Result<Elevation> {
        let e = self.elevation(id).await?;
        let now = self.now_ms();
        let (from, to) = match e.status_at(from_millis(now)) {
            ElevationStatus::Active => ("active", if revoke { "revoked" } else { "ended" }),
            ElevationStatus::Pending => ("pending", "cancelled"),
            s => {
                return Err(Error::Conflict(format!(
                    "this elevation is {}, nothing to end",
                    s.as_str()
                )));
            }
        };
        let done = sqlx::query(
            "UPDATE elevations SET status = $1, ended_at = $2, ended_by_name = $3
             WHERE id = $4 AND status = $5",
        )
        .bind(to)
        .bind(now)
        .bind(by_name)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Conflict(
                "this elevation changed meanwhile; reload".into(),
            ));
        }
        self.elevation(id).await
    }

    /// Active elevations not expired at `now_ms`, for the snapshot.
    pub async fn active_elevations(&self, now_ms: i64) -> Result<Vec<ActiveElevationRow>> {
        let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, subject_id, profile_id, expires_at FROM elevations
             WHERE status = 'active' AND expires_at > $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, subject_id, profile_id, expires)| ActiveElevationRow {
                id,
                subject_id,
                profile_id,
                expires_at: expires.unwrap_or(0),
            })
            .collect())
    }

    /// Bookkeeping after the fact (enforcement never waits for it): active elevations past
    /// their expiry become `expired`, pending requests past their time `cancelled`, and approvals
    /// past theirs `expired`. Returns the elevations that expired or were cancelled, each once
    /// even with several replicas (compare-and-set per row).
    pub async fn settle_elevations(&self) -> Result<Vec<Elevation>> {
        let now = self.now_ms();
        let sql = format!(
            "SELECT {ELEVATION_COLUMNS} FROM elevations
             WHERE (status = 'active' AND expires_at <= $1)
                OR (status = 'pending' AND created_at <= $2)
             ORDER BY created_at LIMIT 500"
        );
        let due = sqlx::query_as::<_, ElevationRow>(&sql)
            .bind(now)
            .bind(now - PENDING_TTL_MS)
            .fetch_all(&self.pool)
            .await?;
        let mut settled = Vec::new();
        for row in due {
            let (from, to) = if row.status == "active" {
                ("active", "expired")
            } else {
                ("pending", "cancelled")
            };
            let done = sqlx::query(
                "UPDATE elevations SET status = $1, ended_at = COALESCE(expires_at, $2),
                    ended_by_name = COALESCE(ended_by_name, 'toolgate')
                 WHERE id = $3 AND status = $4",
            )
            .bind(to)
            .bind(now)
            .bind(&row.id)
            .bind(from)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                let mut e = row.into_model()?;
                e.status = ElevationStatus::parse(to).unwrap_or(e.status);
                settled.push(e);
            }
        }
        sqlx::query(
            "UPDATE call_approvals SET status = 'expired'
             WHERE status IN ('pending', 'approved') AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(settled)
    }

    /// The per-call approval step of a call: consume a matching approval (single-use), or
    /// report the pending or denied request, or open a new one valid for `ttl_ms`.
    pub async fn claim_call_approval(&self, b: &CallBinding, ttl_ms: i64) -> Result<Claim> {
        let now = self.now_ms();
        let mut tx = self.write_tx().await?;
        type Found = (String, String, Option<String>);
        let found: Vec<Found> = sqlx::query_as(
            "SELECT id, status, comment FROM call_approvals
             WHERE subject_id = $1 AND connector = $2 AND tool = $3 AND args_hash = $4
               AND status IN ('approved', 'pending', 'denied') AND expires_at > $5
             ORDER BY created_at",
        )
        .bind(&b.subject_id)
        .bind(&b.connector)
        .bind(&b.tool)
        .bind(&b.args_hash)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if let Some((id, _, _)) = found.iter().find(|f| f.1 == "approved") {
            let done = sqlx::query(
                "UPDATE call_approvals SET status = 'used', used_at = $1
                 WHERE id = $2 AND status = 'approved'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if done.rows_affected() == 1 {
                return Ok(Claim::Run(id.clone()));
            }
            // Another replica used it in between: this retry needs a new approval.
            return Box::pin(self.claim_call_approval(b, ttl_ms)).await;
        }
        if let Some((id, _, _)) = found.iter().find(|f| f.1 == "pending") {
            return Ok(Claim::Pending(id.clone(), false));
        }
        if let Some((id, _, comment)) = found.iter().rev().find(|f| f.1 == "denied") {
            return Ok(Claim::Denied(id.clone(), comment.clone()));
        }
        let id = new_id();
        sqlx::query(
            "INSERT INTO call_approvals (id, subject_kind, subject_id, subject_name, client_name,
                connector, tool, args_hash, args_redacted, approver_group, status, created_at,
                expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $12)",
        )
        .bind(&id)
        .bind(&b.subject_kind)
        .bind(&b.subject_id)
        .bind(&b.subject_name)
        .bind(&b.client_name)
        .bind(&b.connector)
        .bind(&b.tool)
        .bind(&b.args_hash)
        .bind(&b.args_redacted)
        .bind(&b.approver_group)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claim::Pending(id, true))
    }

    pub async fn call_approval(&self, id: &str) -> Result<CallApproval> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM call_approvals WHERE id = $1");
        sqlx::query_as::<_, ApprovalRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("approval"))?
            .into_model()
    }

    /// Per-call approvals, newest first.
    pub async fn list_call_approvals(&self, f: &ApprovalFilter) -> Result<Vec<CallApproval>> {
        let now = self.now_ms();
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut uses_now = false;
        match f.status {
            Some(s @ (ApprovalStatus::Pending | ApprovalStatus::Approved)) => {
                clauses.push(format!("status = '{}' AND expires_at > $1", s.as_str()));
                uses_now = true;
            }
            Some(ApprovalStatus::Expired) => {
                clauses.push(
                    "(status = 'expired' OR (status IN ('pending', 'approved') AND expires_at <= $1))"
                        .into(),
                );
                uses_now = true;
            }
            Some(s) => clauses.push(format!("status = '{}'", s.as_str())),
            None => {}
        }
        let mut next = if uses_now { 2 } else { 1 };
        if let Some(s) = &f.subject_id {
            clauses.push(format!("subject_id = ${next}"));
            binds.push(s.clone());
            next += 1;
        }
        if let Some(groups) = &f.approver_groups {
            if groups.is_empty() {
                return Ok(vec![]);
            }
            clauses.push(format!(
                "approver_group IN ({})",
                placeholders(next, groups.len())
            ));
            binds.extend(groups.iter().cloned());
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM call_approvals {filter}
             ORDER BY created_at DESC, id LIMIT {}",
            limit(f.limit)
        );
        let mut q = sqlx::query_as::<_, ApprovalRow>(&sql);
        if uses_now {
            q = q.bind(now);
        }
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(ApprovalRow::into_model)
            .collect()
    }

    /// Approves (valid for `ttl_ms` from now) or denies a pending call. The decider must be in
    /// the tool's approver group and not the caller.
    pub async fn decide_call_approval(
        &self,
        id: &str,
        approve: bool,
        decider_id: &str,
        decider_name: &str,
        comment: Option<&str>,
        ttl_ms: i64,
    ) -> Result<CallApproval> {
        let comment = check_comment(comment).map_err(Error::invalid)?;
        let a = self.call_approval(id).await?;
        let now = self.now_ms();
        let status = a.status_at(from_millis(now));
        if status != ApprovalStatus::Pending {
            return Err(Error::Conflict(format!(
                "this call is {}, not waiting for a decision",
                status.as_str()
            )));
        }
        let decider_groups = self.group_ids_of(decider_id).await?;
        check_decider(
            &a.approver_group,
            &a.subject_id,
            &a.subject_id,
            decider_id,
            &decider_groups,
        )
        .map_err(Error::Forbidden)?;
        let done = sqlx::query(
            "UPDATE call_approvals SET status = $1, decided_at = $2, decided_by = $3,
                decided_by_name = $4, comment = $5, expires_at = $6
             WHERE id = $7 AND status = 'pending' AND expires_at > $2",
        )
        .bind(if approve { "approved" } else { "denied" })
        .bind(now)
        .bind(decider_id)
        .bind(decider_name)
        .bind(&comment)
        .bind(now + ttl_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Conflict(
                "someone else decided this call first".into(),
            ));
        }
        self.call_approval(id).await
    }

    /// Counts of what waits for the approver groups given (pending elevations, pending calls).
    pub async fn pending_counts(&self, approver_groups: &[String]) -> Result<(u64, u64)> {
        let e = self
            .list_elevations(&ElevationFilter {
                status: Some(ElevationStatus::Pending),
                approver_groups: Some(approver_groups.to_vec()),
                limit: Some(1000),
                ..Default::default()
            })
            .await?
            .len();
        let c = self
            .list_call_approvals(&ApprovalFilter {
                status: Some(ApprovalStatus::Pending),
                approver_groups: Some(approver_groups.to_vec()),
                limit: Some(1000),
                ..Default::default()
            })
            .await?
            .len();
        Ok((e as u64, c as u64))
    }

    /// A user's group ids.
    pub async fn group_ids_of(&self, user_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT group_id FROM group_members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(g,)| g).collect())
    }
}
