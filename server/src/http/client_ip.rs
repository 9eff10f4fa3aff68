//! The caller's address behind a reverse proxy or load balancer: when the connection comes from a
//! trusted proxy (`trusted_proxies`), the client is the right-most `X-Forwarded-For` entry that is
//! not itself a trusted proxy; otherwise the header is ignored (a client cannot choose its own
//! address). The result replaces the connection's address for everything downstream (audit, logs).

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets.into())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values in order.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage in the chain: believe nothing further left of it.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port or in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

/// Middleware: rewrites `ConnectInfo` to the client's address when a trusted proxy forwarded it.
pub async fn resolve(
    State(trusted): State<TrustedProxies>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
        && trusted.trusts(peer.ip())
    {
        let client = trusted.client(
            peer.ip(),
            req.headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, 0)));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().expect("net")).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_cannot_claim_an_address() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            t.client(ip("198.51.100.9"), ["203.0.113.7"].into_iter()),
            ip("198.51.100.9")
        );
        assert_eq!(
            proxies(&[]).client(ip("10.0.0.2"), ["203.0.113.7"].into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let t = proxies(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client wrote a fake left-most entry; the proxies appended the real one.
        assert_eq!(
            t.client(
                ip("10.0.0.2"),
                ["1.1.1.1, 203.0.113.7, 192.168.1.1"].into_iter()
            ),
            ip("203.0.113.7")
        );
        // Several header lines are one list.
        assert_eq!(
            t.client(ip("10.0.0.2"), ["1.1.1.1", "203.0.113.8"].into_iter()),
            ip("203.0.113.8")
        );
        // Only proxies in the chain: the left-most is the best we know.
        assert_eq!(
            t.client(ip("10.0.0.2"), ["10.1.1.1, 10.2.2.2"].into_iter()),
            ip("10.1.1.1")
        );
        // No header: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.2"), std::iter::empty()), ip("10.0.0.2"));
    }

    #[test]
    fn ports_brackets_ipv6_and_garbage() {
        let t = proxies(&["10.0.0.0/8", "::1/128"]);
        assert_eq!(
            t.client(ip("10.0.0.2"), ["203.0.113.7:5555"].into_iter()),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client(ip("::1"), ["[2001:db8::5]"].into_iter()),
            ip("2001:db8::5")
        );
        assert_eq!(
            t.client(ip("::ffff:10.0.0.2"), ["2001:db8::6"].into_iter()),
            ip("2001:db8::6"),
            "IPv4-mapped peers match IPv4 ranges"
        );
        // Garbage right of a real address: nothing left of it is believed.
        assert_eq!(
            t.client(ip("10.0.0.2"), ["203.0.113.7, not-an-ip"].into_iter()),
            ip("10.0.0.2")
        );
        assert_eq!(
            t.client(ip("10.0.0.2"), ["10.3.3.3, ;drop table"].into_iter()),
            ip("10.0.0.2")
        );
    }
}
