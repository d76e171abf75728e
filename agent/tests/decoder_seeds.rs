//! Regression test over hostile inputs for the frame decoder: the seeds below plus a fixed,
//! deterministic stream of mutations of valid frames. The same check the fuzz target runs
//! (`agent/fuzz`), so anything the fuzzer finds can be pinned here as a seed.

use nook_agent::protocol::{
    encode_frame, exercise_decoder, GuestMessage, HostMessage, ProcessSpec, StartSpec, MAX_BODY,
};

fn seeds() -> Vec<Vec<u8>> {
    let start = HostMessage::Start(StartSpec {
        process: ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["A=b".into()],
            cwd: "/".into(),
            user: "root".into(),
            terminal: false,
            rows: 0,
            cols: 0,
            ..ProcessSpec::default()
        },
        hostname: "h".into(),
        resolv_conf: String::new(),
        hosts: "127.0.0.1\tlocalhost\n".into(),
        mounts: vec![nook_agent::protocol::GuestMount::Tmpfs {
            target: "/tmp".into(),
            size: Some(1 << 20),
            mode: None,
            readonly: false,
        }],
        limits: nook_agent::protocol::GuestLimits {
            pids_max: Some(64),
            rlimits: vec![nook_agent::protocol::Rlimit {
                resource: 7,
                soft: 64,
                hard: 64,
            }],
        },
        security: nook_agent::protocol::GuestSecurity {
            caps: Some(1),
            no_new_privs: true,
            seccomp: vec![vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f]],
        },
        keep_id: None,
    });
    vec![
        Vec::new(),
        vec![0],
        vec![0xff; 9],
        // Largest legal length announced, no body.
        [&(MAX_BODY as u32).to_le_bytes()[..], &[0x03, 1, 0, 0, 0]].concat(),
        // One byte over.
        [
            &(MAX_BODY as u32 + 1).to_le_bytes()[..],
            &[0x03, 1, 0, 0, 0],
        ]
        .concat(),
        // u32::MAX length.
        vec![0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0],
        // Start whose argv count is huge.
        [
            &8u32.to_le_bytes()[..],
            &[0x01, 1, 0, 0, 0],
            &u32::MAX.to_le_bytes(),
            &[0; 4],
        ]
        .concat(),
        encode_frame(1, &start).unwrap(),
        encode_frame(3, &GuestMessage::Stdout(b"x".to_vec())).unwrap(),
        [
            encode_frame(1, &HostMessage::Signal(9)).unwrap(),
            encode_frame(2, &HostMessage::Resize { rows: 1, cols: 1 }).unwrap(),
        ]
        .concat(),
    ]
}

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn hostile_seeds_never_panic() {
    for seed in seeds() {
        exercise_decoder(&seed);
    }
}

#[test]
fn mutated_frames_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut data = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        let edits = 1 + rng.next() % 4;
        for _ in 0..edits {
            match rng.next() % 4 {
                0 if !data.is_empty() => {
                    let i = (rng.next() % data.len() as u64) as usize;
                    data[i] = rng.next() as u8;
                }
                1 => data.push(rng.next() as u8),
                2 if !data.is_empty() => {
                    let i = (rng.next() % data.len() as u64) as usize;
                    data.truncate(i);
                }
                _ => {
                    let i = (rng.next() % (data.len() as u64 + 1)) as usize;
                    let other = &seeds[(rng.next() % seeds.len() as u64) as usize];
                    data.splice(i..i, other.iter().copied());
                }
            }
        }
        exercise_decoder(&data);
    }
}
