//! nook-agent: the host<->guest protocol (this library, shared with the host) and the guest's
//! PID 1 (the `nook-agent` binary).
//!
//! The library also holds the agent's process-supervision core and its guest-side pieces, so
//! that they are tested natively: the supervisor runs over a socketpair on the host exactly as
//! it runs over the virtio console in the guest.
//!
//! This crate never depends on the runtime or on the VMM.

pub mod client;
pub mod confine;
pub mod copy;
pub mod errors;
pub mod guest;
pub mod layer;
pub mod process_env;
pub mod protocol;
pub mod supervisor;
#[doc(hidden)]
pub mod testing;
pub mod user;
