//! Docker's default seccomp profile (`profiles/docker-default.json`, moby's
//! `profiles/seccomp/default.json`), resolved the way Docker resolves it for
//! an x86_64 host.

use std::ffi::CStr;
use std::sync::OnceLock;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};
use serde::Deserialize;

/// The profile, verbatim from Docker.
static DOCKER_DEFAULT: &str = include_str!("../profiles/docker-default.json");

/// Docker compares `includes.arches`/`excludes.arches` with Go's `GOARCH`.
const GO_ARCH: &str = "amd64";
/// The `archMap` entry whose architectures the resolved profile lists.
const NATIVE_ARCH: &str = "SCMP_ARCH_X86_64";

/// Docker's default capability set (moby `oci/caps/defaults.go`): 14 capabilities.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's default seccomp profile for a container whose bounding set holds
/// `capabilities` (names like `"CAP_SYS_ADMIN"`; the `CAP_` prefix and case
/// are optional).
///
/// Entries are selected as Docker does: `includes.caps` must all be held,
/// `excludes.caps` must all be absent, `arches` are matched against `amd64`,
/// `minKernel` against the running kernel (if its version cannot be read,
/// version-gated entries are left out). The result lists
/// `SCMP_ARCH_X86_64`, `SCMP_ARCH_X86` and `SCMP_ARCH_X32`.
///
/// The JSON is parsed once per process; later calls only filter by
/// capabilities and clone the selected entries.
pub fn default_profile(capabilities: &[String]) -> LinuxSeccomp {
    let base = resolved();
    let syscalls = base
        .entries
        .iter()
        .filter(|e| e.includes.iter().all(|c| has_cap(capabilities, c)))
        .filter(|e| !e.excludes.iter().any(|c| has_cap(capabilities, c)))
        .map(|e| e.syscall.clone())
        .collect();
    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(base.default_action)
        .set_default_errno_ret(base.default_errno_ret)
        .set_architectures(Some(base.architectures.clone()))
        .set_syscalls(Some(syscalls));
    profile
}

/// The profile with everything that does not depend on capabilities resolved.
struct Resolved {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    architectures: Vec<Arch>,
    entries: Vec<Entry>,
}

/// A syscall entry that applies to this arch and kernel, pending its
/// capability conditions.
struct Entry {
    syscall: LinuxSyscall,
    includes: Vec<String>,
    excludes: Vec<String>,
}

fn resolved() -> &'static Resolved {
    static RESOLVED: OnceLock<Resolved> = OnceLock::new();
    RESOLVED.get_or_init(|| match serde_json::from_str::<Profile>(DOCKER_DEFAULT) {
        Ok(profile) => resolve(profile, kernel_version()),
        // The embedded JSON is covered by tests; should it ever fail to parse,
        // fail closed: every syscall returns EPERM.
        Err(_) => Resolved {
            default_action: LinuxSeccompAction::ScmpActErrno,
            default_errno_ret: Some(1),
            architectures: native_arches(),
            entries: Vec::new(),
        },
    })
}

fn resolve(profile: Profile, kernel: Option<(u32, u32)>) -> Resolved {
    let architectures = profile
        .arch_map
        .iter()
        .flatten()
        .find(|m| m.architecture == NATIVE_ARCH)
        .map(|m| {
            std::iter::once(&m.architecture)
                .chain(m.sub_architectures.iter().flatten())
                .filter_map(|a| a.parse().ok())
                .collect()
        })
        .unwrap_or_else(native_arches);
    // `Some(true)` when the kernel is at least `min`; `None` when unknown.
    let kernel_at_least = |min: &str| Some(kernel? >= parse_version(min)?);
    let mut entries = Vec::new();
    for e in profile.syscalls.into_iter().flatten() {
        let (inc, exc) = (e.includes.unwrap_or_default(), e.excludes.unwrap_or_default());
        // An empty `arches` list means any arch; an unknown kernel version
        // satisfies no `minKernel`.
        let excluded = exc.arches.iter().flatten().any(|a| a == GO_ARCH)
            || exc.min_kernel.as_deref().is_some_and(|v| kernel_at_least(v) == Some(true));
        let arch_ok = match &inc.arches {
            Some(arches) if !arches.is_empty() => arches.iter().any(|a| a == GO_ARCH),
            _ => true,
        };
        let kernel_ok = match inc.min_kernel.as_deref() {
            Some(v) => kernel_at_least(v) == Some(true),
            None => true,
        };
        let included = arch_ok && kernel_ok;
        if excluded || !included {
            continue;
        }
        let mut names = e.names;
        names.extend(e.name);
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(names).set_action(e.action).set_errno_ret(e.errno_ret).set_args(e.args);
        entries.push(Entry { syscall, includes: inc.caps.unwrap_or_default(), excludes: exc.caps.unwrap_or_default() });
    }
    Resolved {
        default_action: profile.default_action,
        default_errno_ret: profile.default_errno_ret,
        architectures,
        entries,
    }
}

fn native_arches() -> Vec<Arch> {
    vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
}

/// Whether `caps` holds `want`, ignoring case and an optional `CAP_` prefix.
fn has_cap(caps: &[String], want: &str) -> bool {
    fn base(name: &str) -> &str {
        match name.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("CAP_") => &name[4..],
            _ => name,
        }
    }
    let want = base(want);
    caps.iter().any(|c| base(c).eq_ignore_ascii_case(want))
}

/// `(major, minor)` of a version like `"4.8"` or `"6.18.44-generic"`.
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's `(major, minor)`, read once.
fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: `utsname` is plain arrays of `c_char`, for which all zeroes is valid.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: uname(2) NUL-terminates `release`; the zeroed tail guarantees a
    // terminator within the array in any case.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    parse_version(release.to_str().ok()?)
}

/// Docker's profile format (`types.Seccomp` in moby's `api/types`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn names_of(p: &LinuxSeccomp) -> Vec<&str> {
        p.syscalls().iter().flatten().flat_map(|s| s.names().iter().map(String::as_str)).collect()
    }

    #[test]
    fn embedded_json_parses() {
        let p: Profile = serde_json::from_str(DOCKER_DEFAULT).expect("embedded profile");
        assert_eq!(p.default_action, LinuxSeccompAction::ScmpActErrno);
        assert!(p.syscalls.is_some_and(|s| s.len() > 20));
    }

    #[test]
    fn resolves_arches_and_caps() {
        let p = default_profile(&caps(&["CAP_CHOWN"]));
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(p.architectures().as_deref(), Some(native_arches().as_slice()));
        let names = names_of(&p);
        assert!(names.contains(&"arch_prctl"), "amd64 include");
        assert!(!names.contains(&"s390_pci_mmio_read"), "s390 only");
        assert!(!names.contains(&"mount"), "needs CAP_SYS_ADMIN");

        let p = default_profile(&caps(&["sys_admin"]));
        assert!(names_of(&p).contains(&"mount"));
    }

    #[test]
    fn min_kernel_gate() {
        let profile = |k| resolve(serde_json::from_str(DOCKER_DEFAULT).unwrap(), k);
        let has_ptrace = |r: &Resolved| {
            r.entries.iter().any(|e| e.includes.is_empty() && e.syscall.names().iter().any(|n| n == "ptrace"))
        };
        assert!(has_ptrace(&profile(Some((4, 8)))));
        assert!(has_ptrace(&profile(Some((6, 1)))));
        assert!(!has_ptrace(&profile(Some((4, 7)))));
        assert!(!has_ptrace(&profile(Some((3, 19)))));
        assert!(!has_ptrace(&profile(None)));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("4.8"), Some((4, 8)));
        assert_eq!(parse_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_version("garbage"), None);
        assert!(kernel_version().is_some());
    }
}
