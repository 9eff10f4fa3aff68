//! The elevation and approval workflow. Every path — the dashboard, the admin API, an agent's
//! `toolgate__request_elevation` call, the proxy's per-call approvals and the expiry sweep — goes
//! through `Workflow`, so each change is validated, stored, audited, published to the snapshot
//! (and other replicas) and notified the same way.

use crate::audit::AuditSink;
use crate::elevation::{
    CallApproval, Elevation, ElevationAsk, ElevationSettings, ElevationStatus, check_ask,
    granted_minutes,
};
use crate::snapshot::SnapshotHandle;
use crate::store::{ElevationSubject, NewAuditEvent, NewElevation, Store, setting_keys};
use crate::{Error, Result};
use std::sync::Arc;

/// Something that happened, for the notification webhook.
#[derive(Clone, Debug)]
pub enum Notice {
    /// `event`: `elevation.requested`, `elevation.approved`, `elevation.denied`,
    /// `elevation.activated` (auto-approved), `elevation.revoked`, `elevation.ended`,
    /// `elevation.cancelled`, `elevation.expired`.
    Elevation {
        event: &'static str,
        elevation: Elevation,
    },
    /// `approval.requested`, `approval.approved`, `approval.denied`.
    Approval {
        event: &'static str,
        approval: CallApproval,
    },
}

/// Delivers notices (the server posts them to the configured webhook). Must not block.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    fn notify(&self, notice: Notice);
}

/// A notifier that drops everything (no webhook; tests).
#[derive(Debug, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _: Notice) {}
}

/// Who acts: a person (user id), a local admin account, an admin token or Toolgate itself.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: String,
    pub name: String,
    /// `person`, `admin`, `service_principal` or `system`.
    pub kind: &'static str,
}

/// The workflow, shared by every path that changes an elevation or an approval.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub store: Store,
    pub snapshot: Arc<SnapshotHandle>,
    pub audit: AuditSink,
    pub notifier: Arc<dyn Notifier>,
}

fn detail_of(e: &Elevation) -> String {
    serde_json::json!({
        "profile": e.profile_name,
        "subject": e.subject_name,
        "subject_id": e.subject_id,
        "requested_by": e.requested_by_name,
        "source": e.source,
        "justification": e.justification,
        "ticket": e.ticket,
        "minutes": e.minutes,
        "status": e.status,
        "expires_at": e.expires_at,
        "comment": e.comment,
    })
    .to_string()
}

impl Workflow {
    /// The elevation settings in force.
    pub async fn settings(&self) -> Result<ElevationSettings> {
        Ok(self
            .store
            .setting(setting_keys::ELEVATION)
            .await?
            .unwrap_or_default())
    }

    async fn record(&self, kind: &str, actor: &Actor, e: &Elevation) {
        let event = NewAuditEvent {
            principal_id: Some(actor.id.clone()),
            subject_kind: Some(e.subject_kind.clone()),
            elevation_id: Some(e.id.clone()),
            detail: Some(detail_of(e)),
            rule: Some(format!(
                "profile \"{}\" for {} ({})",
                e.profile_name, e.subject_name, e.subject_kind
            )),
            ..NewAuditEvent::new(self.store.clock().now(), kind, &actor.name)
        };
        self.audit.record_after_the_fact(event).await;
    }

    async fn publish(&self) {
        if let Err(e) = self.snapshot.publish().await {
            tracing::error!(error = %e, "policy snapshot reload failed after an elevation change");
        }
    }

    /// Asks for an elevation of `subject`, on behalf of `requester` (the subject itself, or a
    /// human asking for a service principal). Auto-approving profiles activate at once.
    pub async fn request(
        &self,
        subject: ElevationSubject,
        requester: &Actor,
        ask: &ElevationAsk,
        source: &str,
    ) -> Result<Elevation> {
        let profile = match self.store.elevation_profile(ask.profile.trim()).await {
            Ok(p) => p,
            Err(Error::NotFound(_)) => {
                return Err(Error::invalid(format!(
                    "no elevation profile named {:?}",
                    ask.profile
                )));
            }
            Err(e) => return Err(e),
        };
        let (justification, ticket) = check_ask(&profile, ask).map_err(Error::invalid)?;
        let minutes = granted_minutes(&profile, ask.minutes).map_err(Error::invalid)?;
        let auto = profile.auto_approve;
        let e = self
            .store
            .create_elevation(
                NewElevation {
                    profile,
                    subject,
                    requested_by: requester.id.clone(),
                    requested_by_name: requester.name.clone(),
                    source: source.into(),
                    justification,
                    ticket,
                    minutes,
                },
                auto,
            )
            .await?;
        self.record("elevation.requested", requester, &e).await;
        if auto {
            self.record("elevation.activated", requester, &e).await;
            self.publish().await;
            self.notifier.notify(Notice::Elevation {
                event: "elevation.activated",
                elevation: e.clone(),
            });
        } else {
            self.notifier.notify(Notice::Elevation {
                event: "elevation.requested",
                elevation: e.clone(),
            });
        }
        Ok(e)
    }

    /// Approves or denies a pending request (separation of duties is the store's check).
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        decider: &Actor,
        comment: Option<&str>,
    ) -> Result<Elevation> {
        let e = self
            .store
            .decide_elevation(id, approve, &decider.id, &decider.name, comment)
            .await?;
        let event = if approve {
            "elevation.approved"
        } else {
            "elevation.denied"
        };
        self.record(event, decider, &e).await;
        if approve {
            self.record("elevation.activated", decider, &e).await;
            self.publish().await;
        }
        self.notifier.notify(Notice::Elevation {
            event,
            elevation: e.clone(),
        });
        Ok(e)
    }

    /// Ends an elevation early (`revoke`: by an approver or admin; otherwise by its requester)
    /// or withdraws a pending request.
    pub async fn end(&self, id: &str, actor: &Actor, revoke: bool) -> Result<Elevation> {
        let e = self.store.end_elevation(id, &actor.name, revoke).await?;
        let event = match e.status {
            ElevationStatus::Revoked => "elevation.revoked",
            ElevationStatus::Cancelled => "elevation.cancelled",
            _ => "elevation.ended",
        };
        self.record(event, actor, &e).await;
        self.publish().await;
        self.notifier.notify(Notice::Elevation {
            event,
            elevation: e.clone(),
        });
        Ok(e)
    }

    /// Deletes a profile; its open requests are cancelled and its elevations revoked, each
    /// audited and notified.
    pub async fn delete_profile(&self, id: &str, actor: &Actor) -> Result<()> {
        let (_, ended) = self.store.delete_elevation_profile(id, &actor.name).await?;
        for mut e in ended {
            let event = if e.status == ElevationStatus::Pending {
                e.status = ElevationStatus::Cancelled;
                "elevation.cancelled"
            } else {
                e.status = ElevationStatus::Revoked;
                "elevation.revoked"
            };
            self.record(event, actor, &e).await;
            self.notifier.notify(Notice::Elevation {
                event,
                elevation: e,
            });
        }
        self.publish().await;
        Ok(())
    }

    /// Records what ran its course (expired elevations, requests nobody decided); enforcement
    /// never waits for this. Returns how many were settled.
    pub async fn settle(&self) -> Result<usize> {
        let settled = self.store.settle_elevations().await?;
        let system = Actor {
            id: "toolgate".into(),
            name: "toolgate".into(),
            kind: "system",
        };
        for e in &settled {
            let event = if e.status == ElevationStatus::Expired {
                "elevation.expired"
            } else {
                "elevation.cancelled"
            };
            self.record(event, &system, e).await;
            self.notifier.notify(Notice::Elevation {
                event,
                elevation: e.clone(),
            });
        }
        if !settled.is_empty() {
            // Drops the expired rows from the snapshot (they were already refused).
            self.publish().await;
        }
        Ok(settled.len())
    }

    /// Approves or denies a call waiting for approval.
    pub async fn decide_call(
        &self,
        id: &str,
        approve: bool,
        decider: &Actor,
        comment: Option<&str>,
    ) -> Result<CallApproval> {
        let ttl = i64::from(self.settings().await?.approval_ttl_minutes) * 60_000;
        let a = self
            .store
            .decide_call_approval(id, approve, &decider.id, &decider.name, comment, ttl)
            .await?;
        let event = if approve {
            "approval.approved"
        } else {
            "approval.denied"
        };
        let audit = NewAuditEvent {
            principal_id: Some(decider.id.clone()),
            subject_kind: Some(a.subject_kind.clone()),
            approval_id: Some(a.id.clone()),
            connector: Some(a.connector.clone()),
            tool: Some(a.tool.clone()),
            args_hash: Some(a.args_hash.clone()),
            args_redacted: a.args_redacted.clone(),
            rule: Some(format!("call of {} by {}", a.tool, a.subject_name)),
            detail: Some(
                serde_json::json!({
                    "subject": a.subject_name,
                    "subject_id": a.subject_id,
                    "comment": a.comment,
                    "expires_at": a.expires_at,
                })
                .to_string(),
            ),
            ..NewAuditEvent::new(self.store.clock().now(), event, &decider.name)
        };
        self.audit.record_after_the_fact(audit).await;
        self.notifier.notify(Notice::Approval {
            event,
            approval: a.clone(),
        });
        Ok(a)
    }
}
