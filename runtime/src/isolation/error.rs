//! The errors of the isolation backends.

use super::{namespace, vm};

/// Errors of the isolation backends.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The container process failed before it could run the workload; `code` follows docker's
    /// convention (125 set-up, 126 not executable, 127 not found).
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("cannot {what}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the user namespace's id mapping")]
    IdMap(#[from] namespace::idmap::IdMapError),
    #[error("cannot run the container's microVM")]
    Vm(#[from] vm::VmError),
    #[error("cannot unpack layer {layer}")]
    Unpack {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    // Boxed: image errors are large, and every backend call returns this type.
    #[error(transparent)]
    Image(Box<crate::image::StoreError>),
    #[error(transparent)]
    Layers(Box<crate::image::layer_streams::SourceError>),
    #[error(transparent)]
    Rootfs(Box<crate::image::rootfs_cache::RootfsCacheError>),
    #[error(transparent)]
    Lock(#[from] crate::util::lock::LockError),
    #[error(transparent)]
    Network(#[from] super::stack::StackError),
    #[error(transparent)]
    Limits(#[from] super::limits::LimitsError),
    #[error(transparent)]
    Cgroup(#[from] super::limits::cgroup::CgroupError),
    #[error(transparent)]
    Atomic(#[from] crate::util::atomic::AtomicError),
    #[error(
        "{what} needs the VM column (--isolation=vm): a namespace container's processes would \
         have to be dumped and restored with CRIU, which nook does not use"
    )]
    NoCheckpoints { what: &'static str },
}

impl IsolationError {
    pub(crate) fn os(what: impl Into<String>, source: std::io::Error) -> Self {
        IsolationError::Os {
            what: what.into(),
            source,
        }
    }

    /// The exit code `nook` should report for this error (docker's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            IsolationError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

macro_rules! boxed_from {
    ($variant:ident, $ty:ty) => {
        impl From<$ty> for IsolationError {
            fn from(e: $ty) -> Self {
                IsolationError::$variant(Box::new(e))
            }
        }
    };
}

boxed_from!(Image, crate::image::StoreError);
boxed_from!(Layers, crate::image::layer_streams::SourceError);
boxed_from!(Rootfs, crate::image::rootfs_cache::RootfsCacheError);
