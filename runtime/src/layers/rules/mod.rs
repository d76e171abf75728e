//! The OCI layer rules, owned here and nowhere else: what a tar entry of a layer means from its
//! path ([`classify()`]: an entry, a whiteout, an opaque marker, bookkeeping to skip, or a refused
//! name), how entry paths are normalized ([`path`]), and the order in which a layer's entries
//! change the layers below ([`apply()`], driving an [`Output`]). The whiteout names themselves are
//! the agent crate's ([`nook_agent::layer::whiteout`]), whose layer writer produces them.

pub mod apply;
pub mod classify;
pub mod path;

pub use apply::{apply, Existing, Output};
pub use classify::{classify, Class, Refused};
