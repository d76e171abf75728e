//! The container's filesystem, built inside its own user and mount namespaces: overlayfs over the
//! image's directories, a minimal /dev, /proc, a read-only /sys, docker's masked and read-only
//! paths, then pivot_root into it.

use std::io;
use std::path::{Path, PathBuf};

use super::masks;
use super::sys::{MountError, Sys};

/// Device nodes bind-mounted from the host: a user namespace cannot create device nodes, and
/// these are the harmless ones every program expects.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The namespace column's root filesystem: an overlay of the container's writable layer over
/// the image's unpacked tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    /// Image directories, bottom layer first.
    pub lower: Vec<PathBuf>,
    /// The container's writable layer (overlayfs upperdir) and overlayfs' work directory.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted (inside the container's mount namespace only).
    pub merged: PathBuf,
    /// Mount the root read-only (`--read-only`).
    pub read_only: bool,
}

fn at<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MountError + 'a {
    move |source| MountError {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The overlayfs mount options for `spec`. overlayfs lists the top lower layer first, the
/// spec lists the bottom one first. `userxattr` is required inside a user namespace: overlayfs
/// then keeps its metadata in `user.overlay.*` xattrs.
pub fn overlay_options(spec: &Overlay) -> String {
    let lower: Vec<String> = spec
        .lower
        .iter()
        .rev()
        .map(|p| escape_overlay_path(p))
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        escape_overlay_path(&spec.upper),
        escape_overlay_path(&spec.work)
    )
}

/// Options of a read-only overlay of `spec.lower` alone (no upper layer), top layer last in
/// `spec.lower` as everywhere.
pub fn lower_only_options(spec: &Overlay) -> String {
    let lower: Vec<String> = spec
        .lower
        .iter()
        .rev()
        .map(|p| escape_overlay_path(p))
        .collect();
    format!("lowerdir={},userxattr", lower.join(":"))
}

/// overlayfs splits its options on `,` and lower directories on `:`; both are escaped with `\`.
fn escape_overlay_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Builds the container's root at `spec.merged`, makes it the process's root, and makes it
/// read-only with `--read-only`. Runs in the container's init process, in its fresh user and
/// mount namespaces.
pub fn setup(sys: &dyn Sys, spec: &Overlay) -> Result<(), MountError> {
    mount(sys, spec, true, None)?;
    switch(sys, spec)?;
    seal(sys, spec.read_only)
}

/// Mounts the container's root at `spec.merged`, with /proc, /dev, /sys and, unless `masks` is
/// false (`--privileged`), the masks; the per-container files are bound into it before
/// [`switch`] and [`seal`].
/// `shm_size` is the size of /dev/shm (`--shm-size`), docker's 64 MiB without one.
pub fn mount(
    sys: &dyn Sys,
    spec: &Overlay,
    masks: bool,
    shm_size: Option<u64>,
) -> Result<(), MountError> {
    let root = spec.merged.as_path();
    // Nothing we mount may propagate back to the host's mount namespace.
    sys.mount(
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(at("make private", Path::new("/")))?;

    sys.mount(
        "overlay",
        root,
        Some("overlay"),
        0,
        Some(&overlay_options(spec)),
    )
    .map_err(at("mount the overlay on", root))?;

    let proc = root.join("proc");
    sys.mkdir_all(&proc).map_err(at("create", &proc))?;
    sys.mount(
        "proc",
        &proc,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(at("mount proc on", &proc))?;

    setup_dev(sys, root, shm_size)?;
    setup_sys(sys, root)?;
    if masks {
        masks::apply(sys, root)?;
    }
    Ok(())
}

/// Makes the root built by [`mount`] the process's root.
pub fn switch(sys: &dyn Sys, spec: &Overlay) -> Result<(), MountError> {
    switch_to(sys, &spec.merged)
}

/// Makes the directory `root` (a mount point) the process's root.
pub fn switch_to(sys: &dyn Sys, root: &Path) -> Result<(), MountError> {
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // only the new root, with no directory needed for the old one.
    sys.chdir(root).map_err(at("enter", root))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(at("pivot_root into", root))?;
    sys.umount_detach(Path::new("."))
        .map_err(at("detach the old root from", root))?;
    sys.chdir(Path::new("/"))
        .map_err(at("enter", Path::new("/")))?;
    Ok(())
}

/// Makes a directory given as the container's root (an OCI bundle's `root.path`) a mount point
/// of its own, after making every mount private, so that it can be pivoted into.
pub fn bind_root(sys: &dyn Sys, root: &Path) -> Result<(), MountError> {
    sys.mount(
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(at("make private", Path::new("/")))?;
    sys.mount(
        &root.to_string_lossy(),
        root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(at("bind-mount the root", root))
}

/// Makes the root read-only (`--read-only`): the root mount only, so /proc, /dev and the
/// per-container files bound into it stay as they are.
pub fn seal(sys: &dyn Sys, read_only: bool) -> Result<(), MountError> {
    if read_only {
        sys.mount(
            "none",
            Path::new("/"),
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            None,
        )
        .map_err(at("remount read-only", Path::new("/")))?;
    }
    Ok(())
}

fn setup_dev(sys: &dyn Sys, root: &Path, shm_size: Option<u64>) -> Result<(), MountError> {
    let dev = root.join("dev");
    sys.mkdir_all(&dev).map_err(at("create", &dev))?;
    sys.mount(
        "tmpfs",
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(at("mount tmpfs on", &dev))?;
    bind_devices(sys, &dev, &DEVICES)?;
    // A devpts instance of the container's own: the host's would let the container open the
    // user's other terminals (they belong to the uid its root maps to). A pty handed in by the
    // caller keeps working as a terminal through its open descriptor. Where a kernel refuses a
    // new instance, the host's is bound instead.
    let pts = dev.join("pts");
    sys.mkdir_all(&pts).map_err(at("create", &pts))?;
    let own = sys.mount(
        "devpts",
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    if own.is_err() {
        sys.mount("/dev/pts", &pts, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(at("bind-mount /dev/pts on", &pts))?;
    }
    // A private /dev/shm: sharing the host's would let containers see each other's memory.
    let shm = dev.join("shm");
    sys.mkdir_all(&shm).map_err(at("create", &shm))?;
    sys.mount(
        "shm",
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(format!("mode=1777,size={}", shm_size.unwrap_or(64 << 20)).as_str()),
    )
    .map_err(at("mount tmpfs on", &shm))?;
    for (target, link) in DEV_LINKS {
        let link = dev.join(link);
        sys.symlink(target, &link).map_err(at("create", &link))?;
    }
    Ok(())
}

/// The links every /dev has: (target, name).
pub const DEV_LINKS: [(&str, &str); 5] = [
    ("pts/ptmx", "ptmx"),
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

/// Binds the host's device nodes `names` (under /dev) onto empty files in `dev`.
pub fn bind_devices(sys: &dyn Sys, dev: &Path, names: &[&str]) -> Result<(), MountError> {
    for name in names {
        let node = dev.join(name);
        let host = Path::new("/dev").join(name);
        sys.touch(&node).map_err(at("create", &node))?;
        sys.mount(&host.to_string_lossy(), &node, None, libc::MS_BIND, None)
            .map_err(at("bind-mount the host device on", &node))?;
    }
    Ok(())
}

fn setup_sys(sys: &dyn Sys, root: &Path) -> Result<(), MountError> {
    let path = root.join("sys");
    sys.mkdir_all(&path).map_err(at("create", &path))?;
    mount_sysfs(sys, &path)
}

/// A read-only sysfs at `path` (a directory), or a read-only bind of the host's /sys where
/// the kernel refuses a new one.
pub fn mount_sysfs(sys: &dyn Sys, path: &Path) -> Result<(), MountError> {
    let path = path.to_path_buf();
    let ro = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // sysfs may be mounted by the owner of the network namespace, which the container is. Where
    // a kernel refuses, a read-only recursive bind of the host's /sys is the fallback.
    match sys.mount("sysfs", &path, Some("sysfs"), ro, None) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            sys.mount("/sys", &path, None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(at("bind-mount /sys on", &path))?;
            sys.mount(
                "none",
                &path,
                None,
                libc::MS_REMOUNT | libc::MS_BIND | ro,
                None,
            )
            .map_err(at("remount read-only", &path))
        }
        Err(e) => Err(at("mount sysfs on", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::sys::recording::RecordingSys;
    use super::*;

    fn spec(read_only: bool) -> Overlay {
        Overlay {
            lower: vec!["/s/l1".into(), "/s/l2".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            merged: "/c/merged".into(),
            read_only,
        }
    }

    #[test]
    fn overlay_lists_the_top_layer_first_and_escapes_separators() {
        let mut s = spec(false);
        assert_eq!(
            overlay_options(&s),
            "lowerdir=/s/l2:/s/l1,upperdir=/c/upper,workdir=/c/work,userxattr"
        );
        s.lower = vec!["/a:b,c".into()];
        assert!(overlay_options(&s).starts_with("lowerdir=/a\\:b\\,c,"));
    }

    #[test]
    fn mounts_everything_before_pivot_root_and_nothing_from_the_host_after() {
        let sys = RecordingSys::default();
        setup(&sys, &spec(false)).unwrap();
        let lines = sys.lines();
        assert!(
            lines[0].starts_with("mount none / - 0x44000"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("mount overlay /c/merged overlay"));
        let pivot = lines
            .iter()
            .position(|l| l.starts_with("pivot_root"))
            .unwrap();
        assert_eq!(lines[pivot - 1], "chdir /c/merged");
        assert_eq!(lines[pivot], "pivot_root . .");
        assert_eq!(lines[pivot + 1], "umount .");
        assert_eq!(lines[pivot + 2], "chdir /");
        assert_eq!(
            lines.len(),
            pivot + 3,
            "no read-only remount asked: {lines:?}"
        );
        for dev in DEVICES {
            let bind = format!("mount /dev/{dev} /c/merged/dev/{dev} - 0x1000 -");
            let at = lines.iter().position(|l| *l == bind).unwrap();
            assert!(at < pivot);
        }
        let sysfs = lines
            .iter()
            .find(|l| l.starts_with("mount sysfs /c/merged/sys sysfs"))
            .unwrap();
        assert!(sysfs.contains(&format!(
            "{:#x}",
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
        )));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("mount proc /c/merged/proc proc")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("mount shm /c/merged/dev/shm tmpfs")));
    }

    #[test]
    fn read_only_root_is_remounted_after_pivot_root() {
        let sys = RecordingSys::default();
        setup(&sys, &spec(true)).unwrap();
        let last = sys.lines().pop().unwrap();
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        assert_eq!(last, format!("mount none / - {flags:#x} -"));
    }

    #[test]
    fn sysfs_refused_falls_back_to_a_read_only_bind() {
        let sys = RecordingSys {
            fail: vec!["mount sysfs".into()],
            ..Default::default()
        };
        setup(&sys, &spec(false)).unwrap();
        let lines = sys.lines();
        let at = lines
            .iter()
            .position(|l| l.starts_with("mount sysfs"))
            .unwrap();
        assert!(lines[at + 1].starts_with("mount /sys /c/merged/sys - "));
        assert!(lines[at + 2].starts_with("mount none /c/merged/sys - "));
    }

    #[test]
    fn a_failed_overlay_names_the_mount_point() {
        let sys = RecordingSys {
            fail: vec!["mount overlay".into()],
            ..Default::default()
        };
        let err = setup(&sys, &spec(false)).unwrap_err();
        assert_eq!(err.to_string(), "cannot mount the overlay on /c/merged");
        assert!(!sys.lines().iter().any(|l| l.starts_with("pivot_root")));
    }
}
