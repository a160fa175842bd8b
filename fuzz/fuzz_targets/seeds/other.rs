//! Seeds for oci_docs, registry_multipart and store_records.

#[allow(dead_code)]
#[path = "../../../crates/store/src/records.rs"]
mod records;

use records::{FileRecord, Marker};
use strata_types::{Blake3Digest, Entry, EntryKind, RelPath, Sha256Digest, Timestamp};

const D: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn oci(put: &dyn Fn(&str, &str, &[u8])) {
    let desc = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{D}","size":3,"annotations":{{"io.github.containers.zstd-chunked.manifest-position":"1:2:3:1"}},"urls":["x"]}}"#
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":3}},"layers":[{desc}],"annotations":{{"a":"b"}},"subject":{{"x":1.5e3}}}}"#
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D}","size":7,"platform":{{"architecture":"amd64","os":"linux","variant":"v8","os.features":["x"]}}}}]}}"#
    );
    let config = format!(
        r#"{{"created":"2026-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{D}"]}},"history":[{{"created_by":"x","empty_layer":true,"author":"y"}}]}}"#
    );
    for (name, doc) in [("descriptor", &desc), ("manifest", &manifest), ("index", &index), ("config", &config)] {
        put("oci_docs", name, doc.as_bytes());
    }
    let refs = [
        "oci:/tmp/layout:tag",
        "oci:relative/dir",
        "oci:a:b:c",
        "127.0.0.1:5000/v2/rootfs-a:zstd-chunked",
        "localhost/library/debian",
        "[::1]:5000/a/b__c/d-e@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "registry.example.com/x:v1.0@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ];
    for (i, r) in refs.iter().enumerate() {
        put("oci_docs", &format!("ref{i}"), r.as_bytes());
    }
}

fn multipart(put: &dyn Fn(&str, &str, &[u8])) {
    for (name, eol) in [("crlf", "\r\n"), ("lf", "\n")] {
        let mut body = format!("multipart/byteranges; boundary=3d6b6a416f9b5\n{eol}--3d6b6a416f9b5{eol}");
        body += &format!("Content-Type: application/octet-stream{eol}Content-Range: bytes 0-9/100{eol}{eol}");
        body += &format!("0123456789{eol}--3d6b6a416f9b5{eol}Content-Range: bytes 50-52/100{eol}{eol}abc");
        body += &format!("{eol}--3d6b6a416f9b5--{eol}");
        put("registry_multipart", name, body.as_bytes());
    }
    put("registry_multipart", "quoted", b"Multipart/ByteRanges; charset=x; BOUNDARY=\"a b\"\npreamble\r\n--a b \t\r\ncontent-RANGE:   bytes 5-7/*  \r\n\r\nxyz\r\n--a b--  \r\nepilogue");
    put("registry_multipart", "range", b"bytes 0-1023/4096");
    put("registry_multipart", "unsatisfied", b"bytes */4096");
}

fn records(put: &dyn Fn(&str, &str, &[u8])) {
    let mut f = Entry::new(RelPath::new("usr/bin/python3.11").unwrap(), EntryKind::File);
    (f.mode, f.uid, f.gid, f.size) = (0o4755, 1000, 65534, 1 << 40);
    f.mtime = Timestamp::new(-5, 999_999_999);
    f.xattrs.insert("security.capability".into(), vec![1, 2, 3]);
    let file = FileRecord {
        entry: f,
        marker: Marker::None,
        blake3: Some(Blake3Digest::of(b"x")),
        sha256: Some(Sha256Digest::of(b"x")),
    };
    let mut l = Entry::new(RelPath::new("a/b").unwrap(), EntryKind::Symlink);
    l.link_target = Some(b"../../etc".to_vec());
    let link = FileRecord { entry: l, marker: Marker::None, blake3: None, sha256: None };
    let mut d = Entry::new(RelPath::new("dev/sda").unwrap(), EntryKind::BlockDevice);
    (d.dev_major, d.dev_minor) = (8, 0);
    let dev = FileRecord { entry: d, marker: Marker::None, blake3: None, sha256: None };
    let wh = FileRecord {
        entry: Entry::new(RelPath::new("etc/old").unwrap(), EntryKind::File),
        marker: Marker::Whiteout,
        blake3: None,
        sha256: None,
    };
    let opq = FileRecord {
        entry: Entry::new(RelPath::new("var/cache").unwrap(), EntryKind::Dir),
        marker: Marker::Opaque,
        blake3: None,
        sha256: None,
    };
    for (name, r) in [("file", file), ("symlink", link), ("device", dev), ("whiteout", wh), ("opaque", opq)] {
        put("store_records", name, &r.encode());
    }
}

pub fn write(put: &dyn Fn(&str, &str, &[u8])) {
    oci(put);
    multipart(put);
    records(put);
}
