//! Content digests (`sha256:<64 lowercase hex>`) and streaming hashers.
//!
//! Invariant: a [`Digest`] value is always a valid sha256 digest in canonical form, so it can be
//! used directly as a file name (`blobs/sha256/<hex>`) and compared as a string. Other algorithms
//! are refused when parsed: `sha512` with [`ErrorKind::UnsupportedDigest`] once its form is checked
//! (registries may send it; we say clearly that we do not support it), anything else likewise if
//! it follows the OCI algorithm grammar, or [`ErrorKind::InvalidDigest`] if it does not.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use crate::error::{quoted, Error, ErrorKind, Result};

const SHA256_HEX_LEN: usize = 64;
const SHA512_HEX_LEN: usize = 128;

/// A sha256 content digest, displayed and serialised as `sha256:<hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parse `algorithm:hex`. Only canonical sha256 (lowercase hex) is accepted.
    pub fn parse(s: &str) -> Result<Digest> {
        let invalid =
            |why: String| Error::new(ErrorKind::InvalidDigest, format!("invalid digest {}: {why}", quoted(s)));
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(invalid("expected <algorithm>:<hex>".into()));
        };
        if !valid_algorithm(algorithm) {
            return Err(invalid(format!("malformed algorithm {}", quoted(algorithm))));
        }
        let want = match algorithm {
            "sha256" => SHA256_HEX_LEN,
            "sha512" => SHA512_HEX_LEN,
            _ => {
                if !valid_encoded(hex) {
                    return Err(invalid("malformed encoded part".into()));
                }
                return Err(Error::new(
                    ErrorKind::UnsupportedDigest,
                    format!(
                        "unsupported digest algorithm {} in {}: only sha256 is supported",
                        quoted(algorithm),
                        quoted(s)
                    ),
                ));
            }
        };
        if hex.len() != want {
            return Err(invalid(format!("{algorithm} needs {want} hex characters, got {}", hex.len())));
        }
        if !is_lower_hex(hex) {
            return Err(invalid(format!("{algorithm} hex must be lowercase 0-9a-f")));
        }
        if algorithm == "sha512" {
            return Err(Error::new(
                ErrorKind::UnsupportedDigest,
                format!("unsupported digest algorithm sha512 in {}: only sha256 is supported", quoted(s)),
            ));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of a finished sha256 hash.
    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(7 + SHA256_HEX_LEN);
        s.push_str("sha256:");
        for b in bytes {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
        Digest(s)
    }

    /// Hash a byte slice.
    pub fn of(data: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(data);
        h.finish()
    }

    /// Build from a bare 64-character lowercase hex string (as found in `blobs/sha256/<hex>`).
    pub fn from_hex(hex: &str) -> Result<Digest> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 lowercase hex characters.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The first 12 hex characters, as in Docker's `IMAGE ID` column.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*` (OCI image-spec descriptor grammar).
fn valid_algorithm(a: &str) -> bool {
    !a.is_empty()
        && a.split(['+', '.', '_', '-'])
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `[a-zA-Z0-9=_-]+`.
fn valid_encoded(e: &str) -> bool {
    !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A streaming sha256 that also counts bytes. Feed it with [`Hasher::update`] or as an [`io::Write`].
///
/// The hashing is ring's (assembly with SHA extensions or AVX2 where the CPU has them): pulls
/// hash every layer twice (compressed and uncompressed), and the portable implementation was
/// the largest single cost of a pull.
#[derive(Clone)]
pub struct Hasher {
    sha: ring::digest::Context,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher { sha: ring::digest::Context::new(&ring::digest::SHA256), len: 0 }
    }
}

fn to_array(d: ring::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything hashed so far; the hasher can keep going.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256(to_array(self.sha.clone().finish()))
    }

    pub fn finish(self) -> Digest {
        Digest::from_sha256(to_array(self.sha.finish()))
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> HashReader<R> {
        HashReader { inner, hasher: Hasher::new() }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// The digest of the bytes read so far.
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    /// Give back the reader and the hasher.
    pub fn into_parts(self) -> (R, Hasher) {
        (self.inner, self.hasher)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
