//! `push`: upload an image's blobs (skipping those the registry has, mounting those another
//! repository of the same registry has, never foreign layers), then its manifest.

use crate::client::Client;
use crate::{media, Error, Result};
use berth_image::{Digest, ImageStore, Reference};

/// Where push reports progress.
pub trait PushProgress {
    /// A line of its own ("The push refers to ...", "<id>: Layer already exists").
    fn line(&self, msg: &str);
    /// Upload of a blob (`id`: short digest) has reached `done` of `size` bytes.
    fn uploading(&self, id: &str, done: u64, size: u64);
    /// A blob's upload ended ("Pushed").
    fn finished(&self, id: &str, state: &str);
}

pub struct PushOutcome {
    pub tag: String,
    pub digest: Digest,
    pub size: usize,
}

/// Push `r` (which must name an image in `store`).
pub fn push(c: &Client, store: &ImageStore, r: &Reference, p: &dyn PushProgress) -> Result<PushOutcome> {
    let rec = store
        .resolve(&r.to_string())
        .map_err(|_| Error::new(format!("An image does not exist locally with the tag: {}", r.familiar())))?;
    p.line(&format!("The push refers to repository [{}]", r.name()));
    // Foreign (non-distributable) layers are not uploaded: the manifest keeps their URLs.
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for l in &rec.layers {
        if media::is_foreign_layer(&l.media_type) {
            p.line(&format!("{}: Skipped foreign layer", &l.digest.hex()[..12]));
        } else {
            blobs.push((l.digest.clone(), l.size));
        }
    }
    let cfg_size = store.content().size(&rec.id)?;
    blobs.push((rec.id.clone(), cfg_size));
    for (d, size) in &blobs {
        let id = &d.hex()[..12];
        if c.blob_exists(r, d)? {
            if d != &rec.id {
                p.line(&format!("{id}: Layer already exists"));
            }
            continue;
        }
        // Cross-repository mount from a repository of the same registry that has the image.
        let from = rec.repo_digests.iter().filter_map(|rd| rd.split_once('@')).find_map(|(n, _)| {
            let src = Reference::parse(n).ok()?;
            (src.domain() == r.domain() && src.path() != r.path()).then(|| src.path().to_string())
        });
        if let Some(from) = from {
            if c.mount_blob(r, d, &from)? {
                if d != &rec.id {
                    p.line(&format!("{id}: Mounted from {from}"));
                }
                continue;
            }
        }
        p.uploading(id, 0, *size);
        let mut f = store.content().open(d)?;
        c.upload_blob(r, d, *size, &mut f, 16 << 20, &mut |n| p.uploading(id, n, *size))?;
        p.finished(id, "Pushed");
    }
    let manifest = store.content().read(&rec.manifest, crate::MAX_MANIFEST_SIZE)?;
    let tag = r.tag().unwrap_or("latest").to_string();
    let digest = c.put_manifest(r, &tag, &rec.manifest_media_type, &manifest)?;
    Ok(PushOutcome { tag, digest, size: manifest.len() })
}
