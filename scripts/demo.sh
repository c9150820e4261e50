#!/usr/bin/env bash
# Main job: build Berth, start `berth daemon` (unless one is running), make an image from
# Debian's busybox-static, and show a named volume's data outliving its container:
# one container writes to the volume and is removed, a new one reads the data back.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo
cargo build --release -q
berth=$PWD/target/release/berth
sock=${BERTH_HOST:-/run/berth/berth.sock}
export BERTH_HOST=$sock
if ! "$berth" info >/dev/null 2>&1; then
  mkdir -p /run/berth
  echo "starting berth daemon on $sock (log: /run/berth/daemon.log)"
  setsid "$berth" daemon -H "$sock" >>/run/berth/daemon.log 2>&1 < /dev/null &
  for _ in $(seq 100); do "$berth" info >/dev/null 2>&1 && break; sleep 0.05; done
fi
# An image from busybox-static: one binary and its applet links.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/etc"
cp /bin/busybox "$work/root/bin/"
for a in sh echo cat ls date hostname id sleep; do ln -s busybox "$work/root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$work/root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/root/etc/group"
tar -C "$work/root" -cf "$work/busybox.tar" .
"$berth" import "$work/busybox.tar" berth-demo/busybox:1 >/dev/null
echo "image:      berth-demo/busybox:1 (from busybox-static)"
"$berth" rm -f demo-writer >/dev/null 2>&1 || true
"$berth" volume rm demo-data >/dev/null 2>&1 || true
"$berth" volume create demo-data >/dev/null
"$berth" run --name demo-writer -v demo-data:/data berth-demo/busybox:1 \
  sh -c 'echo "written by $(hostname) at $(date -u +%H:%M:%S)" > /data/note; echo "container 1: wrote /data/note"'
"$berth" rm demo-writer >/dev/null
echo "container 1: removed ($("$berth" ps -aq --filter name=demo-writer | wc -l) left)"
"$berth" run --rm -v demo-data:/data berth-demo/busybox:1 sh -c 'echo "container 2: read  /data/note: $(cat /data/note)"'
"$berth" volume rm demo-data >/dev/null
echo "volume:     demo-data removed; the daemon keeps running (berth ps, berth info)"
