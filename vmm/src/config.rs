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
    fn unknown_fields_are_refused() {
        let json = r#"{"kernel":"/k","memory_mib":128,"vcpus":1,"mem":5}"#;
        assert!(serde_json::from_str::<VmConfig>(json).is_err());
    }
}
