//! Platforms (`os/arch[/variant]`) and their selection from an image index.

use crate::{Error, Result};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]` (`linux/arm64/v8`); `arch` alone means linux.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::new(format!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"));
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(v.to_string())),
            _ => return Err(bad()),
        };
        let (architecture, variant) = normalize_arch(arch, variant);
        Ok(Platform { os: os.to_ascii_lowercase(), architecture, variant })
    }

    /// The platform of this machine.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            other => other,
        };
        let (architecture, variant) = normalize_arch(arch, None);
        Platform { os: "linux".into(), architecture, variant }
    }

    /// Whether an index entry's platform satisfies this one. A missing variant on our side
    /// accepts any variant (arm64 defaults to v8 on both sides).
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        let (arch, variant) = normalize_arch(arch, variant.map(str::to_string));
        os == self.os
            && arch == self.architecture
            && match (&self.variant, variant) {
                (None, _) => true,
                (Some(want), Some(have)) => *want == have,
                (Some(_), None) => false,
            }
    }
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), Some(variant.unwrap_or_else(|| "v8".into()))),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "386" => ("386".into(), variant),
        other => (other.to_string(), variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", None));
        assert!(p.matches("linux", "aarch64", Some("v8")));
        assert!(!p.matches("linux", "amd64", None));
        let a = Platform::parse("linux/amd64").unwrap();
        assert!(a.matches("linux", "amd64", None));
        assert!(!a.matches("windows", "amd64", None));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert!(Platform::parse("linux//x").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
