//! Who a request comes from, worked out once per request before the rate limit: the client IP
//! (through trusted proxies only) and the caller its credential resolves to. Both are stored in
//! the request extensions; the rate limit keys on them and the `Auth` extractor reuses the
//! resolution instead of asking the `SessionStore` again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use ipnet::IpNet;

use crate::extract::{credential, Auth};
use crate::AppState;

pub use crate::extract::Caller;

pub async fn identify(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>().cloned() {
        let ip = client_ip(req.peer_addr().map(|a| a.ip()), req.headers(), &state.config.trusted_proxies);
        let auth = Auth::resolve(&state, credential(req.request())).await;
        req.extensions_mut().insert(Caller { ip, auth });
    }
    next.call(req).await
}

/// The client IP `identify` settled on for this request (`None` outside the app's scope).
pub fn caller_ip(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    req.extensions().get::<Caller>().map(|c| c.ip)
}

/// The client's address: the peer, unless the peer is a trusted proxy; then the right-most
/// hop of `X-Forwarded-For` (else `Forwarded`) that is not itself a trusted proxy. Hops to the
/// left of that one were written by the client and prove nothing. A hop that does not parse
/// stops the walk at the last trusted address seen, so garbage cannot pick a bucket.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // Test requests (and unix sockets) have no peer; they share one bucket. A dual-stack
    // listener sees IPv4 peers as ::ffff:a.b.c.d; canonical form lets `127.0.0.1` match them.
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in forwarded_hops(headers).iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => nearest = *ip,
            Some(ip) => return *ip,
            None => return nearest,
        }
    }
    nearest
}

/// The hops a proxy chain recorded, left (client side) to right; `None` for one that is not an
/// address (`unknown`, an obfuscated name, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let joined = |name: &str| {
        headers.get_all(name).filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",")
    };
    let xff = joined("x-forwarded-for");
    if !xff.trim().is_empty() {
        return xff.split(',').map(|hop| parse_hop(hop.trim())).collect();
    }
    let forwarded = joined("forwarded");
    forwarded
        .split(',')
        .filter(|element| !element.trim().is_empty())
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| parse_hop(v.trim().trim_matches('"')))
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
        .map(|ip: IpAddr| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(client_ip(Some(ip("198.51.100.1")), &xff, &trusted), ip("198.51.100.1"), "untrusted peer: headers ignored");
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &xff, &trusted), ip("203.0.113.7"), "right-most untrusted hop");
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &xff, &[]), ip("10.0.0.1"), "no trusted proxies: the peer");
        let fwd = headers(&[("forwarded", r#"for=6.6.6.6, for="[2001:db8::5]:4711";proto=https"#)]);
        assert_eq!(client_ip(Some(ip("::1")), &fwd, &trusted), ip("2001:db8::5"));
        let split = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9:5000")]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &split, &trusted), ip("203.0.113.9"));
        let garbage = headers(&[("x-forwarded-for", "6.6.6.6, nonsense, 10.0.0.3")]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &garbage, &trusted), ip("10.0.0.3"), "stops at what it cannot read");
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &HeaderMap::new(), &trusted), ip("10.0.0.1"));
        let mapped = headers(&[("x-forwarded-for", "::ffff:203.0.113.8")]);
        assert_eq!(client_ip(Some(ip("::ffff:10.0.0.1")), &mapped, &trusted), ip("203.0.113.8"), "IPv4-mapped peers and hops");
    }
}
