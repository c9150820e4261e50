#!/usr/bin/env bash
# Pull + unpack of a ~300 MB, 5-layer gzip image from a local registry: berth vs dockerd
# (Debian docker.io, its own private daemon) vs skopeo copy + umoci unpack. Every run is cold
# (each tool's store is emptied before it). Prints medians, ratios and berth's peak RSS.
#
# Usage: bench/pull.sh [path-to-berth]          (as root; default target/release/berth)
# Environment: RUNS (default 5), WARMUP (default 1), BENCH_CACHE (where the generated image is
#              kept between runs; default /var/tmp/berth-bench-image), BENCH_JSON=FILE,
#              BENCH_KEEP=1 keeps the work directory, SETTLE=N waits N seconds after each
#              tool's store is emptied (ext4 slows inode allocation for ~30 s after many
#              deletions, which otherwise adds to whichever tool runs right after; default 0).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
berth=$(realpath -e "${1:-$top/target/release/berth}")
runs=${RUNS:-5}
warmup=${WARMUP:-1}
cache=${BENCH_CACHE:-/var/tmp/berth-bench-image}
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 2; }
for t in hyperfine docker-registry skopeo umoci dockerd docker python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/deps.sh test)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/bpull.XXXXXX)
reg_pid=
dockerd_pid=
cleanup() {
  set +e
  [ -n "$dockerd_pid" ] && kill -TERM "$dockerd_pid" 2>/dev/null && {
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dockerd_pid" 2>/dev/null
  }
  # containerd and shims dockerd started live under the work directory.
  for p in $(pgrep -f "$work" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

# 1. The image (generated once, then cached).
if [ ! -f "$cache/v1/index.json" ]; then
  echo "bench: generating the image (once) in $cache/v1" >&2
  rm -rf "$cache/v1.tmp" && mkdir -p "$cache"
  python3 "$top/bench/gen-image.py" "$cache/v1.tmp"
  mv "$cache/v1.tmp" "$cache/v1"
fi

# 2. A registry on loopback, with the image pushed by skopeo.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/reg"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/reg/data" "$port" >"$work/reg/config.yml"
docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
reg_pid=$!
disown "$reg_pid"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
ref=127.0.0.1:$port/bench/image:latest
skopeo copy -q --dest-tls-verify=false "oci:$cache/v1:bench" "docker://$ref"

# 3. A private dockerd (127.0.0.0/8 registries are insecure by default: plain HTTP works).
mkdir -p "$work/docker"
echo '{}' >"$work/docker/daemon.json"
sock=$work/docker/d.sock
dockerd --config-file "$work/docker/daemon.json" --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
  -H "unix://$sock" --pidfile "$work/docker/dockerd.pid" --iptables=false --ip6tables=false \
  --ip-forward=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
  >"$work/docker/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 300); do docker -H "unix://$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
docker -H "unix://$sock" version >/dev/null || { tail "$work/docker/dockerd.log" >&2; exit 1; }
export DOCKER_CONFIG=$work/dockercfg
mkdir -p "$DOCKER_CONFIG"

broot=$work/berth
settle="sync; sleep ${SETTLE:-0}"
D="docker -H unix://$sock"
hyperfine --runs "$runs" --warmup "$warmup" --export-json "$work/pull.json" \
  -n berth --prepare "rm -rf $broot; $settle" "$berth --data-root $broot pull -q $ref" \
  -n dockerd --prepare "$D rmi -f $ref >/dev/null 2>&1; $D image prune -af >/dev/null; $settle" "$D pull -q $ref" \
  -n skopeo+umoci --prepare "rm -rf $work/oci $work/bundle; $settle" \
  "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:b && umoci unpack --image $work/oci:b $work/bundle >/dev/null"

# Peak RSS of one cold berth pull.
rm -rf "$broot"
rss_kb=$(/usr/bin/time -f %M "$berth" --data-root "$broot" pull -q "$ref" 2>&1 >/dev/null | tail -1)
rm -rf "$broot"

python3 - "$work/pull.json" "$rss_kb" "${BENCH_JSON:-}" <<'EOF'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] for k, v in res.items()}
rss = int(sys.argv[2]) / 1024
print("pull + unpack of a 290 MB / 165 MB gzip 5-layer image from a local registry (median wall time)")
print("| tool | median | berth/tool |")
print("| --- | ---: | ---: |")
for k in ["berth", "dockerd", "skopeo+umoci"]:
    print(f"| {k} | {med[k]:.2f} s | {med['berth'] / med[k]:.2f} |")
print(f"berth peak RSS: {rss:.1f} MB")
if sys.argv[3]:
    json.dump({"median_s": med, "berth_peak_rss_mb": rss}, open(sys.argv[3], "w"), indent=1)
EOF
