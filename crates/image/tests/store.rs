//! The content store on a real directory: verified commits, resumable ingests, concurrency
//! between threads and between processes.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use berth_image::{Digest, ErrorKind, Store};
use common::TempDir;

fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

fn read_blob(store: &Store, d: &Digest) -> Vec<u8> {
    let mut v = Vec::new();
    store.open(d).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[test]
fn ingest_commits_verified_blob() {
    let t = TempDir::new("store-ok");
    let store = Store::new(t.join("s")).unwrap();
    let data = blob(200_000);
    let want = Digest::of(&data);
    let mut w = store.writer("layer-1").unwrap();
    assert_eq!(w.offset(), 0);
    for c in data.chunks(7000) {
        w.write_all(c).unwrap();
    }
    assert_eq!(w.offset(), data.len() as u64);
    assert_eq!(w.digest(), want);
    let got = w.commit(Some(data.len() as u64), Some(&want)).unwrap();
    assert_eq!(got, want);
    assert!(store.has(&want).unwrap());
    assert_eq!(store.size(&want).unwrap(), data.len() as u64);
    assert_eq!(read_blob(&store, &want), data);
    assert_eq!(store.list().unwrap(), vec![want.clone()]);
    let path = t.join("s").join("blobs/sha256").join(want.hex());
    assert_eq!(store.blob_path(&want), path);
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444);
    assert!(store.ingests().unwrap().is_empty());
    assert_eq!(fs::read_dir(t.join("s/ingest")).unwrap().count(), 0, "ingest directory removed");
}

#[test]
fn commit_without_expectations_returns_digest() {
    let t = TempDir::new("store-free");
    let store = Store::new(t.path()).unwrap();
    let mut w = store.writer("local-layer").unwrap();
    w.write_all(b"built here").unwrap();
    let d = w.commit(None, None).unwrap();
    assert_eq!(d, Digest::of(b"built here"));
    assert!(store.has(&d).unwrap());
}

#[test]
fn digest_mismatch_is_refused_and_removed() {
    let t = TempDir::new("store-digest");
    let store = Store::new(t.path()).unwrap();
    let want = Digest::of(b"the real content");
    let mut w = store.writer("pull-x").unwrap();
    w.write_all(b"something else!!").unwrap();
    let e = w.commit(Some(16), Some(&want)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    let actual = Digest::of(b"something else!!");
    assert_eq!(e.to_string(), format!("blob digest mismatch: expected {want}, got {actual}"));
    assert!(!store.has(&want).unwrap());
    assert!(!store.has(&actual).unwrap(), "never visible under any digest");
    assert!(store.list().unwrap().is_empty());
    assert!(store.ingests().unwrap().is_empty(), "partial removed");
    assert_eq!(store.writer("pull-x").unwrap().offset(), 0);
}

#[test]
fn overlong_blob_is_refused_and_removed() {
    let t = TempDir::new("store-size");
    let store = Store::new(t.path()).unwrap();
    let data = blob(1000);
    let d = Digest::of(&data);
    let mut w = store.writer("pull-size").unwrap();
    w.write_all(&data).unwrap();
    w.write_all(b"extra").unwrap();
    let e = w.commit(Some(1000), Some(&d)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SizeMismatch);
    assert_eq!(e.to_string(), format!("blob {d} size mismatch: expected 1000 bytes, got 1005"));
    assert!(!store.has(&d).unwrap());
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn truncated_blob_is_kept_for_resume() {
    let t = TempDir::new("store-trunc");
    let store = Store::new(t.path()).unwrap();
    let data = blob(10_000);
    let d = Digest::of(&data);
    let mut w = store.writer("pull-trunc").unwrap();
    w.write_all(&data[..6000]).unwrap();
    let e = w.commit(Some(10_000), Some(&d)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated);
    assert_eq!(e.to_string(), format!("blob {d} is truncated: expected 10000 bytes, got 6000; kept for resuming"));
    assert!(!store.has(&d).unwrap());
    let ingests = store.ingests().unwrap();
    assert_eq!(ingests.len(), 1);
    assert_eq!((ingests[0].reference.as_str(), ingests[0].offset), ("pull-trunc", 6000));

    let mut w = store.writer("pull-trunc").unwrap();
    assert_eq!(w.offset(), 6000);
    w.write_all(&data[6000..]).unwrap();
    assert_eq!(w.commit(Some(10_000), Some(&d)).unwrap(), d);
    assert_eq!(read_blob(&store, &d), data);
}

#[test]
fn resume_after_drop_mid_way() {
    let t = TempDir::new("store-resume");
    let store = Store::new(t.path()).unwrap();
    let data = blob(300_000);
    let d = Digest::of(&data);
    {
        let mut w = store.writer("pull-resume").unwrap();
        w.write_all(&data[..123_457]).unwrap();
        // Dropped without commit: a lost connection or a crashed process.
    }
    assert!(!store.has(&d).unwrap());
    let mut w = store.writer("pull-resume").unwrap();
    assert_eq!(w.offset(), 123_457);
    assert_eq!(w.digest(), Digest::of(&data[..123_457]), "existing bytes re-hashed");
    w.write_all(&data[w.offset() as usize..]).unwrap();
    assert_eq!(w.commit(Some(data.len() as u64), Some(&d)).unwrap(), d);
    assert_eq!(read_blob(&store, &d), data);
}

#[test]
fn corrupt_partial_is_caught_at_commit() {
    let t = TempDir::new("store-corrupt");
    let store = Store::new(t.path()).unwrap();
    let data = blob(5000);
    let d = Digest::of(&data);
    {
        let mut w = store.writer("pull-c").unwrap();
        w.write_all(&data[..2000]).unwrap();
    }
    // Flip a byte in the partial data behind the store's back.
    let ingest = fs::read_dir(t.join("ingest")).unwrap().next().unwrap().unwrap().path();
    let mut partial = fs::read(ingest.join("data")).unwrap();
    partial[10] ^= 0xff;
    fs::write(ingest.join("data"), &partial).unwrap();
    let mut w = store.writer("pull-c").unwrap();
    w.write_all(&data[2000..]).unwrap();
    assert_eq!(w.commit(Some(5000), Some(&d)).unwrap_err().kind(), ErrorKind::DigestMismatch);
    assert!(!store.has(&d).unwrap());
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn reset_restarts_from_zero() {
    let t = TempDir::new("store-reset");
    let store = Store::new(t.path()).unwrap();
    {
        let mut w = store.writer("r").unwrap();
        w.write_all(b"stale").unwrap();
    }
    let mut w = store.writer("r").unwrap();
    assert_eq!(w.offset(), 5);
    w.reset().unwrap();
    assert_eq!(w.offset(), 0);
    w.write_all(b"fresh").unwrap();
    assert_eq!(w.commit(Some(5), Some(&Digest::of(b"fresh"))).unwrap(), Digest::of(b"fresh"));
}

#[test]
fn abort_discards() {
    let t = TempDir::new("store-abort");
    let store = Store::new(t.path()).unwrap();
    {
        let mut w = store.writer("gone").unwrap();
        w.write_all(b"partial").unwrap();
    }
    assert_eq!(store.ingests().unwrap().len(), 1);
    store.abort("gone").unwrap();
    assert!(store.ingests().unwrap().is_empty());
    store.abort("never-existed").unwrap();
}

#[test]
fn small_blobs_list_delete() {
    let t = TempDir::new("store-small");
    let store = Store::new(t.path()).unwrap();
    let m = br#"{"schemaVersion":2}"#;
    let d = store.write_blob(m, None).unwrap();
    assert_eq!(d, Digest::of(m));
    assert_eq!(store.write_blob(m, Some(&d)).unwrap(), d, "idempotent");
    assert_eq!(store.read(&d, 1024).unwrap(), m);
    assert_eq!(store.read(&d, 5).unwrap_err().kind(), ErrorKind::SizeMismatch);

    let wrong = Digest::of(b"other");
    let e = store.write_blob(b"config", Some(&wrong)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    assert!(!store.has(&Digest::of(b"config")).unwrap());

    let d2 = store.write_blob(b"config", None).unwrap();
    fs::write(t.join("blobs/sha256/not-a-digest"), b"junk").unwrap();
    let mut want = vec![d.clone(), d2.clone()];
    want.sort();
    assert_eq!(store.list().unwrap(), want);

    assert!(store.delete(&d).unwrap());
    assert!(!store.delete(&d).unwrap());
    assert!(!store.has(&d).unwrap());
    let e = store.open(&d).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().starts_with(&format!("blob {d} not found")), "{e}");
    assert_eq!(store.size(&d).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn corrupt_small_blob_is_detected_on_read() {
    let t = TempDir::new("store-rot");
    let store = Store::new(t.path()).unwrap();
    let d = store.write_blob(b"manifest", None).unwrap();
    let p = store.blob_path(&d);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&p, b"MANIFEST").unwrap();
    let e = store.read(&d, 100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    assert!(e.to_string().contains("corrupt on disk"), "{e}");
}

#[test]
fn one_writer_per_ingest_ref() {
    let t = TempDir::new("store-lock");
    let store = Store::new(t.path()).unwrap();
    let data = blob(50_000);
    let d = Digest::of(&data);
    let mut first = store.writer("same").unwrap();
    first.write_all(&data[..1000]).unwrap();

    let e = store.try_writer("same").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert_eq!(e.to_string(), "ingest \"same\" is in use by another writer");

    // A second writer waits until the first commits, then finds a fresh ingest; its own commit
    // of the same blob succeeds because the blob is already there.
    let (tx, rx) = mpsc::channel();
    let s2 = store.clone();
    let data2 = data.clone();
    let d2 = d.clone();
    let waiter = thread::spawn(move || {
        let mut w = s2.writer("same").unwrap();
        tx.send(w.offset()).unwrap();
        w.write_all(&data2).unwrap();
        w.commit(Some(data2.len() as u64), Some(&d2)).unwrap()
    });
    thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "second writer must wait for the lock");
    first.write_all(&data[1000..]).unwrap();
    assert_eq!(first.commit(Some(data.len() as u64), Some(&d)).unwrap(), d);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0, "waiter starts a fresh ingest");
    assert_eq!(waiter.join().unwrap(), d);
    assert_eq!(read_blob(&store, &d), data);
    assert_eq!(store.list().unwrap(), vec![d]);
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn concurrent_ingests_of_same_blob_with_different_refs() {
    let t = TempDir::new("store-race");
    let store = Store::new(t.path()).unwrap();
    let data = blob(400_000);
    let d = Digest::of(&data);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (s, data, d) = (store.clone(), data.clone(), d.clone());
            thread::spawn(move || {
                let mut w = s.writer(&format!("puller-{i}")).unwrap();
                for c in data.chunks(4096) {
                    w.write_all(c).unwrap();
                }
                w.commit(Some(data.len() as u64), Some(&d)).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), d);
    }
    assert_eq!(read_blob(&store, &d), data);
    assert_eq!(store.list().unwrap(), vec![d]);
    assert!(store.ingests().unwrap().is_empty());
}

const CHILD_ENV: &str = "BERTH_IMAGE_TEST_STORE_CHILD";

/// Two real processes ingest the same blob at once, one under a shared ingest ref (they take
/// turns on the lock) and one under its own; all must succeed and leave one intact blob.
#[test]
fn concurrent_ingests_between_processes() {
    let t = TempDir::new("store-procs");
    Store::new(t.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["shared", "shared", "own-1", "own-2"]
        .iter()
        .map(|r| {
            Command::new(&exe)
                .args(["--exact", "store_child_process", "--ignored", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, format!("{}\n{r}", t.path().display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{text}");
    }
    let store = Store::new(t.path()).unwrap();
    let data = blob(2_000_000);
    let d = Digest::of(&data);
    assert_eq!(store.list().unwrap(), vec![d.clone()]);
    assert_eq!(read_blob(&store, &d), data);
    assert!(store.ingests().unwrap().is_empty());
}

/// The child side of [`concurrent_ingests_between_processes`]; does nothing unless spawned by it.
#[test]
#[ignore = "run as a child process by concurrent_ingests_between_processes"]
fn store_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (root, reference) = spec.split_once('\n').unwrap();
    let store = Store::new(root).unwrap();
    let data = blob(2_000_000);
    let d = Digest::of(&data);
    let mut w = store.writer(reference).unwrap();
    if w.offset() != 0 {
        // The other holder of this ref was interrupted: it never is in this test.
        panic!("unexpected partial data");
    }
    for c in data.chunks(64 * 1024) {
        w.write_all(c).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(w.commit(Some(data.len() as u64), Some(&d)).unwrap(), d);
}
