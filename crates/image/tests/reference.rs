//! Reference normalisation against Docker's documented behaviour (distribution/reference's
//! `ParseNormalizedNamed` + `TagNameOnly`, its normalize_test.go and reference_test.go cases).

use berth_image::{ErrorKind, Reference};

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// (input, normalised, familiar)
fn valid_cases() -> Vec<(String, String, String)> {
    let d = format!("sha256:{HEX}");
    let t128 = format!("a{}", "b".repeat(127));
    let v = |i: &str, n: &str, f: &str| (i.to_string(), n.to_string(), f.to_string());
    vec![
        v("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        v("alpine:3.19", "docker.io/library/alpine:3.19", "alpine:3.19"),
        v("library/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        v("docker.io/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        v("docker.io/library/alpine:edge", "docker.io/library/alpine:edge", "alpine:edge"),
        v("index.docker.io/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        v("index.docker.io/user/repo", "docker.io/user/repo:latest", "user/repo:latest"),
        v("user/repo", "docker.io/user/repo:latest", "user/repo:latest"),
        v("user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag"),
        v("docker.io/library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
        v("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        v("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
        // No slash: "localhost:5000" is a repository "localhost" with tag "5000".
        v("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
        v("registry:5000/a/b:tag", "registry:5000/a/b:tag", "registry:5000/a/b:tag"),
        // No '.', ':' or "localhost": the first component is a Hub namespace, not a registry.
        v("registry/a", "docker.io/registry/a:latest", "registry/a:latest"),
        v("example.com/debian", "example.com/debian:latest", "example.com/debian:latest"),
        v(
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/library/debian:latest",
            "127.0.0.1:5000/library/debian:latest",
        ),
        v("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
        v("[2001:db8::1]/x:v1", "[2001:db8::1]/x:v1", "[2001:db8::1]/x:v1"),
        // Newer Docker treats an uppercase first component as a domain.
        v("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
        (format!("x@{d}"), format!("docker.io/library/x@{d}"), format!("x@{d}")),
        (format!("x:tag@{d}"), format!("docker.io/library/x:tag@{d}"), format!("x:tag@{d}")),
        (format!("ghcr.io/o/r@{d}"), format!("ghcr.io/o/r@{d}"), format!("ghcr.io/o/r@{d}")),
        v("a__b/c-d--e/f.g_h:Tag_1.0-rc", "docker.io/a__b/c-d--e/f.g_h:Tag_1.0-rc", "a__b/c-d--e/f.g_h:Tag_1.0-rc"),
        v("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", "foo_bar.com:8080"),
        v("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", "foo/foo_bar.com:8080"),
        v("alpine:_x", "docker.io/library/alpine:_x", "alpine:_x"),
        (format!("alpine:{t128}"), format!("docker.io/library/alpine:{t128}"), format!("alpine:{t128}")),
        v(
            "my-registry.example.com:443/team/app:v2",
            "my-registry.example.com:443/team/app:v2",
            "my-registry.example.com:443/team/app:v2",
        ),
    ]
}

/// (input, a fragment the error message must contain)
fn invalid_cases() -> Vec<(String, String)> {
    let v = |i: &str, e: &str| (i.to_string(), e.to_string());
    vec![
        v("", "invalid reference format: empty reference"),
        v("Alpine", "invalid reference format: repository name (library/Alpine) must be lowercase"),
        v("user/Repo", "repository name (user/Repo) must be lowercase"),
        v("docker.io/Library/alpine", "must be lowercase"),
        v(HEX, "cannot specify 64-byte hexadecimal strings"),
        v("alpine:", "invalid tag \"\""),
        v(":tag", "invalid repository path component \"\""),
        v("-alpine", "invalid repository path component \"-alpine\""),
        v("alpine-", "invalid repository path component"),
        v("a..b", "invalid repository path component"),
        v("a___b", "invalid repository path component"),
        v("a._b", "invalid repository path component"),
        v("a//b", "invalid repository path component"),
        v("https://github.com/docker/docker", "invalid domain \"https:\""),
        v("alpine:-tag", "invalid tag \"-tag\""),
        (format!("alpine:{}", "a".repeat(129)), "invalid tag".to_string()),
        v("alpine@sha256:abc", "sha256 needs 64 hex characters, got 3"),
        (format!("alpine@sha512:{HEX}{HEX}"), "unsupported digest algorithm sha512".to_string()),
        v("alpine@md5:abc", "unsupported digest algorithm \"md5\""),
        (format!("alpine@sha256:{}", HEX.to_uppercase()), "hex must be lowercase".to_string()),
        v("alpine@", "invalid digest \"\""),
        v("a_b.com/x", "invalid domain \"a_b.com\""),
        v("registry:abc/x", "invalid domain \"registry:abc\""),
        v("[::1/x", "invalid domain"),
        (format!("example.com/{}", "a".repeat(250)), "must not be more than 255 characters".to_string()),
        v("alpine:tag:extra", "invalid repository path component"),
        v("a b", "invalid repository path component"),
    ]
}

#[test]
fn normalises_like_docker() {
    let cases = valid_cases();
    assert!(cases.len() >= 25);
    for (input, want, familiar) in cases {
        let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.to_string(), want, "normalised form of {input:?}");
        assert_eq!(r.familiar(), familiar, "familiar form of {input:?}");
        // Both forms parse back to the same reference.
        assert_eq!(Reference::parse(&want).unwrap(), r, "{want:?} reparsed");
        assert_eq!(Reference::parse(&familiar).unwrap(), r, "{familiar:?} reparsed");
        assert_eq!(input.parse::<Reference>().unwrap(), r);
    }
}

#[test]
fn refuses_like_docker() {
    for (input, fragment) in invalid_cases() {
        match Reference::parse(&input) {
            Ok(r) => panic!("{input:?} parsed as {r}"),
            Err(e) => {
                assert!(e.to_string().contains(&fragment), "{input:?}: {e:?} does not contain {fragment:?}");
                assert!(!e.to_string().contains('\n'), "one-line error");
                assert_eq!(e.kind(), ErrorKind::InvalidReference, "{input:?}");
            }
        }
    }
}

#[test]
fn parts() {
    let r = Reference::parse(&format!("localhost:5000/a/b:v1@sha256:{HEX}")).unwrap();
    assert_eq!(r.domain(), "localhost:5000");
    assert_eq!(r.path(), "a/b");
    assert_eq!(r.name(), "localhost:5000/a/b");
    assert_eq!(r.tag(), Some("v1"));
    assert_eq!(r.digest().unwrap().hex(), HEX);
    assert!(!r.is_docker_hub());
    assert_eq!(r.familiar_name(), "localhost:5000/a/b");

    let a = Reference::parse("alpine").unwrap();
    assert!(a.is_docker_hub());
    assert_eq!(a.tag(), Some("latest"));
    assert_eq!(a.digest(), None);
    assert_eq!(a.familiar_name(), "alpine");
}

#[test]
fn with_tag_and_digest() {
    let a = Reference::parse("user/app:1").unwrap();
    assert_eq!(a.with_tag("2").unwrap().to_string(), "docker.io/user/app:2");
    assert!(a.with_tag("-bad").is_err());
    let d = berth_image::Digest::parse(&format!("sha256:{HEX}")).unwrap();
    assert_eq!(a.with_digest(d).familiar(), format!("user/app@sha256:{HEX}"));
}

#[test]
fn serde_round_trip() {
    let r = Reference::parse("alpine").unwrap();
    let j = serde_json::to_string(&r).unwrap();
    assert_eq!(j, "\"docker.io/library/alpine:latest\"");
    assert_eq!(serde_json::from_str::<Reference>(&j).unwrap(), r);
    assert!(serde_json::from_str::<Reference>("\"Bad\"").is_err());
}
