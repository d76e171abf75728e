//! Fuzz target: arbitrary bytes as tar layers into the EROFS writer (see ../body.rs).

#![no_main]

#[path = "../body.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = body::run(data);
});
