//! nook-agent: the host<->guest protocol (this library, shared with the host) and the guest's
//! PID 1 (the `nook-agent` binary).
//!
//! This crate never depends on the runtime or on the VMM.

pub mod protocol;
