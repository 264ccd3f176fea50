//! Which addresses the fetcher may connect to. A source URL is the package's choice: without
//! a rule, `http://127.0.0.1:PORT/` would make the builder reach its own ports and anything
//! else listening on the machine's loopback, or a link-local metadata service.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The fetcher's rule for addresses.
#[derive(Clone, Copy, Debug)]
pub struct NetPolicy {
    /// Allow the machine's loopback: for a test farm or a mirror on the builder's machine.
    pub allow_loopback: bool,
}

impl NetPolicy {
    /// Whether the fetcher may connect to `addr`; the error says why not.
    pub fn check(self, addr: IpAddr) -> Result<(), String> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let why = match addr {
            a if a.is_loopback() && !self.allow_loopback => "a loopback address",
            a if a.is_unspecified() => "the unspecified address",
            a if a.is_multicast() => "a multicast address",
            IpAddr::V4(a) if a.is_link_local() => "a link-local address",
            IpAddr::V4(a) if a.is_broadcast() => "the broadcast address",
            IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => "a link-local address",
            _ => return Ok(()),
        };
        Err(format!("{addr} is {why}, which builders do not fetch from"))
    }

    /// Resolves `host` and checks every address it has; the allowed ones.
    pub async fn resolve(self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            self.check(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
        // Every address, not only the first: a name that resolves to an allowed address and a
        // forbidden one would otherwise reach the forbidden one on a retry.
        for a in &addrs {
            self.check(a.ip())
                .map_err(|e| format!("{host} resolves to {e}"))?;
        }
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        Ok(addrs)
    }

    /// Checks the host of `url` (an address literal, or a name resolved now).
    pub async fn check_url(self, url: &url::Url) -> Result<(), String> {
        let host = url
            .host_str()
            .ok_or_else(|| format!("{url} names no host"))?;
        let port = url.port_or_known_default().unwrap_or(0);
        self.resolve(host, port).await.map(|_| ())
    }
}

/// reqwest's resolver under the policy: the client connects only to addresses checked here,
/// so a name cannot resolve to an allowed address when checked and a forbidden one when used.
pub struct Resolver(pub NetPolicy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl NetPolicy {
    pub fn resolver(self) -> Arc<Resolver> {
        Arc::new(Resolver(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_unspecified_addresses_are_refused() {
        let strict = NetPolicy {
            allow_loopback: false,
        };
        for a in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(strict.check(a.parse().unwrap()).is_err(), "{a}");
        }
        for a in ["10.1.2.3", "192.168.1.1", "93.184.216.34", "2001:db8::1"] {
            assert!(strict.check(a.parse().unwrap()).is_ok(), "{a}");
        }
        let test_farm = NetPolicy {
            allow_loopback: true,
        };
        assert!(test_farm.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(test_farm.check("169.254.169.254".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn names_and_literals_are_checked_alike() {
        let strict = NetPolicy {
            allow_loopback: false,
        };
        let err = strict
            .check_url(&"http://localhost:8080/x".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.contains("localhost resolves to"), "{err}");
        let err = strict
            .check_url(&"http://[::1]/x".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.contains("loopback"), "{err}");
    }
}
