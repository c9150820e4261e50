#!/usr/bin/env python3
"""Generate the pull benchmark's image as an OCI layout: about 300 MB uncompressed in 5 gzip
layers: a busybox root, three layers of thousands of small files (1-64 KiB, half text, half
random, nested directories), and one layer of a few large files (partly compressible).
Deterministic (seeded), so every run measures the same bytes.

Usage: gen-image.py OUT_DIR
"""
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile

MTIME = 1700000000
rng = random.Random(20261123)
WORDS = [w.encode() for w in "the quick brown fox jumps over lazy dog container layer image registry berth".split()]


def text(n):
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:n])


def noise(n):
    return rng.randbytes(n)


def add(t, name, data=None, mode=0o644, typ=tarfile.REGTYPE, link=None):
    ti = tarfile.TarInfo(name)
    ti.mtime, ti.mode, ti.type = MTIME, mode, typ
    if link:
        ti.linkname = link
    if typ == tarfile.REGTYPE:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    else:
        t.addfile(ti)


def tar_of(fill):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        fill(t)
    return buf.getvalue()


def busybox(t):
    for d in ["bin", "etc", "tmp", "usr"]:
        add(t, d, typ=tarfile.DIRTYPE, mode=0o755)
    add(t, "bin/busybox", open("/bin/busybox", "rb").read(), mode=0o755)
    apps = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in sorted(set(apps) - {"busybox"}):
        add(t, "bin/" + a, typ=tarfile.SYMTYPE, link="busybox")
    add(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")


def small_files(tag, total):
    def fill(t):
        size = 0
        i = 0
        add(t, tag, typ=tarfile.DIRTYPE, mode=0o755)
        while size < total:
            d = f"{tag}/d{i // 100:03d}"
            if i % 100 == 0:
                add(t, d, typ=tarfile.DIRTYPE, mode=0o755)
            n = rng.randint(1024, 64 * 1024)
            add(t, f"{d}/f{i:05d}", text(n) if i % 2 else noise(n))
            size += n
            i += 1

    return fill


def large_files(t):
    add(t, "big", typ=tarfile.DIRTYPE, mode=0o755)
    for i, n in enumerate([60 << 20, 40 << 20, 20 << 20]):
        half = n // 2
        add(t, f"big/file{i}", text(half) + noise(n - half))


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)

    def blob(b):
        d = "sha256:" + hashlib.sha256(b).hexdigest()
        with open(os.path.join(out, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(b)
        return d

    layers, diff_ids = [], []
    for fill in [busybox, small_files("a", 55 << 20), small_files("b", 55 << 20), small_files("c", 55 << 20), large_files]:
        raw = tar_of(fill)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, compresslevel=6, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(gz), "size": len(gz)})
        print(f"layer {len(layers)}: {len(raw) >> 20} MiB raw, {len(gz) >> 20} MiB gzip", file=sys.stderr)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cb = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cb), "size": len(cb)},
        "layers": layers,
    }
    mb = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(mb),
                "size": len(mb),
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


if __name__ == "__main__":
    main()
