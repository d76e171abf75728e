//! Error reporting shared by the library's parts: one definition, the agent crate's.

pub use nook_agent::errors::chain;
