//! Push and pull against a real docker-registry (and a proxy in front of it where the
//! registry must misbehave).

mod common;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{AuthDir, HttpResponse, Server, client, data, forward, push_image, registry};
use strata_oci::media;
use strata_registry::{ManifestRef, Progress, PushOutcome, Reference, RegistryError};
use strata_types::Sha256Digest;

#[test]
fn push_then_pull_by_tag_and_by_digest() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let c = client(reg.addr(), &auth);
    let img = push_image(&c, "strata/app", "v1", &[1 << 20, 3 << 20 | 17], 1);
    let uploaded = c.progress().uploaded();
    assert!(uploaded >= (4 << 20) as u64, "uploaded counter {uploaded}");

    // Pushing again finds every blob.
    for l in &img.layers {
        let d = Sha256Digest::of(l);
        let outcome =
            c.push_blob("strata/app", &d, l.len() as u64, None, || -> std::io::Result<&[u8]> { panic!("reopened") });
        assert_eq!(outcome.unwrap(), PushOutcome::Exists);
        assert_eq!(c.blob_size("strata/app", &d).unwrap(), Some(l.len() as u64));
    }

    let by_tag = Reference::parse(&format!("{}/strata/app:v1", reg.addr())).unwrap();
    let resolved = c.resolve(&by_tag).unwrap();
    assert_eq!(resolved.manifest.digest, img.digest);
    assert_eq!(resolved.manifest.bytes, img.manifest_bytes);
    assert_eq!(resolved.manifest.media_type, media::IMAGE_MANIFEST);
    assert_eq!(resolved.parsed, img.manifest);
    assert!(resolved.index.is_none());

    let by_digest = by_tag.with_digest(img.digest);
    let again = c.resolve(&by_digest).unwrap();
    assert_eq!(again.manifest, resolved.manifest);

    // Pull the blobs back with a separate progress counter.
    let progress = Arc::new(Progress::default());
    let pc = c.with_progress(Arc::clone(&progress));
    for (desc, bytes) in resolved.parsed.layers.iter().zip(&img.layers) {
        let mut r = pc.get_blob("strata/app", &desc.digest, desc.size).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        r.finish().unwrap();
        assert_eq!(&got, bytes);
    }
    let mut cfg = Vec::new();
    let n = pc.copy_blob("strata/app", &resolved.parsed.config.digest, resolved.parsed.config.size, &mut cfg).unwrap();
    assert_eq!((n as usize, &cfg), (img.config.len(), &img.config));
    let total: usize = img.layers.iter().map(Vec::len).sum::<usize>() + img.config.len();
    assert_eq!(progress.downloaded(), total as u64);
}

#[test]
fn an_index_resolves_to_its_linux_amd64_manifest() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let c = client(reg.addr(), &auth);
    let arm = push_image(&c, "multi", "arm", &[1000], 10);
    let amd = push_image(&c, "multi", "amd", &[2000], 20);
    let desc = |img: &common::PushedImage, arch: &str| {
        let mut d = strata_oci::Descriptor::new(media::IMAGE_MANIFEST, img.digest, img.manifest_bytes.len() as u64);
        d.platform = Some(serde_json::from_value(serde_json::json!({"os": "linux", "architecture": arch})).unwrap());
        d
    };
    let index = strata_oci::ImageIndex {
        schema_version: 2,
        media_type: Some(media::IMAGE_INDEX.into()),
        manifests: vec![desc(&arm, "arm64"), desc(&amd, "amd64")],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = c.put_manifest("multi", &ManifestRef::Tag("both".into()), media::IMAGE_INDEX, &bytes).unwrap();
    let r = c.resolve(&Reference::parse(&format!("{}/multi:both", reg.addr())).unwrap()).unwrap();
    assert_eq!(r.manifest.digest, amd.digest);
    assert_eq!(r.parsed.layers[0].size, 2000);
    let idx = r.index.unwrap();
    assert_eq!((idx.digest, idx.media_type.as_str()), (index_digest, media::IMAGE_INDEX));

    // An index without linux/amd64 is a clear error.
    let only_arm = strata_oci::ImageIndex { manifests: vec![desc(&arm, "arm64")], ..index };
    let bytes = serde_json::to_vec(&only_arm).unwrap();
    c.put_manifest("multi", &ManifestRef::Tag("arm-only".into()), media::IMAGE_INDEX, &bytes).unwrap();
    let e = c.resolve(&Reference::parse(&format!("{}/multi:arm-only", reg.addr())).unwrap()).unwrap_err();
    assert!(matches!(e, RegistryError::NoMatchingPlatform { .. }), "{e}");
}

#[test]
fn mounts_link_blobs_across_repositories_and_fall_back_to_upload() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let c = client(reg.addr(), &auth);
    let blob = data(300_000, 7);
    let d = Sha256Digest::of(&blob);
    assert_eq!(c.push_blob("src/a", &d, blob.len() as u64, None, || Ok(&blob[..])).unwrap(), PushOutcome::Uploaded);
    assert!(!c.blob_exists("dst/b", &d).unwrap());
    assert!(c.mount_blob("dst/b", &d, "src/a").unwrap());
    assert_eq!(c.blob_size("dst/b", &d).unwrap(), Some(blob.len() as u64));
    let mut got = Vec::new();
    c.copy_blob("dst/b", &d, blob.len() as u64, &mut got).unwrap();
    assert_eq!(got, blob);

    // push_blob mounts when the source repository has the blob ...
    let opened = AtomicUsize::new(0);
    let open = || {
        opened.fetch_add(1, Ordering::SeqCst);
        Ok(&blob[..])
    };
    assert_eq!(c.push_blob("dst/c", &d, blob.len() as u64, Some("src/a"), open).unwrap(), PushOutcome::Mounted);
    assert_eq!(opened.load(Ordering::SeqCst), 0);
    // ... and uploads when it does not (202 from the mount request).
    let other = data(1000, 8);
    let od = Sha256Digest::of(&other);
    assert!(!c.mount_blob("dst/d", &od, "src/a").unwrap());
    assert!(!c.blob_exists("dst/d", &od).unwrap());
    assert_eq!(c.push_blob("dst/d", &od, 1000, Some("src/a"), || Ok(&other[..])).unwrap(), PushOutcome::Uploaded);
    assert!(c.blob_exists("dst/d", &od).unwrap());
}

#[test]
fn missing_manifests_and_blobs_are_named_in_errors() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let c = client(reg.addr(), &auth);
    let img = push_image(&c, "here", "v1", &[10], 3);

    let e = c.get_manifest("here", &ManifestRef::Tag("nope".into())).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("here:nope") && msg.contains(reg.addr()) && msg.contains("MANIFEST_UNKNOWN"), "{msg}");

    let missing = Sha256Digest::of(b"not there");
    let e = c.get_manifest("here", &ManifestRef::Digest(missing)).unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }) && e.to_string().contains(&missing.to_string()), "{e}");

    let e = c.get_blob("here", &missing, 9).unwrap_err();
    assert!(matches!(e, RegistryError::BlobUnknown { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&missing.to_string()) && msg.contains("here") && msg.contains("BLOB_UNKNOWN"), "{msg}");
    assert_eq!(c.blob_size("here", &missing).unwrap(), None);

    // A blob of another repository is not visible here.
    let e = c.get_blob("elsewhere", &Sha256Digest::of(&img.layers[0]), 10).unwrap_err();
    assert!(matches!(e, RegistryError::BlobUnknown { .. }), "{e:?}");

    // A reference without a registry host never reaches the network.
    assert!(matches!(Reference::parse("library/ubuntu"), Err(RegistryError::InvalidReference { .. })));
}

/// A proxy that passes everything to the registry but lets `tamper` change the answer.
fn tampering_proxy(
    upstream: &str,
    tamper: impl Fn(&common::HttpRequest, &mut HttpResponse) + Send + Sync + 'static,
) -> Server {
    let upstream = upstream.to_owned();
    Server::start(move |req| {
        let mut resp = forward(&upstream, &req);
        tamper(&req, &mut resp);
        resp
    })
}

#[test]
fn corrupted_blobs_and_manifests_are_rejected() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let direct = client(reg.addr(), &auth);
    let img = push_image(&direct, "victim", "v1", &[100_000], 5);
    let layer = &img.layers[0];
    let ld = Sha256Digest::of(layer);

    // Flip one byte of every blob and manifest body.
    let flip = tampering_proxy(reg.addr(), |req, resp| {
        if req.method == "GET" && resp.status == 200 && !resp.body.is_empty() && !req.target.contains("/manifests/") {
            resp.body[50] ^= 1;
        }
        if req.target.contains("/manifests/") && resp.status == 200 {
            let b = String::from_utf8(resp.body.clone()).unwrap().replacen(
                "\"schemaVersion\":2",
                "\"schemaVersion\": 2",
                1,
            );
            resp.body = b.into_bytes();
        }
    });
    let c = client(flip.addr(), &auth);
    let mut r = c.get_blob("victim", &ld, layer.len() as u64).unwrap();
    std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    let e = r.finish().unwrap_err();
    assert!(matches!(&e, RegistryError::DigestMismatch { expected, .. } if *expected == ld), "{e:?}");
    assert!(c.copy_blob("victim", &ld, layer.len() as u64, &mut Vec::new()).is_err());

    // By digest: the bytes must hash to it.
    let e = c.get_manifest("victim", &ManifestRef::Digest(img.digest)).unwrap_err();
    assert!(matches!(&e, RegistryError::DigestMismatch { expected, .. } if *expected == img.digest), "{e:?}");
    // By tag: the registry's Docker-Content-Digest no longer matches.
    let e = c.get_manifest("victim", &ManifestRef::Tag("v1".into())).unwrap_err();
    assert!(e.to_string().contains("Docker-Content-Digest"), "{e}");

    // A blob that is longer or shorter than its descriptor.
    let cut = tampering_proxy(reg.addr(), |req, resp| {
        if req.method == "GET" && req.target.contains("/blobs/") {
            resp.body.truncate(resp.body.len() - 1);
        }
    });
    let c = client(cut.addr(), &auth);
    let e = c.get_blob("victim", &ld, layer.len() as u64).unwrap_err();
    assert!(matches!(e, RegistryError::SizeMismatch { found, .. } if found == layer.len() as u64 - 1), "{e:?}");
    // The size the caller expects is checked too, not only the registry's Content-Length.
    let e = direct.copy_blob("victim", &ld, layer.len() as u64 + 1, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, RegistryError::SizeMismatch { .. }), "{e:?}");
}

#[test]
fn uploads_follow_relative_locations_and_report_short_sources() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    // Rewrite absolute Location headers to absolute-path and relative forms.
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    let proxy = tampering_proxy(reg.addr(), move |req, resp| {
        if req.method == "POST"
            && let Some(loc) = resp.header("location").map(str::to_owned)
        {
            let path = &loc[loc.find("/v2/").unwrap()..];
            let n = seen2.fetch_add(1, Ordering::SeqCst);
            // Alternate: "/v2/x/blobs/uploads/<id>?_state=..." and "<id>?_state=...".
            let new = if n.is_multiple_of(2) { path.to_owned() } else { path.rsplit('/').next().unwrap().to_owned() };
            resp.set_header("Location", &new);
        }
    });
    let c = client(proxy.addr(), &auth);
    let img = push_image(&c, "rel/loc", "v1", &[5000, 6000], 9);
    assert!(seen.load(Ordering::SeqCst) >= 3);
    let r = c.resolve(&Reference::parse(&format!("{}/rel/loc:v1", proxy.addr())).unwrap()).unwrap();
    assert_eq!(r.manifest.digest, img.digest);
    for l in &img.layers {
        let mut got = Vec::new();
        c.copy_blob("rel/loc", &Sha256Digest::of(l), l.len() as u64, &mut got).unwrap();
        assert_eq!(&got, l);
    }

    // A source shorter than the size given is the caller's error, and says so.
    let blob = data(1000, 1);
    let e = c.push_blob("rel/loc", &Sha256Digest::of(&blob), 2000, None, || Ok(&blob[..])).unwrap_err();
    assert!(e.to_string().contains("ended after 1000 of 2000 bytes"), "{e}");
    // Bytes that do not match the digest are refused by the registry, with its reason.
    let e = c.push_blob("rel/loc", &Sha256Digest::of(b"other"), 1000, None, || Ok(&blob[..])).unwrap_err();
    assert!(e.to_string().contains("DIGEST_INVALID"), "{e}");
}

#[test]
fn docker_v2_manifests_and_lists_are_understood() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let c = client(reg.addr(), &auth);
    let img = push_image(&c, "docker/app", "oci", &[3000], 11);
    let mut m = img.manifest.clone();
    m.media_type = Some(media::DOCKER_MANIFEST.into());
    m.config.media_type = media::DOCKER_CONFIG.into();
    m.layers[0].media_type = media::DOCKER_LAYER_GZIP.into();
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = c.put_manifest("docker/app", &ManifestRef::Tag("v2".into()), media::DOCKER_MANIFEST, &bytes).unwrap();
    let got = c.get_manifest("docker/app", &ManifestRef::Tag("v2".into())).unwrap();
    assert_eq!((got.digest, got.media_type.as_str(), &got.bytes), (d, media::DOCKER_MANIFEST, &bytes));

    let mut entry = strata_oci::Descriptor::new(media::DOCKER_MANIFEST, d, bytes.len() as u64);
    entry.platform = Some(serde_json::from_value(serde_json::json!({"os": "linux", "architecture": "amd64"})).unwrap());
    let list = serde_json::json!({"schemaVersion": 2, "mediaType": media::DOCKER_MANIFEST_LIST, "manifests": [entry]});
    let list_bytes = serde_json::to_vec(&list).unwrap();
    c.put_manifest("docker/app", &ManifestRef::Tag("list".into()), media::DOCKER_MANIFEST_LIST, &list_bytes).unwrap();
    let r = c.resolve(&Reference::parse(&format!("{}/docker/app:list", reg.addr())).unwrap()).unwrap();
    assert_eq!((r.manifest.digest, r.index.unwrap().media_type.as_str()), (d, media::DOCKER_MANIFEST_LIST));
    assert_eq!(r.parsed.layers[0].media_type, media::DOCKER_LAYER_GZIP);
}

#[test]
fn forbidden_answers_say_what_was_denied() {
    let Some(reg) = registry() else { return };
    let auth = AuthDir::new(&[]);
    let img = push_image(&client(reg.addr(), &auth), "team/app", "v1", &[10], 12);
    // A read-only front: pulls pass, pushes and the tag "secret" are denied.
    let upstream = reg.addr().to_owned();
    let proxy = Server::start(move |req| {
        if matches!(req.method.as_str(), "GET" | "HEAD") && !req.target.ends_with("/secret") {
            return forward(&upstream, &req);
        }
        HttpResponse::new(403)
            .with_header("Content-Type", "application/json")
            .with_body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
    });
    let c = client(proxy.addr(), &auth);
    assert_eq!(c.get_manifest("team/app", &ManifestRef::Tag("v1".into())).unwrap().digest, img.digest);
    let e = c.get_manifest("team/app", &ManifestRef::Tag("secret".into())).unwrap_err();
    assert!(matches!(e, RegistryError::Denied { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("manifest team/app:secret") && msg.contains("DENIED: requested access"), "{msg}");
    let e = c.push_blob_bytes("team/app", b"x").unwrap_err();
    assert!(matches!(e, RegistryError::Denied { .. }) && e.to_string().contains("uploads to team/app"), "{e:?}");
}
