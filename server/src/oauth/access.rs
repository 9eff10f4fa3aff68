//! Access tokens the gateway mints: JWTs (HS256, `typ: at+jwt`, RFC 9068 claims) under a key
//! derived from the master key, so every replica verifies them without a database round trip.
//! A token names its grant (people) or secret (service principals); the snapshot decides whether
//! that is still live, so revocation needs no token list.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use toolgate_domain::model::Scopes;

/// Claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// User id (people) or service principal id.
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// `person` or `service_principal`.
    pub sub_kind: String,
    /// The grant (people) or the secret (service principals) the token was issued under.
    pub cred: String,
}

impl AccessClaims {
    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scope).unwrap_or(Scopes::NONE)
    }

    pub fn is_service(&self) -> bool {
        self.sub_kind == "service_principal"
    }
}

/// Why a presented access token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not one of ours, or tampered with.
    Malformed,
    Expired,
    /// Minted for another resource (audience confusion).
    WrongAudience,
}

/// Mints and verifies access tokens for one issuer and resource.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub issuer: String,
    pub resource: String,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The typ header value of RFC 9068 access tokens.
const TYP: &str = "at+jwt";

impl AccessTokens {
    pub fn new(key: [u8; 32], issuer: String) -> Self {
        let resource = format!("{issuer}/mcp");
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            issuer,
            resource,
        }
    }

    pub fn mint(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TYP.into());
        // Serialising a plain struct with an HMAC key cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies signature, issuer, type, audience and expiry (at `now`, unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, TokenRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRefusal::Malformed)?;
        if header.alg != Algorithm::HS256 || header.typ.as_deref() != Some(TYP) {
            return Err(TokenRefusal::Malformed);
        }
        let mut v = Validation::new(Algorithm::HS256);
        // Expiry and audience are checked below, against the injected clock and our resource.
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["iss", "exp", "sub", "aud"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &v)
            .map_err(|_| TokenRefusal::Malformed)?;
        let claims = data.claims;
        if claims.aud != self.resource {
            return Err(TokenRefusal::WrongAudience);
        }
        if claims.exp <= now {
            return Err(TokenRefusal::Expired);
        }
        Ok(claims)
    }
}

/// Whether a bearer token has the shape of a JWT (three base64url parts), as opposed to the
/// opaque `tgp_` personal tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("ey")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://tg.example.com".into(),
            aud: aud.into(),
            sub: "u1".into(),
            client_id: "c1".into(),
            scope: "mcp:read mcp:tools".into(),
            iat: 100,
            exp,
            jti: "j".into(),
            sub_kind: "person".into(),
            cred: "g1".into(),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = AccessTokens::new([7; 32], "https://tg.example.com".into());
        let good = t.mint(&claims("https://tg.example.com/mcp", 200));
        assert!(looks_like_jwt(&good));
        assert_eq!(t.verify(&good, 150).map(|c| c.sub), Ok("u1".into()));
        assert_eq!(t.verify(&good, 200), Err(TokenRefusal::Expired));
        let other_aud = t.mint(&claims("https://other.example.com/mcp", 200));
        assert_eq!(t.verify(&other_aud, 150), Err(TokenRefusal::WrongAudience));
        // Another key (another deployment, or a rotated master key) is not ours.
        let other = AccessTokens::new([8; 32], "https://tg.example.com".into());
        assert_eq!(other.verify(&good, 150), Err(TokenRefusal::Malformed));
        // Another issuer with the same key is refused too.
        let elsewhere = AccessTokens::new([7; 32], "https://evil.example.com".into());
        let theirs = elsewhere.mint(&AccessClaims {
            iss: "https://evil.example.com".into(),
            ..claims("https://tg.example.com/mcp", 200)
        });
        assert_eq!(t.verify(&theirs, 150), Err(TokenRefusal::Malformed));
        // Tampering with the payload breaks the signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims("https://tg.example.com/mcp", 99_999)).unwrap(),
        );
        parts[1] = &forged_payload;
        assert_eq!(
            t.verify(&parts.join("."), 150),
            Err(TokenRefusal::Malformed)
        );
        assert_eq!(t.verify("garbage", 150), Err(TokenRefusal::Malformed));
        assert_eq!(t.verify("", 150), Err(TokenRefusal::Malformed));
    }

    #[test]
    fn alg_none_is_refused() {
        let t = AccessTokens::new([7; 32], "https://tg.example.com".into());
        let b64 =
            |v: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v);
        let header = b64(br#"{"alg":"none","typ":"at+jwt"}"#);
        let body = b64(&serde_json::to_vec(&claims("https://tg.example.com/mcp", 200)).unwrap());
        assert_eq!(
            t.verify(&format!("{header}.{body}."), 150),
            Err(TokenRefusal::Malformed)
        );
    }
}
