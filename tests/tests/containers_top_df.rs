//! `nook top` shows a running container's processes as the host sees them, and only its own;
//! `nook system df` counts images, containers and volumes as docker does. As an unprivileged
//! user.

use std::process::Stdio;

use nook_tests::rootless::Rootless;

#[test]
fn top_lists_the_containers_processes_only() {
    let nook = Rootless::new();
    nook.default_image();
    nook.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "1001"]);
    nook.ok(&["run", "-d", "--name", "two", "busybox", "sleep", "1002"]);
    // A process `exec` started is the container's too.
    let mut exec = nook
        .cmd(&["exec", "one", "sleep", "1003"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    for _ in 0..100 {
        out = nook.ok(&["top", "one"]);
        if out.contains("sleep 1003") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(out.contains("sleep 1003"), "{out}");
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.contains("PID") && header.contains("CMD"), "{out}");
    let rest: Vec<&str> = lines.collect();
    assert!(rest.iter().any(|l| l.ends_with("sleep 1001")), "{out}");
    assert!(!out.contains("sleep 1002"), "{out}");

    // ps options as docker passes them; the pids are the host's.
    let out = nook.ok(&["top", "one", "-o", "pid,args"]);
    let pid: i32 = out
        .lines()
        .find(|l| l.ends_with("sleep 1001"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let host_pid = inspect(&nook, "one")[0]["State"]["Pid"].as_i64().unwrap();
    assert_eq!(i64::from(pid), host_pid);

    let err = nook.fails(&["top", "one", "-o", "args"]);
    assert!(err.contains("PID column"), "{err}");
    nook.ok(&["stop", "-t", "0", "two"]);
    let err = nook.fails(&["top", "two"]);
    assert!(err.contains("is not running"), "{err}");
    let err = nook.fails(&["top", "nothing-by-this-name"]);
    assert!(err.contains("No such container"), "{err}");
    nook.ok(&["rm", "-f", "one", "two"]);
    let _ = exec.wait();
}

#[test]
fn system_df_counts_what_the_store_holds() {
    let nook = Rootless::new();
    nook.default_image();
    let df = |nook: &Rootless| -> Vec<Vec<String>> {
        nook.ok(&["system", "df"])
            .lines()
            .map(|l| {
                l.split("   ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect()
    };
    let table = df(&nook);
    assert_eq!(
        table[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{table:?}"
    );
    let kinds: Vec<&str> = table[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        kinds,
        ["Images", "Containers", "Local Volumes", "Build Cache"]
    );
    assert_eq!(&table[1][1..3], ["1", "0"], "{table:?}");
    assert!(
        table[1][4].ends_with("(100%)"),
        "nothing uses the image: {table:?}"
    );
    assert_eq!(&table[2][1..], ["0", "0", "0B", "0B"], "{table:?}");

    nook.ok(&["volume", "create", "data"]);
    nook.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /data/f; head -c 200000 /dev/zero > /f; sleep 1000",
    ]);
    nook.ok(&["create", "--name", "idle", "busybox", "true"]);
    nook.ok(&["volume", "create", "spare"]);
    // Until the writes are there.
    for _ in 0..100 {
        if nook
            .run(&["exec", "busy", "test", "-s", "/f"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let table = df(&nook);
    assert_eq!(&table[1][1..3], ["1", "1"], "{table:?}");
    assert_eq!(table[1][4], "0B (0%)", "the image is used: {table:?}");
    assert_eq!(&table[2][1..3], ["2", "1"], "{table:?}");
    assert!(table[2][3].ends_with("kB"), "{table:?}");
    assert_eq!(&table[3][1..3], ["2", "1"], "{table:?}");
    assert!(table[3][3].ends_with("kB"), "300 kB in data: {table:?}");
    let reclaimable = &table[3][4];
    assert!(
        reclaimable.ends_with("%)") && !reclaimable.ends_with("(100%)"),
        "only spare, nearly empty, is reclaimable: {table:?}"
    );

    let json = nook.ok(&["system", "df", "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["Type"], "Images");
    assert_eq!(first["TotalCount"], "1");
    nook.ok(&["rm", "-f", "busy", "idle"]);
}

/// `nook inspect` of one container.
fn inspect(nook: &Rootless, name: &str) -> serde_json::Value {
    serde_json::from_str(&nook.ok(&["inspect", name])).unwrap()
}
