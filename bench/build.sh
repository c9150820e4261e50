#!/usr/bin/env bash
# The same multi-stage Dockerfile built by `berth build` (our CLI -> berth daemon) and by
# `docker build` with dockerd's legacy builder (Debian docker.io 20.10, DOCKER_BUILDKIT=0), on
# the same context: cold (--no-cache), warm with one source file changed, and a no-op rebuild.
# Both run RUN steps without a network (--network none), so neither pays for network setup.
# Prints medians and ratios.
#
# Usage: bench/build.sh [path-to-berth]      (as root; default target/release/berth)
# Environment: RUNS (default 10), FILES (context files, default 300), BENCH_KEEP=1.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
berth=$(realpath -e "${1:-$top/target/release/berth}")
runs=${RUNS:-10}
files=${FILES:-300}
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 2; }
for t in hyperfine dockerd docker busybox; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/deps.sh test)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/bbuild.XXXXXX)
# berth's exec root on tmpfs, as its default /run/berth is on most hosts (contexts unpack there).
run=$(mktemp -d /dev/shm/bbuild-run.XXXXXX)
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
  ip link del btbench0 2>/dev/null
  nft delete table ip berth_btbench0 2>/dev/null
  grep " $run" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$run"
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

# The base image: a busybox root filesystem, imported into both.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in sh true sleep echo cat sha256sum seq ls; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

# The context: FILES source files of 4 KiB, a config, a .dockerignore.
ctx=$work/ctx
mkdir -p "$ctx/src" "$ctx/logs"
for i in $(seq 1 "$files"); do head -c 4096 /dev/urandom | base64 >"$ctx/src/f$i.txt"; done
echo "debug=false" >"$ctx/app.conf"
echo "noise" >"$ctx/logs/x.log"
printf 'logs\n*.tmp\n' >"$ctx/.dockerignore"
cat >"$ctx/Dockerfile" <<'DF'
FROM bench/bb:1 AS builder
WORKDIR /build
COPY src/ ./src/
RUN cat src/*.txt | sha256sum > /digest && ls src | wc -l > /count
RUN mkdir -p /out && for i in $(seq 1 50); do echo "item $i" >> /out/list; done

FROM bench/bb:1
ENV APP_MODE=production
COPY app.conf /etc/app.conf
COPY --from=builder /digest /count /app/
COPY --from=builder /out/ /app/out/
WORKDIR /app
CMD ["cat", "/app/digest"]
DF

# berth daemon (its own bridge, unused: RUN has no network here)
"$berth" --data-root "$work/berth" import "$work/rootfs.tar" bench/bb:1 >/dev/null
"$berth" daemon --data-root "$work/berth" --exec-root "$run" -H "$work/berth.sock" \
  --bridge btbench0 --bip 10.254.254.1/24 >"$work/berth.log" 2>&1 &
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
export DOCKER_CONFIG=$work/dockercfg DOCKER_BUILDKIT=0
mkdir -p "$DOCKER_CONFIG"

B="$berth -H $work/berth.sock build -q --network none -t bench/app:1"
D="docker -H unix://$dsock build -q --network none -t bench/app:1"
change="head -c 4096 /dev/urandom | base64 > $ctx/src/f1.txt"
# Both must succeed (and agree on the result) before anything is timed.
$B "$ctx" >/dev/null && $D "$ctx" >/dev/null
[ "$("$berth" -H "$work/berth.sock" run --rm --network none bench/app:1 cat /app/count)" = "$files" ]
[ "$(docker -H "unix://$dsock" run --rm --network none bench/app:1 cat /app/count)" = "$files" ]

hyperfine --runs "$runs" --warmup 1 --export-json "$work/cold.json" \
  -n berth "$B --no-cache $ctx" -n dockerd "$D --no-cache $ctx" >/dev/null
hyperfine --runs "$runs" --warmup 1 --export-json "$work/warm.json" --prepare "$change" \
  -n berth "$B $ctx" -n dockerd "$D $ctx" >/dev/null
hyperfine --runs "$runs" --warmup 1 --export-json "$work/noop.json" \
  -n berth "$B $ctx" -n dockerd "$D $ctx" >/dev/null

python3 - "$work" "$files" <<'PY'
import json, statistics, sys
work, files = sys.argv[1], sys.argv[2]
print(f"multi-stage build, {files} x 4 KiB sources (median wall time; lower ratio is better)")
print("| build | berth | dockerd (legacy builder) | berth/dockerd |")
print("| --- | ---: | ---: | ---: |")
for name, label in [("cold", "cold (--no-cache)"), ("warm", "warm, one source changed"), ("noop", "no-op rebuild")]:
    res = {r["command"]: statistics.median(r["times"]) for r in json.load(open(f"{work}/{name}.json"))["results"]}
    b, d = res["berth"], res["dockerd"]
    print(f"| {label} | {b*1000:.0f} ms | {d*1000:.0f} ms | {b/d:.2f} |")
PY
