//! ADD's remote sources: HTTP(S) URLs and git repositories, fetched into the build's work
//! directory before the step's cache key is made (the key then covers what was fetched).
//!
//! Sources are told apart as BuildKit's dockerfile frontend does: a git reference is
//! `git@host:path`, `git://...`, `ssh://...`, or an `http(s)://` URL whose path ends in
//! `.git`, with an optional `#ref[:subdir]` fragment; any other `http(s)://` URL is a file
//! to download. A download is never unpacked; it is named after the URL path's last segment
//! (`__unnamed__` when it has none), with mode 0600 and the `Last-Modified` time (else the
//! epoch), as BuildKit's HTTP source writes it. A repository is fetched at the ref (the
//! default branch when none), shallowly, with the `git` binary; its `.git` is dropped unless
//! `--keep-git-dir`.

use berth_image::{Digest, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// A git source: the remote to fetch, and what of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitRef {
    /// What `git fetch` is given (the URL without its fragment).
    pub remote: String,
    /// A branch, tag or commit; the remote's default branch when `None`.
    pub reference: Option<String>,
    /// The directory of the repository to copy (the root when `None`).
    pub subdir: Option<String>,
}

/// What an ADD source names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A path in the build context.
    Local,
    /// A file to download.
    Http(String),
    /// A git repository.
    Git(GitRef),
}

impl Source {
    pub fn is_remote(&self) -> bool {
        !matches!(self, Source::Local)
    }
}

/// `user@host:path` (scp-like git address), as BuildKit's `gitutil` recognises it.
fn scp_like(src: &str) -> bool {
    let Some((user, rest)) = src.split_once('@') else { return false };
    let Some((host, _)) = rest.split_once(':') else { return false };
    !user.is_empty()
        && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// What `src` names; an error for a URL of a scheme ADD cannot fetch.
pub fn classify(src: &str) -> Result<Source, String> {
    let (base, fragment) = match src.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (src, None),
    };
    let git = |remote: &str| {
        let (reference, subdir) = match fragment {
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (r, d),
                None => (f, ""),
            },
            None => ("", ""),
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Source::Git(GitRef { remote: remote.to_string(), reference: some(reference), subdir: some(subdir) })
    };
    if scp_like(base) && !base.contains("://") {
        return Ok(git(base));
    }
    let Some((scheme, rest)) = base.split_once("://") else { return Ok(Source::Local) };
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) {
        return Ok(Source::Local);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "git" | "ssh" => Ok(git(base)),
        "http" | "https" => {
            let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            let path = path.split('?').next().unwrap_or("");
            if path.ends_with(".git") {
                Ok(git(base))
            } else {
                Ok(Source::Http(src.to_string()))
            }
        }
        other => Err(format!(
            "unsupported URL scheme {other:?} in {src} (ADD fetches http://, https://, git:// and ssh:// sources)"
        )),
    }
}

/// Decode `%xx` escapes (a bad escape is kept as it is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name a download gets: the last segment of the URL's path (Go's `path.Base`,
/// trailing slashes ignored), or `__unnamed__` when there is none, as BuildKit's frontend.
pub fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = percent_decode(path);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." && base != ".." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Seconds since the epoch of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`; the RFC 850 and
/// asctime forms are not used by servers of this century and are not read).
pub fn parse_http_date(s: &str) -> Option<u64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" {
        return None;
    }
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|m| *m == f[2])? + 1;
    let d: u32 = f[1].parse().ok()?;
    let y: u32 = f[3].parse().ok()?;
    if f[4].len() != 8 {
        return None;
    }
    crate::parse_rfc3339(&format!("{y:04}-{m:02}-{d:02}T{}Z", f[4]))
}

/// A downloaded file.
#[derive(Clone, Debug)]
pub struct Download {
    /// Its name (in the directory it was downloaded to).
    pub name: String,
    pub digest: Digest,
    /// `Last-Modified`, when the server sent one.
    pub mtime: Option<u64>,
}

/// The digest `--checksum` names (sha256 only, as the store hashes).
pub fn parse_checksum(c: &str) -> Result<Digest, String> {
    Digest::parse(c).map_err(|e| format!("invalid checksum digest format: {e}"))
}

/// Download `url` into `dir` (which is created) as [`file_name`], hashing it on the way;
/// with `want`, a different content is an error (and the file is removed).
pub fn download(url: &str, dir: &Path, want: Option<&Digest>) -> Result<Download, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .max_redirects(10)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    // The fragment is the client's, never sent.
    let target = url.split('#').next().unwrap_or(url);
    let mut resp = agent.get(target).call().map_err(|e| format!("failed to GET {url}: {e}"))?;
    let status = resp.status();
    if status.as_u16() >= 400 || status.as_u16() < 200 {
        return Err(format!(
            "failed to GET {url} with status {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string());
    }
    let mtime = resp.headers().get("Last-Modified").and_then(|v| v.to_str().ok()).and_then(parse_http_date);
    let name = file_name(url);
    let path = dir.join(&name);
    let r = (|| -> Result<Digest, String> {
        let mut f = std::fs::File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let mut body = resp.body_mut().as_reader();
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf).map_err(|e| format!("failed to GET {url}: reading the body: {e}"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime.unwrap_or(0));
        f.set_modified(t).map_err(|e| e.to_string())?;
        Ok(h.finish())
    })();
    let digest = match r {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    if let Some(w) = want {
        if *w != digest {
            let _ = std::fs::remove_file(&path);
            return Err(format!("digest mismatch for {url}: {digest} (expected: {w})"));
        }
    }
    Ok(Download { name, digest, mtime })
}

/// A checked-out repository.
#[derive(Clone, Debug)]
pub struct Checkout {
    /// The directory whose contents ADD copies (the subdirectory, when one was named).
    pub tree: PathBuf,
    /// The commit checked out (40 hex).
    pub commit: String,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new("git");
    c.current_dir(dir).args(args).env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        c.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let o = c.output().map_err(|e| format!("running git: {e} (ADD of a git repository needs the git binary)"))?;
    if !o.status.success() {
        let e = String::from_utf8_lossy(&o.stderr);
        let last = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(if last.is_empty() { format!("git {} failed", args[0]) } else { last });
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Fetch `g` into `dir` (a new directory) and check it out; with `checksum` (a commit or
/// annotated tag hash, or a prefix of one, as BuildKit), a different one is an error.
pub fn checkout(g: &GitRef, dir: &Path, keep_git_dir: bool, checksum: Option<&str>) -> Result<Checkout, String> {
    let shown = match &g.reference {
        Some(r) => format!("{}#{r}", g.remote),
        None => g.remote.clone(),
    };
    let fail = |e: String| format!("failed to fetch {shown}: {e}");
    // Never an option to git (`#--upload-pack=...`).
    if g.reference.as_deref().is_some_and(|r| r.starts_with('-')) {
        return Err(format!("invalid git reference in {shown}: it starts with '-'"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    git(dir, &["init", "-q"]).map_err(fail)?;
    git(dir, &["remote", "add", "origin", &g.remote]).map_err(fail)?;
    let want = g.reference.as_deref().unwrap_or("HEAD");
    if let Err(e) = git(dir, &["fetch", "-q", "--depth", "1", "--no-tags", "origin", want]) {
        // A commit the server will not serve by itself: the whole history, then the commit.
        let is_hash = want.len() >= 7 && want.chars().all(|c| c.is_ascii_hexdigit());
        if !is_hash {
            return Err(fail(e));
        }
        git(dir, &["fetch", "-q", "--no-tags", "origin"]).map_err(fail)?;
        git(dir, &["rev-parse", "--verify", "-q", &format!("{want}^{{commit}}")])
            .map_err(|_| fail(format!("commit {want} not found")))?;
        git(dir, &["update-ref", "FETCH_HEAD", want]).map_err(fail)?;
    }
    let fetched = git(dir, &["rev-parse", "FETCH_HEAD"]).map_err(fail)?;
    let commit = git(dir, &["rev-parse", "FETCH_HEAD^{commit}"]).map_err(fail)?;
    if let Some(want) = checksum {
        let w = want.to_ascii_lowercase();
        if w.is_empty() || !(commit.starts_with(&w) || fetched.starts_with(&w)) {
            return Err(if fetched != commit {
                format!("expected checksum to match {want}, got {fetched} or {commit}")
            } else {
                format!("expected checksum to match {want}, got {commit}")
            });
        }
    }
    git(dir, &["-c", "advice.detachedHead=false", "checkout", "-q", &commit]).map_err(fail)?;
    if dir.join(".gitmodules").exists() {
        git(dir, &["submodule", "update", "-q", "--init", "--recursive", "--depth", "1"]).map_err(fail)?;
    }
    if !keep_git_dir {
        std::fs::remove_dir_all(dir.join(".git")).map_err(|e| format!("removing .git: {e}"))?;
    }
    let tree = match &g.subdir {
        None => dir.to_path_buf(),
        Some(s) => {
            let mut rel = PathBuf::new();
            for c in Path::new(s).components() {
                match c {
                    Component::Normal(n) => rel.push(n),
                    Component::CurDir | Component::RootDir => {}
                    _ => return Err(format!("invalid subdirectory {s:?} of {shown}")),
                }
            }
            let t = crate::copy::resolve_in_root(dir, &rel.to_string_lossy(), true)?;
            if !t.is_dir() {
                return Err(format!("subdirectory {s} not found in {shown}"));
            }
            t
        }
    };
    Ok(Checkout { tree, commit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_ref(remote: &str, r: Option<&str>, d: Option<&str>) -> Source {
        Source::Git(GitRef { remote: remote.into(), reference: r.map(Into::into), subdir: d.map(Into::into) })
    }

    #[test]
    fn sources_are_told_apart() {
        assert_eq!(classify("src/a.txt").unwrap(), Source::Local);
        assert_eq!(classify("https://h/f.tar.gz").unwrap(), Source::Http("https://h/f.tar.gz".into()));
        assert_eq!(classify("http://h/f#frag").unwrap(), Source::Http("http://h/f#frag".into()));
        assert_eq!(classify("https://h/r.git").unwrap(), git_ref("https://h/r.git", None, None));
        assert_eq!(
            classify("https://h/r.git#v1:sub/d").unwrap(),
            git_ref("https://h/r.git", Some("v1"), Some("sub/d"))
        );
        assert_eq!(classify("git://h/r#main").unwrap(), git_ref("git://h/r", Some("main"), None));
        assert_eq!(
            classify("git@github.com:o/r.git#:docs").unwrap(),
            git_ref("git@github.com:o/r.git", None, Some("docs"))
        );
        assert_eq!(classify("ssh://git@h/r").unwrap(), git_ref("ssh://git@h/r", None, None));
        assert!(classify("ftp://h/f").unwrap_err().contains("unsupported URL scheme"));
    }

    #[test]
    fn refs_are_never_options() {
        let Source::Git(g) = classify("git://h/r#--upload-pack=touch /tmp/x").unwrap() else { panic!() };
        let dir = std::env::temp_dir().join(format!("berth-remote-test-{}", std::process::id()));
        let e = checkout(&g, &dir, false, None).unwrap_err();
        assert!(e.contains("starts with '-'"), "{e}");
        assert!(!dir.exists());
    }

    #[test]
    fn download_names() {
        assert_eq!(file_name("https://h/dir/f.tar.gz"), "f.tar.gz");
        assert_eq!(file_name("https://h/dir/f%20g?x=1#y"), "f g");
        assert_eq!(file_name("https://h/dir/"), "dir");
        assert_eq!(file_name("https://h"), "__unnamed__");
        assert_eq!(file_name("https://h/"), "__unnamed__");
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"), Some(1_700_000_000));
        assert_eq!(parse_http_date("garbage"), None);
    }
}
