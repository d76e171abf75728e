//! Containers: their records and state, the rules of their lifecycle, their logs and the
//! monitor process that supervises each running one.

pub mod attach;
pub mod cp;
pub mod engine;
pub mod gc;
pub mod id;
pub mod lifecycle;
pub mod log;
pub mod monitor;
pub mod mount_args;
pub mod record;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod volumes;
