//! The client: options, the shared connection pool and auth state, and the one place where
//! requests are sent — with retries (connection errors, 429, 5xx; exponential backoff,
//! bounded), the 401 → credentials/token → retry dance, and redirects for GET/HEAD
//! (keeping every header but `Authorization`, which only goes to the registry's own origin).

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http;

use crate::auth::{AuthCache, Scope};
use crate::authfile::AuthFiles;
use crate::error::{ErrorDetail, RegistryError, Result};
use crate::reference::{ManifestRef, Reference};
use crate::url;

/// How a [`Client`] talks to its registry.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Use `http://` instead of `https://` (loopback test registries).
    pub plain_http: bool,
    /// The auth file (`{"auths": {"host:port": {"auth": base64(user:pass)}}}`). Without
    /// one: `$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json` then
    /// `~/.docker/config.json` (the first with an entry for the registry). A file named
    /// here or by `$REGISTRY_AUTH_FILE` must exist.
    pub auth_file: Option<PathBuf>,
    /// Attempts per request for connection errors, 429 and 5xx (1 = no retries).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub retry_base_delay: Duration,
    /// Upper bound for one retry delay (also caps a server's `Retry-After`).
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    /// Longest wait for any single read or write on a connection.
    pub io_timeout: Duration,
    /// Most ranges sent in one `Range` header (lowered automatically when a server refuses).
    pub max_ranges_per_request: usize,
    /// Range requests in flight at once.
    pub max_parallel_requests: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            plain_http: false,
            auth_file: None,
            max_attempts: 4,
            retry_base_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(60),
            max_ranges_per_request: 100,
            max_parallel_requests: 4,
        }
    }
}

/// Bytes moved over the network, for progress display. Shared by clones of a client.
#[derive(Debug, Default)]
pub struct Progress {
    downloaded: AtomicU64,
    uploaded: AtomicU64,
}

impl Progress {
    /// Response body bytes read (manifests, blobs, ranges, multipart framing included).
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }
    /// Request body bytes sent (blob uploads, manifests).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}

/// A client for one registry (`host[:port]`). Cheap to clone; `Send + Sync`, so layers can
/// be fetched or uploaded from several threads through one connection pool and token cache.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    pub(crate) progress: Arc<Progress>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub registry: String,
    pub base: String,
    pub agent: ureq::Agent,
    pub options: ClientOptions,
    pub auth_files: AuthFiles,
    pub auth: Mutex<AuthCache>,
    /// The ranges-per-request limit, lowered when the server refuses long `Range` headers.
    pub ranges_limit: AtomicUsize,
}

/// A request body that can be produced again for each attempt.
pub(crate) enum CallBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream { len: u64, open: &'a mut dyn FnMut() -> io::Result<Box<dyn Read + 'a>> },
}

pub(crate) struct Call<'a> {
    pub method: &'static str,
    pub url: String,
    /// Headers sent on every hop (never credentials: see `credentials`).
    pub headers: Vec<(&'static str, String)>,
    /// An `Authorization` value for requests outside the registry's own auth (a token
    /// server's Basic credentials), sent only while the URL has the origin it belongs to:
    /// a redirect to another host, port or scheme drops it.
    pub credentials: Option<OriginCredentials>,
    /// The registry access this request needs; `None` for requests to other services
    /// (token servers), which never get the registry's credentials attached.
    pub scope: Option<Scope>,
    pub body: CallBody<'a>,
    /// Retry connection errors, 429 and 5xx here (uploads restart at a higher level instead).
    pub retry: bool,
}

/// Credentials bound to one origin (`scheme://host:port`).
#[derive(Clone, Debug)]
pub(crate) struct OriginCredentials {
    pub origin: String,
    pub authorization: String,
}

impl<'a> Call<'a> {
    pub fn new(method: &'static str, url: String, scope: Option<Scope>) -> Self {
        Call { method, url, headers: Vec::new(), credentials: None, scope, body: CallBody::Empty, retry: true }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, body: CallBody<'a>) -> Self {
        self.body = body;
        self
    }
}

/// What a failing request was about, for error messages.
pub(crate) enum Target<'a> {
    Manifest { repo: &'a str, reference: &'a ManifestRef },
    Blob { repo: &'a str, digest: &'a strata_types::Sha256Digest },
    Upload { repo: &'a str },
    Registry,
}

pub(crate) type Response = http::Response<ureq::Body>;

const MAX_REDIRECTS: u32 = 5;
const MAX_ERROR_BODY: u64 = 64 << 10;

impl Client {
    /// A client for `registry` (`host[:port]`); loads the auth files now so that a broken
    /// one is reported before any transfer starts.
    pub fn new(registry: &str, options: ClientOptions) -> Result<Client> {
        // Validate the host with the reference grammar.
        Reference::parse(&format!("{registry}/x")).map_err(|_| RegistryError::InvalidReference {
            input: registry.to_owned(),
            reason: "not a registry host[:port]".into(),
        })?;
        let auth_files = AuthFiles::load(options.auth_file.as_deref())?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("strata/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding("")
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.io_timeout))
            .timeout_per_read(Some(options.io_timeout))
            .timeout_per_write(Some(options.io_timeout))
            .max_idle_connections_per_host(options.max_parallel_requests.max(1) + 2)
            .build();
        let scheme = if options.plain_http { "http" } else { "https" };
        let shared = Shared {
            registry: registry.to_owned(),
            base: format!("{scheme}://{registry}"),
            agent: config.new_agent(),
            ranges_limit: AtomicUsize::new(options.max_ranges_per_request.max(1)),
            options,
            auth_files,
            auth: Mutex::new(AuthCache::default()),
        };
        Ok(Client { shared: Arc::new(shared), progress: Arc::new(Progress::default()) })
    }

    /// A client for the registry of `reference`.
    pub fn for_reference(reference: &Reference, options: ClientOptions) -> Result<Client> {
        Client::new(reference.registry(), options)
    }

    /// `host[:port]` of the registry.
    pub fn registry(&self) -> &str {
        &self.shared.registry
    }

    /// The byte counters of this client (and its clones).
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// The same client (pool, tokens) counting bytes into `progress` instead.
    pub fn with_progress(&self, progress: Arc<Progress>) -> Client {
        Client { shared: Arc::clone(&self.shared), progress }
    }

    /// The current ranges-per-request limit (lowered when a server refused long headers).
    pub fn max_ranges_per_request(&self) -> usize {
        self.shared.ranges_limit.load(Ordering::Relaxed)
    }

    /// `GET /v2/`: checks that the registry answers and that authentication works.
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.shared.base);
        let resp = self.send(Call::new("GET", url.clone(), Some(Scope::registry())))?;
        if resp.status() == 200 { Ok(()) } else { Err(self.status_error("GET", &url, resp, Target::Registry)) }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.shared.base)
    }

    /// Sends a request, handling retries, authentication and redirects. Returns the first
    /// answer that is not one of those (any status: callers map them to errors).
    ///
    /// Credentials only ever go to the origin they belong to: the registry's own
    /// (`Authorization` from its auth state, re-derived on every hop) or the one a
    /// [`Call::credentials`] names; a redirect elsewhere, or from https to http, never
    /// carries them.
    pub(crate) fn send(&self, mut call: Call<'_>) -> Result<Response> {
        let opts = &self.shared.options;
        let max_attempts = if call.retry { opts.max_attempts.max(1) } else { 1 };
        let registry_origin = url::origin(&self.shared.base);
        let mut url = call.url.clone();
        let (mut attempt, mut redirects, mut authenticated) = (1, 0, false);
        loop {
            let here = url::origin(&url);
            let on_registry = here == registry_origin;
            let auth = match (&call.scope, on_registry) {
                (Some(scope), true) => self.auth_header(scope),
                _ => call
                    .credentials
                    .as_ref()
                    .filter(|c| here.as_deref() == Some(c.origin.as_str()))
                    .map(|c| c.authorization.clone()),
            };
            let result = self.exchange(call.method, &url, &call.headers, auth.as_deref(), &mut call.body);
            let resp = match result {
                Ok(r) => r,
                Err(e) if attempt < max_attempts && retryable_error(&e) => {
                    std::thread::sleep(self.backoff(attempt, None));
                    attempt += 1;
                    continue;
                }
                Err(ExchangeError::Http(e)) => {
                    return Err(RegistryError::Connection {
                        method: call.method.into(),
                        url,
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
                Err(ExchangeError::Registry(e)) => return Err(e),
            };
            let status = resp.status().as_u16();
            match status {
                401 if on_registry && call.scope.is_some() => {
                    let scope = call.scope.as_ref().expect("checked");
                    if authenticated {
                        return Err(self.unauthorized(scope, resp));
                    }
                    self.authenticate(scope, resp, auth.is_some())?;
                    authenticated = true;
                }
                301 | 302 | 303 | 307 | 308 if matches!(call.method, "GET" | "HEAD") => {
                    let next = redirect_target(&url, status, header(&resp, "location").as_deref())?;
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(RegistryError::InvalidResponse {
                            url: call.url,
                            reason: format!("more than {MAX_REDIRECTS} redirects"),
                        });
                    }
                    url = next;
                }
                429 | 500 | 502 | 503 | 504 => {
                    if attempt >= max_attempts {
                        let detail = read_detail(resp);
                        return Err(RegistryError::ServerError {
                            method: call.method.into(),
                            url,
                            status,
                            attempts: attempt,
                            detail,
                        });
                    }
                    let retry_after = header(&resp, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                    drop(resp);
                    std::thread::sleep(self.backoff(attempt, retry_after));
                    attempt += 1;
                }
                _ => return Ok(resp),
            }
        }
    }

    /// The pause before retry number `attempt` (1-based): doubling from the base delay,
    /// at least `Retry-After`, at most the maximum delay.
    pub(crate) fn backoff(&self, attempt: u32, retry_after_secs: Option<u64>) -> Duration {
        let o = &self.shared.options;
        let exp = o.retry_base_delay.saturating_mul(1 << (attempt - 1).min(16));
        let d = match retry_after_secs {
            Some(s) => Duration::from_secs(s).max(exp),
            None => exp,
        };
        d.min(o.retry_max_delay)
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&'static str, String)],
        auth: Option<&str>,
        body: &mut CallBody<'_>,
    ) -> std::result::Result<Response, ExchangeError> {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let invalid = |e: http::Error| {
            ExchangeError::Registry(RegistryError::InvalidResponse {
                url: url.to_owned(),
                reason: format!("cannot build request: {e}"),
            })
        };
        let agent = &self.shared.agent;
        let result = match body {
            CallBody::Empty => agent.run(b.body(()).map_err(invalid)?),
            CallBody::Bytes(d) => {
                self.progress.uploaded.fetch_add(d.len() as u64, Ordering::Relaxed);
                agent.run(b.body(*d).map_err(invalid)?)
            }
            CallBody::Stream { len, open } => {
                let reader = open().map_err(|source| {
                    ExchangeError::Registry(RegistryError::Io { what: format!("request body for {url}"), source })
                })?;
                let mut counted = Counting::new(reader.take(*len), Arc::clone(&self.progress), Direction::Up);
                let req = b.header("content-length", len.to_string()).body(ureq::SendBody::from_reader(&mut counted));
                agent.run(req.map_err(invalid)?)
            }
        };
        result.map_err(ExchangeError::Http)
    }

    /// Maps an unexpected answer to the error that says what was wrong.
    pub(crate) fn status_error(&self, method: &str, url: &str, resp: Response, target: Target<'_>) -> RegistryError {
        let status = resp.status().as_u16();
        let detail = read_detail(resp);
        let registry = self.shared.registry.clone();
        match (status, target) {
            (403, t) => RegistryError::Denied { registry, what: describe(&t), detail },
            (404, Target::Manifest { repo, reference }) => RegistryError::ManifestUnknown {
                registry,
                repository: repo.to_owned(),
                reference: reference.to_string(),
                detail,
            },
            (404, Target::Blob { repo, digest }) => {
                RegistryError::BlobUnknown { registry, repository: repo.to_owned(), digest: *digest, detail }
            }
            _ => RegistryError::Status { method: method.to_owned(), url: url.to_owned(), status, detail },
        }
    }

    /// A response body reader that counts into the progress counters.
    pub(crate) fn body_reader(&self, resp: Response) -> Counting<ureq::BodyReader<'static>> {
        Counting::new(resp.into_body().into_reader(), Arc::clone(&self.progress), Direction::Down)
    }
}

fn describe(t: &Target<'_>) -> String {
    match t {
        Target::Manifest { repo, reference } => format!("manifest {repo}:{reference}"),
        Target::Blob { repo, digest } => format!("blob {digest} in {repo}"),
        Target::Upload { repo } => format!("uploads to {repo}"),
        Target::Registry => "the registry".into(),
    }
}

pub(crate) enum ExchangeError {
    Http(ureq::Error),
    Registry(RegistryError),
}

fn retryable_error(e: &ExchangeError) -> bool {
    match e {
        ExchangeError::Http(e) => matches!(
            e,
            ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_)
        ),
        ExchangeError::Registry(_) => false,
    }
}

/// Where a redirect answer to `url` leads: its `Location` resolved against `url`. Never
/// from https down to plain http: whatever the request carries (a token in a query, the
/// registry's answer itself) must not travel in the clear because a server said so.
fn redirect_target(url: &str, status: u16, location: Option<&str>) -> Result<String> {
    let next = location.and_then(|l| url::resolve(url, l)).ok_or_else(|| RegistryError::InvalidResponse {
        url: url.to_owned(),
        reason: format!("redirect {status} with unusable Location {location:?}"),
    })?;
    if url.starts_with("https://") && next.starts_with("http://") {
        return Err(RegistryError::InvalidResponse {
            url: url.to_owned(),
            reason: format!("redirect {status} from https to plain http ({next}) refused"),
        });
    }
    Ok(next)
}

pub(crate) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Reads (a bounded start of) an error answer's body and summarises it.
pub(crate) fn read_detail(resp: Response) -> ErrorDetail {
    let mut buf = Vec::new();
    // Some servers declare a Content-Length they never send (docker-registry on 416):
    // whatever arrived before the error is still worth showing.
    let _ = resp.into_body().into_reader().take(MAX_ERROR_BODY).read_to_end(&mut buf);
    ErrorDetail::parse(&buf)
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    Up,
    Down,
}

/// A reader that adds what passes through it to a progress counter.
#[derive(Debug)]
pub(crate) struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
    direction: Direction,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R, progress: Arc<Progress>, direction: Direction) -> Self {
        Counting { inner, progress, direction }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let counter = match self.direction {
            Direction::Up => &self.progress.uploaded,
            Direction::Down => &self.progress.downloaded,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_send_sync_and_validate_hosts() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Client>();
        assert!(matches!(
            Client::new("not a host", ClientOptions::default()),
            Err(RegistryError::InvalidReference { .. })
        ));
    }

    #[test]
    fn redirects_never_go_from_https_to_http() {
        let e = redirect_target("https://reg.io/v2/x/blobs/sha256:1", 307, Some("http://cdn.io/b")).unwrap_err();
        assert!(e.to_string().contains("https to plain http"), "{e}");
        assert_eq!(redirect_target("https://reg.io/v2/x", 302, Some("https://cdn.io/b")).unwrap(), "https://cdn.io/b");
        assert_eq!(redirect_target("http://127.0.0.1:5/v2/x", 302, Some("/y")).unwrap(), "http://127.0.0.1:5/y");
        assert!(redirect_target("https://reg.io/v2/x", 302, None).is_err());
        // Scheme-relative keeps https.
        assert_eq!(redirect_target("https://reg.io/v2/x", 302, Some("//cdn.io/b")).unwrap(), "https://cdn.io/b");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let opts = ClientOptions {
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_millis(350),
            auth_file: Some(PathBuf::from("/dev/null/none")),
            ..Default::default()
        };
        // A missing explicit auth file is an error naming it.
        let e = Client::new("127.0.0.1:1", opts.clone()).unwrap_err();
        assert!(e.to_string().contains("/dev/null/none"), "{e}");
        let c = Client::new("127.0.0.1:1", ClientOptions { auth_file: None, ..opts }).unwrap();
        assert_eq!(c.backoff(1, None), Duration::from_millis(100));
        assert_eq!(c.backoff(2, None), Duration::from_millis(200));
        assert_eq!(c.backoff(3, None), Duration::from_millis(350));
        assert_eq!(c.backoff(1, Some(1)), Duration::from_millis(350));
    }
}
