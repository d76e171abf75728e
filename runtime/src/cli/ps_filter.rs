//! `nook ps --filter KEY=VALUE`: docker's container filters. Values of one key are alternatives,
//! different keys must all match.

use std::collections::BTreeMap;

use nook::container::state::Status;
use nook::container::store::Container;

/// The keys `--filter` knows.
const KEYS: [&str; 6] = ["id", "name", "status", "exited", "ancestor", "isolation"];

#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the `--filter` arguments, refusing unknown keys as docker does.
    pub fn parse(args: &[String]) -> anyhow::Result<Filters> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for arg in args {
            let (key, value) = arg.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("bad format of filter {arg:?} (expected name=value)")
            })?;
            anyhow::ensure!(
                KEYS.contains(&key),
                "invalid filter {key:?}: known filters are {}",
                KEYS.join(", ")
            );
            if key == "status" {
                anyhow::ensure!(
                    ["created", "running", "exited"].contains(&value),
                    "invalid filter status={value:?}: use created, running or exited"
                );
            }
            if key == "exited" {
                value.parse::<i32>().map_err(|_| {
                    anyhow::anyhow!("invalid filter exited={value:?}: not an exit code")
                })?;
            }
            map.entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
        Ok(Filters(map))
    }

    /// Whether a filter names the states to show (`status`, `exited`): then, as with docker,
    /// stopped containers are listed without `-a`.
    pub fn selects_state(&self) -> bool {
        self.0.contains_key("status") || self.0.contains_key("exited")
    }

    /// Whether the container, in `status`, passes every filter.
    pub fn matches(&self, c: &Container, status: &Status) -> bool {
        self.0.iter().all(|(key, values)| {
            values.iter().any(|v| match key.as_str() {
                "id" => c.id().starts_with(v.as_str()),
                "name" => c.name().contains(v.as_str()),
                "status" => status.name() == v,
                "exited" => matches!(status, Status::Exited { code, .. } if code.to_string() == *v),
                "ancestor" => ancestor(&c.config.image, &c.config.image_id, v),
                "isolation" => c.config.isolation.name() == v.as_str(),
                _ => false,
            })
        })
    }
}

/// `ancestor=busybox` matches containers of `busybox`, `busybox:latest` or the image's id.
fn ancestor(image: &str, image_id: &str, wanted: &str) -> bool {
    let tagged = |r: &str| {
        if r.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            r.to_string()
        } else {
            format!("{r}:latest")
        }
    };
    let id = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    let want = wanted.strip_prefix("sha256:").unwrap_or(wanted);
    tagged(image) == tagged(wanted) || (want.len() >= 4 && id.starts_with(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Filters::parse(&["colour=red".into()]).is_err());
        assert!(Filters::parse(&["status".into()]).is_err());
        assert!(Filters::parse(&["status=sleeping".into()]).is_err());
        assert!(Filters::parse(&["exited=zero".into()]).is_err());
        assert!(Filters::parse(&["status=exited".into(), "exited=0".into()]).is_ok());
    }

    #[test]
    fn ancestors_match_by_name_tag_or_id() {
        assert!(ancestor("busybox", "sha256:abcdef", "busybox:latest"));
        assert!(ancestor("busybox:latest", "sha256:abcdef", "busybox"));
        assert!(ancestor("busybox", "sha256:abcdef", "abcd"));
        assert!(!ancestor("busybox", "sha256:abcdef", "ab"));
        assert!(!ancestor("busybox:1", "sha256:abcdef", "busybox"));
        assert!(ancestor(
            "localhost:5000/x",
            "sha256:ab",
            "localhost:5000/x:latest"
        ));
    }
}
