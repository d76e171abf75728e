//! Authorization: the `WWW-Authenticate` challenge a registry answers 401 with, basic
//! authorization, and bearer tokens fetched from the challenge's realm (the distribution token
//! protocol, as Docker Hub, GHCR and Quay use it).

use ureq::http::Method;

use super::client::{self, Client, Request};
use super::credentials::Credential;
use super::error::{RegistryError, Repo};

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header: `Scheme k="v", k2=v2, Scheme2 ...`. Unknown schemes are
/// skipped; malformed input yields what could be read, never a panic.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    let mut rest = header.trim();
    let flush = |cur: Option<(String, Vec<(String, String)>)>, out: &mut Vec<Challenge>| {
        let Some((scheme, params)) = cur else { return };
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => out.push(Challenge::Basic {
                realm: get("realm").unwrap_or_default(),
            }),
            "bearer" => {
                if let Some(realm) = get("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                    })
                }
            }
            _ => {}
        }
    };
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let after = rest[end..].trim_start_matches([' ', '\t']);
        if token.is_empty() {
            break;
        }
        if let Some(value_part) = after.strip_prefix('=') {
            // A parameter of the current challenge.
            let (value, remaining) = parse_value(value_part.trim_start());
            if let Some((_, params)) = current.as_mut() {
                params.push((token.to_string(), value));
            }
            rest = remaining;
        } else {
            // A new scheme.
            flush(current.take(), &mut out);
            current = Some((token.to_string(), Vec::new()));
            rest = after;
        }
    }
    flush(current, &mut out);
    out
}

/// A quoted string (with backslash escapes) or a token; returns it and the rest.
fn parse_value(s: &str) -> (String, &str) {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
        (s[..end].to_string(), &s[end..])
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fetches a bearer token for `scope` (none: just checks the credentials, as login does).
pub fn fetch_token(
    client: &Client,
    insecure: bool,
    repo: &Repo,
    challenge_realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    cred: Option<&Credential>,
) -> Result<String, RegistryError> {
    let mut url = challenge_realm.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    let mut add = |k: &str, v: &str| {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(&query_escape(v));
        sep = '&';
    };
    if let Some(s) = service {
        add("service", s);
    }
    if let Some(s) = scope {
        add("scope", s);
    }
    if let Some(c) = cred {
        add("account", &c.username);
    }
    let mut req = Request::new(Method::GET, url);
    if let Some(c) = cred {
        req = req.header("Authorization", c.basic_header());
    }
    let token_err = |source: RegistryError| RegistryError::Token {
        repo: repo.clone(),
        realm: challenge_realm.to_string(),
        source: Box::new(source),
    };
    let resp = client.send(insecure, &req).map_err(|f| {
        token_err(RegistryError::Transport {
            repo: repo.clone(),
            what: "the token request".into(),
            attempts: f.attempts,
            source: Box::new(f.error),
        })
    })?;
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        let message = client::error_message(&client::read_error_body(resp));
        return Err(RegistryError::Unauthorized {
            repo: repo.clone(),
            message,
        });
    }
    if status != 200 {
        let message = client::error_message(&client::read_error_body(resp));
        return Err(token_err(RegistryError::Status {
            repo: repo.clone(),
            what: "the token request".into(),
            status,
            message,
        }));
    }
    #[derive(serde::Deserialize)]
    struct TokenReply {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
    }
    let bad = || RegistryError::BadToken {
        repo: repo.clone(),
        realm: challenge_realm.to_string(),
    };
    let body = resp
        .into_body()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|_| bad())?;
    let reply: TokenReply = serde_json::from_slice(&body).map_err(|_| bad())?;
    let token = if reply.token.is_empty() {
        reply.access_token
    } else {
        reply.token
    };
    if token.is_empty() {
        return Err(bad());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenges(h),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
    }

    #[test]
    fn parses_basic_and_several_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: "Registry Realm".into()
            }]
        );
        let h = r#"Negotiate abc, Basic realm=x, Bearer realm="r\"q", scope="a,b""#;
        assert_eq!(
            parse_challenges(h),
            vec![
                Challenge::Basic { realm: "x".into() },
                Challenge::Bearer {
                    realm: "r\"q".into(),
                    service: None,
                    scope: Some("a,b".into())
                }
            ]
        );
        // Garbage never panics.
        for junk in [
            "",
            "=",
            "Bearer",
            "Bearer realm",
            "Bearer realm=\"unterminated",
            ",,,",
        ] {
            let _ = parse_challenges(junk);
        }
        assert!(parse_challenges("Bearer service=x").is_empty());
    }

    #[test]
    fn escapes_query_values() {
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
