//! The one HTTP client for requests to the outside world (the Graph API, inbound media, the
//! transcription API, SMS and mail webhooks, and every later target): it refuses loopback,
//! private, link-local, unique-local and other non-public addresses — after DNS resolution, so
//! a public name that resolves inward is refused too, and on every redirect — unless the
//! operator allows the host, address or range (`PALAVER_OUTBOUND_ALLOW`). Answers are read
//! with a size cap.
//!
//! How each part is enforced: a host name is resolved by [`Guard`], reqwest's resolver here,
//! which fails the connection when any address is not allowed; an address written in the URL
//! (which reqwest does not resolve) is checked by [`Outbound::request`] and, for redirects, by
//! the redirect policy. Proxies from the environment are ignored: through a proxy, the
//! resolver would see the proxy's name instead of the target's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Response};

/// What the operator allows although it is not public.
#[derive(Debug, Default, Clone)]
pub struct Allow {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl Allow {
    /// From `PALAVER_OUTBOUND_ALLOW` items: host names, addresses or CIDR ranges.
    pub fn parse(items: &[String]) -> anyhow::Result<Allow> {
        let mut allow = Allow::default();
        for item in items {
            let item = item.trim().trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = item.parse::<IpNet>() {
                allow.nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                allow.nets.push(IpNet::from(ip));
            } else if !item.is_empty()
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                allow.hosts.push(item.to_ascii_lowercase());
            } else {
                anyhow::bail!(
                    "PALAVER_OUTBOUND_ALLOW: {item:?} is not a host, address or CIDR range"
                );
            }
        }
        Ok(allow)
    }

    fn host(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&name)
    }

    /// Whether requests may go to `ip`.
    pub fn ip(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// unique-local, shared (CGNAT), multicast, documentation, benchmarking or reserved. IPv6
/// addresses that carry an IPv4 one (mapped, compatible, NAT64, 6to4) are judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)) // discard 100::/64
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || o[0] == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail), // mapped
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_loopback() && !v6.is_unspecified() => Some(tail), // compatible
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail), // NAT64
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )), // 6to4
        _ => None,
    }
}

/// Why a request was not made.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0:?} is not an http(s) URL")]
    NotHttp(String),
    #[error("{0} is not a public address (PALAVER_OUTBOUND_ALLOW can allow it)")]
    NotPublic(String),
}

/// Checks what can be checked of a URL without resolving it: the scheme, and an address
/// written in it. (Names are checked when they are resolved.)
pub fn check_url(allow: &Allow, url: &url::Url) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::NotHttp(url.to_string()));
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) if !allow.ip(IpAddr::V4(ip)) => {
            Err(Refused::NotPublic(ip.to_string()))
        }
        Some(url::Host::Ipv6(ip)) if !allow.ip(IpAddr::V6(ip)) => {
            Err(Refused::NotPublic(ip.to_string()))
        }
        Some(_) => Ok(()),
        None => Err(Refused::NotHttp(url.to_string())),
    }
}

/// A base URL of an outside API as an admin gives it (a channel's Graph URL, an AI provider's):
/// http(s) with a host, without credentials or a query, and, when its host is an address
/// written out, one requests may reach. Returned without the trailing slash.
pub fn parse_base_url(allow: &Allow, raw: &str) -> Result<String, String> {
    let u = url::Url::parse(raw.trim()).map_err(|_| "must be an http(s) URL".to_string())?;
    if u.query().is_some() {
        return Err("must be an http(s) URL without credentials or a query".into());
    }
    parse_target_url(allow, raw)?;
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

/// A URL requests are sent to as it is (an automation's webhook): http(s) with a host,
/// without credentials, and, when its host is an address written out, one requests may reach.
pub fn parse_target_url(allow: &Allow, raw: &str) -> Result<String, String> {
    let u = url::Url::parse(raw.trim()).map_err(|_| "must be an http(s) URL".to_string())?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host_str().is_none()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err("must be an http(s) URL without credentials".into());
    }
    check_url(allow, &u).map_err(|e| e.to_string())?;
    Ok(raw.trim().to_owned())
}

/// reqwest's resolver: a name resolves only when every address it has is allowed (or the name
/// itself is).
struct Guard(Arc<Allow>);

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow.host(&host) {
                if let Some(bad) = addrs.iter().find(|a| !allow.ip(a.ip())) {
                    let e: Box<dyn std::error::Error + Send + Sync> =
                        Box::new(Refused::NotPublic(format!("{host} ({})", bad.ip())));
                    return Err(e);
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// At most this many redirects are followed, each checked like the first URL.
const MAX_REDIRECTS: usize = 5;

/// The outbound client. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow: Arc<Allow>,
}

impl Outbound {
    pub fn new(allow: Arc<Allow>, timeout: Duration) -> anyhow::Result<Outbound> {
        let redirect_allow = allow.clone();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .dns_resolver(Arc::new(Guard(allow.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error("too many redirects");
                }
                match check_url(&redirect_allow, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
            .build()?;
        Ok(Outbound { client, allow })
    }

    /// A request to `url`, unless the URL is refused outright.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, Refused> {
        let parsed = url::Url::parse(url).map_err(|_| Refused::NotHttp(url.to_owned()))?;
        check_url(&self.allow, &parsed)?;
        Ok(self.client.request(method, parsed))
    }

    pub fn get(&self, url: &str) -> Result<RequestBuilder, Refused> {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: &str) -> Result<RequestBuilder, Refused> {
        self.request(Method::POST, url)
    }

    pub fn allow(&self) -> &Allow {
        &self.allow
    }
}

/// Whether a reqwest error is the guard's refusal (a name that resolves to a non-public
/// address, or a redirect to one): such a request never left, and will not pass by retrying.
pub fn is_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Refused>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Answers larger than the caller's cap are cut off with this error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The body of `resp`, at most `cap` bytes.
pub async fn read_capped(resp: Response, cap: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge(cap));
    }
    let mut out = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// JSON answers (the Graph API's, a provider's) are read up to this size.
pub const JSON_CAP: usize = 4 * 1024 * 1024;

/// The body of `resp` as JSON, at most [`JSON_CAP`] bytes; `Null` when it is not JSON.
pub async fn json_capped(resp: Response) -> Result<serde_json::Value, ReadError> {
    let bytes = read_capped(resp, JSON_CAP).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// The start of `resp`'s body as text, for error messages (at most 300 characters).
pub async fn text_excerpt(resp: Response) -> String {
    let bytes = read_capped(resp, 64 * 1024).await.unwrap_or_default();
    String::from_utf8_lossy(&bytes).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "157.240.1.1",
            "2a03:2880::1",
            "2606:4700::1111",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
        for inward in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(inward)), "{inward}");
        }
        assert!(is_public(ip("::ffff:8.8.8.8")));
        assert!(is_public(ip("172.32.0.1")));
        assert!(is_public(ip("100.128.0.1")));
    }

    #[test]
    fn the_allow_list_opens_hosts_addresses_and_ranges() {
        let allow = Allow::parse(&[
            "127.0.0.1".into(),
            "10.0.0.0/8".into(),
            "[fd00::1]".into(),
            "Graph.Internal".into(),
        ])
        .unwrap();
        assert!(allow.ip(ip("127.0.0.1")));
        assert!(!allow.ip(ip("127.0.0.2")));
        assert!(allow.ip(ip("10.200.3.4")));
        assert!(allow.ip(ip("fd00::1")));
        assert!(!allow.ip(ip("192.168.0.1")));
        assert!(allow.host("graph.internal"));
        assert!(allow.host("graph.internal."));
        assert!(!allow.host("other.internal"));
        assert!(Allow::parse(&["not a host!".into()]).is_err());
    }

    #[test]
    fn urls_with_inward_addresses_are_refused_before_resolving() {
        let allow = Allow::parse(&["127.0.0.1".into()]).unwrap();
        let check = |u: &str| check_url(&allow, &url::Url::parse(u).unwrap());
        assert!(check("https://graph.facebook.com/v21.0/1").is_ok());
        assert!(check("http://127.0.0.1:9000/x").is_ok());
        assert!(matches!(
            check("http://169.254.169.254/latest"),
            Err(Refused::NotPublic(_))
        ));
        assert!(matches!(
            check("http://[::1]:80/"),
            Err(Refused::NotPublic(_))
        ));
        assert!(matches!(
            check("http://[::ffff:10.0.0.1]/"),
            Err(Refused::NotPublic(_))
        ));
        assert!(matches!(
            check("http://0x7f000002/"),
            Err(Refused::NotPublic(_))
        ));
        assert!(matches!(
            check("file:///etc/passwd"),
            Err(Refused::NotHttp(_))
        ));
        assert!(matches!(
            check("gopher://example.com/"),
            Err(Refused::NotHttp(_))
        ));
    }
}
