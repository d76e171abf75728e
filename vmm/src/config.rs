//! What one VM is made of: plain data, (de)serialisable so the runtime can hand it to the
//! `nook-vmm` binary as JSON.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything needed to boot one microVM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// ELF `vmlinux` with a PVH entry note.
    pub kernel: PathBuf,
    /// Initramfs (cpio) loaded as the PVH module.
    #[serde(default)]
    pub initramfs: Option<PathBuf>,
    /// Kernel command line; the VMM appends its `virtio_mmio.device=` entries.
    #[serde(default)]
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// virtio-blk disks, in order: the first is vda.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Unix socket the host listens on; the VMM connects to it and bridges it to the
    /// virtio-console port (the agent channel).
    #[serde(default)]
    pub agent_socket: Option<PathBuf>,
    /// Where the guest's 8250 serial goes; off unless debugging.
    #[serde(default)]
    pub serial: SerialOutput,
    /// Kill the VM after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A virtio-net interface backed by passt; no network device when absent.
    #[serde(default)]
    pub net: Option<NetConfig>,
    /// Shared directories: one virtio-fs device each, served by a virtiofsd. With any, guest
    /// RAM is mapped from memfds the backends map too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fs: Vec<FsConfig>,
    /// Where and when to write a snapshot; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_to: Option<SnapshotTo>,
    /// A snapshot directory to resume instead of booting the kernel: memory, vCPUs and devices
    /// come back as they were, the devices' backends (disks, sockets) are this config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<PathBuf>,
}

/// One shared directory: a virtio-fs device the guest mounts by `tag`, whose requests the
/// virtiofsd listening on `socket` serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The vhost-user socket virtiofsd listens on (`virtiofsd --socket-path`); the VMM connects
    /// to it before the guest boots.
    pub socket: PathBuf,
    /// The name the guest mounts (`mount -t virtiofs TAG DIR`), at most 36 bytes.
    pub tag: String,
}

/// A snapshot to write: when a byte arrives on `trigger`, the VM stops, its snapshot is
/// written into `dir` (`state` and `memory`) and the VMM ends with
/// [`crate::VmExit::Snapshotted`]. The caller moves the directory into place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotTo {
    /// An empty directory.
    pub dir: PathBuf,
    /// A Unix stream socket the caller listens on; the VMM connects before the guest runs.
    pub trigger: PathBuf,
}

impl VmConfig {
    /// The timeout as a duration.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

/// One virtio-blk disk backed by a host file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Image file.
    pub path: PathBuf,
    /// Offer VIRTIO_BLK_F_RO and refuse writes.
    #[serde(default)]
    pub read_only: bool,
}

/// The MTU passt uses by default (and offers to the guest with VIRTIO_NET_F_MTU).
pub const DEFAULT_MTU: u16 = 65520;
/// Largest MTU whose frames (plus the 14-byte Ethernet header) fit the 65535-byte frame bound.
pub const MAX_MTU: u16 = 65521;
/// Smallest MTU an IPv4 host must accept.
pub const MIN_MTU: u16 = 68;

fn default_mtu() -> u16 {
    DEFAULT_MTU
}

/// One virtio-net interface whose frames are carried by passt over a Unix stream socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Unix stream socket passt already listens on (`passt -s PATH -1`); the VMM connects to
    /// it before the guest boots.
    pub socket: PathBuf,
    /// The guest's MAC address, `52:54:00:12:34:56` form (a unicast address).
    pub mac: String,
    /// The MTU offered to the guest.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

/// A MAC address that is not six colon-separated hex pairs of a unicast, non-zero address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected a unicast address like 52:54:00:12:34:56")]
pub struct InvalidMac(pub String);

impl NetConfig {
    /// The MAC address as bytes.
    pub fn mac_address(&self) -> Result<[u8; 6], InvalidMac> {
        parse_mac(&self.mac)
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (hex, either case); refuses multicast and all-zero addresses,
/// which no NIC may carry as its own.
pub fn parse_mac(text: &str) -> Result<[u8; 6], InvalidMac> {
    let err = || InvalidMac(text.to_string());
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(err)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
    }
    if parts.next().is_some() || mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(err());
    }
    Ok(mac)
}

/// Destination of the guest serial console.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialOutput {
    /// No serial device at all.
    #[default]
    Off,
    /// The VMM's standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let json = r#"{"kernel":"/k","memory_mib":128,"vcpus":2,
            "disks":[{"path":"/d","read_only":true}],"serial":{"file":"/s"}}"#;
        let config: VmConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.initramfs, None);
        assert_eq!(config.serial, SerialOutput::File("/s".into()));
        assert!(config.disks[0].read_only);
        assert_eq!(config.timeout(), None);
        let again: VmConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn net_defaults_and_round_trip() {
        let json = r#"{"kernel":"/k","memory_mib":128,"vcpus":1,
            "net":{"socket":"/run/passt.sock","mac":"52:54:00:12:34:56"}}"#;
        let config: VmConfig = serde_json::from_str(json).unwrap();
        let net = config.net.clone().unwrap();
        assert_eq!(net.mtu, DEFAULT_MTU);
        assert_eq!(net.socket, PathBuf::from("/run/passt.sock"));
        assert_eq!(
            net.mac_address().unwrap(),
            [0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );
        let again: VmConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
        let without: VmConfig =
            serde_json::from_str(r#"{"kernel":"/k","memory_mib":128,"vcpus":1}"#).unwrap();
        assert_eq!(without.net, None);
        let unknown = r#"{"kernel":"/k","memory_mib":128,"vcpus":1,
            "net":{"socket":"/s","mac":"52:54:00:12:34:56","queues":2}}"#;
        assert!(serde_json::from_str::<VmConfig>(unknown).is_err());
    }

    #[test]
    fn mac_addresses_are_validated() {
        assert_eq!(parse_mac("52:54:00:AB:cd:ef").unwrap()[3], 0xab);
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52-54-00-12-34-56",
            "52:54:00:12:34:5g",
            "52:54:00:12:34:+5",
            "052:54:00:12:34:5",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert_eq!(parse_mac(bad), Err(InvalidMac(bad.into())), "{bad}");
        }
    }

    #[test]
    fn fs_defaults_to_none_and_round_trips() {
        let without: VmConfig =
            serde_json::from_str(r#"{"kernel":"/k","memory_mib":128,"vcpus":1}"#).unwrap();
        assert!(without.fs.is_empty());
        assert!(!serde_json::to_string(&without).unwrap().contains(r#""fs""#));
        let json = r#"{"kernel":"/k","memory_mib":128,"vcpus":1,
            "fs":[{"socket":"/run/fs0.sock","tag":"nook0"}]}"#;
        let config: VmConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.fs[0].tag, "nook0");
        let again: VmConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"kernel":"/k","memory_mib":128,"vcpus":1,"mem":5}"#;
        assert!(serde_json::from_str::<VmConfig>(json).is_err());
    }
}
