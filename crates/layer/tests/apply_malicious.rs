//! A corpus of hostile layers, built programmatically. Each must be rejected with the right
//! error, and nothing outside the extraction root may be created or modified (a sentinel
//! tree next to the root is compared before and after). As root (CI), so that a mistake
//! could really write anywhere.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{H, Sandbox, TarBuilder};
use strata_layer::apply::{ApplyError, ApplyOptions, DevicePolicy, WhiteoutMode, apply_simple};
use strata_layer::parse::ParseError;

type Check = fn(&ApplyError) -> bool;

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    mode: WhiteoutMode,
    /// Creates "lower" content in the root before the layer is applied.
    setup: fn(&Sandbox),
    check: Check,
}

fn nothing(_: &Sandbox) {}

fn lower_symlink_to_outside(s: &Sandbox) {
    std::os::unix::fs::symlink("../outside", s.root.join("l")).unwrap();
}

fn lower_file(s: &Sandbox) {
    std::fs::write(s.root.join("lowerfile"), b"lower").unwrap();
}

fn file_with(name: &[u8], records: &[(&str, &[u8])]) -> Vec<u8> {
    TarBuilder::new().pax(records).file(name, b"x").finish()
}

fn cases(s: &Sandbox) -> Vec<Case> {
    let abs = s.abs();
    let outside_abs = [&abs[..], b"/outside"].concat();
    let t = TarBuilder::new;
    let oci = WhiteoutMode::Oci;
    let overlay = WhiteoutMode::Overlay;
    let case = |name, tar, mode, setup, check| Case { name, tar, mode, setup, check };
    vec![
        // Names that leave the root.
        case("dotdot", t().file("../outside/pwned", b"x").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadName { .. }))
        }),
        case("inner dotdot", t().file("a/../../outside/pwned", b"x").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadName { .. }))
        }),
        case("absolute", t().file([&outside_abs[..], b"/pwned"].concat(), b"x").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadName { .. }))
        }),
        case("dotdot in PAX path", file_with(b"innocent", &[("path", b"../../outside/pwned")]), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadName { .. }))
        }),
        // Symlinked parents.
        case(
            "through absolute symlink",
            t().symlink("link", &outside_abs).file("link/pwned", b"x").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { symlink, .. } if symlink.as_bytes() == b"link"),
        ),
        case(
            "through relative symlink",
            t().symlink("link", "../outside").file("link/pwned", b"x").finish(),
            overlay,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        case(
            "through symlink to /",
            t().symlink("link", "/").file([&b"link"[..], &outside_abs, b"/pwned"].concat(), b"x").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        case(
            "through nested symlink to ../..",
            t().dir("a").symlink("a/l", "../..").file("a/l/outside/sub/deep", b"x").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { symlink, .. } if symlink.as_bytes() == b"a/l"),
        ),
        case("through a lower symlink", t().file("l/secret", b"pwned").finish(), oci, lower_symlink_to_outside, |e| {
            matches!(e, ApplyError::ThroughSymlink { .. })
        }),
        case("dir below a lower symlink", t().dir("l/newdir").finish(), oci, lower_symlink_to_outside, |e| {
            matches!(e, ApplyError::ThroughSymlink { .. })
        }),
        // Hardlinks.
        case("hardlink dotdot", t().hardlink("h", "../outside/secret").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadLinkTarget { .. }))
        }),
        case("hardlink /etc/passwd", t().hardlink("h", "/etc/passwd").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadLinkTarget { .. }))
        }),
        case(
            "hardlink absolute sandbox",
            t().hardlink("h", [&abs[..], b"/passwd"].concat()).finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::BadLinkTarget { .. })),
        ),
        case(
            "hardlink through symlinked dir",
            t().symlink("l", "../outside").hardlink("h", "l/secret").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::BadHardlink { .. }),
        ),
        case(
            "hardlink through lower symlinked dir",
            t().hardlink("h", "l/secret").finish(),
            oci,
            lower_symlink_to_outside,
            |e| matches!(e, ApplyError::BadHardlink { .. }),
        ),
        case("hardlink to lower file", t().hardlink("h", "lowerfile").finish(), oci, lower_file, |e| {
            matches!(e, ApplyError::BadHardlink { .. })
        }),
        case("hardlink to a directory", t().dir("d").hardlink("h", "d").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::BadHardlink { .. })
        }),
        case(
            "hardlink created below a symlink",
            t().file("f", b"x").symlink("l", "../outside").hardlink("l/h", "f").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        // Whiteouts.
        case("whiteout of ..", t().file(".wh...", b"").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        case("nested whiteout of ..", t().dir("a").file("a/.wh...", b"").finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        case("whiteout of .", t().file(".wh..", b"").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        case("empty whiteout", t().file("a/.wh.", b"").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        case("whiteout as a directory", t().file(".wh.x/y", b"").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        case(
            "whiteout through lower symlink",
            t().file("l/.wh.secret", b"").finish(),
            oci,
            lower_symlink_to_outside,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        case(
            "opaque through lower symlink",
            t().file("l/.wh..wh..opq", b"").finish(),
            oci,
            lower_symlink_to_outside,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        case(
            "overlay whiteout through symlink",
            t().symlink("l", "../outside").file("l/.wh.secret", b"").finish(),
            overlay,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        case(
            "overlay opaque through symlink",
            t().symlink("l", "../outside").file("l/.wh..wh..opq", b"").finish(),
            overlay,
            nothing,
            |e| matches!(e, ApplyError::ThroughSymlink { .. }),
        ),
        // Markers that could not be exported again, or mean different things to different tools.
        case("whiteout with data", t().file(".wh.f", b"data").finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::MarkerData { size: 4, .. })
        }),
        case("opaque marker with data", t().file("d/.wh..wh..opq", b"data").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::MarkerData { size: 4, .. })
        }),
        case(
            "AUFS metadata with data",
            t().file(".wh..wh.plnk/1.2", b"data").finish(),
            overlay,
            nothing,
            |e| matches!(e, ApplyError::MarkerData { entry, .. } if entry.as_bytes() == b".wh..wh.plnk/1.2"),
        ),
        case("symlink whiteout", t().symlink(".wh.s", "../outside").finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        case("directory opaque marker", t().dir("d/.wh..wh..opq").finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::BadWhiteout { .. })
        }),
        // Owners no file can have.
        case("uid -1", file_with(b"f", &[("uid", b"4294967295")]), overlay, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::UnsetOwner { field: "uid", .. }))
        }),
        case("gid -1", file_with(b"f", &[("gid", b"4294967295")]), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::UnsetOwner { field: "gid", .. }))
        }),
        // Devices and overlay markers.
        case("0/0 char device in overlay mode", t().chardev("fake-whiteout", 0, 0).finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::WhiteoutDevice { .. })
        }),
        case(
            "redirect xattr",
            file_with(b"d", &[("SCHILY.xattr.trusted.overlay.redirect", b"/outside")]),
            overlay,
            nothing,
            |e| matches!(e, ApplyError::OverlayXattr { xattr, .. } if xattr == "trusted.overlay.redirect"),
        ),
        case("user overlay xattr", file_with(b"d", &[("SCHILY.xattr.user.overlay.opaque", b"y")]), oci, nothing, |e| {
            matches!(e, ApplyError::OverlayXattr { .. })
        }),
        case(
            "libarchive overlay xattr",
            file_with(b"d", &[("LIBARCHIVE.xattr.trusted.overlay.origin", b"eA==")]),
            oci,
            nothing,
            |e| matches!(e, ApplyError::OverlayXattr { .. }),
        ),
        // Duplicates and conflicts.
        case(
            "duplicate file",
            t().file("a", b"1").file("./a", b"2").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::Duplicate { entry } if entry.as_bytes() == b"a"),
        ),
        case("duplicate dir", t().dir("d/").dir("d").finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::Duplicate { .. })
        }),
        case("duplicate whiteout", t().file(".wh.x", b"").file(".wh.x", b"").finish(), overlay, nothing, |e| {
            matches!(e, ApplyError::Duplicate { .. })
        }),
        case("file below a file", t().file("f", b"x").file("f/x", b"y").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::NotADirectory { .. })
        }),
        case(
            "file replacing a parent of this layer",
            t().file("d/x", b"x").file("d", b"y").finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::Conflict { .. }),
        ),
        case("non-directory root", t().file("./", b"").finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Conflict { .. })
        }),
        // Broken and hostile archives.
        case("truncated header", t().file("a", b"x").finish()[..300].to_vec(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::Truncated { .. }))
        }),
        case("truncated payload", t().file("a", &[7; 5000]).finish()[..2000].to_vec(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::Truncated { .. }))
        }),
        case("missing end marker", t().file("a", b"x").buf.clone(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::Truncated { .. }))
        }),
        case("half end marker", [t().file("a", b"x").buf.clone(), vec![0; 512]].concat(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::Truncated { .. }))
        }),
        case("bad checksum", t().header_raw(&H::new("a", b'0'), |b| b[0] = b'b').finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::BadChecksum { .. }))
        }),
        case(
            "non-octal mode",
            {
                let mut b = TarBuilder::header_block(&H::new("a", b'0'));
                b[100..108].copy_from_slice(b"00z0644\0");
                fix_checksum(&mut b);
                [&b[..], &[0; 1024]].concat()
            },
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::BadNumber { field: "mode", .. })),
        ),
        case(
            "huge PAX header",
            {
                let mut h = H::new("PaxHeaders/x", b'x');
                h.size = 8 << 30;
                t().header(&h).finish()
            },
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::ExtensionTooLarge { .. })),
        ),
        case(
            "huge GNU long name",
            {
                let mut h = H::new("././@LongLink", b'L');
                h.size = 10 << 20;
                t().header(&h).finish()
            },
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::ExtensionTooLarge { .. })),
        ),
        case(
            "PAX record longer than its header",
            {
                let data = b"99999999 path=x\n";
                let mut h = H::new("PaxHeaders/x", b'x');
                h.size = data.len() as u64;
                t().header(&h).data(data).file("a", b"x").finish()
            },
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::BadPaxRecord { .. })),
        ),
        case(
            "size beyond the stream",
            {
                let mut h = H::new("big", b'0');
                h.size = 1 << 30;
                t().header(&h).data(&[1; 10]).buf.clone()
            },
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::Truncated { .. })),
        ),
        case(
            "base-256 size overflow",
            t().header_raw(&H::new("a", b'0'), |b| {
                b[124..136].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
                fix_checksum(b);
            })
            .finish(),
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::OutOfRange { field: "size", .. })),
        ),
        case("GNU sparse", t().header(&H::new("s", b'S')).finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::Sparse { .. }))
        }),
        case("PAX sparse", file_with(b"s", &[("GNU.sparse.major", b"1")]), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::Sparse { .. }))
        }),
        case("unknown typeflag", t().header(&H::new("v", b'V')).finish(), oci, nothing, |e| {
            matches!(e, ApplyError::Parse(ParseError::UnsupportedType { .. }))
        }),
        case(
            "data on a symlink",
            {
                let mut h = H::new("l", b'2');
                h.link = b"x".to_vec();
                h.size = 5;
                t().header(&h).data(b"12345").finish()
            },
            oci,
            nothing,
            |e| matches!(e, ApplyError::Parse(ParseError::UnexpectedData { .. })),
        ),
    ]
}

fn fix_checksum(b: &mut [u8; 512]) {
    let h = tar::Header::from_byte_slice(b);
    let mut h2 = h.clone();
    h2.set_cksum();
    b.copy_from_slice(h2.as_bytes());
}

fn options(mode: WhiteoutMode) -> ApplyOptions {
    ApplyOptions::new(mode)
}

#[test]
fn hostile_layers_are_rejected_and_touch_nothing_outside() {
    let privileged = strata_testutil::require_root();
    let passwd_before = std::fs::metadata("/etc/passwd").unwrap();
    let names: Vec<&str> = cases(&Sandbox::new()).iter().map(|c| c.name).collect();
    for (i, name) in names.iter().enumerate() {
        let s = Sandbox::new();
        let case = cases(&s).swap_remove(i);
        (case.setup)(&s);
        let result = apply_simple(&s.root, &case.tar[..], &options(case.mode));
        let err = match result {
            Ok(stats) => panic!("{name}: accepted ({stats:?})"),
            Err(e) => e,
        };
        assert!((case.check)(&err), "{name}: wrong error: {err} ({err:?})");
        let msg = err.to_string();
        assert!(!msg.is_empty());
        eprintln!("{name}: {msg}");
        s.assert_outside_untouched();
    }
    let passwd_after = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (passwd_before.nlink(), passwd_before.mtime(), passwd_before.ctime()),
        (passwd_after.nlink(), passwd_after.mtime(), passwd_after.ctime())
    );
    if !privileged {
        eprintln!("ran unprivileged: escapes could only have written where this user may write");
    }
}

#[test]
fn devices_are_rejected_when_not_allowed() {
    for typeflag in [b'3', b'4'] {
        let s = Sandbox::new();
        let mut h = H::new("dev/sda", typeflag);
        h.dev = (8, 0);
        let tar = TarBuilder::new().dir("dev").header(&h).finish();
        let mut opts = ApplyOptions::new(WhiteoutMode::Oci);
        opts.devices = DevicePolicy::Reject;
        let err = apply_simple(&s.root, &tar[..], &opts).unwrap_err();
        assert!(matches!(&err, ApplyError::DeviceRejected { entry } if entry.as_bytes() == b"dev/sda"), "{err}");
        assert!(!s.root.join("dev/sda").exists());
    }
}

/// Layers that are legitimate but point at the outside: symlinks are data, never followed.
#[test]
fn symlinks_to_the_outside_are_created_but_never_followed() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = Sandbox::new();
    let secret = [&s.abs()[..], b"/outside/secret"].concat();
    std::os::unix::fs::symlink("../outside/secret", s.root.join("lowerlink")).unwrap();
    std::os::unix::fs::symlink("../outside", s.root.join("lowerdir")).unwrap();
    let mut sym = H::new("abs", b'2');
    sym.link = secret.clone();
    sym.mode = 0o777;
    sym.uid = 1234;
    sym.mtime = 1000;
    let tar = TarBuilder::new()
        .pax(&[("SCHILY.xattr.trusted.test", b"v")])
        .header(&sym)
        .hardlink("hl", "abs")
        .file("lowerlink", b"pwned") // replaces the lower symlink, never writes through it
        .dir("lowerdir") // replaces the lower symlink with a directory
        .file("lowerdir/secret", b"pwned")
        .file(".wh.nothing", b"")
        .finish();
    apply_simple(&s.root, &tar[..], &options(WhiteoutMode::Oci)).unwrap();
    s.assert_outside_untouched();
    let md = std::fs::symlink_metadata(s.root.join("abs")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!((md.uid(), md.mtime()), (1234, 1000));
    assert_eq!(xattr::get(s.root.join("abs"), "trusted.test").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(std::fs::read_link(s.root.join("hl")).unwrap().as_os_str().len(), secret.len());
    assert_eq!(std::fs::read(s.root.join("lowerlink")).unwrap(), b"pwned");
    assert!(std::fs::symlink_metadata(s.root.join("lowerdir")).unwrap().is_dir());
}

#[test]
fn whiteouts_of_lower_symlinks_remove_the_link_not_its_target() {
    let s = Sandbox::new();
    std::os::unix::fs::symlink("../outside", s.root.join("l")).unwrap();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::os::unix::fs::symlink("../../outside/sub", s.root.join("d/l2")).unwrap();
    let tar = TarBuilder::new().file(".wh.l", b"").file("d/.wh..wh..opq", b"").finish();
    apply_simple(&s.root, &tar[..], &options(WhiteoutMode::Oci)).unwrap();
    s.assert_outside_untouched();
    assert!(std::fs::symlink_metadata(s.root.join("l")).is_err());
    assert!(std::fs::symlink_metadata(s.root.join("d/l2")).is_err());
}
