//! `.dockerignore`: reading the file and matching context paths, mirroring
//! `moby/patternmatcher` (`ignorefile.ReadAll`, `New`, `MatchesOrParentMatches`) and the
//! directory-skipping rule of BuildKit's context sender (`tonistiigi/fsutil`).
//!
//! # The file ([`read_ignore_file`])
//!
//! A UTF-8 BOM is dropped; lines starting with `#` (in the first column) are comments;
//! other lines are trimmed, blank ones skipped; `!` marks an exception; each pattern is
//! `filepath.Clean`ed (`./a//b/` → `a/b`, `a/../b` → `b`) and a leading `/` removed.
//!
//! # Matching ([`PatternMatcher`])
//!
//! Paths are relative to the context, `/`-separated. `*` matches any run of characters but
//! `/`, `?` one character but `/`, `[a-z]`/`[^a-z]` a class, `\` escapes the next character,
//! `**` any number of directories (`**/x` also matches `x`; a trailing `**` anything). The
//! last pattern that matches decides (an exception un-excludes). A path is also excluded
//! when a pattern matches one of its parent directories (`build` excludes `build/a/b`).
//!
//! Docker's shortcuts are kept, quirks included: a pattern starting with `**` and otherwise
//! free of wildcards is a plain suffix test (`**.log` matches `a/b.log`), one ending in
//! `**` and otherwise free of wildcards a plain prefix test (`foo/**` matches `foo/x` but
//! not `foo`).
//!
//! Not supported: POSIX classes such as `[[:alpha:]]` (Go's regexp engine reads them inside
//! brackets; here they are plain characters) and wildcards inside brackets (`[*]` is the
//! character `*` here; Go's translation mangles it).

use std::path::{Path, PathBuf};

/// An invalid pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    /// The offending pattern as given.
    pub pattern: String,
    /// Docker's wording (`syntax error in pattern`, `illegal exclusion pattern: "!"`).
    pub message: String,
}

/// Reads a `.dockerignore` file's text into patterns (`ignorefile.ReadAll`).
pub fn read_ignore_file(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut patterns = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        patterns.push(if invert { format!("!{cleaned}") } else { cleaned });
    }
    patterns
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The ignore files that apply to a build, in order of precedence: `<Dockerfile>.dockerignore`
/// next to the Dockerfile, then `.dockerignore` at the root of the context (BuildKit's
/// `dockerui`). Only the first that exists is used.
pub fn ignore_file_candidates(dockerfile: &Path, context: &Path) -> [PathBuf; 2] {
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(".dockerignore");
    [PathBuf::from(specific), context.join(".dockerignore")]
}

/// The ignore file to use, if any (see [`ignore_file_candidates`]).
pub fn find_ignore_file(dockerfile: &Path, context: &Path) -> Option<PathBuf> {
    ignore_file_candidates(dockerfile, context).into_iter().find(|p| p.is_file())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: a run without `/`.
    Star,
    /// `**/` (or `**` not at the end): `(.*/)?`.
    Dirs,
    /// A trailing `**` after other wildcards: `.*`.
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchType,
    toks: Vec<Tok>,
}

impl Pattern {
    /// The cleaned pattern (without `!`).
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is an exception (`!pattern`).
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Whether the pattern matches `path` itself (parents not considered).
    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchType::Regexp => {
                let chars: Vec<char> = path.chars().collect();
                let mut failed = std::collections::HashSet::new();
                full_match(&self.toks, 0, &chars, 0, &mut failed)
            }
        }
    }
}

/// A list of patterns (`patternmatcher.PatternMatcher`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compiles patterns (as from [`read_ignore_file`], or `COPY --exclude`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut matcher = PatternMatcher::default();
        for given in patterns {
            let p = given.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean_path(p);
            let (exclusion, p) = match p.strip_prefix('!') {
                Some("") => {
                    return Err(PatternError { pattern: p.clone(), message: "illegal exclusion pattern: \"!\"".into() })
                }
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            if !valid_glob(&p) {
                return Err(PatternError { pattern: given.as_ref().into(), message: "syntax error in pattern".into() });
            }
            matcher.exclusions |= exclusion;
            matcher.patterns.push(compile(p, exclusion));
        }
        Ok(matcher)
    }

    /// Reads and compiles a `.dockerignore` text.
    pub fn from_ignore_file(text: &str) -> Result<Self, PatternError> {
        Self::new(&read_ignore_file(text))
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is an exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Whether `path` (relative to the context) is excluded: the last pattern matching it
    /// or one of its parent directories decides (`MatchesOrParentMatches`). The context
    /// root itself is never excluded.
    pub fn matches(&self, path: &str) -> bool {
        let file = clean_path(path.trim_start_matches('/'));
        if file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(&file) || (1..=parents.len()).any(|n| pattern.matches(&parents[..n].join("/")));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether an excluded directory must still be walked because an exception might
    /// re-include something inside it (BuildKit's context sender): always when some
    /// exception has wildcards before its trailing `/**` or `/*`, otherwise when an
    /// exception lies under the directory (`!dir/keep` for `dir`).
    pub fn must_walk_excluded_dir(&self, dir: &str) -> bool {
        if !self.exclusions {
            return false;
        }
        let exceptions = self.patterns.iter().filter(|p| p.exclusion);
        let wildcard = |p: &Pattern| {
            let s = p.cleaned.strip_suffix("/**").unwrap_or(&p.cleaned);
            let s = s.strip_suffix("/*").unwrap_or(s);
            s.contains(['*', '[', ']', '?', '^', '\\'])
        };
        if exceptions.clone().any(wildcard) {
            return true;
        }
        let dir_slash = format!("{}/", clean_path(dir.trim_start_matches('/')));
        exceptions.into_iter().any(|p| format!("{}/", p.cleaned).starts_with(&dir_slash))
    }
}

/// Whether Go's `filepath.Match` accepts the pattern.
fn valid_glob(p: &str) -> bool {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return false;
                }
                i += 2;
            }
            '[' => match parse_class(&chars, i + 1, true) {
                Some((_, next)) => i = next,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// Parses a bracket expression starting after `[`; returns the token and the index after
/// `]`. `strict` applies `filepath.Match`'s rule that a class must not end the pattern.
fn parse_class(chars: &[char], mut i: usize, strict: bool) -> Option<(Tok, usize)> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i, strict)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            (hi, i) = class_char(chars, i + 1, strict)?;
        }
        ranges.push((lo, hi));
    }
}

/// `getEsc`: one (possibly escaped) class character.
fn class_char(chars: &[char], mut i: usize, strict: bool) -> Option<(char, usize)> {
    match chars.get(i)? {
        '-' | ']' => return None,
        '\\' => i += 1,
        _ => {}
    }
    let c = *chars.get(i)?;
    if strict && i + 1 >= chars.len() {
        return None;
    }
    Some((c, i + 1))
}

fn compile(cleaned: String, exclusion: bool) -> Pattern {
    let chars: Vec<char> = cleaned.chars().collect();
    let mut kind = MatchType::Exact;
    let mut toks = Vec::new();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == MatchType::Exact {
                        kind = MatchType::Prefix;
                    } else {
                        toks.push(Tok::Any);
                        kind = MatchType::Regexp;
                    }
                } else {
                    toks.push(Tok::Dirs);
                    kind = MatchType::Regexp;
                }
                if first {
                    kind = MatchType::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                kind = MatchType::Regexp;
            }
            '?' => {
                toks.push(Tok::One);
                kind = MatchType::Regexp;
            }
            '\\' => match chars.get(i) {
                Some(&e) => {
                    toks.push(Tok::Lit(e));
                    i += 1;
                    kind = MatchType::Regexp;
                }
                None => toks.push(Tok::Lit('\\')),
            },
            '[' => {
                kind = MatchType::Regexp;
                match parse_class(&chars, i, false) {
                    Some((tok, next)) => {
                        toks.push(tok);
                        i = next;
                    }
                    None => toks.push(Tok::Lit('[')),
                }
            }
            ']' => {
                toks.push(Tok::Lit(']'));
                kind = MatchType::Regexp;
            }
            _ => toks.push(Tok::Lit(c)),
        }
        first = false;
    }
    Pattern { cleaned, exclusion, kind, toks }
}

/// Whether `toks[ti..]` matches all of `s[pos..]`; `failed` memoises dead ends.
fn full_match(
    toks: &[Tok],
    ti: usize,
    s: &[char],
    pos: usize,
    failed: &mut std::collections::HashSet<(usize, usize)>,
) -> bool {
    if failed.contains(&(ti, pos)) {
        return false;
    }
    let ok = match toks.get(ti) {
        None => pos == s.len(),
        Some(Tok::Lit(c)) => s.get(pos) == Some(c) && full_match(toks, ti + 1, s, pos + 1, failed),
        Some(Tok::One) => s.get(pos).is_some_and(|&c| c != '/') && full_match(toks, ti + 1, s, pos + 1, failed),
        Some(Tok::Class { negated, ranges }) => {
            s.get(pos).is_some_and(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                && full_match(toks, ti + 1, s, pos + 1, failed)
        }
        Some(Tok::Star) => {
            let run = s[pos..].iter().take_while(|&&c| c != '/').count();
            (pos..=pos + run).any(|end| full_match(toks, ti + 1, s, end, failed))
        }
        Some(Tok::Any) => {
            let run = s[pos..].iter().take_while(|&&c| c != '\n').count();
            (pos..=pos + run).any(|end| full_match(toks, ti + 1, s, end, failed))
        }
        Some(Tok::Dirs) => {
            full_match(toks, ti + 1, s, pos, failed)
                || (pos..s.len()).any(|end| {
                    s[end] == '/' && !s[pos..end].contains(&'\n') && full_match(toks, ti + 1, s, end + 1, failed)
                })
        }
    };
    if !ok {
        failed.insert((ti, pos));
    }
    ok
}
