//! Hostile layers: each is refused with a one-line error naming the entry (or neutralised into
//! the snapshot), and nothing outside the snapshot changes. Every test works in
//! `<tmp>/box/snap` with a sentinel directory `<tmp>/outside` holding `secret`; `..` escapes from
//! the snapshot land in `<tmp>`, which must keep exactly `box/` and `outside/`.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::PathBuf;

use berth_image::unpack::{apply_layer, ApplyMode};
use berth_image::{Error, ErrorKind};
use common::{tree, Layer, TempDir, TreeOpts};
use tar::EntryType;

struct Arena {
    t: TempDir,
    snap: PathBuf,
    outside: PathBuf,
    before: Vec<String>,
}

impl Arena {
    fn new(tag: &str) -> Arena {
        let t = TempDir::new(tag);
        let snap = t.sub("box/snap");
        let outside = t.sub("outside");
        fs::write(outside.join("secret"), b"orig").unwrap();
        let before = tree(&outside, TreeOpts { dir_mtimes: true, ..Default::default() });
        Arena { t, snap, outside, before }
    }

    fn outside_str(&self) -> String {
        self.outside.display().to_string()
    }

    fn apply(&self, layer: Vec<u8>, mode: ApplyMode) -> Result<berth_image::LayerStats, Error> {
        apply_layer(&self.snap, &layer[..], mode)
    }

    /// Nothing outside the snapshot was created, changed or removed.
    fn check_outside(&self) {
        assert_eq!(tree(&self.outside, TreeOpts { dir_mtimes: true, ..Default::default() }), self.before);
        let mut top: Vec<_> = fs::read_dir(self.t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        top.sort();
        assert_eq!(top, vec!["box", "outside"], "nothing written next to the snapshot");
        let boxed: Vec<_> = fs::read_dir(self.t.join("box")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(boxed, vec!["snap"]);
        assert!(!std::path::Path::new("/abs").exists());
    }
}

fn refused(r: Result<berth_image::LayerStats, Error>, kind: ErrorKind, starts: &str, contains: &str) {
    let e = r.expect_err("hostile layer must be refused");
    let msg = e.to_string();
    assert_eq!(e.kind(), kind, "{msg}");
    assert!(msg.starts_with(starts), "{msg:?} should start with {starts:?}");
    assert!(msg.contains(contains), "{msg:?} should contain {contains:?}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[test]
fn dotdot_escape_is_refused() {
    for mode in [ApplyMode::Overlay, ApplyMode::Flatten] {
        let a = Arena::new("h-dotdot");
        let mut l = Layer::new();
        l.raw(EntryType::Regular, b"../../etc/x", None, 0o644, b"pwned");
        refused(a.apply(l.finish(), mode), ErrorKind::UnsafeLayer, "layer entry \"../../etc/x\": ", "escapes the root");
        let mut l = Layer::new();
        l.raw(EntryType::Directory, b"a/../../x/", None, 0o755, b"");
        refused(a.apply(l.finish(), mode), ErrorKind::UnsafeLayer, "layer entry \"a/../../x/\": ", "escapes");
        a.check_outside();
    }
}

#[test]
fn absolute_paths_are_neutralised_into_the_root() {
    let a = Arena::new("h-abs");
    let mut l = Layer::new();
    l.raw(EntryType::Regular, b"/abs/path", None, 0o644, b"inside").raw(
        EntryType::Regular,
        b"//etc/../etc/hosts",
        None,
        0o644,
        b"hosts",
    );
    a.apply(l.finish(), ApplyMode::Overlay).unwrap();
    assert_eq!(fs::read(a.snap.join("abs/path")).unwrap(), b"inside");
    assert_eq!(fs::read(a.snap.join("etc/hosts")).unwrap(), b"hosts");
    a.check_outside();
}

#[test]
fn symlink_then_file_is_refused() {
    for mode in [ApplyMode::Overlay, ApplyMode::Flatten] {
        let a = Arena::new("h-symfile");
        let mut l = Layer::new();
        l.symlink("evil", &a.outside_str()).raw(EntryType::Regular, b"evil/pwned", None, 0o644, b"pwned");
        refused(
            a.apply(l.finish(), mode),
            ErrorKind::UnsafeLayer,
            "layer entry \"evil/pwned\": ",
            "\"evil\" is a symlink",
        );
        // The same through a directory entry and a nested path.
        let mut l = Layer::new();
        l.symlink("evil2", &a.outside_str()).raw(EntryType::Directory, b"evil2/sub/dir/", None, 0o755, b"");
        refused(a.apply(l.finish(), mode), ErrorKind::UnsafeLayer, "layer entry \"evil2/sub/dir/\": ", "is a symlink");
        a.check_outside();
    }
}

#[test]
fn symlink_to_dotdot_chain_is_refused() {
    let a = Arena::new("h-chain");
    let mut l = Layer::new();
    l.symlink("up", "../../../../../../..").raw(EntryType::Regular, b"up/x", None, 0o644, b"pwned");
    refused(a.apply(l.finish(), ApplyMode::Overlay), ErrorKind::UnsafeLayer, "layer entry \"up/x\": ", "is a symlink");
    let mut l = Layer::new();
    l.symlink("l1", "l2").symlink("l2", "/").raw(EntryType::Regular, b"l1/tmp/x", None, 0o644, b"pwned");
    refused(
        a.apply(l.finish(), ApplyMode::Overlay),
        ErrorKind::UnsafeLayer,
        "layer entry \"l1/tmp/x\": ",
        "\"l1\" is a symlink",
    );
    let mut l = Layer::new();
    l.symlink("dot", ".").raw(EntryType::Regular, b"dot/dot/../../../x", None, 0o644, b"pwned");
    refused(
        a.apply(l.finish(), ApplyMode::Overlay),
        ErrorKind::UnsafeLayer,
        "layer entry \"dot/dot/../../../x\": ",
        "escapes",
    );
    a.check_outside();
}

#[test]
fn hardlink_to_host_file_is_neutralised() {
    let a = Arena::new("h-shadow");
    let mut l = Layer::new();
    l.hardlink("shadow", "/etc/shadow");
    refused(
        a.apply(l.finish(), ApplyMode::Flatten),
        ErrorKind::InvalidLayer,
        "layer entry \"shadow\": ",
        "hardlink target \"etc/shadow\" does not exist in this layer",
    );
    assert!(!a.snap.join("shadow").exists());

    // With the layer's own etc/shadow, "/etc/shadow" means that one, never the host's.
    let mut l = Layer::new();
    l.file("etc/shadow", b"image shadow", 0o640).hardlink("shadow", "/etc/shadow");
    a.apply(l.finish(), ApplyMode::Flatten).unwrap();
    let linked = fs::metadata(a.snap.join("shadow")).unwrap();
    assert_eq!(linked.ino(), fs::metadata(a.snap.join("etc/shadow")).unwrap().ino());
    if let Ok(host) = fs::metadata("/etc/shadow") {
        assert_ne!((linked.dev(), linked.ino()), (host.dev(), host.ino()));
    }
    a.check_outside();
}

#[test]
fn hardlink_escaping_is_refused() {
    let a = Arena::new("h-hardesc");
    let mut l = Layer::new();
    l.raw(EntryType::Link, b"x", Some(b"../../x"), 0o644, b"");
    refused(
        a.apply(l.finish(), ApplyMode::Overlay),
        ErrorKind::UnsafeLayer,
        "layer entry \"x\": ",
        "hardlink target \"../../x\"",
    );
    let mut l = Layer::new();
    l.raw(EntryType::Link, b"y", Some(b"../outside/secret"), 0o644, b"");
    refused(a.apply(l.finish(), ApplyMode::Overlay), ErrorKind::UnsafeLayer, "layer entry \"y\": ", "escapes");
    // Through a symlink the archive made.
    let mut l = Layer::new();
    l.symlink("evil", &a.outside_str()).raw(EntryType::Link, b"h", Some(b"evil/secret"), 0o644, b"");
    refused(a.apply(l.finish(), ApplyMode::Overlay), ErrorKind::UnsafeLayer, "layer entry \"h\": ", "is a symlink");
    // To a directory.
    let mut l = Layer::new();
    l.dir("d", 0o755).raw(EntryType::Link, b"dl", Some(b"d"), 0o644, b"");
    refused(a.apply(l.finish(), ApplyMode::Overlay), ErrorKind::InvalidLayer, "layer entry \"dl\": ", "is a directory");
    assert_eq!(fs::metadata(a.outside.join("secret")).unwrap().nlink(), 1);
    a.check_outside();
}

#[test]
fn pre_existing_symlink_in_the_target_is_not_followed() {
    for mode in [ApplyMode::Overlay, ApplyMode::Flatten] {
        let a = Arena::new("h-pre");
        symlink(&a.outside, a.snap.join("pre")).unwrap();
        let mut l = Layer::new();
        l.raw(EntryType::Regular, b"pre/file", None, 0o644, b"pwned");
        refused(
            a.apply(l.finish(), mode),
            ErrorKind::UnsafeLayer,
            "layer entry \"pre/file\": ",
            "\"pre\" is a symlink",
        );
        let mut l = Layer::new();
        l.raw(EntryType::Regular, b"pre/.wh.secret", None, 0o644, b"");
        refused(a.apply(l.finish(), mode), ErrorKind::UnsafeLayer, "layer entry \"pre/.wh.secret\": ", "is a symlink");
        let mut l = Layer::new();
        l.raw(EntryType::Regular, b"pre/.wh..wh..opq", None, 0o644, b"");
        refused(
            a.apply(l.finish(), mode),
            ErrorKind::UnsafeLayer,
            "layer entry \"pre/.wh..wh..opq\": ",
            "is a symlink",
        );
        a.check_outside();
    }
}

#[test]
fn entries_replace_symlinks_instead_of_writing_through_them() {
    let a = Arena::new("h-replace");
    let secret = a.outside.join("secret");
    let mut l = Layer::new();
    l.symlink("evil", &a.outside_str())
        .raw(EntryType::Directory, b"evil/", None, 0o755, b"")
        .symlink("evil2", &secret.display().to_string())
        .file("evil2", b"replaced", 0o644)
        .symlink("evil3", &secret.display().to_string())
        .raw(EntryType::Fifo, b"evil3", None, 0o644, b"");
    a.apply(l.finish(), ApplyMode::Flatten).unwrap();
    assert!(fs::symlink_metadata(a.snap.join("evil")).unwrap().is_dir());
    assert_eq!(fs::read(a.snap.join("evil2")).unwrap(), b"replaced");
    assert!(!fs::symlink_metadata(a.snap.join("evil3")).unwrap().file_type().is_symlink());
    a.check_outside();
}

#[test]
fn whiteouts_remove_symlinks_not_their_targets() {
    let a = Arena::new("h-whsym");
    symlink(&a.outside, a.snap.join("evil")).unwrap();
    let mut l = Layer::new();
    l.file(".wh.evil", b"", 0o644);
    a.apply(l.finish(), ApplyMode::Flatten).unwrap();
    assert!(fs::symlink_metadata(a.snap.join("evil")).is_err());
    a.check_outside();

    // An opaque root in flatten mode clears the snapshot, never what its symlinks point to.
    symlink(&a.outside, a.snap.join("evil")).unwrap();
    fs::create_dir(a.snap.join("d")).unwrap();
    symlink(&a.outside, a.snap.join("d/link")).unwrap();
    let mut l = Layer::new();
    l.file(".wh..wh..opq", b"", 0o644);
    a.apply(l.finish(), ApplyMode::Flatten).unwrap();
    assert_eq!(fs::read_dir(&a.snap).unwrap().count(), 0);
    a.check_outside();
}

#[test]
fn bad_whiteout_and_names_are_refused() {
    let a = Arena::new("h-names");
    let mut l = Layer::new();
    l.raw(EntryType::Regular, b"d/.wh..", None, 0o644, b"");
    refused(
        a.apply(l.finish(), ApplyMode::Flatten),
        ErrorKind::InvalidLayer,
        "layer entry \"d/.wh..\": ",
        "whiteout names no file",
    );
    let mut l = Layer::new();
    l.raw(EntryType::Regular, b".wh...", None, 0o644, b"");
    refused(
        a.apply(l.finish(), ApplyMode::Overlay),
        ErrorKind::InvalidLayer,
        "layer entry \".wh...\": ",
        "whiteout names no file",
    );
    let mut l = Layer::new();
    l.pax(&[("path", b"a\0b")]).file("innocent", b"x", 0o644);
    refused(a.apply(l.finish(), ApplyMode::Overlay), ErrorKind::UnsafeLayer, "layer entry ", "NUL byte");
    let mut l = Layer::new();
    l.raw(EntryType::Regular, b"../.wh.outside", None, 0o644, b"");
    refused(
        a.apply(l.finish(), ApplyMode::Flatten),
        ErrorKind::UnsafeLayer,
        "layer entry \"../.wh.outside\": ",
        "escapes",
    );
    a.check_outside();
}

#[test]
fn long_names_through_pax_are_checked_too() {
    let a = Arena::new("h-pax");
    let long = format!("{}{}x", "d/".repeat(60), "../".repeat(61));
    let mut l = Layer::new();
    l.pax(&[("path", long.as_bytes())]).file("innocent", b"x", 0o644);
    refused(
        a.apply(l.finish(), ApplyMode::Flatten),
        ErrorKind::UnsafeLayer,
        "layer entry \"d/d/d/",
        "escapes the root",
    );
    a.check_outside();
}
