//! `pull`: resolve a reference, fetch the config, then bring the layers in concurrently (each
//! downloaded, verified, decompressed and unpacked in one streaming pass by
//! [`ImageStore::ingest_layer`]), and register the image.

use crate::client::{Client, PulledManifest};
use crate::platform::Platform;
use crate::{media, Error, Result};
use berth_image::imagestore::{config_diff_ids, Ingested};
use berth_image::{Digest, ImageRecord, ImageStore, LayerDesc, Reference};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::Mutex;

/// Layers fetched at once (Docker's default `max-concurrent-downloads` is 3).
pub const CONCURRENT_LAYERS: usize = 3;
/// Image configs larger than this are refused.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// Where pull reports progress (a terminal UI, plain lines, or nothing).
pub trait PullProgress: Sync {
    /// A layer is known; `id` is its short digest.
    fn layer(&self, id: &str, size: u64);
    fn downloading(&self, id: &str, done: u64, size: u64);
    /// Final state of a layer: "Already exists", "Pull complete", or the error.
    fn finished(&self, id: &str, state: &str);
}

/// Ignores progress.
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn layer(&self, _: &str, _: u64) {}
    fn downloading(&self, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &str, _: &str) {}
}

pub struct PullOutcome {
    pub image: ImageRecord,
    /// The digest `Digest:` shows: the index's when pulled through one, else the manifest's.
    pub digest: Digest,
    /// Whether the reference now names a different image or anything was downloaded
    /// (Docker's "Downloaded newer image" vs "Image is up to date").
    pub downloaded: bool,
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// Pull `r` for `platform` into `store`.
pub fn pull(
    client: &Client,
    store: &ImageStore,
    r: &Reference,
    platform: &Platform,
    progress: &dyn PullProgress,
) -> Result<PullOutcome> {
    let domain = r.domain();
    let PulledManifest { bytes, digest, media_type, manifest, index } = client.get_manifest(r, platform)?;
    let config_digest = Digest::parse(&manifest.config.digest)?;
    if manifest.config.size > MAX_CONFIG_SIZE {
        return Err(Error::new(format!(
            "registry {domain}: image config {config_digest} is {} bytes, over the {MAX_CONFIG_SIZE}-byte limit",
            manifest.config.size
        )));
    }
    let config = if store.content().has(&config_digest)? {
        store.content().read(&config_digest, MAX_CONFIG_SIZE)?
    } else {
        let mut buf = Vec::new();
        client
            .fetch_blob(r, &config_digest, 0)?
            .take(manifest.config.size + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::new(format!("registry {domain}: read config {config_digest}: {e}")))?;
        if buf.len() as u64 != manifest.config.size || Digest::of(&buf) != config_digest {
            return Err(Error::new(format!(
                "registry {domain}: image config {config_digest} does not match its digest or size"
            )));
        }
        buf
    };
    let cfg: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| Error::new(format!("{}: image config is not valid JSON: {e}", r.familiar())))?;
    let (diff_ids, chains) =
        config_diff_ids(&cfg, manifest.layers.len()).map_err(|e| Error::new(format!("{}: {e}", r.familiar())))?;
    let mut layers = Vec::new();
    // Foreign (non-distributable) layers: the registry may serve them; if not, their `urls`.
    let urls: Vec<Vec<String>> = manifest
        .layers
        .iter()
        .map(|l| if media::is_foreign_layer(&l.media_type) { l.urls.clone().unwrap_or_default() } else { vec![] })
        .collect();
    for l in &manifest.layers {
        layers.push(LayerDesc { digest: Digest::parse(&l.digest)?, size: l.size, media_type: l.media_type.clone() });
    }
    for l in &layers {
        progress.layer(&short(&l.digest), l.size);
    }

    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..layers.len()).collect());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let downloaded = Mutex::new(false);
    std::thread::scope(|s| {
        for _ in 0..CONCURRENT_LAYERS.min(layers.len()) {
            s.spawn(|| loop {
                if first_error.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                    return;
                }
                let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else { return };
                let l = &layers[i];
                let id = short(&l.digest);
                let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
                let mut fetch = |offset: u64| -> berth_image::Result<Box<dyn Read + Send>> {
                    let mut res = client.fetch_blob(r, &l.digest, offset);
                    for url in &urls[i] {
                        match res {
                            Ok(_) => break,
                            Err(_) => res = client.fetch_url(url, offset),
                        }
                    }
                    res.map_err(|e| berth_image::Error::new(berth_image::ErrorKind::Io, e.to_string()))
                };
                let size = l.size;
                let id2 = id.clone();
                let mut report = move |done: u64| progress.downloading(&id2, done, size);
                match store.ingest_layer(l, &diff_ids[i], &chains[i], parent, &mut fetch, &mut report) {
                    Ok(Ingested::AlreadyExists) => progress.finished(&id, "Already exists"),
                    Ok(how) => {
                        *downloaded.lock().unwrap_or_else(|e| e.into_inner()) = true;
                        match how {
                            Ingested::Pulled { resumed_from } if resumed_from > 0 => {
                                progress.finished(&id, &format!("Pull complete (resumed at byte {resumed_from})"))
                            }
                            _ => progress.finished(&id, "Pull complete"),
                        }
                    }
                    Err(e) => {
                        progress.finished(&id, "Failed");
                        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(Error::new(e.to_string()));
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let config_mt = if manifest.config.media_type.is_empty() {
        media::OCI_CONFIG.to_string()
    } else {
        manifest.config.media_type.clone()
    };
    let mut names = Vec::new();
    if r.tag().is_some() {
        names.push(r.clone());
    }
    let known = r.tag().is_some() && store.resolve(&r.to_string()).is_ok_and(|i| i.id == config_digest);
    let shown = index.as_ref().map(|(d, _, _)| d.clone()).unwrap_or_else(|| digest.clone());
    let image = store.register(
        &names,
        Some(r),
        &bytes,
        &media_type,
        &config,
        &config_mt,
        &layers,
        index.as_ref().map(|(d, b, _)| (b.as_slice(), d)),
    )?;
    let downloaded = downloaded.into_inner().unwrap_or(true) || !known;
    Ok(PullOutcome { image, digest: shown, downloaded })
}
