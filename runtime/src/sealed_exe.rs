//! Running nook from a sealed, read-only in-memory copy of itself (the CVE-2019-5736 class).
//!
//! Every namespace container's first process and every `nook exec` process is a copy of the
//! `nook` process until its `execve`, and so is whatever a container makes nook run through
//! `/proc/self/exe` (a `#!/proc/self/exe` script). Such a process is visible inside the container,
//! whose root is the user who owns the nook file: through `/proc/<pid>/exe` it could open the
//! host's binary and write into it once nothing executes it any more. So, as runc does, the
//! verbs that put processes into a container first copy the binary into a memfd, seal it against
//! every change and re-execute themselves from it: `/proc/<pid>/exe` then leads to a file that
//! cannot be written, grown, shrunk or unsealed.
//!
//! After the re-execution `current_exe()` names the memfd, not the file: [`nook_binary`] is the
//! one answer to "where is the nook binary" (its siblings `nook-vmm` and the agent live there).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable through which the re-executed program learns the path it was
/// copied from. Believed only by a program that really runs from a sealed copy.
pub const ORIGIN_VAR: &str = "NOOK_SEALED_ORIGIN";

/// The seals a copy must carry for nook to trust it: no write, no resize, no change of seals.
pub const REQUIRED_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Seals added when the kernel knows them: no new writable mapping, no change of the exec bits.
const EXTRA_SEALS: libc::c_int = libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_EXEC;

/// What the running program is.
const SELF_EXE: &str = "/proc/self/exe";

#[derive(Debug, thiserror::Error)]
pub enum SealedExeError {
    #[error("cannot open the running program {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create an in-memory copy of {path} (memfd_create)")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot copy {path} into its in-memory copy")]
    Copy {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot seal the in-memory copy of {path}")]
    Seal {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot re-execute {path} from its sealed copy")]
    Exec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The seals of `file`: None when it is no memfd (or other sealable file) at all.
pub fn seals(file: &File) -> Option<libc::c_int> {
    // SAFETY: F_GET_SEALS on an open descriptor takes no further argument.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    (seals >= 0).then_some(seals)
}

/// True when `file` carries every seal of [`REQUIRED_SEALS`].
pub fn is_sealed(file: &File) -> bool {
    seals(file).is_some_and(|s| s & REQUIRED_SEALS == REQUIRED_SEALS)
}

/// True when the running program is a sealed copy.
pub fn running_sealed() -> bool {
    File::open(SELF_EXE).is_ok_and(|f| is_sealed(&f))
}

/// A new memfd that may be executed and sealed. `MFD_EXEC` (Linux 6.3) keeps the exec bits
/// where `vm.memfd_noexec` would otherwise drop them; older kernels refuse the flag with EINVAL
/// and make executable memfds anyway.
fn create_memfd(name: &str) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let mut fd = -1;
    for flags in [base | libc::MFD_EXEC, base] {
        // SAFETY: name is a valid NUL-terminated string alive for the call.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            break;
        }
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies all of `src` (from its start) to `dst` in the kernel, with sendfile.
fn copy_all(src: &File, dst: &OwnedFd) -> io::Result<()> {
    let len = src.metadata()?.len();
    let mut offset: libc::off_t = 0;
    while (offset as u64) < len {
        let left = (len - offset as u64).min(1 << 30) as usize;
        // SAFETY: two open descriptors; offset is a valid off_t the kernel advances.
        let n = unsafe { libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), &mut offset, left) };
        match n {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended after {offset} of {len} bytes"),
                ))
            }
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Adds the seals to `fd`: every extra one the kernel knows, else the required ones alone.
fn seal(fd: &OwnedFd) -> io::Result<()> {
    for seals in [REQUIRED_SEALS | EXTRA_SEALS, REQUIRED_SEALS] {
        // SAFETY: F_ADD_SEALS on an open descriptor with an int argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
    }
    Err(io::Error::last_os_error())
}

/// A sealed in-memory copy of `src` (`path` names it in errors), named `name` in
/// `/proc/<pid>/exe` (`/memfd:<name> (deleted)`).
pub fn sealed_copy(src: &File, path: &Path, name: &str) -> Result<OwnedFd, SealedExeError> {
    let path = || path.to_path_buf();
    let fd = create_memfd(name).map_err(|source| SealedExeError::Create {
        path: path(),
        source,
    })?;
    copy_all(src, &fd).map_err(|source| SealedExeError::Copy {
        path: path(),
        source,
    })?;
    seal(&fd).map_err(|source| SealedExeError::Seal {
        path: path(),
        source,
    })?;
    Ok(fd)
}

fn cstring(s: &OsStr) -> CString {
    // Arguments and environment entries come from the kernel as C strings: no NUL inside.
    CString::new(s.as_bytes()).unwrap_or_default()
}

/// The environment for the re-executed program: ours, with [`ORIGIN_VAR`] set to `origin`.
fn environment_with_origin(origin: &Path) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ORIGIN_VAR)
        .map(|(k, v)| {
            let mut entry = k;
            entry.push("=");
            entry.push(v);
            cstring(&entry)
        })
        .collect();
    let mut entry = OsString::from(ORIGIN_VAR);
    entry.push("=");
    entry.push(origin);
    env.push(cstring(&entry));
    env
}

/// Makes sure the running program is a sealed copy of itself: returns when it already is,
/// otherwise re-executes it from a new sealed copy with the same arguments and returns only
/// on failure. Must be called while the program is single-threaded (at the start of `main`).
pub fn ensure_sealed() -> Result<(), SealedExeError> {
    let exe = File::open(SELF_EXE).map_err(|source| SealedExeError::Open {
        path: PathBuf::from(SELF_EXE),
        source,
    })?;
    if is_sealed(&exe) {
        name_after_origin();
        return Ok(());
    }
    let origin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(SELF_EXE));
    let copy = sealed_copy(&exe, &origin, "nook")?;
    drop(exe);
    let argv: Vec<CString> = std::env::args_os().map(|a| cstring(&a)).collect();
    let envp = environment_with_origin(&origin);
    // execveat's prototype wants mutable pointers; the kernel only reads the strings.
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());
    // SAFETY: copy is an open descriptor; the empty path, argv and envp are NUL-terminated
    // strings in null-terminated arrays, all alive for the call. execveat returns only on failure.
    unsafe {
        libc::execveat(
            copy.as_raw_fd(),
            c"".as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(SealedExeError::Exec {
        path: origin,
        source: io::Error::last_os_error(),
    })
}

/// Gives the process the name of its original file again (`ps`, `pgrep nook`): executed
/// through a descriptor, it was named after the descriptor's number.
fn name_after_origin() {
    let Some(name) = nook_binary()
        .file_name()
        .map(|n| cstring(n).as_bytes_with_nul().to_vec())
    else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (cut to 15 bytes) alive for the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// The path of the `nook` binary on disk: the file a sealed copy was made from when the program
/// runs from one (as told by [`ORIGIN_VAR`]), else the running program's own path.
pub fn nook_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        binary_path(
            std::env::var_os(ORIGIN_VAR),
            running_sealed(),
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from(SELF_EXE)),
        )
    })
    .clone()
}

/// The origin told by the environment when the program is sealed, else `running`.
fn binary_path(origin: Option<OsString>, sealed: bool, running: PathBuf) -> PathBuf {
    match origin.filter(|o| !o.is_empty()) {
        Some(origin) if sealed => PathBuf::from(origin),
        _ => running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    fn sealed_copy_of(data: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("program");
        std::fs::write(&path, data).unwrap();
        let src = File::open(&path).unwrap();
        let fd = sealed_copy(&src, &path, "nook-test").unwrap();
        (dir, File::from(fd))
    }

    #[test]
    fn a_sealed_copy_has_the_same_bytes_and_every_required_seal() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, mut copy) = sealed_copy_of(&data);
        assert!(is_sealed(&copy));
        let s = seals(&copy).unwrap();
        assert_eq!(s & REQUIRED_SEALS, REQUIRED_SEALS, "seals {s:#x}");
        // The copy's offset is at its end after the copy.
        copy.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        copy.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_sealed_copy_cannot_be_written_resized_or_unsealed() {
        let (_dir, copy) = sealed_copy_of(b"\x7fELF original bytes");
        // Reopened for writing, as a container would through /proc/<pid>/exe.
        let reopened = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&reopened)
            .unwrap();
        let err = w.write_all(b"evil").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        w.seek(SeekFrom::End(0)).unwrap();
        assert_eq!(
            w.write_all(b"more").unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert_eq!(
            w.set_len(4).unwrap_err().raw_os_error(),
            Some(libc::EPERM),
            "shrink"
        );
        assert_eq!(
            w.set_len(1 << 20).unwrap_err().raw_os_error(),
            Some(libc::EPERM),
            "grow"
        );
        // A writable shared mapping is refused too.
        // SAFETY: a request for a new mapping of an open descriptor; never used when it fails.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                w.as_raw_fd(),
                0,
            )
        };
        assert_eq!(map, libc::MAP_FAILED);
        // Nor can the seals be lifted or changed.
        // SAFETY: F_ADD_SEALS on an open descriptor with an int argument.
        let added = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_GROW) };
        assert_eq!(added, -1);
        let mut back = Vec::new();
        File::open(&reopened)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"\x7fELF original bytes");
    }

    #[test]
    fn plain_files_and_unsealed_memfds_are_not_taken_for_sealed_copies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(seals(&File::open(&path).unwrap()), None);
        assert!(!is_sealed(&File::open(&path).unwrap()));
        let memfd = File::from(create_memfd("unsealed").unwrap());
        assert_eq!(seals(&memfd), Some(0));
        assert!(!is_sealed(&memfd));
        // The test program itself runs from its file on disk.
        assert!(!running_sealed());
    }

    #[test]
    fn the_origin_variable_is_believed_only_by_a_sealed_program() {
        let running = PathBuf::from("/memfd:nook (deleted)");
        let origin = || Some(OsString::from("/opt/nook/bin/nook"));
        assert_eq!(
            binary_path(origin(), true, running.clone()),
            Path::new("/opt/nook/bin/nook")
        );
        assert_eq!(binary_path(origin(), false, running.clone()), running);
        assert_eq!(
            binary_path(Some(OsString::new()), true, running.clone()),
            running
        );
        assert_eq!(binary_path(None, true, running.clone()), running);
        // This test program runs from its file on disk.
        assert_eq!(nook_binary(), std::env::current_exe().unwrap());
    }

    #[test]
    fn the_environment_of_the_copy_names_its_origin_once() {
        let env = environment_with_origin(Path::new("/opt/nook/bin/nook"));
        let origin: Vec<_> = env
            .iter()
            .filter(|e| e.as_bytes().starts_with(ORIGIN_VAR.as_bytes()))
            .collect();
        assert_eq!(origin.len(), 1);
        assert_eq!(
            origin[0].to_bytes(),
            format!("{ORIGIN_VAR}=/opt/nook/bin/nook").as_bytes()
        );
    }
}
