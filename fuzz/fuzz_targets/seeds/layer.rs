//! Seeds for layer_tar, layer_apply and tarsplit_records: tars in every header dialect the
//! parser reads, layers that try to leave the root, and their tar-split records.

use strata_fuzz::tarspec::{EntrySpec, NameStyle, Spec};
use strata_layer::parse::TarReader;
use strata_layer::tarsplit::TarSplitRecorder;

fn spec(entries: Vec<EntrySpec>) -> Vec<u8> {
    Spec { entries, ..Spec::default() }.to_tar()
}

fn styled(mut e: EntrySpec, style: NameStyle) -> EntrySpec {
    e.style = style;
    e
}

/// Archives a well-behaved layer could contain.
fn plain_tars() -> Vec<(&'static str, Vec<u8>)> {
    let long = [b"d".repeat(60), b"/".to_vec(), b"e".repeat(70)].concat();
    let mut xattr_file = EntrySpec::file(b"etc/caps", 10);
    xattr_file.xattrs = vec![("security.capability".into(), vec![1, 0, 0, 2]), ("user.x".into(), b"y".to_vec())];
    let mut big_ids = EntrySpec::file(b"owned", 3);
    (big_ids.uid, big_ids.gid) = (5_000_000, 70_000);
    let mut dev = EntrySpec::new(b'3', b"dev/null");
    dev.dev = (1, 3);
    let mut tars = vec![
        (
            "basic",
            spec(vec![
                EntrySpec::new(b'5', b"./"),
                EntrySpec::new(b'5', b"etc/"),
                EntrySpec::file(b"etc/passwd", 700),
                EntrySpec::link(b'2', b"etc/motd", b"../usr/share/motd"),
                EntrySpec::link(b'1', b"etc/passwd-", b"etc/passwd"),
                EntrySpec::new(b'6', b"run/fifo"),
                dev,
                EntrySpec::file(b"empty", 0),
            ]),
        ),
        (
            "long_names",
            spec(vec![
                styled(EntrySpec::file(&long, 513), NameStyle::Pax),
                styled(EntrySpec::file(&[&long[..], b"2"].concat(), 1), NameStyle::Gnu),
                styled(EntrySpec::link(b'2', b"l", &long), NameStyle::Gnu),
                styled(EntrySpec::link(b'1', b"h", &long), NameStyle::Pax),
            ]),
        ),
        ("xattrs_and_ids", spec(vec![xattr_file, big_ids])),
        (
            "whiteouts",
            spec(vec![
                EntrySpec::new(b'5', b"a/"),
                EntrySpec::file(b"a/.wh..wh..opq", 0),
                EntrySpec::file(b".wh.f", 0),
                EntrySpec::file(b"dir/.wh.f", 0),
                EntrySpec::file(b".wh..wh.plnk/1", 4),
                EntrySpec::file(b"a/new", 5),
            ]),
        ),
    ];
    // The same archive as GNU tar writes it (tar crate: GNU headers, mode/mtime etc.).
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(12);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "usr/bin/tool", &b"#!/bin/sh\n:\n"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h, "usr/lib/", &[][..]).unwrap();
    tars.push(("gnu", b.into_inner().unwrap()));
    tars
}

/// Layers that try to act outside the root or through symlinks.
fn hostile_tars() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("through_lower_symlink", spec(vec![EntrySpec::file(b"lnk/owned", 3), EntrySpec::file(b"abs/owned", 3)])),
        ("through_own_symlink", spec(vec![EntrySpec::link(b'2', b"x", b"../sentinel"), EntrySpec::file(b"x/file", 3)])),
        ("hardlink_out", spec(vec![EntrySpec::link(b'1', b"h", b"lnk/file"), EntrySpec::link(b'1', b"g", b"up/x")])),
        ("whiteout_through_symlink", spec(vec![EntrySpec::file(b"lnk/.wh.file", 0), EntrySpec::file(b"dir/c", 1)])),
        ("opaque_symlink", spec(vec![EntrySpec::file(b"lnk/.wh..wh..opq", 0)])),
        (
            "replace_symlink",
            spec(vec![EntrySpec::new(b'5', b"lnk"), EntrySpec::file(b"lnk/file", 2), EntrySpec::file(b".wh.abs", 0)]),
        ),
        (
            "dot_dot",
            spec(vec![
                EntrySpec::file(b"../sentinel/file", 1),
                EntrySpec::file(b"/etc/x", 1),
                EntrySpec::file(b"a/../../x", 1),
            ]),
        ),
        ("overlay_xattr", {
            let mut d = EntrySpec::new(b'5', b"d/");
            d.xattrs = vec![("trusted.overlay.redirect".into(), b"/sentinel".to_vec())];
            spec(vec![d])
        }),
        ("whiteout_device", {
            let mut w = EntrySpec::new(b'3', b"w");
            w.dev = (0, 0);
            spec(vec![w, EntrySpec::new(b'5', b"w/")])
        }),
        ("duplicate", spec(vec![EntrySpec::file(b"f", 1), EntrySpec::file(b"./f", 2)])),
    ]
}

/// Pseudo-random inputs for the structured (spec) modes.
fn structured(n: usize, len: usize) -> Vec<Vec<u8>> {
    let mut x = 0x2545f4914f6cdd1du64;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

fn tar_split(tar: &[u8]) -> Vec<u8> {
    let mut r = TarReader::with_tap(tar, TarSplitRecorder::new(Vec::new()));
    while r.next_header().expect("seed tars parse").is_some() {}
    r.into_tap().finish().unwrap()
}

pub fn write(put: &dyn Fn(&str, &str, &[u8])) {
    let plain = plain_tars();
    let hostile = hostile_tars();
    for (name, tar) in &plain {
        put("layer_tar", name, &[&[1u8][..], tar].concat());
        put("layer_tar", &format!("{name}_fix"), &[&[3u8][..], tar].concat());
        let ts = tar_split(tar);
        put("tarsplit_records", name, &[&[1u8][..], &ts].concat());
        put("tarsplit_records", &format!("{name}_nocrc"), &[&[0u8][..], &ts].concat());
    }
    for (name, tar) in plain.iter().chain(&hostile) {
        for (flags, mode) in [(2u8, "oci"), (3, "overlay")] {
            put("layer_apply", &format!("{name}_{mode}"), &[&[flags][..], tar].concat());
        }
    }
    for (i, input) in structured(24, 300).iter().enumerate() {
        put("layer_tar", &format!("spec{i}"), &[&[(i as u8) << 2][..], input].concat());
        put("layer_apply", &format!("spec{i}"), &[&[(i & 1) as u8][..], input].concat());
    }
}
