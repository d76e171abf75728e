//! The agent's kernel command-line parameters (`nook.*`), read from /proc/cmdline.
//!
//! The kernel drops unknown dotted parameters instead of passing them to init, so the agent
//! reads them back from /proc/cmdline. Every parameter is optional:
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `nook.root=DEV` | `vda` | block device with the image's root filesystem, mounted read-only |
//! | `nook.rootfstype=FS` | `erofs` | its filesystem type |
//! | `nook.upper=DEV`, `tmpfs` or `auto` | `auto` | the container's writable disk (its `upper/` and `work/` directories hold the overlay's upper layer, created on first boot) or a tmpfs (changes die with the VM); `auto` takes `/dev/vdb` when the guest has it, else a tmpfs |
//! | `nook.upperfstype=FS` | `ext4` | the writable disk's filesystem type |
//! | `nook.roottag=TAG` | none | the container's root is the host directory shared by the virtio-fs device `TAG`, mounted as it is (read-write unless `nook.readonly`): no image disk, no overlay, no writable layer of the guest's own (`nook.root` and `nook.upper` are not used; the OCI runtime's VM column, whose bundle root is the caller's) |
//! | `nook.channel=PATH` | `/dev/virtio-ports/nook.agent` | the host channel: a virtio-serial port by the name udev would link it under (`/dev/virtio-ports/NAME`, found through `/sys/class/virtio-ports`: the guest runs no udev), or a device such as `/dev/hvc0` (a tty is put in raw mode) |
//! | `nook.readonly` or `nook.readonly=1` | off | the container's root is read-only once its files are set up (`--read-only`) |
//! | `nook.warm` or `nook.warm=1` | off | a template boot (see [`crate::guest::warm`]): once booted the agent asks the host for its container's parameters, which replace these |
//! | `nook.debug` or `nook.debug=1` | off | log each boot step to the kernel log (seen on the serial console with `console=ttyS0`) |
//! | `nook.net=ADDR/PREFIX,GATEWAY,MTU` | none (only `lo`) | configure `eth0` (the virtio-net device): IPv4 address `ADDR` (dotted) with prefix length `PREFIX` (0-32), default route via `GATEWAY`, MTU `MTU` (68-65535), e.g. `nook.net=10.0.2.100/24,10.0.2.2,65520`; IPv6 is left to the kernel's autoconfiguration |
//!
//! `DEV` is a name under /dev (`vdb`) or a path (`/dev/vdb`).
//!
//! The host writes the whole command line from the same struct ([`BootParams`]'s `Display`),
//! so that what it boots with and what the agent reads cannot drift apart.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The parsed `nook.*` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    pub root_device: PathBuf,
    pub root_fstype: String,
    pub upper: Upper,
    pub upper_fstype: String,
    pub channel: PathBuf,
    pub debug: bool,
    /// `--read-only`: the container's root is read-only (its writable layer is still shown).
    pub read_only: bool,
    /// `eth0`'s IPv4 configuration; `None` leaves every interface but `lo` alone.
    pub net: Option<NetParams>,
    /// A template boot: ask the host for the container's parameters before the container root
    /// is built (see [`crate::guest::warm`]).
    pub warm: bool,
    /// The virtio-fs tag of a host directory that is the container's root as it is
    /// (`nook.roottag`), instead of the image disk and the overlay.
    pub root_tag: Option<String>,
}

/// The IPv4 configuration of the guest's network interface (`nook.net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetParams {
    pub address: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
    /// The default route's next hop.
    pub gateway: Ipv4Addr,
    /// At least [`MIN_MTU`] (the smallest IPv4 allows).
    pub mtu: u16,
}

/// The smallest MTU `nook.net` accepts: IPv4's minimum (RFC 791).
pub const MIN_MTU: u16 = 68;

impl NetParams {
    /// The netmask of [`NetParams::prefix`] (`24` is 255.255.255.0).
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Reads `ADDR/PREFIX,GATEWAY,MTU`.
    fn parse(value: &str) -> Result<NetParams, CmdlineError> {
        let bad = |reason| CmdlineError::BadNet {
            value: value.to_owned(),
            reason,
        };
        let mut fields = value.split(',');
        let (Some(cidr), Some(gateway), Some(mtu), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("it needs exactly three comma-separated fields"));
        };
        let (address, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| bad("the address has no /PREFIX"))?;
        let address = address
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("the address is not a dotted IPv4 address"))?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32 && !prefix.starts_with('+'))
            .ok_or_else(|| bad("the prefix length is not a number from 0 to 32"))?;
        let gateway = gateway
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("the gateway is not a dotted IPv4 address"))?;
        let mtu = mtu
            .parse::<u16>()
            .ok()
            .filter(|m| *m >= MIN_MTU && !mtu.starts_with('+'))
            .ok_or_else(|| bad("the MTU is not a number from 68 to 65535"))?;
        Ok(NetParams {
            address,
            prefix,
            gateway,
            mtu,
        })
    }
}

/// `ADDR/PREFIX,GATEWAY,MTU`, what [`BootParams::parse`] reads back.
impl fmt::Display for NetParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{},{},{}",
            self.address, self.prefix, self.gateway, self.mtu
        )
    }
}

/// Where the overlay's upper layer lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upper {
    Tmpfs,
    Device(PathBuf),
    /// [`AUTO_UPPER_DEVICE`] if it exists, else a tmpfs.
    Auto,
}

/// The writable disk `nook.upper=auto` looks for: the second virtio-blk disk.
pub const AUTO_UPPER_DEVICE: &str = "/dev/vdb";

#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("kernel parameter {param}={value} does not name a device (a name under /dev or a /dev/ path)")]
    BadDevice { param: &'static str, value: String },
    #[error("kernel parameter {param}={value} is not a filesystem type")]
    BadFsType { param: &'static str, value: String },
    #[error("kernel parameter {param}={value} is not an absolute path")]
    BadPath { param: &'static str, value: String },
    #[error("kernel parameter nook.debug={value} is neither 0 nor 1")]
    BadDebug { value: String },
    #[error("kernel parameter nook.warm={value} is neither 0 nor 1")]
    BadWarm { value: String },
    #[error("kernel parameter nook.readonly={value} is neither 0 nor 1")]
    BadReadOnly { value: String },
    #[error(
        "kernel parameter nook.roottag={value} is not a virtio-fs tag (letters, digits, - and _)"
    )]
    BadTag { value: String },
    #[error("kernel parameter nook.net={value} is not ADDR/PREFIX,GATEWAY,MTU: {reason}")]
    BadNet { value: String, reason: &'static str },
}

/// An environment variable whose `nook.*` words are read after the kernel command line's
/// (the agent's host tests run it as PID 1 of a PID namespace, where /proc/cmdline is the host's).
pub const CMDLINE_ENV: &str = "NOOK_AGENT_CMDLINE";

/// The channel device when `nook.channel` is not given.
pub const DEFAULT_CHANNEL: &str = "/dev/virtio-ports/nook.agent";

impl Default for BootParams {
    fn default() -> Self {
        BootParams {
            root_device: "/dev/vda".into(),
            root_fstype: "erofs".into(),
            upper: Upper::Auto,
            upper_fstype: "ext4".into(),
            channel: DEFAULT_CHANNEL.into(),
            debug: false,
            read_only: false,
            net: None,
            warm: false,
            root_tag: None,
        }
    }
}

fn tag(value: &str) -> Result<String, CmdlineError> {
    if value.is_empty()
        || value.len() > 36
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CmdlineError::BadTag {
            value: value.to_owned(),
        });
    }
    Ok(value.to_owned())
}

fn device(param: &'static str, value: &str) -> Result<PathBuf, CmdlineError> {
    let bad = || CmdlineError::BadDevice {
        param,
        value: value.to_owned(),
    };
    let name = value.strip_prefix("/dev/").unwrap_or(value);
    if name.is_empty()
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad());
    }
    Ok(PathBuf::from("/dev").join(name))
}

fn fstype(param: &'static str, value: &str) -> Result<String, CmdlineError> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(CmdlineError::BadFsType {
            param,
            value: value.to_owned(),
        });
    }
    Ok(value.to_owned())
}

/// What every guest boots with besides the `nook.*` parameters: no reboot (the VMM exits
/// when the guest does), no wait after a panic, the agent as init.
pub const KERNEL_ARGS: &str = "reboot=k panic=-1 rdinit=/init";

/// A device as a name under /dev when it is one (`vdb`), else its path.
fn device_arg(path: &Path) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/dev") {
        Ok(name) if !name.as_os_str().is_empty() => name.to_string_lossy(),
        _ => path.to_string_lossy(),
    }
}

/// The kernel command line the host boots a guest with: the console (the serial port with
/// `debug`, whose boot steps it shows, else none: without one the kernel may pick a console
/// port, which may be the agent channel), [`KERNEL_ARGS`], then each `nook.*` parameter that differs from its default.
/// [`BootParams::parse`] reads it back to the same value.
impl fmt::Display for BootParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = BootParams::default();
        if self.debug {
            f.write_str("console=ttyS0 nook.debug")?;
        } else {
            f.write_str("console=ttynull")?;
        }
        write!(f, " {KERNEL_ARGS}")?;
        if self.root_device != d.root_device {
            write!(f, " nook.root={}", device_arg(&self.root_device))?;
        }
        if self.root_fstype != d.root_fstype {
            write!(f, " nook.rootfstype={}", self.root_fstype)?;
        }
        match &self.upper {
            Upper::Auto => {}
            Upper::Tmpfs => f.write_str(" nook.upper=tmpfs")?,
            Upper::Device(dev) => write!(f, " nook.upper={}", device_arg(dev))?,
        }
        if self.upper_fstype != d.upper_fstype {
            write!(f, " nook.upperfstype={}", self.upper_fstype)?;
        }
        if self.channel != d.channel {
            write!(f, " nook.channel={}", self.channel.display())?;
        }
        if self.read_only {
            f.write_str(" nook.readonly")?;
        }
        if let Some(net) = &self.net {
            write!(f, " nook.net={net}")?;
        }
        if self.warm {
            f.write_str(" nook.warm")?;
        }
        if let Some(tag) = &self.root_tag {
            write!(f, " nook.roottag={tag}")?;
        }
        Ok(())
    }
}

impl BootParams {
    /// Parses the `nook.*` parameters of a kernel command line; other parameters are ignored.
    pub fn parse(cmdline: &str) -> Result<BootParams, CmdlineError> {
        let mut p = BootParams::default();
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            match (key, value) {
                ("nook.root", Some(v)) => p.root_device = device("nook.root", v)?,
                ("nook.rootfstype", Some(v)) => p.root_fstype = fstype("nook.rootfstype", v)?,
                ("nook.upper", Some("tmpfs")) => p.upper = Upper::Tmpfs,
                ("nook.upper", Some("auto")) => p.upper = Upper::Auto,
                ("nook.upper", Some(v)) => p.upper = Upper::Device(device("nook.upper", v)?),
                ("nook.upperfstype", Some(v)) => p.upper_fstype = fstype("nook.upperfstype", v)?,
                ("nook.channel", Some(v)) => {
                    if !v.starts_with('/') {
                        return Err(CmdlineError::BadPath {
                            param: "nook.channel",
                            value: v.to_owned(),
                        });
                    }
                    p.channel = v.into();
                }
                ("nook.readonly", None | Some("1")) => p.read_only = true,
                ("nook.readonly", Some("0")) => p.read_only = false,
                ("nook.readonly", Some(v)) => {
                    return Err(CmdlineError::BadReadOnly {
                        value: v.to_owned(),
                    })
                }
                ("nook.net", Some(v)) => p.net = Some(NetParams::parse(v)?),
                ("nook.roottag", Some(v)) => p.root_tag = Some(tag(v)?),
                ("nook.warm", None | Some("1")) => p.warm = true,
                ("nook.warm", Some("0")) => p.warm = false,
                ("nook.warm", Some(v)) => {
                    return Err(CmdlineError::BadWarm {
                        value: v.to_owned(),
                    })
                }
                ("nook.debug", None | Some("1")) => p.debug = true,
                ("nook.debug", Some("0")) => p.debug = false,
                ("nook.debug", Some(v)) => {
                    return Err(CmdlineError::BadDebug {
                        value: v.to_owned(),
                    })
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_nothing_is_given() {
        let p = BootParams::parse("console=ttyS0 reboot=k panic=-1 rdinit=/init").unwrap();
        assert_eq!(p, BootParams::default());
    }

    #[test]
    fn every_parameter_is_read() {
        let p = BootParams::parse(
            "reboot=k nook.root=vdc nook.rootfstype=squashfs nook.upper=/dev/vdb \
             nook.upperfstype=xfs nook.channel=/dev/hvc1 nook.debug\n",
        )
        .unwrap();
        assert_eq!(p.root_device, PathBuf::from("/dev/vdc"));
        assert_eq!(p.root_fstype, "squashfs");
        assert_eq!(p.upper, Upper::Device("/dev/vdb".into()));
        assert_eq!(p.upper_fstype, "xfs");
        assert_eq!(p.channel, PathBuf::from("/dev/hvc1"));
        assert!(p.debug);
        assert_eq!(p.net, None);
        assert!(BootParams::parse("nook.readonly").unwrap().read_only);
        let p = BootParams::parse("quiet nook.net=10.0.2.100/24,10.0.2.2,65520").unwrap();
        assert_eq!(
            p.net,
            Some(NetParams {
                address: Ipv4Addr::new(10, 0, 2, 100),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                mtu: 65520,
            })
        );
        assert!(
            !BootParams::parse("nook.readonly=1 nook.readonly=0")
                .unwrap()
                .read_only
        );
        assert!(BootParams::parse("nook.readonly=yes").is_err());
        let p = BootParams::parse("nook.upper=vdb nook.upper=tmpfs nook.debug=0").unwrap();
        assert_eq!(p.upper, Upper::Tmpfs);
        let p = BootParams::parse("nook.upper=tmpfs nook.upper=auto").unwrap();
        assert_eq!(p.upper, Upper::Auto);
        assert!(!p.debug);
    }

    #[test]
    fn the_hosts_command_lines_are_exact() {
        let vm = |debug, upper, read_only| {
            BootParams {
                debug,
                upper,
                read_only,
                ..BootParams::default()
            }
            .to_string()
        };
        let disk = || Upper::Device(AUTO_UPPER_DEVICE.into());
        assert_eq!(
            vm(false, Upper::Tmpfs, false),
            "console=ttynull reboot=k panic=-1 rdinit=/init nook.upper=tmpfs"
        );
        assert_eq!(
            vm(true, disk(), true),
            "console=ttyS0 nook.debug reboot=k panic=-1 rdinit=/init nook.upper=vdb nook.readonly"
        );
        assert_eq!(
            BootParams::default().to_string(),
            "console=ttynull reboot=k panic=-1 rdinit=/init"
        );
        let net = BootParams {
            upper: disk(),
            net: Some(NetParams {
                address: Ipv4Addr::new(10, 0, 2, 100),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                mtu: 65520,
            }),
            ..BootParams::default()
        };
        assert_eq!(
            net.to_string(),
            "console=ttynull reboot=k panic=-1 rdinit=/init nook.upper=vdb \
             nook.net=10.0.2.100/24,10.0.2.2,65520"
        );
    }

    #[test]
    fn netmasks_follow_the_prefix() {
        let mask = |prefix| {
            NetParams {
                address: Ipv4Addr::UNSPECIFIED,
                prefix,
                gateway: Ipv4Addr::UNSPECIFIED,
                mtu: 1500,
            }
            .netmask()
        };
        assert_eq!(mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(mask(1), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(mask(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(mask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn formatting_then_parsing_gives_the_same_params() {
        let every = BootParams {
            root_device: "/dev/vdc".into(),
            root_fstype: "squashfs".into(),
            upper: Upper::Device("/dev/disk/by-id/x".into()),
            upper_fstype: "xfs".into(),
            channel: "/dev/hvc1".into(),
            debug: true,
            read_only: true,
            net: Some(NetParams {
                address: Ipv4Addr::new(192, 168, 7, 2),
                prefix: 30,
                gateway: Ipv4Addr::new(192, 168, 7, 1),
                mtu: 1500,
            }),
            warm: true,
            root_tag: Some("nook-root".into()),
        };
        let cases = [
            BootParams::default(),
            every.clone(),
            BootParams {
                upper: Upper::Tmpfs,
                debug: false,
                ..every.clone()
            },
            BootParams {
                upper: Upper::Auto,
                read_only: false,
                ..every.clone()
            },
            BootParams {
                net: Some(NetParams {
                    address: Ipv4Addr::new(0, 0, 0, 0),
                    prefix: 0,
                    gateway: Ipv4Addr::new(255, 255, 255, 255),
                    mtu: MIN_MTU,
                }),
                ..BootParams::default()
            },
            BootParams { net: None, ..every },
        ];
        for params in cases {
            let line = params.to_string();
            assert_eq!(BootParams::parse(&line).unwrap(), params, "{line}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (cmdline, needle) in [
            ("nook.root=../sda", "nook.root=../sda"),
            ("nook.root=", "nook.root="),
            ("nook.upper=/dev/", "nook.upper=/dev/"),
            ("nook.rootfstype=ext4,ro", "nook.rootfstype=ext4,ro"),
            ("nook.channel=hvc0", "nook.channel=hvc0"),
            ("nook.debug=yes", "nook.debug=yes"),
            ("nook.warm=2", "nook.warm=2"),
            ("nook.roottag=", "nook.roottag="),
            ("nook.roottag=a/b", "nook.roottag=a/b"),
            ("nook.net=", "nook.net= is not ADDR/PREFIX,GATEWAY,MTU"),
            ("nook.net=10.0.2.100/24,10.0.2.2", "three comma-separated"),
            (
                "nook.net=10.0.2.100/24,10.0.2.2,1500,x",
                "three comma-separated",
            ),
            ("nook.net=10.0.2.100,10.0.2.2,1500", "no /PREFIX"),
            ("nook.net=10.0.2/24,10.0.2.2,1500", "the address is not"),
            ("nook.net=fd00::2/64,10.0.2.2,1500", "the address is not"),
            ("nook.net=10.0.2.100/33,10.0.2.2,1500", "prefix length"),
            ("nook.net=10.0.2.100/+8,10.0.2.2,1500", "prefix length"),
            ("nook.net=10.0.2.100/,10.0.2.2,1500", "prefix length"),
            (
                "nook.net=10.0.2.100/24,10.0.2.256,1500",
                "the gateway is not",
            ),
            ("nook.net=10.0.2.100/24,10.0.2.2,67", "MTU"),
            ("nook.net=10.0.2.100/24,10.0.2.2,65536", "MTU"),
            ("nook.net=10.0.2.100/24,10.0.2.2,", "MTU"),
        ] {
            let err = BootParams::parse(cmdline).unwrap_err();
            assert!(err.to_string().contains(needle), "{cmdline}: {err}");
        }
    }
}
