#!/usr/bin/env bash
# The runtime alone: build Berth, make a busybox bundle and run it isolated, showing that the
# container sees itself as pid 1, has its own hostname and a 64 MiB memory limit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo
cargo build --release -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts/mkbundle.sh "$work/bundle" target/release/berth -- sh -c '
  echo "pid inside:      $$"
  echo "hostname:        $(hostname)"
  echo "memory limit:    $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
  echo "processes seen:  $(ps -o pid= | wc -l)"
  echo "capabilities:    $(grep CapEff /proc/self/status)"'
# 64 MiB memory limit and a hostname of our own.
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["hostname"] = "berth-demo"
c["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
json.dump(c, open(p, "w"), indent=2)
PY
target/release/berth runtime --root "$work/state" run --bundle "$work/bundle" demo-$$
