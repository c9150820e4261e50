#!/usr/bin/env bash
# Berth vs runc as OCI runtimes, measured with hyperfine on the same busybox bundle (as root).
#
# Usage: bench/runtime.sh [path-to-berth]        (default target/release/berth)
# Environment: RUNS (default 30), WARMUP (default 3), RUNC (default: runc on PATH),
#              BENCH_JSON=FILE also writes the summary as JSON.
#
# Scenarios (each runtime gets its own --root state directory):
#   run          `run` of /bin/true: create, start, wait, delete in one command
#   run+memory   the same with a 64 MiB memory limit in config.json (memory cgroup written)
#   lifecycle    `create`, `start`, `delete --force` as three commands (what an engine does)
# `run` deletes its container when the process exits and the lifecycle deletes it explicitly,
# so one container id per runtime and scenario is reused; the state roots are checked empty
# after every scenario.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
berth=$(realpath -e "${1:-$top/target/release/berth}")
runc=$(command -v "${RUNC:-runc}") || { echo "bench: runc is missing (apt-get install runc)" >&2; exit 2; }
runs=${RUNS:-30}
warmup=${WARMUP:-3}
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "bench: hyperfine is missing (apt-get install hyperfine)" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
cg=berth-bench-$$ # cgroup parent of every container here

cleanup() {
  set +e
  local root id h
  for root in "$work/state-berth" "$work/state-runc"; do
    [ -d "$root" ] || continue
    for id in $(ls "$root"); do
      case $root in
        *berth) "$berth" runtime --root "$root" delete --force "$id" ;;
        *) "$runc" --root "$root" delete --force "$id" ;;
      esac
    done
  done >/dev/null 2>&1
  for h in /sys/fs/cgroup/*/"$cg" /sys/fs/cgroup/"$cg"; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  [ "${BENCH_KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# bundle DIR CGROUP_LEAF [PYTHON-EDIT]: busybox rootfs, /bin/true, Docker-equivalent config
# (namespaces, capabilities, Docker's default seccomp profile, masked paths) from `berth runtime spec`.
bundle() {
  "$top/scripts/mkbundle.sh" "$1" "$berth" -- /bin/true >/dev/null
  python3 - "$1/config.json" "/$cg/$2" "${3:-}" <<'PY'
import json, sys
path, cgroups_path, edit = sys.argv[1:4]
c = json.load(open(path))
c["process"]["terminal"] = False
c["linux"]["cgroupsPath"] = cgroups_path
exec(edit)
json.dump(c, open(path, "w"), indent=2)
PY
}
bundle "$work/run" run
bundle "$work/mem" mem 'c["linux"].setdefault("resources", {})["memory"] = {"limit": 64 * 1024 * 1024}'
bundle "$work/life" life
bundle "$work/memcheck" mem 'c["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
c["process"]["args"] = ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]'

# The cgroup parent exists before the runs, so that both runtimes create and remove only their
# container's own directory (runc keeps parents it made, berth removes them).
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [ -e "${h}cgroup.procs" ] || continue
  mkdir -p "$h$cg"
  if [ -e "${h}cpuset.cpus" ]; then
    cat "${h}cpuset.cpus" >"$h$cg/cpuset.cpus"
    cat "${h}cpuset.mems" >"$h$cg/cpuset.mems"
  fi
done

B="$berth runtime --root $work/state-berth"
R="$runc --root $work/state-runc"
mkdir -p "$work/state-berth" "$work/state-runc"

# Sanity: both runtimes run the bundles, and the memory limit really lands in the cgroup.
for rt in "$B" "$R"; do
  $rt run --bundle "$work/run" sanity
  got=$($rt run --bundle "$work/memcheck" sanity)
  [ "$got" = 67108864 ] || { echo "bench: memory limit not applied by ${rt%% *}: $got" >&2; exit 1; }
done

check_empty() {
  local left
  left=$(find "$work/state-berth" "$work/state-runc" -mindepth 1 -maxdepth 1)
  [ -z "$left" ] || { echo "bench: containers left behind: $left" >&2; exit 1; }
}

hf() { # NAME hyperfine-args...
  local name=$1
  shift
  echo "== $name"
  hyperfine --style basic --warmup "$warmup" --runs "$runs" --export-json "$work/$name.json" "$@"
  check_empty
}

hf run -N \
  -n berth "$B run --bundle $work/run b-run" \
  -n runc "$R run --bundle $work/run r-run"
hf run+memory -N \
  -n berth "$B run --bundle $work/mem b-mem" \
  -n runc "$R run --bundle $work/mem r-mem"
# Three commands need a shell; hyperfine measures and subtracts the shell's own start-up.
hf lifecycle \
  -n berth "$B create --bundle $work/life b-life && $B start b-life && $B delete --force b-life" \
  -n runc "$R create --bundle $work/life r-life && $R start r-life && $R delete --force r-life"

echo
python3 - "$work" "${BENCH_JSON:-}" "$("$runc" --version | head -1)" <<'PY'
import json, sys
work, out, runc_version = sys.argv[1:4]
rows = []
for name in ["run", "run+memory", "lifecycle"]:
    res = {r["command"]: r for r in json.load(open(f"{work}/{name}.json"))["results"]}
    b, r = res["berth"], res["runc"]
    rows.append({
        "scenario": name,
        "berth_median_ms": b["median"] * 1000, "runc_median_ms": r["median"] * 1000,
        "berth_stddev_ms": b["stddev"] * 1000, "runc_stddev_ms": r["stddev"] * 1000,
        "ratio": b["median"] / r["median"],
    })
print(f"berth vs {runc_version}: median wall time (ratio < 1: berth is faster)")
print("| scenario | berth median | runc median | berth/runc |")
print("| --- | ---: | ---: | ---: |")
for x in rows:
    print(f"| {x['scenario']} | {x['berth_median_ms']:.1f} ms | {x['runc_median_ms']:.1f} ms | {x['ratio']:.2f} |")
if out:
    json.dump(rows, open(out, "w"), indent=2)
PY
