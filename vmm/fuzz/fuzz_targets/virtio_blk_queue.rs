//! virtio-blk: arbitrary descriptor table, avail ring and guest memory through request parsing
//! and disk I/O.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nook_vmm::fuzzing::block_queue(data));
