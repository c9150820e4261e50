#!/usr/bin/env bash
# How many idle containers: start N `sleep` containers (docker run -d --network none) through
# berth daemon, then report the time taken, the memory the host lost (MemAvailable before and
# after), and the daemon's and the monitors' RSS and PSS (shared pages counted once).
# With COMPARE=1 the same runs against dockerd (Debian docker.io) for the same N.
#
# Usage: bench/many.sh [path-to-berth]      (as root; default target/release/berth)
# Environment: N (default 1000), COMPARE=1, BENCH_KEEP=1 keeps the work directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
berth=$(realpath -e "${1:-$top/target/release/berth}")
n=${N:-1000}
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 2; }
for t in docker busybox; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/deps.sh test)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/bmany.XXXXXX)
berthd_pid=
dockerd_pid=
cleanup() {
  set +e
  [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null
  [ -n "$dockerd_pid" ] && kill -TERM "$dockerd_pid" 2>/dev/null && {
    for _ in $(seq 1 300); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dockerd_pid" 2>/dev/null
  }
  for p in $(pgrep -f "$work" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  sleep 0.5
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

avail() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
# kB of RSS and PSS summed over pids
mem_of() {
  local rss=0 pss=0
  for p in "$@"; do
    if [ -r "/proc/$p/smaps_rollup" ]; then
      rss=$((rss + $(awk '/^Rss:/ {print $2}' "/proc/$p/smaps_rollup")))
      pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")))
    fi
  done
  echo "$rss $pss"
}

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

run_many() { # $1 = docker host, $2 = label
  local host=$1 label=$2 before after t0 t1
  before=$(avail)
  t0=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    docker -H "$host" run -d --network none --name "idle$i" bench/bb:1 sleep 100000 >/dev/null
  done
  t1=$(date +%s.%N)
  sleep 2
  after=$(avail)
  echo "$label: $n containers started in $(echo "$t1 - $t0" | bc) s ($(echo "scale=1; ($t1 - $t0) * 1000 / $n" | bc) ms each)"
  echo "$label: host memory used: $(( (before - after) / 1024 )) MiB ($(( (before - after) / n )) kB per container)"
  running=$(docker -H "$host" ps -q | wc -l)
  echo "$label: running: $running"
}

"$berth" --data-root "$work/berth" import "$work/rootfs.tar" bench/bb:1 >/dev/null
"$berth" daemon --data-root "$work/berth" --exec-root "$work/berth-run" -H "$work/berth.sock" >"$work/berth.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 1 100); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
run_many "unix://$work/berth.sock" berth
read -r drss dpss < <(mem_of "$berthd_pid")
mapfile -t mons < <(pgrep -f " monitor --id .* --dir $work/berth-run" || true)
read -r mrss mpss < <(mem_of "${mons[@]}")
echo "berth: daemon RSS $((drss / 1024)) MiB, PSS $((dpss / 1024)) MiB"
echo "berth: ${#mons[@]} monitors: RSS $((mrss / 1024)) MiB in all, PSS $((mpss / 1024)) MiB in all ($((mpss / (${#mons[@]} + (${#mons[@]} == 0)))) kB PSS each)"
t0=$(date +%s.%N)
docker -H "unix://$work/berth.sock" rm -f $(docker -H "unix://$work/berth.sock" ps -aq) >/dev/null
echo "berth: removed all in $(echo "$(date +%s.%N) - $t0" | bc) s"
kill "$berthd_pid"; berthd_pid=

if [ "${COMPARE:-0}" = 1 ]; then
  command -v dockerd >/dev/null || { echo "bench: dockerd is missing" >&2; exit 2; }
  mkdir -p "$work/docker"
  echo '{}' >"$work/docker/daemon.json"
  dsock=$work/docker/d.sock
  dockerd --config-file "$work/docker/daemon.json" --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
    -H "unix://$dsock" --pidfile "$work/docker/dockerd.pid" --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --bridge=none --storage-driver=overlay2 >"$work/docker/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 300); do docker -H "unix://$dsock" version >/dev/null 2>&1 && break; sleep 0.1; done
  docker -H "unix://$dsock" import "$work/rootfs.tar" bench/bb:1 >/dev/null
  run_many "unix://$dsock" dockerd
  mapfile -t shims < <(pgrep -f "containerd-shim.*$work" || true)
  read -r srss spss < <(mem_of "${shims[@]}")
  echo "dockerd: ${#shims[@]} shims: RSS $((srss / 1024)) MiB, PSS $((spss / 1024)) MiB"
  docker -H "unix://$dsock" rm -f $(docker -H "unix://$dsock" ps -aq) >/dev/null
fi
