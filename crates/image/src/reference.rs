//! Image references, parsed and normalised exactly as Docker does (`distribution/reference`'s
//! `ParseNormalizedNamed` followed by `TagNameOnly`), with a hand-written parser.
//!
//! Grammar (from distribution/reference):
//!
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain "/"] path-component ["/" path-component]*
//! domain         := host [":" port]          host := domain-name | "[" ipv6 "]"
//! domain-name    := label ["." label]*       label := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component := [a-z0-9]+ (separator [a-z0-9]+)*      separator := "." | "_" | "__" | "-"+
//! tag            := [\w][\w.-]{0,127}
//! ```
//!
//! Normalisation: the first `/`-separated component is a domain only if it contains `.` or `:`,
//! is `localhost`, or has an uppercase letter (newer Docker); otherwise the domain is `docker.io`.
//! `index.docker.io` becomes `docker.io`; a single-component path on `docker.io` gets `library/`.
//! A reference with neither tag nor digest gets the tag `latest`; a digest keeps any tag given.
//!
//! Invariant: a [`Reference`] value is always normalised and valid, so its [`Display`](fmt::Display)
//! form parses back to an equal value.
//!
//! Deliberate difference: when the first component contains `.` or `:` but is not a valid domain
//! (`a_b.com/x`), Docker silently produces a reference with an empty domain that it cannot pull;
//! we refuse it with "invalid domain".

use std::fmt;
use std::str::FromStr;

use crate::digest::{is_lower_hex, Digest};
use crate::error::{quoted, Error, ErrorKind, Result};

/// The registry used when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(why: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidReference, format!("invalid reference format: {why}"))
}

impl Reference {
    /// Parse and normalise a reference the way `docker pull` does.
    pub fn parse(s: &str) -> Result<Reference> {
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        if s.len() == 64 && is_lower_hex(s) {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!("invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"),
            ));
        }
        let (domain, remainder) = split_docker_domain(s);

        let (name_tag, digest) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_tag.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t)),
            _ => (name_tag, None),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!("repository name ({path}) must be lowercase")));
        }
        if !valid_domain(domain) {
            return Err(invalid(format!("invalid domain {}", quoted(domain))));
        }
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(invalid(format!(
                    "invalid repository path component {} in {}",
                    quoted(component),
                    quoted(s)
                )));
            }
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(format!("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")));
        }
        if let Some(t) = tag {
            validate_tag(t)?;
        }
        let digest = digest.map(|d| Digest::parse(d).map_err(|e| invalid(e.message()))).transpose()?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { domain: domain.to_string(), path: path.to_string(), tag, digest })
    }

    /// The registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/alpine`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, e.g. `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True for Docker Hub references.
    pub fn is_docker_hub(&self) -> bool {
        self.domain == DEFAULT_DOMAIN
    }

    /// The short repository name Docker shows: `alpine`, `user/repo`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form Docker shows: `alpine:latest`, `user/repo:tag`, `x@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        validate_tag(tag)?;
        Ok(Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }

    /// The same repository pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { tag: None, digest: Some(digest), ..self.clone() }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

/// Docker's `splitDockerDomain`: decide whether the first component is a registry.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN;
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        return (domain, format!("{OFFICIAL_PREFIX}{remainder}"));
    }
    (domain, remainder.to_string())
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else { return false };
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => h.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }),
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        if !(sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&s| s == b'-')) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(t: &str) -> Result<()> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("invalid tag {} (want [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})", quoted(t))))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}
