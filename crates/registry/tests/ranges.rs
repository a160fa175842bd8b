//! Ranged reads against a real docker-registry, and through proxies that give the other
//! answers registries are known to give.

// One-element slices of ranges are what the API takes, not a mistaken `vec![a..b]`.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{AuthDir, HttpRequest, HttpResponse, Server, client, data, forward, options, registry};
use strata_registry::{Client, ClientOptions, RegistryError};
use strata_types::Sha256Digest;

/// Ranges spread over `size`: varied lengths, some overlapping, one duplicate, unsorted.
fn scattered_ranges(size: u64, n: u64, seed: u64) -> Vec<Range<u64>> {
    let noise = data(n as usize * 2, seed);
    let mut v: Vec<Range<u64>> = (0..n)
        .map(|i| {
            let start = (size - 5000) * i / n + u64::from(noise[2 * i as usize]) * 3;
            start..start + 1 + u64::from(noise[2 * i as usize + 1]) * 17
        })
        .collect();
    v.push(v[3].start + 1..v[3].end + 100); // overlaps v[3]
    v.push(v[5].clone()); // duplicate
    v.reverse();
    v
}

fn slices(blob: &[u8], ranges: &[Range<u64>]) -> Vec<Vec<u8>> {
    ranges.iter().map(|r| blob[r.start as usize..r.end as usize].to_vec()).collect()
}

fn push(c: &Client, repo: &str, blob: &[u8]) -> Sha256Digest {
    let d = Sha256Digest::of(blob);
    c.push_blob(repo, &d, blob.len() as u64, None, || Ok(blob)).unwrap();
    d
}

fn with(auth: &AuthDir, addr: &str, max_ranges: usize, parallel: usize) -> Client {
    Client::new(
        addr,
        ClientOptions { max_ranges_per_request: max_ranges, max_parallel_requests: parallel, ..options(auth) },
    )
    .unwrap()
}

#[test]
fn many_ranges_per_request_come_back_as_multipart() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(2 << 20, 1);
    let d = push(&client(reg.addr(), &auth), "r/multi", &blob);
    let ranges = scattered_ranges(blob.len() as u64, 500, 2);
    let c = with(&auth, reg.addr(), 100, 4);
    let mut calls = 0;
    let stats = c
        .get_ranges("r/multi", &d, &ranges, |r, bytes| {
            calls += 1;
            assert_eq!(bytes, &blob[r.start as usize..r.end as usize]);
            Ok::<(), RegistryError>(())
        })
        .unwrap();
    assert_eq!(calls, 501, "each distinct range once");
    // 501 distinct ranges, at most 100 per request: 6 requests, all answered multipart.
    assert_eq!(stats.requests, 6, "{stats:?}");
    assert_eq!(stats.multipart_responses, 6, "{stats:?}");
    assert_eq!(stats.max_ranges_in_request, 84, "{stats:?}");
    assert_eq!((stats.whole_blob_responses, stats.refused_requests), (0, 0));
    assert_eq!(c.fetch_ranges("r/multi", &d, &ranges).unwrap(), slices(&blob, &ranges));
    assert_eq!(c.blob_ranges("r/multi", &d).read_range(7..9).unwrap(), &blob[7..9]);
}

#[test]
fn range_headers_are_kept_to_a_size_servers_accept() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(2 << 20, 3);
    let d = push(&client(reg.addr(), &auth), "r/huge", &blob);
    // 12,000 ranges make a ~180 KB Range header (docker-registry refuses headers over 1 MiB
    // with 431, nginx's default is 8 KiB per line, ureq cannot send more than 128 KiB). The
    // client cuts requests by header size as well as by count. (docker-registry serves
    // about 4,000 ranges a second, hence not more.)
    let upstream = reg.addr().to_owned();
    let longest = Arc::new(AtomicUsize::new(0));
    let longest2 = Arc::clone(&longest);
    let proxy = Server::start(move |req: HttpRequest| {
        longest2.fetch_max(req.header("range").map_or(0, str::len), Ordering::SeqCst);
        forward(&upstream, &req)
    });
    let ranges: Vec<Range<u64>> = (0..12_000u64).map(|i| i * 170..i * 170 + 3).collect();
    let c = with(&auth, proxy.addr(), 1_000_000, 2);
    let mut got = vec![Vec::new(); ranges.len()];
    let stats = c
        .get_ranges("r/huge", &d, &ranges, |r, b| {
            got[(r.start / 170) as usize] = b;
            Ok::<(), RegistryError>(())
        })
        .unwrap();
    assert!(got == slices(&blob, &ranges));
    let longest = longest.load(Ordering::SeqCst);
    assert!(longest <= 60 << 10 && longest > 50 << 10, "longest Range header {longest} bytes");
    assert_eq!(stats.requests, stats.multipart_responses, "{stats:?}");
    assert!(stats.requests >= 3 && stats.max_ranges_in_request > 3000, "{stats:?}");
    assert_eq!(stats.refused_requests, 0);
}

#[test]
fn whole_blob_answers_are_sliced_while_streaming() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(8 << 20, 4);
    let d = push(&client(reg.addr(), &auth), "r/whole", &blob);

    // docker-registry itself answers 200 when the ranges add up to more than the blob.
    let c = with(&auth, reg.addr(), 100, 1);
    let overlapping = vec![0..6 << 20, 3 << 20..8 << 20, 100..200];
    let stats = c.get_ranges("r/whole", &d, &overlapping, |r, b| {
        assert_eq!(b, &blob[r.start as usize..r.end as usize]);
        Ok::<(), RegistryError>(())
    });
    assert_eq!(stats.unwrap().whole_blob_responses, 1);

    // A proxy that drops the Range header (as some storage backends ignore multi-range).
    let upstream = reg.addr().to_owned();
    let proxy = Server::start(move |mut req: HttpRequest| {
        req.remove_header("range");
        forward(&upstream, &req)
    });
    let c = with(&auth, proxy.addr(), 10, 4);
    let early: Vec<Range<u64>> = (0..100u64).map(|i| i * 2000..i * 2000 + 700).collect();
    let stats = c
        .get_ranges("r/whole", &d, &early, |r, b| {
            assert_eq!(b, &blob[r.start as usize..r.end as usize]);
            Ok::<(), RegistryError>(())
        })
        .unwrap();
    assert!(stats.whole_blob_responses >= 1 && stats.multipart_responses == 0, "{stats:?}");
    // The first worker to see a whole blob takes over the queued batches: 10 batches of 10,
    // but no more requests than threads.
    assert!(stats.requests <= 4, "{stats:?}");
    // Reading stopped after the last range (200 KB in): far less than the 8 MiB blob per request.
    let down = c.progress().downloaded();
    assert!(down < 4 * (2 << 20), "downloaded {down} bytes");
}

/// A proxy that refuses requests with more than 7 ranges, with 400, 416 or 431 in turn.
#[test]
fn refused_multi_range_requests_are_halved() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(1 << 20, 5);
    let d = push(&client(reg.addr(), &auth), "r/refuse", &blob);
    let upstream = reg.addr().to_owned();
    let most = Arc::new(AtomicUsize::new(0));
    let most2 = Arc::clone(&most);
    let refusals = AtomicUsize::new(0);
    let proxy = Server::start(move |req: HttpRequest| {
        if req.range_count() > 7 {
            let status = [400, 416, 431][refusals.fetch_add(1, Ordering::SeqCst) % 3];
            return HttpResponse::new(status).with_body("too many ranges");
        }
        most2.fetch_max(req.range_count(), Ordering::SeqCst);
        forward(&upstream, &req)
    });
    let c = with(&auth, proxy.addr(), 64, 2);
    let ranges = scattered_ranges(blob.len() as u64, 100, 6);
    let mut got = Vec::new();
    let stats = c
        .get_ranges("r/refuse", &d, &ranges, |r, b| {
            got.push((r, b));
            Ok::<(), RegistryError>(())
        })
        .unwrap();
    assert!(stats.refused_requests >= 3, "{stats:?}"); // 50 -> 25 -> 12 -> 6
    assert!(most.load(Ordering::SeqCst) <= 7);
    assert!(c.max_ranges_per_request() <= 7);
    got.sort_by_key(|(r, _)| (r.start, r.end));
    let mut want: Vec<Range<u64>> = ranges.clone();
    want.sort_by_key(|r| (r.start, r.end));
    want.dedup();
    assert_eq!(got.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), want);
    assert!(got.iter().all(|(r, b)| b == &blob[r.start as usize..r.end as usize]));
    // A single range that is still refused is an error, not a loop.
    let always = Server::start(|_| HttpResponse::new(400).with_body("no"));
    let e = with(&auth, always.addr(), 64, 2).fetch_ranges("r/refuse", &d, &ranges).unwrap_err();
    assert!(matches!(e, RegistryError::Status { status: 400, .. }), "{e:?}");
}

#[test]
fn single_range_answers_are_used_and_missing_ranges_asked_again() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(1 << 20, 7);
    let d = push(&client(reg.addr(), &auth), "r/single", &blob);
    let ranges = scattered_ranges(blob.len() as u64, 40, 8);

    // A server that merges all ranges into one: a single 206 part covering them all.
    let upstream = reg.addr().to_owned();
    let merging = Server::start(move |mut req: HttpRequest| {
        if let Some(spec) = req.header("range").map(str::to_owned) {
            let pairs: Vec<(u64, u64)> = spec["bytes=".len()..]
                .split(',')
                .map(|p| {
                    let (a, b) = p.split_once('-').unwrap();
                    (a.parse().unwrap(), b.parse().unwrap())
                })
                .collect();
            let lo = pairs.iter().map(|p| p.0).min().unwrap();
            let hi = pairs.iter().map(|p| p.1).max().unwrap();
            req.set_header("Range", &format!("bytes={lo}-{hi}"));
        }
        forward(&upstream, &req)
    });
    let c = with(&auth, merging.addr(), 100, 2);
    let stats = c.get_ranges("r/single", &d, &ranges, |r, b| {
        assert_eq!(b, &blob[r.start as usize..r.end as usize]);
        Ok::<(), RegistryError>(())
    });
    let stats = stats.unwrap();
    assert_eq!((stats.single_range_responses, stats.multipart_responses, stats.requests), (2, 0, 2), "{stats:?}");

    // A server that only serves the first range asked: every answer is a single part and
    // the rest is asked again.
    let upstream = reg.addr().to_owned();
    let first_only = Server::start(move |mut req: HttpRequest| {
        if let Some(spec) = req.header("range").map(str::to_owned) {
            let first = spec.split(',').next().unwrap().to_owned();
            req.set_header("Range", &first);
        }
        forward(&upstream, &req)
    });
    let c = with(&auth, first_only.addr(), 100, 2);
    assert_eq!(c.fetch_ranges("r/single", &d, &ranges).unwrap(), slices(&blob, &ranges));
}

#[test]
fn wrong_or_impossible_ranges_are_errors() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(100_000, 9);
    let d = push(&client(reg.addr(), &auth), "r/bad", &blob);
    let c = with(&auth, reg.addr(), 100, 2);

    let e = c.fetch_ranges("r/bad", &d, &[10..10]).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidRange { .. }), "{e:?}");
    let e = c.fetch_ranges("r/bad", &d, &[0..10, 200_000..200_010]).unwrap_err();
    assert!(
        matches!(&e, RegistryError::RangeNotSatisfiable { range, blob_size: Some(100_000), .. } if *range == (200_000..200_010)),
        "{e:?}"
    );
    let e = c.fetch_ranges("r/bad", &Sha256Digest::of(b"missing"), &[0..10]).unwrap_err();
    assert!(matches!(e, RegistryError::BlobUnknown { .. }), "{e:?}");

    // A server that answers other bytes than those asked (every range shifted by one).
    let upstream = reg.addr().to_owned();
    let shifting = Server::start(move |mut req: HttpRequest| {
        if let Some(spec) = req.header("range").map(str::to_owned) {
            let shifted: Vec<String> = spec["bytes=".len()..]
                .split(',')
                .map(|p| {
                    let (a, b) = p.split_once('-').unwrap();
                    format!("{}-{}", a.parse::<u64>().unwrap() + 1, b.parse::<u64>().unwrap() + 1)
                })
                .collect();
            req.set_header("Range", &format!("bytes={}", shifted.join(",")));
        }
        forward(&upstream, &req)
    });
    let c = with(&auth, shifting.addr(), 100, 1);
    // One range: a single-part answer that is not what was asked.
    let e = c.fetch_ranges("r/bad", &d, &[0..10]).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{e:?}");
    assert!(e.to_string().contains("outside what was asked"), "{e}");
    // Two ranges: multipart, the first part (bytes 1-10) inside the request's span but
    // holding neither range.
    let e = c.fetch_ranges("r/bad", &d, &[0..10, 5000..5010]).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{e:?}");
    assert!(e.to_string().contains("holds none of the requested ranges"), "{e}");
}

#[test]
fn an_error_from_the_consumer_stops_the_fetch() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let blob = data(1 << 20, 10);
    let d = push(&client(reg.addr(), &auth), "r/stop", &blob);
    #[derive(Debug)]
    enum MyError {
        Full,
        #[allow(dead_code)] // only shown by Debug
        Registry(RegistryError),
    }
    impl From<RegistryError> for MyError {
        fn from(e: RegistryError) -> Self {
            MyError::Registry(e)
        }
    }
    let c = with(&auth, reg.addr(), 5, 4);
    let ranges: Vec<Range<u64>> = (0..400u64).map(|i| i * 2000..i * 2000 + 100).collect();
    let mut seen = 0;
    let r = c.get_ranges("r/stop", &d, &ranges, |_, _| {
        seen += 1;
        if seen == 3 { Err(MyError::Full) } else { Ok(()) }
    });
    assert!(matches!(r, Err(MyError::Full)), "{r:?}");
    assert_eq!(seen, 3);
}
