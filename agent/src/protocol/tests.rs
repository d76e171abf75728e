use super::*;

fn host_samples() -> Vec<HostMessage> {
    let process = ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), "echo hé".into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "A=".into()],
        cwd: "/work".into(),
        user: "1000:1000".into(),
        terminal: true,
        rows: 24,
        cols: 80,
        groups: vec![10, 4242],
        rlimits: vec![Rlimit {
            resource: 4,
            soft: 0,
            hard: 0,
        }],
    };
    vec![
        HostMessage::Start(StartSpec {
            process: process.clone(),
            hostname: "box".into(),
            resolv_conf: "nameserver 10.0.2.3\n".into(),
            hosts: "127.0.0.1\tlocalhost\n10.0.2.100\tbox\n".into(),
            mounts: vec![
                GuestMount::Virtiofs {
                    tag: "nook0".into(),
                    target: "/data".into(),
                    readonly: true,
                    file: false,
                },
                GuestMount::Virtiofs {
                    tag: "nook1".into(),
                    target: "/etc/app.conf".into(),
                    readonly: false,
                    file: true,
                },
                GuestMount::Tmpfs {
                    target: "/scratch".into(),
                    size: Some(64 << 20),
                    mode: Some(0o700),
                    readonly: false,
                },
                GuestMount::Tmpfs {
                    target: "/run".into(),
                    size: None,
                    mode: None,
                    readonly: true,
                },
            ],
            limits: GuestLimits {
                pids_max: Some(64),
                rlimits: vec![Rlimit {
                    resource: 7,
                    soft: 1024,
                    hard: u64::MAX,
                }],
            },
            security: GuestSecurity {
                caps: Some(1 << 21 | 1),
                no_new_privs: true,
                seccomp: vec![vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f]],
            },
            keep_id: Some(Box::new(crate::user::KeepIdUser {
                name: "alice".into(),
                uid: 1000,
                gid: 1001,
                home: "/home/alice".into(),
            })),
        }),
        HostMessage::Start(StartSpec {
            process: ProcessSpec {
                argv: vec!["true".into()],
                ..ProcessSpec::default()
            },
            ..StartSpec::default()
        }),
        HostMessage::Exec(process),
        HostMessage::Stdin(b"line\n".to_vec()),
        HostMessage::Stdin(Vec::new()),
        HostMessage::StdinClose,
        HostMessage::Signal(15),
        HostMessage::Resize {
            rows: 50,
            cols: 132,
        },
        HostMessage::StreamUpper,
        HostMessage::Shutdown,
        HostMessage::CopyOut {
            path: "/etc/a dir/.".into(),
            follow: true,
            rebased: false,
        },
        HostMessage::CopyIn {
            path: "/tmp".into(),
            archive: true,
            source: None,
        },
        HostMessage::CopyIn {
            path: "/new".into(),
            archive: false,
            source: Some(copy_info()),
        },
        HostMessage::CopyData(vec![1; 300]),
        HostMessage::CopyData(Vec::new()),
        HostMessage::CopyEnd,
        HostMessage::Mount(vec![GuestMount::Virtiofs {
            tag: "nook1".into(),
            target: "/v".into(),
            readonly: false,
            file: false,
        }]),
        HostMessage::Checkpoint,
        HostMessage::Resume {
            seed: vec![7; 64],
            realtime_ns: 1_800_000_000_000_000_000,
        },
        HostMessage::Stats,
        HostMessage::Top,
    ]
}

fn copy_info() -> crate::copy::CopyInfo {
    crate::copy::CopyInfo {
        dir: true,
        name: "tree".into(),
        contents_only: true,
    }
}

fn guest_samples() -> Vec<GuestMessage> {
    vec![
        GuestMessage::Ready {
            version: PROTOCOL_VERSION,
            boot: BootTimes {
                kernel_start_realtime_ns: 1_700_000_000_000_000_000,
                agent_start_ns: 120_000_000,
                root_ready_ns: 130_000_000,
            },
        },
        GuestMessage::Started {
            pid: 42,
            exec_ns: 140_000_000,
        },
        GuestMessage::Stdout(b"hello\n".to_vec()),
        GuestMessage::Stderr(b"err\n".to_vec()),
        GuestMessage::Exit(ExitStatus {
            code: 137,
            signal: Some(9),
        }),
        GuestMessage::Exit(ExitStatus {
            code: 3,
            signal: None,
        }),
        GuestMessage::Oom { kills: 2 },
        GuestMessage::Error {
            kind: ErrorKind::Spawn,
            message: "no such file".into(),
        },
        GuestMessage::Error {
            kind: ErrorKind::Other(999),
            message: String::new(),
        },
        GuestMessage::LayerData(vec![0; 512]),
        GuestMessage::LayerEnd { bytes: 1024 },
        GuestMessage::CopySource(copy_info()),
        GuestMessage::CopyData(vec![9; 700]),
        GuestMessage::CopyEnd { bytes: 104_857_600 },
        GuestMessage::Error {
            kind: ErrorKind::Copy,
            message: "Could not find the file /x in container".into(),
        },
        GuestMessage::Paused {
            main: 1,
            next_stream: 9,
        },
        GuestMessage::Usage(GuestUsage {
            clock_ns: 5_000_000_000,
            cpu_ns: 2_500_000_000,
            memory: 67 << 20,
            memory_total: 239 << 20,
            pids: 3,
            block_read: 1 << 30,
            block_write: 4096,
            net_rx: 1500,
            net_tx: u64::MAX,
        }),
        GuestMessage::Usage(GuestUsage::default()),
        GuestMessage::Processes(GuestProcesses {
            clock_ns: 9_000_000_000,
            memory_total: 239 << 20,
            processes: vec![
                GuestProcess {
                    pid: 1,
                    ppid: 0,
                    uid: 0,
                    user: "root".into(),
                    tty: "?".into(),
                    state: "S".into(),
                    start_ns: 1_000_000_000,
                    cpu_ns: 20_000_000,
                    vsz: 4 << 20,
                    rss: 1 << 20,
                    args: "sleep 1000".into(),
                    comm: "sleep".into(),
                },
                GuestProcess::default(),
            ],
            omitted: 3,
        }),
        GuestMessage::Processes(GuestProcesses::default()),
    ]
}

#[test]
fn a_copy_source_name_is_one_path_component() {
    for bad in ["", "..", "a/b", "/"] {
        let info = crate::copy::CopyInfo {
            name: bad.into(),
            ..copy_info()
        };
        let bytes = encode_frame(3, &GuestMessage::CopySource(info)).unwrap();
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        let err = d.next_frame::<GuestMessage>().unwrap_err();
        assert!(
            matches!(
                err.error,
                DecodeError::InvalidValue {
                    field: "copy source name",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
    }
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug + Clone>(samples: Vec<M>) {
    // All frames back to back, delivered one byte at a time.
    let mut stream = Vec::new();
    for (i, m) in samples.iter().enumerate() {
        stream.extend(encode_frame(i as u32 + 1, m).unwrap());
    }
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    for b in &stream {
        decoder.push(std::slice::from_ref(b));
        while let Some(frame) = decoder.next_frame::<M>().unwrap() {
            out.push(frame);
        }
    }
    assert_eq!(out.len(), samples.len());
    for (i, (frame, m)) in out.iter().zip(&samples).enumerate() {
        assert_eq!(frame.stream, i as u32 + 1);
        assert_eq!(&frame.message, m);
    }
    assert_eq!(decoder.pending(), 0);
}

#[test]
fn every_message_round_trips() {
    round_trip(host_samples());
    round_trip(guest_samples());
}

#[test]
fn every_truncated_body_is_an_error_not_a_panic() {
    for m in host_samples() {
        let full = encode_frame(7, &m).unwrap();
        let body = &full[HEADER_LEN..];
        for cut in 0..body.len() {
            let mut frame = full[..HEADER_LEN].to_vec();
            frame[0..4].copy_from_slice(&(cut as u32).to_le_bytes());
            frame.extend_from_slice(&body[..cut]);
            let mut d = FrameDecoder::new();
            d.push(&frame);
            // Data frames accept any length; everything else must reject a short body.
            if let Err(err) = d.next_frame::<HostMessage>() {
                assert_eq!(err.stream, 7);
                assert!(!err.is_fatal());
            }
        }
    }
}

#[test]
fn oversized_frame_poisons_the_decoder() {
    let mut header = vec![0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
    header[4] = 0x03;
    header[5..9].copy_from_slice(&5u32.to_le_bytes());
    let mut d = FrameDecoder::new();
    d.push(&header);
    let err = d.next_frame::<HostMessage>().unwrap_err();
    assert!(err.is_fatal());
    assert_eq!(err.stream, 5);
    assert!(matches!(err.error, DecodeError::Oversized { .. }));
    // Later well-formed bytes do not resurrect the stream.
    d.push(&encode_frame(1, &HostMessage::Shutdown).unwrap());
    assert!(d.next_frame::<HostMessage>().unwrap_err().is_fatal());
}

#[test]
fn unknown_kind_is_skipped_and_decoding_goes_on() {
    let mut bytes = vec![3, 0, 0, 0, 0x7f, 9, 0, 0, 0, 1, 2, 3];
    bytes.extend(encode_frame(2, &HostMessage::StdinClose).unwrap());
    let mut d = FrameDecoder::new();
    d.push(&bytes);
    let err = d.next_frame::<HostMessage>().unwrap_err();
    assert_eq!(err.stream, 9);
    assert_eq!(err.error, DecodeError::UnknownKind { kind: 0x7f });
    let next = d.next_frame::<HostMessage>().unwrap().unwrap();
    assert_eq!(next.message, HostMessage::StdinClose);
    // A guest kind sent to the guest is unknown too.
    let mut d = FrameDecoder::new();
    d.push(&encode_frame(1, &GuestMessage::Stdout(vec![1])).unwrap());
    assert!(matches!(
        d.next_frame::<HostMessage>().unwrap_err().error,
        DecodeError::UnknownKind { kind: 0x83 }
    ));
}

#[test]
fn malformed_bodies_name_the_field() {
    let cases: Vec<(u8, Vec<u8>, DecodeError)> = vec![
        (0x04, vec![1], DecodeError::TrailingBytes { count: 1 }),
        (
            0x05,
            0i32.to_le_bytes().to_vec(),
            DecodeError::InvalidValue {
                field: "signal",
                value: 0,
            },
        ),
        // argv count claims a billion entries in an 8-byte body.
        (
            0x02,
            [1_000_000_000u32.to_le_bytes(), [0; 4]].concat(),
            DecodeError::Truncated { field: "argv" },
        ),
        // One argv entry that is not UTF-8.
        (
            0x02,
            [&1u32.to_le_bytes()[..], &1u32.to_le_bytes(), &[0xff]].concat(),
            DecodeError::InvalidUtf8 { field: "argv" },
        ),
        (
            0x02,
            [&1u32.to_le_bytes()[..], &1u32.to_le_bytes(), &[0]].concat(),
            DecodeError::NulByte { field: "argv" },
        ),
        (
            0x02,
            0u32.to_le_bytes().to_vec(),
            DecodeError::InvalidValue {
                field: "argv",
                value: 0,
            },
        ),
    ];
    for (kind, body, want) in cases {
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.push(kind);
        frame.extend(3u32.to_le_bytes());
        frame.extend(&body);
        let mut d = FrameDecoder::new();
        d.push(&frame);
        let err = d.next_frame::<HostMessage>().unwrap_err();
        assert_eq!(err.error, want, "kind {kind:#x}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn encoder_refuses_oversized_messages() {
    let big = HostMessage::Stdin(vec![0; MAX_BODY + 1]);
    assert!(matches!(
        encode_frame(1, &big),
        Err(EncodeError::TooLarge { kind: 0x03, .. })
    ));
    let exact = HostMessage::Stdin(vec![0; MAX_BODY]);
    assert!(encode_frame(1, &exact).is_ok());
}

#[test]
fn reader_reports_a_stream_cut_mid_frame() {
    let mut bytes = encode_frame(1, &HostMessage::Signal(2)).unwrap();
    bytes.pop();
    let mut r = FrameReader::new(&bytes[..]);
    assert!(matches!(
        r.read_frame::<HostMessage>(),
        Err(ReadError::TruncatedStream { pending: 12 })
    ));
    let mut r = FrameReader::new(&[][..]);
    assert!(r.read_frame::<HostMessage>().unwrap().is_none());
}

#[test]
fn limits_and_filters_outside_linuxs_range_are_refused() {
    let start = |limits: GuestLimits, security: GuestSecurity| {
        HostMessage::Start(StartSpec {
            process: ProcessSpec {
                argv: vec!["true".into()],
                ..ProcessSpec::default()
            },
            limits,
            security,
            ..StartSpec::default()
        })
    };
    let rlimit = |resource, soft, hard| GuestLimits {
        pids_max: None,
        rlimits: vec![Rlimit {
            resource,
            soft,
            hard,
        }],
    };
    for (limits, field) in [
        (rlimit(16, 1, 1), "rlimit resource"),
        (rlimit(7, 2, 1), "rlimit soft"),
        (
            GuestLimits {
                pids_max: Some(0),
                rlimits: Vec::new(),
            },
            "pids limit",
        ),
    ] {
        check(start(limits, GuestSecurity::default()), field);
    }
    let filter = |bytes: Vec<u8>| GuestSecurity {
        caps: None,
        no_new_privs: true,
        seccomp: vec![bytes],
    };
    for bad in [Vec::new(), vec![0; 7], vec![0; 4097 * 8]] {
        check(start(GuestLimits::default(), filter(bad)), "seccomp filter");
    }
    // A process's own rlimits are checked as the container's are.
    let exec = |resource, soft, hard| {
        HostMessage::Exec(ProcessSpec {
            argv: vec!["true".into()],
            rlimits: vec![Rlimit {
                resource,
                soft,
                hard,
            }],
            ..ProcessSpec::default()
        })
    };
    check(exec(16, 1, 1), "rlimit resource");
    check(exec(7, 2, 1), "rlimit soft");
}

/// `message` encodes, and its decoding fails naming `field`.
fn check(message: HostMessage, field: &str) {
    let bytes = encode_frame(1, &message).unwrap();
    let mut d = FrameDecoder::new();
    d.push(&bytes);
    match d.next_frame::<HostMessage>().unwrap_err().error {
        DecodeError::InvalidValue { field: f, .. } => assert_eq!(f, field),
        other => panic!("{field}: {other:?}"),
    }
}

#[test]
fn a_process_entry_takes_its_wire_len() {
    let entry = GuestProcess {
        user: "root".into(),
        args: "sh -c x".into(),
        ..Default::default()
    };
    let body = |processes: Vec<GuestProcess>| {
        encode_frame(
            1,
            &GuestMessage::Processes(GuestProcesses {
                processes,
                ..Default::default()
            }),
        )
        .unwrap()
        .len()
    };
    assert_eq!(
        body(vec![entry.clone()]) - body(Vec::new()),
        entry.wire_len()
    );
}
