//! OCI distribution (registry v2) client: `nook pull`, `nook push`, `nook login`.
//!
//! - [`endpoint`]: which host, scheme and TLS policy a reference's registry is reached with.
//! - [`client`]: the HTTP client, with timeouts and retries with backoff.
//! - [`auth`]: `WWW-Authenticate` challenges, basic and bearer-token authorization.
//! - [`credentials`]: nook's auth file, and docker's and containers' files read as well.
//! - [`manifest`]: manifests and indexes parsed and bounded, platform selection.
//! - [`download`]: one blob streamed into the store, verified on the fly, resumable.
//! - [`pull`] and [`push`]: the two transfers; [`progress`]: what the user sees meanwhile.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod download;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
mod session;
mod verify;
mod workers;

pub use endpoint::{Endpoint, TlsPolicy};
pub use error::{RegistryError, Repo};
pub use manifest::Platform;
pub use pull::{pull, PullOptions, Pulled};
pub use push::{push, PushOptions, Pushed};
pub use session::verify_login;
