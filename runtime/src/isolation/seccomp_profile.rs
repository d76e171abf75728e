//! Docker's seccomp profile format (moby `profiles/seccomp`, runc's `LinuxSeccomp`), compiled
//! into BPF with `seccompiler`.
//!
//! A profile has a default action and entries giving an action to syscalls, by name, under
//! conditions on their arguments. libseccomp makes one filter of it; a seccompiler filter has
//! one action on a match and one otherwise, so a profile becomes a stack of filters, which the
//! kernel runs all of, keeping the most restrictive answer:
//! - one filter answering the default action to every syscall no entry matches (and allowing
//!   the rest), unless the default is to allow;
//! - one filter per other action, answering it to what the entries of that action match (and
//!   allowing the rest).
//!
//! A syscall that one entry matches gets that entry's action, as with libseccomp. Where two
//! entries of different actions match the same call, the more restrictive one wins.
//!
//! What nook does as docker and runc do: names this architecture does not have are ignored
//! (one profile serves every architecture and kernel; the caller says which were ignored);
//! entries are kept or left out by their `includes` and `excludes` (capabilities,
//! architectures, minimum kernel); an `SCMP_ACT_ERRNO` without `errnoRet` answers EPERM.
//!
//! What nook does differently: only x86_64 syscalls are filtered; a call through another ABI
//! (32-bit `int 0x80`) kills the process, whatever `architectures` lists. `SCMP_ACT_NOTIFY`,
//! `listenerPath` and `flags` are refused, as nook runs no seccomp agent. Unknown fields are
//! refused too: a misspelt `syscalls` would otherwise leave a profile that filters nothing.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;

use super::security::CAPABILITIES;
use super::syscalls::SYSCALLS;

/// What is wrong with a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("not a docker seccomp profile")]
    Json(#[from] serde_json::Error),
    #[error("unknown architecture {0:?} (expected SCMP_ARCH_X86_64 and the like)")]
    Architecture(String),
    #[error("syscalls[{0}] names no syscall")]
    NoNames(usize),
    #[error("syscalls[{entry}]: errnoRet {value} is not an errno (1 to 4095)")]
    Errno { entry: usize, value: u32 },
    #[error("defaultErrnoRet {0} is not an errno (1 to 4095)")]
    DefaultErrno(u32),
    #[error("syscalls[{entry}]: argument index {index} is over 5")]
    ArgIndex { entry: usize, index: u32 },
    #[error("syscalls[{entry}]: unknown capability {name:?} in includes or excludes")]
    Capability { entry: usize, name: String },
    #[error("syscalls[{entry}]: minKernel {value:?} is not a kernel version like 5.8")]
    MinKernel { entry: usize, value: String },
    #[error("SCMP_ACT_NOTIFY is not supported: nook runs no seccomp agent")]
    Notify,
    #[error("{0} is not supported: nook runs no seccomp agent")]
    Listener(&'static str),
    #[error("flags {0:?} are not supported")]
    Flags(Vec<String>),
    #[error("cannot compile it")]
    Compile(#[from] seccompiler::BackendError),
}

/// A compiled profile: the filters to install, in order, and the syscall names it gives that
/// this architecture does not have (ignored).
pub struct Compiled {
    pub filters: Vec<BpfProgram>,
    pub ignored: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Profile {
    default_action: Action,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    architectures: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "nullable")]
    syscalls: Vec<Syscall>,
    #[serde(default, deserialize_with = "nullable")]
    flags: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    listener_path: String,
    #[serde(default, deserialize_with = "nullable")]
    listener_metadata: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMap {
    architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Syscall {
    #[serde(default, deserialize_with = "nullable")]
    names: Vec<String>,
    /// The form before `names`.
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    action: Action,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    args: Vec<Arg>,
    /// Free text, for the profile's readers.
    #[serde(default, rename = "comment")]
    _comment: serde::de::IgnoredAny,
    #[serde(default, deserialize_with = "nullable")]
    includes: Filter,
    #[serde(default, deserialize_with = "nullable")]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    #[serde(default, deserialize_with = "nullable")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: Op,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum Action {
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

#[derive(Deserialize, Clone, Copy)]
enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// An action with its data, comparable so that entries can be grouped by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Trap,
    Trace(u32),
    Log,
}

impl Answer {
    fn seccompiler(self) -> SeccompAction {
        match self {
            Answer::Allow => SeccompAction::Allow,
            Answer::Errno(e) => SeccompAction::Errno(e),
            Answer::KillThread => SeccompAction::KillThread,
            Answer::KillProcess => SeccompAction::KillProcess,
            Answer::Trap => SeccompAction::Trap,
            Answer::Trace(e) => SeccompAction::Trace(e),
            Answer::Log => SeccompAction::Log,
        }
    }
}

/// `null` as an empty list, as Go (docker) reads it: docker's own default profile has
/// `"subArchitectures": null`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// The architectures libseccomp names.
const ARCHITECTURES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// The names `includes.arches` uses for this machine (Go's and the kernel's).
const NATIVE_ARCHES: &[&str] = &["amd64", "x86_64"];

const EPERM: u32 = libc::EPERM as u32;

/// The number of syscall `name` on x86_64.
pub fn syscall_number(name: &str) -> Option<i64> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// The running kernel's version as (major, minor).
fn running_kernel() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|s| parse_kernel(s.trim()))
        .unwrap_or((0, 0))
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// Compiles `text` for a container whose capabilities are `caps`.
pub fn compile(text: &str, caps: u64) -> Result<Compiled, ProfileError> {
    compile_for(text, caps, running_kernel())
}

/// Rules for one syscall: all calls, or those matching one of the rules.
enum Matches {
    All,
    Some(Vec<SeccompRule>),
}

fn add(map: &mut BTreeMap<i64, Matches>, nr: i64, rule: Option<SeccompRule>) {
    let entry = map.entry(nr).or_insert(Matches::Some(Vec::new()));
    match (entry, rule) {
        (Matches::All, _) => {}
        (entry, None) => *entry = Matches::All,
        (Matches::Some(rules), Some(rule)) => rules.push(rule),
    }
}

fn filter(
    matches: BTreeMap<i64, Matches>,
    mismatch: Answer,
    on_match: Answer,
) -> Result<BpfProgram, ProfileError> {
    let rules = matches
        .into_iter()
        .map(|(nr, m)| match m {
            Matches::All => (nr, Vec::new()),
            Matches::Some(rules) => (nr, rules),
        })
        .collect();
    let filter = SeccompFilter::new(
        rules,
        mismatch.seccompiler(),
        on_match.seccompiler(),
        TargetArch::x86_64,
    )?;
    Ok(filter.try_into()?)
}

fn errno(value: Option<u32>, bad: impl Fn(u32) -> ProfileError) -> Result<u32, ProfileError> {
    match value {
        None => Ok(EPERM),
        Some(e) if (1..4096).contains(&e) => Ok(e),
        Some(e) => Err(bad(e)),
    }
}

fn answer(
    action: Action,
    errno_ret: Option<u32>,
    bad: impl Fn(u32) -> ProfileError,
) -> Result<Answer, ProfileError> {
    Ok(match action {
        Action::Allow => Answer::Allow,
        Action::Errno => Answer::Errno(errno(errno_ret, bad)?),
        Action::Trace => Answer::Trace(errno(errno_ret, bad)?),
        Action::KillThread => Answer::KillThread,
        Action::KillProcess => Answer::KillProcess,
        Action::Trap => Answer::Trap,
        Action::Log => Answer::Log,
        Action::Notify => return Err(ProfileError::Notify),
    })
}

/// Whether entry `entry` applies to a container with `caps` on kernel `kernel`, by its
/// `includes` (all must hold) and `excludes` (none may).
fn applies(entry: usize, s: &Syscall, caps: u64, kernel: (u32, u32)) -> Result<bool, ProfileError> {
    let has = |name: &String| -> Result<bool, ProfileError> {
        let n = CAPABILITIES.iter().position(|c| c == name).ok_or_else(|| {
            ProfileError::Capability {
                entry,
                name: name.clone(),
            }
        })?;
        Ok(caps & (1 << n) != 0)
    };
    let at_least = |v: &String| -> Result<bool, ProfileError> {
        let min = parse_kernel(v).ok_or_else(|| ProfileError::MinKernel {
            entry,
            value: v.clone(),
        })?;
        Ok(kernel >= min)
    };
    let native = |arches: &[String]| arches.iter().any(|a| NATIVE_ARCHES.contains(&a.as_str()));
    for c in &s.includes.caps {
        if !has(c)? {
            return Ok(false);
        }
    }
    for c in &s.excludes.caps {
        if has(c)? {
            return Ok(false);
        }
    }
    if !s.includes.arches.is_empty() && !native(&s.includes.arches) {
        return Ok(false);
    }
    if native(&s.excludes.arches) {
        return Ok(false);
    }
    if let Some(v) = &s.includes.min_kernel {
        if !at_least(v)? {
            return Ok(false);
        }
    }
    if let Some(v) = &s.excludes.min_kernel {
        if at_least(v)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn compile_for(text: &str, caps: u64, kernel: (u32, u32)) -> Result<Compiled, ProfileError> {
    let profile: Profile = serde_json::from_str(text)?;
    if !profile.flags.is_empty() {
        return Err(ProfileError::Flags(profile.flags));
    }
    if !profile.listener_path.is_empty() {
        return Err(ProfileError::Listener("listenerPath"));
    }
    if !profile.listener_metadata.is_empty() {
        return Err(ProfileError::Listener("listenerMetadata"));
    }
    let arches = profile.architectures.iter().chain(
        profile
            .arch_map
            .iter()
            .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures)),
    );
    for arch in arches {
        if !ARCHITECTURES.contains(&arch.as_str()) {
            return Err(ProfileError::Architecture(arch.clone()));
        }
    }
    let default = answer(
        profile.default_action,
        profile.default_errno_ret,
        ProfileError::DefaultErrno,
    )?;

    let mut by_answer: BTreeMap<Answer, BTreeMap<i64, Matches>> = BTreeMap::new();
    let mut matched: BTreeMap<i64, Matches> = BTreeMap::new();
    let mut ignored = Vec::new();
    for (i, s) in profile.syscalls.iter().enumerate() {
        let names: Vec<&String> = s.names.iter().chain(Some(&s.name)).collect();
        let names: Vec<&String> = names.into_iter().filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            return Err(ProfileError::NoNames(i));
        }
        let action = answer(s.action, s.errno_ret, |value| ProfileError::Errno {
            entry: i,
            value,
        })?;
        if !applies(i, s, caps, kernel)? {
            continue;
        }
        let conditions = s
            .args
            .iter()
            .map(|a| -> Result<SeccompCondition, ProfileError> {
                let index = u8::try_from(a.index).ok().filter(|i| *i <= 5).ok_or(
                    ProfileError::ArgIndex {
                        entry: i,
                        index: a.index,
                    },
                )?;
                let (op, value) = match a.op {
                    Op::Ne => (SeccompCmpOp::Ne, a.value),
                    Op::Lt => (SeccompCmpOp::Lt, a.value),
                    Op::Le => (SeccompCmpOp::Le, a.value),
                    Op::Eq => (SeccompCmpOp::Eq, a.value),
                    Op::Ge => (SeccompCmpOp::Ge, a.value),
                    Op::Gt => (SeccompCmpOp::Gt, a.value),
                    // libseccomp: `value` is the mask, `valueTwo` what the masked argument
                    // must equal.
                    Op::MaskedEq => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
                };
                Ok(SeccompCondition::new(
                    index,
                    SeccompCmpArgLen::Qword,
                    op,
                    value,
                )?)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rule = if conditions.is_empty() {
            None
        } else {
            Some(SeccompRule::new(conditions)?)
        };
        for name in names {
            let Some(nr) = syscall_number(name) else {
                if !ignored.contains(name) {
                    ignored.push(name.clone());
                }
                continue;
            };
            add(&mut matched, nr, rule.clone());
            if action != Answer::Allow {
                add(by_answer.entry(action).or_default(), nr, rule.clone());
            }
        }
    }
    let mut filters = Vec::new();
    if default != Answer::Allow {
        filters.push(filter(matched, default, Answer::Allow)?);
    }
    for (action, matches) in by_answer {
        filters.push(filter(matches, Answer::Allow, action)?);
    }
    ignored.sort();
    Ok(Compiled { filters, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = super::super::security::ALL_CAPS;

    fn compile(text: &str) -> Result<Compiled, ProfileError> {
        compile_for(text, ALL, (6, 1))
    }

    #[test]
    fn a_deny_list_is_one_filter_and_an_allow_list_two() {
        let deny = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#;
        let c = compile(deny).unwrap();
        assert_eq!(c.filters.len(), 1);
        assert!(c.ignored.is_empty());

        let allow = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
              {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
              {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
              {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
              {"names": ["no_such_call", "another_one"], "action": "SCMP_ACT_ALLOW"}
            ]}"#;
        let c = compile(allow).unwrap();
        assert_eq!(c.filters.len(), 2);
        assert_eq!(c.ignored, ["another_one", "no_such_call"]);
    }

    #[test]
    fn lists_may_be_null_as_in_dockers_default_profile() {
        let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": null},
                         {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
                          "includes": {"arches": ["amd64", "x32"]}},
                         {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 2114060288,
                                    "op": "SCMP_CMP_MASKED_EQ"}],
                          "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
                         {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                          "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#;
        let c = compile_for(text, super::super::security::default_caps(), (6, 1)).unwrap();
        assert_eq!(c.filters.len(), 2);
    }

    #[test]
    fn nothing_to_filter_is_no_filter() {
        let c = compile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        assert!(c.filters.is_empty());
        let c = compile(r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS"}"#).unwrap();
        assert_eq!(c.filters.len(), 1);
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let err = |text: &str| crate::errors::chain(&compile(text).err().unwrap());
        assert!(err("{").contains("not a docker seccomp profile"));
        let e = err(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#);
        assert!(e.contains("unknown variant `SCMP_ACT_MAYBE`"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscall": []}"#);
        assert!(e.contains("unknown field `syscall`"), "{e}");
        let e = err(r#"{"syscalls": []}"#);
        assert!(e.contains("missing field `defaultAction`"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#);
        assert!(e.contains("unknown architecture \"SCMP_ARCH_Z80\""), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#);
        assert!(e.contains("syscalls[0]: argument index 6"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#);
        assert!(e.contains("syscalls[0] names no syscall"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 0}"#);
        assert!(e.contains("defaultErrnoRet 0"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#);
        assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}"#);
        assert!(e.contains("listenerPath"), "{e}");
    }

    #[test]
    fn includes_and_excludes_pick_entries_as_docker_does() {
        // ptrace is allowed only with CAP_SYS_PTRACE, on kernels from 4.8: with neither, no
        // entry allows it, and the default filter alone remains.
        let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_PTRACE"], "minKernel": "4.8"}},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL",
             "excludes": {"arches": ["amd64"]}}]}"#;
        let with = compile_for(text, ALL, (6, 1)).unwrap();
        assert_eq!(with.filters.len(), 1);
        let without = compile_for(text, 0, (6, 1)).unwrap();
        let old = compile_for(text, ALL, (4, 4)).unwrap();
        assert_eq!(without.filters[0], old.filters[0]);
        assert_ne!(with.filters[0], without.filters[0]);
        let bad = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_X"]}}]}"#;
        assert!(compile(bad).is_err());
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x"), None);
    }

    #[test]
    fn the_syscall_table_is_consistent() {
        for (i, (name, nr)) in SYSCALLS.iter().enumerate() {
            assert!(
                !SYSCALLS[..i].iter().any(|(n, m)| n == name || m == nr),
                "{name} {nr} twice"
            );
        }
        assert_eq!(syscall_number("mkdir"), Some(libc::SYS_mkdir));
        assert_eq!(syscall_number("open_tree_attr"), Some(467));
        assert_eq!(syscall_number("socketcall"), None);
    }
}
