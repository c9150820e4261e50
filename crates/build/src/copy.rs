//! COPY and ADD: sources selected from the context (Go `filepath.Match` patterns, as
//! Docker's), `.dockerignore` applied, written into the stage's mounted root with Docker's
//! rules for the destination (a directory when it ends in `/`, when several sources are
//! copied or when it is one already; a source directory's *contents* are copied), owned by
//! root unless `--chown`, with `--chmod`; ADD unpacks local tar archives (plain, gzip, zstd).
//! ADD's remote sources arrive already fetched ([`Fetched`], see [`crate::remote`]): a
//! download is copied as a file (never unpacked), a repository's tree as a directory.
//!
//! Destination paths are resolved inside the root: a symlink on the way is followed as if the
//! root were `/`, so nothing is ever written outside it.

use berth_dockerfile::PatternMatcher;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// One COPY/ADD, expanded.
pub struct Spec {
    pub sources: Vec<String>,
    /// Heredoc sources: (file name, content).
    pub contents: Vec<(String, String)>,
    pub dest: String,
    /// The stage's WORKDIR (a relative `dest` is under it).
    pub workdir: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// ADD: local tar archives are unpacked at the destination.
    pub unpack: bool,
    /// COPY `--exclude` patterns (`.dockerignore` syntax), matched against paths relative to
    /// each source (a file source: its name).
    pub excludes: Vec<String>,
    /// COPY `--parents`: a source keeps its path (from the context root, or from a `/./` in
    /// it) under the destination.
    pub parents: bool,
    /// ADD: the sources fetched from elsewhere, by their text in `sources`.
    pub fetched: BTreeMap<String, Fetched>,
}

/// An ADD source fetched into the build's work directory.
#[derive(Clone, Debug)]
pub enum Fetched {
    /// A downloaded file: `dir/name` (its mode and mtime are kept, as for a context file).
    File { dir: PathBuf, name: String },
    /// A checked-out tree: its contents are copied, as a source directory's.
    Tree(PathBuf),
}

/// A source of one COPY/ADD: a path under the source root, or something fetched.
enum Item<'s> {
    Local(PathBuf),
    Fetched(&'s Fetched),
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn fnmatch(pattern: &str, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (CString::new(pattern), CString::new(name)) else { return false };
    // SAFETY: both are valid NUL-terminated strings for the duration of the call.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), libc::FNM_PATHNAME) == 0 }
}

/// A source path relative to its root, cleaned; `..` cannot climb out.
fn relative(src: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if !out.pop() => {
                return Err(format!("forbidden path outside the build context: {src}"));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The paths (relative to `root`) a source names: itself, or what its pattern matches.
pub fn matches(root: &Path, src: &str) -> Result<Vec<PathBuf>, String> {
    let rel = relative(src)?;
    if !has_meta(src) {
        if std::fs::symlink_metadata(root.join(&rel)).is_err() {
            return Err(format!(
                "COPY failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist"
            ));
        }
        return Ok(vec![rel]);
    }
    let mut found = vec![PathBuf::new()];
    for comp in rel.components() {
        let pat = comp.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for base in &found {
            if !has_meta(&pat) {
                if std::fs::symlink_metadata(root.join(base).join(&pat)).is_ok() {
                    next.push(base.join(&pat));
                }
                continue;
            }
            let mut names: Vec<String> = std::fs::read_dir(root.join(base))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| fnmatch(&pat, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    if found.is_empty() {
        return Err(format!("COPY failed: no source files were specified (nothing matches {src})"));
    }
    Ok(found)
}

fn ignored(ignore: Option<&PatternMatcher>, rel: &Path) -> bool {
    ignore.is_some_and(|m| m.matches(&rel.to_string_lossy()))
}

/// Hash what COPY would read under `rel`: paths, modes, contents and link targets, in order.
pub fn hash_tree(
    root: &Path,
    rel: &Path,
    ignore: Option<&PatternMatcher>,
    h: &mut berth_image::Hasher,
) -> Result<(), String> {
    let p = root.join(rel);
    let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", rel.display()))?;
    if !rel.as_os_str().is_empty() && ignored(ignore, rel) {
        return Ok(());
    }
    h.update(rel.as_os_str().as_bytes());
    h.update(format!("\0{:o}\0", md.mode()).as_bytes());
    if md.file_type().is_symlink() {
        h.update(std::fs::read_link(&p).map_err(|e| e.to_string())?.as_os_str().as_bytes());
    } else if md.is_file() {
        let mut f = std::fs::File::open(&p).map_err(|e| format!("{}: {e}", rel.display()))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if md.is_dir() {
        let mut names: Vec<_> =
            std::fs::read_dir(&p).map_err(|e| e.to_string())?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            hash_tree(root, &rel.join(n), ignore, h)?;
        }
    }
    h.update(b"\n");
    Ok(())
}

/// Resolve `path` (absolute, container view) inside `root`, following symlinks as if `root`
/// were `/`; the last component is not followed when it is a symlink and `follow_last` is false.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, String> {
    let mut todo: Vec<String> = path.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect();
    todo.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(cur.iter());
        candidate.push(&c);
        let last = todo.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!last || follow_last) => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("too many levels of symbolic links in {path}"));
                }
                let target = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for part in t.split('/').filter(|p| !p.is_empty()).rev() {
                    todo.push(part.to_string());
                }
            }
            _ => cur.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(cur.iter());
    Ok(out)
}

/// `user[:group]` (names or numbers) → uid, gid, from the root's /etc/passwd and /etc/group.
pub fn owner(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let path = resolve_in_root(root, file, true).ok()?;
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().unwrap_or(0))))?
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("/etc/passwd", u).ok_or_else(|| format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))?,
    };
    let gid = match g {
        None => {
            if u.parse::<u32>().is_ok() {
                uid
            } else {
                primary
            }
        }
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/group", g).map(|(gid, _)| gid).ok_or_else(|| {
                format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}")
            })?,
        },
    };
    Ok((uid, gid))
}

struct Writer<'a> {
    root: &'a Path,
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
    ignore: Option<&'a PatternMatcher>,
    src_root: &'a Path,
    exclude: Option<PatternMatcher>,
}

impl Writer<'_> {
    /// Make the directory (and missing parents) at container path `dir`; its host path.
    fn mkdirs(&self, dir: &str) -> Result<PathBuf, String> {
        let mut cur = String::new();
        for c in dir.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(c);
            let p = resolve_in_root(self.root, &cur, true)?;
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("cannot copy to {cur}: not a directory")),
                Err(_) => {
                    std::fs::create_dir(&p).map_err(|e| format!("creating {cur}: {e}"))?;
                    std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).map_err(|e| e.to_string())?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
                }
            }
        }
        resolve_in_root(self.root, dir, true)
    }

    /// Copy source `rel` (file, link or directory) to host path `dst` (not existing, or a
    /// directory that is merged into when `rel` is one).
    fn put(&self, rel: &Path, dst: &Path, base: &Path) -> Result<(), String> {
        let src = self.src_root.join(rel);
        let md = std::fs::symlink_metadata(&src).map_err(|e| format!("{}: {e}", rel.display()))?;
        let ft = md.file_type();
        if ft.is_dir() {
            match std::fs::symlink_metadata(dst) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(dst).map_err(|e| e.to_string())?;
                    std::fs::create_dir(dst).map_err(|e| e.to_string())?;
                }
                Err(_) => std::fs::create_dir(dst).map_err(|e| format!("creating {}: {e}", dst.display()))?,
            }
            let mode = self.chmod.unwrap_or(md.mode() & 0o7777);
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(dst, Some(self.uid), Some(self.gid)).map_err(|e| e.to_string())?;
            let mut names: Vec<_> =
                std::fs::read_dir(&src).map_err(|e| e.to_string())?.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                let r = rel.join(&n);
                // An ignored directory is still walked when an exception (`!`) may re-include
                // something under it, as the docker CLI does when it sends the context.
                if ignored(self.ignore, &r)
                    && !(self.src_root.join(&r).is_dir()
                        && self.ignore.is_some_and(|m| m.must_walk_excluded_dir(&r.to_string_lossy())))
                {
                    continue;
                }
                if let (Some(x), Ok(under)) = (&self.exclude, r.strip_prefix(base)) {
                    if x.matches(&under.to_string_lossy()) {
                        continue;
                    }
                }
                self.put(&r, &dst.join(&n), base)?;
            }
            return Ok(());
        }
        if let Ok(m) = std::fs::symlink_metadata(dst) {
            if m.is_dir() {
                std::fs::remove_dir_all(dst).map_err(|e| e.to_string())?;
            } else {
                std::fs::remove_file(dst).map_err(|e| e.to_string())?;
            }
        }
        if ft.is_symlink() {
            let t = std::fs::read_link(&src).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&t, dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            std::os::unix::fs::lchown(dst, Some(self.uid), Some(self.gid)).map_err(|e| e.to_string())?;
            return Ok(());
        }
        if !ft.is_file() {
            return Err(format!("{}: only regular files, directories and symlinks can be copied", rel.display()));
        }
        std::fs::copy(&src, dst).map_err(|e| format!("copying {}: {e}", rel.display()))?;
        let mode = self.chmod.unwrap_or(md.mode() & 0o7777);
        std::os::unix::fs::chown(dst, Some(self.uid), Some(self.gid)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
        let _ = std::fs::File::options().write(true).open(dst).and_then(|f| f.set_modified(md.modified()?));
        Ok(())
    }
}

/// Whether `p` is a tar archive (plain or compressed): its first block is a tar header.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else { return false };
    let Ok(mut r) = berth_image::compression::decompress(std::io::BufReader::new(f)) else { return false };
    let mut b = [0u8; 512];
    if r.read_exact(&mut b).is_err() {
        return false;
    }
    let stored = std::str::from_utf8(&b[148..156]).ok().map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '));
    let Some(stored) = stored.and_then(|s| u32::from_str_radix(s, 8).ok()) else { return false };
    let sum: u32 = b.iter().enumerate().map(|(i, v)| if (148..156).contains(&i) { 32 } else { u32::from(*v) }).sum();
    sum == stored
}

/// Carry out `spec`: sources from `src_root` into the mounted `root`.
pub fn copy(src_root: &Path, ignore: Option<&PatternMatcher>, root: &Path, spec: &Spec) -> Result<(), String> {
    let (uid, gid) = match &spec.chown {
        Some(c) if !c.is_empty() => owner(root, c)?,
        _ => (0, 0),
    };
    let chmod = match &spec.chmod {
        Some(m) if !m.is_empty() => Some(
            u32::from_str_radix(m, 8)
                .map_err(|_| format!("invalid chmod parameter: {m} (an octal mode is expected)"))?,
        ),
        _ => None,
    };
    let exclude = if spec.excludes.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&spec.excludes).map_err(|e| format!("invalid --exclude pattern: {e:?}"))?)
    };
    let w = Writer { root, uid, gid, chmod, ignore, src_root, exclude };
    // Each source with the path it keeps under the destination with --parents.
    let mut srcs: Vec<Item> = Vec::new();
    let mut kept: Vec<PathBuf> = Vec::new();
    for s in &spec.sources {
        if let Some(f) = spec.fetched.get(s) {
            srcs.push(Item::Fetched(f));
            kept.push(PathBuf::new());
            continue;
        }
        let pivot = match s.split_once("/./") {
            Some((before, _)) if spec.parents => relative(before)?,
            _ => PathBuf::new(),
        };
        for m in matches(src_root, s)? {
            if ignored(ignore, &m) && !m.as_os_str().is_empty() {
                continue;
            }
            let name = m.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if w.exclude.as_ref().is_some_and(|x| !name.is_empty() && x.matches(&name)) {
                continue;
            }
            kept.push(m.strip_prefix(&pivot).map(Path::to_path_buf).unwrap_or_else(|_| m.clone()));
            srcs.push(Item::Local(m));
        }
    }
    let n = srcs.len() + spec.contents.len();
    if n == 0 {
        return Err("COPY failed: no source files were specified".into());
    }
    let dest = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        format!("{}/{}", spec.workdir.trim_end_matches('/'), spec.dest)
    };
    let dest_host = resolve_in_root(root, &dest, true)?;
    let dest_is_dir = spec.dest.ends_with('/')
        || spec.parents
        || spec.dest == "."
        || n > 1
        || std::fs::metadata(&dest_host).map(|m| m.is_dir()).unwrap_or(false);
    if n > 1
        && !spec.parents
        && !spec.dest.ends_with('/')
        && !std::fs::metadata(&dest_host).map(|m| m.is_dir()).unwrap_or(false)
    {
        return Err(format!(
            "When using COPY with more than one source file, the destination must be a directory and end with a /: {}",
            spec.dest
        ));
    }
    let parent = |d: &str| -> String {
        let t = d.trim_end_matches('/');
        match t.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => t[..i].to_string(),
        }
    };
    for (item, keep) in srcs.iter().zip(&kept) {
        // --parents: the destination is the directory the kept path puts the source in.
        let dest = match (spec.parents, keep.parent()) {
            (true, Some(p)) if !p.as_os_str().is_empty() => {
                format!("{}/{}", dest.trim_end_matches('/'), p.to_string_lossy())
            }
            _ => dest.clone(),
        };
        let named = match item {
            Item::Local(p) => p,
            // Fetched sources: no .dockerignore, never unpacked.
            Item::Fetched(Fetched::File { dir, name }) => {
                let fw = Writer { root, uid, gid, chmod, ignore: None, src_root: dir, exclude: None };
                let rel = Path::new(name);
                if dest_is_dir {
                    let d = w.mkdirs(&dest)?;
                    fw.put(rel, &d.join(name), rel)?;
                } else {
                    w.mkdirs(&parent(&dest))?;
                    fw.put(rel, &resolve_in_root(root, &dest, false)?, rel)?;
                }
                continue;
            }
            Item::Fetched(Fetched::Tree(tree)) => {
                let fw = Writer { root, uid, gid, chmod, ignore: None, src_root: tree, exclude: None };
                let d = w.mkdirs(&dest)?;
                fw.put(Path::new(""), &d, Path::new(""))?;
                continue;
            }
        };
        // A source that is a symlink is followed (inside the source root): its target is
        // copied under the source's name, as dockerd and BuildKit do.
        let rel = &match std::fs::symlink_metadata(src_root.join(named)) {
            Ok(m) if m.file_type().is_symlink() => {
                let real = resolve_in_root(src_root, &named.to_string_lossy(), true)?;
                real.strip_prefix(src_root).map(Path::to_path_buf).unwrap_or_else(|_| named.clone())
            }
            _ => named.clone(),
        };
        let src = src_root.join(rel);
        let is_dir = std::fs::symlink_metadata(&src).map(|m| m.is_dir()).unwrap_or(false);
        if spec.unpack && !is_dir && is_archive(&src) {
            let d = w.mkdirs(&dest)?;
            let f = std::fs::File::open(&src).map_err(|e| e.to_string())?;
            let r = berth_image::compression::decompress(std::io::BufReader::new(f)).map_err(|e| e.to_string())?;
            berth_image::apply_layer(&d, r, berth_image::ApplyMode::Flatten)
                .map_err(|e| format!("unpacking {}: {e}", rel.display()))?;
            continue;
        }
        let name = named.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        if is_dir && spec.parents && !keep.as_os_str().is_empty() {
            let d = w.mkdirs(&format!("{}/{}", dest.trim_end_matches('/'), name.to_string_lossy()))?;
            w.put(rel, &d, rel)?;
        } else if is_dir {
            let d = w.mkdirs(&dest)?;
            w.put(rel, &d, rel)?;
        } else if dest_is_dir {
            let d = w.mkdirs(&dest)?;
            w.put(rel, &d.join(name), rel)?;
        } else {
            w.mkdirs(&parent(&dest))?;
            w.put(rel, &resolve_in_root(root, &dest, false)?, rel)?;
        }
    }
    for (name, data) in &spec.contents {
        let target = if dest_is_dir {
            let d = w.mkdirs(&dest)?;
            d.join(name)
        } else {
            w.mkdirs(&parent(&dest))?;
            resolve_in_root(root, &dest, false)?
        };
        std::fs::write(&target, data).map_err(|e| format!("writing {}: {e}", target.display()))?;
        std::os::unix::fs::chown(&target, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(chmod.unwrap_or(0o644)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = std::env::temp_dir().join(format!("berth-copy-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", d.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", d.join("usr/evil")).unwrap();
        assert_eq!(resolve_in_root(&d, "/lib/x", true).unwrap(), d.join("usr/lib/x"));
        assert_eq!(resolve_in_root(&d, "/usr/evil/passwd", true).unwrap(), d.join("etc/passwd"));
        assert_eq!(resolve_in_root(&d, "/lib", false).unwrap(), d.join("lib"));
        std::fs::create_dir_all(d.join("ctx/src")).unwrap();
        for f in ["a.txt", "b.txt", "c.md"] {
            std::fs::write(d.join("ctx/src").join(f), f).unwrap();
        }
        let m = matches(&d.join("ctx"), "src/*.txt").unwrap();
        assert_eq!(m, vec![PathBuf::from("src/a.txt"), PathBuf::from("src/b.txt")]);
        assert!(matches(&d.join("ctx"), "../x").is_err());
        assert!(matches(&d.join("ctx"), "nope").unwrap_err().contains("not found"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlink_sources_are_followed_and_exceptions_walked() {
        let d = std::env::temp_dir().join(format!("berth-copy-test2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (ctx, root) = (d.join("ctx"), d.join("root"));
        std::fs::create_dir_all(ctx.join("src/gen")).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(ctx.join("real.txt"), "real").unwrap();
        std::os::unix::fs::symlink("real.txt", ctx.join("link")).unwrap();
        std::fs::write(ctx.join("src/gen/out.c"), "o").unwrap();
        std::fs::write(ctx.join("src/gen/other.c"), "x").unwrap();
        let spec = |sources: &[&str], dest: &str| Spec {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            contents: vec![],
            dest: dest.into(),
            workdir: "/".into(),
            chown: None,
            chmod: None,
            unpack: false,
            excludes: vec![],
            parents: false,
            fetched: BTreeMap::new(),
        };
        copy(&ctx, None, &root, &spec(&["link"], "/l/")).unwrap();
        let md = std::fs::symlink_metadata(root.join("l/link")).unwrap();
        assert!(md.is_file(), "the link's target is copied under the link's name");
        assert_eq!(std::fs::read_to_string(root.join("l/link")).unwrap(), "real");
        let ignore = PatternMatcher::new(&["src/gen", "!src/gen/out.c"]).unwrap();
        copy(&ctx, Some(&ignore), &root, &spec(&["src"], "/s/")).unwrap();
        assert!(root.join("s/gen/out.c").is_file());
        assert!(!root.join("s/gen/other.c").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
