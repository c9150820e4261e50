//! `.dockerignore` reading and matching.

use std::path::Path;

use berth_dockerfile::ignore::{clean_path, ignore_file_candidates, read_ignore_file, PatternMatcher};

#[test]
fn reading() {
    let text = "\u{feff}# comment\n  \n /abs/path/ \n./rel\n!  keep/me \n a//b/../c\n #not a comment\n/\n!\n\r\n";
    assert_eq!(read_ignore_file(text), ["abs/path", "rel", "!keep/me", "a/c", "#not a comment", "/", "!"]);
}

#[test]
fn cleaning() {
    let cases = [
        ("", "."),
        ("./", "."),
        ("a/./b//c/", "a/b/c"),
        ("a/../../b", "../b"),
        ("/../a", "/a"),
        ("/", "/"),
        ("..", ".."),
    ];
    for (p, want) in cases {
        assert_eq!(clean_path(p), want, "{p:?}");
    }
}

/// (patterns, path, excluded)
const MATCHES: &[(&[&str], &str, bool)] = &[
    (&["foo"], "foo", true),
    (&["foo"], "foo/bar/baz", true),
    (&["foo"], "foobar", false),
    (&["foo"], "x/foo", false),
    (&["*.md"], "README.md", true),
    (&["*.md"], "docs/README.md", false),
    (&["*/*.md"], "docs/README.md", true),
    (&["**/*.md"], "a/b/c.md", true),
    (&["**/*.md"], "c.md", true),
    (&["**/node_modules"], "node_modules/x", true),
    (&["**/node_modules"], "a/b/node_modules/x", true),
    (&["**.log"], "a/b.log", true),
    (&["a/**/b"], "a/b", true),
    (&["a/**/b"], "a/x/y/b", true),
    (&["a/**/b"], "a/x/yb", false),
    (&["foo/**"], "foo/x", true),
    (&["foo/**"], "foo", false),
    (&["f?o"], "fxo", true),
    (&["f?o"], "f/o", false),
    (&["[a-c]at"], "bat", true),
    (&["[a-c]at"], "dat", false),
    (&["[^a-c]at"], "dat", true),
    (&["[^a-c]at"], "cat", false),
    (&["\\*star"], "*star", true),
    (&["\\*star"], "xstar", false),
    (&["a.b"], "axb", false),
    (&["/abs"], "abs", true),
    (&["./rel"], "rel/x", true),
    (&["*"], "anything/at/all", true),
    (&["*", "!keep"], "keep", false),
    (&["*", "!keep"], "keep/inner", false),
    (&["*", "!keep"], "other", true),
    (&["dir", "!dir/keep.txt"], "dir/keep.txt", false),
    (&["dir", "!dir/keep.txt"], "dir/other.txt", true),
    (&["dir", "!dir/keep.txt", "dir/keep.txt"], "dir/keep.txt", true),
    (&["!x", "x"], "x", true),
    (&["x", "!x", "x"], "x", true),
    (&["*.go", "!main.go"], "main.go", false),
    (&["docs", "!docs/*.md", "docs/secret.md"], "docs/public.md", false),
    (&["docs", "!docs/*.md", "docs/secret.md"], "docs/secret.md", true),
];

#[test]
fn matching_table() {
    for (patterns, path, excluded) in MATCHES {
        let m = PatternMatcher::from_ignore_file(&patterns.join("\n")).unwrap();
        assert_eq!(m.matches(path), *excluded, "{patterns:?} on {path:?}");
    }
}

#[test]
fn leading_slash_is_only_removed_when_reading_the_file() {
    assert!(!PatternMatcher::new(&["/abs"]).unwrap().matches("abs"));
    assert!(PatternMatcher::from_ignore_file("/abs").unwrap().matches("abs"));
}

#[test]
fn context_root_is_never_excluded() {
    let m = PatternMatcher::new(&["*", "."]).unwrap();
    assert!(!m.matches("."));
    assert!(!m.matches(""));
}

#[test]
fn invalid_patterns() {
    for (p, want) in [
        ("[", "syntax error in pattern"),
        ("a[b", "syntax error in pattern"),
        ("[]", "syntax error in pattern"),
        ("x\\", "syntax error in pattern"),
        ("!", "illegal exclusion pattern: \"!\""),
    ] {
        assert_eq!(PatternMatcher::new(&[p]).unwrap_err().to_string(), want, "{p:?}");
    }
}

#[test]
fn walking_excluded_dirs() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["dir"], "dir", false),
        (&["dir", "!dir/keep"], "dir", true),
        (&["dir", "!dir/keep"], "other", false),
        (&["dir", "!dir"], "dir", true),
        (&["a", "!a/b/c"], "a/b", true),
        (&["*", "!src/**"], "src", true),
        (&["*", "!src/**"], "docs", false),
        (&["*", "!**/*.md"], "anything", true),
    ];
    for (patterns, dir, walk) in cases {
        let m = PatternMatcher::new(patterns).unwrap();
        assert_eq!(m.must_walk_excluded_dir(dir), *walk, "{patterns:?} on {dir:?}");
    }
}

#[test]
fn from_ignore_file_text() {
    let m = PatternMatcher::from_ignore_file("# build output\nbin/\n*.o\n!important.o\n").unwrap();
    assert!(m.matches("bin/app") && m.matches("x.o") && !m.matches("important.o") && !m.matches("src/x.o"));
    assert!(m.has_exclusions());
    assert_eq!(m.patterns().iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["bin", "*.o", "important.o"]);
}

#[test]
fn ignore_file_choice() {
    let [specific, root] = ignore_file_candidates(Path::new("ctx/build/app.Dockerfile"), Path::new("ctx"));
    assert_eq!(specific, Path::new("ctx/build/app.Dockerfile.dockerignore"));
    assert_eq!(root, Path::new("ctx/.dockerignore"));

    let dir = std::env::temp_dir().join(format!("berth-dockerignore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dockerfile = dir.join("Dockerfile");
    std::fs::write(dir.join(".dockerignore"), "a\n").unwrap();
    assert_eq!(berth_dockerfile::ignore::find_ignore_file(&dockerfile, &dir), Some(dir.join(".dockerignore")));
    std::fs::write(dir.join("Dockerfile.dockerignore"), "b\n").unwrap();
    assert_eq!(
        berth_dockerfile::ignore::find_ignore_file(&dockerfile, &dir),
        Some(dir.join("Dockerfile.dockerignore"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
