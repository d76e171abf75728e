//! Feeds arbitrary bytes to the frame decoder of both directions; a panic or an accepted frame
//! that does not survive re-encoding is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nook_agent::protocol::exercise_decoder(data);
});
