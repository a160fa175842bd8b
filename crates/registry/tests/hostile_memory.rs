//! Memory stays bounded by what the client asked for, whatever sizes a hostile server
//! declares. One test in a process of its own, so that the peak resident set size
//! (VmHWM) it measures is its own.

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{AuthDir, HttpResponse, Server, client, options, peak_rss, requested_ranges, within_a_minute};
use strata_registry::{Client, ClientOptions, ManifestRef};
use strata_types::Sha256Digest;

const GIB: u64 = 1 << 30;
/// What each hostile answer really sends (besides claiming far more): enough that
/// buffering it would show, little enough for a quick test.
const SENT: u64 = 512 << 20;
const BOUND: u64 = 256 << 20;

#[test]
fn declared_gigabytes_do_not_become_memory() {
    let auth = AuthDir::new(&[]);
    let d = Sha256Digest::of(b"hostile");
    let one_request = |addr: &str| -> Client {
        Client::new(addr, ClientOptions { max_parallel_requests: 1, ..options(&auth) }).unwrap()
    };
    // Two ranges 4 GiB apart, so that a part claiming all of it is inside the request's span.
    let far: Vec<Range<u64>> = vec![0..10, 4 * GIB - 10..4 * GIB];
    let before = peak_rss();

    // (a) A multipart answer whose one part claims 4 GiB, and sends 512 MiB of it.
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    let server = Server::start(move |req| {
        seen2.fetch_max(requested_ranges(&req).len(), Ordering::SeqCst);
        HttpResponse::new(206)
            .with_header("Content-Type", "multipart/byteranges; boundary=B")
            .with_body(format!("--B\r\nContent-Range: bytes 0-{}/{}\r\n\r\n", 4 * GIB - 1, 4 * GIB))
            .with_stream(b"\0", Some(SENT))
    });
    let (c, ranges) = (one_request(server.addr()), far.clone());
    let r = within_a_minute("multipart", move || c.fetch_ranges("hostile/app", &d, &ranges));
    assert!(r.is_err(), "a 4 GiB part for 20 bytes asked");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "both ranges went in one request");

    // (c) A single-range answer claiming 4 GiB.
    let server = Server::start(|_| {
        HttpResponse::new(206)
            .with_header("Content-Range", &format!("bytes 0-{}/{}", 4 * GIB - 1, 4 * GIB))
            .with_stream(b"\0", Some(SENT))
    });
    let (c, ranges) = (one_request(server.addr()), far.clone());
    assert!(within_a_minute("single range", move || c.fetch_ranges("hostile/app", &d, &ranges)).is_err());

    // (d) A manifest without end, (e) a blob of 100 bytes without end.
    let server = Server::start(|_| HttpResponse::new(200).with_body("{\"x\":\"").with_stream(b"x", Some(SENT)));
    let c = client(server.addr(), &auth);
    let r = within_a_minute("manifest", move || c.get_manifest("hostile/app", &ManifestRef::Tag("v1".into())));
    assert!(r.is_err());
    let c = client(server.addr(), &auth);
    assert!(within_a_minute("blob", move || c.copy_blob("hostile/app", &d, 100, &mut Vec::new())).is_err());

    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB while the servers claimed gigabytes", grown >> 10);
    assert!(grown < BOUND, "peak RSS grew by {} MiB (bound {} MiB)", grown >> 20, BOUND >> 20);
}
