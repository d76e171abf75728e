//! A container cannot write into the host's nook binary through `/proc/<pid>/exe` (the
//! CVE-2019-5736 class), as an unprivileged user on the namespace column.
//!
//! A watcher container looks for every new process, tries to open its `/proc/<pid>/exe`, and
//! tries to write into what it opened once the process is gone. The attacks are run with a copy
//! of the nook binary owned by the user (as a user's own installation is), never the one the
//! test started with: `exec C true` (three times), a `#!/proc/self/exe` script, and
//! `exec -i C /proc/self/exe load`, which runs nook itself inside the container, blocked on its
//! stdin while the watcher holds its executable: the case that does not depend on a race.
//!
//! The watcher's `/etc/passwd` is a FIFO: every `nook exec` process reads it before its `execve`,
//! so it waits there, still a copy of nook, for the watcher to look at it. It still has every
//! capability of the container then (which alone keeps the container out: the kernel lets a
//! process into another's /proc files only when its own capabilities cover the other's), so the
//! watcher checks that it is not dumpable: its /proc files belong to no one in the container.
//! Released, it drops to docker's capabilities before its `execve`, and the watcher tries to
//! open its executable without pause until then.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nook_tests::rootless::Rootless;
use nook_tests::{nook_bin, require_tool, tool};

/// The watcher, run by busybox sh as the container's first process. Only builtins run in its
/// loop, so that every new process it sees is one that `nook exec` made.
const WATCHER: &str = r#"
cp /etc/passwd /passwd.real && rm /etc/passwd && mkfifo /etc/passwd /tick || exit 1
printf '#!/proc/self/exe\n' >/escape && chmod 755 /escape || exit 1
exec 5<>/tick
nap() { read -t "$1" _ <&5; }
attempt() {
  n=0
  while :; do
    if echo MARK 2>/err 1<>/proc/self/fd/$1; then echo "pid $p $2: WROTE"; return; fi
    e=; read -r e </err
    case $e in
      *busy*) n=$((n+1)); if [ $n -ge 600 ]; then echo "pid $p $2: refused: still busy"; return; fi; nap 0.1;;
      *) echo "pid $p $2: refused: $e"; return;;
    esac
  done
}
seen=' '
for d in /proc/[0-9]*; do seen="$seen${d#/proc/} "; done
echo ready
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case $seen in *" $p "*) continue;; esac
    seen="$seen$p "
    if [ -e $d/exe ] && [ $d/exe -ef /bin/busybox ]; then continue; fi
    if [ -O $d/status ]; then dump=dumpable; else dump=not-dumpable; fi
    c0=; read -r c0 <$d/comm 2>/dev/null
    echo "pid $p before exec: $dump"
    while read -r l; do echo "$l"; done </passwd.real >/etc/passwd
    pre=denied; post=none; c=$c0
    while [ -e $d ] && [ "$c" = "$c0" ]; do
      if [ $pre = denied ] && [ -e $d/exe ] && command exec 3<$d/exe; then
        if [ /proc/self/fd/3 -ef /bin/busybox ]; then exec 3<&-; else pre=grabbed; fi
      fi
      c=; read -r c <$d/comm 2>/dev/null
    done
    echo "pid $p until exec: $pre"
    if [ "$c" = exe ]; then
      post=denied; if [ -e $d/exe ] && command exec 4<$d/exe; then post=grabbed; fi
    fi
    echo "pid $p after exec: $post"
    if [ $pre = grabbed ]; then attempt 3 until; fi
    if [ $post = grabbed ]; then attempt 4 after; fi
    exec 3<&- 4<&-
    echo "pid $p done"
  done
  nap 0.02
done
"#;

/// A tar entry header with fixed owner and time.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// The shared libraries `bin` needs, as `ldd` names them (absolute paths).
fn libraries(bin: &Path) -> Vec<String> {
    require_tool("ldd");
    let out = tool("ldd", &[bin.to_str().unwrap()]);
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// A root filesystem that can run both busybox and the (dynamically linked) nook binary:
/// static busybox with the applets the watcher uses, /etc/passwd, and nook's libraries.
fn image_tar() -> Vec<u8> {
    require_tool("busybox");
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = vec!["bin".to_string(), "etc".into(), "tmp".into(), "root".into()];
    let libs = libraries(&nook_bin());
    assert!(!libs.is_empty(), "ldd names no library of nook");
    for lib in &libs {
        let mut dir = Path::new(lib.trim_start_matches('/')).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(d.to_str().unwrap().to_string());
            dir = d.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, format!("{d}/"), std::io::empty())
            .unwrap();
    }
    let mut files = vec![("bin/busybox".to_string(), "/bin/busybox".to_string())];
    files.extend(
        libs.iter()
            .map(|l| (l.trim_start_matches('/').to_string(), l.clone())),
    );
    for (name, host) in files {
        let data = std::fs::read(&host).unwrap_or_else(|e| panic!("cannot read {host}: {e}"));
        let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    for applet in ["sh", "cp", "rm", "mkfifo", "chmod", "true", "cat"] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for (name, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The sha256 of a file (by the tool: the debug binary is large).
fn digest(path: &Path) -> String {
    require_tool("sha256sum");
    tool("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The watcher's report so far.
fn report(r: &Rootless) -> String {
    r.ok(&["logs", "watcher"])
}

/// Waits until `done` holds for the watcher's report, and returns it.
fn wait_for(r: &Rootless, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = report(r);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher did not report {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// The lines of the watcher's last finished round.
fn last_round(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines.iter().rposition(|l| l.ends_with(" done")).unwrap();
    let start = lines[..end]
        .iter()
        .rposition(|l| l.ends_with(" done") || *l == "ready")
        .map_or(0, |i| i + 1);
    lines[start..=end].iter().map(|l| l.to_string()).collect()
}

/// Checks one finished attack: the watcher saw the nook process, which was not dumpable (its
/// /proc files closed to the container) until its execve, and wrote nothing anywhere; the binary
/// is unchanged.
fn check_round(
    r: &Rootless,
    copy: &Path,
    before: &str,
    what: &str,
    rounds: usize,
    execs_nook: bool,
) -> Vec<String> {
    let text = wait_for(r, &format!("the end of round {rounds}"), |t| {
        count(t, " done") >= rounds
    });
    let round = last_round(&text);
    assert!(
        !text.contains("WROTE"),
        "{what}: a container wrote into the nook binary through /proc/<pid>/exe:\n{text}"
    );
    assert_eq!(
        digest(copy),
        before,
        "{what}: the nook binary changed:\n{text}"
    );
    assert!(
        round
            .iter()
            .any(|l| l.ends_with("before exec: not-dumpable")),
        "{what}: the process nook put into the container was dumpable before its execve:\n{text}"
    );
    // A process that execs another program is closed to the container until then. One that
    // execs nook itself (a `#!/proc/self/exe` script) is nook again afterwards, dumpable like any
    // process of the container, and the watcher may well open its executable: then the write
    // must have been refused by the sealed copy.
    let grabbed = round.iter().any(|l| l.ends_with("until exec: grabbed"));
    assert!(
        round.iter().any(|l| l.ends_with("until exec: denied"))
            || (execs_nook && grabbed && round.iter().any(|l| l.contains(" refused: "))),
        "{what}: the container could open the executable of nook's process:\n{text}"
    );
    round
}

#[test]
fn no_container_can_write_into_the_nook_binary() {
    let r = Rootless::new();
    let _cleanup = RemoveOnDrop(&r, "watcher");
    let base = r.root().parent().unwrap().to_path_buf();
    let tarball = base.join("image.tar");
    std::fs::write(&tarball, image_tar()).unwrap();
    r.ok(&["import", tarball.to_str().unwrap(), "glibc-box"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "watcher",
        "glibc-box",
        "sh",
        "-c",
        WATCHER,
    ]);
    wait_for(&r, "that it is ready", |t| t.lines().any(|l| l == "ready"));

    let copy = r.own_copy("nook-copy");
    let before = digest(&copy);
    let mut rounds = 0;

    // A plain exec, several times: each process is a copy of nook until its execve.
    for _ in 0..3 {
        let out = r
            .cmd_of(&copy, &["exec", "watcher", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "exec true: {out:?}");
        rounds += 1;
        check_round(&r, &copy, &before, "exec watcher true", rounds, false);
    }

    // A script whose interpreter is /proc/self/exe runs nook itself inside the container.
    let out = r
        .cmd_of(&copy, &["exec", "watcher", "/escape"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "the script cannot succeed: {out:?}"
    );
    rounds += 1;
    check_round(
        &r,
        &copy,
        &before,
        "exec of a #!/proc/self/exe script",
        rounds,
        true,
    );

    // nook run as the container's process, held by the watcher while it waits for stdin, then
    // written to once it has ended.
    let afters = count(&report(&r), "after exec:");
    let mut attack = r
        .cmd_of(&copy, &["exec", "-i", "watcher", "/proc/self/exe", "load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = wait_for(&r, "nook running in the container", |t| {
        count(t, "after exec:") > afters
    });
    let mut stdin = attack.stdin.take().unwrap();
    let _ = stdin.write_all(b"not an archive");
    drop(stdin);
    let out = attack.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "load of nothing: {out:?}");
    rounds += 1;
    let round = check_round(&r, &copy, &before, "exec of /proc/self/exe", rounds, true);
    assert!(
        round.iter().any(|l| l.ends_with("after exec: grabbed")),
        "the watcher should hold the executable of nook running inside the container:\n{text}"
    );
    let refused = round
        .iter()
        .find(|l| l.contains(" after: refused: "))
        .unwrap_or_else(|| panic!("no refused write in {round:?}"));
    assert!(
        refused.contains("Operation not permitted"),
        "the sealed copy should refuse the write: {refused}"
    );
}

/// Removes a container when the test ends, also when it fails.
struct RemoveOnDrop<'a>(&'a Rootless, &'static str);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", self.1]);
    }
}
