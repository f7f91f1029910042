//! The registry's external base URL (`scheme://host[:port]`) as the client sees it, for
//! absolute URLs such as a token realm: from the request itself, or from `X-Forwarded-*`
//! headers only when the peer is a trusted reverse proxy.
//!
//! [`external_base_url`] is a pure function of its inputs; [`ExternalUrlConfig::base_url`]
//! takes them from a request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, Uri, header};

/// What the external URL depends on besides the request: fixed for the life of the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalUrlConfig {
    /// The listener speaks TLS (the scheme is `https` unless a trusted proxy says otherwise).
    pub tls: bool,
    /// Peers whose `X-Forwarded-Proto` / `X-Forwarded-Host` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where berth listens: the host of last resort, for a request naming none.
    pub listen_addr: SocketAddr,
}

impl ExternalUrlConfig {
    /// Plain HTTP on `listen_addr`, no trusted proxies.
    pub fn new(listen_addr: SocketAddr) -> ExternalUrlConfig {
        ExternalUrlConfig {
            tls: false,
            trusted_proxies: Vec::new(),
            listen_addr,
        }
    }

    /// The external base URL for a request, from its URI, headers and extensions (the
    /// peer comes from axum's `ConnectInfo<SocketAddr>`; without it the peer is untrusted).
    /// Works with a whole `Request` or with its `Parts`.
    pub fn base_url(&self, uri: &Uri, headers: &HeaderMap, extensions: &Extensions) -> String {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        external_base_url(headers, uri.authority().map(|a| a.as_str()), peer, self)
    }

    /// The client's address: the TCP peer, or behind trusted proxies the last address in
    /// `X-Forwarded-For` that is not itself a trusted proxy (earlier entries are whatever
    /// the client chose to send).
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.trusts(Some(**ip)))
            .or(forwarded.first())
            .copied()
            .or(peer)
    }

    fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            let ip = ip.to_canonical();
            self.trusted_proxies.iter().any(|net| net.contains(ip))
        })
    }
}

/// `scheme://host[:port]` for a request.
///
/// - `headers`: the request's headers (`Host`, `X-Forwarded-Proto`, `X-Forwarded-Host`).
/// - `authority`: the request URI's authority, if any (HTTP/2's `:authority`, or an
///   absolute-form HTTP/1.1 target); it takes precedence over `Host`.
/// - `peer`: the address of the TCP peer; `None` is never trusted.
///
/// The scheme is the first `X-Forwarded-Proto` value (`http` or `https`) when the peer is
/// a trusted proxy, else `https` on a TLS listener and `http` otherwise. The host is the
/// first `X-Forwarded-Host` value when the peer is trusted, else the authority or `Host`;
/// a value that is not a plain `host[:port]` is ignored. Last resort: the listen address
/// (an unspecified address such as `0.0.0.0` becomes loopback).
pub fn external_base_url(
    headers: &HeaderMap,
    authority: Option<&str>,
    peer: Option<IpAddr>,
    config: &ExternalUrlConfig,
) -> String {
    let trusted = config.trusts(peer);
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let forwarded_proto = trusted
        .then(|| first("x-forwarded-proto"))
        .flatten()
        .map(str::to_ascii_lowercase)
        .filter(|p| p == "http" || p == "https");
    let scheme =
        forwarded_proto.unwrap_or_else(|| if config.tls { "https" } else { "http" }.to_string());
    let forwarded_host = trusted
        .then(|| first("x-forwarded-host"))
        .flatten()
        .filter(|h| is_valid_host(h));
    let own_host = authority.filter(|h| is_valid_host(h)).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|h| is_valid_host(h))
    });
    match forwarded_host.or(own_host) {
        Some(host) => format!("{scheme}://{host}"),
        None => format!("{scheme}://{}", reachable(config.listen_addr)),
    }
}

/// The listen address, with an unspecified IP (all interfaces) replaced by loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// `host[:port]` where host is a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`)
/// or a bracketed IPv6 address, and port is a number below 65536. Nothing else (no user
/// info, path, spaces or quotes) can reach a URL built from it.
pub fn is_valid_host(value: &str) -> bool {
    let (host_ok, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let Some((inside, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (inside.parse::<Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match value.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (value, None),
            };
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (name_ok, port)
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this block. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config(tls: bool, proxies: &[&str]) -> ExternalUrlConfig {
        ExternalUrlConfig {
            tls,
            trusted_proxies: proxies.iter().map(|p| p.parse().expect("net")).collect(),
            listen_addr: "0.0.0.0:5000".parse().expect("addr"),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    const FORWARDED: &[(&str, &str)] = &[
        ("host", "10.0.0.5:5000"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "registry.example.com"),
    ];

    #[test]
    fn the_host_header_and_the_listener_scheme_without_proxies() {
        let h = headers(&[("host", "registry.example.com:5000")]);
        let url = external_base_url(&h, None, ip("192.0.2.7"), &config(false, &[]));
        assert_eq!(url, "http://registry.example.com:5000");
        let url = external_base_url(&h, None, ip("192.0.2.7"), &config(true, &[]));
        assert_eq!(url, "https://registry.example.com:5000");
    }

    #[test]
    fn a_trusted_proxy_decides_scheme_and_host() {
        let h = headers(FORWARDED);
        let url = external_base_url(&h, None, ip("10.1.2.3"), &config(false, &["10.0.0.0/8"]));
        assert_eq!(url, "https://registry.example.com");
    }

    #[test]
    fn spoofed_forwarded_headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(FORWARDED);
        let proxies = config(false, &["10.0.0.0/8", "127.0.0.1"]);
        for peer in [ip("192.0.2.7"), ip("11.0.0.1"), ip("127.0.0.2"), None] {
            assert_eq!(
                external_base_url(&h, None, peer, &proxies),
                "http://10.0.0.5:5000",
                "{peer:?}"
            );
        }
    }

    #[test]
    fn an_ipv4_mapped_peer_counts_as_its_ipv4_address() {
        let h = headers(FORWARDED);
        let url = external_base_url(
            &h,
            None,
            ip("::ffff:127.0.0.1"),
            &config(false, &["127.0.0.1"]),
        );
        assert_eq!(url, "https://registry.example.com");
    }

    #[test]
    fn only_the_first_forwarded_value_counts() {
        let h = headers(&[
            ("x-forwarded-proto", "http, https"),
            ("x-forwarded-host", "outer.example.com, inner.example.com"),
        ]);
        let url = external_base_url(&h, None, ip("127.0.0.1"), &config(true, &["127.0.0.1"]));
        assert_eq!(url, "http://outer.example.com");
    }

    #[test]
    fn bad_forwarded_values_fall_back_to_the_request() {
        let h = headers(&[
            ("host", "registry.local"),
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example.com/path"),
        ]);
        let url = external_base_url(&h, None, ip("127.0.0.1"), &config(true, &["127.0.0.1"]));
        assert_eq!(url, "https://registry.local");
    }

    #[test]
    fn the_uri_authority_comes_before_host_and_the_listen_address_is_last() {
        let h = headers(&[("host", "other:1")]);
        let url = external_base_url(&h, Some("h2.example.com:8443"), None, &config(true, &[]));
        assert_eq!(url, "https://h2.example.com:8443");
        let url = external_base_url(&HeaderMap::new(), None, None, &config(false, &[]));
        assert_eq!(url, "http://127.0.0.1:5000");
        let h = headers(&[("host", "user@evil.example.com")]);
        let mut v6 = config(false, &[]);
        v6.listen_addr = "[::]:5000".parse().expect("addr");
        assert_eq!(external_base_url(&h, None, None, &v6), "http://[::1]:5000");
    }

    #[test]
    fn base_url_reads_the_peer_from_connect_info() {
        let h = headers(FORWARDED);
        let uri: Uri = "/v2/".parse().expect("uri");
        let proxies = config(false, &["10.0.0.0/8"]);
        let mut ext = Extensions::new();
        assert_eq!(proxies.base_url(&uri, &h, &ext), "http://10.0.0.5:5000");
        ext.insert(ConnectInfo::<SocketAddr>(
            "10.9.9.9:40000".parse().expect("addr"),
        ));
        assert_eq!(
            proxies.base_url(&uri, &h, &ext),
            "https://registry.example.com"
        );
    }

    #[test]
    fn hosts_are_validated() {
        for good in [
            "localhost",
            "registry.example.com",
            "127.0.0.1:5000",
            "[::1]",
            "[::1]:443",
            "my_host-1.local:65535",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in [
            "",
            ":5000",
            "a:",
            "a:65536",
            "a:1:2",
            "::1",
            "[::1",
            "[nothex]:1",
            "[::1]x",
            "a b",
            "a/b",
            "user@host",
            "a\"b",
            "host:+1",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().expect("net");
        assert!(net.contains(IpAddr::from([10, 255, 0, 1])));
        assert!(!net.contains(IpAddr::from([11, 0, 0, 1])));
        let one: IpNet = "127.0.0.1".parse().expect("net");
        assert!(one.contains(IpAddr::from([127, 0, 0, 1])));
        assert!(!one.contains(IpAddr::from([127, 0, 0, 2])));
        let all: IpNet = "0.0.0.0/0".parse().expect("net");
        assert!(all.contains(IpAddr::from([203, 0, 113, 9])));
        assert!(!all.contains("::1".parse().expect("ip")));
        let v6: IpNet = "fd00::/8".parse().expect("net");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("fe80::1".parse().expect("ip")));
        assert_eq!(v6.to_string(), "fd00::/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_address_is_read_from_trusted_proxies_only() {
        let mut config = ExternalUrlConfig::new(SocketAddr::from(([127, 0, 0, 1], 5000)));
        config.trusted_proxies = vec!["10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 192.0.2.9, 10.0.0.2".parse().expect("value"),
        );
        // Behind two trusted proxies: the last untrusted hop, not what the client claimed.
        assert_eq!(
            config.client_ip(&headers, Some(ip("10.0.0.1"))),
            Some(ip("192.0.2.9"))
        );
        // From anyone else the header is ignored.
        assert_eq!(
            config.client_ip(&headers, Some(ip("192.0.2.50"))),
            Some(ip("192.0.2.50"))
        );
        assert_eq!(
            config.client_ip(&HeaderMap::new(), Some(ip("10.0.0.1"))),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(config.client_ip(&headers, None), None);
    }
}
