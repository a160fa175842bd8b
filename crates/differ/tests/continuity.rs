//! continuity's fs/diff scenarios, by name, on real overlay mounts: each one is diffed by the
//! single walk and by the double walk (base view against the merged mount); both layers,
//! applied onto the lowers, must give the merged view, and the entries are asserted.

mod common;

use common::ovl::Scenario;
use common::*;
use strata_differ::{DiffMethod, WriteOptions, diff_trees};

const OLD: i64 = 1_500_000_000;

fn mounted(build: impl FnOnce(&Scenario)) -> Scenario {
    let mut s = Scenario::new(1);
    build(&s);
    settle(&s.lowers[0], OLD, 123);
    s.mount("");
    s
}

fn assert_names(cs: &strata_differ::Changeset, expected: &[&str], what: &str) {
    assert_eq!(names_of(cs), expected, "{what}: {:?}", summary(cs));
}

#[test]
fn basic_with_rename_and_hardlink_recreate() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "etc/hosts"), b"mydomain 10.0.0.1\n");
        write(&s.l(0, "etc/profile"), b"PATH=/usr/bin\n");
        write(&s.l(0, "etc/unchanged"), b"foo\n");
        write(&s.l(0, "usr/local/bin/gcc"), b"binary");
        std::fs::hard_link(s.l(0, "usr/local/bin/gcc"), s.l(0, "usr/local/bin/gcc-link")).unwrap();
        write(&s.l(0, "root/.bashrc"), b"PATH=/usr/sbin:/usr/bin\n");
    });
    write(&s.m("etc/hosts"), b"mydomain 10.0.0.120\n");
    std::fs::rename(s.m("etc/profile"), s.m("etc/environment")).unwrap();
    std::fs::remove_file(s.m("usr/local/bin/gcc-link")).unwrap();
    std::fs::hard_link(s.m("usr/local/bin/gcc"), s.m("usr/local/bin/gcc-link")).unwrap();
    std::fs::remove_file(s.m("root/.bashrc")).unwrap();
    write(&s.m("root/.bashrc"), b"PATH=/usr/bin\n");
    let (upper, double) = check_both(&s);
    assert_eq!(upper.method, DiffMethod::Upperdir);
    assert_names(
        &upper,
        &[
            "etc/",
            "etc/.wh.profile",
            "etc/environment",
            "etc/hosts",
            "root/",
            "root/.bashrc",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/gcc",
            "usr/local/bin/gcc-link",
        ],
        "single walk",
    );
    let entries = tar_entries(&layer_bytes(&upper, &WriteOptions::default()));
    let link = entries.iter().find(|e| e.name == "usr/local/bin/gcc-link").unwrap();
    assert_eq!((link.typeflag, link.link.as_deref()), (b'1', Some("usr/local/bin/gcc")));
    // The re-created link is the same inode with the same metadata and link count as in the
    // lower: the double walk rightly sees no change to gcc and gcc-link, only to their
    // directory (unlink and link changed its mtime).
    assert_names(
        &double,
        &[
            "etc/",
            "etc/.wh.profile",
            "etc/environment",
            "etc/hosts",
            "root/",
            "root/.bashrc",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
        ],
        "double walk",
    );
}

#[test]
fn deletion() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "a/b/c/file"), b"1");
        write(&s.l(0, "a/b/other"), b"2");
        write(&s.l(0, "d/file"), b"3");
        write(&s.l(0, "top"), b"4");
    });
    std::fs::remove_file(s.m("a/b/c/file")).unwrap();
    std::fs::remove_dir_all(s.m("d")).unwrap();
    std::fs::remove_file(s.m("top")).unwrap();
    let (upper, double) = check_both(&s);
    let expected = [".wh.d", ".wh.top", "a/", "a/b/", "a/b/c/", "a/b/c/.wh.file"];
    assert_names(&upper, &expected, "single walk");
    assert_names(&double, &expected, "double walk");
}

#[test]
fn update() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| write(&s.l(0, "etc/hosts"), b"a"));
    write(&s.m("etc/hosts"), b"b");
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["etc/", "etc/hosts"], "single walk");
    assert_names(&double, &["etc/", "etc/hosts"], "double walk");
}

#[test]
fn directory_permission() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| write(&s.l(0, "a/f"), b"x"));
    chmod(&s.m("a"), 0o700);
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["a/"], "single walk");
    assert_names(&double, &["a/"], "double walk");
}

#[test]
fn parent_directory_permission() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| mkdir(&s.l(0, "a/b")));
    chmod(&s.m("a"), 0o700);
    write(&s.m("a/b/new"), b"n");
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["a/", "a/b/", "a/b/new"], "single walk");
    assert_names(&double, &["a/", "a/b/", "a/b/new"], "double walk");
}

#[test]
fn hardlink_unmodified() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "a/f1"), b"linked");
        std::fs::hard_link(s.l(0, "a/f1"), s.l(0, "a/f2")).unwrap();
    });
    write(&s.m("c"), b"unrelated");
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["c"], "single walk");
    assert_names(&double, &["c"], "double walk");
}

#[test]
fn hardlink_before_unmodified() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "a/1"), b"linked");
        std::fs::hard_link(s.l(0, "a/1"), s.l(0, "a/2")).unwrap();
        write(&s.l(0, "b/file"), b"old");
    });
    write(&s.m("b/file"), b"new content");
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["b/", "b/file"], "single walk");
    assert_names(&double, &["b/", "b/file"], "double walk");
}

#[test]
fn hardlink_before_modified() {
    if !strata_testutil::require_root() {
        return;
    }
    // On an overlay: a new link to a lower file, then a write through it.
    let s = mounted(|s| {
        write(&s.l(0, "a/1"), b"linked");
        std::fs::hard_link(s.l(0, "a/1"), s.l(0, "a/2")).unwrap();
    });
    std::fs::hard_link(s.m("a/1"), s.m("a/3")).unwrap();
    write(&s.m("a/3"), b"written through a/3");
    let (upper, double) = check_both(&s);
    for (cs, what) in [(&upper, "single walk"), (&double, "double walk")] {
        assert_names(cs, &["a/", "a/1", "a/3"], what);
        let e = tar_entries(&layer_bytes(cs, &WriteOptions::default()));
        assert_eq!((e[2].typeflag, e[2].link.as_deref()), (b'1', Some("a/1")), "{what}");
    }
    // On plain trees: both names of one inode modified in place.
    let (base, target) = (scratch("strata-hl-base-"), scratch("strata-hl-target-"));
    write(&base.path().join("a/1"), b"linked");
    std::fs::hard_link(base.path().join("a/1"), base.path().join("a/2")).unwrap();
    settle(base.path(), OLD, 5);
    let t = target.path().join("t");
    copy_tree(base.path(), &t);
    write(&t.join("a/2"), b"modified via the second name");
    let cs = diff_trees(base.path(), &t).unwrap();
    let e = tar_entries(&layer_bytes(&cs, &WriteOptions::default()));
    let got: Vec<_> = e.iter().map(|e| (e.name.as_str(), e.typeflag, e.link.as_deref())).collect();
    assert_eq!(got, [("a/", b'5', None), ("a/1", b'0', None), ("a/2", b'1', Some("a/1"))]);
    apply_and_compare(base.path(), &layer_bytes(&cs, &WriteOptions::default()), &snapshot(&t), "plain trees");
}

#[test]
fn empty_file() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "e"), b"");
        write(&s.l(0, "f"), b"content");
    });
    std::fs::OpenOptions::new().write(true).open(s.m("f")).unwrap().set_len(0).unwrap();
    write(&s.m("n"), b"");
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["f", "n"], "single walk");
    assert_names(&double, &["f", "n"], "double walk");
}

#[test]
fn nested_deletion() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "d/e/f/g/file"), b"deep");
        write(&s.l(0, "d/x"), b"stays");
    });
    std::fs::remove_dir_all(s.m("d/e")).unwrap();
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["d/", "d/.wh.e"], "single walk");
    assert_names(&double, &["d/", "d/.wh.e"], "double walk");
}

#[test]
fn directory_replace() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "d/file"), b"in a dir");
        write(&s.l(0, "f"), b"a file");
    });
    std::fs::remove_dir_all(s.m("d")).unwrap();
    write(&s.m("d"), b"now a file");
    std::fs::remove_file(s.m("f")).unwrap();
    write(&s.m("f/inner"), b"now a dir");
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["d", "f/", "f/inner"], "single walk");
    assert_names(&double, &["d", "f/", "f/inner"], "double walk");
}

#[test]
fn remove_directory_tree() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "tree/a/b/c"), b"1");
        write(&s.l(0, "tree/a/d"), b"2");
        write(&s.l(0, "tree/e"), b"3");
        write(&s.l(0, "keep"), b"4");
    });
    std::fs::remove_dir_all(s.m("tree")).unwrap();
    let (upper, double) = check_both(&s);
    assert_names(&upper, &[".wh.tree"], "single walk");
    assert_names(&double, &[".wh.tree"], "double walk");
}

#[test]
fn file_replace() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        write(&s.l(0, "f"), b"a file");
        symlink("somewhere", &s.l(0, "s"));
    });
    std::fs::remove_file(s.m("f")).unwrap();
    symlink("target", &s.m("f"));
    std::fs::remove_file(s.m("s")).unwrap();
    mkdir(&s.m("s"));
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["f", "s/"], "single walk");
    assert_names(&double, &["f", "s/"], "double walk");
}

#[test]
fn update_with_same_time() {
    if !strata_testutil::require_root() {
        return;
    }
    // Same size, mtime put back. With zero nanoseconds the double walk compares contents;
    // with a nanosecond mtime it trusts it (continuity's rule, documented in the crate).
    let (base, target) = (scratch("strata-same-base-"), scratch("strata-same-target-"));
    write(&base.path().join("coarse"), b"aaaa");
    write(&base.path().join("fine"), b"aaaa");
    set_mtime(&base.path().join("coarse"), OLD, 0);
    set_mtime(&base.path().join("fine"), OLD, 777);
    set_mtime(base.path(), OLD, 1);
    let t = target.path().join("t");
    copy_tree(base.path(), &t);
    write(&t.join("coarse"), b"bbbb");
    write(&t.join("fine"), b"bbbb");
    set_mtime(&t.join("coarse"), OLD, 0);
    set_mtime(&t.join("fine"), OLD, 777);
    set_mtime(&t, OLD, 1);
    let cs = diff_trees(base.path(), &t).unwrap();
    assert_names(&cs, &["coarse"], "plain trees");
    // The single walk sees every rewritten file, whatever its times.
    let mut s = Scenario::new(1);
    write(&s.l(0, "coarse"), b"aaaa");
    write(&s.l(0, "fine"), b"aaaa");
    settle(&s.lowers[0], OLD, 0);
    set_mtime(&s.l(0, "fine"), OLD, 777);
    s.mount("");
    for (name, nanos) in [("coarse", 0), ("fine", 777)] {
        write(&s.m(name), b"bbbb");
        set_mtime(&s.m(name), OLD, nanos);
    }
    let upper = s.diff_upper();
    assert_names(&upper, &["coarse", "fine"], "single walk");
    let base = s.base_view();
    apply_and_compare(base.path(), &layer_bytes(&upper, &WriteOptions::default()), &snapshot(&s.merged), "single walk");
}

#[test]
fn lchtimes() {
    if !strata_testutil::require_root() {
        return;
    }
    let s = mounted(|s| {
        symlink("t", &s.l(0, "l"));
        mkdir(&s.l(0, "d"));
        symlink("../t", &s.l(0, "d/l2"));
    });
    set_mtime(&s.m("l"), OLD + 10, 42);
    set_mtime(&s.m("d/l2"), OLD + 20, 0);
    let (upper, double) = check_both(&s);
    assert_names(&upper, &["d/", "d/l2", "l"], "single walk");
    assert_names(&double, &["d/", "d/l2", "l"], "double walk");
}
