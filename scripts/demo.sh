#!/usr/bin/env bash
# Main job: build Berth, start `berth daemon` (unless one is running), make an image from
# Debian's busybox-static, run a web server in a container with a published port and fetch a
# page from it on the host; then show a named volume's data outliving its container.
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
for a in sh echo cat ls date hostname id sleep mkdir httpd; do ln -s busybox "$work/root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$work/root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/root/etc/group"
tar -C "$work/root" -cf "$work/busybox.tar" .
"$berth" import "$work/busybox.tar" berth-demo/busybox:1 >/dev/null
echo "image:      berth-demo/busybox:1 (from busybox-static)"
# A web server on a published port (the default bridge network, DNAT on 127.0.0.1).
port=${DEMO_PORT:-8080}
"$berth" rm -f demo-web >/dev/null 2>&1 || true
"$berth" run -d --name demo-web -p "127.0.0.1:$port:80" berth-demo/busybox:1 \
  sh -c 'mkdir -p /www && echo "hello from $(hostname), served by busybox httpd in a Berth container" > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
echo "web:        demo-web on $("$berth" port demo-web 80/tcp) (container address $("$berth" inspect -f '{{.NetworkSettings.IPAddress}}' demo-web))"
page=
for _ in $(seq 50); do page=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$port/', timeout=2).read().decode().strip())" 2>/dev/null) && break; sleep 0.1; done
echo "host fetch: http://127.0.0.1:$port/ -> ${page:-no answer}"
"$berth" rm -f demo-web >/dev/null
[ -n "$page" ] || { echo "demo: the web server did not answer" >&2; exit 1; }
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
