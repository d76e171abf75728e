//! The HTTP client registries are spoken to with: connect and per-read timeouts, and retries
//! with exponential backoff on connection errors and 5xx/429 answers (idempotent requests only;
//! uploads retry at their own level, where a new upload session can be started).
//!
//! Tunables (environment): `NOOK_REGISTRY_TIMEOUT` seconds for connecting and for each read
//! (default 30), `NOOK_REGISTRY_RETRIES` retries after the first attempt (default 3).

use std::time::Duration;

use ureq::http::{Method, Response};
use ureq::tls::TlsConfig;
use ureq::{Agent, Body};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// The first backoff; each retry doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A request's description, so that it can be sent again on a retry.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: String) -> Request<'a> {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: &[],
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

/// A request that failed at the transport level on every attempt.
#[derive(Debug)]
pub struct TransportFailure {
    pub attempts: u32,
    pub error: ureq::Error,
}

/// Shared by every transfer of one command: two agents (verifying TLS or not) and the policy.
#[derive(Clone)]
pub struct Client {
    verified: Agent,
    insecure: Agent,
    retries: u32,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client with the timeouts and retries of the environment (see the module docs).
    pub fn from_env() -> Client {
        let env_u64 = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let timeout = env_u64("NOOK_REGISTRY_TIMEOUT")
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let retries = env_u64("NOOK_REGISTRY_RETRIES").map_or(DEFAULT_RETRIES, |r| r as u32);
        Client::new(timeout, retries)
    }

    pub fn new(timeout: Duration, retries: u32) -> Client {
        let agent = |verify: bool| -> Agent {
            Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(timeout))
                .timeout_per_read(Some(timeout))
                .timeout_per_write(Some(timeout))
                .user_agent(concat!("nook/", env!("CARGO_PKG_VERSION")))
                // Registries redirect blob reads to storage; credentials never follow (ureq's
                // default), and the body is read as is (no transparent decompression).
                .max_redirects(10)
                .tls_config(TlsConfig::builder().disable_verification(!verify).build())
                .build()
                .into()
        };
        Client {
            verified: agent(true),
            insecure: agent(false),
            retries,
            timeout,
        }
    }

    /// The agent for a TLS policy (`insecure`: no certificate checks).
    pub fn agent(&self, insecure: bool) -> &Agent {
        if insecure {
            &self.insecure
        } else {
            &self.verified
        }
    }

    /// How many attempts a retried request makes at most.
    pub fn attempts(&self) -> u32 {
        self.retries + 1
    }

    /// The pause before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        FIRST_BACKOFF * 2u32.saturating_pow(retry.saturating_sub(1).min(6))
    }

    /// Sends `req` once.
    pub fn send_once(&self, insecure: bool, req: &Request) -> Result<Response<Body>, ureq::Error> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method.clone())
            .uri(&req.url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let agent = self.agent(insecure);
        if req.body.is_empty() {
            // No body at all (not an empty one): GET and HEAD must not carry one.
            agent.run(builder.body(())?)
        } else {
            agent.run(builder.body(req.body.to_vec())?)
        }
    }

    /// Sends `req`, retrying with backoff on transport errors and on 5xx/429 answers. The last
    /// answer is returned even if it is a 5xx: the caller names what failed.
    pub fn send(&self, insecure: bool, req: &Request) -> Result<Response<Body>, TransportFailure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.attempts();
            match self.send_once(insecure, req) {
                Ok(resp) if retryable_status(resp.status().as_u16()) && !last => {}
                Ok(resp) => return Ok(resp),
                Err(e) if retryable_error(&e) && !last => {}
                Err(error) => {
                    return Err(TransportFailure {
                        attempts: attempt,
                        error,
                    })
                }
            }
            std::thread::sleep(self.backoff(attempt));
        }
    }
}

/// Answers worth asking again: server errors and rate limiting.
pub fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 429
}

/// Transport errors worth retrying: anything but a name that does not resolve or a request
/// nook itself built wrong.
pub fn retryable_error(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::TooManyRedirects
        | ureq::Error::RequireHttpsOnly(_) => false,
        // The resolver's failure reaches ureq as an I/O error carrying getaddrinfo's message.
        ureq::Error::Io(io) => !io.to_string().contains("failed to lookup address"),
        _ => true,
    }
}

/// The registry's error message from an error body (`{"errors":[{"code","message"}]}`), else
/// the start of the body as text.
pub fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        return e
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code.to_lowercase(), e.message),
                (true, _) => e.message.clone(),
                (false, true) => e.code.to_lowercase(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().replace('\n', " ")
}

/// Reads at most `limit` bytes of an error body (it only feeds a message).
pub fn read_error_body(resp: Response<Body>) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(64 * 1024)
        .read_to_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_become_messages() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_message(body), "manifest_unknown: manifest unknown");
        assert_eq!(error_message(b"oops\nbad"), "oops bad");
    }

    #[test]
    fn backoff_doubles() {
        let c = Client::new(Duration::from_secs(1), 3);
        assert_eq!(c.backoff(1), FIRST_BACKOFF);
        assert_eq!(c.backoff(3), FIRST_BACKOFF * 4);
        assert_eq!(c.attempts(), 4);
    }
}
