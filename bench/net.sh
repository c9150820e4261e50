#!/usr/bin/env bash
# Networking: berth daemon vs dockerd (Debian docker.io 20.10, iptables on, userland proxy on, as a
# normal install), the same image imported into both (iperf3 and its libraries copied from the
# host, plus busybox). Measured for each engine:
#  - iperf3 TCP throughput container -> container on the default bridge;
#  - iperf3 throughput to a published port (-p 5201:5201) from the "host" to 127.0.0.1, to the
#    host's own non-loopback address, and from a peer over a veth (an outside client);
#  - short TCP connections (connect, HTTP/1.0 GET, read to EOF, close) to busybox httpd behind a
#    published port (-p 8080:80), one at a time (latency) and CONC at a time (rate), on the same
#    paths, plus the container's address directly (no publishing) as a baseline.
#
# Isolation: each daemon runs in a network namespace of its own (with a peer namespace as the
# outside client), so its bridge, nftables/iptables rules, FORWARD policy, br_netfilter sysctls
# (per namespace on this kernel) and docker-proxy all live and die in that namespace; `ip netns
# exec` is for the clients only: it remounts /sys, which hides the cgroup mounts, so the daemons
# enter just the network namespace (nsenter --net). Nothing is changed in the host's network
# namespace; the daemons' mounts are under the work directory and unmounted at the end.
#
# Usage: bench/net.sh [path-to-berth]      (as root; default target/release/berth)
# Environment: RUNS (default 3), DURATION (iperf3 seconds, default 10), CONNS (connections per
# connection test, default 1000), CONC (parallel clients for the rate, default 4),
# BENCH_KEEP=1 keeps the work directory, BENCH_JSON=FILE saves the raw figures.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
berth_src=$(realpath -e "${1:-$top/target/release/berth}")
runs=${RUNS:-3}
duration=${DURATION:-10}
conns=${CONNS:-1000}
conc=${CONC:-4}
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 2; }
for t in dockerd docker busybox iperf3 ip nft iptables ldd timeout; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/deps.sh test)" >&2; exit 2; }
done
py=/usr/bin/python3
[ -x "$py" ] || { echo "bench: $py is missing" >&2; exit 2; }

work=$(mktemp -d /tmp/bnet.XXXXXX)
tag=nb$$
# Namespaces: the engine's "host" and its outside peer, for each engine.
declare -A ns=([berth]="${tag}b" [docker]="${tag}d")
declare -A peer=([berth]="${tag}bp" [docker]="${tag}dp")
declare -A sock=([berth]="$work/berth.sock" [docker]="$work/docker/d.sock")
declare -A dpid=([berth]="" [docker]="")
ext_host=192.0.2.1 # the engine namespace's non-loopback address (veth to the peer)
ext_peer=192.0.2.2
export DOCKER_CONFIG=$work/dockercfg

dk() { local e=$1; shift; docker -H "unix://${sock[$e]}" "$@"; }

cleanup() {
  set +e
  trap - INT TERM
  for e in berth docker; do
    if [ -S "${sock[$e]}" ]; then
      ids=$(timeout 20 docker -H "unix://${sock[$e]}" ps -aq 2>/dev/null)
      # shellcheck disable=SC2086
      [ -n "$ids" ] && timeout 60 docker -H "unix://${sock[$e]}" rm -f $ids >/dev/null 2>&1
    fi
  done
  [ -n "${dpid[berth]}" ] && kill "${dpid[berth]}" 2>/dev/null
  if [ -n "${dpid[docker]}" ] && kill -TERM "${dpid[docker]}" 2>/dev/null; then
    for _ in $(seq 1 150); do kill -0 "${dpid[docker]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${dpid[docker]}" 2>/dev/null
  fi
  for p in $(pgrep -f "$work" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  for e in berth docker; do
    for n in "${ns[$e]}" "${peer[$e]}"; do
      [ -e "/run/netns/$n" ] || continue
      for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
      # Empty it even if something still holds it: rules and links go now, not later.
      ip netns exec "$n" nft flush ruleset 2>/dev/null
      for l in $(ip -n "$n" -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        [ "$l" = lo ] || ip -n "$n" link del "$l" 2>/dev/null
      done
      ip netns del "$n"
    done
  done
  sleep 0.3
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A cargo build on this (small) machine would skew everything: wait for it, up to 10 minutes.
for i in $(seq 1 120); do
  pgrep -x rustc >/dev/null || break
  [ "$i" = 1 ] && echo "bench: a rustc is running; waiting for it to finish..." >&2
  [ "$i" = 120 ] && echo "bench: still a rustc after 10 minutes; going on (figures may be skewed)" >&2
  sleep 5
done

# Our own copy of the binary: a rebuild during the run does not swap it.
mkdir -p "$work/bin"
cp "$berth_src" "$work/bin/berth"
berth=$work/bin/berth

# The image: busybox, iperf3 and the libraries it loads, a page for httpd.
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/www" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$(command -v busybox)" "$root/bin/busybox"
for a in sh sleep httpd cat true; do ln -s busybox "$root/bin/$a"; done
cp "$(command -v iperf3)" "$root/bin/iperf3"
for lib in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
[ -e "$root/lib64" ] || ln -s lib "$root/lib64" 2>/dev/null || true
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'hello from berth bench/net.sh' >"$root/www/index.html"
tar -C "$root" -cf "$work/rootfs.tar" .

# The connection client: N x (connect, GET, read to EOF, close), in P processes.
cat >"$work/conn.py" <<'PY'
import json, multiprocessing as mp, socket, statistics, sys, time
host, port, n, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
REQ = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
def one():
    a = time.perf_counter()
    s = socket.create_connection((host, port), timeout=10)
    b = time.perf_counter()
    s.sendall(REQ)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    if not got.startswith(b"HTTP/1."):
        raise SystemExit(f"bad answer from {host}:{port}: {got[:60]!r}")
    return b - a, time.perf_counter() - a
def worker(k, q):
    q.put([one() for _ in range(k)])
for _ in range(20):  # warm-up
    one()
if procs <= 1:
    t0 = time.perf_counter()
    res = [one() for _ in range(n)]
    wall = time.perf_counter() - t0
else:
    q = mp.Queue()
    ps = [mp.Process(target=worker, args=(n // procs, q)) for _ in range(procs)]
    t0 = time.perf_counter()
    for p in ps: p.start()
    res = [r for _ in ps for r in q.get()]
    wall = time.perf_counter() - t0
    for p in ps: p.join()
lat = sorted(r[1] for r in res)
print(json.dumps({"rate": len(res) / wall, "p50_ms": statistics.median(lat) * 1e3,
                  "p90_ms": lat[int(len(lat) * 0.9)] * 1e3,
                  "connect_p50_ms": statistics.median(r[0] for r in res) * 1e3}))
PY

# The namespaces: lo up in each; a veth between the engine's namespace and its peer.
for e in berth docker; do
  ip netns add "${ns[$e]}"
  ip netns add "${peer[$e]}"
  ip -n "${ns[$e]}" link set lo up
  ip -n "${peer[$e]}" link set lo up
  ip -n "${ns[$e]}" link add ext0 type veth peer name ext0 netns "${peer[$e]}"
  ip -n "${ns[$e]}" addr add "$ext_host/24" dev ext0
  ip -n "${peer[$e]}" addr add "$ext_peer/24" dev ext0
  ip -n "${ns[$e]}" link set ext0 up
  ip -n "${peer[$e]}" link set ext0 up
done
# dockerd takes a --bridge other than docker0 only if it exists (and --bip not with it).
ip -n "${ns[docker]}" link add dnb1 type bridge
ip -n "${ns[docker]}" addr add 10.89.0.1/24 dev dnb1
ip -n "${ns[docker]}" link set dnb1 up

# berth daemon
"$berth" --data-root "$work/berth" import "$work/rootfs.tar" bench/net:1 >/dev/null
nsenter --net="/run/netns/${ns[berth]}" "$berth" daemon --data-root "$work/berth" --exec-root "$work/berth-run" \
  -H "${sock[berth]}" --bridge btnb1 --bip 10.88.0.1/24 >"$work/berth.log" 2>&1 &
dpid[berth]=$!

# dockerd (+ the containerd it starts)
mkdir -p "$work/docker" "$DOCKER_CONFIG"
echo '{}' >"$work/docker/daemon.json"
nsenter --net="/run/netns/${ns[docker]}" dockerd --config-file "$work/docker/daemon.json" \
  --data-root "$work/docker/data" --exec-root "$work/docker/exec" -H "unix://${sock[docker]}" \
  --pidfile "$work/docker/dockerd.pid" --bridge dnb1 --iptables=true --storage-driver=overlay2 \
  >"$work/docker/dockerd.log" 2>&1 &
dpid[docker]=$!

for e in berth docker; do
  for _ in $(seq 1 300); do dk "$e" version >/dev/null 2>&1 && break; sleep 0.1; done
  dk "$e" version >/dev/null 2>&1 || { echo "bench: $e daemon did not start:" >&2; tail -n 20 "$work"/*.log "$work"/docker/*.log >&2; exit 1; }
done
dk docker import "$work/rootfs.tar" bench/net:1 >/dev/null

declare -A srv_ip web_ip
for e in berth docker; do
  dk "$e" run -d --name srv -p 5201:5201 bench/net:1 iperf3 -s >/dev/null
  dk "$e" run -d --name web -p 8080:80 bench/net:1 httpd -f -p 80 -h /www >/dev/null
  dk "$e" run -d --name cli bench/net:1 sleep 100000 >/dev/null
  srv_ip[$e]=$(dk "$e" inspect -f '{{.NetworkSettings.IPAddress}}' srv)
  web_ip[$e]=$(dk "$e" inspect -f '{{.NetworkSettings.IPAddress}}' web)
done
echo "berth: srv ${srv_ip[berth]}, web ${web_ip[berth]}; docker: srv ${srv_ip[docker]}, web ${web_ip[docker]}" >&2

results=$work/results.tsv
: >"$results"
# iperf3 client: $1 engine, $2 where it runs (c2c|host|peer), $3 address, $4 port
iperf() {
  local e=$1 where=$2 addr=$3 port=$4 out
  local args=(iperf3 -c "$addr" -p "$port" -t "$duration" -O 1 -J)
  for try in 1 2 3; do
    case $where in
      c2c) out=$(timeout $((duration + 30)) docker -H "unix://${sock[$e]}" exec cli "${args[@]}") ;;
      host) out=$(timeout $((duration + 30)) ip netns exec "${ns[$e]}" "${args[@]}") ;;
      peer) out=$(timeout $((duration + 30)) ip netns exec "${peer[$e]}" "${args[@]}") ;;
    esac && break
    echo "bench: iperf3 $e $where $addr:$port failed (try $try)" >&2
    out=
    sleep 1
  done
  [ -n "$out" ] || exit 1
  printf '%s' "$out" | $py -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9)'
}
# connection client: $1 engine, $2 where (host|peer), $3 address, $4 port, $5 processes
conn() {
  local e=$1 where=$2 addr=$3 port=$4 procs=$5 n=${ns[$1]}
  [ "$where" = peer ] && n=${peer[$e]}
  timeout 300 ip netns exec "$n" "$py" "$work/conn.py" "$addr" "$port" "$conns" "$procs"
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }

# Warm up (and wait for the servers): one short iperf3 and a few connections each.
for e in berth docker; do
  for _ in $(seq 1 50); do
    ip netns exec "${ns[$e]}" iperf3 -c "${srv_ip[$e]}" -t 1 >/dev/null 2>&1 && break
    sleep 0.2
  done
  dk "$e" exec cli iperf3 -c "${srv_ip[$e]}" -t 1 >/dev/null
  ip netns exec "${ns[$e]}" "$py" "$work/conn.py" 127.0.0.1 8080 20 1 >/dev/null
done

echo "bench: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq 1 "$runs"); do
  # Alternate which engine goes first, so a drift in the machine's load is shared.
  order="berth docker"
  [ $((r % 2)) = 0 ] && order="docker berth"
  for e in $order; do
    echo "bench: run $r/$runs: $e" >&2
    record "$e" "iperf c2c" "$r" "$(iperf "$e" c2c "${srv_ip[$e]}" 5201)"
    record "$e" "iperf host->127.0.0.1" "$r" "$(iperf "$e" host 127.0.0.1 5201)"
    record "$e" "iperf host->$ext_host" "$r" "$(iperf "$e" host "$ext_host" 5201)"
    record "$e" "iperf peer->$ext_host" "$r" "$(iperf "$e" peer "$ext_host" 5201)"
    for t in "host 127.0.0.1 8080" "host $ext_host 8080" "peer $ext_host 8080" "host ${web_ip[$e]} 80"; do
      read -r where addr port <<<"$t"
      label="$where->$addr:$port"
      [ "$addr" = "${web_ip[$e]}" ] && label="host->container:80 (direct)"
      record "$e" "seq $label" "$r" "$(conn "$e" "$where" "$addr" "$port" 1)"
      record "$e" "par $label" "$r" "$(conn "$e" "$where" "$addr" "$port" "$conc")"
    done
  done
done
echo "bench: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Is the 127.0.0.1 path docker-proxy on docker's side? (listening sockets in its namespace)
proxies=$(ip netns exec "${ns[docker]}" ss -ltnp 2>/dev/null | grep -c docker-proxy || true)
echo "bench: docker-proxy listeners in dockerd's namespace: $proxies" >&2

[ -n "${BENCH_JSON:-}" ] && cp "$results" "$BENCH_JSON"
$py - "$results" "$runs" "$duration" "$conns" "$conc" <<'PY'
import json, statistics, sys
from collections import defaultdict
path, runs, duration, conns, conc = sys.argv[1:]
v = defaultdict(list)
for line in open(path):
    e, test, _, val = line.rstrip("\n").split("\t")
    v[(e, test)].append(json.loads(val))
tests = list(dict.fromkeys(t for _, t in v))
med = lambda xs: statistics.median(xs)
print(f"Networking: berth daemon vs dockerd 20.10 (median of {runs} runs)")
print(f"\niperf3, one TCP stream, {duration} s (Gbit/s, receiver side)")
print("| path | berth | dockerd | berth/dockerd |")
print("| --- | ---: | ---: | ---: |")
for t in (t for t in tests if t.startswith("iperf ")):
    b, d = med(v[("berth", t)]), med(v[("docker", t)])
    print(f"| {t[6:]} | {b:.2f} | {d:.2f} | {b / d:.2f} |")
print(f"\nshort connections (connect, HTTP/1.0 GET to busybox httpd, read to EOF, close), {conns} per test")
print("| path | berth p50 | dockerd p50 | berth/dockerd | berth connect p50 | dockerd connect p50 |"
      f" berth conn/s ({conc} clients) | dockerd conn/s | berth/dockerd |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for t in (t for t in tests if t.startswith("seq ")):
    p = "par " + t[4:]
    g = lambda e, tt, k: med([x[k] for x in v[(e, tt)]])
    bl, dl = g("berth", t, "p50_ms"), g("docker", t, "p50_ms")
    bc, dc = g("berth", t, "connect_p50_ms"), g("docker", t, "connect_p50_ms")
    br, dr = g("berth", p, "rate"), g("docker", p, "rate")
    print(f"| {t[4:]} | {bl:.3f} ms | {dl:.3f} ms | {bl / dl:.2f} | {bc:.3f} ms | {dc:.3f} ms"
          f" | {br:.0f} | {dr:.0f} | {br / dr:.2f} |")
PY
