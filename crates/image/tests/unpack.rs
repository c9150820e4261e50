//! Applying layers to real directories: every entry type and its metadata, whiteouts in both
//! modes (checked against an actual overlayfs mount), compression, and the DiffID.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_image::compression::{self, Compression};
use berth_image::unpack::{apply_layer, decompress, ApplyMode};
use berth_image::{Digest, ErrorKind};
use common::{tree, Layer, TempDir, TreeOpts};
use tar::EntryType;

const T: i64 = 1_600_000_000;

/// A base layer with every entry type and the metadata we must keep.
fn base_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .pax(&[("SCHILY.xattr.user.comment", b"hello"), ("SCHILY.xattr.trusted.berth", b"t\0bin")])
        .file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
        .file("usr/bin/su", b"su binary", 0o4755)
        .hardlink("usr/bin/su-link", "usr/bin/su")
        .symlink("bin", "/usr/bin")
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
        .file_owned("etc/owned", b"mine", 0o600, 1000, 1000)
        .symlink("etc/rel", "../usr/bin/tool")
        .dir("dev", 0o755)
        .node("dev/null", EntryType::Char, 0o666, 0, (1, 3))
        .node("dev/loop0", EntryType::Block, 0o660, 6, (7, 0))
        .dir("run", 0o755)
        .node("run/fifo", EntryType::Fifo, 0o644, 0, (0, 0))
        .dir("tmp", 0o1777)
        .dir("a", 0o750)
        .file("a/keep", b"keep", 0o644)
        .file("a/gone", b"gone", 0o644)
        .dir("a/sub", 0o755)
        .file("a/sub/x", b"x", 0o644)
        .dir("opq", 0o700)
        .file("opq/old1", b"old", 0o644)
        .dir("opq/olddir", 0o755)
        .file("opq/olddir/x", b"x", 0o644)
        .file("setgid", b"sg", 0o2755)
        .pax(&[("mtime", b"1700000000.25")])
        .file("precise", b"p", 0o644);
    l.finish()
}

/// A second layer: whiteouts, an opaque directory (its new content comes before the marker),
/// and a whiteout of something the same layer created (which must survive).
fn whiteout_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("a", 0o750)
        .file("a/.wh.gone", b"", 0o644)
        .file("a/.wh.sub", b"", 0o644)
        .file("a/.wh..wh.plnk", b"", 0o644)
        .dir("opq", 0o700)
        .file("opq/new", b"new", 0o644)
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file(".wh.bin", b"", 0o644)
        .file("etc/.wh.owned", b"", 0o644)
        .dir("newdir", 0o755)
        .file("newdir/newfile", b"nf", 0o600)
        .file("newdir/tmp", b"t", 0o644)
        .file("newdir/.wh.tmp", b"", 0o644);
    l.finish()
}

fn h(data: &[u8]) -> String {
    Digest::of(data).hex()[..12].to_string()
}

fn file_line(path: &str, mode: u32, owner: &str, data: &[u8], nlink: u32, mtime: i64) -> String {
    format!("{path} {mode:04o} {owner} file size={} {} nlink={nlink} mtime={mtime}", data.len(), h(data))
}

fn base_tree(dir_mtimes: bool) -> Vec<String> {
    let d = |p: &str, mode: u32| {
        if dir_mtimes {
            format!("{p} {mode:04o} 0:0 dir mtime={T}")
        } else {
            format!("{p} {mode:04o} 0:0 dir")
        }
    };
    let mut v = vec![
        d("a", 0o750),
        file_line("a/gone", 0o644, "0:0", b"gone", 1, T),
        file_line("a/keep", 0o644, "0:0", b"keep", 1, T),
        d("a/sub", 0o755),
        file_line("a/sub/x", 0o644, "0:0", b"x", 1, T),
        format!("bin 0777 0:0 symlink -> /usr/bin mtime={T}"),
        d("dev", 0o755),
        format!("dev/loop0 0660 0:6 block 7:0 mtime={T}"),
        format!("dev/null 0666 0:0 char 1:3 mtime={T}"),
        d("etc", 0o755),
        file_line("etc/owned", 0o600, "1000:1000", b"mine", 1, T),
        file_line("etc/passwd", 0o644, "0:0", b"root:x:0:0::/root:/bin/sh\n", 1, T),
        format!("etc/rel 0777 0:0 symlink -> ../usr/bin/tool mtime={T}"),
        d("opq", 0o700),
        file_line("opq/old1", 0o644, "0:0", b"old", 1, T),
        d("opq/olddir", 0o755),
        file_line("opq/olddir/x", 0o644, "0:0", b"x", 1, T),
        file_line("precise", 0o644, "0:0", b"p", 1, 1_700_000_000),
        d("run", 0o755),
        format!("run/fifo 0644 0:0 fifo mtime={T}"),
        file_line("setgid", 0o2755, "0:0", b"sg", 1, T),
        d("tmp", 0o1777),
        d("usr", 0o755),
        d("usr/bin", 0o755),
        file_line("usr/bin/su", 0o4755, "0:0", b"su binary", 2, T),
        file_line("usr/bin/su-link", 0o4755, "0:0", b"su binary", 2, T),
        file_line("usr/bin/tool", 0o755, "0:0", b"#!/bin/sh\necho tool\n", 1, T)
            + " xattrs={\"trusted.berth\": \"t\\0bin\", \"user.comment\": \"hello\"}",
    ];
    v.sort();
    v
}

fn apply(root: &Path, layer: &[u8], mode: ApplyMode) -> berth_image::LayerStats {
    apply_layer(root, layer, mode).unwrap_or_else(|e| panic!("apply: {e}"))
}

#[test]
fn base_layer_has_every_type_and_its_metadata() {
    let t = TempDir::new("unpack-base");
    let layer = base_layer();
    for mode in [ApplyMode::Overlay, ApplyMode::Flatten] {
        let root = t.sub(&format!("{mode:?}"));
        let stats = apply(&root, &layer, mode);
        assert_eq!(tree(&root, TreeOpts { dir_mtimes: true, ..Default::default() }), base_tree(true), "{mode:?}");
        assert_eq!(stats.diff_id, Digest::of(&layer));
        assert_eq!(stats.size, layer.len() as u64);
        assert_eq!(stats.entries, 27);
        assert_eq!(stats.xattrs_skipped, 0);
        let m = fs::metadata(root.join("precise")).unwrap();
        assert_eq!(m.mtime_nsec(), 250_000_000, "PAX sub-second mtime");
        let su = fs::metadata(root.join("usr/bin/su")).unwrap();
        assert_eq!(su.ino(), fs::metadata(root.join("usr/bin/su-link")).unwrap().ino());
    }
}

fn overlay_layer2_tree() -> Vec<String> {
    let mut v = vec![
        "a 0750 0:0 dir".to_string(),
        "a/gone 0000 0:0 whiteout".to_string(),
        "a/sub 0000 0:0 whiteout".to_string(),
        "bin 0000 0:0 whiteout".to_string(),
        "etc 0755 0:0 dir".to_string(),
        "etc/owned 0000 0:0 whiteout".to_string(),
        "newdir 0755 0:0 dir".to_string(),
        file_line("newdir/newfile", 0o600, "0:0", b"nf", 1, T),
        file_line("newdir/tmp", 0o644, "0:0", b"t", 1, T),
        "opq 0700 0:0 dir xattrs={\"trusted.overlay.opaque\": \"y\"}".to_string(),
        file_line("opq/new", 0o644, "0:0", b"new", 1, T),
    ];
    v.sort();
    v
}

fn flattened_tree() -> Vec<String> {
    let gone = ["a/gone", "a/sub", "a/sub/x", "bin", "etc/owned", "opq/old1", "opq/olddir", "opq/olddir/x"];
    let mut v: Vec<String> =
        base_tree(false).into_iter().filter(|l| !gone.contains(&l.split(' ').next().unwrap())).collect();
    v.extend([
        "newdir 0755 0:0 dir".to_string(),
        file_line("newdir/newfile", 0o600, "0:0", b"nf", 1, T),
        file_line("newdir/tmp", 0o644, "0:0", b"t", 1, T),
        file_line("opq/new", 0o644, "0:0", b"new", 1, T),
    ]);
    v.sort();
    v
}

#[test]
fn whiteouts_in_overlay_mode() {
    let t = TempDir::new("unpack-overlay");
    let upper = t.sub("l2");
    let stats = apply(&upper, &whiteout_layer(), ApplyMode::Overlay);
    assert_eq!(tree(&upper, TreeOpts::default()), overlay_layer2_tree());
    assert_eq!(stats.diff_id, Digest::of(&whiteout_layer()));
    // Explicit directory entries keep their times (set after their children were written).
    assert_eq!(fs::metadata(upper.join("a")).unwrap().mtime(), T);
    assert_eq!(fs::metadata(upper.join("opq")).unwrap().mtime(), T);
}

#[test]
fn whiteouts_in_flatten_mode() {
    let t = TempDir::new("unpack-flatten");
    let root = t.sub("rootfs");
    apply(&root, &base_layer(), ApplyMode::Flatten);
    apply(&root, &whiteout_layer(), ApplyMode::Flatten);
    assert_eq!(tree(&root, TreeOpts::default()), flattened_tree());
    assert_eq!(fs::metadata(root.join("a")).unwrap().mtime(), T, "dir time set after its whiteouts");
}

/// The overlay snapshots stacked by a real overlayfs mount show exactly the flattened tree.
#[test]
fn overlay_snapshots_mount_to_the_flattened_tree() {
    let t = TempDir::new("unpack-mount");
    let (l1, l2, merged, flat) = (t.sub("l1"), t.sub("l2"), t.sub("merged"), t.sub("flat"));
    apply(&l1, &base_layer(), ApplyMode::Overlay);
    apply(&l2, &whiteout_layer(), ApplyMode::Overlay);
    apply(&flat, &base_layer(), ApplyMode::Flatten);
    apply(&flat, &whiteout_layer(), ApplyMode::Flatten);

    let opts = format!("lowerdir={}:{}", l2.display(), l1.display());
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (target, data) = (c(&merged), CString::new(opts).unwrap());
    // SAFETY: all pointers are valid C strings that outlive the call.
    let r = unsafe { libc::mount(c"overlay".as_ptr(), target.as_ptr(), c"overlay".as_ptr(), 0, data.as_ptr().cast()) };
    if r != 0 {
        eprintln!("skipping: cannot mount overlayfs here: {}", std::io::Error::last_os_error());
        return;
    }
    let opts = TreeOpts { dir_mtimes: false, hide_overlay_xattrs: true };
    let seen = tree(&merged, opts);
    // SAFETY: target is a valid C string.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    assert_eq!(seen, tree(&flat, opts));
    assert_eq!(seen, flattened_tree());
}

#[test]
fn directory_recreated_after_its_whiteout_is_opaque_in_overlay_mode() {
    let t = TempDir::new("unpack-recreate");
    let root = t.sub("l");
    let mut l = Layer::new();
    l.file(".wh.d", b"", 0o644).dir("d", 0o755).file("d/f", b"f", 0o644);
    l.file("e/.wh.x", b"", 0o644).dir("e/x", 0o755);
    apply(&root, &l.finish(), ApplyMode::Overlay);
    let x = common::xattrs(&root.join("d"));
    assert_eq!(x.get("trusted.overlay.opaque").map(String::as_str), Some("y"));
    let x = common::xattrs(&root.join("e/x"));
    assert_eq!(x.get("trusted.overlay.opaque").map(String::as_str), Some("y"));
}

#[test]
fn overlay_xattrs_from_the_archive_are_dropped() {
    let t = TempDir::new("unpack-ovx");
    let root = t.sub("l");
    let mut l = Layer::new();
    l.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc"), ("SCHILY.xattr.user.ok", b"1")]).dir("d", 0o755);
    let stats = apply(&root, &l.finish(), ApplyMode::Overlay);
    assert_eq!(stats.xattrs_skipped, 1);
    let x = common::xattrs(&root.join("d"));
    assert_eq!(x.keys().collect::<Vec<_>>(), vec!["user.ok"]);
}

#[test]
fn replaces_entries_and_merges_directories() {
    let t = TempDir::new("unpack-replace");
    let root = t.sub("l");
    let mut l = Layer::new();
    l.dir("d", 0o700)
        .file("d/keep", b"1", 0o644)
        .dir("d", 0o755) // merge: metadata updated, content kept
        .file("f", b"old", 0o644)
        .symlink("f", "/target") // file replaced by symlink
        .dir("g", 0o755)
        .file("g/x", b"x", 0o644)
        .file("g", b"now a file", 0o600) // directory replaced by file
        .raw(EntryType::Regular, b"./x/./y/../z", None, 0o644, b"z")
        .raw(EntryType::Directory, b"./", None, 0o711, b""); // the root itself
    apply(&root, &l.finish(), ApplyMode::Flatten);
    let mut want = vec![
        "d 0755 0:0 dir".to_string(),
        file_line("d/keep", 0o644, "0:0", b"1", 1, T),
        format!("f 0777 0:0 symlink -> /target mtime={T}"),
        file_line("g", 0o600, "0:0", b"now a file", 1, T),
        "x 0755 0:0 dir".to_string(),
        file_line("x/z", 0o644, "0:0", b"z", 1, T),
    ];
    want.sort();
    assert_eq!(tree(&root, TreeOpts::default()), want);
    assert_eq!(fs::metadata(&root).unwrap().mode() & 0o7777, 0o711, "root entry applies to the snapshot root");
}

// ---- compression and DiffID ----

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let cli =
        Command::new("zstd").args(["-q", "-c", "-3", "--check"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    if let Ok(mut child) = cli {
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success());
        return out.stdout;
    }
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
fn gzip_layer_and_diff_id() {
    let t = TempDir::new("unpack-gz");
    let plain = base_layer();
    let gz = gzip(&plain);
    let (kind, reader) = compression::decompress_detected(&gz[..]).unwrap();
    assert_eq!(kind, Compression::Gzip);
    let root = t.sub("gz");
    let stats = apply_layer(&root, reader, ApplyMode::Overlay).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&plain), "DiffID is of the uncompressed tar");
    assert_ne!(stats.diff_id, Digest::of(&gz));
    assert_eq!(tree(&root, TreeOpts { dir_mtimes: true, ..Default::default() }), base_tree(true));

    // pigz-style multi-member gzip.
    let (a, b) = plain.split_at(plain.len() / 3);
    let multi = [gzip(a), gzip(b)].concat();
    let root = t.sub("multi");
    let stats = apply_layer(&root, decompress(&multi[..]).unwrap(), ApplyMode::Overlay).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&plain));
}

#[test]
fn zstd_layer_multi_frame_and_skippable() {
    let t = TempDir::new("unpack-zst");
    let plain = base_layer();
    let z = zstd(&plain);
    assert_eq!(compression::detect(&z).unwrap(), Compression::Zstd);
    let root = t.sub("z");
    let stats = apply_layer(&root, decompress(&z[..]).unwrap(), ApplyMode::Overlay).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&plain));
    assert_eq!(tree(&root, TreeOpts { dir_mtimes: true, ..Default::default() }), base_tree(true));

    let (a, b) = plain.split_at(plain.len() / 2);
    let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18];
    skippable.extend_from_slice(&5u32.to_le_bytes());
    skippable.extend_from_slice(b"skip!");
    let multi = [zstd(a), skippable, zstd(b)].concat();
    assert_eq!(compression::decompress_to_vec(&multi).unwrap(), plain);

    let mut corrupt = z.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    corrupt.truncate(corrupt.len() - 3);
    assert!(compression::decompress_to_vec(&corrupt).is_err());
}

#[test]
fn diff_id_covers_trailing_padding() {
    let t = TempDir::new("unpack-pad");
    let mut plain = base_layer();
    plain.extend(std::iter::repeat_n(0u8, 10_240)); // GNU tar pads to 10 KiB records
    let stats = apply(&t.sub("p"), &plain, ApplyMode::Overlay);
    assert_eq!(stats.diff_id, Digest::of(&plain));
    assert_eq!(stats.size, plain.len() as u64);
}

#[test]
fn detects_and_refuses_other_compressions() {
    assert_eq!(compression::detect(b"usr/\0\0\0").unwrap(), Compression::None);
    let e = compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidLayer);
    assert_eq!(e.to_string(), "xz-compressed layers are not supported");
    let bz = [b'B', b'Z', b'h', b'9', 0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    assert_eq!(compression::detect(&bz).unwrap_err().to_string(), "bzip2-compressed layers are not supported");
    assert_eq!(compression::detect(b"BZh9-a-file-name").unwrap(), Compression::None);
    assert_eq!(compression::detect(b"").unwrap(), Compression::None);
    let mut out = Vec::new();
    decompress(&b"ab"[..]).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, b"ab");
}

#[test]
fn broken_streams_are_layer_errors() {
    let t = TempDir::new("unpack-broken");
    let plain = base_layer();
    let cut = &plain[..plain.len() / 2 + 100];
    let e = apply_layer(&t.sub("cut"), cut, ApplyMode::Overlay).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidLayer, "{e}");

    let mut gz = gzip(&plain);
    let n = gz.len();
    gz[n / 2] ^= 0xff;
    let e = apply_layer(&t.sub("gz"), decompress(&gz[..]).unwrap(), ApplyMode::Overlay).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidLayer), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn unsupported_entry_type_is_named() {
    let t = TempDir::new("unpack-type");
    let mut l = Layer::new();
    l.raw(EntryType::new(b'V'), b"volume-label", None, 0o644, b"");
    let e = apply_layer(&t.sub("r"), &l.finish()[..], ApplyMode::Overlay).unwrap_err();
    assert_eq!(e.to_string(), "layer entry \"volume-label\": unsupported entry type 'V'");
}

/// Compare with umoci (the OCI reference unpacker) when it is installed: build an OCI image
/// layout from the two layers, `umoci raw unpack` it, and require the same tree as ours.
#[test]
fn same_tree_as_umoci() {
    if Command::new("umoci").arg("--version").output().is_err() {
        eprintln!("skipping: umoci not installed");
        return;
    }
    let t = TempDir::new("unpack-umoci");
    let layout = t.sub("layout");
    let blobs = t.sub("layout/blobs/sha256");
    let put = |data: &[u8]| -> (Digest, usize) {
        let d = Digest::of(data);
        fs::write(blobs.join(d.hex()), data).unwrap();
        (d, data.len())
    };
    let (l1, l2) = (base_layer(), whiteout_layer());
    let (g1, g2) = (put(&gzip(&l1)), put(&gzip(&l2)));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        Digest::of(&l1),
        Digest::of(&l2)
    );
    let c = put(config.as_bytes());
    let layer = |(d, n): &(Digest, usize)| {
        format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{n}}}"#)
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{},{}]}}"#,
        c.0,
        c.1,
        layer(&g1),
        layer(&g2)
    );
    let m = put(manifest.as_bytes());
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"test"}}}}]}}"#,
            m.0, m.1
        ),
    )
    .unwrap();
    let theirs = t.join("umoci-rootfs");
    let out = Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));

    let ours = t.sub("ours");
    apply(&ours, &l1, ApplyMode::Flatten);
    apply(&ours, &l2, ApplyMode::Flatten);
    let opts = TreeOpts::default();
    assert_eq!(tree(&ours, opts), tree(&theirs, opts));
}
