//! Rate limits (governor's GCRA, keyed, in memory per replica): per MCP principal on `/mcp`, per
//! SCIM token and client address on `/scim/v2`, per client address on the OAuth endpoints and
//! per client address and user name on sign-in. Refusals are 429 with `Retry-After`, in the
//! protocol's own format. Keys unused for a while are dropped so memory stays bounded.

use crate::http::limits::{Protocol, refusal};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// One keyed limiter and what it is, for the refusal message.
struct Limiter {
    keyed: DefaultKeyedRateLimiter<String>,
    what: String,
}

impl Limiter {
    /// `per` requests per `period` with bursts of `burst`; `None` when `per` is 0 (no limit).
    fn new(per: u32, period: Duration, burst: u32, what: String) -> Option<Self> {
        let per = NonZeroU32::new(per)?;
        let burst = NonZeroU32::new(burst.max(per.get())).unwrap_or(per);
        let quota = Quota::with_period(period / per.get())?.allow_burst(burst);
        Some(Limiter {
            keyed: DefaultKeyedRateLimiter::keyed(quota),
            what,
        })
    }

    /// `Err(wait)` when the key has used its quota.
    fn check(&self, key: &str) -> Result<(), Duration> {
        self.keyed
            .check_key(&key.to_string())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Every limiter of the process; `None` where the config turns a limit off.
pub struct RateLimits {
    mcp: Option<Limiter>,
    /// Unauthenticated `/mcp` attempts per address (token guessing).
    mcp_refused: Option<Limiter>,
    scim: Option<Limiter>,
    oauth: Option<Limiter>,
    signin: Option<Limiter>,
}

impl RateLimits {
    pub fn from_config(c: &crate::config::Config) -> Arc<Self> {
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        Arc::new(RateLimits {
            mcp: Limiter::new(
                c.rate_limit_mcp_per_sec,
                second,
                c.rate_limit_mcp_per_sec.saturating_mul(2),
                format!("{} requests per second", c.rate_limit_mcp_per_sec),
            ),
            mcp_refused: Limiter::new(
                c.rate_limit_oauth_per_min,
                minute,
                c.rate_limit_oauth_per_min,
                format!(
                    "{} unauthenticated requests per minute",
                    c.rate_limit_oauth_per_min
                ),
            ),
            scim: Limiter::new(
                c.rate_limit_scim_per_sec,
                second,
                c.rate_limit_scim_per_sec.saturating_mul(2),
                format!("{} requests per second", c.rate_limit_scim_per_sec),
            ),
            oauth: Limiter::new(
                c.rate_limit_oauth_per_min,
                minute,
                c.rate_limit_oauth_per_min,
                format!("{} requests per minute", c.rate_limit_oauth_per_min),
            ),
            signin: Limiter::new(
                c.rate_limit_signin_per_min,
                minute,
                c.rate_limit_signin_per_min,
                format!(
                    "{} sign-in attempts per minute",
                    c.rate_limit_signin_per_min
                ),
            ),
        })
    }

    /// `/mcp` for an authenticated principal (`owner` is its kind and id): the 429 answer when
    /// its budget is spent.
    pub fn check_mcp(&self, owner: &str) -> Option<Response> {
        check(self.mcp.as_ref(), owner, Protocol::Mcp, "this credential")
    }

    /// `/mcp` without a valid credential, per client address.
    pub fn check_mcp_refused(&self, ip: &str) -> Option<Response> {
        check(self.mcp_refused.as_ref(), ip, Protocol::Mcp, "this address")
    }

    /// Drops keys whose buckets are full again (idle callers), bounding memory.
    pub fn forget_idle(&self) {
        for l in [
            &self.mcp,
            &self.mcp_refused,
            &self.scim,
            &self.oauth,
            &self.signin,
        ]
        .into_iter()
        .flatten()
        {
            l.keyed.retain_recent();
            l.keyed.shrink_to_fit();
        }
    }

    /// Keys held across all limiters (for tests and metrics).
    pub fn keys(&self) -> usize {
        [
            &self.mcp,
            &self.mcp_refused,
            &self.scim,
            &self.oauth,
            &self.signin,
        ]
        .into_iter()
        .flatten()
        .map(|l| l.keyed.len())
        .sum()
    }
}

fn check(limiter: Option<&Limiter>, key: &str, protocol: Protocol, who: &str) -> Option<Response> {
    let limiter = limiter?;
    limiter.check(key).err().map(|wait| {
        metrics::counter!("toolgate_rate_limited_total", "protocol" => protocol_label(protocol))
            .increment(1);
        refusal(
            protocol,
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "rate limit exceeded: {who} may make {}; retry after {} s",
                limiter.what,
                wait.as_millis().div_ceil(1000).max(1)
            ),
            Some(wait),
        )
    })
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Mcp => "mcp",
        Protocol::Scim => "scim",
        Protocol::OAuth => "oauth",
        Protocol::Api => "api",
        Protocol::Other => "signin",
    }
}

/// Paths where people sign in (dashboard password, single sign-on start and callback).
fn is_sign_in(path: &str) -> bool {
    matches!(
        path,
        "/fn/login" | "/fn/sso" | "/auth/oidc/login" | "/auth/oidc/callback"
    )
}

/// Middleware for the SCIM, OAuth and sign-in paths (`/mcp` is limited after authentication,
/// in its own middleware). Runs after the body limit, so reading the sign-in form is bounded.
pub async fn enforce(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    match Protocol::of(path) {
        Protocol::Scim => {
            if let Some(res) = check(limits.scim.as_ref(), &ip, Protocol::Scim, "this address") {
                return res;
            }
            if let Some(token) = crate::http::auth::bearer_token(req.headers()) {
                // Keyed by a digest: the limiter's map never holds a credential.
                let key = hex::encode(&Sha256::digest(token.as_bytes())[..16]);
                if let Some(res) = check(limits.scim.as_ref(), &key, Protocol::Scim, "this token") {
                    return res;
                }
            }
            next.run(req).await
        }
        Protocol::OAuth => match check(limits.oauth.as_ref(), &ip, Protocol::OAuth, "this address")
        {
            None => next.run(req).await,
            Some(res) => res,
        },
        _ if is_sign_in(path) => {
            if let Some(res) = check(
                limits.signin.as_ref(),
                &format!("ip:{ip}"),
                Protocol::Other,
                "this address",
            ) {
                return res;
            }
            if path != "/fn/login" || req.method() != Method::POST || limits.signin.is_none() {
                return next.run(req).await;
            }
            // The password form: also per user name, so spreading guesses over addresses does
            // not help. The body was already read (and bounded) by the body limit.
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let user = form_field(&bytes, "username").unwrap_or_default();
            if let Some(res) = check(
                limits.signin.as_ref(),
                &format!("user:{}", user.to_lowercase()),
                Protocol::Other,
                "this user name",
            ) {
                return res;
            }
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => next.run(req).await,
    }
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(f: impl FnOnce(&mut crate::config::Config)) -> crate::config::Config {
        let mut c = crate::config::Config::default();
        f(&mut c);
        c
    }

    #[test]
    fn bursts_then_refuses_per_key() {
        // One per second, bursts of two: only a stall of a whole second could refill one.
        let limits = RateLimits::from_config(&config(|c| c.rate_limit_mcp_per_sec = 1));
        for _ in 0..2 {
            assert!(
                limits.check_mcp("user:a").is_none(),
                "within the burst of 2"
            );
        }
        let refused = limits
            .check_mcp("user:a")
            .expect("the 3rd at once is refused");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        assert!(
            limits.check_mcp("user:b").is_none(),
            "another principal has its own bucket"
        );
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = RateLimits::from_config(&config(|c| c.rate_limit_mcp_per_sec = 0));
        for _ in 0..10_000 {
            assert!(limits.check_mcp("user:a").is_none(), "no limit");
        }
        assert_eq!(limits.keys(), 0);
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limits = RateLimits::from_config(&config(|c| c.rate_limit_mcp_per_sec = 1000));
        for i in 0..100 {
            assert!(limits.check_mcp(&format!("user:{i}")).is_none());
        }
        assert_eq!(limits.keys(), 100);
        std::thread::sleep(Duration::from_millis(20));
        limits.forget_idle();
        assert_eq!(limits.keys(), 0, "one call each refills within 2 ms");
    }

    #[test]
    fn sign_in_paths_and_form_fields() {
        assert!(is_sign_in("/fn/login"));
        assert!(is_sign_in("/auth/oidc/callback"));
        assert!(!is_sign_in("/fn/logout"));
        assert_eq!(
            form_field(b"username=Ad%20min&password=x", "username").as_deref(),
            Some("Ad min")
        );
        assert_eq!(form_field(b"\xff\xfe=&&==", "username"), None);
    }
}
