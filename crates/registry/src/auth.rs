//! Registry authentication: `WWW-Authenticate` challenges and Docker's `config.json`.
//!
//! Credentials are read from (and `login` writes to) Docker's client config, so `docker login`
//! and `berth login` share them: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`,
//! `{"auths": {"<server>": {"auth": base64("user:password")}}}`. Credential helpers
//! (`credsStore`, `credHelpers`) are not run; an entry that only names a helper is ignored.

use crate::{Error, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Basic,
}

/// Parse `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// `k="v", k2=v2` with quoted values that may contain commas and escaped quotes.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = s[i..].chars().next().unwrap_or('\0');
                val.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            out.insert(key, val);
        }
    }
    out
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <hidden>)", self.username)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        format!("Basic {}", B64.encode(format!("{}:{}", self.username, self.password)))
    }
}

/// Docker's client config file.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The `auths` key for a registry domain (`docker.io` is Docker Hub's legacy URL).
pub fn auth_key(domain: &str) -> String {
    if domain == "docker.io" || domain == "index.docker.io" || domain == "registry-1.docker.io" {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        domain.to_string()
    }
}

/// The registry domain a `login`/`logout` server argument names: `https://host/...` and
/// `host/path` become `host`; nothing, `index.docker.io` and `registry-1.docker.io` are
/// Docker Hub (`docker.io`).
pub fn server_domain(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// How `login`/`logout` name a registry to the user (Docker Hub by its legacy URL).
pub fn display_server(domain: &str) -> String {
    if domain == "docker.io" {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        domain.to_string()
    }
}

/// The `X-Registry-Auth` header value Docker clients send with pulls and pushes: base64url of
/// `{"username","password","serveraddress"}`.
pub fn registry_auth_header(c: &Credentials, domain: &str) -> String {
    let v = serde_json::json!({"username": c.username, "password": c.password, "serveraddress": auth_key(domain)});
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

fn strip_scheme(k: &str) -> &str {
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    k.split('/').next().unwrap_or(k)
}

fn read_config(path: &Path) -> Result<Map<String, Value>> {
    match std::fs::read(path) {
        Ok(d) if d.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(d) => match serde_json::from_slice::<Value>(&d) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(Error::new(format!("{}: not a JSON object", path.display()))),
            Err(e) => Err(Error::new(format!("{}: malformed JSON: {e}", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(Error::new(format!("read {}: {e}", path.display()))),
    }
}

/// Credentials stored for `domain`, if any.
pub fn lookup(path: &Path, domain: &str) -> Result<Option<Credentials>> {
    let cfg = read_config(path)?;
    let Some(Value::Object(auths)) = cfg.get("auths") else { return Ok(None) };
    let want = auth_key(domain);
    let entry = auths.get(&want).or_else(|| {
        let host = strip_scheme(&want).to_string();
        auths.iter().find(|(k, _)| strip_scheme(k) == host).map(|(_, v)| v)
    });
    let Some(Value::Object(e)) = entry else { return Ok(None) };
    if let Some(a) = e.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
        let raw = B64
            .decode(a.trim())
            .map_err(|_| Error::new(format!("{}: auths.{want}.auth is not valid base64", path.display())))?;
        let s = String::from_utf8(raw)
            .map_err(|_| Error::new(format!("{}: auths.{want}.auth is not UTF-8", path.display())))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| Error::new(format!("{}: auths.{want}.auth is not user:password", path.display())))?;
        return Ok(Some(Credentials { username: u.into(), password: p.into() }));
    }
    match (e.get("username").and_then(Value::as_str), e.get("password").and_then(Value::as_str)) {
        (Some(u), Some(p)) => Ok(Some(Credentials { username: u.into(), password: p.into() })),
        _ => Ok(None),
    }
}

fn write_config(path: &Path, cfg: &Map<String, Value>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".config.json.berth-{}", std::process::id()));
    let data = serde_json::to_vec_pretty(&Value::Object(cfg.clone())).unwrap_or_default();
    let res = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&data)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::new(format!("write {}: {e}", path.display()))
    })
}

/// Store credentials for `domain` (other keys of the file are kept).
pub fn store(path: &Path, domain: &str, c: &Credentials) -> Result<()> {
    let mut cfg = read_config(path)?;
    let auths = cfg.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let mut e = Map::new();
    e.insert("auth".into(), Value::String(B64.encode(format!("{}:{}", c.username, c.password))));
    auths.as_object_mut().expect("object").insert(auth_key(domain), Value::Object(e));
    write_config(path, &cfg)
}

/// Remove the credentials for `domain`; false if there were none.
pub fn remove(path: &Path, domain: &str) -> Result<bool> {
    let mut cfg = read_config(path)?;
    let key = auth_key(domain);
    let host = strip_scheme(&key).to_string();
    let Some(Value::Object(auths)) = cfg.get_mut("auths") else { return Ok(false) };
    let keys: Vec<String> = auths.keys().filter(|k| **k == key || strip_scheme(k) == host).cloned().collect();
    if keys.is_empty() {
        return Ok(false);
    }
    for k in keys {
        auths.remove(&k);
    }
    write_config(path, &cfg)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            }
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(server_domain(Some("https://index.docker.io/v1/")), "docker.io");
        assert_eq!(server_domain(Some("http://127.0.0.1:5000/x")), "127.0.0.1:5000");
        assert_eq!(server_domain(None), "docker.io");
        let h = registry_auth_header(&Credentials { username: "u".into(), password: "p?>".into() }, "docker.io");
        let v: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE.decode(h).unwrap()).unwrap();
        assert_eq!((v["password"].as_str(), v["serveraddress"].as_str()), (Some("p?>"), Some(DOCKER_HUB_AUTH_KEY)));
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn config_round_trip() {
        let dir = std::env::temp_dir().join(format!("berth-auth-test-{}", std::process::id()));
        let p = dir.join("config.json");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&p, r#"{"auths":{"other:5000":{"auth":"dTpw"}},"psFormat":"x"}"#).unwrap();
        let c = Credentials { username: "me".into(), password: "s3cr:t".into() };
        store(&p, "docker.io", &c).unwrap();
        assert_eq!(lookup(&p, "docker.io").unwrap(), Some(c.clone()));
        assert_eq!(lookup(&p, "other:5000").unwrap().unwrap().username, "u");
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(remove(&p, "docker.io").unwrap());
        assert!(!remove(&p, "docker.io").unwrap());
        assert_eq!(lookup(&p, "docker.io").unwrap(), None);
        std::fs::write(&p, "{not json").unwrap();
        assert!(lookup(&p, "x").unwrap_err().to_string().contains("malformed JSON"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
