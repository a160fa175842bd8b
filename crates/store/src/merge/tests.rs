//! Views, changesets, conflicts and configs from hand-made records. The kernel oracle is
//! `tests/merge.rs` (real overlay mounts); these pin the rules without privileges.

use std::path::PathBuf;
use std::sync::Arc;

use strata_differ::{Changeset, DiffMethod};
use strata_types::{Blake3Digest, Entry, EntryKind, ImageName, LayerId, RelPath, Sha256Digest, Timestamp};

use super::changes::{full, metadata_diff, squash_diff};
use super::conflicts::{ConflictKind, Input, find};
use super::stack::StackLayer;
use super::view::View;
use super::{merged_config, stack_of};
use crate::records::{FileRecord, ImageRecord, Marker};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn obj(path: &str, kind: EntryKind, mode: u32, data: &[u8]) -> FileRecord {
    let mut e = Entry::new(p(path), kind);
    e.mode = mode;
    e.mtime = Timestamp::new(1_600_000_000, 5);
    let file = kind == EntryKind::File;
    if file {
        e.size = data.len() as u64;
    }
    FileRecord { entry: e, marker: Marker::None, blake3: file.then(|| Blake3Digest::of(data)), sha256: None }
}

fn dir(path: &str, mode: u32) -> FileRecord {
    obj(path, EntryKind::Dir, mode, b"")
}

fn file(path: &str, data: &str) -> FileRecord {
    obj(path, EntryKind::File, 0o644, data.as_bytes())
}

fn link(path: &str, target: &str) -> FileRecord {
    let mut r = obj(path, EntryKind::Hardlink, 0o644, b"");
    r.entry.link_target = Some(target.as_bytes().to_vec());
    r
}

fn mark(path: &str, marker: Marker) -> FileRecord {
    let mut r = obj(path, if marker == Marker::Opaque { EntryKind::Dir } else { EntryKind::File }, 0o644, b"");
    r.marker = marker;
    r.blake3 = None;
    r
}

fn layer(name: &str, records: Vec<FileRecord>) -> Arc<StackLayer> {
    let id = LayerId(Sha256Digest::of(name.as_bytes()));
    Arc::new(StackLayer::from_records(id, PathBuf::from("/nonexistent").join(name), records).unwrap())
}

fn names(v: &View) -> Vec<String> {
    v.iter().map(|(k, _)| k.to_string()).collect()
}

fn tar_names(changes: Vec<strata_differ::Change>) -> Vec<String> {
    let cs = Changeset::from_changes(DiffMethod::Metadata, changes);
    cs.iter().map(|c| String::from_utf8(c.tar_path()).unwrap()).collect()
}

fn base() -> Arc<StackLayer> {
    layer(
        "base",
        vec![
            dir("a", 0o755),
            file("a/x", "x"),
            file("a/y", "y"),
            dir("b", 0o755),
            file("b/z", "z"),
            file("c", "c"),
            dir("d", 0o755),
            file("d/k", "k"),
        ],
    )
}

fn upper() -> Arc<StackLayer> {
    layer(
        "upper",
        vec![
            dir("a", 0o700),
            mark("a/x", Marker::Whiteout),
            dir("b", 0o755),
            mark("b", Marker::Opaque),
            file("b/new", "new"),
            dir("c", 0o755),
            file("c/in", "in"),
            file("d", "now a file"),
        ],
    )
}

#[test]
fn whiteouts_opaque_directories_and_replacements_follow_overlay_rules() {
    let v = View::build(vec![base(), upper()]);
    assert_eq!(names(&v), ["a", "a/y", "b", "b/new", "c", "c/in", "d"]);
    let a = v.get(&p("a")).unwrap();
    assert_eq!((v.entry(&p("a"), a).mode, a.layer, a.cut), (0o700, 1, 0), "upper metadata, lower children");
    assert_eq!(v.cut(&p("b")), Some(1), "an opaque directory hides what is below it");
    assert_eq!(v.cut(&p("c")), Some(1), "a directory over a file starts afresh");
    assert_eq!(v.kind(v.get(&p("d")).unwrap()), EntryKind::File);
}

#[test]
fn a_directory_whited_out_and_recreated_in_one_layer_is_cut() {
    let l1 = layer("l1", vec![mark("a", Marker::Whiteout), dir("a", 0o755), file("a/new", "n")]);
    let v = View::build(vec![base(), l1]);
    assert_eq!(names(&v)[..2], ["a", "a/new"]);
    assert_eq!(v.cut(&p("a")), Some(1));
    let opaque_root = layer("l2", vec![mark("", Marker::Opaque), file("only", "o")]);
    let v = View::build(vec![base(), opaque_root]);
    assert_eq!((names(&v), v.root_cut), (vec!["only".to_string()], 1));
}

#[test]
fn hardlink_names_show_their_inode_and_form_groups() {
    let l0 = layer("l0", vec![obj("f", EntryKind::File, 0o4755, b"data"), link("g", "f"), link("h", "g")]);
    let v = View::build(vec![l0.clone()]);
    let g = v.get(&p("g")).unwrap();
    assert_eq!((v.kind(g), v.entry(&p("g"), g).mode, v.entry(&p("g"), g).size), (EntryKind::File, 0o4755, 4));
    assert_eq!(v.source(g).display(), PathBuf::from("/nonexistent/l0/f"));
    assert_eq!(v.names(&p("g"), g), [p("f"), p("g"), p("h")]);
    let v = View::build(vec![l0, layer("l1", vec![mark("f", Marker::Whiteout)])]);
    assert_eq!(v.names(&p("g"), v.get(&p("g")).unwrap()), [p("g"), p("h")]);
    let bad = StackLayer::from_records(LayerId(Sha256Digest::of(b"x")), PathBuf::new(), vec![link("g", "missing")]);
    assert!(bad.unwrap_err().to_string().contains("does not have"));
}

#[test]
fn squash_and_metadata_diffs_name_what_changed() {
    let (a, b) = (View::build(vec![base()]), View::build(vec![base(), upper()]));
    // Squash: everything the upper layer names, whiteouts where `a` has the path.
    let squash = tar_names(squash_diff(&a, &b, 1).unwrap());
    assert_eq!(squash, ["a", "a/.wh.x", "b", "b/.wh..wh..opq", "b/new", "c", "c/in", "d"]);
    // Metadata: `b` is unchanged (same metadata) but loses z; `a` changed its mode.
    let meta = tar_names(metadata_diff(&a, &b).unwrap());
    assert_eq!(meta, ["a", "a/.wh.x", "b", "b/.wh.z", "b/new", "c", "c/in", "d"]);
    // The way back: the file d becomes a directory again, with its child.
    let back = tar_names(metadata_diff(&b, &a).unwrap());
    assert_eq!(back, ["a", "a/x", "b", "b/.wh.new", "b/z", "c", "d", "d/k"]);
    assert!(metadata_diff(&a, &a).unwrap().is_empty());
    assert_eq!(tar_names(full(&b).unwrap()), ["a", "a/y", "b", "b/new", "c", "c/in", "d"]);
}

#[test]
fn conflicts_are_paths_two_inputs_decide_differently() {
    let shared = base();
    let one = layer("one", vec![dir("a", 0o755), file("a/y", "changed"), dir("d", 0o755), file("d/new", "n")]);
    let two = layer(
        "two",
        vec![
            dir("a", 0o755),
            file("a/y", "changed"),
            mark("d", Marker::Whiteout),
            obj("c", EntryKind::File, 0o600, b"c"),
        ],
    );
    let (v1, v2) = (View::build(vec![shared.clone(), one]), View::build(vec![shared, two]));
    let (n1, n2) = (ImageName::new("one").unwrap(), ImageName::new("two").unwrap());
    let inputs = [Input { name: &n1, view: &v1, own: vec![1] }, Input { name: &n2, view: &v2, own: vec![1] }];
    let got: Vec<(String, ConflictKind)> = find(&inputs).into_iter().map(|c| (c.path.to_string(), c.kind)).collect();
    // a and a/y agree; c is only changed by two; d and d/new are deleted by the later input.
    assert_eq!(got, [("d".into(), ConflictKind::Whiteout), ("d/new".into(), ConflictKind::Whiteout)]);
    let reversed = [Input { name: &n2, view: &v2, own: vec![1] }, Input { name: &n1, view: &v1, own: vec![1] }];
    let kinds: Vec<ConflictKind> = find(&reversed).into_iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ConflictKind::Delete, ConflictKind::Delete]);
    assert!(ConflictKind::Whiteout < ConflictKind::Content && ConflictKind::Content < ConflictKind::Xattrs);
}

fn image(name: &str, layers: &[&str], history: &str) -> ImageRecord {
    let layers: Vec<LayerId> = layers.iter().map(|l| LayerId(Sha256Digest::of(l.as_bytes()))).collect();
    let ids: Vec<String> = layers.iter().map(|l| format!("\"{l}\"")).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["{name}"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":[{history}]}}"#,
        ids.join(",")
    );
    ImageRecord {
        name: ImageName::new(name).unwrap(),
        layers,
        config_digest: Sha256Digest::of(config.as_bytes()),
        config,
        created: 0,
        source: String::new(),
    }
}

#[test]
fn merged_stacks_keep_each_layer_once_and_its_history() {
    let x = image("x", &["base", "x1"], r#"{"created_by":"base"},{"created_by":"x1"}"#);
    let y = image(
        "y",
        &["base", "y1"],
        r#"{"created_by":"base"},{"created_by":"ENV","empty_layer":true},{"created_by":"y1"}"#,
    );
    let (stack, own) = stack_of(&[x.clone(), y.clone()]);
    assert_eq!(stack, [x.layers[0], x.layers[1], y.layers[1]]);
    assert_eq!(own, [vec![1], vec![1]], "the shared base belongs to no input");
    let cfg: strata_oci::ImageConfig =
        serde_json::from_str(&merged_config(&[x, y.clone()], &stack, "strata merge m x y").unwrap()).unwrap();
    assert_eq!(cfg.rootfs.diff_ids, stack.iter().map(|l| l.0).collect::<Vec<_>>());
    let by: Vec<&str> = cfg.history.iter().map(|h| h.created_by.as_deref().unwrap()).collect();
    assert_eq!(by, ["base", "x1", "ENV", "y1", "strata merge m x y"]);
    assert_eq!(cfg.config.unwrap()["Cmd"][0], "y", "the last input's config");
    let mut arm = y;
    arm.config = arm.config.replace("amd64", "arm64");
    let err = merged_config(&[image("x", &["a"], ""), arm], &stack, "m").unwrap_err();
    assert!(err.to_string().contains("platform"), "{err}");
}
