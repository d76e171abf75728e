//! The container root: the image (read-only), the writable layer (a disk or a tmpfs), the
//! overlay of the two, the move into it, and the per-container files (/etc/hosts,
//! /etc/hostname, /etc/resolv.conf) bind-mounted from a small tmpfs so that they never end up
//! in the writable layer (and so never in a commit). The empty files (and directories) made as
//! mount targets where the image has none do land in the writable layer: they are recorded
//! next to it ([`crate::layer::targets`]) so that the layer leaves them out.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::cmdline::{BootParams, Upper, AUTO_UPPER_DEVICE};
use super::mounts::{self, MountError, MountOps, BIND, MOVE, NODEV, NOSUID, RDONLY, REMOUNT};
use crate::layer::targets::{MountTargets, TargetKind};
use crate::protocol::{GuestMount, StartSpec};
use crate::supervisor::ContainerSetup;

/// Where things are mounted in the initramfs before the switch.
pub const LOWER: &str = "/run/nook/lower";
pub const RW: &str = "/run/nook/rw";
pub const UPPER: &str = "/run/nook/rw/upper";
pub const WORK: &str = "/run/nook/rw/work";
pub const ETC: &str = "/run/nook/etc";
pub const NEW_ROOT: &str = "/run/nook/root";

/// Mounts the image, the writable layer, the files tmpfs and the overlay at [`NEW_ROOT`], and
/// moves /proc, /sys and /dev into it. With `nook.roottag`, the shared host directory is the
/// root as it is, and the writable layer's place is a tmpfs that only keeps the agent's record
/// of its mount targets.
pub fn prepare(ops: &mut dyn MountOps, params: &BootParams) -> Result<(), MountError> {
    if let Some(tag) = &params.root_tag {
        return prepare_shared(ops, tag);
    }
    let lower = Path::new(LOWER);
    mounts::mkdir_all(ops, lower)?;
    mounts::mount(
        ops,
        &params.root_device.to_string_lossy(),
        lower,
        &params.root_fstype,
        RDONLY,
        "",
    )?;

    let rw = Path::new(RW);
    mounts::mkdir_all(ops, rw)?;
    let upper = match &params.upper {
        Upper::Auto if ops.exists(Path::new(AUTO_UPPER_DEVICE)) => {
            Upper::Device(AUTO_UPPER_DEVICE.into())
        }
        Upper::Auto => Upper::Tmpfs,
        other => other.clone(),
    };
    match &upper {
        Upper::Device(dev) => {
            mounts::mount(ops, &dev.to_string_lossy(), rw, &params.upper_fstype, 0, "")?
        }
        _ => mounts::mount(ops, "tmpfs", rw, "tmpfs", 0, "mode=0755")?,
    }
    // On a fresh disk these are created; on a second boot they hold the container's changes.
    upper_files_and_root(ops)?;
    let root = Path::new(NEW_ROOT);
    // redirect_dir and metacopy off: every upper entry is then complete on its own, which is
    // what streaming the upper as an OCI layer relies on.
    let options =
        format!("lowerdir={LOWER},upperdir={UPPER},workdir={WORK},redirect_dir=off,metacopy=off");
    mounts::mount(ops, "overlay", root, "overlay", 0, &options)?;
    move_kernel_fs(ops, root)
}

/// Moves /proc, /sys and /dev into the new root.
fn move_kernel_fs(ops: &mut dyn MountOps, root: &Path) -> Result<(), MountError> {
    for dir in ["proc", "sys", "dev"] {
        let target = root.join(dir);
        mounts::mkdir_all(ops, &target)?;
        mounts::mount(ops, &format!("/{dir}"), &target, "", MOVE, "")?;
    }
    Ok(())
}

/// On the mounted [`RW`]: the upper and work directories; then the files tmpfs at [`ETC`] and
/// the mount point [`NEW_ROOT`].
fn upper_files_and_root(ops: &mut dyn MountOps) -> Result<(), MountError> {
    mounts::mkdir_all(ops, Path::new(UPPER))?;
    mounts::mkdir_all(ops, Path::new(WORK))?;
    let etc = Path::new(ETC);
    mounts::mkdir_all(ops, etc)?;
    mounts::mount(
        ops,
        "tmpfs",
        etc,
        "tmpfs",
        NOSUID | NODEV,
        "mode=0755,size=1m",
    )?;
    mounts::mkdir_all(ops, Path::new(NEW_ROOT))
}

/// The root of `nook.roottag`: the virtio-fs share mounted at [`NEW_ROOT`] read-write (a
/// read-only root is made so once the container's files are in place, as with a disk), a
/// tmpfs at [`RW`] with empty upper and work directories, and the files tmpfs.
fn prepare_shared(ops: &mut dyn MountOps, tag: &str) -> Result<(), MountError> {
    let rw = Path::new(RW);
    mounts::mkdir_all(ops, rw)?;
    mounts::mount(ops, "tmpfs", rw, "tmpfs", 0, "mode=0755")?;
    upper_files_and_root(ops)?;
    let root = Path::new(NEW_ROOT);
    mounts::mount(ops, tag, root, "virtiofs", 0, "")?;
    move_kernel_fs(ops, root)
}

/// Makes [`NEW_ROOT`] the root, as switch_root does for an initramfs (pivot_root cannot take
/// the initramfs away): move the mount onto `/`, then chroot into it.
pub fn switch_root(ops: &mut dyn MountOps) -> Result<(), MountError> {
    let root = Path::new(NEW_ROOT);
    fn other<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MountError + 'a {
        move |source| MountError::Other {
            what,
            path: path.to_owned(),
            source,
        }
    }
    ops.chdir(root).map_err(other("enter", root))?;
    mounts::mount(ops, ".", Path::new("/"), "", MOVE, "")?;
    ops.chroot(Path::new("."))
        .map_err(other("chroot into", root))?;
    ops.chdir(Path::new("/"))
        .map_err(other("enter", Path::new("/")))?;
    Ok(())
}

/// The `/etc/hosts` of a container when the host sends none: the loopback names and the
/// hostname.
pub fn hosts_file(hostname: &str) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !hostname.is_empty() {
        s.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    s
}

/// Applies a `Start` request's container settings inside the guest.
pub struct GuestSetup<O> {
    pub ops: O,
    /// The files tmpfs, reachable after the switch through the descriptor opened before it
    /// (`/proc/self/fd/N`).
    pub files_dir: PathBuf,
    /// The record of the mount targets the agent created, on the writable disk next to the
    /// upper directory ([`crate::layer::targets::record_path`]).
    pub targets_record: PathBuf,
    /// Sets the kernel hostname (`sethostname`); a parameter so tests can watch it.
    pub set_hostname: fn(&str) -> io::Result<()>,
    /// Make the root read-only once the per-container files are in place (`nook.readonly`).
    pub read_only: bool,
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `dir` and its ancestors below `/` that do not exist yet, outermost first, as directories
/// to record once made (this runs before the container's first process, so nothing races it).
fn missing_dirs<'p>(ops: &mut dyn MountOps, dir: &'p Path) -> Vec<(&'p Path, TargetKind)> {
    let mut missing: Vec<(&Path, TargetKind)> = dir
        .ancestors()
        .filter(|d| d.parent().is_some())
        .take_while(|d| !ops.exists(d))
        .map(|d| (d, TargetKind::Dir))
        .collect();
    missing.reverse();
    missing
}

impl<O: MountOps> GuestSetup<O> {
    fn bind_file(&mut self, name: &str, content: &str, target: &str) -> Result<(), String> {
        let source = self.files_dir.join(name);
        fs::write(&source, content)
            .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
        let target = Path::new(target);
        let mut created = Vec::new();
        if let Some(parent) = target.parent() {
            // The directories mkdir_all is about to make.
            let missing = missing_dirs(&mut self.ops, parent);
            self.ops
                .mkdir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            created.extend(missing);
        }
        let made = self
            .ops
            .touch(target)
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        if made {
            created.push((target, TargetKind::File));
        }
        // Recorded as soon as made: on a later start of this disk the target exists already
        // and could no longer be told from the image's or the container's.
        self.record(&created)?;
        mounts::mount(
            &mut self.ops,
            &source.to_string_lossy(),
            target,
            "",
            BIND,
            "",
        )
        .map_err(|e| crate::errors::chain(&e))
    }

    /// Mounts one of the container's file systems at its target, a directory made in the
    /// writable layer when missing (and recorded, so the layer leaves it out). The target is
    /// resolved inside the container's root: no symlink leads the mount out of it.
    fn mount_fs(&mut self, m: &GuestMount) -> Result<(), String> {
        let target = Path::new(m.target());
        if !target.is_absolute() {
            return Err(format!("mount target {} is not absolute", target.display()));
        }
        if let GuestMount::Virtiofs {
            tag,
            readonly,
            file: true,
            ..
        } = m
        {
            return self.mount_shared_file(tag, target, *readonly);
        }
        let created = missing_dirs(&mut self.ops, target);
        let point = self
            .ops
            .dir_in_root(target)
            .map_err(|e| format!("cannot create the mount point {}: {e}", target.display()))?;
        self.record(&created)?;
        let (source, fstype, mut flags, data) = match m {
            GuestMount::Virtiofs { tag, .. } => (tag.clone(), "virtiofs", 0, String::new()),
            GuestMount::Tmpfs { size, mode, .. } => {
                let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                ("tmpfs".to_owned(), "tmpfs", NOSUID | NODEV, data)
            }
        };
        let readonly = match m {
            GuestMount::Virtiofs { readonly, .. } | GuestMount::Tmpfs { readonly, .. } => *readonly,
        };
        if readonly {
            flags |= RDONLY;
        }
        mounts::mount(&mut self.ops, &source, &point.path, fstype, flags, &data).map_err(|e| {
            format!(
                "cannot mount at {}: {}",
                target.display(),
                crate::errors::chain(&e)
            )
        })
    }

    /// A single host file: its share (a directory holding it alone) mounted in the files
    /// tmpfs, out of the container's reach, and its one file bound at `target`, a file made in
    /// the writable layer when missing (and recorded, as directories are). The target is
    /// resolved inside the container's root. Read-only: the share is mounted so, the bind
    /// inherits it, and the bind is remounted read-only on top.
    fn mount_shared_file(
        &mut self,
        tag: &str,
        target: &Path,
        readonly: bool,
    ) -> Result<(), String> {
        let share = self.files_dir.join(format!("share-{tag}"));
        self.ops
            .mkdir_all(&share)
            .map_err(|e| format!("cannot create {}: {e}", share.display()))?;
        let ro = if readonly { RDONLY } else { 0 };
        mounts::mount(&mut self.ops, tag, &share, "virtiofs", ro, "")
            .map_err(|e| crate::errors::chain(&e))?;
        let mut created = match target.parent() {
            Some(parent) => missing_dirs(&mut self.ops, parent),
            None => Vec::new(),
        };
        let cannot =
            |e: io::Error| format!("cannot create the mount point {}: {e}", target.display());
        let (point, made) = self.ops.file_in_root(target).map_err(cannot)?;
        if made {
            created.push((target, TargetKind::File));
        }
        self.record(&created)?;
        let file = share.join(crate::protocol::SHARED_FILE);
        let bind = |ops: &mut O, point: &Path, flags| {
            mounts::mount(ops, &file.to_string_lossy(), point, "", flags, "").map_err(|e| {
                format!(
                    "cannot mount at {}: {}",
                    target.display(),
                    crate::errors::chain(&e)
                )
            })
        };
        bind(&mut self.ops, &point.path, BIND)?;
        drop(point);
        if readonly {
            // Opened again: the path now leads to the bind, which is what turns read-only.
            let (point, _) = self.ops.file_in_root(target).map_err(cannot)?;
            bind(&mut self.ops, &point.path, REMOUNT | BIND | RDONLY)?;
        }
        Ok(())
    }

    /// Adds what this agent created to the record of its mount targets. What existed already
    /// (from the image, or made on an earlier start of this disk and recorded then) is not
    /// added: the record keeps only the agent's own.
    fn record(&self, created: &[(&Path, TargetKind)]) -> Result<(), String> {
        if created.is_empty() {
            return Ok(());
        }
        let why = |e: &dyn std::error::Error| {
            format!(
                "cannot record the mount targets the agent created: {}",
                crate::errors::chain(e)
            )
        };
        let mut targets = MountTargets::load(&self.targets_record).map_err(|e| why(&e))?;
        for (path, kind) in created {
            targets.insert(path, *kind).map_err(|e| why(&e))?;
        }
        targets.save(&self.targets_record).map_err(|e| why(&e))
    }
}

impl<O: MountOps> ContainerSetup for GuestSetup<O> {
    fn apply(&mut self, spec: &StartSpec) -> Result<(), String> {
        if !spec.hostname.is_empty() {
            (self.set_hostname)(&spec.hostname)
                .map_err(|e| format!("cannot set the hostname to {}: {e}", spec.hostname))?;
            self.bind_file("hostname", &format!("{}\n", spec.hostname), "/etc/hostname")?;
        }
        // Always bind-mounted, like docker's: the image's file names no hostname of this
        // container, and a file written here never belongs in its writable layer.
        let hosts = if spec.hosts.is_empty() {
            hosts_file(&spec.hostname)
        } else {
            spec.hosts.clone()
        };
        self.bind_file("hosts", &hosts, "/etc/hosts")?;
        if !spec.resolv_conf.is_empty() {
            self.bind_file("resolv.conf", &spec.resolv_conf, "/etc/resolv.conf")?;
        }
        if let Some(user) = &spec.keep_id {
            // podman's entries, bound over the image's files like /etc/hosts: nothing of them
            // in the writable layer.
            let mut read = |path: &str| {
                self.ops
                    .read_in_root(Path::new(path))
                    .map(Option::unwrap_or_default)
                    .map_err(|e| format!("cannot read {path}: {e}"))
            };
            let passwd = user.add_to_passwd(&read("/etc/passwd")?);
            let group = user.add_to_group(&read("/etc/group")?);
            if let Some(passwd) = passwd {
                self.bind_file("passwd", &passwd, "/etc/passwd")?;
            }
            if let Some(group) = group {
                self.bind_file("group", &group, "/etc/group")?;
            }
        }
        // Before the root turns read-only: missing mount points are made in the writable layer.
        for m in &spec.mounts {
            self.mount_fs(m)?;
        }
        if self.read_only {
            // The root mount only: /proc, /sys, /dev and the files above stay as they are, and
            // the writable disk stays mounted read-write so the guest can stream and sync it.
            mounts::mount(
                &mut self.ops,
                "",
                Path::new("/"),
                "",
                REMOUNT | BIND | RDONLY,
                "",
            )
            .map_err(|e| format!("cannot make the root read-only: {e}"))?;
        }
        Ok(())
    }

    fn mount(&mut self, mounts: &[GuestMount]) -> Result<(), String> {
        mounts.iter().try_for_each(|m| self.mount_fs(m))
    }

    fn resumed(&mut self, seed: &[u8], realtime_ns: u64) -> Result<(), String> {
        let seed: &[u8; super::warm::SEED_BYTES] = seed.try_into().map_err(|_| {
            format!(
                "the host sent a {}-byte seed, not {}",
                seed.len(),
                super::warm::SEED_BYTES
            )
        })?;
        super::warm::reseed(seed).map_err(|e| format!("cannot reseed the random pool: {e}"))?;
        super::warm::set_clock(realtime_ns).map_err(|e| format!("cannot set the clock: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::mounts::Recorder;
    use crate::layer::targets::{record_path, RECORD_NAME};

    fn mounts_of(r: &Recorder) -> Vec<&str> {
        r.calls
            .iter()
            .filter(|c| !c.starts_with("mkdir"))
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn tmpfs_upper_overlay_and_moves() {
        let mut r = Recorder::default();
        prepare(&mut r, &BootParams::default()).unwrap();
        assert_eq!(
            mounts_of(&r),
            [
                "mount /dev/vda /run/nook/lower erofs [ro]",
                "mount tmpfs /run/nook/rw tmpfs [] mode=0755",
                "mount tmpfs /run/nook/etc tmpfs [nosuid,nodev] mode=0755,size=1m",
                "mount overlay /run/nook/root overlay [] lowerdir=/run/nook/lower,\
                 upperdir=/run/nook/rw/upper,workdir=/run/nook/rw/work,redirect_dir=off,metacopy=off",
                "mount /proc /run/nook/root/proc  [move]",
                "mount /sys /run/nook/root/sys  [move]",
                "mount /dev /run/nook/root/dev  [move]",
            ]
        );
        // upper/ and work/ are created after the writable mount, inside it.
        let pos = |s: &str| r.calls.iter().position(|c| c == s).unwrap();
        assert!(
            pos("mkdir /run/nook/rw/upper") > pos("mount tmpfs /run/nook/rw tmpfs [] mode=0755")
        );
    }

    #[test]
    fn a_shared_root_is_mounted_as_it_is_without_disk_or_overlay() {
        let mut r = Recorder::default();
        let params = BootParams::parse("nook.roottag=nookroot nook.readonly").unwrap();
        prepare(&mut r, &params).unwrap();
        assert_eq!(
            mounts_of(&r),
            [
                "mount tmpfs /run/nook/rw tmpfs [] mode=0755",
                "mount tmpfs /run/nook/etc tmpfs [nosuid,nodev] mode=0755,size=1m",
                "mount nookroot /run/nook/root virtiofs []",
                "mount /proc /run/nook/root/proc  [move]",
                "mount /sys /run/nook/root/sys  [move]",
                "mount /dev /run/nook/root/dev  [move]",
            ]
        );
        assert!(r.calls.contains(&"mkdir /run/nook/rw/upper".to_owned()));
    }

    #[test]
    fn disk_upper_is_mounted_with_its_type() {
        let mut r = Recorder::default();
        let params = BootParams::parse("nook.upper=vdc nook.upperfstype=xfs").unwrap();
        prepare(&mut r, &params).unwrap();
        assert!(r
            .calls
            .contains(&"mount /dev/vdc /run/nook/rw xfs []".to_owned()));
    }

    #[test]
    fn auto_upper_takes_vdb_when_the_guest_has_it() {
        let mut r = Recorder {
            existing: vec!["/dev/vdb".into()],
            ..Default::default()
        };
        prepare(&mut r, &BootParams::default()).unwrap();
        assert!(r
            .calls
            .contains(&"mount /dev/vdb /run/nook/rw ext4 []".to_owned()));
        // An explicit tmpfs wins over a present disk.
        let mut r = Recorder {
            existing: vec!["/dev/vdb".into()],
            ..Default::default()
        };
        prepare(&mut r, &BootParams::parse("nook.upper=tmpfs").unwrap()).unwrap();
        assert!(r
            .calls
            .contains(&"mount tmpfs /run/nook/rw tmpfs [] mode=0755".to_owned()));
    }

    #[test]
    fn a_missing_image_disk_is_a_clear_error() {
        let mut r = Recorder {
            fail: vec![LOWER.into()],
            ..Default::default()
        };
        let err = prepare(&mut r, &BootParams::default()).unwrap_err();
        assert!(err.to_string().contains("/dev/vda (erofs)"), "{err}");
    }

    #[test]
    fn switch_root_moves_then_chroots() {
        let mut r = Recorder::default();
        switch_root(&mut r).unwrap();
        assert_eq!(
            r.calls,
            [
                "chdir /run/nook/root",
                "mount . /  [move]",
                "chroot .",
                "chdir /",
            ]
        );
    }

    #[test]
    fn container_files_are_bind_mounted_from_the_files_dir() {
        fn fake_hostname(name: &str) -> io::Result<()> {
            assert_eq!(name, "box");
            Ok(())
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let mut setup = GuestSetup {
            ops: Recorder::default(),
            files_dir: dir.path().to_owned(),
            targets_record: disk.path().join(RECORD_NAME),
            set_hostname: fake_hostname,
            read_only: true,
        };
        let spec = StartSpec {
            hostname: "box".into(),
            resolv_conf: "nameserver 10.0.2.3\n".into(),
            ..Default::default()
        };
        setup.apply(&spec).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("hosts")).unwrap(),
            hosts_file("box")
        );
        assert!(hosts_file("box").contains("127.0.1.1\tbox\n"));
        assert_eq!(
            fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "box\n"
        );
        let d = dir.path().display();
        let binds: Vec<String> = setup
            .ops
            .calls
            .iter()
            .filter(|c| c.starts_with("mount"))
            .cloned()
            .collect();
        assert_eq!(
            binds,
            [
                format!("mount {d}/hostname /etc/hostname  [bind]"),
                format!("mount {d}/hosts /etc/hosts  [bind]"),
                format!("mount {d}/resolv.conf /etc/resolv.conf  [bind]"),
                "mount  /  [ro,bind,remount]".to_owned(),
            ]
        );
        assert!(setup.ops.calls.contains(&"touch /etc/hosts".to_owned()));
    }

    /// The host's /etc/hosts (the container's address and names on its network) replaces the
    /// loopback-only file, through the same bind mount: it never lands in the writable layer.
    #[test]
    fn the_hosts_file_from_the_host_is_bind_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let record = disk.path().join(RECORD_NAME);
        let mut setup = GuestSetup {
            ops: Recorder {
                existing: vec!["/etc".into()],
                ..Default::default()
            },
            files_dir: dir.path().to_owned(),
            targets_record: record.clone(),
            set_hostname: no_hostname,
            read_only: false,
        };
        let hosts = "127.0.0.1\tlocalhost\n10.0.2.100\tbox\n";
        let spec = StartSpec {
            hostname: "box".into(),
            hosts: hosts.into(),
            ..Default::default()
        };
        setup.apply(&spec).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("hosts")).unwrap(), hosts);
        let d = dir.path().display();
        let mounts: Vec<&String> = setup
            .ops
            .calls
            .iter()
            .filter(|c| c.starts_with("mount"))
            .collect();
        assert_eq!(
            mounts,
            [
                &format!("mount {d}/hostname /etc/hostname  [bind]"),
                &format!("mount {d}/hosts /etc/hosts  [bind]"),
            ]
        );
        // The empty file made to mount onto is the agent's, and recorded as such.
        assert_eq!(
            fs::read_to_string(&record).unwrap(),
            "file etc/hostname\nfile etc/hosts\n"
        );
    }

    fn no_hostname(_: &str) -> io::Result<()> {
        Ok(())
    }

    /// One `apply` with the targets in `existing` already there; the record afterwards.
    fn setup_with(existing: &[&str], files: &Path, record: &Path) -> String {
        let mut setup = GuestSetup {
            ops: Recorder {
                existing: existing.iter().map(PathBuf::from).collect(),
                ..Default::default()
            },
            files_dir: files.to_owned(),
            targets_record: record.to_owned(),
            set_hostname: no_hostname,
            read_only: false,
        };
        let spec = StartSpec {
            hostname: "box".into(),
            resolv_conf: "nameserver 10.0.2.3\n".into(),
            ..Default::default()
        };
        setup.apply(&spec).unwrap();
        fs::read_to_string(record).unwrap_or_default()
    }

    #[test]
    fn only_targets_the_agent_created_are_recorded() {
        let files = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let record = disk.path().join(RECORD_NAME);
        // The image has /etc and /etc/resolv.conf.
        let got = setup_with(&["/etc", "/etc/resolv.conf"], files.path(), &record);
        assert_eq!(got, "file etc/hostname\nfile etc/hosts\n");

        // An image with every target: nothing is the agent's, and no record is written.
        let disk = tempfile::tempdir().unwrap();
        let record = disk.path().join(RECORD_NAME);
        let all = ["/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];
        assert_eq!(setup_with(&all, files.path(), &record), "");
        assert!(!record.exists());

        // An image without /etc: the directory the agent made is recorded too.
        let disk = tempfile::tempdir().unwrap();
        let record = disk.path().join(RECORD_NAME);
        assert_eq!(
            setup_with(&[], files.path(), &record),
            "dir etc\nfile etc/hostname\nfile etc/hosts\nfile etc/resolv.conf\n"
        );
    }

    /// A restarted container: the same disk, where the targets made on the first start now
    /// exist in the upper directory. The record still names them, and the layer streamed from
    /// that upper leaves them out while keeping the container's own files.
    #[test]
    fn the_record_survives_a_second_setup_on_the_same_disk() {
        let files = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let upper = disk.path().join("upper");
        fs::create_dir(&upper).unwrap();
        let record = record_path(&upper);
        let first = setup_with(&["/etc"], files.path(), &record);
        assert_eq!(
            first,
            "file etc/hostname\nfile etc/hosts\nfile etc/resolv.conf\n"
        );
        let all = ["/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];
        let second = setup_with(&all, files.path(), &record);
        assert_eq!(second, first);

        // The upper as overlayfs leaves it: /etc copied up for the new files, the empty
        // targets, and what the container wrote.
        fs::create_dir(upper.join("etc")).unwrap();
        for name in ["hosts", "hostname", "resolv.conf"] {
            fs::write(upper.join("etc").join(name), b"").unwrap();
        }
        fs::write(upper.join("etc/motd"), b"hi\n").unwrap();
        let mut tar_bytes = Vec::new();
        crate::layer::write_upper_tar(&upper, &mut tar_bytes).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths, ["etc", "etc/motd"]);
    }

    /// The container's mounts come after its /etc files and before the root turns read-only;
    /// read-only ones are mounted read-only; missing mount points are made and recorded.
    #[test]
    fn volumes_and_tmpfs_are_mounted_in_order_before_the_read_only_root() {
        let dir = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let record = disk.path().join(RECORD_NAME);
        let mut setup = GuestSetup {
            ops: Recorder {
                existing: vec!["/etc".into(), "/srv".into()],
                ..Default::default()
            },
            files_dir: dir.path().to_owned(),
            targets_record: record.clone(),
            set_hostname: no_hostname,
            read_only: true,
        };
        let spec = StartSpec {
            mounts: vec![
                GuestMount::Virtiofs {
                    tag: "nook0".into(),
                    target: "/srv/data".into(),
                    readonly: false,
                    file: false,
                },
                GuestMount::Virtiofs {
                    tag: "nook1".into(),
                    target: "/ro".into(),
                    readonly: true,
                    file: false,
                },
                GuestMount::Tmpfs {
                    target: "/scratch".into(),
                    size: Some(16 << 20),
                    mode: Some(0o700),
                    readonly: false,
                },
            ],
            ..Default::default()
        };
        setup.apply(&spec).unwrap();
        let mounts: Vec<&str> = setup
            .ops
            .calls
            .iter()
            .filter(|c| c.starts_with("mount") && !c.contains("/etc/"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            mounts,
            [
                "mount nook0 /srv/data virtiofs []",
                "mount nook1 /ro virtiofs [ro]",
                "mount tmpfs /scratch tmpfs [nosuid,nodev] mode=700,size=16777216",
                "mount  /  [ro,bind,remount]",
            ]
        );
        let targets = MountTargets::load(&record).unwrap();
        for made in ["srv/data", "ro", "scratch"] {
            assert_eq!(
                targets.kind_of(Path::new(made)),
                Some(TargetKind::Dir),
                "{made} not recorded"
            );
        }
        assert_eq!(
            targets.kind_of(Path::new("srv")),
            None,
            "/srv was the image's"
        );

        // A relative target is refused, nothing mounted.
        let spec = StartSpec {
            mounts: vec![GuestMount::Tmpfs {
                target: "scratch".into(),
                size: None,
                mode: None,
                readonly: false,
            }],
            ..Default::default()
        };
        assert!(setup.apply(&spec).unwrap_err().contains("not absolute"));
    }
    #[test]
    fn a_single_file_is_bound_from_its_share_mounted_out_of_the_containers_reach() {
        let dir = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let record = disk.path().join(RECORD_NAME);
        let files = dir.path().to_owned();
        let mut setup = GuestSetup {
            ops: Recorder {
                existing: vec!["/etc".into(), "/etc/app.conf".into()],
                ..Default::default()
            },
            files_dir: files.clone(),
            targets_record: record.clone(),
            set_hostname: no_hostname,
            read_only: false,
        };
        let spec = StartSpec {
            mounts: vec![
                GuestMount::Virtiofs {
                    tag: "nook0".into(),
                    target: "/etc/app.conf".into(),
                    readonly: true,
                    file: true,
                },
                GuestMount::Virtiofs {
                    tag: "nook1".into(),
                    target: "/srv/new/log.txt".into(),
                    readonly: false,
                    file: true,
                },
            ],
            ..Default::default()
        };
        setup.apply(&spec).unwrap();
        let calls: Vec<String> = setup
            .ops
            .calls
            .iter()
            // What /etc/hosts takes (its directory, its file and its bind) is not this test's.
            .filter(|c| !c.contains("hosts") && *c != "mkdir /etc")
            .map(|c| c.replace(&files.display().to_string(), "FILES"))
            .collect();
        assert_eq!(
            calls,
            [
                "mkdir FILES/share-nook0",
                "mount nook0 FILES/share-nook0 virtiofs [ro]",
                "file-in-root /etc/app.conf",
                "mount FILES/share-nook0/file /etc/app.conf  [bind]",
                "file-in-root /etc/app.conf",
                "mount FILES/share-nook0/file /etc/app.conf  [ro,bind,remount]",
                "mkdir FILES/share-nook1",
                "mount nook1 FILES/share-nook1 virtiofs []",
                "file-in-root /srv/new/log.txt",
                "mount FILES/share-nook1/file /srv/new/log.txt  [bind]",
            ]
        );
        let targets = MountTargets::load(&record).unwrap();
        assert_eq!(
            targets.kind_of(Path::new("etc/app.conf")),
            None,
            "the image's file"
        );
        assert_eq!(targets.kind_of(Path::new("srv")), Some(TargetKind::Dir));
        assert_eq!(targets.kind_of(Path::new("srv/new")), Some(TargetKind::Dir));
        assert_eq!(
            targets.kind_of(Path::new("srv/new/log.txt")),
            Some(TargetKind::File)
        );
    }
}
