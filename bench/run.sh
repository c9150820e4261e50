#!/usr/bin/env bash
# `berth run --rm <busybox image> true` (our CLI against `berth daemon`) vs `docker run --rm`
# against dockerd (Debian docker.io, a private daemon, --bridge=none so neither sets up
# networking), the same image imported into both; also the docker CLI against berth daemon, to
# separate the client's share. Prints medians and ratios, the idle daemons' RSS and one
# monitor's RSS next to one containerd-shim's.
#
# Usage: bench/run.sh [path-to-berth]      (as root; default target/release/berth)
# Environment: RUNS (default 30), WARMUP (default 3), BENCH_KEEP=1 keeps the work directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
berth=$(realpath -e "${1:-$top/target/release/berth}")
runs=${RUNS:-30}
warmup=${WARMUP:-3}
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 2; }
for t in hyperfine dockerd docker busybox; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/deps.sh test)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/brun.XXXXXX)
dockerd_pid=
berthd_pid=
cleanup() {
  set +e
  [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null
  [ -n "$dockerd_pid" ] && kill -TERM "$dockerd_pid" 2>/dev/null && {
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dockerd_pid" 2>/dev/null
  }
  for p in $(pgrep -f "$work" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

# The image: a busybox root filesystem.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in sh true sleep echo; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

# berth daemon
"$berth" --data-root "$work/berth" import "$work/rootfs.tar" bench/bb:1 >/dev/null
"$berth" daemon --data-root "$work/berth" --exec-root "$work/berth-run" -H "$work/berth.sock" \
  >"$work/berth.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 1 100); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done

# dockerd
mkdir -p "$work/docker"
echo '{}' >"$work/docker/daemon.json"
dsock=$work/docker/d.sock
dockerd --config-file "$work/docker/daemon.json" --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
  -H "unix://$dsock" --pidfile "$work/docker/dockerd.pid" --iptables=false --ip6tables=false \
  --ip-forward=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
  >"$work/docker/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 300); do docker -H "unix://$dsock" version >/dev/null 2>&1 && break; sleep 0.1; done
docker -H "unix://$dsock" import "$work/rootfs.tar" bench/bb:1 >/dev/null
export DOCKER_CONFIG=$work/dockercfg
mkdir -p "$DOCKER_CONFIG"

hyperfine --runs "$runs" --warmup "$warmup" --export-json "$work/run.json" \
  -n berth "$berth -H $work/berth.sock run --rm --network none bench/bb:1 true" \
  -n docker-berth "docker -H unix://$work/berth.sock run --rm --network none bench/bb:1 true" \
  -n dockerd "docker -H unix://$dsock run --rm --network none bench/bb:1 true"

rss() { local v=; [ -n "${1:-}" ] && v=$(awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null); echo "${v:-0}"; }
ours() { for p in $(pgrep -f "$1"); do tr '\0' ' ' <"/proc/$p/cmdline" | grep -q "$work" && echo "$p"; done | head -1; }
berth_rss=$(rss "$berthd_pid")
dockerd_rss=$(rss "$dockerd_pid")
containerd_rss=$(rss "$(ours '^containerd --config')")

# One long-running container each: the monitor's RSS vs the shim's.
docker -H "unix://$work/berth.sock" run -d --network none --name idle bench/bb:1 sleep 1000 >/dev/null
docker -H "unix://$dsock" run -d --network none --name idle bench/bb:1 sleep 1000 >/dev/null
sleep 1
mon_rss=$(rss "$(ours ' monitor --id ')")
shim_rss=$(rss "$(ours containerd-shim)")

python3 - "$work/run.json" "$berth_rss" "$dockerd_rss" "$containerd_rss" "$mon_rss" "$shim_rss" <<'PY'
import json, statistics, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
b = statistics.median(res["berth"]["times"]); d = statistics.median(res["dockerd"]["times"])
db = statistics.median(res["docker-berth"]["times"])
kb = [int(x) for x in sys.argv[2:]]
print("run --rm <busybox> true (median wall time)")
print("| client -> engine | median | /dockerd |")
print("| --- | ---: | ---: |")
print(f"| berth CLI -> berth daemon | {b*1000:.0f} ms | {b/d:.2f} |")
print(f"| docker CLI 28 -> berth daemon | {db*1000:.0f} ms | {db/d:.2f} |")
print(f"| docker CLI 28 -> dockerd 20.10 + containerd | {d*1000:.0f} ms | 1.00 |")
print(f"idle daemon RSS: berth {kb[0]/1024:.1f} MB; dockerd {kb[1]/1024:.1f} MB + containerd {kb[2]/1024:.1f} MB")
print(f"per-container RSS: berth monitor {kb[3]/1024:.1f} MB; containerd-shim {kb[4]/1024:.1f} MB")
PY
