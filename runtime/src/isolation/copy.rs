//! Copies of file trees between the host and a container's root (`nook cp`, and a volume's
//! first fill from the image, docker's copy-up): the agent crate's one implementation
//! ([`nook_agent::copy`]), which the guest agent runs too.

pub use nook_agent::copy::*;
