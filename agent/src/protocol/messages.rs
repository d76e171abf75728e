//! The messages each side sends, and their body layouts.

use super::wire::{BodyReader, BodyWriter};
use super::DecodeError;
use crate::copy::CopyInfo;

/// A process to run in the guest: the final argv (the host has already combined the image's
/// Entrypoint and Cmd with the user's command), its environment and where and as whom it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessSpec {
    /// argv[0] is looked up in the process's own `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// `KEY=value` entries; the process gets exactly these (plus `HOME` when absent).
    pub env: Vec<String>,
    /// Working directory; created when missing, like docker does. Empty means `/`.
    pub cwd: String,
    /// The image's `User`: `name`, `uid`, `name:group` or `uid:gid`, resolved against the
    /// container's /etc/passwd and /etc/group. Empty means root.
    pub user: String,
    /// Run on a pseudo-terminal (stdout and stderr merged into stdout) instead of pipes.
    pub terminal: bool,
    /// Initial terminal size, used when `terminal` is set.
    pub rows: u16,
    pub cols: u16,
    /// Supplementary groups set besides those `user` resolves to (OCI's `additionalGids`).
    pub groups: Vec<u32>,
    /// setrlimit calls for this process alone, made after the container's
    /// ([`GuestLimits::rlimits`]), so they win for the resources they name.
    pub rlimits: Vec<Rlimit>,
}

/// The container's main process plus the container-wide settings applied before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartSpec {
    pub process: ProcessSpec,
    /// The container's hostname; empty keeps the guest's.
    pub hostname: String,
    /// Content for /etc/resolv.conf; empty keeps the image's file.
    pub resolv_conf: String,
    /// Content for /etc/hosts; empty gives the loopback names and the hostname.
    pub hosts: String,
    /// File systems mounted in the container's root before the process starts, in order.
    pub mounts: Vec<GuestMount>,
    /// Limits of the main process and of every process `Exec` starts later.
    pub limits: GuestLimits,
    /// Capabilities, no_new_privs and seccomp filters of the main process and every `Exec`.
    pub security: GuestSecurity,
    /// `--userns=keep-id`: the user added to the container's /etc/passwd and /etc/group
    /// (boxed: rarely there, and `Start` is the largest message already).
    pub keep_id: Option<Box<crate::user::KeepIdUser>>,
}

/// The process-level security options the agent applies in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestSecurity {
    /// The capabilities kept (bit n: capability n), in the bounding set of every process and
    /// the sets of a root one; none: every capability, nothing applied.
    pub caps: Option<u64>,
    /// Set no_new_privs before the process runs.
    pub no_new_privs: bool,
    /// Seccomp filters (classic BPF, 8 bytes an instruction, as `confine::program_to_bytes`
    /// writes them), installed in order.
    pub seccomp: Vec<Vec<u8>>,
}

/// The kernel's largest filter (`BPF_MAXINSNS`), in bytes.
const MAX_FILTER_BYTES: usize = 4096 * 8;

fn encode_security(s: &GuestSecurity, out: &mut BodyWriter) {
    out.bool(s.caps.is_some());
    out.u64(s.caps.unwrap_or(0));
    out.bool(s.no_new_privs);
    out.u32(u32::try_from(s.seccomp.len()).unwrap_or(u32::MAX));
    for p in &s.seccomp {
        out.bytes(p);
    }
}

fn decode_security(r: &mut BodyReader<'_>) -> Result<GuestSecurity, DecodeError> {
    let has_caps = r.bool("caps present")?;
    let caps = r.u64("caps")?;
    let no_new_privs = r.bool("no_new_privs")?;
    let n = r.u32("seccomp filter count")?;
    let mut seccomp = Vec::new();
    for _ in 0..n {
        // Each takes at least its length: a hostile count runs out of body first.
        let p = r.bytes("seccomp filter")?;
        if p.is_empty() || p.len() % 8 != 0 || p.len() > MAX_FILTER_BYTES {
            return Err(DecodeError::InvalidValue {
                field: "seccomp filter",
                value: p.len() as u64,
            });
        }
        seccomp.push(p.to_vec());
    }
    Ok(GuestSecurity {
        caps: has_caps.then_some(caps),
        no_new_privs,
        seccomp,
    })
}

/// The limits the agent applies inside the guest (`--pids-limit`, `--ulimit`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestLimits {
    /// `pids.max` of the cgroup the container's processes run in; none: no limit.
    pub pids_max: Option<u64>,
    /// setrlimit calls made before each process runs, in order.
    pub rlimits: Vec<Rlimit>,
}

/// One setrlimit: `resource` is Linux's `RLIMIT_*` number; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Linux's number of resources (`RLIM_NLIMITS`); higher numbers are refused.
const RLIMIT_COUNT: u32 = 16;

fn encode_limits(limits: &GuestLimits, out: &mut BodyWriter) {
    out.bool(limits.pids_max.is_some());
    out.u64(limits.pids_max.unwrap_or(0));
    encode_rlimits(&limits.rlimits, out);
}

fn encode_rlimits(rlimits: &[Rlimit], out: &mut BodyWriter) {
    out.u32(u32::try_from(rlimits.len()).unwrap_or(u32::MAX));
    for r in rlimits {
        out.u32(r.resource);
        out.u64(r.soft);
        out.u64(r.hard);
    }
}

fn decode_limits(r: &mut BodyReader<'_>) -> Result<GuestLimits, DecodeError> {
    let has_pids = r.bool("pids limit present")?;
    let pids = r.u64("pids limit")?;
    if has_pids && pids == 0 {
        return Err(DecodeError::InvalidValue {
            field: "pids limit",
            value: 0,
        });
    }
    let rlimits = decode_rlimits(r)?;
    Ok(GuestLimits {
        pids_max: has_pids.then_some(pids),
        rlimits,
    })
}

fn decode_rlimits(r: &mut BodyReader<'_>) -> Result<Vec<Rlimit>, DecodeError> {
    let n = r.u32("rlimit count")?;
    let mut rlimits = Vec::new();
    for _ in 0..n {
        // 20 bytes each: a hostile count runs out of body first.
        let resource = r.u32("rlimit resource")?;
        if resource >= RLIMIT_COUNT {
            return Err(DecodeError::InvalidValue {
                field: "rlimit resource",
                value: u64::from(resource),
            });
        }
        let soft = r.u64("rlimit soft")?;
        let hard = r.u64("rlimit hard")?;
        if soft > hard {
            return Err(DecodeError::InvalidValue {
                field: "rlimit soft",
                value: soft,
            });
        }
        rlimits.push(Rlimit {
            resource,
            soft,
            hard,
        });
    }
    Ok(rlimits)
}

/// A file system the agent mounts at `target` inside the container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMount {
    /// A host directory shared by the VMM's virtio-fs device called `tag`; with `file`, a
    /// single host file: the share is a directory that holds it alone, as [`SHARED_FILE`], and
    /// that file is what the agent binds at `target`.
    Virtiofs {
        tag: String,
        target: String,
        readonly: bool,
        file: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        target: String,
        /// In bytes; none: the kernel's default (half the guest's RAM).
        size: Option<u64>,
        /// Permission bits of its root; none: 1777.
        mode: Option<u32>,
        readonly: bool,
    },
}

impl GuestMount {
    /// The absolute path inside the container.
    pub fn target(&self) -> &str {
        match self {
            GuestMount::Virtiofs { target, .. } | GuestMount::Tmpfs { target, .. } => target,
        }
    }
}

/// The name of the one file in the share of a single-file bind mount.
pub const SHARED_FILE: &str = "file";

const MOUNT_VIRTIOFS: u8 = 1;
const MOUNT_TMPFS: u8 = 2;
const MOUNT_VIRTIOFS_FILE: u8 = 3;

fn encode_mounts(mounts: &[GuestMount], out: &mut BodyWriter) {
    out.u32(u32::try_from(mounts.len()).unwrap_or(u32::MAX));
    for m in mounts {
        match m {
            GuestMount::Virtiofs {
                tag,
                target,
                readonly,
                file,
            } => {
                out.u8(if *file {
                    MOUNT_VIRTIOFS_FILE
                } else {
                    MOUNT_VIRTIOFS
                });
                out.str(tag);
                out.str(target);
                out.bool(*readonly);
            }
            GuestMount::Tmpfs {
                target,
                size,
                mode,
                readonly,
            } => {
                out.u8(MOUNT_TMPFS);
                out.str(target);
                out.bool(size.is_some());
                out.u64(size.unwrap_or(0));
                out.bool(mode.is_some());
                out.u32(mode.unwrap_or(0));
                out.bool(*readonly);
            }
        }
    }
}

fn decode_mounts(r: &mut BodyReader<'_>) -> Result<Vec<GuestMount>, DecodeError> {
    let n = r.u32("mount count")?;
    let mut mounts = Vec::new();
    for _ in 0..n {
        // Each mount takes at least a kind byte and a length: a hostile count runs out of body
        // long before it could make this allocate much.
        let mount = match r.u8("mount kind")? {
            kind @ (MOUNT_VIRTIOFS | MOUNT_VIRTIOFS_FILE) => GuestMount::Virtiofs {
                tag: r.str("mount tag")?,
                target: r.str("mount target")?,
                readonly: r.bool("mount readonly")?,
                file: kind == MOUNT_VIRTIOFS_FILE,
            },
            MOUNT_TMPFS => {
                let target = r.str("mount target")?;
                let has_size = r.bool("tmpfs size present")?;
                let size = r.u64("tmpfs size")?;
                let has_mode = r.bool("tmpfs mode present")?;
                let mode = r.u32("tmpfs mode")?;
                if mode > 0o7777 {
                    return Err(DecodeError::InvalidValue {
                        field: "tmpfs mode",
                        value: u64::from(mode),
                    });
                }
                GuestMount::Tmpfs {
                    target,
                    size: has_size.then_some(size),
                    mode: has_mode.then_some(mode),
                    readonly: r.bool("mount readonly")?,
                }
            }
            other => {
                return Err(DecodeError::InvalidValue {
                    field: "mount kind",
                    value: u64::from(other),
                })
            }
        };
        mounts.push(mount);
    }
    Ok(mounts)
}

/// Guest boot timestamps, for the bench. Offsets are nanoseconds of `CLOCK_BOOTTIME`, which
/// starts at zero when the guest kernel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootTimes {
    /// Wall-clock time (`CLOCK_REALTIME`, ns since the epoch) at which the kernel started, as the
    /// guest sees it: the difference of the realtime and boottime clocks. Only as good as the
    /// guest's clock source.
    pub kernel_start_realtime_ns: u64,
    /// When PID 1 began running.
    pub agent_start_ns: u64,
    /// When the container's root filesystem was mounted and entered.
    pub root_ready_ns: u64,
}

/// How a process ended, docker style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code: the process's own, 128+signal after a signal death, 127 when the command
    /// was not found, 126 when it could not be executed.
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
}

/// What an error frame is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A frame could not be decoded; it was dropped.
    Protocol,
    /// A frame named a stream that has no process (or the wrong kind of stream).
    UnknownStream,
    /// The process could not be started.
    Spawn,
    /// The request conflicts with the current state (a second start, a stream id in use).
    InvalidState,
    /// Writing the upper layer failed.
    Layer,
    /// Anything else in the agent.
    Internal,
    /// A copy (`CopyOut`, `CopyIn`) failed; the stream ends with it.
    Copy,
    /// An error kind this side does not know (a newer peer).
    Other(u16),
}

impl ErrorKind {
    fn to_wire(self) -> u16 {
        match self {
            ErrorKind::Protocol => 1,
            ErrorKind::UnknownStream => 2,
            ErrorKind::Spawn => 3,
            ErrorKind::InvalidState => 4,
            ErrorKind::Layer => 5,
            ErrorKind::Internal => 6,
            ErrorKind::Copy => 7,
            ErrorKind::Other(v) => v,
        }
    }

    fn from_wire(v: u16) -> Self {
        match v {
            1 => ErrorKind::Protocol,
            2 => ErrorKind::UnknownStream,
            3 => ErrorKind::Spawn,
            4 => ErrorKind::InvalidState,
            5 => ErrorKind::Layer,
            6 => ErrorKind::Internal,
            7 => ErrorKind::Copy,
            other => ErrorKind::Other(other),
        }
    }
}

/// A message of one direction ([`HostMessage`] or [`GuestMessage`]); sealed.
pub trait Message: Sized + sealed::Body {}

impl Message for HostMessage {}
impl Message for GuestMessage {}

pub(crate) mod sealed {
    use super::{BodyWriter, DecodeError};

    /// The body codec, kept out of the public API so the wire helpers stay private.
    pub trait Body: Sized {
        /// The kind byte of this message's frame.
        fn kind(&self) -> u8;
        /// Appends the body.
        fn encode_body(&self, out: &mut BodyWriter);
        /// Decodes a body of the given kind. Unknown kinds are errors.
        fn decode_body(kind: u8, body: &[u8]) -> Result<Self, DecodeError>;
    }
}

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMessage {
    /// Start the container's main process on this stream. Its exit ends the guest.
    Start(StartSpec),
    /// Run another process in the running guest on this (new) stream.
    Exec(ProcessSpec),
    /// Bytes for the stream's stdin (or terminal input).
    Stdin(Vec<u8>),
    /// Close the stream's stdin once all earlier data is written.
    StdinClose,
    /// Send this signal to the stream's process.
    Signal(i32),
    /// Resize the stream's terminal.
    Resize { rows: u16, cols: u16 },
    /// Stream the writable layer's changes as an OCI layer tar on this stream.
    StreamUpper,
    /// Stop everything and power the guest off.
    Shutdown,
    /// `nook cp CONTAINER:SRC`: send the entry at `path` of the container's root (resolved
    /// inside it, a symlink at `path` followed only with `follow`) as a tar on this stream:
    /// rebased (the source as `.`, for a host that places it) or named as docker names it.
    CopyOut {
        path: String,
        follow: bool,
        rebased: bool,
    },
    /// `nook cp ... CONTAINER:DST`: the `CopyData` that follow on this stream, up to
    /// `CopyEnd`, are a tar to write at `path` of the container's root: the rebased tree of
    /// `source` placed by docker's rules, or (no source) a user's stream into the directory
    /// `path`. With `archive`, the tar's owners are kept.
    CopyIn {
        path: String,
        archive: bool,
        source: Option<CopyInfo>,
    },
    /// A piece of a `CopyIn` tar.
    CopyData(Vec<u8>),
    /// The `CopyIn` tar is complete.
    CopyEnd,
    /// Mount these file systems in the container's root now (a copy-only boot, which starts
    /// no process, reaches the container's volumes this way).
    Mount(Vec<GuestMount>),
    /// `nook checkpoint create` (stream 0): answer `Paused` and send nothing more until
    /// `Resume`, so the channel stands between two frames when the VM is snapshotted.
    Checkpoint,
    /// The first frame after a checkpoint is restored (stream 0): reseed the kernel's random
    /// pool with `seed` (no two restores of one checkpoint share it), set the clock to
    /// `realtime_ns`, then answer [`crate::protocol::SYNC`] and `Ready` as at boot.
    Resume { seed: Vec<u8>, realtime_ns: u64 },
    /// `nook stats`: answer with one `Usage` on this stream (a fresh one), read from the
    /// guest's counters at once; the container's streams flow on meanwhile.
    Stats,
    /// `nook top`: answer with one `Processes` on this stream (a fresh one), the container's
    /// processes read from the guest's /proc at once.
    Top,
}

const K_START: u8 = 0x01;
const K_EXEC: u8 = 0x02;
const K_STDIN: u8 = 0x03;
const K_STDIN_CLOSE: u8 = 0x04;
const K_SIGNAL: u8 = 0x05;
const K_RESIZE: u8 = 0x06;
const K_STREAM_UPPER: u8 = 0x07;
const K_SHUTDOWN: u8 = 0x08;
const K_COPY_OUT: u8 = 0x09;
const K_COPY_IN: u8 = 0x0a;
const K_COPY_DATA_IN: u8 = 0x0b;
const K_COPY_END_IN: u8 = 0x0c;
const K_MOUNT: u8 = 0x0d;
const K_STATS: u8 = 0x0e;
const K_TOP: u8 = 0x0f;
const K_CHECKPOINT: u8 = 0x20;
const K_RESUME: u8 = 0x21;

const K_READY: u8 = 0x81;
const K_STARTED: u8 = 0x82;
const K_STDOUT: u8 = 0x83;
const K_STDERR: u8 = 0x84;
const K_EXIT: u8 = 0x85;
const K_ERROR: u8 = 0x86;
const K_LAYER_DATA: u8 = 0x87;
const K_LAYER_END: u8 = 0x88;
const K_OOM: u8 = 0x8f;
const K_COPY_SOURCE: u8 = 0x89;
const K_COPY_DATA: u8 = 0x8a;
const K_COPY_END: u8 = 0x8b;
const K_USAGE: u8 = 0x8c;
const K_PROCESSES: u8 = 0x8d;
const K_PAUSED: u8 = 0xa0;

fn encode_info(info: &CopyInfo, out: &mut BodyWriter) {
    out.bool(info.dir);
    out.str(&info.name);
    out.bool(info.contents_only);
}

/// A source's name becomes one path component on the other side: one normal name, or `.`.
fn decode_info(r: &mut BodyReader<'_>) -> Result<CopyInfo, DecodeError> {
    let dir = r.bool("copy source dir")?;
    let name = r.str("copy source name")?;
    if name.is_empty() || name.contains('/') || name == ".." {
        return Err(DecodeError::InvalidValue {
            field: "copy source name",
            value: name.len() as u64,
        });
    }
    Ok(CopyInfo {
        dir,
        name,
        contents_only: r.bool("copy contents only")?,
    })
}

fn encode_process(p: &ProcessSpec, out: &mut BodyWriter) {
    out.str_list(&p.argv);
    out.str_list(&p.env);
    out.str(&p.cwd);
    out.str(&p.user);
    out.bool(p.terminal);
    out.u16(p.rows);
    out.u16(p.cols);
    out.u32(u32::try_from(p.groups.len()).unwrap_or(u32::MAX));
    for g in &p.groups {
        out.u32(*g);
    }
    encode_rlimits(&p.rlimits, out);
}

fn decode_process(r: &mut BodyReader<'_>) -> Result<ProcessSpec, DecodeError> {
    let argv = r.str_list("argv")?;
    if argv.is_empty() {
        return Err(DecodeError::InvalidValue {
            field: "argv",
            value: 0,
        });
    }
    Ok(ProcessSpec {
        argv,
        env: r.str_list("env")?,
        cwd: r.str("cwd")?,
        user: r.str("user")?,
        terminal: r.bool("terminal")?,
        rows: r.u16("rows")?,
        cols: r.u16("cols")?,
        groups: {
            let n = r.u32("group count")?;
            // 4 bytes each: a hostile count runs out of body first.
            let mut groups = Vec::new();
            for _ in 0..n {
                groups.push(r.u32("group")?);
            }
            groups
        },
        rlimits: decode_rlimits(r)?,
    })
}

impl sealed::Body for HostMessage {
    fn kind(&self) -> u8 {
        match self {
            HostMessage::Start(_) => K_START,
            HostMessage::Exec(_) => K_EXEC,
            HostMessage::Stdin(_) => K_STDIN,
            HostMessage::StdinClose => K_STDIN_CLOSE,
            HostMessage::Signal(_) => K_SIGNAL,
            HostMessage::Resize { .. } => K_RESIZE,
            HostMessage::StreamUpper => K_STREAM_UPPER,
            HostMessage::Shutdown => K_SHUTDOWN,
            HostMessage::CopyOut { .. } => K_COPY_OUT,
            HostMessage::CopyIn { .. } => K_COPY_IN,
            HostMessage::CopyData(_) => K_COPY_DATA_IN,
            HostMessage::CopyEnd => K_COPY_END_IN,
            HostMessage::Mount(_) => K_MOUNT,
            HostMessage::Checkpoint => K_CHECKPOINT,
            HostMessage::Resume { .. } => K_RESUME,
            HostMessage::Stats => K_STATS,
            HostMessage::Top => K_TOP,
        }
    }

    fn encode_body(&self, out: &mut BodyWriter) {
        match self {
            HostMessage::Start(s) => {
                encode_process(&s.process, out);
                out.str(&s.hostname);
                out.str(&s.resolv_conf);
                out.str(&s.hosts);
                encode_mounts(&s.mounts, out);
                encode_limits(&s.limits, out);
                encode_security(&s.security, out);
                out.bool(s.keep_id.is_some());
                if let Some(user) = &s.keep_id {
                    out.str(&user.name);
                    out.u32(user.uid);
                    out.u32(user.gid);
                    out.str(&user.home);
                }
            }
            HostMessage::Exec(p) => encode_process(p, out),
            HostMessage::Stdin(data) => out.raw(data),
            HostMessage::Signal(sig) => out.i32(*sig),
            HostMessage::Resize { rows, cols } => {
                out.u16(*rows);
                out.u16(*cols);
            }
            HostMessage::CopyOut {
                path,
                follow,
                rebased,
            } => {
                out.str(path);
                out.bool(*follow);
                out.bool(*rebased);
            }
            HostMessage::CopyIn {
                path,
                archive,
                source,
            } => {
                out.str(path);
                out.bool(*archive);
                out.bool(source.is_some());
                if let Some(info) = source {
                    encode_info(info, out);
                }
            }
            HostMessage::CopyData(data) => out.raw(data),
            HostMessage::Mount(mounts) => encode_mounts(mounts, out),
            HostMessage::Resume { seed, realtime_ns } => {
                out.u64(*realtime_ns);
                out.raw(seed);
            }
            HostMessage::StdinClose
            | HostMessage::StreamUpper
            | HostMessage::Shutdown
            | HostMessage::CopyEnd
            | HostMessage::Checkpoint
            | HostMessage::Stats
            | HostMessage::Top => {}
        }
    }

    fn decode_body(kind: u8, body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = BodyReader::new(body);
        let msg = match kind {
            K_START => HostMessage::Start(StartSpec {
                process: decode_process(&mut r)?,
                hostname: r.str("hostname")?,
                resolv_conf: r.str("resolv_conf")?,
                hosts: r.str("hosts")?,
                mounts: decode_mounts(&mut r)?,
                limits: decode_limits(&mut r)?,
                security: decode_security(&mut r)?,
                keep_id: if r.bool("keep_id")? {
                    Some(Box::new(crate::user::KeepIdUser {
                        name: r.str("keep_id.name")?,
                        uid: r.u32("keep_id.uid")?,
                        gid: r.u32("keep_id.gid")?,
                        home: r.str("keep_id.home")?,
                    }))
                } else {
                    None
                },
            }),
            K_EXEC => HostMessage::Exec(decode_process(&mut r)?),
            K_STDIN => HostMessage::Stdin(r.rest().to_vec()),
            K_STDIN_CLOSE => HostMessage::StdinClose,
            K_SIGNAL => {
                let sig = r.i32("signal")?;
                if !(1..=64).contains(&sig) {
                    return Err(DecodeError::InvalidValue {
                        field: "signal",
                        value: u64::from(sig as u32),
                    });
                }
                HostMessage::Signal(sig)
            }
            K_RESIZE => HostMessage::Resize {
                rows: r.u16("rows")?,
                cols: r.u16("cols")?,
            },
            K_STREAM_UPPER => HostMessage::StreamUpper,
            K_SHUTDOWN => HostMessage::Shutdown,
            K_COPY_OUT => HostMessage::CopyOut {
                path: r.str("copy path")?,
                follow: r.bool("copy follow")?,
                rebased: r.bool("copy rebased")?,
            },
            K_COPY_IN => {
                let path = r.str("copy path")?;
                let archive = r.bool("copy archive")?;
                let source = if r.bool("copy source present")? {
                    Some(decode_info(&mut r)?)
                } else {
                    None
                };
                HostMessage::CopyIn {
                    path,
                    archive,
                    source,
                }
            }
            K_COPY_DATA_IN => HostMessage::CopyData(r.rest().to_vec()),
            K_COPY_END_IN => HostMessage::CopyEnd,
            K_MOUNT => HostMessage::Mount(decode_mounts(&mut r)?),
            K_CHECKPOINT => HostMessage::Checkpoint,
            K_STATS => HostMessage::Stats,
            K_TOP => HostMessage::Top,
            K_RESUME => HostMessage::Resume {
                realtime_ns: r.u64("realtime_ns")?,
                seed: r.rest().to_vec(),
            },
            other => return Err(DecodeError::UnknownKind { kind: other }),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMessage {
    /// The agent is up and the container root is ready (stream 0). Sent once, first.
    Ready { version: u32, boot: BootTimes },
    /// The stream's process was executed; `exec_ns` is its `CLOCK_BOOTTIME` time.
    Started { pid: u32, exec_ns: u64 },
    /// Output of the stream's process (the terminal's output for a terminal process).
    Stdout(Vec<u8>),
    /// Error output of the stream's process.
    Stderr(Vec<u8>),
    /// The stream's process ended; its output was sent before this frame.
    Exit(ExitStatus),
    /// Something went wrong with the stream (0: the connection as a whole).
    Error { kind: ErrorKind, message: String },
    /// A piece of the upper-layer tar.
    LayerData(Vec<u8>),
    /// The upper-layer tar is complete: `bytes` were sent in all.
    LayerEnd { bytes: u64 },
    /// The guest kernel's OOM killer ended `kills` processes while the stream's (main) process
    /// ran; sent right before its `Exit` (docker's `OOMKilled`).
    Oom { kills: u64 },
    /// What the source of a `CopyOut` is, before its tar.
    CopySource(CopyInfo),
    /// A piece of a `CopyOut` tar.
    CopyData(Vec<u8>),
    /// A copy is complete: for `CopyOut`, `bytes` of tar were sent; for `CopyIn`, `bytes` of
    /// file data were written.
    CopyEnd { bytes: u64 },
    /// Answer to `Checkpoint` (stream 0): the agent sends nothing more until `Resume`. `main`
    /// is the main process's stream (0: none), `next_stream` one past the highest stream in
    /// use, so that a host resuming the guest picks no stream a process still has.
    Paused { main: u32, next_stream: u32 },
    /// Answer to `Stats`: what the guest consumes now.
    Usage(GuestUsage),
    /// Answer to `Top`: the container's processes now.
    Processes(GuestProcesses),
}

/// The container's processes, as `nook top` shows them: every process of the guest but the
/// agent's and the kernel's threads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestProcesses {
    /// `CLOCK_BOOTTIME` when read, nanoseconds: the clock of the processes' start times.
    pub clock_ns: u64,
    /// The guest's memory (`MemTotal`), bytes: what `%MEM` is a share of.
    pub memory_total: u64,
    pub processes: Vec<GuestProcess>,
    /// Processes left out because the answer would not fit in one frame.
    pub omitted: u32,
}

/// One process of [`GuestProcesses`], from its /proc/PID files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestProcess {
    /// The process and its parent as the container sees them (its PID namespace: the
    /// entrypoint is 1); a parent outside the container is 0.
    pub pid: u32,
    pub ppid: u32,
    /// Effective user, and its name in the container's /etc/passwd (empty: none there).
    pub uid: u32,
    pub user: String,
    /// The controlling terminal (`pts/0`), or `?`.
    pub tty: String,
    /// The state letter of /proc/PID/stat (`R`, `S`, `Z`...).
    pub state: String,
    /// `CLOCK_BOOTTIME` at its start, nanoseconds.
    pub start_ns: u64,
    /// CPU time it used (user and system), nanoseconds.
    pub cpu_ns: u64,
    /// Virtual and resident memory, bytes.
    pub vsz: u64,
    pub rss: u64,
    /// Its command line, arguments separated by spaces (`[comm]` when it has none).
    pub args: String,
    /// Its command name (/proc/PID/comm).
    pub comm: String,
}

fn encode_processes(p: &GuestProcesses, out: &mut BodyWriter) {
    out.u64(p.clock_ns);
    out.u64(p.memory_total);
    out.u32(p.omitted);
    out.u32(u32::try_from(p.processes.len()).unwrap_or(u32::MAX));
    for q in &p.processes {
        encode_process_entry(q, out);
    }
}

impl GuestProcess {
    /// The bytes this entry takes in a `Processes` body.
    pub fn wire_len(&self) -> usize {
        3 * 4
            + 4 * 8
            + [&self.user, &self.tty, &self.state, &self.args, &self.comm]
                .iter()
                .map(|s| 4 + s.len())
                .sum::<usize>()
    }
}

fn encode_process_entry(q: &GuestProcess, out: &mut BodyWriter) {
    out.u32(q.pid);
    out.u32(q.ppid);
    out.u32(q.uid);
    out.str(&q.user);
    out.str(&q.tty);
    out.str(&q.state);
    out.u64(q.start_ns);
    out.u64(q.cpu_ns);
    out.u64(q.vsz);
    out.u64(q.rss);
    out.str(&q.args);
    out.str(&q.comm);
}

fn decode_processes(r: &mut BodyReader<'_>) -> Result<GuestProcesses, DecodeError> {
    let clock_ns = r.u64("clock_ns")?;
    let memory_total = r.u64("memory_total")?;
    let omitted = r.u32("omitted")?;
    let n = r.u32("process count")?;
    // Over 50 bytes each: a hostile count runs out of body first.
    let mut processes = Vec::new();
    for _ in 0..n {
        processes.push(GuestProcess {
            pid: r.u32("pid")?,
            ppid: r.u32("ppid")?,
            uid: r.u32("uid")?,
            user: r.str("user")?,
            tty: r.str("tty")?,
            state: r.str("state")?,
            start_ns: r.u64("start_ns")?,
            cpu_ns: r.u64("cpu_ns")?,
            vsz: r.u64("vsz")?,
            rss: r.u64("rss")?,
            args: r.str("args")?,
            comm: r.str("comm")?,
        });
    }
    Ok(GuestProcesses {
        clock_ns,
        memory_total,
        processes,
        omitted,
    })
}

/// The guest's counters, as `nook stats` shows them: the guest is the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestUsage {
    /// `CLOCK_BOOTTIME` when read, nanoseconds: the clock the CPU time is measured against.
    pub clock_ns: u64,
    /// CPU time the guest spent not idle (user, nice, system, irq, softirq: not idle, iowait
    /// or steal) since it booted, summed over its vCPUs, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use: `MemTotal - MemAvailable` of /proc/meminfo, bytes.
    pub memory: u64,
    /// The guest's memory (`MemTotal`), bytes.
    pub memory_total: u64,
    /// Tasks (threads) of the container's processes: every one but the agent's and the
    /// kernel's.
    pub pids: u64,
    /// Bytes read from and written to the guest's disks (/proc/diskstats, whole disks).
    pub block_read: u64,
    pub block_write: u64,
    /// Bytes received and sent on the guest's network interfaces, loopback aside.
    pub net_rx: u64,
    pub net_tx: u64,
}

impl sealed::Body for GuestMessage {
    fn kind(&self) -> u8 {
        match self {
            GuestMessage::Ready { .. } => K_READY,
            GuestMessage::Started { .. } => K_STARTED,
            GuestMessage::Stdout(_) => K_STDOUT,
            GuestMessage::Stderr(_) => K_STDERR,
            GuestMessage::Exit(_) => K_EXIT,
            GuestMessage::Error { .. } => K_ERROR,
            GuestMessage::LayerData(_) => K_LAYER_DATA,
            GuestMessage::LayerEnd { .. } => K_LAYER_END,
            GuestMessage::Oom { .. } => K_OOM,
            GuestMessage::CopySource(_) => K_COPY_SOURCE,
            GuestMessage::CopyData(_) => K_COPY_DATA,
            GuestMessage::CopyEnd { .. } => K_COPY_END,
            GuestMessage::Paused { .. } => K_PAUSED,
            GuestMessage::Usage(_) => K_USAGE,
            GuestMessage::Processes(_) => K_PROCESSES,
        }
    }

    fn encode_body(&self, out: &mut BodyWriter) {
        match self {
            GuestMessage::Ready { version, boot } => {
                out.u32(*version);
                out.u64(boot.kernel_start_realtime_ns);
                out.u64(boot.agent_start_ns);
                out.u64(boot.root_ready_ns);
            }
            GuestMessage::Started { pid, exec_ns } => {
                out.u32(*pid);
                out.u64(*exec_ns);
            }
            GuestMessage::Stdout(d)
            | GuestMessage::Stderr(d)
            | GuestMessage::LayerData(d)
            | GuestMessage::CopyData(d) => out.raw(d),
            GuestMessage::Exit(status) => {
                out.i32(status.code);
                out.i32(status.signal.unwrap_or(0));
            }
            GuestMessage::Error { kind, message } => {
                out.u16(kind.to_wire());
                out.str(message);
            }
            GuestMessage::Oom { kills } => out.u64(*kills),
            GuestMessage::LayerEnd { bytes } | GuestMessage::CopyEnd { bytes } => out.u64(*bytes),
            GuestMessage::CopySource(info) => encode_info(info, out),
            GuestMessage::Paused { main, next_stream } => {
                out.u32(*main);
                out.u32(*next_stream);
            }
            GuestMessage::Usage(u) => {
                for v in [
                    u.clock_ns,
                    u.cpu_ns,
                    u.memory,
                    u.memory_total,
                    u.pids,
                    u.block_read,
                    u.block_write,
                    u.net_rx,
                    u.net_tx,
                ] {
                    out.u64(v);
                }
            }
            GuestMessage::Processes(p) => encode_processes(p, out),
        }
    }

    fn decode_body(kind: u8, body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = BodyReader::new(body);
        let msg = match kind {
            K_READY => GuestMessage::Ready {
                version: r.u32("version")?,
                boot: BootTimes {
                    kernel_start_realtime_ns: r.u64("kernel_start_realtime_ns")?,
                    agent_start_ns: r.u64("agent_start_ns")?,
                    root_ready_ns: r.u64("root_ready_ns")?,
                },
            },
            K_STARTED => GuestMessage::Started {
                pid: r.u32("pid")?,
                exec_ns: r.u64("exec_ns")?,
            },
            K_STDOUT => GuestMessage::Stdout(r.rest().to_vec()),
            K_STDERR => GuestMessage::Stderr(r.rest().to_vec()),
            K_EXIT => {
                let code = r.i32("code")?;
                let signal = r.i32("signal")?;
                GuestMessage::Exit(ExitStatus {
                    code,
                    signal: (signal != 0).then_some(signal),
                })
            }
            K_ERROR => GuestMessage::Error {
                kind: ErrorKind::from_wire(r.u16("error kind")?),
                message: r.str("message")?,
            },
            K_LAYER_DATA => GuestMessage::LayerData(r.rest().to_vec()),
            K_LAYER_END => GuestMessage::LayerEnd {
                bytes: r.u64("bytes")?,
            },
            K_OOM => GuestMessage::Oom {
                kills: r.u64("kills")?,
            },
            K_COPY_SOURCE => GuestMessage::CopySource(decode_info(&mut r)?),
            K_COPY_DATA => GuestMessage::CopyData(r.rest().to_vec()),
            K_COPY_END => GuestMessage::CopyEnd {
                bytes: r.u64("bytes")?,
            },
            K_PAUSED => GuestMessage::Paused {
                main: r.u32("main")?,
                next_stream: r.u32("next_stream")?,
            },
            K_USAGE => GuestMessage::Usage(GuestUsage {
                clock_ns: r.u64("clock_ns")?,
                cpu_ns: r.u64("cpu_ns")?,
                memory: r.u64("memory")?,
                memory_total: r.u64("memory_total")?,
                pids: r.u64("pids")?,
                block_read: r.u64("block_read")?,
                block_write: r.u64("block_write")?,
                net_rx: r.u64("net_rx")?,
                net_tx: r.u64("net_tx")?,
            }),
            K_PROCESSES => GuestMessage::Processes(decode_processes(&mut r)?),
            other => return Err(DecodeError::UnknownKind { kind: other }),
        };
        r.finish()?;
        Ok(msg)
    }
}
