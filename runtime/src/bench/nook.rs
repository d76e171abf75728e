//! The `container` and `vm` columns: the real `nook run --rm` (this very binary), spawned and
//! timed from outside like a user's shell would. For the VM column the run appends its phase
//! marks to a file named by `NOOK_PHASES_FILE` (see `isolation::vm::phases`).

use std::path::Path;
use std::process::Command;

use super::measure::{self, monotonic_ns, Finished, MemorySampler, Running};
use super::phases::phases;
use super::report::{Measured, Outcome, Parallel, RunSample};
use super::spec::{BenchSpec, Target};
use super::Skip;
use crate::isolation::vm::phases::{read_records, PhaseRecord, PHASES_FILE_ENV};
use crate::isolation::vm::DEFAULT_MEMORY_MIB;

fn command(spec: &BenchSpec, target: Target, phases_file: &Path) -> Command {
    let mut cmd = Command::new(&spec.nook);
    // No network: its peers (runc, crun, QEMU) start none either; tests/bench/network.sh
    // measures what the default network adds.
    cmd.args(["run", "--rm", "--network", "none", "--isolation"]);
    match target {
        Target::VmCold => cmd.args(["vm", "--boot", "cold"]),
        Target::Vm => cmd.args(["vm", "--boot", "warm"]),
        other => cmd.arg(other.name()),
    };
    cmd.arg(&spec.image)
        .args(&spec.cmd)
        .env(PHASES_FILE_ENV, phases_file)
        .env_remove("NOOK_ISOLATION");
    cmd
}

fn record(phases_file: &Path) -> Vec<PhaseRecord> {
    std::fs::read_to_string(phases_file)
        .ok()
        .and_then(|t| read_records(&t).ok())
        .unwrap_or_default()
}

/// One `nook run --rm`.
fn run_once(spec: &BenchSpec, target: Target, n: u32) -> Result<RunSample, String> {
    let phases_file = spec.work.join(format!("{}-{n}.phases", target.name()));
    let stderr = spec.work.join(format!("{}-{n}.stderr", target.name()));
    let what = match target {
        Target::VmCold => "nook run --rm --isolation vm --boot cold".to_string(),
        other => format!("nook run --rm --isolation {}", other.name()),
    };
    let done: Finished = measure::run_ok(&mut command(spec, target, &phases_file), &stderr, &what)?;
    let phases = match target {
        Target::Vm | Target::VmCold => {
            let records = record(&phases_file);
            let rec = records.first().ok_or_else(|| {
                format!("{what} left no phase record in {}", phases_file.display())
            })?;
            Some(
                phases(done.start_ns, rec, done.end_ns)
                    .ok_or_else(|| format!("{what} left an incomplete phase record: {rec:?}"))?,
            )
        }
        _ => None,
    };
    Ok(RunSample {
        wall_ms: done.wall_ns() as f64 / 1e6,
        cpu_ms: done.cpu_ns as f64 / 1e6,
        max_rss_kib: done.max_rss_kib,
        phases,
    })
}

/// M runs started at once.
fn run_parallel(spec: &BenchSpec, target: Target, count: u32) -> Result<Parallel, String> {
    let sampler = MemorySampler::start();
    let start = monotonic_ns();
    let mut running = Vec::new();
    let mut files = Vec::new();
    for i in 0..count {
        let phases_file = spec.work.join(format!("{}-par-{i}.phases", target.name()));
        let stderr = spec.work.join(format!("{}-par-{i}.stderr", target.name()));
        match measure::spawn(&mut command(spec, target, &phases_file), &stderr) {
            Ok(r) => running.push(r),
            Err(e) => {
                // Reap what did start before reporting.
                running.into_iter().for_each(|r: Running| drop(r.wait()));
                sampler.stop();
                return Err(format!("cannot start nook: {e}"));
            }
        }
        files.push(phases_file);
    }
    let mut last = start;
    let mut sum_max_rss_kib = 0;
    let mut failure = None;
    for r in running {
        let stderr = r.stderr.clone();
        match r.wait() {
            Ok(done) => {
                last = last.max(done.end_ns);
                sum_max_rss_kib += done.max_rss_kib;
                if done.code != 0 && failure.is_none() {
                    failure = Some(Running::failure(&stderr, "a parallel nook run", done.code));
                }
            }
            Err(e) => failure = Some(format!("cannot wait for a parallel nook run: {e}")),
        }
    }
    let host_memory_kib = sampler.stop();
    if let Some(f) = failure {
        return Err(f);
    }
    let all_ready_ms = match target {
        Target::Vm | Target::VmCold => {
            let mut latest: Option<i128> = None;
            for f in &files {
                let rec = record(f)
                    .into_iter()
                    .next()
                    .ok_or("a parallel VM left no phase record")?;
                let (Some(ready), Some(root), Some(exec)) =
                    (rec.ready_ns, rec.guest_root_ready_ns, rec.guest_exec_ns)
                else {
                    return Err(format!(
                        "a parallel VM left an incomplete phase record: {rec:?}"
                    ));
                };
                let at = i128::from(ready) - i128::from(root) + i128::from(exec);
                latest = Some(latest.map_or(at, |l| l.max(at)));
            }
            latest.map(|l| (l - i128::from(start)) as f64 / 1e6)
        }
        // The namespace column reports no moment of readiness to the host.
        _ => None,
    };
    Ok(Parallel {
        count,
        all_ready_ms,
        all_exited_ms: (last - start) as f64 / 1e6,
        host_memory_kib,
        sum_max_rss_kib,
    })
}

/// Warm-up runs, measured runs, then the parallel start when asked.
pub fn bench(spec: &BenchSpec, target: Target) -> Outcome {
    let mut m = Measured::default();
    for n in 0..spec.warmup + spec.runs {
        match run_once(spec, target, n) {
            Ok(sample) if n >= spec.warmup => m.samples.push(sample),
            Ok(_) => {}
            Err(reason) if n == 0 => return Err(Skip(reason)),
            Err(reason) => {
                return Err(Skip(format!(
                    "run {} of {} failed: {reason}",
                    n + 1,
                    spec.warmup + spec.runs
                )))
            }
        }
    }
    if matches!(target, Target::Vm | Target::VmCold) {
        m.guest_memory_mib = Some(DEFAULT_MEMORY_MIB);
        m.notes
            .push("1 vCPU; writable layer on a guest tmpfs (--rm)".into());
        if target == Target::Vm {
            m.notes.push(
                "warm: resumed from a snapshot of a booted guest (its template, built by the \
                 warm-up run when there is none)"
                    .into(),
            );
        }
    }
    if let Some(count) = spec.parallel {
        m.parallel = Some(run_parallel(spec, target, count).map_err(Skip)?);
    }
    Ok(m)
}
