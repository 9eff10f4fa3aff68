//! What happens once the OpenID Provider has vouched for someone: find the provisioned person
//! (by the stable subject, then by the configured match, optionally creating them just in time),
//! refuse disabled or unknown people, and work out the dashboard role from group mappings.

use toolgate_app::auth::DashboardRole;
use toolgate_domain::model::{OidcMatch, OidcSettings, RoleMappings, User};
use toolgate_domain::store::{DirectoryKey, Store, UserWrite};

/// The claims Toolgate uses, after the ID token was verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub issuer: String,
    pub subject: String,
    /// Entra tenant id and object id: the stable key of a person in Entra.
    pub tid: Option<String>,
    pub oid: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Group object ids, when the provider sends them.
    pub groups: Option<Vec<String>>,
    /// Entra sent `_claim_names.groups` / `hasgroups` instead of the list (over 200 groups).
    pub groups_overage: bool,
}

impl VerifiedClaims {
    /// The key a person is bound by: `tid` + `oid` for Entra, `iss` + `sub` otherwise. Never the
    /// user name or email, which can change or be reassigned.
    pub fn subject_key(&self) -> String {
        match (&self.tid, &self.oid) {
            (Some(tid), Some(oid)) => format!("entra:{tid}:{oid}"),
            _ => format!("oidc:{}|{}", self.issuer, self.subject),
        }
    }
}

/// Why a verified person may still not sign in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("you are not provisioned in Toolgate; ask IT to assign you the Toolgate app")]
    NotProvisioned,
    #[error("your account is disabled")]
    Disabled,
    #[error("the provider did not send the claim needed to match you ({0})")]
    MissingClaim(&'static str),
    #[error("this account is already linked to another identity")]
    LinkedElsewhere,
}

/// Finds (or, with just-in-time provisioning, creates) the user a verified person is.
pub async fn resolve_person(
    store: &Store,
    settings: &OidcSettings,
    claims: &VerifiedClaims,
) -> Result<Result<User, Refusal>, toolgate_domain::Error> {
    let key = claims.subject_key();
    if let Some(user) = store.user_by_oidc_subject(&key).await? {
        return Ok(if user.active {
            Ok(user)
        } else {
            Err(Refusal::Disabled)
        });
    }
    let (lookup, value) = match settings.match_by {
        OidcMatch::UserName => (
            DirectoryKey::Name,
            claims
                .preferred_username
                .clone()
                .or_else(|| claims.email.clone()),
        ),
        OidcMatch::ExternalId => (DirectoryKey::ExternalId, claims.oid.clone()),
    };
    let Some(value) = value else {
        return Ok(Err(Refusal::MissingClaim(match settings.match_by {
            OidcMatch::UserName => "preferred_username",
            OidcMatch::ExternalId => "oid",
        })));
    };
    let found = store
        .directory_users(Some((lookup, &value)))
        .await?
        .into_iter()
        .next();
    let user = match found {
        Some(d) => d.user,
        None if settings.jit_provisioning => {
            let user_name = claims
                .preferred_username
                .clone()
                .or_else(|| claims.email.clone())
                .unwrap_or(value);
            let display_name = claims.name.clone().unwrap_or_else(|| user_name.clone());
            let doc = serde_json::json!({"userName": user_name, "displayName": display_name, "active": true});
            let created = store
                .directory_create_user(
                    UserWrite {
                        user_name,
                        display_name,
                        external_id: claims.oid.clone(),
                        active: true,
                        doc: doc.to_string(),
                    },
                    "jit",
                )
                .await?;
            tracing::info!(user = %created.user.user_name, "user created just in time at sign-in");
            created.user
        }
        None => return Ok(Err(Refusal::NotProvisioned)),
    };
    if store.user_by_oidc_subject(&key).await?.is_none() {
        // A user already bound to a different subject is not re-bound silently.
        let bound: Option<String> = bound_subject(store, &user.id).await?;
        if bound.is_some_and(|b| b != key) {
            return Ok(Err(Refusal::LinkedElsewhere));
        }
        store.bind_oidc_subject(&user.id, &key).await?;
    }
    Ok(if user.active {
        Ok(user)
    } else {
        Err(Refusal::Disabled)
    })
}

async fn bound_subject(
    store: &Store,
    user_id: &str,
) -> Result<Option<String>, toolgate_domain::Error> {
    store.oidc_subject_of(user_id).await
}

/// The dashboard role: the most powerful role any of the person's groups maps to. Groups are the
/// SCIM memberships, plus (when configured) the token's `groups` claim matched to groups'
/// `externalId` (Entra object ids). An overage is logged and the memberships used alone.
pub async fn role_for(
    store: &Store,
    mappings: &RoleMappings,
    settings: &OidcSettings,
    user: &User,
    claims: &VerifiedClaims,
) -> Result<DashboardRole, toolgate_domain::Error> {
    let mut groups: Vec<String> = store
        .user_group_names(Some(&user.id))
        .await?
        .into_iter()
        .map(|(_, g, _)| g)
        .collect();
    if claims.groups_overage {
        tracing::info!(user = %user.user_name, "groups overage in the ID token: using SCIM memberships");
    } else if settings.use_groups_claim
        && let Some(claimed) = &claims.groups
    {
        for g in store.list_groups().await? {
            if g.external_id
                .as_ref()
                .is_some_and(|x| claimed.iter().any(|c| c.eq_ignore_ascii_case(x)))
            {
                groups.push(g.id);
            }
        }
    }
    let has = |ids: &[String]| ids.iter().any(|id| groups.contains(id));
    Ok(if has(&mappings.admin) {
        DashboardRole::Admin
    } else if has(&mappings.approver) {
        DashboardRole::Approver
    } else if has(&mappings.auditor) {
        DashboardRole::Auditor
    } else {
        DashboardRole::User
    })
}

/// Replaces `{tenantid}` in an issuer template with the token's `tid`; `None` when the template
/// needs a tenant and the token has none.
pub fn expected_issuer(template: &str, tid: Option<&str>) -> Option<String> {
    if template.contains("{tenantid}") {
        tid.map(|t| template.replace("{tenantid}", t))
    } else {
        Some(template.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_keys_never_use_names() {
        let mut c = VerifiedClaims {
            issuer: "https://login.microsoftonline.com/t1/v2.0".into(),
            subject: "pairwise".into(),
            tid: Some("t1".into()),
            oid: Some("o1".into()),
            preferred_username: Some("alice@contoso.com".into()),
            ..Default::default()
        };
        assert_eq!(c.subject_key(), "entra:t1:o1");
        c.tid = None;
        assert_eq!(
            c.subject_key(),
            "oidc:https://login.microsoftonline.com/t1/v2.0|pairwise"
        );
        assert!(!c.subject_key().contains("alice"));
    }

    #[test]
    fn multi_tenant_issuer_template() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert_eq!(
            expected_issuer(t, Some("abc")).unwrap(),
            "https://login.microsoftonline.com/abc/v2.0"
        );
        assert_eq!(expected_issuer(t, None), None);
        assert_eq!(expected_issuer("https://idp", None).unwrap(), "https://idp");
    }
}
