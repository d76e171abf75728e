//! What a bench measures: the targets (nook's isolation columns and the peers), how many runs,
//! which image and command.

use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

/// One thing timed: a column of nook or a peer runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Container,
    /// The VM column as `nook run` starts it by default: warm, from a template.
    Vm,
    /// The VM column booting its kernel (`--boot cold`).
    VmCold,
    Runc,
    Crun,
    Qemu,
    Firecracker,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Container => "container",
            Target::Vm => "vm",
            Target::VmCold => "vm-cold",
            Target::Runc => "runc",
            Target::Crun => "crun",
            Target::Qemu => "qemu",
            Target::Firecracker => "firecracker",
        }
    }

    /// "column" for nook's own, "peer" for the others.
    pub fn kind(self) -> &'static str {
        match self {
            Target::Container | Target::Vm | Target::VmCold => "column",
            _ => "peer",
        }
    }
}

/// A name that is not a column (`--isolation`) or peer (`--peers`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {what} '{name}' (one of: {choices})")]
pub struct UnknownTarget {
    what: &'static str,
    name: String,
    choices: &'static str,
}

/// An `--isolation` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column(pub Target);

impl FromStr for Column {
    type Err = UnknownTarget;
    fn from_str(s: &str) -> Result<Column, UnknownTarget> {
        match s {
            "container" => Ok(Column(Target::Container)),
            "vm" => Ok(Column(Target::Vm)),
            "vm-cold" => Ok(Column(Target::VmCold)),
            _ => Err(UnknownTarget {
                what: "isolation column",
                name: s.into(),
                choices: "container, vm, vm-cold",
            }),
        }
    }
}

/// A `--peers` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Target);

impl FromStr for Peer {
    type Err = UnknownTarget;
    fn from_str(s: &str) -> Result<Peer, UnknownTarget> {
        match s {
            "runc" => Ok(Peer(Target::Runc)),
            "crun" => Ok(Peer(Target::Crun)),
            "qemu" => Ok(Peer(Target::Qemu)),
            "firecracker" => Ok(Peer(Target::Firecracker)),
            _ => Err(UnknownTarget {
                what: "peer",
                name: s.into(),
                choices: "runc, crun, qemu, firecracker",
            }),
        }
    }
}

/// Everything a bench needs.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Measured runs per target.
    pub runs: u32,
    /// Unmeasured runs first (caches, the image's root filesystem).
    pub warmup: u32,
    targets: Vec<Target>,
    /// `--parallel M`: also start M containers at once per nook column.
    pub parallel: Option<u32>,
    pub image: String,
    pub cmd: Vec<String>,
    /// The nook binary the runs spawn (this very program).
    pub nook: PathBuf,
    /// Scratch files (bundles, phase records, stderr of runs).
    pub work: PathBuf,
    /// The command line, for the report.
    pub argv: Vec<String>,
}

impl BenchSpec {
    /// Checks the numbers and removes duplicate targets (first one wins).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runs: u32,
        warmup: u32,
        columns: &[Column],
        peers: &[Peer],
        parallel: Option<u32>,
        image: String,
        cmd: Vec<String>,
        nook: PathBuf,
        work: PathBuf,
        argv: Vec<String>,
    ) -> Result<BenchSpec, super::BenchError> {
        if runs == 0 {
            return Err(super::BenchError::Spec("--runs must be at least 1".into()));
        }
        if parallel == Some(0) {
            return Err(super::BenchError::Spec(
                "--parallel must be at least 1".into(),
            ));
        }
        if cmd.is_empty() {
            return Err(super::BenchError::Spec("the command is empty".into()));
        }
        let mut targets = Vec::new();
        for t in columns.iter().map(|c| c.0).chain(peers.iter().map(|p| p.0)) {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        Ok(BenchSpec {
            runs,
            warmup,
            targets,
            parallel,
            image,
            cmd,
            nook,
            work,
            argv,
        })
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(columns: &[&str], peers: &[&str], runs: u32) -> Result<BenchSpec, String> {
        let columns: Vec<Column> = columns
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: UnknownTarget| e.to_string())?;
        let peers: Vec<Peer> = peers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: UnknownTarget| e.to_string())?;
        BenchSpec::new(
            runs,
            0,
            &columns,
            &peers,
            None,
            "busybox".into(),
            vec!["true".into()],
            "nook".into(),
            "/nonexistent".into(),
            vec![],
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn targets_keep_order_without_duplicates() {
        let s = spec(&["vm", "container", "vm"], &["qemu", "runc"], 3).unwrap();
        assert_eq!(
            s.targets(),
            &[Target::Vm, Target::Container, Target::Qemu, Target::Runc]
        );
    }

    #[test]
    fn bad_names_and_numbers_are_refused_with_the_name() {
        let e = spec(&["kvm"], &[], 3).unwrap_err();
        assert!(e.contains("isolation column 'kvm'"), "{e}");
        let e = spec(&[], &["docker"], 3).unwrap_err();
        assert!(
            e.contains("peer 'docker'") && e.contains("firecracker"),
            "{e}"
        );
        let e = spec(&["vm"], &[], 0).unwrap_err();
        assert!(e.contains("--runs"), "{e}");
    }
}
