//! virtio-console (the agent channel): arbitrary rx/tx rings, host bytes and guest memory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nook_vmm::fuzzing::console_queue(data));
