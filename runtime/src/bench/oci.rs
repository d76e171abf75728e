//! runc and crun: an OCI bundle of the same image (its filesystem exported by `nook export`,
//! the runtime's own `spec` as config with the bench's command), run in the foreground once per
//! run, as the same user as nook (rootless unless root).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::measure;
use super::report::{Measured, Outcome, RunSample};
use super::spec::{BenchSpec, Target};
use super::Skip;
use crate::host_tools;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `nook ARGS` to its end and returns its stdout.
fn nook(spec: &BenchSpec, args: &[&str]) -> Result<String, String> {
    let out = Command::new(&spec.nook)
        .args(args)
        .env_remove("NOOK_ISOLATION")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", spec.nook.display()))?;
    if !out.status.success() {
        return Err(format!(
            "nook {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The image's filesystem as a directory (made once per bench, shared by runc and crun).
fn rootfs(spec: &BenchSpec) -> Result<PathBuf, String> {
    let dir = spec.work.join("oci-rootfs");
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let name = format!("nook-bench-{}", std::process::id());
    let tar = spec.work.join("oci-rootfs.tar");
    let tar_arg = tar.to_string_lossy().into_owned();
    nook(
        spec,
        &[
            "create",
            "--isolation",
            "container",
            "--name",
            &name,
            &spec.image,
            "true",
        ],
    )?;
    let exported = nook(spec, &["export", "-o", &tar_arg, &name]);
    let removed = nook(spec, &["rm", &name]);
    exported?;
    removed?;
    let file =
        std::fs::File::open(&tar).map_err(|e| format!("cannot open {}: {e}", tar.display()))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    tar::Archive::new(file)
        .unpack(&dir)
        .map_err(|e| format!("cannot unpack the image into {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&tar);
    std::fs::write(dir.join(".complete"), "")
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The bundle: the runtime's default config, pointed at the shared rootfs, running the command.
fn bundle(spec: &BenchSpec, runtime: &Path, name: &str) -> Result<PathBuf, String> {
    let rootfs = rootfs(spec)?;
    let dir = spec.work.join(format!("{name}-bundle"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = Command::new(runtime);
    cmd.arg("spec");
    if !is_root() {
        cmd.arg("--rootless");
    }
    let out = cmd
        .arg("--bundle")
        .arg(&dir)
        .output()
        .map_err(|e| format!("cannot run {name} spec: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} spec failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut config: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{name} spec wrote invalid JSON in {}: {e}", path.display()))?;
    config["process"]["args"] = Value::from(spec.cmd.clone());
    config["process"]["terminal"] = Value::Bool(false);
    config["root"]["path"] = Value::from(rootfs.to_string_lossy().into_owned());
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(dir)
}

pub fn bench(spec: &BenchSpec, target: Target) -> Outcome {
    let name = target.name();
    let tool = if target == Target::Crun {
        host_tools::CRUN
    } else {
        host_tools::RUNC
    };
    let runtime = tool.require()?;
    let bundle = bundle(spec, &runtime, name).map_err(Skip)?;
    let state = spec.work.join(format!("{name}-state"));
    let mut m = Measured::default();
    m.notes.push(format!(
        "OCI bundle of the image's exported filesystem, {}",
        if is_root() { "as root" } else { "rootless" }
    ));
    for n in 0..spec.warmup + spec.runs {
        let mut cmd = Command::new(&runtime);
        cmd.arg("--root")
            .arg(&state)
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(format!("nook-bench-{}-{n}", std::process::id()));
        let stderr = spec.work.join(format!("{name}-{n}.stderr"));
        let done = match measure::run_ok(&mut cmd, &stderr, &format!("{name} run")) {
            Ok(d) => d,
            Err(reason) if n == 0 => return Err(Skip(reason)),
            Err(reason) => return Err(Skip(format!("run {} failed: {reason}", n + 1))),
        };
        if n >= spec.warmup {
            m.samples.push(RunSample {
                wall_ms: done.wall_ns() as f64 / 1e6,
                cpu_ms: done.cpu_ns as f64 / 1e6,
                max_rss_kib: done.max_rss_kib,
                phases: None,
            });
        }
    }
    Ok(m)
}
