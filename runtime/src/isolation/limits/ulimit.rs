//! `--ulimit NAME=SOFT[:HARD]`: docker's resource limits of a container's processes (setrlimit
//! before the workload runs, and before every `exec`'d process runs). Rootless, a hard limit can
//! only be lowered: raising one above the user's own needs CAP_SYS_RESOURCE on the host, and the
//! start fails saying so.

use serde::{Deserialize, Serialize};

use super::LimitsError;

/// One `--ulimit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// docker's name (`nofile`, `nproc`, ...).
    pub name: String,
    /// -1: unlimited.
    pub soft: i64,
    pub hard: i64,
}

/// docker's names and the resources they stand for.
const NAMES: [(&str, u32); 16] = [
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

impl Ulimit {
    /// Parses docker's `NAME=SOFT[:HARD]`.
    pub fn parse(s: &str) -> Result<Ulimit, LimitsError> {
        let bad = |why: String| LimitsError::Ulimit(format!("{s:?}: {why}"));
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=SOFT[:HARD]".into()))?;
        if !NAMES.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!("invalid ulimit type: {name}")));
        }
        let number = |v: &str| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= -1)
                .ok_or_else(|| bad(format!("invalid ulimit value: {v}")))
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (number(s)?, number(h)?),
            None => {
                let v = number(values)?;
                (v, v)
            }
        };
        if hard != -1 && (soft == -1 || soft > hard) {
            return Err(bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }

    /// The resource and the soft and hard values setrlimit takes.
    pub fn rlimit(&self) -> Option<(u32, u64, u64)> {
        let resource = NAMES.iter().find(|(n, _)| *n == self.name)?.1;
        let value = |v: i64| if v < 0 { libc::RLIM_INFINITY } else { v as u64 };
        Some((resource, value(self.soft), value(self.hard)))
    }

    /// The `--ulimit` that makes the setrlimit call `resource`, `soft`, `hard` (values past
    /// `i64::MAX`, `RLIM_INFINITY` among them, are unlimited); none for an unknown resource.
    pub fn from_rlimit(resource: u32, soft: u64, hard: u64) -> Option<Ulimit> {
        let name = NAMES.iter().find(|(_, r)| *r == resource)?.0;
        let value = |v: u64| i64::try_from(v).unwrap_or(-1);
        Some(Ulimit {
            name: name.to_string(),
            soft: value(soft),
            hard: value(hard),
        })
    }

    /// The setrlimit calls of `ulimits`.
    pub fn rlimits(ulimits: &[Ulimit]) -> Vec<(u32, u64, u64)> {
        ulimits.iter().filter_map(Ulimit::rlimit).collect()
    }

    /// docker's form, for `inspect`.
    pub fn to_docker(&self) -> serde_json::Value {
        serde_json::json!({"Name": self.name, "Soft": self.soft, "Hard": self.hard})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rlimit_converts_to_the_ulimit_that_makes_it() {
        for (resource, soft, hard) in [
            (libc::RLIMIT_NOFILE, 1024, 4096),
            (libc::RLIMIT_CORE, 0, libc::RLIM_INFINITY),
            (libc::RLIMIT_STACK, libc::RLIM_INFINITY, libc::RLIM_INFINITY),
        ] {
            let u = Ulimit::from_rlimit(resource, soft, hard).unwrap();
            assert_eq!(u.rlimit(), Some((resource, soft, hard)), "{u:?}");
        }
        let u = Ulimit::from_rlimit(libc::RLIMIT_NPROC, 10, libc::RLIM_INFINITY).unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nproc", 10, -1));
        assert_eq!(Ulimit::from_rlimit(16, 1, 1), None);
    }

    #[test]
    fn dockers_forms_and_errors() {
        let u = Ulimit::parse("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert_eq!(u.rlimit(), Some((libc::RLIMIT_NOFILE, 1024, 2048)));
        let u = Ulimit::parse("nproc=64").unwrap();
        assert_eq!((u.soft, u.hard), (64, 64));
        let u = Ulimit::parse("core=-1").unwrap();
        assert_eq!(u.rlimit().unwrap().2, libc::RLIM_INFINITY);
        for (bad, why) in [
            ("files=1", "invalid ulimit type: files"),
            ("nofile", "expected NAME=SOFT[:HARD]"),
            ("nofile=x", "invalid ulimit value: x"),
            (
                "nofile=2048:1024",
                "must be less than or equal to hard limit",
            ),
        ] {
            let e = Ulimit::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
