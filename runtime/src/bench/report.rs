//! The bench's results: the JSON document (schema version [`SCHEMA_VERSION`], described in
//! docs/isolation.md) and the terminal table.

use std::fmt::Write as _;

use serde::Serialize;

use super::machine::Machine;
use super::phases::{Phase, PHASES};
use super::spec::{BenchSpec, Target};
use super::stats::{summarize, Summary};
use super::Skip;

/// Bumped whenever a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSample {
    /// Spawn to exit of the whole program (`nook run --rm`, `runc run`, the VMM).
    pub wall_ms: f64,
    /// User + system CPU time of the program and the descendants it reaped.
    pub cpu_ms: f64,
    /// Peak resident set of the largest process of the run (for the VM column: the VMM,
    /// guest memory it touched included).
    pub max_rss_kib: u64,
    /// The VM phases, in order, for the targets that boot the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<Phase>>,
}

/// `--parallel M`: M containers started at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parallel {
    pub count: u32,
    /// Until every entrypoint was executed (VM column: from the guests' exec times); None when
    /// the target reports no such moment.
    pub all_ready_ms: Option<f64>,
    /// Until every one of them had exited and was removed.
    pub all_exited_ms: f64,
    /// Peak host memory in use above the level before the start (MemTotal - MemAvailable).
    pub host_memory_kib: u64,
    /// The sum of every run's peak RSS (its largest process: the VMM for the VM column).
    pub sum_max_rss_kib: u64,
}

/// What a target that ran produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measured {
    pub samples: Vec<RunSample>,
    /// Guest RAM of each VM, for the targets that boot one.
    pub guest_memory_mib: Option<u32>,
    pub parallel: Option<Parallel>,
    /// How this target was run (bundle, user, disks), for the reader.
    pub notes: Vec<String>,
}

pub type Outcome = Result<Measured, Skip>;

/// Summaries of the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub wall_ms: Summary,
    pub cpu_ms: Summary,
    pub max_rss_kib: Summary,
    /// Per phase, in order; empty when the target has no phases.
    pub phases_ms: Vec<PhaseSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// One target in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetReport {
    pub name: &'static str,
    /// "column" (nook's) or "peer".
    pub kind: &'static str,
    /// "ok" or "skipped".
    pub status: &'static str,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_memory_mib: Option<u32>,
    pub runs: Vec<RunSample>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Parallel>,
}

impl TargetReport {
    pub fn new(target: Target, outcome: Outcome) -> TargetReport {
        let mut report = TargetReport {
            name: target.name(),
            kind: target.kind(),
            status: "skipped",
            reason: None,
            notes: Vec::new(),
            guest_memory_mib: None,
            runs: Vec::new(),
            stats: None,
            parallel: None,
        };
        match outcome {
            Err(Skip(reason)) => report.reason = Some(reason),
            Ok(m) => {
                report.status = "ok";
                report.stats = stats(&m.samples);
                report.runs = m.samples;
                report.notes = m.notes;
                report.guest_memory_mib = m.guest_memory_mib;
                report.parallel = m.parallel;
            }
        }
        report
    }

    /// One line for the progress output.
    pub fn summary(&self) -> String {
        match (&self.stats, &self.reason) {
            (Some(s), _) => format!("p50 {:.1} ms", s.wall_ms.p50),
            (None, Some(r)) => format!("skipped: {r}"),
            (None, None) => "no runs".into(),
        }
    }

    /// The run whose wall time is the median (for the chart's phase bars).
    pub fn median_run(&self) -> Option<&RunSample> {
        let p50 = self.stats.as_ref()?.wall_ms.p50;
        self.runs.iter().find(|r| r.wall_ms == p50)
    }
}

fn stats(samples: &[RunSample]) -> Option<Stats> {
    let pick =
        |f: &dyn Fn(&RunSample) -> f64| summarize(&samples.iter().map(f).collect::<Vec<_>>());
    let phases_ms = PHASES
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let values: Vec<f64> = samples
                .iter()
                .filter_map(|r| r.phases.as_ref()?.get(i).map(|p| p.ms))
                .collect();
            // Only when every run has the phase: a summary of some runs would mislead.
            (values.len() == samples.len()).then_some(())?;
            Some(PhaseSummary {
                name: (*name).to_string(),
                summary: summarize(&values)?,
            })
        })
        .collect();
    Some(Stats {
        wall_ms: pick(&|r| r.wall_ms)?,
        cpu_ms: pick(&|r| r.cpu_ms)?,
        max_rss_kib: pick(&|r| r.max_rss_kib as f64)?,
        phases_ms,
    })
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    /// The command line that produced it.
    pub command: Vec<String>,
    pub image: String,
    pub cmd: Vec<String>,
    pub runs: u32,
    pub warmup: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
    pub machine: Machine,
    pub targets: Vec<TargetReport>,
}

impl Report {
    pub fn new(spec: &BenchSpec, machine: Machine, targets: Vec<TargetReport>) -> Report {
        Report {
            version: SCHEMA_VERSION,
            command: spec.argv.clone(),
            image: spec.image.clone(),
            cmd: spec.cmd.clone(),
            runs: spec.runs,
            warmup: spec.warmup,
            parallel: spec.parallel,
            machine,
            targets,
        }
    }

    pub fn to_json(&self) -> String {
        // Only numbers, strings and lists: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "nook bench: {} {} ({} runs, {} warm-up)",
            self.image,
            self.cmd.join(" "),
            self.runs,
            self.warmup
        );
        let _ = writeln!(out, "machine: {}", self.machine.describe());
        if let Some(label) = &self.machine.nested {
            let _ = writeln!(out, "NESTED/EMULATED: {label}");
        }
        let _ = writeln!(
            out,
            "\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "TARGET", "MIN ms", "P50 ms", "P90 ms", "P99 ms", "MAX ms", "CPU ms", "RSS MiB"
        );
        for t in &self.targets {
            match &t.stats {
                Some(s) => {
                    let w = &s.wall_ms;
                    let _ = writeln!(
                        out,
                        "{:<12} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1}",
                        t.name,
                        w.min,
                        w.p50,
                        w.p90,
                        w.p99,
                        w.max,
                        s.cpu_ms.p50,
                        s.max_rss_kib.p50 / 1024.0
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{:<12} skipped: {}",
                        t.name,
                        t.reason.as_deref().unwrap_or("no runs")
                    );
                }
            }
        }
        for t in &self.targets {
            let Some(s) = t.stats.as_ref().filter(|s| !s.phases_ms.is_empty()) else {
                continue;
            };
            let _ = writeln!(
                out,
                "\n{} phases (ms)     {:>9} {:>9} {:>9}",
                t.name, "MIN", "P50", "P90"
            );
            for p in &s.phases_ms {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>9.1} {:>9.1} {:>9.1}",
                    p.name, p.summary.min, p.summary.p50, p.summary.p90
                );
            }
            if let Some(mib) = t.guest_memory_mib {
                let _ = writeln!(out, "  guest memory {mib} MiB");
            }
        }
        for t in &self.targets {
            if let Some(p) = &t.parallel {
                let ready = p
                    .all_ready_ms
                    .map_or("n/a".to_string(), |v| format!("{v:.1} ms"));
                let _ = writeln!(
                    out,
                    "\n{} x{} at once: all ready {ready}, all exited {:.1} ms, host memory +{:.1} MiB, sum of peak RSS {:.1} MiB",
                    t.name,
                    p.count,
                    p.all_exited_ms,
                    p.host_memory_kib as f64 / 1024.0,
                    p.sum_max_rss_kib as f64 / 1024.0
                );
            }
        }
        out
    }
}
