//! virtio-net: arbitrary rx/tx rings, guest memory and backend bytes through the transmit and
//! receive frame paths (descriptor parsing, framing, mergeable buffers, a hanging-up backend).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nook_vmm::fuzzing::net_queue(data));
