//! Hostile servers: credentials stay with the origin they belong to, whatever a registry
//! or token server answers; answers that do not match the request, claim absurd sizes or
//! never end are errors (or bounded retries), found before much is read. Memory bounds are
//! measured in `hostile_memory.rs`, a process of its own.

// One-element slices of ranges are what the API takes, not a mistaken `vec![a..b]`.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::ops::Range;
use std::sync::{Arc, Mutex};

use common::{AuthDir, HttpRequest, HttpResponse, Server, client, options, within_a_minute};
use strata_registry::{Client, ClientOptions, ManifestRef, RegistryError};
use strata_types::Sha256Digest;

/// What a server saw: (path and query, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn recorder() -> Seen {
    Arc::default()
}

/// A registry that wants a Bearer token from `realm` and accepts any token.
fn token_registry(realm: String, seen: Seen) -> Server {
    Server::start(move |req| {
        let auth = req.header("authorization").map(str::to_owned);
        seen.lock().unwrap().push((req.target.clone(), auth.clone()));
        match auth {
            Some(a) if a.starts_with("Bearer ") => HttpResponse::new(200).with_body("{}"),
            _ => HttpResponse::new(401)
                .with_header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\",service=\"hostile\""))
                .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}"#),
        }
    })
}

#[test]
fn token_credentials_do_not_follow_a_redirect_to_another_origin() {
    // The token server redirects the token request (which carries the user's Basic
    // credentials) to another origin; that one must get the request without them.
    let elsewhere_seen = recorder();
    let seen = Arc::clone(&elsewhere_seen);
    let elsewhere = Server::start(move |req| {
        seen.lock().unwrap().push((req.target.clone(), req.header("authorization").map(str::to_owned)));
        HttpResponse::new(200).with_body(r#"{"token":"anonymous"}"#)
    });
    let token_seen = recorder();
    let (seen, to) = (Arc::clone(&token_seen), elsewhere.addr().to_owned());
    let token_server = Server::start(move |req| {
        seen.lock().unwrap().push((req.target.clone(), req.header("authorization").map(str::to_owned)));
        HttpResponse::new(307).with_header("Location", &format!("http://{to}{}", req.target))
    });
    let registry_seen = recorder();
    let registry = token_registry(format!("http://{}/token", token_server.addr()), Arc::clone(&registry_seen));
    let auth = AuthDir::new(&[(registry.addr(), "alice", "s3cret")]);
    client(registry.addr(), &auth).ping().unwrap();

    let token_seen = token_seen.lock().unwrap();
    assert!(
        token_seen.iter().any(|(_, a)| a.as_deref().is_some_and(|a| a.starts_with("Basic "))),
        "the token server (the realm) gets the credentials: {token_seen:?}"
    );
    let elsewhere_seen = elsewhere_seen.lock().unwrap();
    assert!(!elsewhere_seen.is_empty(), "the redirect was followed");
    assert!(elsewhere_seen.iter().all(|(_, a)| a.is_none()), "credentials followed the redirect: {elsewhere_seen:?}");
    // The registry got the token, never the Basic credentials.
    let registry_seen = registry_seen.lock().unwrap();
    assert!(registry_seen.iter().any(|(_, a)| a.as_deref() == Some("Bearer anonymous")), "{registry_seen:?}");
    assert!(registry_seen.iter().all(|(_, a)| !a.as_deref().is_some_and(|a| a.starts_with("Basic "))));
}

#[test]
fn a_plain_http_token_realm_on_another_host_gets_no_credentials() {
    // --plain-http names the registry (127.0.0.1); a realm on another host over plain http
    // is refused before anything is sent (without the check, the client would try to
    // connect there and fail with a connection error instead).
    let registry = token_registry("http://127.0.0.2:9/token".into(), recorder());
    let auth = AuthDir::new(&[(registry.addr(), "alice", "s3cret")]);
    let e = client(registry.addr(), &auth).ping().unwrap_err().to_string();
    assert!(e.contains("plain http") && e.contains("127.0.0.2"), "{e}");
}

const BOUNDARY: &str = "HOSTILE";

fn digest() -> Sha256Digest {
    Sha256Digest::of(b"a blob only the hostile server knows")
}

/// One request for all the ranges of a fetch (one thread), so they share one answer.
fn one_request(addr: &str, auth: &AuthDir) -> Client {
    Client::new(addr, ClientOptions { max_parallel_requests: 1, ..options(auth) }).unwrap()
}

/// The head of a `multipart/byteranges` part for bytes `first..=last`.
fn part_head(first: u64, last: u64) -> Vec<u8> {
    format!(
        "\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {first}-{last}/*\r\n\r\n"
    )
    .into_bytes()
}

/// A well-formed multipart body with these parts (each filled with its own length of `x`).
fn multipart_body(parts: &[Range<u64>]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend(part_head(p.start, p.end - 1));
        body.extend(std::iter::repeat_n(b'x', (p.end - p.start) as usize));
    }
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").into_bytes());
    body
}

fn multipart_answer() -> HttpResponse {
    HttpResponse::new(206).with_header("Content-Type", &format!("multipart/byteranges; boundary={BOUNDARY}"))
}

/// A server that answers every request with `answer`.
fn answering(answer: HttpResponse) -> Server {
    Server::start(move |_| answer.clone())
}

/// Fetches `ranges` from a server that answers with `answer`; the error, as text.
fn fetch_error(answer: HttpResponse, ranges: &[Range<u64>]) -> String {
    let server = answering(answer);
    let auth = AuthDir::new(&[]);
    let c = one_request(server.addr(), &auth);
    let ranges = ranges.to_vec();
    let what = format!("ranges {ranges:?}");
    let r = within_a_minute(&what, move || c.fetch_ranges("hostile/app", &digest(), &ranges));
    let e = r.expect_err(&what);
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{what}: {e:?}");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn an_absurd_part_size_is_refused_before_it_is_read() {
    // Two ranges ten terabytes apart: the part claiming all of it is within the span of the
    // request, but 20 bytes were asked for. (Reserving the claimed size aborts the process.)
    let far = [0..10, 9_999_999_999_990..10_000_000_000_000];
    let endless = |head: Vec<u8>| multipart_answer().with_body(head).with_stream(b"\0", None);
    let e = fetch_error(endless(part_head(0, 9_999_999_999_999)), &far);
    assert!(e.contains("part bytes 0-9999999999999") && e.contains("larger than what was requested"), "{e}");
    // The same claim as a single-range answer.
    let single = HttpResponse::new(206)
        .with_header("Content-Range", "bytes 0-9999999999999/10000000000000")
        .with_stream(b"\0", None);
    let e = fetch_error(single, &far);
    assert!(e.contains("bytes 0-9999999999999") && e.contains("larger than what was requested"), "{e}");
    // Near ranges: the claim is outside the request's span.
    let e = fetch_error(endless(part_head(0, 9_999_999_999_999)), &[0..10, 20..30]);
    assert!(e.contains("part bytes 0-9999999999999 lies outside what was asked"), "{e}");
}

#[test]
fn parts_must_match_the_requested_ranges() {
    let asked = [1000..1010, 2000..2010];
    let parts = |parts: &[Range<u64>]| multipart_answer().with_body(multipart_body(parts));
    // Outside the request's span.
    let e = fetch_error(parts(&[0..10, 2000..2010]), &asked);
    assert!(e.contains("part bytes 0-9 lies outside what was asked"), "{e}");
    // Inside the span, holding no requested range.
    let e = fetch_error(parts(&[1005..1010, 2000..2010]), &asked);
    assert!(e.contains("part bytes 1005-1009 holds none of the requested ranges"), "{e}");
    // Holding a requested range, but starting inside another one.
    let e = fetch_error(parts(&[1000..1010, 1005..2010]), &asked);
    assert!(e.contains("part bytes 1005-2009 does not start where a requested range does"), "{e}");
    // Holding a requested range, but ending in the gap after it.
    let e = fetch_error(parts(&[1000..1510, 2000..2010]), &asked);
    assert!(e.contains("part bytes 1000-1509 does not end where a requested range does"), "{e}");
    // The same part twice.
    let e = fetch_error(parts(&[1000..1010, 1000..1010, 2000..2010]), &asked);
    assert!(e.contains("part bytes 1000-1009 was already sent"), "{e}");
    // More parts than ranges asked for (each aligned, each new).
    let e = fetch_error(parts(&[1000..1010, 2000..2010, 1000..2010]), &asked);
    assert!(e.contains("more parts than the 2 ranges requested"), "{e}");
    // One part, repeated without end.
    let mut one = part_head(1000, 1009);
    one.extend_from_slice(&[b'x'; 10]);
    let e = fetch_error(multipart_answer().with_stream(&one, None), &asked);
    assert!(e.contains("part bytes 1000-1009 was already sent"), "{e}");

    // What servers really send still works: one part per range (docker-registry), and
    // ranges merged into one part across a gap (within the allowance).
    for answer in [parts(&asked), parts(&[1000..2010])] {
        let server = answering(answer);
        let auth = AuthDir::new(&[]);
        let got = one_request(server.addr(), &auth).fetch_ranges("hostile/app", &digest(), &asked).unwrap();
        assert_eq!(got, vec![vec![b'x'; 10]; 2]);
    }
}

#[test]
fn a_single_range_answer_longer_than_asked_is_an_error() {
    let ok = || HttpResponse::new(206).with_header("Content-Range", "bytes 0-99/1000").with_body(vec![b'a'; 100]);
    // The answer goes on after the 100 bytes its Content-Range announced, without end.
    let e = fetch_error(ok().with_stream(b"a", None), &[0..100]);
    assert!(e.contains("longer than its Content-Range bytes 0-99"), "{e}");
    // A Content-Length that disagrees with the Content-Range.
    let e = fetch_error(ok().with_header("Content-Length", "200").with_body(vec![b'a'; 200]), &[0..100]);
    assert!(e.contains("Content-Length 200") && e.contains("bytes 0-99"), "{e}");
    // More than asked for.
    let more = HttpResponse::new(206).with_header("Content-Range", "bytes 0-199/1000").with_body(vec![b'a'; 200]);
    let e = fetch_error(more, &[0..100]);
    assert!(e.contains("bytes 0-199") && e.contains("outside what was asked"), "{e}");
    // Exactly what was asked is fine.
    let server = answering(ok());
    let auth = AuthDir::new(&[]);
    assert_eq!(
        client(server.addr(), &auth).fetch_ranges("hostile/app", &digest(), &[0..100]).unwrap(),
        [vec![b'a'; 100]]
    );
}

#[test]
fn endless_manifests_tokens_and_error_bodies_are_cut_off() {
    let auth = AuthDir::new(&[]);
    let manifest = || {
        HttpResponse::new(200)
            .with_header("Content-Type", strata_oci::media::IMAGE_MANIFEST)
            .with_body(r#"{"schemaVersion":2,"junk":""#)
            .with_stream(b"x", None)
    };
    let get = |answer: HttpResponse| {
        let server = answering(answer);
        let c = client(server.addr(), &auth);
        within_a_minute("manifest GET", move || c.get_manifest("hostile/app", &ManifestRef::Tag("v1".into())))
    };
    let e = get(manifest()).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestTooLarge { limit: 4194304, .. }), "{e:?}");
    assert!(e.to_string().contains("larger than the 4194304 bytes allowed"), "{e}");
    // Declared too large: refused before reading.
    let e = get(manifest().with_header("Content-Length", "10000000000")).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestTooLarge { .. }), "{e:?}");
    // An endless error document: the error, with the start of what the server said.
    let e = get(HttpResponse::new(404).with_body("no such manifest ").with_stream(b"blah ", None)).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("registry said: no such manifest blah") && msg.len() < 1000, "{msg}");

    // An index whose linux/amd64 entry declares a terabyte: refused without fetching it.
    let huge = Sha256Digest::of(b"huge");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{huge}","size":1099511627776,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        strata_oci::media::IMAGE_INDEX,
        strata_oci::media::IMAGE_MANIFEST
    );
    let server = Server::start(move |req: HttpRequest| {
        if req.target.ends_with("/manifests/v1") {
            HttpResponse::new(200).with_header("Content-Type", strata_oci::media::IMAGE_INDEX).with_body(index.clone())
        } else {
            manifest()
        }
    });
    let c = client(server.addr(), &auth);
    let reference = strata_registry::Reference::parse(&format!("{}/hostile/app:v1", server.addr())).unwrap();
    let e = within_a_minute("resolve", move || c.resolve(&reference)).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestTooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains(&huge.to_string()), "{e}");
    assert_eq!(server.request_count(), 1, "the manifest was not fetched");

    // A token server whose answer never ends.
    let token_server = answering(HttpResponse::new(200).with_body(r#"{"token":""#).with_stream(b"t", None));
    let realm = format!("http://{}/token", token_server.addr());
    let registry = token_registry(realm, recorder());
    let c = client(registry.addr(), &auth);
    let e = within_a_minute("token GET", move || c.ping()).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{e:?}");
    assert!(e.to_string().contains("token response is larger than the 1048576 bytes allowed"), "{e}");
}

#[test]
fn an_endless_blob_is_refused_after_its_declared_size() {
    let auth = AuthDir::new(&[]);
    let d = digest();
    let copy = |answer: HttpResponse| {
        let server = answering(answer);
        let c = client(server.addr(), &auth);
        let mut out = Vec::new();
        let r = within_a_minute("blob GET", move || {
            let r = c.copy_blob("hostile/app", &d, 100, &mut out);
            (r, out.len())
        });
        (r.0.unwrap_err(), r.1)
    };
    let (e, written) = copy(HttpResponse::new(200).with_stream(b"z", None));
    assert!(e.to_string().contains("more than the 100 bytes expected"), "{e:?}");
    assert!(written <= 101, "{written} bytes passed on");
    // A declared length that disagrees is refused before the body is read.
    let (e, written) =
        copy(HttpResponse::new(200).with_header("Content-Length", "10000000000").with_stream(b"z", None));
    assert!(matches!(e, RegistryError::SizeMismatch { expected: 100, found: 10_000_000_000, .. }), "{e:?}");
    assert_eq!(written, 0);
}

#[test]
fn endless_redirects_end() {
    let server = Server::start(|req: HttpRequest| HttpResponse::new(301).with_header("Location", &req.target));
    let auth = AuthDir::new(&[]);
    let c = client(server.addr(), &auth);
    let e = within_a_minute("redirect loop", move || c.get_manifest("hostile/app", &ManifestRef::Tag("v1".into())))
        .unwrap_err();
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{e:?}");
    assert!(e.to_string().contains("more than 5 redirects"), "{e}");
    assert_eq!(server.request_count(), 6, "the first request and five redirects");
}

#[test]
fn retry_after_is_capped_by_the_retry_delay() {
    // Eleven days asked for; the client waits at most `retry_max_delay` (200 ms in these
    // tests) between its bounded attempts.
    let server = answering(HttpResponse::new(503).with_header("Retry-After", "999999").with_body("busy"));
    let auth = AuthDir::new(&[]);
    let c = client(server.addr(), &auth);
    let e = within_a_minute("Retry-After: 999999", move || c.blob_size("hostile/app", &digest())).unwrap_err();
    assert!(matches!(e, RegistryError::ServerError { status: 503, attempts: 4, .. }), "{e:?}");
    assert_eq!(server.request_count(), 4);
}
