//! Finding the guest kernel.
//!
//! The kernel is an ELF `vmlinux` with a PVH entry point, built by `guest-kernel/build.sh` into
//! `<cache>/kernel/<key>/vmlinux`; the script records the key of its latest build in
//! `<cache>/kernel/latest`. nook takes, in order: the `--kernel` flag, `$NOOK_KERNEL`, the
//! installed kernel (`<prefix>/lib/nook/vmlinux` beside a `nook` in `<prefix>/bin`), then that
//! cached build. The first one named is used or reported: a bad `--kernel` is an error, never a
//! silent fall back to another kernel.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::isolation::vm::assets::installed_dir;
use crate::paths::{self, Env};

/// Where the kernel path came from (said in errors and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelOrigin {
    Flag,
    EnvVar,
    Installed,
    Cache,
}

impl fmt::Display for KernelOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelOrigin::Flag => "the --kernel flag",
            KernelOrigin::EnvVar => "$NOOK_KERNEL",
            KernelOrigin::Installed => "the install",
            KernelOrigin::Cache => "the kernel cache",
        })
    }
}

/// A guest kernel that exists and is an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    pub path: PathBuf,
    pub origin: KernelOrigin,
}

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("cannot open guest kernel {path} (from {origin})")]
    Open {
        path: PathBuf,
        origin: KernelOrigin,
        #[source]
        source: io::Error,
    },
    #[error("guest kernel {path} (from {origin}) is not an ELF vmlinux (a bzImage or other file is not bootable through PVH)")]
    NotElf { path: PathBuf, origin: KernelOrigin },
    #[error("no guest kernel: pass --kernel, set NOOK_KERNEL, install one (install.sh), or build one with guest-kernel/build.sh (nothing recorded in {latest})")]
    NotBuilt { latest: PathBuf },
    #[error("cannot read the kernel cache pointer {latest}")]
    ReadLatest {
        latest: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("kernel cache pointer {latest} holds {key:?}, which is not a build key")]
    BadLatest { latest: PathBuf, key: String },
}

/// The directory `guest-kernel/build.sh` caches kernels in.
pub fn kernel_cache_dir(env: &dyn Env) -> PathBuf {
    paths::cache_dir(env).join("kernel")
}

/// Finds the guest kernel: `flag` (the `--kernel` value), else `$NOOK_KERNEL`, else the latest
/// cached build. The chosen file must exist and start with the ELF magic.
pub fn find_kernel(flag: Option<&Path>, env: &dyn Env) -> Result<GuestKernel, KernelError> {
    let (path, origin) = if let Some(flag) = flag {
        (flag.to_path_buf(), KernelOrigin::Flag)
    } else if let Some(var) = env.var("NOOK_KERNEL") {
        (PathBuf::from(var), KernelOrigin::EnvVar)
    } else if let Some(installed) = installed_dir()
        .map(|d| d.join("vmlinux"))
        .filter(|p| p.is_file())
    {
        (installed, KernelOrigin::Installed)
    } else {
        (cached_kernel(env)?, KernelOrigin::Cache)
    };
    check_elf(&path, origin)?;
    Ok(GuestKernel { path, origin })
}

fn cached_kernel(env: &dyn Env) -> Result<PathBuf, KernelError> {
    let dir = kernel_cache_dir(env);
    let latest = dir.join("latest");
    let key = match std::fs::read_to_string(&latest) {
        Ok(key) => key.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KernelError::NotBuilt { latest })
        }
        Err(source) => return Err(KernelError::ReadLatest { latest, source }),
    };
    // The key names a directory under the cache: never let it climb out of it.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KernelError::BadLatest { latest, key });
    }
    Ok(dir.join(key).join("vmlinux"))
}

fn check_elf(path: &Path, origin: KernelOrigin) -> Result<(), KernelError> {
    let open_err = |source| KernelError::Open {
        path: path.to_path_buf(),
        origin,
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == b"\x7fELF" => Ok(()),
        Ok(()) => Err(KernelError::NotElf {
            path: path.to_path_buf(),
            origin,
        }),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(KernelError::NotElf {
            path: path.to_path_buf(),
            origin,
        }),
        Err(source) => Err(open_err(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::FakeEnv;
    use std::fs;

    fn elf(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"\x7fELF\x02\x01\x01rest of a kernel").unwrap();
    }

    fn cache_env(cache: &Path) -> FakeEnv {
        FakeEnv::new([("XDG_CACHE_HOME", cache.display().to_string())], 1000)
    }

    #[test]
    fn flag_wins_over_env_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (flag, var) = (dir.path().join("flag"), dir.path().join("env"));
        elf(&flag);
        elf(&var);
        elf(&dir.path().join("nook/kernel/abc/vmlinux"));
        fs::write(dir.path().join("nook/kernel/latest"), "abc\n").unwrap();
        let mut env = cache_env(dir.path());
        env.set("NOOK_KERNEL", var.display().to_string());

        let k = find_kernel(Some(&flag), &env).unwrap();
        assert_eq!((k.path, k.origin), (flag, KernelOrigin::Flag));
        let k = find_kernel(None, &env).unwrap();
        assert_eq!((k.path, k.origin), (var, KernelOrigin::EnvVar));
    }

    #[test]
    fn cache_is_used_through_the_latest_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("nook/kernel/0123abcd/vmlinux");
        elf(&kernel);
        elf(&dir.path().join("nook/kernel/ffff/vmlinux"));
        fs::write(dir.path().join("nook/kernel/latest"), "0123abcd\n").unwrap();
        let k = find_kernel(None, &cache_env(dir.path())).unwrap();
        assert_eq!((k.path, k.origin), (kernel, KernelOrigin::Cache));
    }

    #[test]
    fn nothing_built_says_how_to_get_a_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_kernel(None, &cache_env(dir.path())).unwrap_err();
        assert!(matches!(err, KernelError::NotBuilt { .. }), "{err:?}");
        assert!(err.to_string().contains("guest-kernel/build.sh"), "{err}");
    }

    #[test]
    fn a_bad_flag_is_an_error_not_a_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("nook/kernel/abc/vmlinux");
        elf(&cached);
        fs::write(dir.path().join("nook/kernel/latest"), "abc").unwrap();
        let missing = dir.path().join("nope");
        let err = find_kernel(Some(&missing), &cache_env(dir.path())).unwrap_err();
        assert!(
            matches!(&err, KernelError::Open { path, origin: KernelOrigin::Flag, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn non_elf_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let bz = dir.path().join("bzImage");
        fs::write(&bz, b"MZ\x00\x00not elf").unwrap();
        let short = dir.path().join("short");
        fs::write(&short, b"\x7fE").unwrap();
        for path in [&bz, &short] {
            let mut env = cache_env(dir.path());
            env.set("NOOK_KERNEL", path.display().to_string());
            let err = find_kernel(None, &env).unwrap_err();
            assert!(
                matches!(
                    err,
                    KernelError::NotElf {
                        origin: KernelOrigin::EnvVar,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_latest_pointer_cannot_escape_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        elf(&dir.path().join("evil/vmlinux"));
        fs::create_dir_all(dir.path().join("nook/kernel")).unwrap();
        for key in ["../../evil", "", "a/b"] {
            fs::write(dir.path().join("nook/kernel/latest"), key).unwrap();
            let err = find_kernel(None, &cache_env(dir.path())).unwrap_err();
            assert!(
                matches!(err, KernelError::BadLatest { .. }),
                "{key}: {err:?}"
            );
        }
    }
}
