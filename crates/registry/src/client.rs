use crate::auth::{self, Challenge, Credentials};
use crate::platform::Platform;
use crate::{media, Error, Result};
use berth_image::{Digest, Reference};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Manifests and indexes larger than this are refused (as containerd and distribution do).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, \
    application/vnd.docker.distribution.manifest.v1+json;q=0.1";

#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Registries (host[:port]) that may be reached over plain HTTP (loopback always may).
    pub insecure: Vec<String>,
    /// Docker's config.json for credentials; `None`: `$DOCKER_CONFIG` or `~/.docker`.
    pub config_path: Option<PathBuf>,
    /// Credentials to use instead of the config file's (for `login`).
    pub credentials: Option<Credentials>,
}

impl ClientOptions {
    /// Defaults, with insecure registries from `BERTH_INSECURE_REGISTRIES=host:port,...`.
    pub fn from_env() -> ClientOptions {
        let insecure = std::env::var("BERTH_INSECURE_REGISTRIES")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        ClientOptions { insecure, ..Default::default() }
    }
}

/// A content descriptor (OCI and Docker schema 2 share the shape).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<IndexPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A resolved image manifest.
#[derive(Clone, Debug)]
pub struct PulledManifest {
    /// The manifest's bytes exactly as served (their sha256 is `digest`).
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub manifest: ImageManifest,
    /// The index (manifest list) the manifest was selected from, if any.
    pub index: Option<(Digest, Vec<u8>, String)>,
}

/// A registry client for one command (tokens are cached per registry and scope).
pub struct Client {
    agent: ureq::Agent,
    opts: ClientOptions,
    schemes: Mutex<HashMap<String, &'static str>>,
    auth_cache: Mutex<HashMap<(String, String), String>>,
}

enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Reader(&'a mut dyn Read, u64),
}

type Response = ureq::http::Response<ureq::Body>;

/// The API host of a registry domain (Docker Hub's API is not at docker.io).
fn api_host(domain: &str) -> &str {
    if domain == "docker.io" || domain == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

fn is_loopback(domain: &str) -> bool {
    let host = if let Some(rest) = domain.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        domain.rsplit_once(':').map(|(h, _)| h).unwrap_or(domain)
    };
    host == "localhost" || domain == "::1" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_redirects(10)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client { agent, opts, schemes: Mutex::new(HashMap::new()), auth_cache: Mutex::new(HashMap::new()) }
    }

    fn credentials(&self, domain: &str) -> Result<Option<Credentials>> {
        if let Some(c) = &self.opts.credentials {
            return Ok(Some(c.clone()));
        }
        match self.opts.config_path.clone().or_else(auth::default_config_path) {
            Some(p) => auth::lookup(&p, domain),
            None => Ok(None),
        }
    }

    fn may_use_http(&self, domain: &str) -> bool {
        is_loopback(domain) || self.opts.insecure.iter().any(|i| i == domain)
    }

    /// `https://host` or, for loopback and insecure registries that do not speak TLS, `http://host`.
    fn base(&self, domain: &str) -> Result<String> {
        let host = api_host(domain);
        if let Some(s) = self.schemes.lock().unwrap_or_else(|e| e.into_inner()).get(domain) {
            return Ok(format!("{s}://{host}"));
        }
        let scheme = if self.may_use_http(domain) {
            match self.agent.get(format!("https://{host}/v2/")).call() {
                Ok(_) => "https",
                Err(_) => "http",
            }
        } else {
            "https"
        };
        self.schemes.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.to_string(), scheme);
        Ok(format!("{scheme}://{host}"))
    }

    fn send(&self, method: &str, url: &str, headers: &[(&str, String)], body: &mut Body) -> Result<Response> {
        macro_rules! with_headers {
            ($b:expr) => {{
                let mut b = $b;
                for (k, v) in headers {
                    b = b.header(*k, v.as_str());
                }
                b
            }};
        }
        let res = match (method, body) {
            ("GET", _) => with_headers!(self.agent.get(url)).call(),
            ("HEAD", _) => with_headers!(self.agent.head(url)).call(),
            ("DELETE", _) => with_headers!(self.agent.delete(url)).call(),
            (m, b) => {
                let rb = match m {
                    "POST" => self.agent.post(url),
                    "PUT" => self.agent.put(url),
                    _ => self.agent.patch(url),
                };
                let rb = with_headers!(rb);
                match b {
                    Body::Empty => rb.send_empty(),
                    Body::Bytes(d) => rb.send(*d),
                    Body::Reader(r, len) => rb
                        .header("Content-Length", len.to_string())
                        .send(ureq::SendBody::from_reader(&mut (&mut **r).take(*len))),
                }
            }
        };
        res.map_err(|e| Error::new(format!("{method} {url}: {e}")))
    }

    /// A request to `domain` with the auth flow: on 401, answer the challenge and retry once.
    fn request(
        &self,
        domain: &str,
        scopes: &[String],
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        mut body: Body,
    ) -> Result<Response> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base(domain)?)
        };
        let key = (domain.to_string(), scopes.join(" "));
        let cached = self.auth_cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let mut hs: Vec<(&str, String)> = headers.to_vec();
        if let Some(a) = &cached {
            hs.push(("Authorization", a.clone()));
        }
        let resp = self.send(method, &url, &hs, &mut body)?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        if matches!(body, Body::Reader(..)) {
            return Err(Error::http(format!("registry {domain}: unauthorized during upload"), 401));
        }
        let challenge = header(&resp, "www-authenticate").and_then(|h| auth::parse_challenge(&h)).ok_or_else(|| {
            Error::http(format!("registry {domain}: 401 Unauthorized without a usable challenge"), 401)
        })?;
        let creds = self.credentials(domain)?;
        let authz = match challenge {
            Challenge::Basic => match &creds {
                Some(c) => c.basic_header(),
                None => {
                    return Err(Error::http(
                        format!("registry {domain}: authentication required (berth login {domain})"),
                        401,
                    ))
                }
            },
            Challenge::Bearer { realm, service, scope } => {
                let mut all: Vec<String> = scopes.to_vec();
                if let Some(s) = scope {
                    if !all.contains(&s) && all.is_empty() {
                        all.push(s);
                    }
                }
                format!("Bearer {}", self.token(domain, &realm, service.as_deref(), &all, creds.as_ref())?)
            }
        };
        if cached.as_deref() == Some(authz.as_str()) {
            return Ok(resp);
        }
        self.auth_cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, authz.clone());
        let mut hs: Vec<(&str, String)> = headers.to_vec();
        hs.push(("Authorization", authz));
        self.send(method, &url, &hs, &mut body)
    }

    fn token(
        &self,
        domain: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<String> {
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        let mut push = |k: &str, v: &str| {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&urlencode(v));
            sep = '&';
        };
        if let Some(s) = service {
            push("service", s);
        }
        for s in scopes {
            push("scope", s);
        }
        let mut req = self.agent.get(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", c.basic_header());
        }
        let mut resp =
            req.call().map_err(|e| Error::new(format!("registry {domain}: token request to {realm}: {e}")))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(Error::http(
                format!(
                    "registry {domain}: {} (token server {realm} answered {status})",
                    if creds.is_some() {
                        "unauthorized: wrong username or password"
                    } else {
                        "authentication required"
                    }
                ),
                status,
            ));
        }
        if status != 200 {
            return Err(Error::http(format!("registry {domain}: token server {realm} answered {status}"), status));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| Error::new(format!("registry {domain}: read token: {e}")))?;
        #[derive(Deserialize)]
        struct Tok {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Tok = serde_json::from_slice(&body)
            .map_err(|e| Error::new(format!("registry {domain}: malformed token response: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::new(format!("registry {domain}: token response without a token")))
    }

    /// One line from a non-success response, with the registry's error code and message.
    fn fail(&self, domain: &str, what: &str, mut resp: Response) -> Error {
        let status = resp.status();
        let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
        #[derive(Deserialize)]
        struct E {
            code: Option<String>,
            message: Option<String>,
        }
        #[derive(Deserialize)]
        struct Es {
            errors: Vec<E>,
        }
        let detail = serde_json::from_slice::<Es>(&body)
            .ok()
            .and_then(|e| e.errors.into_iter().next())
            .map(|e| match (e.message, e.code) {
                (Some(m), Some(c)) => format!("{m} ({c})"),
                (Some(m), None) => m,
                (None, Some(c)) => c,
                (None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_string()
            });
        Error::http(format!("registry {domain}: {detail}: {what}"), status.as_u16())
    }

    /// Check that the registry accepts our credentials (`GET /v2/` through the auth flow).
    pub fn ping(&self, domain: &str) -> Result<()> {
        let resp = self.request(domain, &[], "GET", "/v2/", &[], Body::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(()),
            _ => Err(self.fail(domain, "/v2/", resp)),
        }
    }

    fn pull_scope(r: &Reference) -> Vec<String> {
        vec![format!("repository:{}:pull", r.path())]
    }

    fn push_scope(r: &Reference) -> Vec<String> {
        vec![format!("repository:{}:pull,push", r.path())]
    }

    /// Fetch a manifest or index by tag or digest: bytes (size-capped), digest, media type.
    pub fn fetch_manifest_raw(&self, r: &Reference, reference: &str) -> Result<(Vec<u8>, Digest, String)> {
        let domain = r.domain();
        let what = format!("{}:{reference}", r.path()).replace(":sha256:", "@sha256:");
        let path = format!("/v2/{}/manifests/{reference}", r.path());
        let resp = self.request(
            domain,
            &Self::pull_scope(r),
            "GET",
            &path,
            &[("Accept", ACCEPT_MANIFESTS.into())],
            Body::Empty,
        )?;
        if resp.status().as_u16() != 200 {
            return Err(self.fail(domain, &what, resp));
        }
        if let Some(len) = header(&resp, "content-length").and_then(|l| l.parse::<u64>().ok()) {
            if len > MAX_MANIFEST_SIZE {
                return Err(Error::new(format!(
                    "registry {domain}: manifest {what} is {len} bytes, over the {MAX_MANIFEST_SIZE}-byte limit"
                )));
            }
        }
        let ctype = header(&resp, "content-type").unwrap_or_default();
        let served_digest = header(&resp, "docker-content-digest");
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new(format!("registry {domain}: read manifest {what}: {e}")))?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::new(format!(
                "registry {domain}: manifest {what} is larger than the {MAX_MANIFEST_SIZE}-byte limit"
            )));
        }
        let digest = Digest::of(&bytes);
        if let Ok(want) = Digest::parse(reference) {
            if want != digest {
                return Err(Error::new(format!(
                    "registry {domain}: manifest {what} does not match its digest (got {digest})"
                )));
            }
        } else if let Some(d) = served_digest.as_deref().and_then(|d| Digest::parse(d).ok()) {
            if d != digest {
                return Err(Error::new(format!(
                    "registry {domain}: manifest {what}: Docker-Content-Digest {d} does not match the content ({digest})"
                )));
            }
        }
        let mut media_type = ctype.split(';').next().unwrap_or("").trim().to_string();
        if media_type.is_empty() || media_type == "application/json" || media_type == "text/plain" {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Mt {
                media_type: Option<String>,
                manifests: Option<serde_json::Value>,
                schema_version: Option<u32>,
            }
            let mt: Mt = serde_json::from_slice(&bytes)
                .map_err(|e| Error::new(format!("registry {domain}: manifest {what} is not valid JSON: {e}")))?;
            media_type = match (mt.media_type, mt.manifests, mt.schema_version) {
                (Some(m), _, _) => m,
                (None, Some(_), _) => media::OCI_INDEX.into(),
                (None, None, Some(1)) => media::DOCKER_SCHEMA1.into(),
                _ => media::OCI_MANIFEST.into(),
            };
        }
        Ok((bytes, digest, media_type))
    }

    /// Resolve `r` to an image manifest for `platform` (through an index if the tag names one).
    pub fn get_manifest(&self, r: &Reference, platform: &Platform) -> Result<PulledManifest> {
        let domain = r.domain();
        let reference = match (r.digest(), r.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let (bytes, digest, mt) = self.fetch_manifest_raw(r, &reference)?;
        let what = r.familiar();
        match mt.as_str() {
            media::OCI_INDEX | media::DOCKER_LIST => {
                let idx: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::new(format!("registry {domain}: malformed index for {what}: {e}")))?;
                let pick = idx.manifests.iter().find(|m| {
                    m.platform.as_ref().is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
                        && (m.media_type.is_empty()
                            || m.media_type == media::OCI_MANIFEST
                            || m.media_type == media::DOCKER_MANIFEST)
                });
                let Some(pick) = pick else {
                    let have: Vec<String> = idx
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref())
                        .filter(|p| p.os != "unknown")
                        .map(|p| match &p.variant {
                            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                            None => format!("{}/{}", p.os, p.architecture),
                        })
                        .collect();
                    return Err(Error::new(format!(
                        "no matching manifest for {platform} in {what} (available: {})",
                        if have.is_empty() { "none".to_string() } else { have.join(", ") }
                    )));
                };
                let d = Digest::parse(&pick.digest)
                    .map_err(|e| Error::new(format!("registry {domain}: index of {what}: {e}")))?;
                let (mbytes, mdigest, mmt) = self.fetch_manifest_raw(r, d.as_str())?;
                let manifest = parse_image_manifest(domain, &what, &mbytes, &mmt)?;
                Ok(PulledManifest {
                    bytes: mbytes,
                    digest: mdigest,
                    media_type: mmt,
                    manifest,
                    index: Some((digest, bytes, mt)),
                })
            }
            _ => {
                let manifest = parse_image_manifest(domain, &what, &bytes, &mt)?;
                Ok(PulledManifest { bytes, digest, media_type: mt, manifest, index: None })
            }
        }
    }

    /// Stream a blob from `offset` on (resume). The caller verifies size and digest.
    pub fn fetch_blob(&self, r: &Reference, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send>> {
        let domain = r.domain();
        let path = format!("/v2/{}/blobs/{digest}", r.path());
        let hs: Vec<(&str, String)> = if offset > 0 { vec![("Range", format!("bytes={offset}-"))] } else { vec![] };
        let resp = self.request(domain, &Self::pull_scope(r), "GET", &path, &hs, Body::Empty)?;
        let status = resp.status().as_u16();
        let what = format!("{}@{digest}", r.path());
        match status {
            200 | 206 => ranged_body(resp, offset, &format!("registry {domain}: blob {what}")),
            _ => Err(self.fail(domain, &what, resp)),
        }
    }

    /// Stream a foreign (non-distributable) layer from one of its descriptor's `urls`, from
    /// `offset` on. HTTPS, or plain HTTP to loopback and insecure registries only; no credentials
    /// are sent. The caller verifies size and digest.
    pub fn fetch_url(&self, url: &str, offset: u64) -> Result<Box<dyn Read + Send>> {
        let allowed = url.starts_with("https://")
            || url.strip_prefix("http://").is_some_and(|rest| self.may_use_http(rest.split('/').next().unwrap_or("")));
        if !allowed {
            return Err(Error::new(format!(
                "layer URL {url:?} is neither https:// nor http:// to an insecure registry"
            )));
        }
        let hs: Vec<(&str, String)> = if offset > 0 { vec![("Range", format!("bytes={offset}-"))] } else { vec![] };
        let resp = self.send("GET", url, &hs, &mut Body::Empty)?;
        match resp.status().as_u16() {
            200 | 206 => ranged_body(resp, offset, &format!("GET {url}")),
            code => Err(Error::new(format!("GET {url}: HTTP {code}"))),
        }
    }

    /// Whether the repository has the blob (`HEAD`).
    pub fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool> {
        let domain = r.domain();
        let path = format!("/v2/{}/blobs/{digest}", r.path());
        let resp = self.request(domain, &Self::push_scope(r), "HEAD", &path, &[], Body::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail(domain, &format!("{}@{digest}", r.path()), resp)),
        }
    }

    fn location(&self, domain: &str, resp: &Response) -> Result<String> {
        let loc = header(resp, "location")
            .ok_or_else(|| Error::new(format!("registry {domain}: upload response without a Location")))?;
        if loc.starts_with("http://") || loc.starts_with("https://") {
            Ok(loc)
        } else {
            Ok(format!("{}{loc}", self.base(domain)?))
        }
    }

    /// Mount a blob from another repository of the same registry; false if the registry
    /// declined (the caller uploads instead).
    pub fn mount_blob(&self, r: &Reference, digest: &Digest, from: &str) -> Result<bool> {
        let domain = r.domain();
        let path = format!("/v2/{}/blobs/uploads/?mount={digest}&from={}", r.path(), urlencode(from));
        let mut scopes = Self::push_scope(r);
        scopes.push(format!("repository:{from}:pull"));
        let resp = self.request(domain, &scopes, "POST", &path, &[], Body::Empty)?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                // An upload session was opened instead: cancel it.
                if let Ok(loc) = self.location(domain, &resp) {
                    let _ = self.request(domain, &scopes, "DELETE", &loc, &[], Body::Empty);
                }
                Ok(false)
            }
            _ => Err(self.fail(domain, &format!("mount {digest} from {from}"), resp)),
        }
    }

    /// Upload a blob of `size` bytes read from `data`, in chunks of `chunk` bytes (one PUT
    /// when it fits in one chunk). `progress` gets the bytes sent so far.
    pub fn upload_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        chunk: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let domain = r.domain();
        let scopes = Self::push_scope(r);
        let what = format!("{}@{digest}", r.path());
        let resp =
            self.request(domain, &scopes, "POST", &format!("/v2/{}/blobs/uploads/", r.path()), &[], Body::Empty)?;
        if resp.status().as_u16() != 202 {
            return Err(self.fail(domain, &what, resp));
        }
        let mut loc = self.location(domain, &resp)?;
        let with_digest = |loc: &str| {
            let sep = if loc.contains('?') { '&' } else { '?' };
            format!("{loc}{sep}digest={digest}")
        };
        if size <= chunk {
            let resp = self.request(
                domain,
                &scopes,
                "PUT",
                &with_digest(&loc),
                &[("Content-Type", "application/octet-stream".into())],
                Body::Reader(data, size),
            )?;
            if resp.status().as_u16() != 201 {
                return Err(self.fail(domain, &what, resp));
            }
            progress(size);
            return Ok(());
        }
        let mut sent = 0u64;
        while sent < size {
            let n = chunk.min(size - sent);
            let resp = self.request(
                domain,
                &scopes,
                "PATCH",
                &loc,
                &[
                    ("Content-Type", "application/octet-stream".into()),
                    ("Content-Range", format!("{sent}-{}", sent + n - 1)),
                ],
                Body::Reader(data, n),
            )?;
            if resp.status().as_u16() != 202 {
                return Err(self.fail(domain, &what, resp));
            }
            loc = self.location(domain, &resp)?;
            sent += n;
            progress(sent);
        }
        let resp = self.request(domain, &scopes, "PUT", &with_digest(&loc), &[], Body::Empty)?;
        if resp.status().as_u16() != 201 {
            return Err(self.fail(domain, &what, resp));
        }
        Ok(())
    }

    /// Upload a manifest under a tag or its digest; returns its digest.
    pub fn put_manifest(&self, r: &Reference, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let domain = r.domain();
        let path = format!("/v2/{}/manifests/{reference}", r.path());
        let resp = self.request(
            domain,
            &Self::push_scope(r),
            "PUT",
            &path,
            &[("Content-Type", media_type.to_string())],
            Body::Bytes(bytes),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.fail(domain, &format!("manifest {}:{reference}", r.path()), resp));
        }
        Ok(Digest::of(bytes))
    }
}

/// The body of a `Range: bytes=<offset>-` GET: as is for 206; for a 200 (the server ignored the
/// range) the first `offset` bytes are skipped.
fn ranged_body(resp: Response, offset: u64, what: &str) -> Result<Box<dyn Read + Send>> {
    let partial = resp.status().as_u16() == 206;
    let mut rd = resp.into_body().into_reader();
    if !partial && offset > 0 {
        let skipped = std::io::copy(&mut (&mut rd).take(offset), &mut std::io::sink())
            .map_err(|e| Error::new(format!("{what}: {e}")))?;
        if skipped < offset {
            return Err(Error::new(format!("{what} is shorter than {offset} bytes")));
        }
    }
    Ok(Box::new(rd))
}

fn parse_image_manifest(domain: &str, what: &str, bytes: &[u8], mt: &str) -> Result<ImageManifest> {
    match mt {
        media::OCI_MANIFEST | media::DOCKER_MANIFEST => {}
        media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED => {
            return Err(Error::new(format!(
                "registry {domain}: {what} is a schema 1 manifest, which berth does not support (registries have served schema 2 since 2017): re-push the image"
            )))
        }
        other => {
            return Err(Error::new(format!("registry {domain}: {what}: unsupported manifest media type {other:?}")))
        }
    }
    let m: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::new(format!("registry {domain}: malformed manifest for {what}: {e}")))?;
    if m.schema_version != 2 {
        return Err(Error::new(format!("registry {domain}: {what}: schemaVersion {} is not 2", m.schema_version)));
    }
    for d in std::iter::once(&m.config).chain(&m.layers) {
        Digest::parse(&d.digest).map_err(|e| Error::new(format!("registry {domain}: manifest for {what}: {e}")))?;
    }
    Ok(m)
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_hosts() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(urlencode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
