//! `RUN --mount=…` specs, mirroring BuildKit's `instructions/commands_runmount.go`.
//!
//! A spec is a CSV list of `key=value` fields (`type=cache,target=/root/.cache,id=go`).
//! At parse time Docker only checks the CSV and that `from` holds no variable
//! ([`check_unexpanded`]); the builder reads the spec once each value has been expanded
//! with the stage's environment ([`parse_mount`]).

use crate::parser::go_quote;

/// `type=` of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountType {
    /// A directory of the build context or of another stage/image (the default).
    #[default]
    Bind,
    /// A persistent cache directory.
    Cache,
    /// A tmpfs.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Concurrent writers share it.
    Shared,
    /// Each writer gets its own copy when busy.
    Private,
    /// Writers wait for one another.
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// The type.
    pub mount_type: MountType,
    /// `from=`: stage name or image.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// Read-only (defaults: true for bind/secret/ssh, false for cache/tmpfs).
    pub read_only: bool,
    /// `size=` of a tmpfs, bytes.
    pub size_limit: Option<i64>,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=`.
    pub sharing: Option<Sharing>,
    /// `required` (secret and ssh).
    pub required: bool,
    /// `env=` (secret).
    pub env: Option<String>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
}

/// Splits a CSV record like Go's `encoding/csv` (no lazy quotes).
pub(crate) fn csv_fields(spec: &str) -> Result<Vec<String>, String> {
    let err = |m: &str| format!("failed to parse csv mounts: {m}");
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(err("extraneous or missing \" in quoted-field")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err(err("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(err("bare \" in non-quoted-field")),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

/// What Docker checks when the Dockerfile is parsed: the CSV is well formed and `from`
/// holds no variable (`$` anywhere but at the end).
pub fn check_unexpanded(spec: &str) -> Result<(), String> {
    for field in csv_fields(spec)? {
        if let Some((key, value)) = field.split_once('=') {
            if key.eq_ignore_ascii_case("from") && value.find('$').is_some_and(|i| i != value.len() - 1) {
                return Err(format!("'{key}' doesn't support variable expansion, define alias stage instead"));
            }
        }
    }
    Ok(())
}

/// The stage or image a mount reads from, without expanding anything: `from=` as written.
pub fn mount_from(spec: &str) -> Option<String> {
    csv_fields(spec).ok()?.into_iter().rev().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        k.eq_ignore_ascii_case("from").then(|| v.to_string())
    })
}

/// Parses a `--mount` spec; `expand` is applied to every value first (pass
/// `|v| Ok(v.to_string())` for none).
pub fn parse_mount(spec: &str, mut expand: impl FnMut(&str) -> Result<String, String>) -> Result<Mount, String> {
    let mut m = Mount::default();
    let mut ro_auto = true;
    for field in csv_fields(spec)? {
        let Some((key, value)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => (m.read_only, ro_auto) = (true, false),
                "readwrite" | "rw" => (m.read_only, ro_auto) = (false, false),
                "required" if matches!(m.mount_type, MountType::Secret | MountType::Ssh) => m.required = true,
                "required" => return Err(unexpected_key("required", m.mount_type)),
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let value = expand(value)?;
        apply_field(&mut m, &mut ro_auto, &key, &value, &field)?;
    }
    finish_mount(m, ro_auto)
}

fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

fn unexpected_key(key: &str, t: MountType) -> String {
    format!("unexpected key '{key}' for mount type '{}'", type_name(t))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

fn parse_u32(value: &str, radix: u32, what: &str) -> Result<u32, String> {
    u32::from_str_radix(value, radix).map_err(|_| format!("invalid value {value} for {what}"))
}

fn apply_field(m: &mut Mount, ro_auto: &mut bool, key: &str, value: &str, field: &str) -> Result<(), String> {
    match key {
        "type" => {
            m.mount_type = match value.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                _ => return Err(format!("unsupported mount type {}", go_quote(value))),
            }
        }
        "from" => m.from = Some(value.to_string()),
        "source" | "src" => m.source = Some(value.to_string()),
        "target" | "dst" | "destination" => m.target = Some(value.to_string()),
        "readonly" | "ro" => (m.read_only, *ro_auto) = (parse_bool(key, value)?, false),
        "readwrite" | "rw" => (m.read_only, *ro_auto) = (!parse_bool(key, value)?, false),
        "required" if matches!(m.mount_type, MountType::Secret | MountType::Ssh) => {
            m.required = parse_bool(key, value)?
        }
        "size" if m.mount_type == MountType::Tmpfs => {
            m.size_limit = Some(ram_in_bytes(value).ok_or_else(|| format!("invalid value for {key}: {value}"))?)
        }
        "required" | "size" => return Err(unexpected_key(key, m.mount_type)),
        "id" => m.id = Some(value.to_string()),
        "sharing" => {
            m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                "shared" => Sharing::Shared,
                "private" => Sharing::Private,
                "locked" => Sharing::Locked,
                _ => return Err(format!("unsupported sharing value {}", go_quote(value))),
            })
        }
        "mode" => m.mode = Some(parse_u32(value, 8, "mode")?),
        "uid" => m.uid = Some(parse_u32(value, 10, "uid")?),
        "gid" => m.gid = Some(parse_u32(value, 10, "gid")?),
        "env" => m.env = Some(value.to_string()),
        _ => return Err(format!("unexpected key '{key}' in '{field}'")),
    }
    Ok(())
}

fn finish_mount(mut m: Mount, ro_auto: bool) -> Result<Mount, String> {
    let t = type_name(m.mount_type);
    if !matches!(m.mount_type, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (set, what) in [(m.mode.is_some(), "mode"), (m.uid.is_some(), "uid"), (m.gid.is_some(), "gid")] {
            if set {
                return Err(format!("{what} not allowed for {} type mounts", go_quote(t)));
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.mount_type, MountType::Cache | MountType::Tmpfs);
    }
    if m.mount_type == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.mount_type != MountType::Cache {
        return Err(format!("invalid cache sharing set for {t} mount"));
    }
    Ok(m)
}

/// go-units' `RAMInBytes`: `64m`, `1.5g`, `512kb`, `2GiB` (binary multiples).
fn ram_in_bytes(s: &str) -> Option<i64> {
    let num_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.contains("..") {
        return None;
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut u = unit.as_str();
    let mult: f64 = match u.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            u = &u[1..];
            1024f64.powi(match c {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                _ => 5,
            })
        }
        _ => 1.0,
    };
    let u = u.strip_prefix('i').unwrap_or(u);
    let u = u.strip_prefix('b').unwrap_or(u);
    if !u.is_empty() {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    Some((value * mult) as i64)
}
