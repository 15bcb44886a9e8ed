//! Where a webhook may be sent: `https` only (`http` on loopback with `CCC_WEBHOOK_ALLOW_INSECURE`),
//! and only to public addresses unless `CCC_WEBHOOK_ALLOW_PRIVATE`.
//!
//! The host is resolved on every attempt by [`CheckedResolver`], which hands the HTTP client only
//! the addresses that pass: the connection goes to an address that was checked, so a name that
//! resolves to a public address when checked and to a private one when connected (DNS rebinding)
//! gets nowhere. An address in the URL itself is checked before each attempt (the client resolves
//! no literal).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// How long a resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What may be sent to.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddressPolicy {
    /// `http` on loopback is allowed.
    pub allow_insecure: bool,
    /// Loopback, private, link-local, unique-local, multicast and metadata addresses are allowed.
    pub allow_private: bool,
}

/// Why an address or a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a URL this service sends to.
    #[error("{0}")]
    Url(&'static str),
    /// The host has no address, or could not be resolved in time.
    #[error("the host could not be resolved")]
    Unresolved,
    /// Every address of the host is one this service does not send to.
    #[error(
        "the host resolves to a loopback, private, link-local, unique-local, multicast or metadata address"
    )]
    NotPublic,
}

/// Whether `ip` is an address anyone on the internet could reach (not loopback, private,
/// link-local, unique-local, multicast, cloud metadata, or otherwise reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        // 169.254/16, where the cloud metadata services answer (169.254.169.254).
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // 0/8 "this network", 100.64/10 shared (carrier NAT; Alibaba's metadata at
        // 100.100.100.200), 192.0.0/24 protocol assignments, 198.18/15 benchmarking, 240/4 reserved.
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique-local (AWS's metadata at fd00:ec2::254), fe80::/10 link-local,
        // fec0::/10 the old site-local, 2001:db8::/32 documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible or NAT64
/// (`64:ff9b::/96`) address: judged as that address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified();
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    (mapped || compatible || nat64).then_some(tail)
}

impl AddressPolicy {
    /// Whether an address may be connected to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// Checks a URL's form: `https` (or `http` to loopback with `allow_insecure`), a host, no
    /// credentials, no fragment; an address in it must be allowed.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Url("the URL may not carry credentials"));
        }
        if url.fragment().is_some() {
            return Err(Refused::Url("the URL may not have a fragment"));
        }
        let host = url.host().ok_or(Refused::Url("the URL has no host"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure && is_loopback_host(&host) => {}
            "http" => {
                return Err(Refused::Url(
                    "the URL must be https (http only on loopback, where allowed)",
                ));
            }
            _ => return Err(Refused::Url("the URL must be https")),
        }
        match host {
            Host::Ipv4(ip) if !self.allows(ip.into()) => Err(Refused::NotPublic),
            Host::Ipv6(ip) if !self.allows(ip.into()) => Err(Refused::NotPublic),
            _ => Ok(()),
        }
    }

    /// Checks a URL's form and resolves its host now: refused unless it has an allowed address
    /// (an endpoint being created).
    pub async fn check_url_resolving(&self, url: &Url) -> Result<(), Refused> {
        self.check_url(url)?;
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            resolve(*self, name, port).await?;
        }
        Ok(())
    }
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    }
}

/// The allowed addresses of `name`, resolved now (none: refused).
async fn resolve(policy: AddressPolicy, name: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| Refused::Unresolved)?
        .map_err(|_| Refused::Unresolved)?
        .collect::<Vec<_>>();
    if found.is_empty() {
        return Err(Refused::Unresolved);
    }
    let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.allows(a.ip())).collect();
    if allowed.is_empty() {
        return Err(Refused::NotPublic);
    }
    Ok(allowed)
}

/// The HTTP client's resolver: every resolution checked, only allowed addresses handed on.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver(pub AddressPolicy);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs = resolve(policy, name.as_str(), 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused}");
        }
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_https_unless_insecure_is_allowed_on_loopback() {
        let strict = AddressPolicy::default();
        let dev = AddressPolicy {
            allow_insecure: true,
            allow_private: true,
        };
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(strict.check_url(&url("https://hooks.example.com/cc")).is_ok());
        assert!(strict.check_url(&url("http://hooks.example.com/cc")).is_err());
        assert!(strict.check_url(&url("https://10.0.0.1/cc")).is_err());
        assert!(strict.check_url(&url("https://[::1]/cc")).is_err());
        assert!(strict.check_url(&url("https://u:p@hooks.example.com/")).is_err());
        assert!(strict.check_url(&url("ftp://hooks.example.com/")).is_err());
        assert!(dev.check_url(&url("http://127.0.0.1:9000/cc")).is_ok());
        assert!(dev.check_url(&url("http://localhost:9000/cc")).is_ok());
        assert!(dev.check_url(&url("http://10.0.0.1/cc")).is_err());
    }
}
