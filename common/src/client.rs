//! The client side of pull-only: reading another node over HTTPS, with the farm's trust, bounded
//! answers and errors that say which peer failed and why.

use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;
use url::Url;

use crate::api::v1::{API_VERSION, Envelope, Role, STATE_PATH};
use crate::name::NodeName;
use crate::tls::{FarmTrust, describe_rustls_error};

/// Bounds on what a client accepts from a peer.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Largest state document read from a peer; a larger one is refused, not truncated.
    pub max_state_bytes: usize,
    pub connect_timeout: Duration,
    /// Time allowed for an answer beyond any long-poll wait the client asked for.
    pub answer_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_state_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{peer} at {url}: {reason}")]
    Unreachable {
        peer: NodeName,
        url: Url,
        reason: String,
    },
    #[error("{peer} at {url}: answered HTTP {status}")]
    Status {
        peer: NodeName,
        url: Url,
        status: StatusCode,
    },
    #[error("{peer} at {url}: answer is larger than the limit of {limit} bytes")]
    TooLarge {
        peer: NodeName,
        url: Url,
        limit: usize,
    },
    /// A transfer that did not finish by the deadline its announced size allowed it.
    #[error(
        "{peer} at {url}: sent {got} bytes in {:.0} s, too slow: the transfer had to end by then",
        elapsed.as_secs_f64()
    )]
    TooSlow {
        peer: NodeName,
        url: Url,
        got: u64,
        elapsed: Duration,
    },
    #[error("{peer} at {url}: malformed answer: {reason}")]
    Malformed {
        peer: NodeName,
        url: Url,
        reason: String,
    },
}

/// The result of a state read.
#[derive(Debug)]
pub enum Fetched<T> {
    /// A state the reader did not have, with its ETag.
    New { state: Envelope<T>, etag: String },
    /// The peer's state is still the one the reader has.
    Unchanged,
}

/// A client for one peer, which must present a farm certificate naming `name`.
#[derive(Clone, Debug)]
pub struct PeerClient {
    name: NodeName,
    base: Url,
    http: reqwest::Client,
    limits: ClientLimits,
}

impl PeerClient {
    pub fn new(trust: &FarmTrust, name: NodeName, base: Url, limits: ClientLimits) -> Self {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(trust.client_config(&name))
            .connect_timeout(limits.connect_timeout)
            // Servers close a connection after 30 s without a request (`serve::Limits`); the
            // client forgets an idle connection sooner, so that no request is sent on one the
            // server is closing.
            .pool_idle_timeout(std::time::Duration::from_secs(20))
            // Farm nodes talk to each other directly; TLS would refuse a proxy anyway.
            .no_proxy()
            .user_agent(concat!("quarters/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a preconfigured rustls client always builds");
        PeerClient {
            name,
            base,
            http,
            limits,
        }
    }

    pub fn name(&self) -> &NodeName {
        &self.name
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Reads the peer's state.
    ///
    /// With `known` (the ETag the reader has) and a non-zero `wait`, this is a long-poll: it
    /// answers when the state changes, or with [`Fetched::Unchanged`] when the wait ends.
    pub async fn state<T: DeserializeOwned>(
        &self,
        role: Role,
        known: Option<&str>,
        wait: Duration,
    ) -> Result<Fetched<T>, PeerError> {
        let mut url = self.url(STATE_PATH);
        if known.is_some() && !wait.is_zero() {
            url.query_pairs_mut()
                .append_pair("wait", &wait.as_secs().max(1).to_string());
        }
        let mut request = self.http.get(url.clone());
        if let Some(etag) = known {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request
            .timeout(wait + self.limits.answer_timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::Unchanged);
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self
            .read_body(response, &url, self.limits.max_state_bytes)
            .await?;
        let state: Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| self.malformed(&url, e.to_string()))?;
        if state.api != API_VERSION {
            return Err(self.malformed(&url, format!("speaks API {:?}, not v1", state.api)));
        }
        if state.node != self.name.as_str() {
            return Err(self.malformed(&url, format!("answers as node {:?}", state.node)));
        }
        if state.role != role {
            return Err(self.malformed(&url, format!("is a {}, not a {role}", state.role)));
        }
        let etag = etag.unwrap_or_else(|| format!("\"{}\"", state.generation));
        Ok(Fetched::New { state, etag })
    }

    /// Reads `path` whole, refusing an answer over `limit` bytes.
    pub async fn get_bytes(&self, path: &str, limit: usize) -> Result<Bytes, PeerError> {
        let url = self.url(path);
        let response = self
            .http
            .get(url.clone())
            .timeout(self.limits.answer_timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        self.read_body(response, &url, limit).await
    }

    /// Streams `path` into the new file `dest`, refusing more than `limit` bytes, and returns
    /// the sha256 (hex) and size of what was written. On any error `dest` is removed.
    ///
    /// Each wait for data is bounded, but the whole transfer is not: a peer that sends a byte
    /// now and then keeps it going. Use [`PeerClient::download_until`] for peers that may do so
    /// on purpose.
    pub async fn download(
        &self,
        path: &str,
        dest: &std::path::Path,
        limit: u64,
    ) -> Result<(String, u64), PeerError> {
        self.download_until(path, dest, limit, None).await
    }

    /// [`PeerClient::download`], given up with [`PeerError::TooSlow`] once `deadline` passes,
    /// however the peer paces what it sends.
    pub async fn download_until(
        &self,
        path: &str,
        dest: &std::path::Path,
        limit: u64,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(String, u64), PeerError> {
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;

        let url = self.url(path);
        let started = tokio::time::Instant::now();
        let mut size: u64 = 0;
        let too_slow = |got: u64| PeerError::TooSlow {
            peer: self.name.clone(),
            url: url.clone(),
            got,
            elapsed: started.elapsed(),
        };
        // The time left to wait for the next piece: the answer timeout, cut short by the
        // deadline.
        let next_wait = || {
            let answer = tokio::time::Instant::now() + self.limits.answer_timeout;
            deadline.map_or(answer, |d| d.min(answer))
        };
        let past_deadline = || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        let mut response =
            match tokio::time::timeout_at(next_wait(), self.http.get(url.clone()).send()).await {
                Ok(sent) => sent.map_err(|e| self.unreachable(&url, &e))?,
                Err(_) if past_deadline() => return Err(too_slow(0)),
                Err(_) => {
                    return Err(PeerError::Unreachable {
                        peer: self.name.clone(),
                        url: url.clone(),
                        reason: format!("no answer for {:?}", self.limits.answer_timeout),
                    });
                }
            };
        if !response.status().is_success() {
            return Err(PeerError::Status {
                peer: self.name.clone(),
                url,
                status: response.status(),
            });
        }
        let too_large = || PeerError::TooLarge {
            peer: self.name.clone(),
            url: url.clone(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        };
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        let local = |e: std::io::Error| PeerError::Unreachable {
            peer: self.name.clone(),
            url: url.clone(),
            reason: format!("writing {}: {e}", dest.display()),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(local)?;
        let mut hash = sha2::Sha256::new();
        let result = async {
            loop {
                let chunk = match tokio::time::timeout_at(next_wait(), response.chunk()).await {
                    Ok(chunk) => chunk.map_err(|e| self.unreachable(&url, &e))?,
                    Err(_) if past_deadline() => return Err(too_slow(size)),
                    Err(_) => {
                        return Err(PeerError::Unreachable {
                            peer: self.name.clone(),
                            url: url.clone(),
                            reason: format!("no data for {:?}", self.limits.answer_timeout),
                        });
                    }
                };
                let Some(chunk) = chunk else { break };
                size += chunk.len() as u64;
                if size > limit {
                    return Err(too_large());
                }
                hash.update(&chunk);
                file.write_all(&chunk).await.map_err(local)?;
            }
            file.sync_all().await.map_err(local)?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            drop(file);
            let _ = tokio::fs::remove_file(dest).await;
            return Err(e);
        }
        let digest = hash.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok((hex, size))
    }

    fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("paths joined here are absolute and valid")
    }

    /// Reads `path` as JSON, taking a 404 whose body is JSON too: an answer that carries its
    /// refusal ("no such package") in the body, as the master's `why` does.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<T, PeerError> {
        let url = self.url(path);
        let response = self
            .http
            .get(url.clone())
            .timeout(self.limits.answer_timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = response.status();
        if !(status.is_success() || status == StatusCode::NOT_FOUND) {
            return Err(PeerError::Status {
                peer: self.name.clone(),
                url,
                status,
            });
        }
        let body = self.read_any_body(response, &url, limit).await?;
        serde_json::from_slice(&body).map_err(|e| PeerError::Malformed {
            peer: self.name.clone(),
            url,
            reason: e.to_string(),
        })
    }

    async fn read_body(
        &self,
        response: reqwest::Response,
        url: &Url,
        limit: usize,
    ) -> Result<Bytes, PeerError> {
        if !response.status().is_success() {
            return Err(PeerError::Status {
                peer: self.name.clone(),
                url: url.clone(),
                status: response.status(),
            });
        }
        self.read_any_body(response, url, limit).await
    }

    /// The body, whatever the status, refused over `limit` bytes.
    async fn read_any_body(
        &self,
        mut response: reqwest::Response,
        url: &Url,
        limit: usize,
    ) -> Result<Bytes, PeerError> {
        let too_large = || PeerError::TooLarge {
            peer: self.name.clone(),
            url: url.clone(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unreachable(url, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    fn unreachable(&self, url: &Url, err: &reqwest::Error) -> PeerError {
        PeerError::Unreachable {
            peer: self.name.clone(),
            url: url.clone(),
            reason: describe_request_error(err),
        }
    }

    fn malformed(&self, url: &Url, reason: String) -> PeerError {
        PeerError::Malformed {
            peer: self.name.clone(),
            url: url.clone(),
            reason,
        }
    }
}

/// Explains a failed request by its root cause: a refused certificate says which check failed,
/// a refused connection says so, rather than reqwest's generic "error sending request".
pub fn describe_request_error(err: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = err.to_string();
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return format!("TLS handshake refused: {}", describe_rustls_error(tls));
        }
        innermost = e.to_string();
        // An io::Error hides the error it wraps from `source()`; step into it instead.
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    if err.is_timeout() {
        format!("timed out ({innermost})")
    } else if err.is_connect() {
        format!("cannot connect: {innermost}")
    } else {
        innermost
    }
}
