//! Identity settings (sign-in with the OpenID Provider, group-to-role mappings): validated and
//! stored in one place for the admin API and the dashboard.

use crate::model::{IdentitySettingsInput, OidcSettings, RoleMappings};
use crate::store::Store;
use crate::store::setting_keys::{OIDC, OIDC_SECRET, ROLES};
use crate::{Error, Result};

/// An issuer is an https URL (http only for loopback, as in tests), possibly with `{tenantid}`.
pub fn validate_issuer(issuer: &str) -> std::result::Result<(), String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let ok_scheme =
        issuer.starts_with("https://") || loopback.iter().any(|p| issuer.starts_with(p));
    if !ok_scheme
        || issuer.len() > 512
        || issuer.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("issuer must be an https URL (http only for loopback addresses)".into());
    }
    if issuer.contains('{') && !issuer.contains("{tenantid}") {
        return Err("the only placeholder an issuer may hold is {tenantid}".into());
    }
    Ok(())
}

/// The stored OpenID Provider settings and client secret, if sign-in with it is configured.
pub async fn oidc(store: &Store) -> Result<Option<(OidcSettings, Option<String>)>> {
    let Some(settings) = store.setting::<Option<OidcSettings>>(OIDC).await?.flatten() else {
        return Ok(None);
    };
    Ok(Some((settings, store.secret_setting(OIDC_SECRET).await?)))
}

/// The group-to-role mappings (empty when never set).
pub async fn role_mappings(store: &Store) -> Result<RoleMappings> {
    Ok(store
        .setting::<RoleMappings>(ROLES)
        .await?
        .unwrap_or_default())
}

/// Validates and stores new identity settings. Every mapped group must exist: a typo would
/// silently grant nothing (or the wrong thing).
pub async fn update(store: &Store, input: IdentitySettingsInput) -> Result<()> {
    let groups = store.list_groups().await?;
    let m = &input.role_mappings;
    for id in m.admin.iter().chain(&m.approver).chain(&m.auditor) {
        if !groups.iter().any(|g| &g.id == id) {
            return Err(Error::Invalid(format!(
                "role mapping names unknown group {id:?}"
            )));
        }
    }
    match input.oidc {
        Some(o) => {
            validate_issuer(o.issuer.trim()).map_err(Error::Invalid)?;
            if o.client_id.trim().is_empty() || o.client_id.len() > 256 {
                return Err(Error::invalid("client_id must be 1-256 characters"));
            }
            if let Some(secret) = o.client_secret.as_deref().filter(|s| !s.is_empty()) {
                store.put_secret_setting(OIDC_SECRET, secret).await?;
            }
            let settings = OidcSettings {
                issuer: o.issuer.trim().to_string(),
                client_id: o.client_id.trim().to_string(),
                client_secret_set: store.secret_setting(OIDC_SECRET).await?.is_some(),
                display_name: o
                    .display_name
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| "Microsoft Entra ID".into()),
                match_by: o.match_by,
                jit_provisioning: o.jit_provisioning,
                use_groups_claim: o.use_groups_claim,
            };
            store.put_setting(OIDC, &Some(settings)).await?;
        }
        None => {
            store
                .put_setting(OIDC, &Option::<OidcSettings>::None)
                .await?
        }
    }
    store.put_setting(ROLES, &input.role_mappings).await
}

#[cfg(test)]
mod tests {
    use super::validate_issuer;

    #[test]
    fn issuers() {
        assert!(
            validate_issuer("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0")
                .is_ok()
        );
        assert!(validate_issuer("https://login.microsoftonline.com/{tenantid}/v2.0").is_ok());
        assert!(validate_issuer("http://127.0.0.1:4000").is_ok());
        assert!(validate_issuer("http://idp.example.com").is_err());
        assert!(validate_issuer("https://x/{tenant}/v2.0").is_err());
        assert!(validate_issuer("ftp://x").is_err());
    }
}
