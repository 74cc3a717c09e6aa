//! Which push endpoints the server sends to: a browser's `PushSubscription` is checked when it is
//! stored (an https URL, or http to a loopback host outside production; keys of the right
//! length), and in production no push ever goes to a loopback, private or link-local address,
//! whatever the endpoint's name resolves to when the push is sent (a user must not make the
//! server a way into its own network).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};
use web_push_native::p256::PublicKey;

/// Longest endpoint URL accepted (browsers' are a few hundred characters).
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// A subscription's endpoint and keys, checked.
pub struct Checked {
    pub endpoint: Url,
    pub p256dh: String,
    pub auth: String,
}

/// Checks a subscription; each problem is named by its field.
pub fn check(
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    production: bool,
) -> Result<Checked, Vec<(&'static str, &'static str)>> {
    let mut problems = Vec::new();
    let url = match parse_endpoint(endpoint, production) {
        Ok(url) => Some(url),
        Err(problem) => {
            problems.push(("endpoint", problem));
            None
        }
    };
    if public_key(p256dh).is_none() {
        problems.push((
            "keys.p256dh",
            "must be a P-256 public key (65 bytes, base64url)",
        ));
    }
    if auth_secret(auth).is_none() {
        problems.push(("keys.auth", "must be 16 bytes, base64url"));
    }
    match url {
        Some(endpoint) if problems.is_empty() => Ok(Checked {
            endpoint,
            p256dh: p256dh.trim_end_matches('=').to_owned(),
            auth: auth.trim_end_matches('=').to_owned(),
        }),
        _ => Err(problems),
    }
}

fn parse_endpoint(raw: &str, production: bool) -> Result<Url, &'static str> {
    if raw.len() > MAX_ENDPOINT_LEN {
        return Err("must be at most 2048 characters");
    }
    let url = Url::parse(raw).map_err(|_| "must be an absolute URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    let host = url.host().ok_or("must have a host")?;
    match url.scheme() {
        "https" => {}
        "http" if !production && is_loopback_host(&host) => {}
        "http" => {
            return Err("must be an https URL (http only to a loopback host, outside production)");
        }
        _ => return Err("must be an https URL"),
    }
    if production && names_private_address(&url) {
        return Err("must not point into a private network");
    }
    Ok(url)
}

/// Whether `url`'s host is an IP address outside the public internet (a name is judged when it
/// is resolved, by [`resolves_publicly`] and [`PublicOnly`]).
pub fn names_private_address(url: &Url) -> bool {
    url.host()
        .as_ref()
        .and_then(host_ip)
        .is_some_and(|ip| !is_public(ip))
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn host_ip(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Domain(_) => None,
        Host::Ipv4(ip) => Some((*ip).into()),
        Host::Ipv6(ip) => Some((*ip).into()),
    }
}

/// The browser's public key, when `raw` is one.
pub fn public_key(raw: &str) -> Option<PublicKey> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    if bytes.len() != 65 {
        return None;
    }
    PublicKey::from_sec1_bytes(&bytes).ok()
}

/// The browser's authentication secret, when `raw` is one.
pub fn auth_secret(raw: &str) -> Option<[u8; 16]> {
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
    bytes.try_into().ok()
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (100.64/10), unspecified, broadcast, documentation or unique-local, also when mapped into IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(v4.into());
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Whether every address `endpoint`'s host resolves to is public (an IP literal is its own
/// address); false when it resolves to none.
pub async fn resolves_publicly(endpoint: &Url) -> bool {
    let Some(host) = endpoint.host() else {
        return false;
    };
    if let Some(ip) = host_ip(&host) {
        return is_public(ip);
    }
    let port = endpoint.port_or_known_default().unwrap_or(443);
    let Ok(found) = tokio::net::lookup_host((host.to_string(), port)).await else {
        return false;
    };
    let addrs: Vec<SocketAddr> = found.collect();
    !addrs.is_empty() && addrs.iter().all(|a| is_public(a.ip()))
}

/// The resolver of the push client in production: only public addresses come back, so a name
/// that resolves into the server's own network (at subscription time or later) gets no push.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|addr| is_public(addr.ip())).collect();
            if public.is_empty() {
                return Err("the push endpoint resolves to no public address".into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

impl PublicOnly {
    pub fn shared() -> Arc<Self> {
        Arc::new(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The user agent's keys of RFC 8291's example (appendix A).
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn a_browser_subscription_passes() {
        let ok = check(
            "https://fcm.googleapis.com/fcm/send/abc",
            P256DH,
            AUTH,
            true,
        );
        assert!(ok.is_ok());
        assert!(check("http://127.0.0.1:9000/push/1", P256DH, AUTH, false).is_ok());
    }

    #[test]
    fn endpoints_into_the_servers_network_are_refused_in_production() {
        for endpoint in [
            "http://127.0.0.1:9000/push",
            "https://127.0.0.1/push",
            "https://10.0.0.7/push",
            "https://192.168.1.1/push",
            "https://169.254.169.254/latest",
            "https://[::1]/push",
            "https://[::ffff:10.0.0.1]/push",
            "https://[fd00::1]/push",
            "https://100.64.0.1/push",
            "ftp://push.example.com/x",
            "https://user:pw@push.example.com/x",
            "not a url",
        ] {
            let refused = check(endpoint, P256DH, AUTH, true)
                .err()
                .unwrap_or_default();
            assert_eq!(refused.first().map(|p| p.0), Some("endpoint"), "{endpoint}");
        }
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(check(&long, P256DH, AUTH, false).is_err());
        // Outside production, http only to loopback.
        assert!(check("http://push.example.com/x", P256DH, AUTH, false).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_into_the_servers_network_is_not_public() {
        for endpoint in [
            "https://localhost/push",
            "https://127.0.0.1/push",
            "https://[::1]/x",
        ] {
            let url = Url::parse(endpoint).unwrap();
            assert!(!resolves_publicly(&url).await, "{endpoint}");
        }
        // A name that does not resolve at all (`.invalid` never does, RFC 6761).
        let nowhere = Url::parse("https://push.invalid/x").unwrap();
        assert!(!resolves_publicly(&nowhere).await);
        let public = Url::parse("https://93.184.215.14/push").unwrap();
        assert!(resolves_publicly(&public).await);
    }

    #[test]
    fn keys_of_the_wrong_length_or_not_base64url_are_refused() {
        let ok = "https://push.example.com/x";
        let fields = |p256dh: &str, auth: &str| -> Vec<&str> {
            check(ok, p256dh, auth, false)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect()
        };
        assert_eq!(fields(&P256DH[..40], AUTH), ["keys.p256dh"]);
        assert_eq!(fields("not base64!", AUTH), ["keys.p256dh"]);
        // 65 bytes that are not a point of the curve.
        assert_eq!(
            fields(&URL_SAFE_NO_PAD.encode([4u8; 65]), AUTH),
            ["keys.p256dh"]
        );
        assert_eq!(fields(P256DH, "c2hvcnQ"), ["keys.auth"]);
        assert_eq!(fields("", ""), ["keys.p256dh", "keys.auth"]);
    }
}
