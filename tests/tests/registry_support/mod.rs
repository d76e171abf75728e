//! Shared by the registry tests: a real `docker-registry` started on 127.0.0.1 (with or without
//! htpasswd auth), a small scripted HTTP server for the hostile cases, and OCI image fixtures.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nook_tests::sha256;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A `docker-registry` process serving a temp directory on a free port of 127.0.0.1.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that wants basic auth from `user`/`password` (bcrypt htpasswd).
    pub fn with_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} is missing: these tests need a real registry \
             (apt-get install docker-registry; tests/setup.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut auth_yaml = String::new();
        if let Some((user, password)) = auth {
            nook_tests::require_tool("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("cannot run htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            auth_yaml = format!(
                "auth:\n  htpasswd:\n    realm: nook-test\n    path: {}\n",
                file.display()
            );
        }
        // The registry binds the port itself: retry on the rare race with another process.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: nook-test\n{auth_yaml}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cannot start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Registry { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; its log:\n{}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A request the scripted server received.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the scripted server does with a request.
pub enum Reply {
    /// A whole response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers announcing `body.len()` bytes, then only the first `send` of them, then close.
    Truncated {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        send: usize,
    },
    /// Read the request, answer nothing, hold the connection.
    Stall,
}

impl Reply {
    pub fn ok(content_type: &str, body: Vec<u8>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"errors":[{"code":"UNKNOWN","message":"scripted failure"}]}"#.to_vec(),
        }
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server on 127.0.0.1 (one connection per request; TLS probes are
/// dropped, so nook falls back to plain HTTP as for any loopback registry).
pub struct Scripted {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Req>>>,
}

impl Scripted {
    pub fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let log = thread_log.clone();
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Scripted { port, log }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    // A TLS ClientHello (nook probes HTTPS first on loopback): hang up at once.
    let mut first = [0u8; 1];
    if stream.peek(&mut first).map_or(true, |n| n == 0) || first[0] == 0x16 {
        return;
    }
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if !version.starts_with("HTTP/") {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Req {
        method: method.to_string(),
        path: path.to_string(),
        headers,
    };
    // Drain a request body, if any (uploads are not scripted, but must not hang).
    if let Some(len) = req
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
    }
    log.lock().unwrap().push(req.clone());
    let mut stream = stream;
    let write_head = |s: &mut TcpStream, status: u16, headers: &[(String, String)], len: usize| {
        let mut head = format!("HTTP/1.1 {status} Scripted\r\nConnection: close\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
        s.write_all(head.as_bytes())
    };
    match handler(&req) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let body = if req.method == "HEAD" {
                &[][..]
            } else {
                &body[..]
            };
            let _ = write_head(&mut stream, status, &headers, body.len());
            let _ = stream.write_all(body);
        }
        Reply::Truncated {
            status,
            headers,
            body,
            send,
        } => {
            let _ = write_head(&mut stream, status, &headers, body.len());
            let _ = stream.write_all(&body[..send]);
            let _ = stream.flush();
        }
        Reply::Stall => std::thread::sleep(Duration::from_secs(60)),
    }
}

/// One image's blobs: config, layers, and a manifest naming them.
#[derive(Clone)]
pub struct Fixture {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    /// (media type, bytes, digest)
    pub layers: Vec<(String, Vec<u8>, String)>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image whose layers are the given (compression, file content) pairs; each layer holds
/// `etc/<name>` with the content. Compression: "tar", "gzip" or "zstd".
pub fn fixture(arch: &str, layers: &[(&str, &str, &str)]) -> Fixture {
    let mut diff_ids = Vec::new();
    let mut out_layers = Vec::new();
    for (compression, name, content) in layers {
        let tar = one_file_tar(&format!("etc/{name}"), content.as_bytes());
        diff_ids.push(sha256(&tar));
        let (media, bytes) = match *compression {
            "tar" => ("application/vnd.oci.image.layer.v1.tar", tar),
            "gzip" => (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                nook_tests::gzip(&tar),
            ),
            "zstd" => (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                nook_tests::zstd(&tar),
            ),
            other => panic!("unknown compression {other}"),
        };
        let digest = sha256(&bytes);
        out_layers.push((media.to_string(), bytes, digest));
    }
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": out_layers.iter().map(|(m, b, d)| serde_json::json!({
            "mediaType": m, "digest": d, "size": b.len()})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Fixture {
        manifest_digest: sha256(&manifest),
        manifest,
        config_digest,
        config,
        layers: out_layers,
    }
}

/// A tar with one regular file (and its directory).
pub fn one_file_tar(path: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    if let Some((dir, _)) = path.rsplit_once('/') {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .unwrap();
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, content).unwrap();
    b.into_inner().unwrap()
}

/// Writes an OCI image layout at `dir` holding the fixtures, tagged `tag`: one image, or an
/// index of several (with the platforms of their configs) if more than one is given. Returns
/// the digest of what the tag names.
pub fn write_layout(dir: &Path, tag: &str, images: &[(&Fixture, &str)]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    for (f, _) in images {
        put(&f.manifest);
        put(&f.config);
        for (_, b, _) in &f.layers {
            put(b);
        }
    }
    let (media, digest, size) = if images.len() == 1 {
        let f = images[0].0;
        (OCI_MANIFEST, f.manifest_digest.clone(), f.manifest.len())
    } else {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": images.iter().map(|(f, arch)| serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": f.manifest_digest,
                "size": f.manifest.len(),
                "platform": {"os": "linux", "architecture": arch}})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let d = put(&index);
        (OCI_INDEX, d, index.len())
    };
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media, "digest": digest, "size": size,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    digest
}

/// The store's blob file names and index, to show a failed pull changed nothing it uses.
pub fn blob_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn tmp_files(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// The value of a `Key: value` line of nook's output.
pub fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}
