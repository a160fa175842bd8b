//! The content-writer contract and the smaller options of `apply`.

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;

use common::{H, TarBuilder};
use strata_layer::apply::{
    Applied, ApplyError, ApplyOptions, ContentWriter, OverlayXattrs, WhiteoutMode, apply, apply_simple,
};
use strata_layer::parse::ParseError;
use strata_types::Entry;

/// Writes uppercase and reports (path, bytes) — an outcome of the caller's own type.
struct Upper;

impl ContentWriter for Upper {
    type Outcome = (String, usize);
    fn write(&mut self, entry: &Entry, mut dst: &File, data: &mut dyn Read) -> io::Result<(String, usize)> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)?;
        dst.write_all(&buf.to_ascii_uppercase())?;
        Ok((entry.path.to_string(), buf.len()))
    }
}

/// Reads only the first byte.
struct Lazy;

impl ContentWriter for Lazy {
    type Outcome = ();
    fn write(&mut self, _: &Entry, _: &File, data: &mut dyn Read) -> io::Result<()> {
        data.read_exact(&mut [0u8; 1])
    }
}

/// Fails after reading everything.
struct Failing;

impl ContentWriter for Failing {
    type Outcome = ();
    fn write(&mut self, _: &Entry, _: &File, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink())?;
        Err(io::Error::other("disk full"))
    }
}

fn no_observer<O>(_: Applied<'_, O>) -> io::Result<()> {
    Ok(())
}

#[test]
fn content_writer_outcomes_reach_the_observer() {
    let dir = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new().dir("d").file("d/a", b"hello").file("d/b", b"").hardlink("d/c", "d/a").finish();
    let mut outcomes = Vec::new();
    let opts = ApplyOptions::new(WhiteoutMode::Oci);
    apply(dir.path(), &tar[..], &opts, &mut Upper, None, &mut |a| {
        if let Applied::Entry { entry, content } = a {
            outcomes.push((entry.path.to_string(), content));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join("d/a")).unwrap(), b"HELLO");
    assert_eq!(
        outcomes,
        [
            ("d".to_owned(), None),
            ("d/a".to_owned(), Some(("d/a".to_owned(), 5))),
            ("d/b".to_owned(), Some(("d/b".to_owned(), 0))),
            ("d/c".to_owned(), None),
        ]
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("d/c")).unwrap().ino(),
        std::fs::metadata(dir.path().join("d/a")).unwrap().ino()
    );
}

#[test]
fn content_writer_failures_are_told_apart_from_broken_streams() {
    let opts = ApplyOptions::new(WhiteoutMode::Oci);
    let tar = TarBuilder::new().file("f", b"0123456789").finish();
    let dir = tempfile::tempdir().unwrap();
    let err = apply(dir.path(), &tar[..], &opts, &mut Lazy, None, &mut no_observer).unwrap_err();
    assert!(matches!(err, ApplyError::ContentShort { left: 9, size: 10, .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = apply(dir.path(), &tar[..], &opts, &mut Failing, None, &mut no_observer).unwrap_err();
    assert!(matches!(&err, ApplyError::Content { entry, .. } if entry.as_bytes() == b"f"), "{err}");

    // The stream ends inside the file: a parse error, whatever the writer says.
    let dir = tempfile::tempdir().unwrap();
    let err = apply(dir.path(), &tar[..515], &opts, &mut Upper, None, &mut no_observer).unwrap_err();
    assert!(matches!(err, ApplyError::Parse(ParseError::Truncated { .. })), "{err}");
}

#[test]
fn observer_errors_stop_the_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new().file("a", b"1").file("b", b"2").finish();
    let opts = ApplyOptions::new(WhiteoutMode::Oci);
    let err = apply(dir.path(), &tar[..], &opts, &mut Upper, None, &mut |_| Err(io::Error::other("stop"))).unwrap_err();
    assert!(matches!(&err, ApplyError::Observer { entry, .. } if entry.as_bytes() == b"a"), "{err}");
    assert!(!dir.path().join("b").exists());
}

#[test]
fn ownership_is_only_set_when_asked() {
    if !strata_testutil::require_root() {
        return;
    }
    let mut h = H::new("owned", b'0');
    h.uid = 4242;
    h.gid = 4343;
    let tar = TarBuilder::new().header(&h).finish();
    for chown in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = ApplyOptions::new(WhiteoutMode::Oci);
        opts.chown = chown;
        apply_simple(dir.path(), &tar[..], &opts).unwrap();
        let md = std::fs::metadata(dir.path().join("owned")).unwrap();
        let expected = if chown { (4242, 4343) } else { (0, 0) };
        assert_eq!((md.uid(), md.gid()), expected, "chown={chown}");
    }
}

#[test]
fn user_namespace_opaque_markers_for_rootless_overlays() {
    let dir = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new().dir("d").file("d/.wh..wh..opq", b"").finish();
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.overlay_xattrs = OverlayXattrs::User;
    apply_simple(dir.path(), &tar[..], &opts).unwrap();
    assert_eq!(xattr::get(dir.path().join("d"), "user.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert!(!dir.path().join("d/.wh..wh..opq").exists());
}

#[test]
fn missing_parents_are_created_as_plain_directories() {
    let dir = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new().file("a/b/c", b"x").file("a/.wh.gone", b"").finish();
    let mut implicit = Vec::new();
    apply(dir.path(), &tar[..], &ApplyOptions::new(WhiteoutMode::Overlay), &mut Upper, None, &mut |a| {
        if let Applied::ImplicitDir { path } = a {
            implicit.push(path.to_string());
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(implicit, ["a", "a/b"]);
    for d in ["a", "a/b"] {
        let md = std::fs::metadata(dir.path().join(d)).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime()), (0o755, 0), "{d}");
    }
}
