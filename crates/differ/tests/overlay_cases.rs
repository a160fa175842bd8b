//! containerd archive scenarios, BuildKit's overlay differ scenarios and umoci's overlay
//! whiteout translation, by name, on real overlay mounts and hand-made upperdirs.

mod common;

use common::ovl::Scenario;
use common::*;
use strata_differ::{ChangeKind, DiffMethod, TempOverlay, diff_overlay, overlay_dirs_from_mount};

const OLD: i64 = 1_500_000_000;

fn mounted(options: &str, build: impl FnOnce(&Scenario)) -> Scenario {
    let mut s = Scenario::new(1);
    build(&s);
    settle(&s.lowers[0], OLD, 99);
    s.mount(options);
    s
}

fn both_named(s: &Scenario, expected: &[&str]) {
    let (upper, double) = check_both(s);
    assert_eq!(upper.method, DiffMethod::Upperdir, "{:?}", upper.fallback_reason);
    assert_eq!(names_of(&upper), expected, "single walk");
    assert_eq!(names_of(&double), expected, "double walk");
}

// --- containerd archive tests ---

#[test]
fn parent_inclusion() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("", |s| mkdir(&s.l(0, "a/b/c")));
    write(&s.m("a/b/c/new"), b"n");
    both_named(&s, &["a/", "a/b/", "a/b/c/", "a/b/c/new"]);
}

#[test]
fn whiteout_includes_parents() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("", |s| write(&s.l(0, "a/b/c/f"), b"f"));
    std::fs::remove_file(s.m("a/b/c/f")).unwrap();
    both_named(&s, &["a/", "a/b/", "a/b/c/", "a/b/c/.wh.f"]);
}

#[test]
fn whiteout_parent_removal() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("", |s| {
        write(&s.l(0, "a/b/c"), b"c");
        write(&s.l(0, "a/b/d"), b"d");
    });
    std::fs::remove_dir_all(s.m("a/b")).unwrap();
    both_named(&s, &["a/", "a/.wh.b"]);
}

#[test]
fn ignore_sockets() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("", |s| {
        mkdir(&s.l(0, "run"));
        write(&s.l(0, "x"), b"a file the socket replaces");
    });
    let _a = std::os::unix::net::UnixListener::bind(s.m("run/app.sock")).unwrap();
    write(&s.m("run/file"), b"f");
    std::fs::remove_file(s.m("x")).unwrap();
    let _b = std::os::unix::net::UnixListener::bind(s.m("x")).unwrap();
    both_named(&s, &[".wh.x", "run/", "run/file"]);
}

// --- BuildKit overlay differ tests ---

#[test]
fn rename_with_redirect_dir_off_is_copy_and_whiteout() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("redirect_dir=off", |s| {
        write(&s.l(0, "d/one"), b"1");
        write(&s.l(0, "d/sub/two"), b"2");
        write(&s.l(0, "file"), b"f");
    });
    let e = std::fs::rename(s.m("d"), s.m("e")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "redirect_dir=off refuses directory renames");
    copy_tree(&s.m("d"), &s.m("e"));
    std::fs::remove_dir_all(s.m("d")).unwrap();
    std::fs::rename(s.m("file"), s.m("moved")).unwrap();
    both_named(&s, &[".wh.d", ".wh.file", "e/", "e/one", "e/sub/", "e/sub/two", "moved"]);
}

#[test]
fn single_and_double_walk_agree_on_mixed_changes_and_mount_options_are_found() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("", |s| {
        write(&s.l(0, "etc/conf"), b"v1");
        write(&s.l(0, "var/lib/db"), b"data");
        symlink("conf", &s.l(0, "etc/link"));
    });
    write(&s.m("etc/conf"), b"v2");
    std::fs::remove_file(s.m("etc/link")).unwrap();
    mkdir(&s.m("var/lib/new"));
    xattr::set(s.m("var/lib/db"), "user.tag", b"t").unwrap();
    let dirs = overlay_dirs_from_mount(&s.merged).unwrap();
    assert_eq!(dirs.upper, s.upper);
    assert_eq!(dirs.lowers, s.lowers);
    assert_eq!(dirs.work.as_deref(), Some(s.work.as_path()));
    let live = strata_differ::diff_mount(&s.merged).unwrap();
    assert_eq!(live.method, DiffMethod::Upperdir);
    both_named(&s, &["etc/", "etc/.wh.link", "etc/conf", "var/", "var/lib/", "var/lib/db", "var/lib/new/"]);
    assert_eq!(summary(&live), summary(&s.diff_upper()));
}

#[test]
fn metacopy_upper_falls_back_and_reads_data_from_the_lower() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted("redirect_dir=on,metacopy=on", |s| write(&s.l(0, "big"), &vec![3u8; 100_000]));
    chmod(&s.m("big"), 0o600);
    assert!(xattr::get(s.upper.join("big"), "trusted.overlay.metacopy").unwrap().is_some());
    let (upper, _) = check_both(&s);
    assert_eq!(upper.method, DiffMethod::DoubleWalk);
    assert!(upper.fallback_reason.as_deref().unwrap().contains("metacopy"));
    assert_eq!(names_of(&upper), ["big"]);
}

// --- umoci: overlay whiteout translation (hand-made upperdirs, checked against the kernel) ---

/// An upperdir built by hand next to a lower, then mounted to check the layer against the
/// kernel's merged view.
fn handmade(userxattr: bool, build: impl FnOnce(&Scenario)) -> (Scenario, strata_differ::Changeset) {
    let mut s = Scenario::new(1);
    build(&s);
    settle(&s.lowers[0], OLD, 7);
    settle(&s.upper, OLD + 1, 7);
    let cs = diff_overlay(&s.upper, &s.lowers, None).unwrap();
    s.mount(if userxattr { "userxattr" } else { "" });
    let expected = snapshot(&s.merged);
    let base = s.base_view();
    apply_and_compare(base.path(), &layer_bytes(&cs, &Default::default()), &expected, "hand-made upper");
    (s, cs)
}

#[test]
fn char_device_whiteout_becomes_wh_file_and_is_dropped_when_nothing_is_below() {
    if !strata_testutil::require_root() {
        return;
    }
    let (_s, cs) = handmade(false, |s| {
        write(&s.l(0, "gone"), b"g");
        write(&s.l(0, "d/gone2"), b"g");
        whiteout(&s.upper.join("gone"));
        mkdir(&s.upper.join("d"));
        whiteout(&s.upper.join("d/gone2"));
        whiteout(&s.upper.join("never-existed"));
    });
    assert_eq!(cs.method, DiffMethod::Upperdir);
    assert_eq!(names_of(&cs), [".wh.gone", "d/", "d/.wh.gone2"]);
}

#[test]
fn opaque_xattr_becomes_opq_marker_in_both_namespaces() {
    if !strata_testutil::require_root() {
        return;
    }
    for (ns, userxattr) in [("trusted", false), ("user", true)] {
        let (_s, cs) = handmade(userxattr, |s| {
            write(&s.l(0, "dir/old"), b"hidden");
            write(&s.upper.join("dir/new"), b"visible");
            setxattr(&s.upper.join("dir"), &format!("{ns}.overlay.opaque"), b"y");
            // Opaque but nothing below: no marker needed.
            write(&s.upper.join("fresh/x"), b"x");
            setxattr(&s.upper.join("fresh"), &format!("{ns}.overlay.opaque"), b"y");
        });
        assert_eq!(names_of(&cs), ["dir/", "dir/.wh..wh..opq", "dir/new", "fresh/", "fresh/x"], "{ns}");
        let opq: Vec<_> = cs.iter().filter(|c| c.kind == ChangeKind::Opaque).map(|c| c.path.to_string()).collect();
        assert_eq!(opq, ["dir"]);
    }
}

#[test]
fn xattr_whiteout_becomes_wh_file_and_opaque_x_is_not_opaque() {
    if !strata_testutil::require_root() {
        return;
    }
    let (_s, cs) = handmade(false, |s| {
        write(&s.l(0, "x/wh"), b"deleted by an xattr whiteout");
        write(&s.l(0, "x/keep"), b"opaque=x must not hide me");
        write(&s.upper.join("x/wh"), b"");
        setxattr(&s.upper.join("x/wh"), "trusted.overlay.whiteout", b"");
        setxattr(&s.upper.join("x"), "trusted.overlay.opaque", b"x");
        write(&s.upper.join("x/added"), b"a");
    });
    assert_eq!(names_of(&cs), ["x/", "x/.wh.wh", "x/added"]);
}

#[test]
fn lowers_that_are_store_layers_hide_what_their_whiteouts_and_opaque_dirs_hide() {
    if !strata_testutil::require_root() {
        return;
    }
    let mut s = Scenario::new(3);
    // bottom (l2): a, d/old, e/file; middle (l1): whiteout of a, d opaque, xattr whiteout of
    // e/file; top (l0): nothing of those.
    write(&s.l(2, "a"), b"a");
    write(&s.l(2, "d/old"), b"old");
    write(&s.l(2, "e/file"), b"f");
    whiteout(&s.l(1, "a"));
    write(&s.l(1, "d/mid"), b"mid");
    setxattr(&s.l(1, "d"), "trusted.overlay.opaque", b"y");
    write(&s.l(1, "e/file"), b"");
    setxattr(&s.l(1, "e/file"), "trusted.overlay.whiteout", b"");
    setxattr(&s.l(1, "e"), "trusted.overlay.opaque", b"x");
    mkdir(&s.l(0, "top"));
    for l in s.lowers.clone() {
        settle(&l, OLD, 3);
    }
    s.mount("");
    // Deleting or recreating what the lowers already hide needs no whiteout; d/old is hidden
    // by the opaque middle layer, so writing it is an add.
    write(&s.m("a"), b"new a");
    write(&s.m("d/old"), b"new old");
    std::fs::remove_file(s.m("d/mid")).unwrap();
    write(&s.m("e/file"), b"new file");
    let (upper, _) = check_both(&s);
    let kinds: Vec<(ChangeKind, String)> = summary(&upper);
    assert_eq!(
        kinds,
        [
            (ChangeKind::Add, "a".to_string()),
            (ChangeKind::Modify, "d".to_string()),
            (ChangeKind::Delete, "d/mid".to_string()),
            (ChangeKind::Add, "d/old".to_string()),
            (ChangeKind::Modify, "e".to_string()),
            (ChangeKind::Add, "e/file".to_string()),
        ]
    );
}

#[test]
fn handmade_redirect_is_resolved_by_the_private_mount_even_in_awkward_paths() {
    if !strata_testutil::require_root() {
        return;
    }
    let dir = scratch("strata-awkward-");
    let root = dir.path().join("a:b,c d");
    let (lower, upper) = (root.join("low:er"), root.join("up,per"));
    write(&lower.join("old/file"), b"from the lower");
    write(&lower.join("other"), b"o");
    mkdir(&upper.join("new"));
    setxattr(&upper.join("new"), "trusted.overlay.redirect", b"/old");
    write(&upper.join("new/added"), b"a");
    settle(&lower, OLD, 1);
    settle(&upper, OLD, 2);
    let cs = diff_overlay(&upper, std::slice::from_ref(&lower), None).unwrap();
    assert_eq!(cs.method, DiffMethod::DoubleWalk);
    assert!(cs.fallback_reason.as_deref().unwrap().contains("redirect"));
    // The kernel followed the redirect: new/ shows old's file plus its own.
    assert_eq!(names_of(&cs), ["new/", "new/added", "new/file"]);
    // A live mount refuses a hand-made redirect without origin (ESTALE); the layers stacked
    // read-only, as any consumer of this upperdir as a layer would, follow it.
    let view = TempOverlay::mount(&[upper.clone(), lower.clone()], &["redirect_dir=follow"]).unwrap();
    let expected = snapshot(view.path());
    assert!(expected.objects.contains_key(&b"old/file"[..]), "the redirect's origin stays visible");
    let base = TempOverlay::mount(std::slice::from_ref(&lower), &[]).unwrap();
    apply_and_compare(base.path(), &layer_bytes(&cs, &Default::default()), &expected, "redirect fallback");
}
