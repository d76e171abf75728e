//! The microVM column's host-side pieces that do not belong to the VMM itself.

pub mod initramfs;
