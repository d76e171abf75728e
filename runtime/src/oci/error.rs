//! The OCI front end's errors. Their texts follow runc's where a caller may match on them
//! (containerd and podman look for "does not exist" and "not running").

use std::path::PathBuf;

use crate::isolation::IsolationError;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with given ID already exists: {0}")]
    Exists(String),
    #[error("invalid container id {0:?}: use letters, digits, '_', '-', '.' and '+'")]
    BadId(String),
    #[error("JSON specification file {} not found", .0.display())]
    NoConfig(PathBuf),
    #[error("cannot read the bundle's {}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config.json in {}", path.display())]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported spec version {0:?}: nook-runtime takes 1.x")]
    Version(String),
    #[error("invalid rootfs: {} does not exist or is not a directory", .0.display())]
    NoRootfs(PathBuf),
    /// config.json asks for something the namespace column cannot give, or contradicts itself.
    #[error("{0}")]
    Spec(String),
    /// `status` as runc words it: "has stopped", "is running", ...
    #[error("cannot {action} a container that {status}")]
    BadState {
        action: &'static str,
        status: &'static str,
    },
    #[error("container not running")]
    NotRunning,
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: &'static str },
    #[error("{what} is not supported by nook-runtime: {why}")]
    Unsupported { what: String, why: &'static str },
    #[error("invalid signal {0:?}")]
    Signal(String),
    #[error("{hook} hook {path} failed: {why}")]
    Hook {
        hook: &'static str,
        path: String,
        why: String,
    },
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    #[error(transparent)]
    Atomic(#[from] crate::util::atomic::AtomicError),
}

impl OciError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> OciError {
        OciError::Io {
            what: what.into(),
            source,
        }
    }
}
