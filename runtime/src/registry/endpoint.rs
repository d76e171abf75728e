//! Where a reference's registry answers: the API host (docker.io is served from
//! registry-1.docker.io), and which schemes and TLS checks to try.
//!
//! As docker does, a registry on the loopback interface (`localhost`, `127.0.0.0/8`, `::1`) is
//! "insecure" by default: HTTPS is tried without certificate checks, then plain HTTP.
//! `--tls-verify=false` makes any registry insecure; `--tls-verify=true` makes even a loopback
//! registry require verified HTTPS.

use std::net::IpAddr;

use crate::image::reference::DEFAULT_DOMAIN;

/// The host docker.io's API is served from.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How TLS is used with a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// HTTPS with the certificate verified: the only choice for a secure registry.
    Verify,
    /// HTTPS without certificate checks, falling back to plain HTTP.
    Insecure,
}

/// A registry's API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The host (and port) the API is served from.
    pub host: String,
    pub tls: TlsPolicy,
}

impl Endpoint {
    /// The endpoint of `registry` (a reference's domain); `tls_verify` is the user's
    /// `--tls-verify`, if given.
    pub fn new(registry: &str, tls_verify: Option<bool>) -> Endpoint {
        let host = if registry == DEFAULT_DOMAIN {
            DOCKER_HUB_API.to_string()
        } else {
            registry.to_string()
        };
        let tls = match tls_verify {
            Some(true) => TlsPolicy::Verify,
            Some(false) => TlsPolicy::Insecure,
            None if is_loopback(registry) => TlsPolicy::Insecure,
            None => TlsPolicy::Verify,
        };
        Endpoint {
            registry: registry.to_string(),
            host,
            tls,
        }
    }

    /// The base URLs to try, best first (`https://host`, then `http://host` if insecure).
    pub fn candidates(&self) -> Vec<String> {
        let mut out = vec![format!("https://{}", self.host)];
        if self.tls == TlsPolicy::Insecure {
            out.push(format!("http://{}", self.host));
        }
        out
    }
}

/// Whether a registry host (with optional port) is on the loopback interface.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The key credentials are stored under for a registry: docker's Hub is the legacy
/// `https://index.docker.io/v1/`, as docker itself writes it; others are the bare host.
pub fn credential_key(registry: &str) -> String {
    if registry == DEFAULT_DOMAIN {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// The registry a `nook login SERVER` argument names (a URL or a bare host; none: docker.io).
pub fn registry_of_server(server: Option<&str>) -> String {
    let Some(server) = server else {
        return DEFAULT_DOMAIN.to_string();
    };
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DEFAULT_DOMAIN.to_string(),
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        for r in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(r), "{r}");
            assert_eq!(Endpoint::new(r, None).tls, TlsPolicy::Insecure, "{r}");
            assert_eq!(Endpoint::new(r, Some(true)).tls, TlsPolicy::Verify, "{r}");
        }
        for r in ["quay.io", "10.0.0.1:5000", "example.com:443", "docker.io"] {
            assert!(!is_loopback(r), "{r}");
            assert_eq!(Endpoint::new(r, None).tls, TlsPolicy::Verify, "{r}");
        }
        assert_eq!(
            Endpoint::new("quay.io", Some(false)).candidates(),
            ["https://quay.io", "http://quay.io"]
        );
        assert_eq!(
            Endpoint::new("quay.io", None).candidates(),
            ["https://quay.io"]
        );
    }

    #[test]
    fn docker_hub_is_served_from_its_api_host() {
        let e = Endpoint::new("docker.io", None);
        assert_eq!(e.host, "registry-1.docker.io");
        assert_eq!(credential_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(credential_key("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn login_servers_name_registries() {
        assert_eq!(registry_of_server(None), "docker.io");
        assert_eq!(
            registry_of_server(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(
            registry_of_server(Some("http://127.0.0.1:5000/")),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_of_server(Some("quay.io")), "quay.io");
    }
}
