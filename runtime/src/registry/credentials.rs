//! Registry credentials: nook's own auth file, written by `nook login`, and the files docker
//! and podman/skopeo keep, read as well.
//!
//! nook writes `$XDG_CONFIG_HOME/nook/auth.json` (else `~/.config/nook/auth.json`), mode 0600,
//! replaced atomically, in the format the other tools use:
//! `{"auths": {"<registry>": {"auth": "<base64 of user:password>"}}}`. Lookups try, in order,
//! nook's file, `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` (else `~/.config/containers/auth.json`) and
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`). Credential helpers
//! (`credsStore`, `credHelpers`) are not run.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::image::reference::DEFAULT_DOMAIN;
use crate::paths::Env;
use crate::util::atomic::{AtomicError, TempFile};

use super::endpoint::credential_key;

/// A user name and password (or a token given as the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password.
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The value of a basic `Authorization` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Why an auth file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the auth file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the auth file {path} is not valid JSON")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the auth file {path} has an invalid \"auth\" entry for {key} (expected base64 of user:password)")]
    BadEntry { path: PathBuf, key: String },
    #[error("cannot write the auth file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Atomic(#[from] AtomicError),
}

/// The auth files: the one nook writes, and all those it reads.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    pub own: PathBuf,
    pub read: Vec<PathBuf>,
}

impl AuthFiles {
    pub fn from_env(env: &dyn Env) -> AuthFiles {
        let home = PathBuf::from(env.var("HOME").unwrap_or_else(|| "/".into()));
        let config = env
            .var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        let own = config.join("nook/auth.json");
        let mut read = vec![own.clone()];
        if let Some(f) = env.var("REGISTRY_AUTH_FILE") {
            read.push(PathBuf::from(f));
        }
        if let Some(run) = env.var("XDG_RUNTIME_DIR") {
            read.push(PathBuf::from(run).join("containers/auth.json"));
        }
        read.push(config.join("containers/auth.json"));
        let docker = env
            .var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".docker"));
        read.push(docker.join("config.json"));
        AuthFiles { own, read }
    }

    /// The credential for `repository` on `registry` from the first file that has one.
    pub fn lookup(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<(Credential, PathBuf)>, CredentialsError> {
        for path in &self.read {
            let Some(doc) = read_file(path)? else {
                continue;
            };
            if let Some(c) = find_in(&doc, path, registry, repository)? {
                return Ok(Some((c, path.clone())));
            }
        }
        Ok(None)
    }

    /// Saves `cred` for `registry` in nook's own file (0600, replaced atomically).
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<(), CredentialsError> {
        let mut doc = read_file(&self.own)?.unwrap_or_else(|| json!({}));
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.password));
        let auths = auths_mut(&mut doc);
        auths.insert(credential_key(registry), json!({ "auth": auth }));
        self.write(&doc)
    }

    /// Removes the credential of `registry` from nook's own file; false if it had none.
    pub fn remove(&self, registry: &str) -> Result<bool, CredentialsError> {
        let Some(mut doc) = read_file(&self.own)? else {
            return Ok(false);
        };
        let auths = auths_mut(&mut doc);
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| normalize_key(k) == registry)
            .cloned()
            .collect();
        if keys.is_empty() {
            return Ok(false);
        }
        for k in keys {
            auths.remove(&k);
        }
        self.write(&doc)?;
        Ok(true)
    }

    fn write(&self, doc: &Value) -> Result<(), CredentialsError> {
        let dir = self.own.parent().unwrap_or(Path::new("."));
        let werr = |source| CredentialsError::Write {
            path: self.own.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(werr)?;
        let mut tmp = TempFile::new_in(dir, ".auth.json-")?;
        // Private before a single secret byte is written.
        tmp.file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(werr)?;
        let text = serde_json::to_string_pretty(doc).expect("a JSON value always serializes");
        tmp.file_mut()
            .write_all(format!("{text}\n").as_bytes())
            .map_err(werr)?;
        tmp.persist(&self.own)?;
        Ok(())
    }
}

fn auths_mut(doc: &mut Value) -> &mut Map<String, Value> {
    if !doc.is_object() {
        *doc = json!({});
    }
    let obj = doc.as_object_mut().expect("made an object above");
    let auths = obj.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    auths.as_object_mut().expect("made an object above")
}

fn read_file(path: &Path) -> Result<Option<Value>, CredentialsError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|source| CredentialsError::Malformed {
            path: path.to_path_buf(),
            source,
        })
}

/// A key of `auths` as a registry (or `registry/namespace`): scheme and docker's `/v1/` path
/// dropped, Hub's aliases mapped to docker.io.
fn normalize_key(key: &str) -> String {
    let had_scheme = key.starts_with("https://") || key.starts_with("http://");
    let s = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    // With a scheme (docker's style), the path is an API version, not a namespace.
    let s = if had_scheme {
        s.split('/').next().unwrap_or(s)
    } else {
        s
    };
    let (host, rest) = match s.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (s, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_DOMAIN,
        h => h,
    };
    match rest {
        Some(r) => format!("{host}/{r}"),
        None => host.to_string(),
    }
}

/// The best entry of one file: `registry/namespace` keys (longest first) over the bare host.
fn find_in(
    doc: &Value,
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credential>, CredentialsError> {
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let full = format!("{registry}/{repository}");
    let mut best: Option<(usize, &String, &Value)> = None;
    for (key, entry) in auths {
        let k = normalize_key(key);
        let hit = k == registry || (full.starts_with(&k) && full[k.len()..].starts_with('/'));
        if hit && best.is_none_or(|(len, _, _)| k.len() > len) {
            best = Some((k.len(), key, entry));
        }
    }
    let Some((_, key, entry)) = best else {
        return Ok(None);
    };
    let bad = || CredentialsError::BadEntry {
        path: path.to_path_buf(),
        key: key.clone(),
    };
    if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
        if auth.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (user, pass) = raw.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential {
            username: user.to_string(),
            password: pass.to_string(),
        }));
    }
    match (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Ok(Some(Credential {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::FakeEnv;

    fn files(dir: &Path) -> AuthFiles {
        AuthFiles::from_env(&FakeEnv::new(
            [
                ("HOME", dir.join("home").display().to_string()),
                ("XDG_RUNTIME_DIR", dir.join("run").display().to_string()),
            ],
            1000,
        ))
    }

    fn cred(u: &str, p: &str) -> Credential {
        Credential {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn store_lookup_remove_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        assert!(f.lookup("127.0.0.1:5000", "app").unwrap().is_none());
        f.store("127.0.0.1:5000", &cred("alice", "pa:ss")).unwrap();
        f.store("docker.io", &cred("bob", "x")).unwrap();
        let mode = fs::metadata(&f.own).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (c, from) = f.lookup("127.0.0.1:5000", "app").unwrap().unwrap();
        assert_eq!((c, from), (cred("alice", "pa:ss"), f.own.clone()));
        let (c, _) = f.lookup("docker.io", "library/busybox").unwrap().unwrap();
        assert_eq!(c, cred("bob", "x"));
        let text = fs::read_to_string(&f.own).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert!(f.remove("127.0.0.1:5000").unwrap());
        assert!(!f.remove("127.0.0.1:5000").unwrap());
        assert!(f.lookup("127.0.0.1:5000", "app").unwrap().is_none());
        // Only nook's file is left in the temp dir's config folder: no stray temp files.
        let names: Vec<_> = fs::read_dir(f.own.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn reads_docker_and_containers_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let docker = dir.path().join("home/.docker/config.json");
        fs::create_dir_all(docker.parent().unwrap()).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        fs::write(
            &docker,
            json!({"auths": {"https://quay.io/v1/": {"auth": b64("d:1")},
                             "https://index.docker.io/v1/": {"auth": b64("hub:2")}},
                   "credsStore": "desktop"})
            .to_string(),
        )
        .unwrap();
        let containers = dir.path().join("run/containers/auth.json");
        fs::create_dir_all(containers.parent().unwrap()).unwrap();
        fs::write(
            &containers,
            json!({"auths": {"quay.io/org": {"auth": b64("c:3")}}}).to_string(),
        )
        .unwrap();
        let get = |r: &str, p: &str| f.lookup(r, p).unwrap().map(|(c, _)| c.username);
        assert_eq!(get("quay.io", "org/app").as_deref(), Some("c"));
        assert_eq!(get("quay.io", "other/app").as_deref(), Some("d"));
        assert_eq!(get("docker.io", "library/x").as_deref(), Some("hub"));
        assert_eq!(get("example.com", "x"), None);
        fs::write(&containers, "{not json").unwrap();
        let err = f.lookup("quay.io", "x").unwrap_err().to_string();
        assert!(err.contains("auth.json"), "{err}");
        fs::write(
            &containers,
            json!({"auths": {"quay.io": {"auth": "!!!"}}}).to_string(),
        )
        .unwrap();
        assert!(matches!(
            f.lookup("quay.io", "x"),
            Err(CredentialsError::BadEntry { .. })
        ));
    }
}
