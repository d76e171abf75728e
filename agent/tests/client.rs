//! The host client against a scripted peer: version check, errors before ready, a peer that
//! goes away mid-process.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nook_agent::client::{Client, ClientError};
use nook_agent::protocol::{
    encode_frame, BootTimes, ErrorKind, ExitStatus, GuestMessage, ProcessSpec, PROTOCOL_VERSION,
    SYNC,
};

fn peer_sends(frames: &[(u32, GuestMessage)]) -> Client {
    let (host, mut guest) = UnixStream::pair().unwrap();
    // Console noise first, as from a kernel that made the channel its console.
    guest
        .write_all(b"[    0.000000] Linux version 6.1.0\r\n\0\xffNOO")
        .unwrap();
    guest.write_all(&SYNC).unwrap();
    for (stream, msg) in frames {
        guest
            .write_all(&encode_frame(*stream, msg).unwrap())
            .unwrap();
    }
    drop(guest);
    Client::from_unix(host).unwrap()
}

fn ready(version: u32) -> GuestMessage {
    GuestMessage::Ready {
        version,
        boot: BootTimes::default(),
    }
}

#[test]
fn another_protocol_version_is_refused() {
    let other = PROTOCOL_VERSION + 1;
    let client = peer_sends(&[(0, ready(other))]);
    let err = client.wait_ready(Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(err, ClientError::Version { got, want: PROTOCOL_VERSION } if got == other),
        "{err}"
    );
}

#[test]
fn a_boot_error_instead_of_ready_is_reported() {
    let client = peer_sends(&[(
        0,
        GuestMessage::Error {
            kind: ErrorKind::Internal,
            message: "building the container root: cannot mount /dev/vda".into(),
        },
    )]);
    let err = client.wait_ready(Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("cannot mount /dev/vda"), "{err}");
}

#[test]
fn silence_times_out_and_a_vanished_agent_is_closed() {
    let (host, _guest) = UnixStream::pair().unwrap();
    let client = Client::from_unix(host).unwrap();
    let err = client.wait_ready(Duration::from_millis(100)).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");

    let client = peer_sends(&[
        (0, ready(PROTOCOL_VERSION)),
        (1, GuestMessage::Stdout(b"partial".to_vec())),
    ]);
    client.wait_ready(Duration::from_secs(5)).unwrap();
    let stream = client.exec(ProcessSpec {
        argv: vec!["x".into()],
        ..Default::default()
    });
    // The peer is gone, so the send may fail or succeed; either way no exit ever comes.
    let stream = stream.unwrap_or(1);
    let mut out = Vec::new();
    let err = client
        .wait_process(stream, &mut out, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, ClientError::Closed { .. }), "{err}");
    assert_eq!(out, b"partial");
}

#[test]
fn frames_of_other_streams_are_kept_for_later() {
    let client = peer_sends(&[
        (0, ready(PROTOCOL_VERSION)),
        (2, GuestMessage::Stdout(b"two".to_vec())),
        (1, GuestMessage::Stdout(b"one".to_vec())),
        (
            1,
            GuestMessage::Exit(ExitStatus {
                code: 0,
                signal: None,
            }),
        ),
    ]);
    client.wait_ready(Duration::from_secs(5)).unwrap();
    let mut out = Vec::new();
    let res = client.wait_process(1, &mut out, &mut Vec::new()).unwrap();
    assert_eq!((res.status.code, out.as_slice()), (0, &b"one"[..]));
    let next = client
        .next_event(Some(Duration::from_secs(1)))
        .unwrap()
        .unwrap();
    assert_eq!(
        (next.stream, next.message),
        (2, GuestMessage::Stdout(b"two".to_vec()))
    );
}

#[test]
fn a_channel_without_the_sync_marker_is_an_error() {
    let (host, mut guest) = UnixStream::pair().unwrap();
    guest
        .write_all(&encode_frame(0, &ready(PROTOCOL_VERSION)).unwrap())
        .unwrap();
    drop(guest);
    let client = Client::from_unix(host).unwrap();
    let err = client.wait_ready(Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string().contains("reading from the agent channel"),
        "{err}"
    );
}
