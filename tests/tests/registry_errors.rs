//! Hostile and broken registries, scripted: a blob whose content does not match its digest, a
//! cut connection (and the resume of the partial blob with a Range request), a wrong content
//! type, an oversized manifest, a manifest naming a missing blob, a server that stalls or
//! answers 500. Each fails with an error naming the registry, repository and blob, and leaves
//! the store's images as they were; plus the bearer-token flow.

mod registry_support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nook_tests::Nook;
use registry_support::{blob_names, field, fixture, tmp_files, Fixture, Reply, Req, Scripted};

const REPO: &str = "hostile/app";

/// What the scripted registry gets wrong.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    WrongLayerBytes,
    /// Requests without Range get half the layer, then the connection closes.
    TruncateLayer,
    ContentType,
    HugeManifest,
    MissingLayer,
    StallLayer,
    AlwaysError500,
}

fn image() -> Fixture {
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    fixture("amd64", &[("gzip", "big", &big)])
}

fn serve(image: Fixture, fault: Fault) -> Scripted {
    Scripted::start(move |req: &Req| respond(&image, fault, req))
}

fn respond(image: &Fixture, fault: Fault, req: &Req) -> Reply {
    if fault == Fault::AlwaysError500 {
        return Reply::status(500);
    }
    if req.path == "/v2/" {
        return Reply::ok("application/json", b"{}".to_vec());
    }
    let prefix = format!("/v2/{REPO}/");
    let Some(rest) = req.path.strip_prefix(&prefix) else {
        return Reply::status(404);
    };
    if rest.starts_with("manifests/") {
        return match fault {
            Fault::ContentType => Reply::ok("text/html", image.manifest.clone()),
            Fault::HugeManifest => {
                let mut body = image.manifest.clone();
                body.truncate(body.len() - 1);
                body.extend_from_slice(b",\"annotations\":{\"pad\":\"");
                body.extend(std::iter::repeat_n(b'x', 5 << 20));
                body.extend_from_slice(b"\"}}");
                Reply::ok(registry_support::OCI_MANIFEST, body)
            }
            _ => Reply::ok(registry_support::OCI_MANIFEST, image.manifest.clone()),
        };
    }
    let Some(digest) = rest.strip_prefix("blobs/") else {
        return Reply::status(404);
    };
    if digest == image.config_digest {
        return Reply::ok("application/octet-stream", image.config.clone());
    }
    let (_, layer, layer_digest) = &image.layers[0];
    if digest != layer_digest {
        return Reply::status(404);
    }
    match fault {
        Fault::WrongLayerBytes => {
            let mut bad = layer.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            Reply::ok("application/octet-stream", bad)
        }
        Fault::MissingLayer => Reply::Full {
            status: 404,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
                .to_vec(),
        },
        Fault::StallLayer => Reply::Stall,
        Fault::TruncateLayer => match req.header("range") {
            None => Reply::Truncated {
                status: 200,
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body: layer.clone(),
                send: layer.len() / 2,
            },
            Some(range) => {
                let start: usize = range
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap();
                Reply::Full {
                    status: 206,
                    headers: vec![
                        ("Content-Type".into(), "application/octet-stream".into()),
                        (
                            "Content-Range".into(),
                            format!("bytes {start}-{}/{}", layer.len() - 1, layer.len()),
                        ),
                    ],
                    body: layer[start..].to_vec(),
                }
            }
        },
        _ => Reply::ok("application/octet-stream", layer.clone()),
    }
}

/// Runs `nook pull` with the given retry count and timeout; returns (success, stdout, stderr).
fn pull(nook: &Nook, host: &str, retries: u32, timeout: u32) -> (bool, String, String) {
    let out = nook
        .cmd(["pull", &format!("{host}/{REPO}:v1")])
        .env("NOOK_REGISTRY_RETRIES", retries.to_string())
        .env("NOOK_REGISTRY_TIMEOUT", timeout.to_string())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A store with one image already, to show a failed pull leaves it as it was.
fn store_with_an_image() -> Nook {
    let nook = Nook::new();
    nook.default_image();
    nook
}

fn assert_failed_cleanly(nook: &Nook, before: &nook_tests::StoreSnapshot, err: &str, host: &str) {
    assert!(err.contains(host), "names the registry: {err}");
    assert!(err.contains(REPO), "names the repository: {err}");
    assert_eq!(nook.snapshot().index, before.index, "index.json unchanged");
    let images = nook.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images, "busybox:latest\n");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_discarded() {
    let image = image();
    let server = serve(image.clone(), Fault::WrongLayerBytes);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let (ok, _, err) = pull(&nook, &server.host(), 1, 10);
    assert!(!ok);
    let layer = &image.layers[0].2;
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains(layer.as_str()), "names the blob: {err}");
    assert_failed_cleanly(&nook, &before, &err, &server.host());
    assert!(!blob_names(nook.root()).contains(&layer[7..].to_string()));
    assert!(
        tmp_files(nook.root()).is_empty(),
        "the bad partial is deleted: {:?}",
        tmp_files(nook.root())
    );
}

/// The same image, but its config claims another diff id for the layer: the layer blob matches
/// its digest, yet does not decompress to what the config says.
fn with_wrong_diff_id(image: &Fixture) -> Fixture {
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["rootfs"]["diff_ids"][0] = serde_json::json!(nook_tests::sha256(b"something else"));
    let config = config.to_string().into_bytes();
    let config_digest = nook_tests::sha256(&config);
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["config"]["digest"] = serde_json::json!(config_digest);
    manifest["config"]["size"] = serde_json::json!(config.len());
    let manifest = manifest.to_string().into_bytes();
    Fixture {
        manifest_digest: nook_tests::sha256(&manifest),
        manifest,
        config_digest,
        config,
        layers: image.layers.clone(),
    }
}

#[test]
fn a_layer_that_does_not_decompress_to_its_diff_id_is_refused() {
    let image = with_wrong_diff_id(&image());
    let server = serve(image.clone(), Fault::None);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let (ok, _, err) = pull(&nook, &server.host(), 0, 10);
    assert!(!ok);
    let layer = &image.layers[0].2;
    assert!(err.contains("does not decompress to its diff id"), "{err}");
    assert!(err.contains(layer.as_str()), "names the blob: {err}");
    assert_failed_cleanly(&nook, &before, &err, &server.host());
    assert!(!blob_names(nook.root()).contains(&layer[7..].to_string()));
    assert!(!tmp_files(nook.root())
        .iter()
        .any(|p| p.to_string_lossy().contains("partial-")));
}

#[test]
fn a_cut_download_resumes_with_a_range_request() {
    let image = image();
    let server = serve(image.clone(), Fault::TruncateLayer);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let layer = &image.layers[0];
    let half = layer.1.len() / 2;

    // No retries: the pull fails, naming the blob, and keeps the half it got.
    let (ok, _, err) = pull(&nook, &server.host(), 0, 10);
    assert!(!ok);
    assert!(err.contains(layer.2.as_str()), "names the blob: {err}");
    assert!(err.contains("partial download is kept"), "{err}");
    assert_failed_cleanly(&nook, &before, &err, &server.host());
    let partial = nook.root().join(format!("tmp/partial-{}", &layer.2[7..]));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), half as u64);

    // The next pull asks for the rest only, and the image is complete and verified.
    let (ok, out, err) = pull(&nook, &server.host(), 0, 10);
    assert!(ok, "{err}");
    assert_eq!(field(&out, "Digest:"), Some(image.manifest_digest.as_str()));
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, [format!("bytes={half}-")]);
    assert!(!partial.exists());
    assert!(blob_names(nook.root()).contains(&layer.2[7..].to_string()));
    nook.ok(&["image", "rootfs", &format!("{}/{REPO}:v1", server.host())]);

    // Within one pull, a retry resumes the same way.
    let other = Nook::new();
    let (ok, _, err) = pull(&other, &server.host(), 2, 10);
    assert!(ok, "{err}");
}

#[test]
fn a_manifest_with_a_foreign_content_type_is_refused() {
    let server = serve(image(), Fault::ContentType);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let (ok, _, err) = pull(&nook, &server.host(), 0, 10);
    assert!(!ok);
    assert!(
        err.contains("unsupported content type \"text/html\""),
        "{err}"
    );
    assert_failed_cleanly(&nook, &before, &err, &server.host());
    assert_eq!(nook.snapshot(), before);
}

#[test]
fn an_oversized_manifest_is_refused() {
    let server = serve(image(), Fault::HugeManifest);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let (ok, _, err) = pull(&nook, &server.host(), 0, 10);
    assert!(!ok);
    assert!(err.contains("larger than the 4194304 bytes"), "{err}");
    assert_failed_cleanly(&nook, &before, &err, &server.host());
    assert_eq!(nook.snapshot(), before);
}

#[test]
fn a_manifest_naming_a_missing_blob_fails_without_a_tag() {
    let image = image();
    let server = serve(image.clone(), Fault::MissingLayer);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let (ok, _, err) = pull(&nook, &server.host(), 0, 10);
    assert!(!ok);
    assert!(err.contains("missing blob"), "{err}");
    assert!(err.contains(image.layers[0].2.as_str()), "{err}");
    assert_failed_cleanly(&nook, &before, &err, &server.host());
}

#[test]
fn a_stalled_server_times_out() {
    let image = image();
    let server = serve(image.clone(), Fault::StallLayer);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let start = Instant::now();
    let (ok, _, err) = pull(&nook, &server.host(), 1, 1);
    assert!(!ok);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "gave up in time: {:?}",
        start.elapsed()
    );
    assert!(
        err.to_lowercase().contains("timeout") || err.contains("timed out"),
        "{err}"
    );
    assert!(err.contains(image.layers[0].2.as_str()), "{err}");
    assert!(err.contains("after 2 attempts"), "{err}");
    assert_failed_cleanly(&nook, &before, &err, &server.host());
}

#[test]
fn a_server_answering_500_is_retried_then_reported() {
    let server = serve(image(), Fault::AlwaysError500);
    let nook = store_with_an_image();
    let before = nook.snapshot();
    let (ok, _, err) = pull(&nook, &server.host(), 2, 10);
    assert!(!ok);
    assert!(err.contains("kept answering 500 after 3 attempts"), "{err}");
    assert!(
        err.contains("scripted failure"),
        "the registry's message: {err}"
    );
    assert_failed_cleanly(&nook, &before, &err, &server.host());
    let manifest_requests = server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 3, "one try and two retries");
    assert_eq!(nook.snapshot(), before);
}

#[test]
fn a_clean_scripted_pull_works() {
    let image = image();
    let server = serve(image.clone(), Fault::None);
    let nook = Nook::new();
    let (ok, out, err) = pull(&nook, &server.host(), 0, 10);
    assert!(ok, "{err}");
    assert_eq!(field(&out, "Digest:"), Some(image.manifest_digest.as_str()));
}

#[test]
fn bearer_tokens_are_fetched_from_the_challenge_realm() {
    let image = image();
    let port: Arc<OnceLock<u16>> = Arc::new(OnceLock::new());
    let port_in = port.clone();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw")
    );
    let server = Scripted::start(move |req: &Req| {
        if req.path.starts_with("/token") {
            return if req.header("authorization") == Some(basic.as_str()) {
                Reply::ok("application/json", br#"{"token":"tok123"}"#.to_vec())
            } else {
                Reply::status(401)
            };
        }
        if req.header("authorization") != Some("Bearer tok123") {
            let realm = format!("http://127.0.0.1:{}/token", port_in.get().unwrap());
            return Reply::Full {
                status: 401,
                headers: vec![(
                    "WWW-Authenticate".into(),
                    format!(r#"Bearer realm="{realm}",service="scripted""#),
                )],
                body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#
                    .to_vec(),
            };
        }
        respond(&image, Fault::None, req)
    });
    port.set(server.port).unwrap();
    let host = server.host();
    let config = tempfile::tempdir().unwrap();
    let nook = Nook::new();

    // Without credentials the token server refuses: a clear error.
    let out = nook
        .cmd(["pull", &format!("{host}/{REPO}:v1")])
        .env("XDG_CONFIG_HOME", config.path())
        .env("HOME", config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied") && err.contains(&host), "{err}");

    let out = nook
        .cmd(["login", "-u", "alice", "-p", "pw", &host])
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = nook
        .cmd(["pull", "-q", &format!("{host}/{REPO}:v1")])
        .env("XDG_CONFIG_HOME", config.path())
        .env("HOME", config.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = server.requests();
    let scoped = requests.iter().any(|r| {
        r.path.starts_with("/token") && r.path.contains("scope=repository%3Ahostile%2Fapp%3Apull")
    });
    assert!(
        scoped,
        "a token for the repository's pull scope: {requests:?}"
    );
    assert!(requests
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .all(|r| r.header("authorization") == Some("Bearer tok123")));
}
