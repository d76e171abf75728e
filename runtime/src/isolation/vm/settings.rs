//! A VM's size and kernel, from docker's flags, fixed at create.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::VmError;

/// Guest RAM when `--memory` is not given.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// The least RAM a guest boots with.
const MIN_MEMORY_MIB: u32 = 64;
/// The size of a container's VM and the kernel it boots, fixed at create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSettings {
    pub memory_mib: u32,
    pub vcpus: u8,
    /// `--kernel`: a vmlinux that overrides `NOOK_KERNEL` and the cached build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// `--boot`: resume a booted template (warm, the default) or boot the kernel (cold).
    #[serde(default, skip_serializing_if = "BootMode::is_warm")]
    pub boot: BootMode,
}

/// How a VM starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// From a snapshot of a booted guest of the same shape (built on first need); a VM with
    /// shared directories, or a debug boot, starts cold.
    #[default]
    Warm,
    /// A full boot of the guest kernel.
    Cold,
}

impl BootMode {
    fn is_warm(&self) -> bool {
        *self == BootMode::Warm
    }
}

impl VmSettings {
    /// From docker's `--memory` (bytes) and `--cpus` (rounded up to whole vCPUs).
    pub fn from_flags(memory: Option<u64>, cpus: Option<f64>) -> Result<VmSettings, VmError> {
        let memory_mib = match memory {
            None => DEFAULT_MEMORY_MIB,
            Some(b) => {
                let mib = b.div_ceil(1 << 20);
                if mib < u64::from(MIN_MEMORY_MIB) || mib > u64::from(u32::MAX) {
                    return Err(VmError::Size(format!(
                        "--memory {b} bytes: a VM needs between {MIN_MEMORY_MIB} MiB and 4 PiB"
                    )));
                }
                mib as u32
            }
        };
        let vcpus = match cpus {
            None => 1,
            Some(c) if c > 0.0 && c.ceil() <= 255.0 => c.ceil() as u8,
            Some(c) => {
                return Err(VmError::Size(format!(
                    "--cpus {c}: a VM has between 1 and 255 vCPUs"
                )))
            }
        };
        Ok(VmSettings {
            memory_mib,
            vcpus,
            kernel: None,
            boot: BootMode::Warm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_size_follows_the_flags() {
        assert_eq!(
            VmSettings::from_flags(None, None).unwrap(),
            VmSettings {
                memory_mib: DEFAULT_MEMORY_MIB,
                vcpus: 1,
                kernel: None,
                boot: BootMode::Warm,
            }
        );
        assert_eq!(
            VmSettings::from_flags(Some(1 << 30), Some(1.5)).unwrap(),
            VmSettings {
                memory_mib: 1024,
                vcpus: 2,
                kernel: None,
                boot: BootMode::Warm,
            }
        );
        assert!(VmSettings::from_flags(Some(1 << 20), None).is_err());
        assert!(VmSettings::from_flags(None, Some(300.0)).is_err());
        assert!(VmSettings::from_flags(None, Some(0.0)).is_err());
    }

    #[test]
    fn settings_without_a_kernel_field_still_load() {
        let old: VmSettings = serde_json::from_str(r#"{"memory_mib":256,"vcpus":1}"#).unwrap();
        assert_eq!(old.kernel, None);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("kernel"), "{json}");
    }
}
