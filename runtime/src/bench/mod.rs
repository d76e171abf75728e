//! `nook bench`: what a container costs to start in each isolation column, measured against
//! the peers installed on this machine (runc, crun, QEMU microvm, Firecracker), by running the
//! real programs. A column or peer that cannot run here is reported as skipped with the reason,
//! never estimated.
//!
//! - [`spec`]: what to measure (targets, runs, image, command).
//! - [`measure`]: spawning a program and reading its wall time, CPU time and peak RSS.
//! - [`nook`]: the `container` and `vm` columns (`nook run --rm`, the VM's phases).
//! - [`oci`]: runc and crun on an OCI bundle of the same image.
//! - [`qemu`]: QEMU microvm with the same kernel, initramfs and disks as the `vm` column.
//! - [`phases`]: the VM phases from host marks and guest boot times.
//! - [`stats`], [`machine`], [`report`] (table and JSON), [`svg`] (the chart).

pub mod machine;
pub mod measure;
pub mod nook;
pub mod oci;
pub mod phases;
pub mod qemu;
pub mod report;
pub mod spec;
pub mod stats;
pub mod svg;

use std::path::PathBuf;

use crate::host_tools;
pub use report::{Outcome, Report, TargetReport};
pub use spec::{BenchSpec, Target};

/// Errors of the bench itself (a target that cannot run is a skip, not an error).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot draw the chart {}: {message}", path.display())]
    Chart { path: PathBuf, message: String },
    #[error("invalid bench: {0}")]
    Spec(String),
}

/// Why a target did not produce figures: said in the report as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl<E: std::fmt::Display> From<E> for Skip {
    fn from(e: E) -> Skip {
        Skip(e.to_string())
    }
}

/// Runs every target of `spec` in turn; `progress` hears one line per target.
pub fn run(spec: &BenchSpec, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let machine = machine::Machine::probe();
    let mut targets = Vec::new();
    for &target in spec.targets() {
        progress(&format!("bench: {} ...", target.name()));
        let outcome = match target {
            Target::Container | Target::Vm | Target::VmCold => nook::bench(spec, target),
            Target::Runc | Target::Crun => oci::bench(spec, target),
            Target::Qemu => qemu::bench(spec),
            Target::Firecracker => Err(firecracker_skip()),
        };
        let report = TargetReport::new(target, outcome);
        progress(&format!("bench: {} {}", target.name(), report.summary()));
        targets.push(report);
    }
    Ok(Report::new(spec, machine, targets))
}

/// Firecracker speaks to its guest over vsock only; nook's agent channel is a virtio-console,
/// so the same guest cannot be driven there. Said plainly instead of a half comparison.
fn firecracker_skip() -> Skip {
    match host_tools::FIRECRACKER.require() {
        Err(missing) => Skip(missing.to_string()),
        Ok(path) => Skip(format!(
            "{} is installed, but Firecracker offers no virtio-console and nook's agent channel is one, \
             so the same guest cannot run there",
            path.display()
        )),
    }
}
