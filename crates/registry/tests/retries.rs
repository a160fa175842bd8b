//! Retries: transient server errors and refused connections are retried a bounded number of
//! times; client errors are not; uploads restart from a new session.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{AuthDir, HttpRequest, HttpResponse, Server, client, data, forward, push_image, registry};
use strata_registry::{ManifestRef, PushOutcome, RegistryError};
use strata_types::Sha256Digest;

/// A proxy that answers `status` to the first `failures` requests matching `which`.
fn failing_proxy(
    upstream: &str,
    failures: usize,
    status: u16,
    which: fn(&HttpRequest) -> bool,
) -> (Server, Arc<AtomicUsize>) {
    let upstream = upstream.to_owned();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    let server = Server::start(move |req| {
        if which(&req) && seen2.fetch_add(1, Ordering::SeqCst) < failures {
            return HttpResponse::new(status)
                .with_header("Retry-After", "0")
                .with_header("Content-Type", "application/json")
                .with_body(r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#);
        }
        forward(&upstream, &req)
    });
    (server, seen)
}

fn manifests(req: &HttpRequest) -> bool {
    req.target.contains("/manifests/")
}

#[test]
fn transient_errors_are_retried() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let img = push_image(&client(reg.addr(), &auth), "retry/app", "v1", &[100], 1);
    for status in [503, 429, 500, 502, 504] {
        let (proxy, seen) = failing_proxy(reg.addr(), 2, status, manifests);
        let m = client(proxy.addr(), &auth).get_manifest("retry/app", &ManifestRef::Tag("v1".into())).unwrap();
        assert_eq!(m.digest, img.digest);
        assert_eq!(seen.load(Ordering::SeqCst), 3, "status {status}: two failures and one success");
    }
}

#[test]
fn persistent_errors_give_up_after_the_bounded_attempts() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let (proxy, seen) = failing_proxy(reg.addr(), usize::MAX, 503, manifests);
    let e = client(proxy.addr(), &auth).get_manifest("retry/app", &ManifestRef::Tag("v1".into())).unwrap_err();
    assert!(matches!(e, RegistryError::ServerError { status: 503, attempts: 4, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("503") && msg.contains("after 4 attempts") && msg.contains("UNAVAILABLE: try later"), "{msg}");
    assert_eq!(seen.load(Ordering::SeqCst), 4);

    // Client errors are answers, not failures: no retry.
    let (proxy, seen) = failing_proxy(reg.addr(), usize::MAX, 404, manifests);
    let e = client(proxy.addr(), &auth).get_manifest("retry/app", &ManifestRef::Tag("v1".into())).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let (proxy, seen) = failing_proxy(reg.addr(), usize::MAX, 400, manifests);
    let e = client(proxy.addr(), &auth).get_manifest("retry/app", &ManifestRef::Tag("v1".into())).unwrap_err();
    assert!(matches!(e, RegistryError::Status { status: 400, .. }), "{e:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn refused_connections_are_retried_then_reported() {
    let auth = AuthDir::new(&[]);
    // A port with nobody listening.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let e = client(&addr, &auth).blob_size("x", &Sha256Digest::of(b"x")).unwrap_err();
    assert!(matches!(e, RegistryError::Connection { attempts: 4, .. }), "{e:?}");
    assert!(e.to_string().contains(&addr), "{e}");
}

#[test]
fn a_failed_upload_restarts_from_a_new_session() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    fn puts(req: &HttpRequest) -> bool {
        req.method == "PUT" && req.target.contains("/blobs/uploads/")
    }
    let (proxy, seen) = failing_proxy(reg.addr(), 1, 503, puts);
    let c = client(proxy.addr(), &auth);
    let blob = data(200_000, 3);
    let opened = AtomicUsize::new(0);
    let outcome = c
        .push_blob("retry/up", &Sha256Digest::of(&blob), blob.len() as u64, None, || {
            opened.fetch_add(1, Ordering::SeqCst);
            Ok(&blob[..])
        })
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!((opened.load(Ordering::SeqCst), seen.load(Ordering::SeqCst)), (2, 2));
    let mut got = Vec::new();
    c.copy_blob("retry/up", &Sha256Digest::of(&blob), blob.len() as u64, &mut got).unwrap();
    assert_eq!(got, blob);
    // The bytes sent both times are counted.
    assert!(c.progress().uploaded() >= 2 * blob.len() as u64);
}

#[test]
fn a_broken_blob_download_resumes_where_it_stopped() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(1 << 20, 4);
    let d = Sha256Digest::of(&blob);
    client(reg.addr(), &auth).push_blob("retry/dl", &d, blob.len() as u64, None, || Ok(&blob[..])).unwrap();

    // The first `cuts` whole-blob GETs promise the full length but stop half-way.
    let proxy_for = |cuts: usize| {
        let upstream = reg.addr().to_owned();
        let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ranges2 = Arc::clone(&ranges);
        let count = AtomicUsize::new(0);
        let server = Server::start(move |req: HttpRequest| {
            let mut resp = forward(&upstream, &req);
            if req.method == "GET" && req.target.contains("/blobs/sha256:") {
                ranges2.lock().unwrap().push(req.header("range").map(str::to_owned));
                if count.fetch_add(1, Ordering::SeqCst) < cuts {
                    let full = resp.body.len();
                    resp.set_header("Content-Length", &full.to_string());
                    resp.body.truncate(full / 2);
                }
            }
            resp
        });
        (server, ranges)
    };

    let (proxy, ranges) = proxy_for(1);
    let c = client(proxy.addr(), &auth);
    let mut got = Vec::new();
    c.copy_blob("retry/dl", &d, blob.len() as u64, &mut got).unwrap();
    assert!(got == blob);
    let seen = ranges.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], None);
    // The second request starts where the first broke off (what ureq had received).
    let resumed_at: u64 =
        seen[1].as_deref().unwrap().strip_prefix("bytes=").unwrap().strip_suffix('-').unwrap().parse().unwrap();
    assert!(resumed_at > 0 && resumed_at <= (blob.len() / 2) as u64, "{resumed_at}");

    // A connection that always breaks: a bounded number of attempts, then an error.
    let (proxy, ranges) = proxy_for(usize::MAX);
    let e = client(proxy.addr(), &auth).copy_blob("retry/dl", &d, blob.len() as u64, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, RegistryError::Io { .. }), "{e:?}");
    assert_eq!(ranges.lock().unwrap().len(), 4);
}
