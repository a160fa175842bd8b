//! Authentication: Basic against docker-registry's htpasswd auth, and the Bearer token flow
//! through a token server and a proxy (in front of a real registry) that only lets requests
//! with a token it issued pass.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{AuthDir, HttpRequest, HttpResponse, Server, client, forward, push_image};
use strata_registry::{ClientOptions, CredentialState, ManifestRef, Reference, RegistryError};
use strata_types::Sha256Digest;

/// `htpasswd -Bbn alice s3cret` (bcrypt, cost 5).
const HTPASSWD: &str = "alice:$2y$05$jWcisg9qfkek.eSwsVDOLeQ.KUNr9NnitHtZuCmBj79jDKxyGNlfK\n";

#[test]
fn basic_auth_against_an_htpasswd_registry() {
    if !strata_testutil::require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, HTPASSWD).unwrap();
    let reg = strata_testutil::Registry::start_with_htpasswd(&htpasswd);
    let addr = reg.addr();

    let good = AuthDir::new(&[(addr, "alice", "s3cret")]);
    let c = client(addr, &good);
    c.ping().unwrap();
    let img = push_image(&c, "private/app", "v1", &[4000], 1);
    let r = c.resolve(&Reference::parse(&format!("{addr}/private/app:v1")).unwrap()).unwrap();
    assert_eq!(r.manifest.digest, img.digest);
    let mut got = Vec::new();
    c.copy_blob("private/app", &r.parsed.layers[0].digest, 4000, &mut got).unwrap();
    assert_eq!(got, img.layers[0]);

    // No credentials: a clear 401 naming the registry and the files searched.
    let none = AuthDir::new(&[]);
    let e = client(addr, &none).get_manifest("private/app", &ManifestRef::Tag("v1".into())).unwrap_err();
    match &e {
        RegistryError::Unauthorized { registry, credentials: CredentialState::NotFound { searched }, .. } => {
            assert_eq!(registry, addr);
            assert_eq!(searched, &vec![none.path().display().to_string()]);
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(addr) && msg.contains("no credentials were found") && msg.contains("UNAUTHORIZED"), "{msg}");

    // Wrong password: the error says the credentials were rejected and where they came from.
    let bad = AuthDir::new(&[(addr, "alice", "wrong")]);
    let e = client(addr, &bad).push_blob_bytes("private/app", b"x").unwrap_err();
    assert!(matches!(&e, RegistryError::Unauthorized { credentials: CredentialState::Rejected { .. }, .. }), "{e:?}");
    assert!(e.to_string().contains(&bad.path().display().to_string()) && e.to_string().contains("rejected"), "{e}");

    // Credentials for a namespace apply inside it only.
    let ns_key = format!("{addr}/team");
    let ns = AuthDir::new(&[(&ns_key, "alice", "s3cret")]);
    let c = client(addr, &ns);
    let e = c.get_manifest("team/app", &ManifestRef::Tag("nope".into())).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e:?}");
    let e = c.get_manifest("private/app", &ManifestRef::Tag("v1".into())).unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
}

/// (had Authorization, Range header) of each request a storage server received.
type StorageLog = Arc<Mutex<Vec<(bool, Option<String>)>>>;

/// A token server and a registry proxy that demands its tokens.
struct BearerRegistry {
    token_server: Server,
    proxy: Server,
    fetches: Arc<AtomicUsize>,
    storage_log: StorageLog,
    _storage: Server,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn basic_user(req: &HttpRequest) -> Option<String> {
    use base64::Engine as _;
    let v = req.header("authorization")?.strip_prefix("Basic ")?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).ok()?).ok()
}

impl BearerRegistry {
    /// `redirect_blobs`: answer blob GETs with a 307 to a separate storage server.
    fn start(registry: &str, redirect_blobs: bool) -> BearerRegistry {
        let issued: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let fetches = Arc::new(AtomicUsize::new(0));
        let (issued2, fetches2) = (Arc::clone(&issued), Arc::clone(&fetches));
        let token_server = Server::start(move |req| {
            fetches2.fetch_add(1, Ordering::SeqCst);
            let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let params: Vec<(String, String)> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), percent_decode(v)))
                .collect();
            if !params.iter().any(|(k, v)| k == "service" && v == "strata-test") {
                return HttpResponse::new(400).with_body("wrong service");
            }
            let full = match basic_user(&req).as_deref() {
                None => false,
                Some("alice:s3cret") => true,
                Some(_) => {
                    return HttpResponse::new(401)
                        .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
                }
            };
            // Anonymous users may only pull.
            let granted: Vec<String> = params
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, s)| if full { s.clone() } else { format!("{}:pull", s.rsplit_once(':').unwrap().0) })
                .collect();
            let mut issued = issued2.lock().unwrap();
            let token = format!("tok-{}", issued.len());
            issued.insert(token.clone(), granted);
            HttpResponse::new(200).with_body(format!(r#"{{"access_token":"{token}","expires_in":300}}"#))
        });

        let storage_log: StorageLog = Arc::default();
        let log2 = Arc::clone(&storage_log);
        let upstream = registry.to_owned();
        let storage = Server::start(move |req| {
            log2.lock().unwrap().push((req.header("authorization").is_some(), req.header("range").map(str::to_owned)));
            forward(&upstream, &req)
        });

        let realm = format!("http://{}/token", token_server.addr());
        let (upstream, storage_addr) = (registry.to_owned(), storage.addr().to_owned());
        let proxy = Server::start(move |mut req| {
            let path = req.target.split('?').next().unwrap().to_owned();
            let repo = ["/manifests/", "/blobs/"]
                .iter()
                .find_map(|m| path.strip_prefix("/v2/").and_then(|p| p.find(m).map(|i| p[..i].to_owned())));
            let action = if matches!(req.method.as_str(), "GET" | "HEAD") { "pull" } else { "push" };
            let token = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_owned);
            let granted = token.and_then(|t| issued.lock().unwrap().get(&t).cloned());
            let allowed = match (&repo, &granted) {
                (_, None) => false,
                (None, Some(_)) => true, // /v2/: any valid token
                (Some(r), Some(scopes)) => scopes.iter().any(|s| {
                    s.strip_prefix(&format!("repository:{r}:")).is_some_and(|acts| acts.split(',').any(|a| a == action))
                }),
            };
            if !allowed {
                let scope = repo.map(|r| {
                    format!(",scope=\"repository:{r}:{}\"", if action == "pull" { "pull" } else { "pull,push" })
                });
                // Odd but legal spacing and parameter order.
                let challenge =
                    format!("Bearer  service=\"strata-test\" , realm=\"{realm}\"{}", scope.unwrap_or_default());
                return HttpResponse::new(401)
                    .with_header("WWW-Authenticate", &challenge)
                    .with_header("Content-Type", "application/json")
                    .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
            }
            if redirect_blobs && req.method == "GET" && path.contains("/blobs/sha256:") {
                return HttpResponse::new(307).with_header("Location", &format!("http://{storage_addr}{}", req.target));
            }
            req.remove_header("authorization");
            forward(&upstream, &req)
        });
        BearerRegistry { token_server, proxy, fetches, storage_log, _storage: storage }
    }
}

#[test]
fn bearer_tokens_are_fetched_per_scope_and_cached() {
    let Some(reg) = common::registry() else { return };
    let b = BearerRegistry::start(reg.addr(), false);
    let addr = b.proxy.addr();
    let good = AuthDir::new(&[(addr, "alice", "s3cret")]);
    let c = client(addr, &good);
    let img = push_image(&c, "secure/app", "v1", &[1000, 2000], 1);
    // One token to pull (the first HEAD), one to push.
    assert_eq!(b.fetches.load(Ordering::SeqCst), 2);
    let r = c.resolve(&Reference::parse(&format!("{addr}/secure/app:v1")).unwrap()).unwrap();
    assert_eq!(r.manifest.digest, img.digest);
    for (d, l) in r.parsed.layers.iter().zip(&img.layers) {
        let mut got = Vec::new();
        c.copy_blob("secure/app", &d.digest, d.size, &mut got).unwrap();
        assert_eq!(&got, l);
    }
    assert_eq!(
        c.fetch_ranges("secure/app", &r.parsed.layers[1].digest, &[0..10, 100..200]).unwrap()[1],
        img.layers[1][100..200]
    );
    // Cached: no more token requests, also from clones on other threads.
    let c2 = c.clone();
    let tag = ManifestRef::Tag("v1".into());
    std::thread::spawn(move || c2.get_manifest("secure/app", &tag).unwrap()).join().unwrap();
    assert_eq!(b.fetches.load(Ordering::SeqCst), 2, "token server at {}", b.token_server.addr());

    // Anonymous: pulling works with an anonymous token; pushing is refused with a clear error.
    let none = AuthDir::new(&[]);
    let anon = client(addr, &none);
    assert_eq!(anon.get_manifest("secure/app", &ManifestRef::Tag("v1".into())).unwrap().digest, img.digest);
    let e = anon.push_blob_bytes("secure/app", b"new blob").unwrap_err();
    assert!(matches!(&e, RegistryError::Unauthorized { credentials: CredentialState::NotFound { .. }, .. }), "{e:?}");
    assert!(e.to_string().contains(addr) && e.to_string().contains("push"), "{e}");

    // Wrong credentials: the token server refuses, and the error says so.
    let bad = AuthDir::new(&[(addr, "alice", "nope")]);
    let e = client(addr, &bad).get_manifest("secure/app", &ManifestRef::Tag("v1".into())).unwrap_err();
    assert!(matches!(&e, RegistryError::TokenRefused { credentials: CredentialState::Rejected { .. }, .. }), "{e:?}");
    assert!(e.to_string().contains("bad credentials"), "{e}");
}

#[test]
fn blob_redirects_keep_range_and_leave_authorization_behind() {
    let Some(reg) = common::registry() else { return };
    let b = BearerRegistry::start(reg.addr(), true);
    let addr = b.proxy.addr();
    let good = AuthDir::new(&[(addr, "alice", "s3cret")]);
    // One thread, so that the three ranges go out in one request.
    let c = strata_registry::Client::new(addr, ClientOptions { max_parallel_requests: 1, ..common::options(&good) })
        .unwrap();
    let img = push_image(&c, "redir/app", "v1", &[50_000], 2);
    let d = Sha256Digest::of(&img.layers[0]);
    let mut got = Vec::new();
    c.copy_blob("redir/app", &d, 50_000, &mut got).unwrap();
    assert_eq!(got, img.layers[0]);
    let ranges = [0..10, 1000..1100, 40_000..40_001];
    let parts = c.fetch_ranges("redir/app", &d, &ranges).unwrap();
    for (r, p) in ranges.iter().zip(&parts) {
        assert_eq!(p, &img.layers[0][r.start as usize..r.end as usize]);
    }
    let log = b.storage_log.lock().unwrap();
    assert!(log.len() >= 2, "{log:?}");
    assert!(log.iter().all(|(auth, _)| !auth), "Authorization was sent to storage: {log:?}");
    assert!(log.iter().any(|(_, r)| r.as_deref() == Some("bytes=0-9,1000-1099,40000-40000")), "{log:?}");
}
