//! Emulated devices: the legacy PC pieces and the virtio devices.

pub mod legacy;
pub mod virtio;
