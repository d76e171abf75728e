//! `nook inspect` of a container: docker's container inspect object (the fields nook has).

use serde_json::{json, Value};

use nook::container::engine::Engine;
use nook::container::state::Status;
use nook::container::store::Container;

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    match t {
        Some(t) => json!(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        None => json!("0001-01-01T00:00:00Z"),
    }
}

pub fn inspect_json(engine: &Engine, c: &Container) -> Value {
    let cfg = &c.config;
    let (lower, upper, work) = cfg.isolation.layer_paths();
    let status = c.status();
    let (pid, exit_code, started, finished) = match &status {
        Status::Created => (0, 0, None, None),
        Status::Running {
            init, started_at, ..
        } => (init.pid, 0, Some(*started_at), None),
        Status::Exited {
            code,
            started_at,
            finished_at,
            ..
        } => (0, *code, *started_at, Some(*finished_at)),
    };
    let process = &cfg.launch.process;
    let security = &cfg.launch.security;
    let limits = &cfg.launch.limits;
    json!({
        "Id": cfg.id,
        "Created": time(Some(cfg.created)),
        "Path": process.argv.first(),
        "Args": process.argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": status.name(),
            "Running": status.is_running(),
            "Paused": false,
            "Restarting": false,
            "OOMKilled": matches!(status, Status::Exited { oom_killed: true, .. }),
            "Dead": false,
            "Pid": pid,
            "ExitCode": exit_code,
            "Error": if matches!(status, Status::Exited { monitor_lost: true, .. }) {
                "the container's monitor process ended without recording its exit"
            } else {
                ""
            },
            "StartedAt": time(started),
            "FinishedAt": time(finished),
        },
        "Image": cfg.image_id,
        "LogPath": engine.containers.log_path(&cfg.id),
        "Name": format!("/{}", cfg.name),
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Isolation": cfg.isolation.name(),
            "AutoRemove": cfg.auto_remove,
            "ReadonlyRootfs": cfg.isolation.read_only(),
            "NetworkMode": cfg.launch.network.mode_name(),
            "PortBindings": port_bindings(cfg),
            "Dns": cfg.launch.network.dns,
            "DnsSearch": cfg.launch.network.dns_search,
            "ExtraHosts": cfg.launch.network.add_hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect::<Vec<_>>(),
            "CapAdd": or_null(&security.cap_add),
            "CapDrop": or_null(&security.cap_drop),
            "SecurityOpt": or_null(&security.security_opt()),
            "Privileged": security.privileged,
            "UsernsMode": if security.keep_id { "keep-id" } else { "" },
            "GroupAdd": or_null(&cfg.launch.process.groups.iter().map(u32::to_string).collect::<Vec<_>>()),
            "Memory": limits.memory.unwrap_or(0),
            "MemorySwap": limits.memory_swap.unwrap_or(0),
            "NanoCpus": limits.nano_cpus.unwrap_or(0),
            "CpuShares": limits.cpu_shares.unwrap_or(0),
            "CpusetCpus": limits.cpuset_cpus.clone().unwrap_or_default(),
            "PidsLimit": limits.pids_limit.filter(|p| *p > 0),
            "Ulimits": if limits.ulimits.is_empty() { Value::Null } else { json!(limits.ulimits.iter().map(|u| u.to_docker()).collect::<Vec<_>>()) },
            "ShmSize": limits.shm_size.unwrap_or(64 << 20),
        },
        "NetworkSettings": {
            "IPAddress": if cfg.launch.network.stack().is_some() { nook::isolation::network::ADDRESS.to_string() } else { String::new() },
            "IPPrefixLen": if cfg.launch.network.stack().is_some() { nook::isolation::network::PREFIX } else { 0 },
            "Gateway": if cfg.launch.network.stack().is_some() { nook::isolation::network::GATEWAY.to_string() } else { String::new() },
            "Ports": port_bindings(cfg),
        },
        "Mounts": mounts(cfg),
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": lower.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                "UpperDir": upper,
                "WorkDir": work,
            },
        },
        "Config": {
            "Hostname": cfg.launch.hostname,
            "User": process.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": process.env,
            "Cmd": process.argv,
            "Image": cfg.image,
            "WorkingDir": process.cwd,
        },
    })
}

/// docker's empty lists in `HostConfig`: null.
fn or_null(list: &[String]) -> Value {
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
}

/// docker's `Mounts`: one object a volume, bind or tmpfs mount.
fn mounts(cfg: &nook::container::state::ContainerConfig) -> Value {
    use nook::isolation::mounts::MountSpec;
    let rows: Vec<Value> = cfg
        .launch
        .mounts
        .iter()
        .map(|m| {
            let mode = if m.readonly() { "ro" } else { "" };
            match m {
                MountSpec::Bind {
                    source,
                    target,
                    volume: Some(name),
                    ..
                } => json!({
                    "Type": "volume", "Name": name, "Source": source, "Destination": target,
                    "Driver": "local", "Mode": mode, "RW": !m.readonly(), "Propagation": "",
                }),
                MountSpec::Bind { source, target, .. } => json!({
                    "Type": "bind", "Source": source, "Destination": target,
                    "Mode": mode, "RW": !m.readonly(), "Propagation": "rprivate",
                }),
                MountSpec::Tmpfs { target, .. } => json!({
                    "Type": "tmpfs", "Source": "", "Destination": target,
                    "Mode": mode, "RW": !m.readonly(), "Propagation": "",
                }),
            }
        })
        .collect();
    Value::Array(rows)
}

/// docker's `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`.
fn port_bindings(cfg: &nook::container::state::ContainerConfig) -> Value {
    let mut map = serde_json::Map::new();
    for m in &cfg.launch.network.ports {
        let key = format!("{}/{}", m.container_port, m.protocol);
        let entry = json!({
            "HostIp": m.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "HostPort": m.host_port.to_string(),
        });
        match map.get_mut(&key) {
            Some(Value::Array(list)) => list.push(entry),
            _ => {
                map.insert(key, Value::Array(vec![entry]));
            }
        }
    }
    Value::Object(map)
}
