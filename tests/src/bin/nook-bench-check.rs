//! Checks the JSON report of a `nook bench` run that was meant to measure VMs (tests/vm/bench.sh):
//! every target named on the command line ran (none skipped), and every run of a VM target has
//! all eight phases, in order, none negative (a negative phase means the host and guest clocks
//! disagree), adding up to its wall time; a warm start (`vm`) restored and booted no kernel, a
//! cold one (`vm-cold`, `qemu`) booted its kernel and restored nothing.
//!
//!   nook-bench-check REPORT.json TARGET...

use std::process::ExitCode;

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

use nook::bench::phases::PHASES;
const VM_TARGETS: [&str; 3] = ["vm", "vm-cold", "qemu"];

fn check(report: &Value, want: &[String]) -> anyhow::Result<()> {
    ensure!(
        report["version"] == 1,
        "schema version is {}",
        report["version"]
    );
    let targets = report["targets"].as_array().context("no targets list")?;
    for name in want {
        let t = targets
            .iter()
            .find(|t| t["name"] == name.as_str())
            .with_context(|| format!("no target {name}"))?;
        ensure!(
            t["status"] == "ok",
            "{name} did not run: {}",
            t["reason"].as_str().unwrap_or("no reason given")
        );
        let runs = t["runs"].as_array().context("no runs")?;
        ensure!(!runs.is_empty(), "{name} has no runs");
        if !VM_TARGETS.contains(&name.as_str()) {
            continue;
        }
        ensure!(
            t["guest_memory_mib"].as_u64().is_some(),
            "{name} has no guest memory figure"
        );
        for (i, r) in runs.iter().enumerate() {
            let phases = r["phases"]
                .as_array()
                .with_context(|| format!("{name} run {i} has no phases"))?;
            let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
            ensure!(
                names == PHASES,
                "{name} run {i}: phases {names:?}, want {PHASES:?}"
            );
            let mut sum = 0.0;
            for p in phases {
                let ms = p["ms"].as_f64().context("a phase without ms")?;
                if ms < 0.0 {
                    bail!(
                        "{name} run {i}: phase {} is negative ({ms} ms): phases out of order",
                        p["name"]
                    );
                }
                sum += ms;
            }
            let ms_of = |phase: &str| {
                phases
                    .iter()
                    .find(|p| p["name"] == phase)
                    .and_then(|p| p["ms"].as_f64())
                    .unwrap_or(f64::NAN)
            };
            let (boot, restore) = (ms_of("kernel_boot"), ms_of("restore"));
            if name == "vm" {
                ensure!(
                    boot == 0.0 && restore > 0.0,
                    "{name} run {i} was not a warm start: kernel_boot {boot} ms, restore {restore} ms"
                );
            } else {
                ensure!(
                    boot > 0.0 && restore == 0.0,
                    "{name} run {i} was not a cold boot: kernel_boot {boot} ms, restore {restore} ms"
                );
            }
            let wall = r["wall_ms"].as_f64().context("no wall_ms")?;
            ensure!(
                (sum - wall).abs() < 1.0,
                "{name} run {i}: phases add up to {sum} ms, wall time is {wall} ms"
            );
        }
        let stats = t["stats"]["phases_ms"]
            .as_array()
            .context("no phase stats")?;
        ensure!(
            stats.len() == PHASES.len(),
            "{name}: {} phase summaries",
            stats.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((file, want)) = args.split_first() else {
        eprintln!("usage: nook-bench-check REPORT.json TARGET...");
        return ExitCode::from(2);
    };
    let result = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {file}"))
        .and_then(|t| {
            serde_json::from_str::<Value>(&t).with_context(|| format!("{file} is not JSON"))
        })
        .and_then(|report| check(&report, want));
    match result {
        Ok(()) => {
            println!(
                "nook-bench-check: {file}: {} ran, VM phases complete and ordered",
                want.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nook-bench-check: FAIL: {e:#}");
            ExitCode::FAILURE
        }
    }
}
