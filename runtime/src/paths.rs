//! Where nook keeps its files.
//!
//! Store root: `$NOOK_ROOT`, else `$XDG_DATA_HOME/nook`, else `~/.local/share/nook`
//! (`/var/lib/nook` for root). Runtime state: `$XDG_RUNTIME_DIR/nook`, else
//! `/run/user/<uid>/nook` when it exists, else `<store>/run`. Cache: `$XDG_CACHE_HOME/nook`, else
//! `~/.cache/nook`. Configuration: `$XDG_CONFIG_HOME/nook`, else `~/.config/nook`.

use std::env;
use std::path::PathBuf;

/// An environment lookup, so the rules are testable without touching the process environment.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
    fn uid(&self) -> u32;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        env::var(key).ok().filter(|v| !v.is_empty())
    }
    fn uid(&self) -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
}

fn home(env: &dyn Env) -> PathBuf {
    env.var("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The store root (images, rootfs cache, containers).
pub fn store_root(env: &dyn Env) -> PathBuf {
    if let Some(root) = env.var("NOOK_ROOT") {
        return PathBuf::from(root);
    }
    if let Some(data) = env.var("XDG_DATA_HOME") {
        return PathBuf::from(data).join("nook");
    }
    if env.uid() == 0 {
        return PathBuf::from("/var/lib/nook");
    }
    home(env).join(".local/share/nook")
}

/// The directory for sockets and pid files.
pub fn runtime_dir(env: &dyn Env) -> PathBuf {
    if let Some(dir) = env.var("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("nook");
    }
    let run_user = PathBuf::from(format!("/run/user/{}", env.uid()));
    if run_user.is_dir() {
        return run_user.join("nook");
    }
    store_root(env).join("run")
}

/// The cache of slow artifacts (guest kernel, templates), keyed by their inputs.
pub fn cache_dir(env: &dyn Env) -> PathBuf {
    if let Some(dir) = env.var("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("nook");
    }
    home(env).join(".cache/nook")
}

/// The user's configuration (`config.toml`).
pub fn config_dir(env: &dyn Env) -> PathBuf {
    if let Some(dir) = env.var("XDG_CONFIG_HOME") {
        return PathBuf::from(dir).join("nook");
    }
    home(env).join(".config/nook")
}

/// An environment made up by tests: the given variables and uid, nothing from the process.
#[cfg(test)]
pub(crate) struct FakeEnv {
    vars: std::collections::HashMap<String, String>,
    uid: u32,
}

#[cfg(test)]
impl FakeEnv {
    pub(crate) fn new<V: Into<String>>(
        vars: impl IntoIterator<Item = (&'static str, V)>,
        uid: u32,
    ) -> Self {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect(),
            uid,
        }
    }

    /// Sets (or replaces) one variable.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<String>) {
        self.vars.insert(key.to_string(), value.into());
    }
}

#[cfg(test)]
impl Env for FakeEnv {
    fn var(&self, key: &str) -> Option<String> {
        self.vars.get(key).cloned()
    }
    fn uid(&self) -> u32 {
        self.uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_root_prefers_nook_root_then_xdg_then_home() {
        let env = FakeEnv::new(
            [("NOOK_ROOT", "/a"), ("XDG_DATA_HOME", "/b"), ("HOME", "/h")],
            1000,
        );
        assert_eq!(store_root(&env), PathBuf::from("/a"));
        let env = FakeEnv::new([("XDG_DATA_HOME", "/b"), ("HOME", "/h")], 1000);
        assert_eq!(store_root(&env), PathBuf::from("/b/nook"));
        let env = FakeEnv::new([("HOME", "/h")], 1000);
        assert_eq!(store_root(&env), PathBuf::from("/h/.local/share/nook"));
        let env = FakeEnv::new([("HOME", "/root")], 0);
        assert_eq!(store_root(&env), PathBuf::from("/var/lib/nook"));
    }

    #[test]
    fn cache_dir_follows_xdg() {
        let env = FakeEnv::new([("XDG_CACHE_HOME", "/c"), ("HOME", "/h")], 1000);
        assert_eq!(cache_dir(&env), PathBuf::from("/c/nook"));
        let env = FakeEnv::new([("HOME", "/h")], 1000);
        assert_eq!(cache_dir(&env), PathBuf::from("/h/.cache/nook"));
    }

    #[test]
    fn config_dir_follows_xdg() {
        let env = FakeEnv::new([("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")], 1000);
        assert_eq!(config_dir(&env), PathBuf::from("/c/nook"));
        let env = FakeEnv::new([("HOME", "/h")], 1000);
        assert_eq!(config_dir(&env), PathBuf::from("/h/.config/nook"));
    }
}
