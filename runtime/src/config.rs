//! The user's defaults, from `config.toml` in the configuration directory (see
//! [`crate::paths::config_dir`]). Command-line flags and `NOOK_*` variables override them.
//!
//! ```toml
//! # Run every container in a microVM unless --isolation says otherwise.
//! isolation = "vm"
//! # Where container cgroups go (a directory delegated to this user): limits hold there.
//! cgroup_parent = "/sys/fs/cgroup/nook-alice"
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::paths::{self, Env};

/// The settings a `config.toml` may hold. Unknown keys are errors, so a typo is not silently
/// ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The default `--isolation`: `container` or `vm`.
    pub isolation: Option<IsolationKind>,
    /// A cgroup v2 directory delegated to the user (absolute, or relative to /sys/fs/cgroup),
    /// where the namespace column makes each container's cgroup; without it, the user's
    /// systemd manager's transient scopes, when it runs.
    pub cgroup_parent: Option<PathBuf>,
}

/// The two isolation columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationKind {
    Container,
    Vm,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// The file the configuration is read from.
    pub fn path(env: &dyn Env) -> PathBuf {
        paths::config_dir(env).join("config.toml")
    }

    /// Reads the user's configuration; no file means every default.
    pub fn load(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::load_from(&Config::path(env))
    }

    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_default_is_read() {
        assert_eq!(
            Config::parse("# comment\nisolation = \"vm\"\n").unwrap(),
            Config {
                isolation: Some(IsolationKind::Vm),
                cgroup_parent: None,
            }
        );
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(
            Config::parse("cgroup_parent = \"nook-user\"\n")
                .unwrap()
                .cgroup_parent,
            Some(PathBuf::from("nook-user"))
        );
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        assert!(Config::parse("isolaton = \"vm\"").is_err());
        assert!(Config::parse("isolation = \"kvm\"").is_err());
    }

    #[test]
    fn a_missing_file_is_the_default_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Config::load_from(&path).unwrap(), Config::default());
        std::fs::write(&path, "isolation = 3").unwrap();
        let err = Config::load_from(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
    }
}
