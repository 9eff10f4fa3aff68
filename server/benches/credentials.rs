//! What resolving a bearer credential costs on the `/mcp` hot path, per kind: a personal token
//! (SHA-256 of the token, then a snapshot map look-up), one of Toolgate's access tokens (HS256
//! JWT verification; the grant look-up is a map get), and an Entra app-only token (RS256 against
//! a cached key set). `make bench-auth`; figures in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use toolgate::oauth::access::{AccessClaims, AccessTokens};
use toolgate::oauth::entra::{EntraAppSettings, EntraValidator};

const TENANT: &str = "8f5a5d3c-0d6b-4f33-9c3e-2b1f0a7c9d11";
const APP: &str = "11111111-2222-4333-8444-555555555555";

fn personal(c: &mut Criterion) {
    let token = toolgate_domain::crypto::new_token("tgp").0;
    c.bench_function("credential/personal token hash (sha-256)", |b| {
        b.iter(|| toolgate_domain::crypto::hash_token(black_box(&token)))
    });
}

fn access_token(c: &mut Criterion) {
    let issuer = "https://toolgate.example.com".to_string();
    let tokens = AccessTokens::new([7; 32], issuer.clone());
    let now = chrono::Utc::now().timestamp();
    let jwt = tokens.mint(&AccessClaims {
        iss: issuer,
        aud: tokens.resource.clone(),
        sub: uuid::Uuid::new_v4().to_string(),
        client_id: "https://client.example.com/oauth/metadata.json".into(),
        scope: "mcp:read mcp:tools".into(),
        iat: now,
        exp: now + 600,
        jti: uuid::Uuid::new_v4().to_string(),
        sub_kind: "person".into(),
        cred: uuid::Uuid::new_v4().to_string(),
    });
    c.bench_function("credential/access token verify (HS256 JWT)", |b| {
        b.iter(|| tokens.verify(black_box(&jwt), now).is_ok())
    });
}

fn entra(c: &mut Criterion) {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("key");
    let pem = private
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .expect("pem");
    let b64 =
        |b: Vec<u8>| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "kid": "k1",
        "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be())}]});
    let base = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let j = jwks.clone();
                async move { axum::Json(j) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        base
    });
    let settings = EntraAppSettings {
        enabled: true,
        tenant_id: TENANT.into(),
        audiences: vec!["api://toolgate".into()],
        required_role: Some("Toolgate.Agent".into()),
        jwks_url: Some(format!("{base}/keys")),
        issuer_base: Some(base.clone()),
    };
    let validator = EntraValidator::new(settings, reqwest::Client::new());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": format!("{base}/{TENANT}/v2.0"), "aud": "api://toolgate", "tid": TENANT,
        "azp": APP, "oid": APP, "sub": APP, "idtyp": "app", "roles": ["Toolgate.Agent"],
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("key");
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("token");
    // The first validation fetches the key set; the benchmark measures the cached path.
    rt.block_on(validator.validate(&token, now))
        .expect("valid token");
    c.bench_function(
        "credential/Entra app-only token verify (RS256, cached keys)",
        |b| {
            b.iter(|| {
                rt.block_on(validator.validate(black_box(&token), now))
                    .is_ok()
            })
        },
    );
}

criterion_group!(benches, personal, access_token, entra);
criterion_main!(benches);
