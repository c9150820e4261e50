//! The image routes that need more than a few lines: `import` (`POST /images/create?fromSrc=-`),
//! registry login (`POST /auth`), the image list's filters (`GET /images/json`) and
//! `POST /images/prune`. `api.rs` routes to them.

use crate::api::{label_matches, list_images, parse_filters, unix_of};
use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult, Conn, Request};
use berth_image::{ErrorKind, Reference};
use serde_json::{json, Value};

fn io(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("writing the response: {e}"))
}

/// Read and drop what is left of the request body (an error answered before the body was
/// read must not leave the client blocked on sending it).
fn drain(conn: &mut Conn) {
    let _ = std::io::copy(&mut conn.body_reader(), &mut std::io::sink());
}

/// `POST /images/create?fromSrc=-&repo=&tag=&message=&changes=...&platform=`: the request
/// body is a root filesystem tarball (plain, gzip or zstd); it becomes a one-layer image,
/// through the same code as `berth import`. Answers Docker's JSON stream, ending with
/// `{"status":"sha256:..."}`. Nothing is stored unless the whole import succeeds.
pub fn import(d: &Daemon, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let _lease = d.images.lease();
    let prepared = prepare_import(req);
    let opts = match prepared {
        Ok(o) => o,
        Err(e) => {
            drain(conn);
            return Err(e);
        }
    };
    let (names, opts) = opts;
    let result = {
        let mut body = std::io::BufReader::with_capacity(256 << 10, conn.body_reader());
        let r = berth_image::docker_archive::import(&d.images, &mut body, &names, &opts);
        // Whatever the importer left unread (tar padding, or all of it after an error) is
        // drained: the connection stays in step.
        let _ = std::io::copy(&mut body, &mut std::io::sink());
        r
    };
    let rec = result.map_err(|e| match e.kind() {
        ErrorKind::InvalidLayer | ErrorKind::UnsafeLayer | ErrorKind::InvalidArgument => ApiError::bad(e.to_string()),
        _ => ApiError::internal(e.to_string()),
    })?;
    let id = rec.id.to_string();
    let mut attrs = json!({"name": id});
    if let Some(n) = names.first() {
        attrs["name"] = json!(n.familiar());
    }
    d.events.emit("image", "import", &id, attrs);
    let mut out = conn.chunked(200, "application/json").map_err(io)?;
    out.json_line(&json!({"status": id})).map_err(io)?;
    out.finish().map_err(io)
}

/// The names and options of an import, from the query; everything is checked before the body
/// is read.
fn prepare_import(req: &Request) -> ApiResult<(Vec<Reference>, berth_image::docker_archive::ImportOptions)> {
    match req.q("fromSrc").unwrap_or("") {
        "-" => {}
        "" => return Err(ApiError::bad("give fromImage (pull) or fromSrc=- (import a tarball sent as the body)")),
        url => {
            return Err(ApiError::bad(format!(
                "importing from a URL ({url}) is not supported: download it and send the tarball as the request body (fromSrc=-)"
            )))
        }
    }
    let bad = |e: berth_image::Error| ApiError::bad(e.to_string());
    let names = match req.q("repo").filter(|r| !r.is_empty()) {
        None => Vec::new(),
        Some(repo) => {
            let mut r = Reference::parse(repo).map_err(bad)?;
            if r.digest().is_some() {
                return Err(ApiError::bad(format!("cannot import to a reference with a digest: {repo}")));
            }
            if let Some(t) = req.q("tag").filter(|t| !t.is_empty()) {
                r = r.with_tag(t).map_err(bad)?;
            }
            vec![r]
        }
    };
    let platform = match req.q("platform").filter(|p| !p.is_empty()) {
        Some(p) => berth_registry::Platform::parse(p).map_err(|e| ApiError::bad(e.to_string()))?,
        None => berth_registry::Platform::host(),
    };
    let changes: Vec<String> = req.q_all("changes").iter().map(|c| c.to_string()).collect();
    let opts = berth_image::docker_archive::ImportOptions::new(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
        &changes,
        req.q("message"),
        berth_runtime::state::now_rfc3339(),
    )
    .map_err(bad)?;
    Ok((names, opts))
}

/// `POST /auth` with `{"username","password","serveraddress"}` (or `"auth"`: base64 of
/// `user:password`): the registry's `/v2/` through its auth flow (Basic or a token) with
/// those credentials. A registry that answers without asking counts as a success, as in
/// Docker. Wrong credentials are a 401 whose message names the registry.
pub fn auth(conn: &mut Conn, req: &Request) -> ApiResult<()> {
    use base64::Engine;
    let b = conn.json_body(req)?;
    let server = b["serveraddress"].as_str().filter(|s| !s.is_empty());
    let domain = berth_registry::auth::server_domain(server);
    let (mut user, mut password) =
        (b["username"].as_str().unwrap_or("").to_string(), b["password"].as_str().unwrap_or("").to_string());
    if let Some(a) = b["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| ApiError::bad("auth: not base64 of user:password"))?;
        let s = String::from_utf8(raw).map_err(|_| ApiError::bad("auth: not UTF-8"))?;
        let (u, p) = s.split_once(':').ok_or_else(|| ApiError::bad("auth: not user:password"))?;
        (user, password) = (u.to_string(), p.to_string());
    }
    if user.is_empty() {
        return Err(ApiError::bad("a username is required to log in"));
    }
    let mut o = berth_registry::ClientOptions::from_env();
    o.credentials = Some(berth_registry::auth::Credentials { username: user, password });
    let client = berth_registry::Client::new(o);
    match client.ping(&domain) {
        Ok(()) => {
            conn.json(200, &json!({"Status": "Login Succeeded", "IdentityToken": ""})).map_err(io)?;
            Ok(())
        }
        Err(e) if matches!(e.status, Some(401 | 403)) => Err(ApiError::new(
            401,
            format!(
                "login attempt to {} failed with status: 401 Unauthorized ({e})",
                berth_registry::auth::display_server(&domain)
            ),
        )),
        Err(e) => Err(ApiError::internal(format!("login to {}: {e}", berth_registry::auth::display_server(&domain)))),
    }
}

/// Go's `path.Match` as `docker images --filter reference=` uses it: `*` is any run of
/// characters but `/`, `?` one such character, `[...]` a class (`[^...]` negated, ranges),
/// `\` escapes.
fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed including ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut hit = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((hit != negate, i + 1));
            }
            first = false;
            let lo = if p[i] == '\\' && i + 1 < p.len() {
                i += 1;
                p[i]
            } else {
                p[i]
            };
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                let hi = p[i + 2];
                hit |= lo <= c && c <= hi;
                i += 3;
            } else {
                hit |= lo == c;
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).take_while(|&k| k == 0 || t[k - 1] != '/').any(|k| go(&p[1..], &t[k..])),
            Some('?') => t.first().is_some_and(|&c| c != '/') && go(&p[1..], &t[1..]),
            Some('[') => match (t.first(), class(&p[1..], t.first().copied().unwrap_or('\0'))) {
                (Some(&c), Some((true, n))) if c != '/' => go(&p[1 + n..], &t[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// A reference matches a `reference=` pattern by its familiar form (`busybox:1`) or, for a
/// tag, its familiar name (`busybox`), as Docker's `FamiliarMatch`.
fn reference_matches(pattern: &str, name: &str) -> bool {
    if glob(pattern, name) {
        return true;
    }
    let bare = match name.split_once('@') {
        Some((n, _)) => n,
        None => match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => n,
            _ => name,
        },
    };
    glob(pattern, bare)
}

/// A point in time for `until`/`since` filters: unix seconds (fractions allowed), RFC 3339,
/// or a duration before now (`10m`, `24h`, `1h30m`, `500ms`).
pub(crate) fn time_filter(s: &str) -> ApiResult<i64> {
    let bad = || ApiError::bad(format!("invalid time {s:?}: give unix seconds, RFC 3339 or a duration like 24h"));
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return s.split('.').next().unwrap_or("").parse::<i64>().map_err(|_| bad());
    }
    if let Some(t) = berth_runtime::state::parse_rfc3339(s) {
        return Ok(t);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        let unit_end = rest[n_end..].find(|c: char| c.is_ascii_digit() || c == '.').map_or(rest.len(), |i| n_end + i);
        let mult = match &rest[n_end..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(berth_runtime::state::unix_now() - total as i64)
}

fn is_true(v: &str) -> ApiResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad(format!("invalid filter 'dangling={other}': use true or false"))),
    }
}

/// One filter of the image list: keeps (and may narrow) an `/images/json` entry, or drops it.
type Check = Box<dyn Fn(&mut Value) -> bool>;

/// `GET /images/json?filters=`: Docker's image filters — `reference` (glob over the familiar
/// names; only matching tags are listed), `dangling`, `label` (`k` or `k=v`, all must match),
/// `before`/`since` (an image), `until` (a time). An unknown filter is a 400.
pub fn list(d: &Daemon, req: &Request) -> ApiResult<Value> {
    let filters = parse_filters(req.q("filters"))?;
    let created_of = |name: &str| -> ApiResult<i64> {
        let rec = d.images.resolve(name).map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
        Ok(rec.created.as_deref().map(unix_of).unwrap_or(0))
    };
    let mut checks: Vec<Check> = Vec::new();
    for (k, vals) in filters {
        match k.as_str() {
            "reference" => checks.push(Box::new(move |img: &mut Value| {
                let keep = |list: &Value| -> Vec<Value> {
                    list.as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|n| vals.iter().any(|p| reference_matches(p, n.as_str().unwrap_or(""))))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (tags, digests) = (keep(&img["RepoTags"]), keep(&img["RepoDigests"]));
                let found = !tags.is_empty() || !digests.is_empty();
                img["RepoTags"] = json!(tags);
                img["RepoDigests"] = json!(digests);
                found
            })),
            "dangling" => {
                let want = match vals.as_slice() {
                    [v] => is_true(v)?,
                    _ => return Err(ApiError::bad("the dangling filter takes one value: true or false")),
                };
                checks.push(Box::new(move |img: &mut Value| {
                    img["RepoTags"].as_array().is_none_or(|t| t.is_empty()) == want
                }))
            }
            "label" => {
                checks.push(Box::new(move |img: &mut Value| vals.iter().all(|l| label_matches(&img["Labels"], l))))
            }
            "before" | "since" => {
                let mut ts = Vec::new();
                for v in &vals {
                    ts.push(created_of(v)?);
                }
                let before = k == "before";
                checks.push(Box::new(move |img: &mut Value| {
                    let c = img["Created"].as_i64().unwrap_or(0);
                    ts.iter().all(|&t| if before { c < t } else { c > t })
                }))
            }
            "until" => {
                let mut ts = Vec::new();
                for v in &vals {
                    ts.push(time_filter(v)?);
                }
                checks.push(Box::new(move |img: &mut Value| {
                    let c = img["Created"].as_i64().unwrap_or(0);
                    ts.iter().all(|&t| c < t)
                }))
            }
            other => return Err(ApiError::bad(format!("invalid filter '{other}'"))),
        }
    }
    let mut out = Vec::new();
    for mut img in list_images(d)?.as_array().cloned().unwrap_or_default() {
        if checks.iter().all(|c| c(&mut img)) {
            out.push(img);
        }
    }
    out.sort_by_key(|i| std::cmp::Reverse(i["Created"].as_i64().unwrap_or(0)));
    Ok(Value::Array(out))
}

/// `POST /images/prune?filters=`: images no container uses — only dangling ones unless
/// `dangling=false` — narrowed by `until` and `label`/`label!`; then what no image uses any
/// more (layers, blobs). Answers the removed references and images and the bytes freed.
pub fn prune(d: &Daemon, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let _ = conn.body(req)?;
    let mut all = false;
    let mut until: Vec<i64> = Vec::new();
    let (mut labels, mut not_labels) = (Vec::new(), Vec::new());
    for (k, vals) in parse_filters(req.q("filters"))? {
        match k.as_str() {
            "dangling" => {
                for v in &vals {
                    all |= !is_true(v)?;
                }
            }
            "until" => {
                for v in &vals {
                    until.push(time_filter(v)?);
                }
            }
            "label" => labels.extend(vals),
            "label!" => not_labels.extend(vals),
            other => return Err(ApiError::bad(format!("invalid filter '{other}'"))),
        }
    }
    let root = d.images.root().to_path_buf();
    let before = crate::volumes::du(&root);
    let held: std::collections::BTreeSet<String> = d.list().into_iter().map(|c| c.image_id).collect();
    let mut deleted = Vec::new();
    for (rec, names) in d.images.list().map_err(|e| ApiError::internal(e.to_string()))? {
        if !(names.is_empty() || all) || held.contains(rec.id.as_str()) {
            continue;
        }
        let created = rec.created.as_deref().map(unix_of).unwrap_or(0);
        if !until.iter().all(|&t| created < t) {
            continue;
        }
        if !labels.is_empty() || !not_labels.is_empty() {
            let cfg = d.images.config(&rec).unwrap_or(Value::Null);
            let l = &cfg["config"]["Labels"];
            if !labels.iter().all(|x| label_matches(l, x)) || not_labels.iter().any(|x| label_matches(l, x)) {
                continue;
            }
        }
        if let Ok(lines) = d.images.remove(rec.id.as_str(), true) {
            deleted.extend(lines.iter().filter_map(|l| l.split_once(": ")).map(|(k, v)| json!({ k: v })));
            d.events.emit("image", "delete", rec.id.as_str(), json!({"name": rec.id.to_string()}));
        }
    }
    d.images.gc().map_err(|e| ApiError::internal(e.to_string()))?;
    // Each removal collects at once; the space freed is what the store no longer takes.
    let space = before.saturating_sub(crate::volumes::du(&root));
    conn.json(200, &json!({"ImagesDeleted": deleted, "SpaceReclaimed": space})).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_times() {
        assert!(reference_matches("busybox", "busybox:1"));
        assert!(reference_matches("busy*", "busybox:latest"));
        assert!(reference_matches("*:1", "busybox:1"));
        assert!(!reference_matches("*", "localhost:5000/x:1"));
        assert!(reference_matches("localhost:5000/*", "localhost:5000/x:1"));
        assert!(reference_matches("b[t-v]?ybox:[0-9]", "busybox:1"));
        assert!(!reference_matches("b[^u]*", "busybox:1"));
        assert!(reference_matches("x", "x@sha256:abc"));
        assert!(!reference_matches("bb:2", "bb:1"));
        assert_eq!(time_filter("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(time_filter("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        let now = berth_runtime::state::unix_now();
        assert!((time_filter("1h30m").unwrap() - (now - 5400)).abs() <= 1);
        assert!(time_filter("soon").is_err() && time_filter("").is_err() && time_filter("5y").is_err());
    }
}
