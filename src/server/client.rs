//! Who the client is: the address rate limits (and later analytics) count requests by.
//!
//! A request's client is its socket peer, unless that peer is a trusted proxy
//! (`TRUSTED_PROXIES`, loopback by default). Behind trusted proxies the client is the
//! right-most address of `X-Forwarded-For` that is *not* a trusted proxy: each proxy appends
//! the address it saw, so everything to the left of the last untrusted entry was written by
//! the client itself and may be forged. When every entry is trusted the left-most one is
//! taken (a request that started inside the proxy tier); without `X-Forwarded-For`, a valid
//! `X-Real-IP`; otherwise the peer. If the right-most untrusted entry is not an address at
//! all, the chain is not one a trusted proxy wrote, so the header is not used.
//!
//! The accept loop ([`listener`](super::listener)) gives every request its peer as
//! [`ConnectInfo`]; a request without one (driven through `tower::ServiceExt::oneshot` in
//! tests) is the one unknown client [`UNKNOWN_CLIENT`], `0.0.0.0`, whose headers are not
//! trusted. [`identify`] resolves the client once per request and stores it as a
//! [`ClientAddr`] extension, which handlers take as an extractor.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client of a request whose peer is not known.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The client a request counts for, as [`identify`] resolved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    /// The address [`identify`] stored; without that layer, the peer itself (no header is
    /// trusted), else [`UNKNOWN_CLIENT`].
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(client) = parts.extensions.get::<ClientAddr>() {
            return Ok(*client);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| canonical(peer.ip()));
        Ok(ClientAddr(peer.unwrap_or(UNKNOWN_CLIENT)))
    }
}

/// The networks whose requests may name their client in `X-Forwarded-For` / `X-Real-IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `TRUSTED_PROXIES` entry that is neither a CIDR nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR (like 10.0.0.0/8 or fd00::/8) or an IP address")]
pub struct InvalidCidr(pub String);

impl TrustedProxies {
    /// Trusts no one: headers are never used, the peer is always the client.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// Loopback only (`127.0.0.0/8`, `::1/128`): a reverse proxy on the same machine.
    pub fn loopback() -> Self {
        TrustedProxies(vec![
            IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid prefix"),
            IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ])
    }

    /// Whether `addr` is one of the trusted proxies.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The networks trusted.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }
}

impl Default for TrustedProxies {
    fn default() -> Self {
        TrustedProxies::loopback()
    }
}

impl FromStr for TrustedProxies {
    type Err = InvalidCidr;

    /// A comma-separated list of CIDRs or bare addresses (`/32`, `/128`), or `none`.
    fn from_str(list: &str) -> Result<Self, InvalidCidr> {
        if list.trim().eq_ignore_ascii_case("none") {
            return Ok(TrustedProxies::none());
        }
        list.split(',')
            .map(str::trim)
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidCidr(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let list: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// The client of a request from `peer` (`None`: unknown) with these headers.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let Some(peer) = peer.map(canonical) else {
        return UNKNOWN_CLIENT;
    };
    if !trusted.contains(peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if !forwarded.is_empty() {
        return from_forwarded(&forwarded, trusted).unwrap_or(peer);
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_entry)
        .unwrap_or(peer)
}

/// The right-most untrusted entry of an `X-Forwarded-For` chain, the left-most when all are
/// trusted; `None` when that entry is not an address.
fn from_forwarded(chain: &[&str], trusted: &TrustedProxies) -> Option<IpAddr> {
    for entry in chain.iter().rev() {
        match parse_entry(entry) {
            Some(addr) if trusted.contains(addr) => continue,
            found => return found,
        }
    }
    chain.first().and_then(|entry| parse_entry(entry))
}

/// One address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:443`; IPv4-mapped IPv6 addresses count as IPv4.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let addr = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(canonical(addr))
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: a dual-stack listener reports IPv4 peers that way, and one
/// client must not count as two.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// Resolves the client once and stores it as a [`ClientAddr`] extension for the layers and
/// handlers after it.
pub async fn identify(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let client = client_ip(peer, request.headers(), &trusted);
    request.extensions_mut().insert(ClientAddr(client));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn resolve(peer: &str, pairs: &[(&str, &str)], trusted: &str) -> IpAddr {
        client_ip(Some(ip(peer)), &headers(pairs), &trusted.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let sent = [("x-forwarded-for", "10.0.0.1"), ("x-real-ip", "10.0.0.2")];
        assert_eq!(resolve("192.0.2.7", &sent, "127.0.0.0/8"), ip("192.0.2.7"));
        assert_eq!(resolve("127.0.0.1", &sent, "none"), ip("127.0.0.1"));
    }

    #[test]
    fn spoofed_left_most_entries_are_ignored() {
        let sent = [("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.1.0.9")];
        // 10.1.0.9 is an inner proxy of ours; 198.51.100.4 is what our edge saw.
        assert_eq!(
            resolve("127.0.0.1", &sent, "127.0.0.1,10.0.0.0/8"),
            ip("198.51.100.4")
        );
        // With only the local proxy trusted, the inner proxy is the client.
        assert_eq!(resolve("127.0.0.1", &sent, "127.0.0.1"), ip("10.1.0.9"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_gives_its_left_most_entry() {
        let sent = [("x-forwarded-for", "10.0.0.5, 10.0.0.6")];
        assert_eq!(
            resolve("127.0.0.1", &sent, "127.0.0.0/8,10.0.0.0/8"),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn repeated_headers_form_one_chain_in_order() {
        let sent = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        assert_eq!(resolve("::1", &sent, "::1"), ip("203.0.113.9"));
    }

    #[test]
    fn ipv6_entries_with_and_without_ports() {
        let trusted = "::1, fd00::/8";
        let sent = [("x-forwarded-for", "[2001:db8::7]:443, fd00::3")];
        assert_eq!(resolve("::1", &sent, trusted), ip("2001:db8::7"));
        let sent = [("x-forwarded-for", "2001:db8::8")];
        assert_eq!(resolve("::1", &sent, trusted), ip("2001:db8::8"));
        let sent = [("x-forwarded-for", "192.0.2.1:5555")];
        assert_eq!(resolve("::1", &sent, trusted), ip("192.0.2.1"));
    }

    #[test]
    fn ipv4_mapped_peers_and_entries_count_as_ipv4() {
        assert_eq!(resolve("::ffff:192.0.2.9", &[], "none"), ip("192.0.2.9"));
        let sent = [("x-forwarded-for", "::ffff:192.0.2.10")];
        assert_eq!(
            resolve("::ffff:127.0.0.1", &sent, "127.0.0.0/8"),
            ip("192.0.2.10")
        );
    }

    #[test]
    fn garbage_entries() {
        // Garbage left of the real entry is never reached.
        let sent = [("x-forwarded-for", "not-an-ip, ;;, 198.51.100.4")];
        assert_eq!(resolve("127.0.0.1", &sent, "127.0.0.1"), ip("198.51.100.4"));
        // Garbage as the right-most untrusted entry: no trusted proxy wrote this chain, so the
        // header is not used (nor X-Real-IP, which a proxy sets together with it).
        let sent = [
            ("x-forwarded-for", "198.51.100.4, garbage"),
            ("x-real-ip", "10.9.9.9"),
        ];
        assert_eq!(resolve("127.0.0.1", &sent, "127.0.0.1"), ip("127.0.0.1"));
        // Empty entries are skipped; an empty header falls through to X-Real-IP.
        let sent = [("x-forwarded-for", " , "), ("x-real-ip", "203.0.113.1")];
        assert_eq!(resolve("127.0.0.1", &sent, "127.0.0.1"), ip("203.0.113.1"));
        let sent = [("x-real-ip", "nonsense")];
        assert_eq!(resolve("127.0.0.1", &sent, "127.0.0.1"), ip("127.0.0.1"));
    }

    #[test]
    fn x_real_ip_when_there_is_no_forwarded_chain() {
        let sent = [("x-real-ip", "203.0.113.5")];
        assert_eq!(resolve("127.0.0.1", &sent, "127.0.0.1"), ip("203.0.113.5"));
    }

    #[test]
    fn an_unknown_peer_is_the_unknown_client() {
        let sent = headers(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(
            client_ip(None, &sent, &TrustedProxies::loopback()),
            UNKNOWN_CLIENT
        );
    }

    #[test]
    fn cidr_lists() {
        let list: TrustedProxies = " 10.0.0.0/8 ,192.0.2.1, 2001:db8::/32, ::1"
            .parse()
            .unwrap();
        assert_eq!(
            list.to_string(),
            "10.0.0.0/8,192.0.2.1/32,2001:db8::/32,::1/128"
        );
        assert!(list.contains(ip("10.255.0.1")) && !list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("192.0.2.1")) && !list.contains(ip("192.0.2.2")));
        assert!(list.contains(ip("2001:db8:ffff::1")) && !list.contains(ip("2001:db9::1")));
        // Host bits after the prefix are dropped, as a network is meant.
        let host_bits: TrustedProxies = "10.1.2.3/8".parse().unwrap();
        assert_eq!(host_bits.to_string(), "10.0.0.0/8");
        assert_eq!(
            "NONE".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::none()
        );
        assert_eq!(TrustedProxies::default().to_string(), "127.0.0.0/8,::1/128");
        for bad in [
            "10.0.0.0/33",
            "10.0.0.300",
            "fe80::/129",
            "",
            "10.0.0.0/8,,::1",
            "localhost",
        ] {
            let e = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(e.to_string().contains("is not a CIDR"), "{bad}: {e}");
        }
        assert_eq!(
            "10.0.0.0/8, 10.0.0.0/x"
                .parse::<TrustedProxies>()
                .unwrap_err(),
            InvalidCidr("10.0.0.0/x".into())
        );
    }
}
