//! The guest's network interfaces: the loopback (always up, so that servers on localhost work in
//! the container) and, with `nook.net`, [`INTERFACE`] (the virtio-net device, backed by passt on
//! the host) with its IPv4 address, MTU and default route. IPv6 is left to the kernel: it
//! configures its addresses and route from passt's router advertisements once the link is up.
//!
//! Plain `ioctl`s on an `AF_INET` socket (what `ifconfig` and `route` do): no netlink code and no
//! dependency for the few settings a guest needs.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::cmdline::NetParams;

/// The interface `nook.net` configures: the guest's only virtio-net device.
pub const INTERFACE: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot open a socket to configure the network interfaces")]
    Socket(#[source] io::Error),
    #[error("{name:?} is not an interface name (1 to 15 bytes, no NUL or slash)")]
    BadName { name: String },
    #[error("interface {interface}: cannot {step}")]
    Step {
        interface: String,
        step: Step,
        #[source]
        source: io::Error,
    },
}

/// What was being done to an interface when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    ReadFlags,
    Up,
    Address(Ipv4Addr),
    Netmask(Ipv4Addr),
    Mtu(u16),
    /// A host route to a gateway outside the interface's subnet, so it can be a next hop.
    GatewayRoute(Ipv4Addr),
    DefaultRoute(Ipv4Addr),
    /// Writing `1` to the sysctl file.
    AcceptRa(PathBuf),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::ReadFlags => f.write_str("read its flags"),
            Step::Up => f.write_str("bring it up"),
            Step::Address(a) => write!(f, "set its IPv4 address to {a}"),
            Step::Netmask(m) => write!(f, "set its netmask to {m}"),
            Step::Mtu(m) => write!(f, "set its MTU to {m}"),
            Step::GatewayRoute(g) => write!(f, "add a host route to the gateway {g}"),
            Step::DefaultRoute(g) => write!(f, "add the default route via {g}"),
            Step::AcceptRa(path) => write!(
                f,
                "accept IPv6 router advertisements (writing 1 to {})",
                path.display()
            ),
        }
    }
}

/// Brings `lo` up.
pub fn loopback_up() -> Result<(), NetError> {
    Interface::open("lo")?.up()
}

/// Configures `interface` from `nook.net`: IPv6 router advertisements accepted (when the kernel
/// has IPv6), the IPv4 address and netmask, the MTU, the interface up, then the default route via
/// the gateway (after a host route to it when it lies outside the subnet).
pub fn configure(interface: &str, net: &NetParams) -> Result<(), NetError> {
    let iface = Interface::open(interface)?;
    // Before the link goes up: the router solicitation sent then is answered by passt.
    iface.accept_ra(Path::new(IPV6_CONF))?;
    iface.set_addr(libc::SIOCSIFADDR, Step::Address(net.address), net.address)?;
    let mask = net.netmask();
    iface.set_addr(libc::SIOCSIFNETMASK, Step::Netmask(mask), mask)?;
    iface.set_mtu(net.mtu)?;
    iface.up()?;
    let on_link =
        u32::from(net.gateway) & u32::from(mask) == u32::from(net.address) & u32::from(mask);
    if !on_link {
        iface.add_route(
            net.gateway,
            Ipv4Addr::BROADCAST,
            None,
            Step::GatewayRoute(net.gateway),
        )?;
    }
    iface.add_route(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Some(net.gateway),
        Step::DefaultRoute(net.gateway),
    )
}

/// Per-interface IPv6 settings; absent when the kernel has no IPv6.
const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

/// An interface name and a socket to configure it through.
struct Interface {
    sock: OwnedFd,
    name: String,
    /// `name` NUL-terminated, as `ifr_name` and `rt_dev` take it.
    c_name: [libc::c_char; libc::IFNAMSIZ],
}

/// A `sockaddr_in` laid out in a plain `sockaddr`: family, port 0, the address's octets.
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    for (dst, src) in data[2..6].iter_mut().zip(addr.octets()) {
        *dst = src as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

impl Interface {
    fn open(name: &str) -> Result<Interface, NetError> {
        let mut c_name = [0 as libc::c_char; libc::IFNAMSIZ];
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
            return Err(NetError::BadName {
                name: name.to_owned(),
            });
        }
        for (dst, src) in c_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: socket takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(NetError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Interface {
            sock,
            name: name.to_owned(),
            c_name,
        })
    }

    fn failed(&self, step: Step) -> NetError {
        NetError::Step {
            interface: self.name.clone(),
            step,
            source: io::Error::last_os_error(),
        }
    }

    /// An `ifreq` naming this interface, its union zeroed.
    fn request(&self) -> libc::ifreq {
        // SAFETY: an all-zero ifreq is valid (integers, arrays and a union of those).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.c_name;
        req
    }

    /// Calls `ioctl(request, req)`; `step` names a failure.
    fn ioctl(
        &self,
        request: libc::Ioctl,
        req: &mut libc::ifreq,
        step: Step,
    ) -> Result<(), NetError> {
        // SAFETY: every SIOC[GS]IF* request this module makes reads or writes only the ifreq it
        // is given, which is valid and exclusively ours for the call.
        if unsafe { libc::ioctl(self.sock.as_raw_fd(), request, req as *mut libc::ifreq) } != 0 {
            return Err(self.failed(step));
        }
        Ok(())
    }

    fn up(&self) -> Result<(), NetError> {
        let mut req = self.request();
        self.ioctl(libc::SIOCGIFFLAGS, &mut req, Step::ReadFlags)?;
        // SAFETY: the flags member of the union was just written by the kernel.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        self.ioctl(libc::SIOCSIFFLAGS, &mut req, Step::Up)
    }

    fn set_addr(&self, request: libc::Ioctl, step: Step, addr: Ipv4Addr) -> Result<(), NetError> {
        let mut req = self.request();
        req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
        self.ioctl(request, &mut req, step)
    }

    fn set_mtu(&self, mtu: u16) -> Result<(), NetError> {
        let mut req = self.request();
        req.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
        self.ioctl(libc::SIOCSIFMTU, &mut req, Step::Mtu(mtu))
    }

    /// `SIOCADDRT` of `dst`/`mask` out of this interface, via `gateway` if given.
    fn add_route(
        &self,
        dst: Ipv4Addr,
        mask: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
        step: Step,
    ) -> Result<(), NetError> {
        // SAFETY: an all-zero rtentry is valid (integers, sockaddrs and a null device pointer).
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr_v4(dst);
        rt.rt_genmask = sockaddr_v4(mask);
        rt.rt_flags = libc::RTF_UP;
        if mask == Ipv4Addr::BROADCAST {
            rt.rt_flags |= libc::RTF_HOST;
        }
        if let Some(gateway) = gateway {
            rt.rt_gateway = sockaddr_v4(gateway);
            rt.rt_flags |= libc::RTF_GATEWAY;
        }
        let mut dev = self.c_name;
        rt.rt_dev = dev.as_mut_ptr();
        // SAFETY: SIOCADDRT reads the rtentry and the NUL-terminated device name it points to,
        // both alive and unaliased for the call.
        if unsafe {
            libc::ioctl(
                self.sock.as_raw_fd(),
                libc::SIOCADDRT,
                &mut rt as *mut libc::rtentry,
            )
        } != 0
        {
            return Err(self.failed(step));
        }
        Ok(())
    }

    /// Writes `1` to `conf/<name>/accept_ra`, unless `conf` is missing (a kernel without IPv6).
    /// The kernel's default is already 1 for a host that does not forward; set here so that
    /// the guest's addresses never depend on it.
    fn accept_ra(&self, conf: &Path) -> Result<(), NetError> {
        if !conf.exists() {
            return Ok(());
        }
        let path = conf.join(&self.name).join("accept_ra");
        std::fs::write(&path, b"1").map_err(|source| NetError::Step {
            interface: self.name.clone(),
            step: Step::AcceptRa(path.clone()),
            source,
        })
    }
}

/// Each test re-runs itself as root of a user namespace (`privileged`), then moves its thread
/// into a new network namespace of its own, where it creates a TAP device (through /dev/net/tun)
/// and configures it as the agent configures `eth0`; the settings are read back from the kernel.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{privileged, Needs};

    /// Moves this thread into a new network namespace and creates the TAP device `name` there;
    /// the device lives as long as the returned descriptor. Panics when it cannot.
    fn tap_in_new_netns(name: &str) -> OwnedFd {
        // SAFETY: unshare takes a flag; a network namespace is per thread, and this one is ours.
        let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            ret,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap_or_else(|e| panic!("cannot open /dev/net/tun to create a TAP device: {e}"));
        let mut req = Interface::open(name).unwrap().request();
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads (and writes back) the valid ifreq we pass.
        let ret = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut _) };
        assert_eq!(ret, 0, "TUNSETIFF {name}: {}", io::Error::last_os_error());
        OwnedFd::from(tun)
    }

    /// The interface's `ifreq` after the `SIOCGIF*` `request`.
    fn read(name: &str, request: libc::Ioctl) -> libc::ifreq {
        let iface = Interface::open(name).unwrap();
        let mut req = iface.request();
        iface
            .ioctl(request, &mut req, Step::ReadFlags)
            .unwrap_or_else(|e| panic!("{}", crate::errors::chain(&e)));
        req
    }

    fn read_addr(name: &str, request: libc::Ioctl) -> Ipv4Addr {
        // SAFETY: the address requests fill the sockaddr member of the union.
        let sa = unsafe { read(name, request).ifr_ifru.ifru_addr };
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        let b = |i: usize| sa.sa_data[i] as u8;
        Ipv4Addr::new(b(2), b(3), b(4), b(5))
    }

    fn flags(name: &str) -> libc::c_int {
        // SAFETY: SIOCGIFFLAGS fills the flags member of the union.
        libc::c_int::from(unsafe { read(name, libc::SIOCGIFFLAGS).ifr_ifru.ifru_flags })
    }

    /// This thread's IPv4 routes: (interface, destination, gateway, flags, mask), addresses in
    /// the kernel's byte order as /proc/net/route prints them.
    fn routes() -> Vec<(String, Ipv4Addr, Ipv4Addr, u32, Ipv4Addr)> {
        // thread-self: the network namespace is this thread's, maybe not the main thread's.
        let text = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
        let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
        let addr = |s: &str| Ipv4Addr::from(hex(s).to_le_bytes());
        text.lines()
            .skip(1)
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (
                    f[0].to_owned(),
                    addr(f[1]),
                    addr(f[2]),
                    hex(f[3]),
                    addr(f[7]),
                )
            })
            .collect()
    }

    fn accept_ra(name: &str) -> String {
        let path = Path::new(IPV6_CONF).join(name).join("accept_ra");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn params(address: [u8; 4], prefix: u8, gateway: [u8; 4], mtu: u16) -> NetParams {
        NetParams {
            address: address.into(),
            prefix,
            gateway: gateway.into(),
            mtu,
        }
    }

    const UP_GATEWAY: u32 = (libc::RTF_UP | libc::RTF_GATEWAY) as u32;

    #[test]
    fn the_interface_gets_its_address_netmask_mtu_and_default_route() {
        if !privileged(
            Needs::UserNamespace,
            "guest::net::tests::the_interface_gets_its_address_netmask_mtu_and_default_route",
        ) {
            return;
        }
        let name = "nooknet0";
        let _tap = tap_in_new_netns(name);
        // A fresh namespace: the device is down, has no address and no route; RAs are turned
        // off here so that the test sees configure turn them on.
        assert_eq!(flags(name) & libc::IFF_UP, 0);
        assert!(routes().is_empty(), "{:?}", routes());
        std::fs::write(Path::new(IPV6_CONF).join(name).join("accept_ra"), "0").unwrap();

        let net = params([10, 0, 2, 100], 24, [10, 0, 2, 2], 65520);
        configure(name, &net).unwrap_or_else(|e| panic!("{}", crate::errors::chain(&e)));

        assert_eq!(read_addr(name, libc::SIOCGIFADDR), net.address);
        assert_eq!(
            read_addr(name, libc::SIOCGIFNETMASK),
            Ipv4Addr::new(255, 255, 255, 0)
        );
        // SAFETY: SIOCGIFMTU fills the mtu member of the union.
        let mtu = unsafe { read(name, libc::SIOCGIFMTU).ifr_ifru.ifru_mtu };
        assert_eq!(mtu, 65520);
        assert_ne!(flags(name) & libc::IFF_UP, 0);
        assert_eq!(accept_ra(name), "1");
        let routes = routes();
        let zero = Ipv4Addr::UNSPECIFIED;
        assert!(
            routes.contains(&(name.to_owned(), zero, net.gateway, UP_GATEWAY, zero)),
            "no default route via {} on {name}: {routes:?}",
            net.gateway
        );
        // The subnet's route comes from the address; no host route was needed.
        assert!(routes.contains(&(
            name.to_owned(),
            Ipv4Addr::new(10, 0, 2, 0),
            zero,
            libc::RTF_UP as u32,
            Ipv4Addr::new(255, 255, 255, 0)
        )));
        assert_eq!(routes.len(), 2, "{routes:?}");
    }

    /// passt may hand out a /32 (or a gateway outside the subnet): the default route then needs
    /// a host route to the gateway first, or the kernel refuses the next hop as unreachable.
    #[test]
    fn a_gateway_outside_the_subnet_is_reached_through_a_host_route() {
        if !privileged(
            Needs::UserNamespace,
            "guest::net::tests::a_gateway_outside_the_subnet_is_reached_through_a_host_route",
        ) {
            return;
        }
        let name = "nooknet1";
        let _tap = tap_in_new_netns(name);
        let net = params([192, 168, 9, 7], 32, [192, 168, 9, 1], 1500);
        configure(name, &net).unwrap_or_else(|e| panic!("{}", crate::errors::chain(&e)));

        assert_eq!(read_addr(name, libc::SIOCGIFADDR), net.address);
        assert_eq!(read_addr(name, libc::SIOCGIFNETMASK), Ipv4Addr::BROADCAST);
        let routes = routes();
        let zero = Ipv4Addr::UNSPECIFIED;
        let host = (libc::RTF_UP | libc::RTF_HOST) as u32;
        assert!(
            routes.contains(&(
                name.to_owned(),
                net.gateway,
                zero,
                host,
                Ipv4Addr::BROADCAST
            )),
            "{routes:?}"
        );
        assert!(
            routes.contains(&(name.to_owned(), zero, net.gateway, UP_GATEWAY, zero)),
            "{routes:?}"
        );
    }

    #[test]
    fn failures_name_the_interface_and_the_step() {
        if !privileged(
            Needs::UserNamespace,
            "guest::net::tests::failures_name_the_interface_and_the_step",
        ) {
            return;
        }
        let name = "nooknet2";
        let _tap = tap_in_new_netns(name);
        // The loopback of a new namespace is down until brought up.
        assert_eq!(flags("lo") & libc::IFF_UP, 0);
        loopback_up().unwrap();
        assert_ne!(flags("lo") & libc::IFF_UP, 0);

        let net = params([10, 0, 2, 100], 24, [10, 0, 2, 2], 1500);
        let err = configure("nooknomissing", &net).unwrap_err();
        let text = crate::errors::chain(&err);
        assert!(
            text.starts_with("interface nooknomissing: cannot accept IPv6 router advertisements"),
            "{text}"
        );
        // An MTU beyond what the device takes: the step and the value are named.
        let iface = Interface::open(name).unwrap();
        let err = iface.set_mtu(60).unwrap_err();
        assert!(
            matches!(
                &err,
                NetError::Step {
                    step: Step::Mtu(60),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("interface {name}: cannot set its MTU to 60")
        );
        // A gateway the interface cannot reach (its address is not set yet).
        let err = iface
            .add_route(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Some(Ipv4Addr::new(10, 9, 9, 9)),
                Step::DefaultRoute(Ipv4Addr::new(10, 9, 9, 9)),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("interface {name}: cannot add the default route via 10.9.9.9")
        );
        assert!(matches!(
            Interface::open("a-name-over-15-bytes"),
            Err(NetError::BadName { .. })
        ));
    }
}
