//! A container's network, the same in both columns: docker's flags (`--network`, `-p`, `-P`,
//! `--dns`, `--dns-search`, `--add-host`) turned into one [`NetworkSpec`] kept in the record, and
//! what both columns derive from it: the container's `/etc/hosts` and `/etc/resolv.conf`, and the
//! arguments of the user-mode network stack (pasta for a namespace, passt for a VM; one program,
//! the same options).
//!
//! Every container with a network gets the same addresses, as docker's bridge gives each its
//! own: the stack translates them, so they never collide between containers. Port forwards are
//! the stack's own listening sockets on the host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

/// The container's IPv4 address, prefix, gateway and DNS forwarder: podman's default bridge
/// network, rarely a real network nearby (10.0.2.0/24, slirp's, often is: QEMU user networking
/// puts hosts there).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
pub const PREFIX: u8 = 16;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
pub const DNS_FORWARD: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);
/// pasta's and passt's default MTU.
pub const MTU: u16 = 65520;

/// `--network`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Only `lo` (and what records written before networking existed have).
    None,
    /// The host's network namespace (namespace column only).
    Host,
    /// A user-mode stack: pasta for a namespace, passt for a VM, with the user's extra options
    /// (`--network pasta:--map-gw`).
    Pasta { options: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port: `[host_ip:]host_port` on the host to `container_port` inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    /// docker's `ps` form: `127.0.0.1:8080->80/tcp`, `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.map_or("0.0.0.0".to_string(), |ip| match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        });
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// What a container's network is, fixed at create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub mode: NetworkMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// `--add-host NAME:IP`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<(String, String)>,
}

impl Default for NetworkSpec {
    /// Only `lo`: what a container recorded before networking existed has.
    fn default() -> Self {
        NetworkSpec {
            mode: NetworkMode::None,
            ports: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            add_hosts: Vec::new(),
        }
    }
}

/// A network flag nook refuses, named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("invalid --network {0:?}: use pasta (the default), pasta:OPTIONS, none or host")]
    Mode(String),
    #[error("invalid --publish {spec:?}: {reason}")]
    Publish { spec: String, reason: String },
    #[error("invalid --add-host {0:?}: use NAME:IP")]
    AddHost(String),
    #[error("invalid --dns {0:?}: not an IP address")]
    Dns(String),
    #[error("--publish needs a network: not with --network {0}")]
    PublishWithout(&'static str),
    #[error("--network host is not available with --isolation=vm: a VM has no access to the host's network namespace (use -p to publish ports)")]
    HostInVm,
    #[error("cannot publish {mapping}: Bind for {addr} failed: port is already allocated")]
    InUse { mapping: String, addr: String },
    #[error("cannot publish {mapping}: binding {addr} is not permitted to this user (ports below net.ipv4.ip_unprivileged_port_start need privileges)")]
    Privileged { mapping: String, addr: String },
    #[error("cannot publish {mapping} on {addr}: {reason}")]
    Bind {
        mapping: String,
        addr: String,
        reason: String,
    },
}

/// Parses `--network` (`--net`).
pub fn parse_mode(s: &str) -> Result<NetworkMode, NetworkError> {
    match s {
        "" | "pasta" | "default" | "bridge" | "slirp4netns" => {
            Ok(NetworkMode::Pasta { options: vec![] })
        }
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        _ => match s.strip_prefix("pasta:") {
            Some(opts) => Ok(NetworkMode::Pasta {
                options: opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect(),
            }),
            None => Err(NetworkError::Mode(s.to_string())),
        },
    }
}

fn port_range(s: &str, spec: &str) -> Result<(u16, u16), NetworkError> {
    let bad = |reason: String| NetworkError::Publish {
        spec: spec.to_string(),
        reason,
    };
    let one = |p: &str| -> Result<u16, NetworkError> {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(n) => Err(bad(format!("port {n} is out of range 1-65535"))),
            Err(_) => Err(bad(format!("{p:?} is not a port number"))),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad(format!("the range {a}-{b} is empty")));
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// Parses one `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]` (ports may be ranges of equal
/// length). A missing host port is given a free one at once (docker picks one as well).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, NetworkError> {
    let bad = |reason: &str| NetworkError::Publish {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Protocol::Tcp),
        Some((r, "udp")) => (r, Protocol::Udp),
        Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?}: use tcp or udp"))),
        None => (spec, Protocol::Tcp),
    };
    // An IPv6 host address is written in brackets: [::1]:8080:80.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once("]:").ok_or_else(|| bad("unclosed ["))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
        (Some(ip), after)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => {
                let ip: IpAddr = parts[0].parse().map_err(|_| bad("not an IP address"))?;
                (Some(ip), &rest[parts[0].len() + 1..])
            }
            _ => return Err(bad("too many ':'")),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h).filter(|h| !h.is_empty()), c),
        None => (None, rest),
    };
    let (c_lo, c_hi) = port_range(container, spec)?;
    let host_ports: Vec<u16> = match host {
        Some(h) => {
            let (h_lo, h_hi) = port_range(h, spec)?;
            if h_hi - h_lo != c_hi - c_lo {
                return Err(bad("the host and container port ranges differ in length"));
            }
            (h_lo..=h_hi).collect()
        }
        None => (c_lo..=c_hi)
            .map(|_| free_port(host_ip, protocol).map_err(|e| bad(&e)))
            .collect::<Result<_, _>>()?,
    };
    Ok(host_ports
        .into_iter()
        .zip(c_lo..=c_hi)
        .map(|(host_port, container_port)| PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
        .collect())
}

/// A port the kernel calls free now.
fn free_port(ip: Option<IpAddr>, protocol: Protocol) -> Result<u16, String> {
    let addr = SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
    let port = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
    };
    port.map(|a| a.port())
        .map_err(|e| format!("no free port to pick: {e}"))
}

/// Parses `--add-host NAME:IP` (docker also takes `NAME=IP`).
pub fn parse_add_host(s: &str) -> Result<(String, String), NetworkError> {
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| NetworkError::AddHost(s.to_string()))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ok_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !ok_name || (ip != "host-gateway" && ip.parse::<IpAddr>().is_err()) {
        return Err(NetworkError::AddHost(s.to_string()));
    }
    Ok((name.to_string(), ip.to_string()))
}

/// Checks `--dns`.
pub fn parse_dns(s: &str) -> Result<String, NetworkError> {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| NetworkError::Dns(s.to_string()))
}

impl NetworkSpec {
    /// Whether the container has a network beyond `lo` through a user-mode stack.
    pub fn stack(&self) -> Option<&[String]> {
        match &self.mode {
            NetworkMode::Pasta { options } => Some(options),
            _ => None,
        }
    }

    /// The mode's name, as `inspect` shows it.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Pasta { .. } => "pasta",
        }
    }

    /// Whether the user opted in to reach the host's loopback through the gateway address
    /// (`--network pasta:--map-gw`, as podman's).
    pub fn maps_gateway(&self) -> bool {
        self.stack()
            .is_some_and(|o| o.iter().any(|a| a == "--map-gw"))
    }

    /// Refuses what this spec cannot do: ports without a stack.
    pub fn check(&self) -> Result<(), NetworkError> {
        match (&self.mode, self.ports.is_empty()) {
            (NetworkMode::None, false) => Err(NetworkError::PublishWithout("none")),
            (NetworkMode::Host, false) => Err(NetworkError::PublishWithout("host")),
            _ => Ok(()),
        }
    }

    /// Checks that every published port can be bound by this user now, so that `run` fails
    /// with the port's name instead of a stack that cannot listen.
    pub fn check_ports_free(&self) -> Result<(), NetworkError> {
        for m in &self.ports {
            let ip = m.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let addr = SocketAddr::new(ip, m.host_port);
            let bound = match m.protocol {
                Protocol::Tcp => TcpListener::bind(addr).map(drop),
                Protocol::Udp => UdpSocket::bind(addr).map(drop),
            };
            if let Err(e) = bound {
                let (mapping, addr) = (m.to_string(), addr.to_string());
                return Err(match e.kind() {
                    std::io::ErrorKind::AddrInUse => NetworkError::InUse { mapping, addr },
                    std::io::ErrorKind::PermissionDenied => {
                        NetworkError::Privileged { mapping, addr }
                    }
                    _ => NetworkError::Bind {
                        mapping,
                        addr,
                        reason: e.to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// The options of pasta (namespace column) and passt (VM column) for this container: the
    /// addresses above, no access to the host's loopback unless asked, the port forwards, then
    /// the user's own options.
    pub fn stack_args(&self) -> Vec<String> {
        let Some(options) = self.stack() else {
            return Vec::new();
        };
        let mut args: Vec<String> = vec![
            "--quiet".into(),
            "--address".into(),
            ADDRESS.to_string(),
            "--netmask".into(),
            PREFIX.to_string(),
            "--gateway".into(),
            GATEWAY.to_string(),
            "--dns-forward".into(),
            DNS_FORWARD.to_string(),
            "--mtu".into(),
            MTU.to_string(),
        ];
        if !self.maps_gateway() {
            args.push("--no-map-gw".into());
        }
        // Only what is published: pasta's default would forward every port the container
        // listens on.
        for (protocol, flag) in [
            (Protocol::Tcp, "--tcp-ports"),
            (Protocol::Udp, "--udp-ports"),
        ] {
            if !self.ports.iter().any(|m| m.protocol == protocol) {
                args.extend([flag.to_string(), "none".to_string()]);
            }
        }
        for m in &self.ports {
            let flag = match m.protocol {
                Protocol::Tcp => "--tcp-ports",
                Protocol::Udp => "--udp-ports",
            };
            let host = match m.host_ip {
                Some(ip) => format!("{ip}/{}", m.host_port),
                None => m.host_port.to_string(),
            };
            args.push(flag.into());
            args.push(format!("{host}:{}", m.container_port));
        }
        args.extend(options.iter().filter(|o| o.as_str() != "--map-gw").cloned());
        args
    }

    /// The container's `/etc/hosts`, as docker writes it.
    pub fn hosts_file(&self, hostname: &str) -> String {
        let mut s = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n",
        );
        for (name, ip) in &self.add_hosts {
            let ip = if ip == "host-gateway" {
                GATEWAY.to_string()
            } else {
                ip.clone()
            };
            s.push_str(&format!("{ip}\t{name}\n"));
        }
        match self.mode {
            NetworkMode::Pasta { .. } => {
                s.push_str(&format!("{ADDRESS}\t{hostname}\n"));
                s.push_str(&format!(
                    "{GATEWAY}\thost.containers.internal host.docker.internal\n"
                ));
            }
            NetworkMode::None | NetworkMode::Host => {
                s.push_str(&format!("127.0.0.1\t{hostname}\n"));
            }
        }
        s
    }

    /// The container's `/etc/resolv.conf`: the stack's DNS forwarder unless `--dns` names
    /// servers. None keeps the image's own file (`--network none` without `--dns`, and
    /// `--network host`, which reads the host's files anyway).
    pub fn resolv_conf(&self, host_resolv: &str) -> Option<String> {
        let mut servers: Vec<String> = self.dns.clone();
        if servers.is_empty() {
            match self.mode {
                NetworkMode::Pasta { .. } => servers.push(DNS_FORWARD.to_string()),
                NetworkMode::Host => {
                    servers = host_resolv
                        .lines()
                        .filter_map(|l| l.trim().strip_prefix("nameserver"))
                        .map(|s| s.trim().to_string())
                        .collect()
                }
                NetworkMode::None if self.dns_search.is_empty() => return None,
                NetworkMode::None => {}
            }
        }
        let mut s = String::new();
        if !self.dns_search.is_empty() {
            s.push_str(&format!("search {}\n", self.dns_search.join(" ")));
        }
        for server in servers {
            s.push_str(&format!("nameserver {server}\n"));
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(ip: Option<&str>, h: u16, c: u16) -> PortMapping {
        PortMapping {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: h,
            container_port: c,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn publish_specs_follow_docker() {
        assert_eq!(parse_publish("8080:80").unwrap(), [tcp(None, 8080, 80)]);
        assert_eq!(
            parse_publish("127.0.0.1:8080:80").unwrap(),
            [tcp(Some("127.0.0.1"), 8080, 80)]
        );
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap(),
            [tcp(Some("::1"), 8080, 80)]
        );
        let udp = parse_publish("5353:53/udp").unwrap();
        assert_eq!(udp[0].protocol, Protocol::Udp);
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            [tcp(None, 8000, 80), tcp(None, 8001, 81)]
        );
        let picked = parse_publish("80").unwrap();
        assert_eq!(picked[0].container_port, 80);
        assert_ne!(picked[0].host_port, 0);
        let picked = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!(picked[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            picked[0].to_string(),
            format!("127.0.0.1:{}->80/tcp", picked[0].host_port)
        );
    }

    #[test]
    fn bad_publish_specs_are_named() {
        for (spec, why) in [
            ("99999:80", "out of range"),
            ("abc", "not a port number"),
            ("8080:80/sctp", "unknown protocol"),
            ("1.2.3:8080:80", "not an IP address"),
            ("8000-8002:80-81", "differ in length"),
            ("81-80", "empty"),
            ("a:b:c:d", "too many"),
        ] {
            let e = parse_publish(spec).unwrap_err().to_string();
            assert!(e.contains(spec) && e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn modes_and_hosts() {
        assert_eq!(
            parse_mode("pasta").unwrap(),
            NetworkMode::Pasta { options: vec![] }
        );
        assert_eq!(
            parse_mode("pasta:--map-gw").unwrap(),
            NetworkMode::Pasta {
                options: vec!["--map-gw".into()]
            }
        );
        assert_eq!(parse_mode("none").unwrap(), NetworkMode::None);
        assert!(parse_mode("macvlan").is_err());
        assert_eq!(
            parse_add_host("db:10.1.2.3").unwrap(),
            ("db".into(), "10.1.2.3".into())
        );
        assert_eq!(
            parse_add_host("v6:[::1]").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert!(parse_add_host("db").is_err() && parse_add_host("db:x").is_err());
        assert!(parse_dns("1.1.1.1").is_ok() && parse_dns("dns.example").is_err());
    }

    #[test]
    fn stack_arguments_close_the_host_loopback_unless_asked() {
        let mut spec = NetworkSpec {
            mode: parse_mode("pasta").unwrap(),
            ports: parse_publish("127.0.0.1:8080:80").unwrap(),
            ..NetworkSpec::default()
        };
        spec.ports.extend(parse_publish("5353:53/udp").unwrap());
        let args = spec.stack_args().join(" ");
        assert!(args.contains("--no-map-gw"), "{args}");
        assert!(!args.contains("none"), "{args}");
        assert!(args.contains("--tcp-ports 127.0.0.1/8080:80"), "{args}");
        assert!(args.contains("--udp-ports 5353:53"), "{args}");
        spec.mode = parse_mode("pasta:--map-gw").unwrap();
        let args = spec.stack_args();
        assert!(!args.iter().any(|a| a.contains("map-gw")), "{args:?}");
        spec.ports.clear();
        let args = spec.stack_args().join(" ");
        assert!(
            args.contains("--tcp-ports none") && args.contains("--udp-ports none"),
            "{args}"
        );
        spec.mode = NetworkMode::None;
        assert!(spec.stack_args().is_empty());
        spec.ports = parse_publish("8080:80").unwrap();
        assert_eq!(spec.check(), Err(NetworkError::PublishWithout("none")));
    }

    #[test]
    fn hosts_and_resolv_conf_files() {
        let spec = NetworkSpec {
            mode: parse_mode("pasta").unwrap(),
            add_hosts: vec![
                ("db".into(), "10.9.9.9".into()),
                ("gw".into(), "host-gateway".into()),
            ],
            dns_search: vec!["example.com".into()],
            ..NetworkSpec::default()
        };
        let hosts = spec.hosts_file("web");
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.contains("10.9.9.9\tdb\n") && hosts.contains("10.88.0.1\tgw\n"));
        assert!(hosts.contains("10.88.0.2\tweb\n"));
        assert!(hosts.contains("10.88.0.1\thost.containers.internal"));
        assert_eq!(
            spec.resolv_conf("").unwrap(),
            "search example.com\nnameserver 10.88.0.3\n"
        );
        let none = NetworkSpec::default();
        assert_eq!(none.resolv_conf("nameserver 1.1.1.1\n"), None);
        assert!(none.hosts_file("h").contains("127.0.0.1\th\n"));
        let host = NetworkSpec {
            mode: NetworkMode::Host,
            ..NetworkSpec::default()
        };
        assert_eq!(
            host.resolv_conf("# x\nnameserver 192.0.2.53\n").unwrap(),
            "nameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn a_bound_port_is_refused_by_name() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec = NetworkSpec {
            mode: parse_mode("pasta").unwrap(),
            ports: parse_publish(&format!("127.0.0.1:{port}:80")).unwrap(),
            ..NetworkSpec::default()
        };
        let e = spec.check_ports_free().unwrap_err().to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("already allocated"),
            "{e}"
        );
        drop(taken);
        spec.check_ports_free().unwrap();
    }
}
