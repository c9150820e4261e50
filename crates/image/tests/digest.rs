//! Digest parsing, refusal of other algorithms, and the streaming hashers.

use std::io::{Read, Write};

use berth_image::{Digest, ErrorKind, HashReader, Hasher};

const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn parses_canonical_sha256() {
    let d: Digest = EMPTY.parse().unwrap();
    assert_eq!(d.algorithm(), "sha256");
    assert_eq!(d.hex(), &EMPTY[7..]);
    assert_eq!(d.short(), "e3b0c44298fc");
    assert_eq!(d.to_string(), EMPTY);
    assert_eq!(Digest::of(b""), d);
    assert_eq!(Digest::from_hex(&EMPTY[7..]).unwrap(), d);
}

#[test]
fn refuses_bad_and_other_algorithms() {
    let cases: Vec<(String, ErrorKind, &str)> = vec![
        ("e3b0c442".into(), ErrorKind::InvalidDigest, "expected <algorithm>:<hex>"),
        ("sha256:abc".into(), ErrorKind::InvalidDigest, "sha256 needs 64 hex characters, got 3"),
        (EMPTY.to_uppercase().replace("SHA256", "sha256"), ErrorKind::InvalidDigest, "hex must be lowercase"),
        (format!("{EMPTY}0"), ErrorKind::InvalidDigest, "got 65"),
        (format!("sha512:{}", "ab".repeat(64)), ErrorKind::UnsupportedDigest, "unsupported digest algorithm sha512"),
        ("sha512:abc".into(), ErrorKind::InvalidDigest, "sha512 needs 128 hex characters"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e".into(), ErrorKind::UnsupportedDigest, "only sha256 is supported"),
        ("SHA256:abc".into(), ErrorKind::InvalidDigest, "malformed algorithm"),
        (":abc".into(), ErrorKind::InvalidDigest, "malformed algorithm"),
        ("sha256+b64u:".into(), ErrorKind::InvalidDigest, "malformed encoded part"),
        ("".into(), ErrorKind::InvalidDigest, "expected <algorithm>:<hex>"),
    ];
    for (input, kind, fragment) in cases {
        let e = Digest::parse(&input).unwrap_err();
        assert_eq!(e.kind(), kind, "{input:?}: {e}");
        assert!(e.to_string().contains(fragment), "{input:?}: {e}");
        assert!(e.to_string().starts_with("invalid digest") || e.to_string().starts_with("unsupported digest"));
    }
}

#[test]
fn long_input_is_shortened_in_errors() {
    let e = Digest::parse(&format!("sha256:{}", "a".repeat(10_000))).unwrap_err();
    assert!(e.to_string().len() < 300, "{e}");
}

#[test]
fn hasher_and_reader_agree() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut h = Hasher::new();
    for chunk in data.chunks(997) {
        h.write_all(chunk).unwrap();
    }
    assert_eq!(h.len(), data.len() as u64);
    assert_eq!(h.digest(), Digest::of(&data));
    let mut r = HashReader::new(&data[..]);
    let mut sink = Vec::new();
    r.read_to_end(&mut sink).unwrap();
    assert_eq!(r.len(), data.len() as u64);
    assert_eq!(r.digest(), h.clone().finish());
    assert_eq!(
        Digest::of(b"hello world").as_str(),
        "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
}

#[test]
fn serde() {
    let d: Digest = EMPTY.parse().unwrap();
    let j = serde_json::to_string(&d).unwrap();
    assert_eq!(j, format!("\"{EMPTY}\""));
    assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
    let e = serde_json::from_str::<Digest>("\"sha512:abc\"").unwrap_err();
    assert!(e.to_string().contains("sha512"), "{e}");
}
