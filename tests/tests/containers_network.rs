//! The namespace column's network, as an unprivileged user, with traffic only on this machine:
//! published ports serve the host, `stop` frees them and `start` takes them again, `rm` leaves
//! no network stack behind; the host's loopback is closed to containers unless asked
//! (`--network pasta:--map-gw`, podman's opt-in), names come from `/etc/hosts`, UDP works,
//! `--network none` has only `lo`; bad flags fail with exit 125 and leave nothing behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use nook_tests::rootless::Rootless;

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` on 127.0.0.1:`port`, retried until `deadline` while nothing answers.
fn http_get(port: u16, patience: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            if out.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok(out)
        })();
        match attempt {
            Ok(body) => return Ok(body),
            Err(e) if start.elapsed() >= patience => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The network stacks (pasta, passt) serving containers of this test's store.
fn stacks_of(nook: &Rootless) -> Vec<String> {
    let root = nook.root().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !(comm.starts_with("pasta") || comm.starts_with("passt")) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&root) {
            out.push(cmdline);
        }
    }
    out
}

fn web(nook: &Rootless, name: &str, publish: &str) {
    nook.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "-p",
        publish,
        "busybox",
        "sh",
        "-c",
        &format!("mkdir -p /www && echo hello from {name} > /www/index.html && exec httpd -f -p 8080 -h /www"),
    ]);
}

#[test]
fn published_ports_serve_the_host_and_follow_stop_and_start() {
    let nook = Rootless::new();
    nook.default_image();
    let (p1, p2) = (free_port(), free_port());
    web(&nook, "web1", &format!("127.0.0.1:{p1}:8080"));
    // The same container port published twice, on two host ports.
    web(&nook, "web2", &format!("127.0.0.1:{p2}:8080"));
    let patience = Duration::from_secs(30);
    assert!(http_get(p1, patience).unwrap().contains("hello from web1"));
    assert!(http_get(p2, patience).unwrap().contains("hello from web2"));

    let ps = nook.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert!(
        ps.contains(&format!("web1 127.0.0.1:{p1}->8080/tcp")),
        "{ps}"
    );
    assert_eq!(
        nook.ok(&["port", "web1"]),
        format!("8080/tcp -> 127.0.0.1:{p1}\n")
    );
    let inspect = nook.ok(&["inspect", "--format", "{{.HostConfig.NetworkMode}}", "web1"]);
    assert_eq!(inspect.trim(), "pasta");

    // stop frees the port, start takes it again.
    nook.ok(&["stop", "-t", "1", "web1"]);
    assert!(
        TcpStream::connect(("127.0.0.1", p1)).is_err(),
        "port {p1} still answers after stop"
    );
    nook.ok(&["start", "web1"]);
    assert!(http_get(p1, patience).unwrap().contains("hello from web1"));

    nook.ok(&["rm", "-f", "web1", "web2"]);
    let start = Instant::now();
    while !stacks_of(&nook).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stacks_of(&nook), Vec::<String>::new(), "rm leaves no pasta");
}

/// A one-request HTTP server on the host's loopback.
fn host_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().flatten().take(2) {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nhost answer\n");
        }
    });
    (port, server)
}

#[test]
fn the_host_loopback_is_closed_unless_asked_and_names_and_udp_work() {
    let nook = Rootless::new();
    nook.default_image();
    let (port, server) = host_server();
    let url = format!("http://host.containers.internal:{port}/");

    // By default a tenant cannot reach the host's local services (busybox's own `wget -T`
    // crashes in this busybox build: `timeout` bounds it instead; the gateway's address is
    // then just another address, which answers nothing).
    // Neither through the gateway nor through the container's own loopback (pasta would
    // otherwise bind the host's listening ports there).
    let local = format!("http://127.0.0.1:{port}/");
    for (network, target) in [("pasta", &url), ("pasta", &local), ("none", &url)] {
        // Under `sh`, so that wget is not the namespace's PID 1, which `timeout`'s SIGTERM
        // could not end.
        let script = format!("timeout 5 wget -qO- {target}; exit $?");
        let out = nook.run(&[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            &script,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !stdout.contains("host answer"),
            "--network {network} reached the host's loopback at {target}: {stdout}"
        );
    }

    // podman's opt-in: the gateway address is the host's loopback, by name.
    let got = nook.ok(&[
        "run",
        "--rm",
        "--network",
        "pasta:--map-gw",
        "busybox",
        "wget",
        "-qO-",
        &url,
    ]);
    assert_eq!(got, "host answer\n");
    // A name from --add-host.
    let got = nook.ok(&[
        "run",
        "--rm",
        "--network",
        "pasta:--map-gw",
        "--add-host",
        "db.internal:10.88.0.1",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://db.internal:{port}/"),
    ]);
    assert_eq!(got, "host answer\n");
    server.join().unwrap();

    // UDP: a DNS query from the container reaches a socket on the host's loopback.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let _ = nook.run(&[
        "run",
        "--rm",
        "--network",
        "pasta:--map-gw",
        "busybox",
        "nslookup",
        "-timeout=2",
        "example.test",
        &format!("10.88.0.1:{udp_port}"),
    ]);
    let mut buf = [0u8; 512];
    let (n, _) = udp
        .recv_from(&mut buf)
        .expect("no UDP datagram from the container");
    assert!(n > 12, "a DNS query of {n} bytes");

    // The container's own files, as docker writes them.
    let files = nook.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box1",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.test",
        "busybox",
        "cat",
        "/etc/hosts",
        "/etc/resolv.conf",
    ]);
    assert!(files.contains("10.88.0.2\tbox1\n"), "{files}");
    assert!(files.contains("host.containers.internal"), "{files}");
    assert!(
        files.contains("search corp.test\nnameserver 192.0.2.53\n"),
        "{files}"
    );
}

#[test]
fn bad_network_flags_fail_and_leave_nothing() {
    let nook = Rootless::new();
    nook.default_image();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:80");
    for (args, says) in [
        (
            vec!["run", "--rm", "-p", &publish, "busybox", "true"],
            "port is already allocated",
        ),
        (
            vec!["run", "--rm", "-p", "99999:80", "busybox", "true"],
            "99999",
        ),
        (
            vec!["run", "--rm", "-p", "abc", "busybox", "true"],
            "\"abc\"",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "host",
                "--isolation",
                "vm",
                "busybox",
                "true",
            ],
            "--network host is not available with --isolation=vm",
        ),
        (
            vec!["run", "--rm", "--network", "bogus", "busybox", "true"],
            "invalid --network \"bogus\"",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "-p",
                "8080:80",
                "busybox",
                "true",
            ],
            "--publish needs a network",
        ),
    ] {
        let (_, err) = nook.exits(125, &args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    drop(taken);
    assert_eq!(nook.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(stacks_of(&nook), Vec::<String>::new());
}
