//! `nook cp` through the agent, run natively over a socketpair as PID 1 runs it over the
//! guest's console: `CopyIn` and `CopyOut` against a directory standing for the container's
//! root, with the host side written as the runtime writes it (the agent crate's sink).

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use nook_agent::client::Client;
use nook_agent::copy::{self, CopyInfo, Owners, Source};
use nook_agent::layer::TarWriter;
use nook_agent::protocol::{BootTimes, ErrorKind, GuestMessage, HostMessage, MAX_DATA_CHUNK};
use nook_agent::supervisor::{self, Config, NoSetup, Outcome, SupervisorError};

const TIMEOUT: Duration = Duration::from_secs(20);

fn agent(root: &Path) -> (Client, JoinHandle<Result<Outcome, SupervisorError>>) {
    let cfg = Config {
        root: root.to_path_buf(),
        reap_all: false,
        pid_namespace: false,
        upper_dir: None,
        boot: BootTimes::default(),
    };
    let (host, guest) = UnixStream::pair().unwrap();
    let handle = std::thread::spawn(move || supervisor::run(guest.into(), &cfg, &mut NoSetup));
    let client = Client::from_unix(host).unwrap();
    client.wait_ready(TIMEOUT).unwrap();
    (client, handle)
}

fn next(client: &Client, stream: u32) -> GuestMessage {
    let f = client.next_event(Some(TIMEOUT)).unwrap().unwrap();
    assert_eq!(f.stream, stream, "{:?}", f.message);
    f.message
}

/// Sends `tar` as a `CopyIn` of `path`; the agent's answer.
fn copy_in(client: &Client, path: &str, source: Option<CopyInfo>, tar: &[u8]) -> GuestMessage {
    let stream = client.new_stream();
    client
        .send(
            stream,
            &HostMessage::CopyIn {
                path: path.into(),
                archive: false,
                source,
            },
        )
        .unwrap();
    for chunk in tar.chunks(MAX_DATA_CHUNK) {
        client
            .send(stream, &HostMessage::CopyData(chunk.to_vec()))
            .unwrap();
    }
    client.send(stream, &HostMessage::CopyEnd).unwrap();
    next(client, stream)
}

/// A `CopyOut` of `path`: the source's info and its tar, or the agent's error.
fn copy_out(client: &Client, path: &str, rebased: bool) -> Result<(CopyInfo, Vec<u8>), String> {
    let stream = client.new_stream();
    client
        .send(
            stream,
            &HostMessage::CopyOut {
                path: path.into(),
                follow: false,
                rebased,
            },
        )
        .unwrap();
    let info = match next(client, stream) {
        GuestMessage::CopySource(info) => info,
        GuestMessage::Error {
            kind: ErrorKind::Copy,
            message,
        } => return Err(message),
        other => panic!("{other:?}"),
    };
    let mut tar = Vec::new();
    loop {
        match next(client, stream) {
            GuestMessage::CopyData(d) => tar.extend(d),
            GuestMessage::CopyEnd { bytes } => {
                assert_eq!(bytes as usize, tar.len());
                return Ok((info, tar));
            }
            other => panic!("{other:?}"),
        }
    }
}

fn host_tree(at: &Path) {
    std::fs::create_dir_all(at.join("sub")).unwrap();
    let big: Vec<u8> = (0..3 * MAX_DATA_CHUNK + 17)
        .map(|i| (i * 7) as u8)
        .collect();
    std::fs::write(at.join("sub/big"), &big).unwrap();
    std::fs::hard_link(at.join("sub/big"), at.join("hard")).unwrap();
    std::os::unix::fs::symlink("sub/big", at.join("link")).unwrap();
}

fn rebased(path: &Path) -> (CopyInfo, Vec<u8>) {
    let source = Source::open(None, path.to_str().unwrap(), false).unwrap();
    let info = source.info().clone();
    let mut tar = TarWriter::new(Vec::new());
    source.send_rebased(&mut tar).unwrap();
    (info, tar.finish().unwrap())
}

#[test]
fn a_tree_goes_in_and_comes_back_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let tree = dir.path().join("tree");
    host_tree(&tree);
    let (client, handle) = agent(&root);

    let (info, tar) = rebased(&tree);
    let answer = copy_in(&client, "/copied", Some(info), &tar);
    assert!(matches!(answer, GuestMessage::CopyEnd { .. }), "{answer:?}");
    let inside = root.join("copied");
    assert_eq!(
        std::fs::read(inside.join("sub/big")).unwrap(),
        std::fs::read(tree.join("sub/big")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(inside.join("link")).unwrap(),
        Path::new("sub/big")
    );

    // Back out, placed on the host by the runtime's rules.
    let (info, tar) = copy_out(&client, "/copied", true).unwrap();
    assert!(info.dir && info.name == "copied");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    copy::onto_host(&out, Owners::Writer, &info, &tar[..]).unwrap();
    use std::os::unix::fs::MetadataExt;
    let back = out.join("copied");
    assert_eq!(
        std::fs::read(back.join("sub/big")).unwrap(),
        std::fs::read(tree.join("sub/big")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(back.join("hard")).unwrap().ino(),
        std::fs::metadata(back.join("sub/big")).unwrap().ino()
    );

    // Docker's naming for `-`, and a user's stream into a directory.
    let (_, tar) = copy_out(&client, "/copied/sub", false).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["sub", "sub/big"]);
    let answer = copy_in(&client, "/tmp", None, &tar);
    assert!(matches!(answer, GuestMessage::CopyEnd { .. }), "{answer:?}");
    assert!(root.join("tmp/sub/big").is_file());

    client.shutdown().unwrap();
    assert_eq!(handle.join().unwrap().unwrap(), Outcome::Shutdown);
}

#[test]
fn errors_are_clear_and_hostile_links_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host").unwrap();
    std::os::unix::fs::symlink("/", root.join("slash")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", root.join("up")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
    let out_rel = outside.strip_prefix("/").unwrap().display().to_string();
    let (client, handle) = agent(&root);

    let err = copy_out(&client, "/nope", true).unwrap_err();
    assert_eq!(err, "Could not find the file /nope in container");
    for p in [
        format!("/slash/{out_rel}/secret"),
        format!("/up/{out_rel}/secret"),
        "/abs/secret".to_string(),
    ] {
        let err = copy_out(&client, &p, true).unwrap_err();
        assert!(err.starts_with("Could not find"), "{p}: {err}");
    }
    // Without -L a link comes out as the link it is.
    let (info, tar) = copy_out(&client, "/abs", true).unwrap();
    assert!(!info.dir);
    let mut entries = tar::Archive::new(&tar[..]);
    let e = entries.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);

    let payload = dir.path().join("payload");
    std::fs::write(&payload, "payload").unwrap();
    let (info, tar) = rebased(&payload);
    for dst in [
        "/abs/planted".to_string(),
        format!("/up/{out_rel}/planted"),
        format!("/slash/{out_rel}/"),
    ] {
        let _ = copy_in(&client, &dst, Some(info.clone()), &tar);
    }
    let answer = copy_in(&client, "/abs", None, &tar);
    assert!(
        matches!(
            answer,
            GuestMessage::CopyEnd { .. } | GuestMessage::Error { .. }
        ),
        "{answer:?}"
    );
    // A stream that is not a tar: a clear error, and the connection goes on.
    let answer = copy_in(&client, "/", None, &[0x55; 4096]);
    assert!(
        matches!(
            &answer,
            GuestMessage::Error {
                kind: ErrorKind::Copy,
                message
            } if message.starts_with("cannot extract the tar stream into /")
        ),
        "{answer:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing was written outside the root");
    client.shutdown().unwrap();
    assert_eq!(handle.join().unwrap().unwrap(), Outcome::Shutdown);
}
