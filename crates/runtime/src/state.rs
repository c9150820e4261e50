//! Persistent container state: `<root>/<id>/state.json`, plus the exec fifo.
//!
//! Layout of one container's directory (mode 0711, owned by root):
//!   state.json   this file (written atomically: tmp + rename)
//!   config.json  a copy of the spec as created (exec and hooks read it; the bundle may move)
//!   exec.fifo    exists from `create` until `start` (the init blocks opening it for writing)

use crate::error::{Context, Error, Result};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const FIFO_FILE: &str = "exec.fifo";

/// The lifecycle states of the OCI runtime spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What berth records about a container between invocations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// Host pid of the container's init (0 while creating).
    pub pid: i32,
    /// Start time of `pid` (from /proc/PID/stat) to detect pid reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: berth_cgroups::CgroupState,
    /// Whether the container has its own pid namespace (then killing init kills all).
    pub own_pidns: bool,
    /// Set once `start` has run (the fifo is gone).
    #[serde(default)]
    pub started: bool,
}

/// A container's state directory.
pub struct StateDir {
    pub dir: PathBuf,
}

/// Reject ids that could escape the state root or confuse tools.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
        && !id.starts_with('.');
    if !ok {
        crate::bail!("invalid container id {id:?}: use letters, digits and . _ - + only");
    }
    Ok(())
}

impl StateDir {
    pub fn path(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        Ok(StateDir { dir: root.join(id) })
    }

    /// Create the directory; fails if a container with this id exists.
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        let sd = StateDir::path(root, id)?;
        std::fs::create_dir_all(root).ctx(format!("create state root {}", root.display()))?;
        match std::fs::create_dir(&sd.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                crate::bail!("container with id {id:?} already exists")
            }
            Err(e) => return Err(Error::os(format!("create {}", sd.dir.display()), e)),
        }
        use std::os::unix::fs::PermissionsExt;
        // 0711: a container's (possibly unprivileged) init must traverse it to reach exec.fifo.
        std::fs::set_permissions(&sd.dir, std::fs::Permissions::from_mode(0o711))
            .ctx(format!("chmod {}", sd.dir.display()))?;
        Ok(sd)
    }

    pub fn exists(&self) -> bool {
        self.dir.join(STATE_FILE).exists()
    }

    pub fn load(&self, id: &str) -> Result<State> {
        let p = self.dir.join(STATE_FILE);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::bail!("container {id:?} does not exist")
            }
            Err(e) => return Err(Error::os(format!("read {}", p.display()), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::new(format!("{}: corrupt state: {e}", p.display())))
    }

    pub fn save(&self, st: &State) -> Result<()> {
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(st).map_err(|e| Error::new(format!("encode state: {e}")))?;
        std::fs::write(&tmp, data).ctx(format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE)).ctx("commit state.json")?;
        Ok(())
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(FIFO_FILE)
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::os(format!("remove {}", self.dir.display()), e)),
        }
    }
}

impl State {
    /// Is the recorded init process still the same, live (non-zombie) process?
    pub fn init_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match sys::proc_stat(self.pid) {
            Some((start, st)) => start == self.pid_start && st != 'Z' && st != 'X',
            None => false,
        }
    }

    /// Work out the current status from the process, fifo and freezer.
    pub fn status(&self, sd: &StateDir) -> Status {
        if self.pid == 0 {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if !self.started && sd.fifo().exists() {
            return Status::Created;
        }
        let mgr = berth_cgroups::Manager::from_state(self.cgroup.clone());
        if mgr.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The OCI state document (`berth runtime state`, and hooks' stdin).
    pub fn oci_json(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "status": status.as_str(),
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }
}

/// RFC 3339 UTC timestamp with nanoseconds, without a date crate.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `t` as an RFC 3339 UTC timestamp with nanoseconds (Docker's `time.RFC3339Nano` layout,
/// without trimming zeros).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Docker's human duration (go-units `HumanDuration`): "Less than a second", "1 second",
/// "5 minutes", "About an hour", "3 days", "2 weeks", "4 months", "2 years".
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2023-11-14T22:13:20.123Z`, `+01:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't' && b[10] != b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let off = match rest {
        "Z" | "z" | "" => 0,
        r if r.len() == 6 => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r.get(1..3)?.parse::<i64>().ok()? * 3600 + r.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x").is_ok());
        assert!(validate_id("../x").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(".hidden").is_err());
    }

    #[test]
    fn timestamp_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
