//! A session with one repository of one registry: the scheme found by pinging `/v2/`, and the
//! authorization (none, basic or a bearer token) that the registry's challenge asked for,
//! shared by the threads of a transfer.

use std::sync::Mutex;

use ureq::http::{Method, Response};
use ureq::Body;

use super::auth::{self, Challenge};
use super::client::{self, Client, Request};
use super::credentials::Credential;
use super::endpoint::{Endpoint, TlsPolicy};
use super::error::{RegistryError, Repo};

pub struct Session {
    pub client: Client,
    pub repo: Repo,
    /// `https://host` or `http://host`, as the ping found.
    base: String,
    insecure: bool,
    /// `pull` or `pull,push`; none for a login check (a token without scope).
    actions: Option<&'static str>,
    cred: Option<Credential>,
    authorization: Mutex<Option<String>>,
}

impl Session {
    /// Finds how `endpoint` answers and authorizes for `actions` on `repository`.
    pub fn open(
        client: &Client,
        endpoint: &Endpoint,
        repository: &str,
        actions: Option<&'static str>,
        cred: Option<Credential>,
    ) -> Result<Session, RegistryError> {
        let repo = Repo {
            registry: endpoint.registry.clone(),
            repository: repository.to_string(),
        };
        let insecure = endpoint.tls == TlsPolicy::Insecure;
        let candidates = endpoint.candidates();
        let mut last_err = None;
        for (i, base) in candidates.iter().enumerate() {
            let req = Request::new(Method::GET, format!("{base}/v2/"));
            let last = i + 1 == candidates.len();
            // Only the last candidate is retried: an earlier one (HTTPS to a plain-HTTP
            // registry) fails fast and the next is tried.
            let result = if last {
                client
                    .send(insecure, &req)
                    .map_err(|f| (f.attempts, f.error))
            } else {
                client.send_once(insecure, &req).map_err(|e| (1, e))
            };
            match result {
                Ok(resp) => {
                    let session = Session {
                        client: client.clone(),
                        repo,
                        base: base.clone(),
                        insecure,
                        actions,
                        cred,
                        authorization: Mutex::new(None),
                    };
                    if resp.status().as_u16() == 401 {
                        session.authorize(&resp)?;
                    }
                    return Ok(session);
                }
                Err(e) => last_err = Some(e),
            }
        }
        let (attempts, error) = last_err.expect("there is at least one candidate");
        Err(RegistryError::Connect {
            registry: endpoint.registry.clone(),
            what: format!(
                "GET {}/v2/ failed after {attempts} attempt{}",
                candidates.last().expect("there is at least one candidate"),
                if attempts == 1 { "" } else { "s" }
            ),
            source: Box::new(error),
        })
    }

    /// The URL of an API path under `/v2/<repository>/`.
    pub fn repo_url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.repo.repository)
    }

    /// Resolves a `Location` header against the registry's base URL.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// The current `Authorization` header value, if any.
    pub fn authorization(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers a 401's challenge: basic credentials, or a bearer token for this repository.
    fn authorize(&self, resp: &Response<Body>) -> Result<(), RegistryError> {
        let header = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let challenges = auth::parse_challenges(&header);
        let value = if let Some(Challenge::Bearer {
            realm,
            service,
            scope: _,
        }) = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
        {
            let scope = self
                .actions
                .map(|a| format!("repository:{}:{a}", self.repo.repository));
            let token = auth::fetch_token(
                &self.client,
                self.insecure,
                &self.repo,
                realm,
                service.as_deref(),
                scope.as_deref(),
                self.cred.as_ref(),
            )?;
            format!("Bearer {token}")
        } else if challenges
            .iter()
            .any(|c| matches!(c, Challenge::Basic { .. }))
        {
            match &self.cred {
                Some(c) => c.basic_header(),
                None => {
                    return Err(RegistryError::Unauthorized {
                        repo: self.repo.clone(),
                        message: "the registry asks for a user name and password; run nook login"
                            .into(),
                    })
                }
            }
        } else {
            return Err(RegistryError::Unauthorized {
                repo: self.repo.clone(),
                message: format!("no usable challenge in WWW-Authenticate {header:?}"),
            });
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        Ok(())
    }

    /// Sends `req` (`what` names it in errors) with authorization, retries included; a 401
    /// gets one new authorization and one more try. 5xx after the retries is an error; other
    /// statuses are the caller's to judge.
    pub fn send(&self, req: Request, what: &str) -> Result<Response<Body>, RegistryError> {
        let mut authorized_again = false;
        loop {
            let mut r = req.clone();
            if let Some(a) = self.authorization() {
                r = r.header("Authorization", a);
            }
            let resp =
                self.client
                    .send(self.insecure, &r)
                    .map_err(|f| RegistryError::Transport {
                        repo: self.repo.clone(),
                        what: what.to_string(),
                        attempts: f.attempts,
                        source: Box::new(f.error),
                    })?;
            let status = resp.status().as_u16();
            if status == 401 && !authorized_again {
                authorized_again = true;
                self.authorize(&resp)?;
                continue;
            }
            if status == 401 || status == 403 {
                let message = client::error_message(&client::read_error_body(resp));
                return Err(RegistryError::Unauthorized {
                    repo: self.repo.clone(),
                    message,
                });
            }
            if client::retryable_status(status) {
                let message = client::error_message(&client::read_error_body(resp));
                return Err(RegistryError::ServerError {
                    repo: self.repo.clone(),
                    what: what.to_string(),
                    status,
                    attempts: self.client.attempts(),
                    message,
                });
            }
            return Ok(resp);
        }
    }

    /// An error for an unexpected status of `what`.
    pub fn status_error(&self, resp: Response<Body>, what: &str) -> RegistryError {
        let status = resp.status().as_u16();
        RegistryError::Status {
            repo: self.repo.clone(),
            what: what.to_string(),
            status,
            message: client::error_message(&client::read_error_body(resp)),
        }
    }
}

/// Checks `cred` against `endpoint` as `docker login` does: ping, answer the challenge (for
/// bearer, a token without scope, which checks the credentials alone), and expect `/v2/` to
/// accept the authorization.
pub fn verify_login(
    client: &Client,
    endpoint: &Endpoint,
    cred: &Credential,
) -> Result<(), RegistryError> {
    let session = Session::open(client, endpoint, "", None, Some(cred.clone()))?;
    if session.authorization().is_none() {
        // The registry asks for nothing: any credential works, as with docker.
        return Ok(());
    }
    let ping = Request::new(Method::GET, format!("{}/v2/", session.base));
    let resp = session.send(ping, "the login check")?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(session.status_error(resp, "the login check"))
    }
}
