//! The OpenID Provider as seen through the `openidconnect` crate: discovery (also for Entra's
//! multi-tenant `{tenantid}` metadata), the authorization URL with PKCE, state and nonce, the code
//! exchange and ID-token verification with Entra's claims.

use super::signin::{VerifiedClaims, expected_issuer};
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::reqwest;
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenFields,
    JsonWebKeySet, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use toolgate_domain::model::OidcSettings;

/// Entra's claims beyond the standard ones (`preferred_username` and `email` are standard).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EntraClaims {
    pub tid: Option<String>,
    pub oid: Option<String>,
    pub groups: Option<Vec<String>>,
    pub hasgroups: Option<bool>,
    #[serde(rename = "_claim_names")]
    pub claim_names: Option<HashMap<String, String>>,
}

impl AdditionalClaims for EntraClaims {}

type EntraIdTokenFields = IdTokenFields<
    EntraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type EntraTokenResponse = StandardTokenResponse<EntraIdTokenFields, CoreTokenType>;
type EntraIdToken = IdToken<
    EntraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type EntraClient = Client<
    EntraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    EntraTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What a started sign-in keeps in the session until the callback.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    state: String,
    nonce: String,
    pkce_verifier: String,
    /// Unix seconds.
    pub started_at: i64,
    /// An admin's "test sign-in": show what would happen, keep the admin signed in.
    #[serde(default)]
    pub test: bool,
}

impl PendingLogin {
    /// Constant-time comparison of the returned `state` with ours.
    pub fn matches_state(&self, returned: &str) -> bool {
        let (a, b) = (self.state.as_bytes(), returned.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A discovered provider and its client.
pub struct Provider {
    client: EntraClient,
    http: reqwest::Client,
    settings: OidcSettings,
    /// The metadata's issuer: exact, or Entra's template with `{tenantid}`.
    issuer_template: String,
}

fn err(what: &str) -> impl Fn(String) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Provider {
    /// Fetches the discovery document and keys. The metadata's issuer must be the configured one,
    /// or Entra's multi-tenant template.
    pub async fn discover(
        settings: OidcSettings,
        secret: Option<String>,
        redirect: String,
    ) -> Result<Self, String> {
        let http = reqwest::ClientBuilder::new()
            // Why: following redirects from the provider's endpoints would allow SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| err("http client")(e.to_string()))?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            settings.issuer.trim_end_matches('/')
        );
        let body = http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| err("discovery")(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| err("discovery")(e.to_string()))?;
        if body.len() > 256 * 1024 {
            return Err("discovery document too large".into());
        }
        let md: CoreProviderMetadata =
            serde_json::from_slice(&body).map_err(|e| err("discovery")(e.to_string()))?;
        let issuer_template = md.issuer().to_string();
        let configured = settings.issuer.trim_end_matches('/');
        let multi_tenant = issuer_template.contains("{tenantid}");
        if !multi_tenant && issuer_template.trim_end_matches('/') != configured {
            return Err(format!(
                "the provider says its issuer is {issuer_template}, not {configured}"
            ));
        }
        let jwks = JsonWebKeySet::fetch_async(md.jwks_uri(), &http)
            .await
            .map_err(|e| err("keys")(e.to_string()))?;
        let md = md.set_jwks(jwks);
        let redirect =
            RedirectUrl::new(redirect).map_err(|e| err("redirect URI")(e.to_string()))?;
        let client = EntraClient::from_provider_metadata(
            md,
            ClientId::new(settings.client_id.clone()),
            secret.map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        Ok(Provider {
            client,
            http,
            settings,
            issuer_template,
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The provider's authorization URL with PKCE S256, a random state and nonce.
    pub fn authorize_url(&self, now_secs: i64) -> (openidconnect::url::Url, PendingLogin) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.into_secret(),
            started_at: now_secs,
            test: false,
        };
        (url, pending)
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token: signature (RS256
    /// only), audience, nonce, expiry (60 s of clock skew allowed), and the exact issuer.
    pub async fn finish(
        &self,
        code: String,
        pending: &PendingLogin,
        now: DateTime<Utc>,
    ) -> Result<VerifiedClaims, String> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| err("token endpoint")(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| err("code exchange")(e.to_string()))?;
        let id_token: &EntraIdToken = response.id_token().ok_or("the provider sent no ID token")?;
        let skewed = now - chrono::Duration::seconds(60);
        let verifier = self
            .client
            .id_token_verifier()
            // The issuer is checked below, against the template with the token's tenant.
            .require_issuer_match(false)
            // Why: only RS256; HMAC algorithms with the client secret are never acceptable here.
            .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
            .set_time_fn(move || skewed);
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = id_token
            .claims(&verifier, &nonce)
            .map_err(|e| err("ID token")(e.to_string()))?;
        let extra = claims.additional_claims();
        let tid = extra.tid.clone();
        if let Some(t) = &tid
            && (t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err("malformed tid claim".into());
        }
        let expected = expected_issuer(&self.issuer_template, tid.as_deref())
            .ok_or("the provider's issuer needs a tenant, and the token names none")?;
        if claims.issuer().as_str().trim_end_matches('/') != expected.trim_end_matches('/') {
            return Err(format!(
                "issuer {} is not {expected}",
                claims.issuer().as_str()
            ));
        }
        let overage = extra.hasgroups == Some(true)
            || extra
                .claim_names
                .as_ref()
                .is_some_and(|n| n.contains_key("groups"));
        Ok(VerifiedClaims {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            tid,
            oid: extra.oid.clone(),
            preferred_username: claims.preferred_username().map(|u| u.to_string()),
            email: claims.email().map(|e| e.to_string()),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            groups: extra.groups.clone(),
            groups_overage: overage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_comparison() {
        let p = PendingLogin {
            state: "abc".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            started_at: 0,
            test: false,
        };
        assert!(p.matches_state("abc"));
        assert!(!p.matches_state("abd"));
        assert!(!p.matches_state("ab"));
        assert!(!p.matches_state(""));
    }
}
