//! Image configs: the `--change` instructions `nook import` accepts (the Dockerfile subset
//! `docker import --change` supports) and the config of a freshly imported image.

use std::collections::HashMap;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os,
    RootFsBuilder,
};

use super::digest::Digest;

/// Why a `--change` instruction was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("--change {change:?}: the instruction is empty")]
    Empty { change: String },
    #[error("--change {change:?}: {instruction} is not supported (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR)")]
    Unsupported { change: String, instruction: String },
    #[error("--change {change:?}: {reason}")]
    Invalid { change: String, reason: String },
}

/// Applies one Dockerfile-style instruction (`CMD ["sh"]`, `ENV A=1 B=2`, ...) to `config`.
pub fn apply_change(config: &mut Config, change: &str) -> Result<(), ChangeError> {
    let trimmed = change.trim();
    let (instruction, args) = match trimmed.split_once(char::is_whitespace) {
        Some((i, a)) => (i, a.trim()),
        None => (trimmed, ""),
    };
    if instruction.is_empty() {
        return Err(ChangeError::Empty {
            change: change.to_string(),
        });
    }
    let invalid = |reason: &str| ChangeError::Invalid {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    let need_args = || {
        if args.is_empty() {
            Err(invalid(&format!(
                "{} needs an argument",
                instruction.to_uppercase()
            )))
        } else {
            Ok(())
        }
    };
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => {
            need_args()?;
            config.set_cmd(Some(command_form(args).map_err(|r| invalid(&r))?));
        }
        "ENTRYPOINT" => {
            need_args()?;
            config.set_entrypoint(Some(command_form(args).map_err(|r| invalid(&r))?));
        }
        "ENV" => {
            need_args()?;
            let pairs = key_values(args, "ENV").map_err(|r| invalid(&r))?;
            let mut env = config.env().clone().unwrap_or_default();
            for (key, value) in pairs {
                let prefix = format!("{key}=");
                env.retain(|e| !e.starts_with(&prefix));
                env.push(format!("{key}={value}"));
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            need_args()?;
            let pairs = key_values(args, "LABEL").map_err(|r| invalid(&r))?;
            let mut labels = config.labels().clone().unwrap_or_default();
            labels.extend(pairs);
            config.set_labels(Some(labels));
        }
        "EXPOSE" => {
            need_args()?;
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            for word in words(args).map_err(|r| invalid(&r))? {
                let port = normalize_port(&word).map_err(|r| invalid(&r))?;
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            config.set_exposed_ports(Some(ports));
        }
        "VOLUME" => {
            need_args()?;
            let list = if args.starts_with('[') {
                json_array(args).map_err(|r| invalid(&r))?
            } else {
                words(args).map_err(|r| invalid(&r))?
            };
            let mut volumes = config.volumes().clone().unwrap_or_default();
            for v in list {
                if v.is_empty() {
                    return Err(invalid("VOLUME paths must not be empty"));
                }
                if !volumes.contains(&v) {
                    volumes.push(v);
                }
            }
            config.set_volumes(Some(volumes));
        }
        "WORKDIR" => {
            need_args()?;
            let dir = single_word(args).map_err(|r| invalid(&r))?;
            let dir = if dir.starts_with('/') {
                dir
            } else {
                let base = config.working_dir().clone().unwrap_or_else(|| "/".into());
                format!("{}/{}", base.trim_end_matches('/'), dir)
            };
            config.set_working_dir(Some(dir));
        }
        "USER" => {
            need_args()?;
            config.set_user(Some(single_word(args).map_err(|r| invalid(&r))?));
        }
        "STOPSIGNAL" => {
            need_args()?;
            config.set_stop_signal(Some(single_word(args).map_err(|r| invalid(&r))?));
        }
        _ => {
            return Err(ChangeError::Unsupported {
                change: change.to_string(),
                instruction: instruction.to_string(),
            })
        }
    }
    Ok(())
}

/// The exec form (`["a","b"]`, a JSON array of strings) or the shell form (`a b`, run through
/// `/bin/sh -c`), as Dockerfile CMD and ENTRYPOINT take them.
fn command_form(args: &str) -> Result<Vec<String>, String> {
    if args.starts_with('[') {
        if let Ok(list) = json_array(args) {
            return Ok(list);
        }
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), args.to_string()])
}

fn json_array(args: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(args)
        .map_err(|e| format!("{args:?} is not a JSON array of strings: {e}"))
}

/// `KEY=VALUE ...` pairs (values may be quoted), or the legacy `KEY VALUE` form.
fn key_values(args: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let list = words(args)?;
    if !list[0].contains('=') {
        // Legacy form: the first word is the key, the rest of the line the value.
        let (key, value) = args.split_once(char::is_whitespace).ok_or_else(|| {
            format!("{what} {args:?} has a name but no value (use {what} NAME=VALUE)")
        })?;
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    list.into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("{what} argument {w:?} is not NAME=VALUE"))?;
            if k.is_empty() {
                return Err(format!("{what} argument {w:?} has an empty name"));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Splits on whitespace, honouring double and single quotes and backslash escapes.
fn words(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                let quote = c;
                loop {
                    match chars.next() {
                        Some(q) if q == quote => break,
                        Some('\\') if quote == '"' => match chars.next() {
                            Some(e) => current.push(e),
                            None => return Err(format!("unterminated quote in {args:?}")),
                        },
                        Some(other) => current.push(other),
                        None => return Err(format!("unterminated quote in {args:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    current.push(e);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        out.push(current);
    }
    if out.is_empty() {
        return Err("missing argument".into());
    }
    Ok(out)
}

fn single_word(args: &str) -> Result<String, String> {
    let mut list = words(args)?;
    if list.len() != 1 {
        return Err(format!("expected one argument, got {}", list.len()));
    }
    Ok(list.remove(0))
}

/// `80` -> `80/tcp`; `53/udp` stays; ranges `8000-8002/tcp` are kept as one entry.
fn normalize_port(word: &str) -> Result<String, String> {
    let (port, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "EXPOSE {word:?}: protocol must be tcp, udp or sctp"
        ));
    }
    let valid_number = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match port.split_once('-') {
        Some((a, b)) => valid_number(a) && valid_number(b),
        None => valid_number(port),
    };
    if !ok {
        return Err(format!(
            "EXPOSE {word:?}: {port:?} is not a port number (1-65535)"
        ));
    }
    Ok(format!("{port}/{proto}"))
}

/// The Go architecture name of this machine, as OCI configs spell it.
pub fn host_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        "x86" => Arch::i386,
        "riscv64" => Arch::RISCV64,
        "powerpc64" => Arch::PowerPC64le,
        "s390x" => Arch::s390x,
        other => Arch::Other(other.to_string()),
    }
}

/// Errors of building a config.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the image config")]
pub struct ConfigBuildError(#[source] pub oci_spec::OciSpecError);

/// The config of a one-layer image made from a root filesystem tarball.
pub fn imported_config(
    config: Config,
    diff_id: &Digest,
    created: &str,
    comment: &str,
    created_by: Option<&str>,
) -> Result<ImageConfiguration, ConfigBuildError> {
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![diff_id.to_string()])
        .build()
        .map_err(ConfigBuildError)?;
    let mut history = HistoryBuilder::default()
        .created(created.to_string())
        .comment(comment.to_string());
    if let Some(by) = created_by {
        history = history.created_by(by.to_string());
    }
    ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(host_arch())
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(vec![history.build().map_err(ConfigBuildError)?])
        .build()
        .map_err(ConfigBuildError)
}

/// An empty runtime config (what `docker import` starts from).
pub fn empty_config() -> Config {
    ConfigBuilder::default()
        .build()
        .unwrap_or_else(|_| Config::default())
}

/// Labels as a sorted list, for stable output.
pub fn sorted_labels(labels: &HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut list: Vec<_> = labels.iter().collect();
    list.sort();
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<Config, ChangeError> {
        let mut c = empty_config();
        for ch in changes {
            apply_change(&mut c, ch)?;
        }
        Ok(c)
    }

    #[test]
    fn cmd_and_entrypoint_forms() {
        let c = apply(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app --flag",
        ])
        .unwrap();
        assert_eq!(c.cmd().as_deref().unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(
            c.entrypoint().as_deref().unwrap(),
            ["/bin/sh", "-c", "/bin/app --flag"]
        );
        // Lower-case instructions are accepted, like Dockerfiles.
        let c = apply(&[r#"cmd ["x"]"#]).unwrap();
        assert_eq!(c.cmd().as_deref().unwrap(), ["x"]);
    }

    #[test]
    fn env_forms_and_override() {
        let c = apply(&[
            r#"ENV A=1 B="two words" C=x\ y"#,
            "ENV LEGACY some value",
            "ENV A=3",
        ])
        .unwrap();
        assert_eq!(
            c.env().as_deref().unwrap(),
            ["B=two words", "C=x y", "LEGACY=some value", "A=3"]
        );
    }

    #[test]
    fn labels_ports_volumes_workdir_user() {
        let c = apply(&[
            r#"LABEL a=b "c d"=e"#,
            "EXPOSE 80 53/udp 8000-8002",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "STOPSIGNAL SIGTERM",
        ])
        .unwrap();
        let labels = c.labels().clone().unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c d"], "e");
        assert_eq!(
            c.exposed_ports().as_deref().unwrap(),
            ["80/tcp", "53/udp", "8000-8002/tcp"]
        );
        assert_eq!(
            c.volumes().as_deref().unwrap(),
            ["/data", "/logs", "/cache"]
        );
        assert_eq!(c.working_dir().as_deref(), Some("/srv/app"));
        assert_eq!(c.user().as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal().as_deref(), Some("SIGTERM"));
    }

    #[test]
    fn bad_changes_name_the_change() {
        for (change, needle) in [
            ("RUN make", "RUN is not supported"),
            ("", "empty"),
            ("CMD", "needs an argument"),
            ("EXPOSE 99999", "not a port number"),
            ("EXPOSE 80/icmp", "protocol"),
            ("ENV =x", "empty name"),
            ("ENV LONELY", "no value"),
            (r#"ENV A="unterminated"#, "unterminated quote"),
            ("USER a b", "expected one argument"),
            (r#"VOLUME ["/a", 3]"#, "JSON array"),
        ] {
            let err = apply(&[change]).unwrap_err().to_string();
            assert!(err.contains(needle), "{change}: {err}");
            assert!(err.contains(&format!("{change:?}")), "{change}: {err}");
        }
    }

    #[test]
    fn imported_config_has_one_layer_and_history() {
        let diff = Digest::of(b"tar");
        let c = imported_config(
            apply(&[r#"CMD ["sh"]"#]).unwrap(),
            &diff,
            "2024-01-01T00:00:00Z",
            "Imported from -",
            None,
        )
        .unwrap();
        assert_eq!(c.rootfs().diff_ids(), &vec![diff.to_string()]);
        assert_eq!(c.os(), &Os::Linux);
        let json: serde_json::Value = serde_json::from_str(&c.to_string().unwrap()).unwrap();
        assert_eq!(json["config"]["Cmd"][0], "sh");
        assert_eq!(json["history"][0]["comment"], "Imported from -");
    }
}
