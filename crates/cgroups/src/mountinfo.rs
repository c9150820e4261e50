//! Where the host mounts its cgroup hierarchies (`/proc/self/mountinfo`) and
//! where this process sits in them (`/proc/self/cgroup`).

use crate::{Error, Layout, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted ("/sys/fs/cgroup/memory").
    pub mount: PathBuf,
    /// The cgroup shown at the mount point ("/" unless in a cgroup namespace or a bind).
    pub root: PathBuf,
    /// v1 controllers ("name=systemd" for named hierarchies); empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

impl Hierarchy {
    /// Directory name under /sys/fs/cgroup; "" for a cgroup2 mount at /sys/fs/cgroup itself.
    pub fn name(&self) -> String {
        match self.mount.strip_prefix("/sys/fs/cgroup") {
            Ok(rest) => rest.to_string_lossy().into_owned(),
            Err(_) => self.mount.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        }
    }

    /// The key of this hierarchy in [`own_cgroups`].
    pub fn own_key(&self) -> String {
        if self.v2 {
            String::new()
        } else {
            self.controllers.first().cloned().unwrap_or_default()
        }
    }
}

/// Undo mountinfo's octal escapes ("\040" for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = b[i + 1..i + 4].iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text into the cgroup hierarchies it mounts. When a hierarchy
/// is mounted more than once, the first mount under /sys/fs/cgroup wins.
pub fn parse(text: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let fstype = post[0];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let mount = PathBuf::from(unescape(pre[4]));
        let root = PathBuf::from(unescape(pre[3]));
        let controllers: Vec<String> = if v2 {
            Vec::new()
        } else {
            post[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect()
        };
        if !v2 && controllers.is_empty() {
            continue;
        }
        let h = Hierarchy { mount, root, controllers, v2 };
        let dup = out.iter().position(|o| o.v2 == h.v2 && o.controllers == h.controllers);
        match dup {
            Some(i) => {
                let under = |p: &Path| p.starts_with("/sys/fs/cgroup");
                if !under(&out[i].mount) && under(&h.mount) {
                    out[i] = h;
                }
            }
            None => out.push(h),
        }
    }
    out
}

/// The hierarchies mounted on this host.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    let h = parse(&text);
    if h.is_empty() {
        return Err(Error::Invalid("no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)".into()));
    }
    Ok(h)
}

pub fn layout_of(h: &[Hierarchy]) -> Layout {
    let v1 = h.iter().any(|x| !x.v2 && x.controllers.iter().any(|c| !c.starts_with("name=")));
    let v2 = h.iter().any(|x| x.v2);
    match (v1, v2) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::V1,
        _ => Layout::V2,
    }
}

/// This process's cgroup in each hierarchy, keyed by controller ("" = cgroup2).
pub fn own_cgroups() -> Result<BTreeMap<String, PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| Error::io("read /proc/self/cgroup", e))?;
    Ok(parse_own(&text))
}

pub fn parse_own(text: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_), Some(ctls), Some(path)) = (it.next(), it.next(), it.next()) else { continue };
        if ctls.is_empty() {
            out.insert(String::new(), PathBuf::from(path));
        } else {
            for c in ctls.split(',') {
                out.insert(c.to_string(), PathBuf::from(path));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_and_escapes() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
50 31 0:39 /x /mnt/my\\040dir rw - cgroup cgroup rw,pids\n\
51 31 0:40 / /proc rw - proc proc rw\n";
        let h = parse(mi);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h[0].name(), "cpu,cpuacct");
        assert_eq!(h[1].controllers, vec!["name=systemd"]);
        assert!(h[2].v2);
        assert_eq!(h[3].mount, PathBuf::from("/mnt/my dir"));
        assert_eq!(h[3].root, PathBuf::from("/x"));
        assert_eq!(layout_of(&h), Layout::Hybrid);
    }

    #[test]
    fn parses_own() {
        let own = parse_own("4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(own["memory"], PathBuf::from("/process_api/abc"));
        assert_eq!(own["cpuacct"], PathBuf::from("/"));
        assert_eq!(own[""], PathBuf::from("/user.slice"));
    }
}
