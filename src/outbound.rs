//! Outbound HTTP for webhook deliveries, guarded against server-side
//! request forgery: no redirects followed, no proxy, and unless private
//! targets are allowed (`WEBHOOK_ALLOW_PRIVATE`), no private, loopback,
//! link-local or otherwise internal address, checked on the URL's literal
//! address and on every address its name resolves to, at each attempt.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A receiver that has not answered within this is counted as failed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why an address may not be a webhook's target (`None`: it may).
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let segments = v6.segments();
            let embedded_v4 = || {
                Ipv4Addr::new(
                    (segments[6] >> 8) as u8,
                    segments[6] as u8,
                    (segments[7] >> 8) as u8,
                    segments[7] as u8,
                )
            };
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if segments[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if segments[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if segments[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                || segments[..6] == [0, 0, 0, 0, 0, 0]
            {
                // NAT64 and the old IPv4-compatible form carry an IPv4 address.
                forbidden_v4(embedded_v4())
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [first, second, third, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if first == 0 {
        Some("unspecified")
    } else if first == 100 && second & 0xc0 == 64 {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first >= 240
        || (first, second, third) == (192, 0, 0)
        || (first == 198 && second & 0xfe == 18)
    {
        // Future use, IETF protocol assignments, benchmarking.
        Some("reserved")
    } else {
        None
    }
}

/// Why a webhook URL's host may not be a target as written (`None`: it
/// may, its name still being checked when it is resolved).
pub fn forbidden_host(url: &Url) -> Option<String> {
    let refused = |address: IpAddr, why: &str| Some(format!("{address} is {why}"));
    match url.host()? {
        Host::Ipv4(v4) => forbidden(IpAddr::V4(v4)).and_then(|why| refused(IpAddr::V4(v4), why)),
        Host::Ipv6(v6) => forbidden(IpAddr::V6(v6)).and_then(|why| refused(IpAddr::V6(v6), why)),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost"))
                .then(|| format!("{name} is loopback"))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}: refused (private targets are off, see WEBHOOK_ALLOW_PRIVATE)")]
struct Refused(String);

/// Resolves with the system resolver and refuses a name any of whose
/// addresses is forbidden (one allowed address among them would let a
/// retry reach the others).
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((address, why)) = addresses
                .iter()
                .find_map(|address| forbidden(address.ip()).map(|why| (address.ip(), why)))
            {
                return Err(
                    Box::new(Refused(format!("{host} resolves to {address}, {why}")))
                        as Box<dyn StdError + Send + Sync>,
                );
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// What an attempt gave: the receiver's status, or why there was none.
pub type Answer = Result<u16, String>;

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("content-api-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(Self {
            client: builder.build()?,
            allow_private,
        })
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// POSTs `body` as JSON with `headers`.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
        let url = Url::parse(url).map_err(|err| format!("invalid URL: {err}"))?;
        if !self.allow_private {
            if let Some(why) = forbidden_host(&url) {
                return Err(Refused(why).to_string());
            }
        }
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(err) if err.is_timeout() => {
                Err(format!("no answer within {} s", TIMEOUT.as_secs()))
            }
            Err(err) => Err(innermost(&err)),
        }
    }
}

/// The deepest cause of an error: "connection refused", not "error
/// sending request".
fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let message = cause.to_string();
    if std::ptr::eq(cause, err) {
        message
    } else {
        format!("{err}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_public_ones_are_not() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(forbidden(address.parse().unwrap()).is_some(), "{address}");
        }
        for address in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(forbidden(address.parse().unwrap()), None, "{address}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        let refused = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is loopback");
        assert!(refused.to_string().contains("loopback"), "{refused}");
    }

    #[test]
    fn literal_internal_hosts_and_localhost_are_refused_as_written() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "https://localhost/x",
            "http://api.LOCALHOST./",
            "http://2130706433/",
        ] {
            assert!(forbidden_host(&Url::parse(url).unwrap()).is_some(), "{url}");
        }
        assert_eq!(
            forbidden_host(&Url::parse("https://hooks.example.com/x").unwrap()),
            None
        );
    }
}
