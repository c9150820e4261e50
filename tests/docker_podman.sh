#!/usr/bin/env bash
# Berth as the OCI runtime of the real engines: a private dockerd (20.10, with the containerd it
# starts itself) and podman both drive a symlink named `berth-runc`, and every check asserts an
# outcome seen from the engine's side (exit codes, bytes, cgroup files, state).
#
# Usage: tests/docker_podman.sh [path-to-berth]     (as root; default target/release/berth)
#
# Nothing of the host is touched: dockerd gets its own --data-root, --exec-root, socket, pidfile
# and config, no bridge and no iptables; podman gets its own --root/--runroot/--tmpdir and
# containers.conf; containers use cgroup parents named after this run, removed at the end.
# Environment: BERTH_DP_SKIP_DOCKER=1 / BERTH_DP_SKIP_PODMAN=1 skip one engine;
#              BERTH_DP_KEEP=1 keeps the work directory (for debugging).
set -uo pipefail

started=$(date +%s)
top=$(cd "$(dirname "$0")/.." && pwd)
berth=$(realpath -e "${1:-$top/target/release/berth}") || {
  echo "docker_podman: berth binary not found: ${1:-$top/target/release/berth}" >&2
  exit 2
}
[ "$(id -u)" = 0 ] || { echo "docker_podman: must run as root" >&2; exit 2; }
for tool in dockerd docker containerd containerd-shim-runc-v2 podman conmon busybox python3; do
  command -v "$tool" >/dev/null || { echo "docker_podman: $tool is missing (scripts/deps.sh test)" >&2; exit 2; }
done

# Short path: the containerd socket lives under the exec root and unix socket paths are < 108 bytes.
work=$(mktemp -d /tmp/bdp.XXXXXX)
chmod 755 "$work"
tag=bdp$$                                    # names this run: cgroup parents, image, containers
dcg=/$tag-docker                             # cgroup parent of docker's containers
pcg=/$tag-podman                             # cgroup parent of podman's containers (and conmon)
sock=$work/docker.sock
image=berth-busybox:$tag
mkdir -p "$work/bin" "$work/docker" "$work/podman"/{root,run,tmp} "$work/dockercfg"
ln -s "$berth" "$work/bin/berth-runc"
runtime=$work/bin/berth-runc
echo '{}' >"$work/dockercfg/config.json"
export DOCKER_CONFIG=$work/dockercfg          # the CLIs' config (docker's context, auth) stays private
# Podman reads only these (no /etc/containers/{containers,storage}.conf of the host).
printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' >"$work/podman/containers.conf"
printf '[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n' \
  "$work/podman/run" "$work/podman/root" >"$work/podman/storage.conf"
export CONTAINERS_CONF=$work/podman/containers.conf CONTAINERS_STORAGE_CONF=$work/podman/storage.conf

# Podman (4.3) gives the runtime no --root, and its cleanup process would not pass a
# --runtime-flag root=... on, so berth keeps podman's containers in its default /run/berth.
run_berth_existed=0
[ -e /run/berth ] && run_berth_existed=1

pass=0
fail=0
failed=()
dockerd_pid=

ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() {
  echo "FAIL $1"
  failed+=("$1")
  fail=$((fail + 1))
  shift
  [ $# -gt 0 ] && printf '     %s\n' "$@"
  [ -s "$work/last.err" ] && grep -v '^\s*$' "$work/last.err" | tail -3 | sed 's/^/     stderr: /'
  return 0
}

# check NAME EXPECTED ACTUAL [details...]
check() {
  local name=$1 want=$2 got=$3
  shift 3
  if [ "$want" = "$got" ]; then ok "$name"; else bad "$name" "want: $(printf %q "$want")" "got:  $(printf %q "$got")" "$@"; fi
}

# Every engine command gets at most 60 s and the whole run BERTH_DP_DEADLINE (170 s): past it
# commands fail at once (status 124), so a hang fails checks instead of stalling the run.
deadline=$((started + ${BERTH_DP_DEADLINE:-170}))
limit() {
  local left=$((deadline - $(date +%s)))
  [ "$left" -gt 0 ] || { echo "docker_podman: deadline passed, not running: $*" >&2; return 124; }
  # The engine's stderr goes to last.err, shown with a failed check.
  timeout "$((left < 60 ? left : 60))" "$@" 2>"$work/last.err"
}
d() { limit docker --host "unix://$sock" "$@"; }
p() {
  limit podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" \
    --storage-driver overlay --runtime "$runtime" --cgroup-manager=cgroupfs --events-backend=file "$@"
}
# `podman run` with what every run here needs. Podman (as root) asks for RLIMIT_NOFILE and
# RLIMIT_NPROC of 1048576 / 4194304 unless told otherwise; without CAP_SYS_RESOURCE (or when the
# hard limits are lower) no runtime can raise them, so explicit limits within ours are given.
prun() { p run --network none --cgroup-parent "$pcg" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@"; }
drun() { d run --network none "$@"; }

cgroup_dirs() { # every cgroup directory of this run (any hierarchy), deepest first
  local h
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    for parent in "$dcg" "$pcg"; do
      [ -d "$h${parent#/}" ] && find "$h${parent#/}" -depth -type d
    done
  done 2>/dev/null | sort -u -r
}

our_pids() { # processes whose command line names the work directory (dockerd, containerd, shims, conmon)
  local f pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [ "$pid" = $$ ] && continue
    tr '\0' ' ' <"$f" | grep -qF "$work" && echo "$pid"
  done 2>/dev/null
}

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM HUP
  trap '' PIPE # a reader that went away (| head) must not cut the cleanup short
  set +e
  deadline=$(($(date +%s) + 60)) # cleanup gets its own minute
  : >"$work/last.err"
  if [ -S "$sock" ]; then
    d ps -aq 2>/dev/null | xargs -r timeout 30 docker --host "unix://$sock" rm -f >/dev/null 2>&1
    d rmi -f "$image" >/dev/null 2>&1
  fi
  if [ -d "$work/podman/root/libpod" ]; then
    p rm -fa -t 0 >/dev/null 2>&1
    p rmi -fa >/dev/null 2>&1
  fi
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    kill -TERM "$dockerd_pid"
    for i in $(seq 1 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid"
    wait "$dockerd_pid" 2>/dev/null
  fi
  # Whatever outlived dockerd (its containerd, shims, conmon): ours by the work directory.
  for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null; done
  # Containers berth left in its default root (podman's) for bundles of this run.
  local left_state
  left_state=$(grep -l -F "$work/" /run/berth/*/state.json 2>/dev/null | xargs -r -n1 dirname)
  for i in $left_state; do "$berth" runtime delete --force "$(basename "$i")" >/dev/null 2>&1; done
  # Container processes still in this run's cgroups.
  for pid in $(cgroup_dirs | sed 's|$|/cgroup.procs|' | xargs -r cat 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  # Mounts under the work directory (overlay roots, storage bind mounts, netns files), deepest first.
  for i in 1 2 3; do
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  done
  # Cgroups: the parents named after this run and whatever the engines made below them.
  for i in 1 2 3 4 5; do
    [ -z "$(cgroup_dirs)" ] && break
    cgroup_dirs | while read -r c; do rmdir "$c" 2>/dev/null; done
    sleep 0.2
  done
  # Berth's default root, if this run made it (only when empty: others may be using it).
  [ "$run_berth_existed" = 0 ] && rmdir /run/berth 2>/dev/null
  local left_cg left_mnt
  left_cg=$(cgroup_dirs)
  left_mnt=$(awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo)
  if [ -n "$left_state" ]; then bad "cleanup: no berth state left in /run/berth" $left_state; fi
  if [ -n "$left_cg" ]; then bad "cleanup: cgroups removed" $left_cg; else ok "cleanup: cgroups removed"; fi
  if [ -n "$left_mnt" ]; then
    bad "cleanup: mounts removed (work directory kept: $work)" $left_mnt
  elif [ "${BERTH_DP_KEEP:-0}" = 1 ]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
  echo "docker_podman: $pass passed, $fail failed ($(($(date +%s) - started))s)"
  [ "$fail" -gt 0 ] && printf '  failed: %s\n' "${failed[@]}"
  if [ "$fail" -gt 0 ]; then exit 1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# ---------------------------------------------------------------------------------------------
# The image: Debian's busybox-static as the whole root filesystem (as scripts/mkbundle.sh makes it).
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,etc,root,home,var,run}
cp /bin/busybox "$rootfs/bin/busybox"
for app in $("$rootfs/bin/busybox" --list); do
  [ "$app" = busybox ] || ln -sf busybox "$rootfs/bin/$app"
done
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" -cf "$work/busybox.tar" . || { bad "tar busybox rootfs"; exit 1; }

# berth_state ROOT ID: "STATUS PID" from `berth runtime state`, or what it printed instead.
berth_state() {
  "$berth" runtime --root "$1" state "$2" 2>&1 | python3 -c '
import json, sys
text = sys.stdin.read()
try:
    s = json.loads(text)
    print(s["status"], s["pid"])
except Exception:
    print(text.strip())'
}

# A file's bytes as hex, to compare output exactly.
hex() { od -An -tx1 -v | tr -d ' \n'; }
want_bytes=$(printf 'hello \001\377 berth\n' | hex)

# ---------------------------------------------------------------------------------------------
docker_checks() {
  echo "== docker (dockerd $(dockerd --version | awk '{print $3}' | tr -d ,), runtime $runtime)"
  echo '{}' >"$work/docker/daemon.json"
  # dockerd 20.10 starts its own containerd (from PATH) when --containerd is not given; its
  # socket, state and root then live under our exec root and data root.
  timeout 300 dockerd \
    --config-file "$work/docker/daemon.json" \
    --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
    -H "unix://$sock" --pidfile "$work/docker/dockerd.pid" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --userland-proxy=false --storage-driver=overlay2 --exec-opt native.cgroupdriver=cgroupfs \
    --cgroup-parent "$dcg" --add-runtime "berth=$runtime" --default-runtime runc \
    >"$work/docker/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local i
  for i in $(seq 1 300); do
    d version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! d version >/dev/null 2>&1; then
    bad "docker: dockerd starts" "$(tail -20 "$work/docker/dockerd.log")"
    return
  fi
  ok "docker: dockerd starts (private containerd: $(d info -f '{{.ContainerdCommit.ID}}' 2>/dev/null))"
  d info -f '{{json .Runtimes}}' | grep -q "\"berth\":{\"path\":\"$runtime\"" &&
    ok "docker: runtime berth registered" || bad "docker: runtime berth registered" "$(d info -f '{{json .Runtimes}}')"
  if ! d import "$work/busybox.tar" "$image" >/dev/null; then
    bad "docker: import busybox image"
    return
  fi
  ok "docker: import busybox image"

  local out rc id pid
  drun --rm --runtime berth "$image" sh -c 'exit 7'
  check "docker: exit code 7 propagated" 7 $?

  out=$(drun --rm --runtime berth "$image" printf 'hello \001\377 berth\n' | hex)
  check "docker: stdout bytes" "$want_bytes" "$out"

  out=$(printf 'in\001put' | drun --rm -i --runtime berth "$image" cat | hex)
  check "docker: stdin bytes (-i)" "$(printf 'in\001put' | hex)" "$out"

  out=$(drun --rm --runtime berth "$image" sh -c 'echo err >&2' >/dev/null && cat "$work/last.err")
  check "docker: stderr" err "$out"

  out=$(drun --rm --runtime berth --memory 64m "$image" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
  check "docker: --memory 64m inside (memory.limit_in_bytes)" 67108864 "$out"

  out=$(drun --rm --runtime berth --hostname berth-box "$image" hostname)
  check "docker: --hostname" berth-box "$out"

  out=$(drun --rm --runtime berth -e BERTH_GREETING='hi there' "$image" sh -c 'echo "$BERTH_GREETING"')
  check "docker: -e env" "hi there" "$out"

  out=$(drun --rm --runtime berth --read-only "$image" sh -c 'touch /probe 2>/dev/null && echo writable || echo read-only; touch /tmp/x 2>/dev/null; echo tmp=$?')
  check "docker: --read-only root" "read-only tmp=1" "$(echo $out)"
  out=$(drun --rm --runtime berth --read-only --tmpfs /tmp "$image" sh -c 'touch /tmp/x && echo tmpfs-writable')
  check "docker: --read-only with --tmpfs /tmp" tmpfs-writable "$out"
  out=$(drun --rm --runtime berth "$image" sh -c 'touch /probe && echo writable')
  check "docker: root writable without --read-only" writable "$out"

  out=$(drun --rm --runtime berth --user 1000 "$image" sh -c 'echo $(id -u) $(id -g)')
  check "docker: --user 1000" "1000 0" "$out"
  out=$(drun --rm --runtime berth --user 1000:1000 --group-add 2000 "$image" id -G)
  check "docker: --user 1000:1000 --group-add 2000" "1000 2000" "$out"

  out=$(drun --rm --runtime berth --workdir /tmp "$image" pwd)
  check "docker: --workdir" /tmp "$out"

  # The glob is expanded by sh itself: the only process in the pid namespace is pid 1.
  out=$(drun --rm --runtime berth "$image" sh -c 'set -- /proc/[0-9]*; echo $$ $*')
  check "docker: pid 1 in a fresh pid namespace" "1 /proc/1" "$out"

  out=$(drun --rm --runtime berth --cap-add NET_ADMIN --cap-drop CHOWN "$image" sh -c 'grep CapEff /proc/self/status')
  check "docker: --cap-add NET_ADMIN --cap-drop CHOWN" "CapEff:	00000000a80435fa" "$out"

  out=$(drun --rm --runtime berth "$image" sh -c 'mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo denied')
  check "docker: default profile denies mount" denied "$out"

  out=$(drun --rm --runtime berth --pids-limit 50 "$image" cat /sys/fs/cgroup/pids/pids.max)
  check "docker: --pids-limit 50" 50 "$out"

  out=$(drun --rm -t --runtime berth "$image" sh -c 'tty; test -t 1 && echo stdout-is-tty' </dev/null | tr -d '\r')
  check "docker: -t gives a terminal" "/dev/pts/0 stdout-is-tty" "$(echo $out)"

  # A running container: cgroup from the host side, exec, top, pause, update, stop, rm.
  id=$(drun -d --runtime berth --memory 64m --name "$tag-d" "$image" \
    sh -c 'trap "exit 0" TERM; while :; do sleep 0.2; done')
  if [ -z "$id" ]; then
    bad "docker: run -d"
    return
  fi
  ok "docker: run -d"
  pid=$(d inspect -f '{{.State.Pid}}' "$id")
  # Berth, not runc, made it: berth reads the state it wrote (dockerd 20.10 gives every runtime
  # the state root <exec-root>/runtime-runc/moby).
  out=$(berth_state "$work/docker/exec/runtime-runc/moby" "$id")
  check "docker: berth state of the container" "running $pid" "$out"
  out=$(cat "/sys/fs/cgroup/memory$dcg/$id/memory.limit_in_bytes" 2>&1)
  check "docker: --memory 64m on the host ($dcg/<id>)" 67108864 "$out"
  out=$(awk -F: '$2 == "memory" { print $3 }' "/proc/$pid/cgroup" 2>&1)
  check "docker: init is in that cgroup" "$dcg/$id" "$out"
  # Docker sends cpu.shares 0 and blockIO.weight 0 for "not set": the kernel default stays.
  out=$(cat "/sys/fs/cgroup/cpu$dcg/$id/cpu.shares" 2>&1)
  check "docker: cpu.shares left at the default (1024)" 1024 "$out"
  out=$(d exec "$id" sh -c 'echo exec-ok $(hostname); tr "\0" " " </proc/1/cmdline')
  check "docker: exec joins the container" "exec-ok ${id:0:12} sh -c trap \"exit 0\" TERM; while :; do sleep 0.2; done" "$(echo $out)"
  d exec "$id" sh -c 'exit 5'
  check "docker: exec exit code 5" 5 $?
  out=$(d exec --user 1000 -e X=y -w /tmp "$id" sh -c 'echo $(id -u) $X $(pwd)')
  check "docker: exec --user -e -w" "1000 y /tmp" "$out"
  out=$(d exec -t "$id" tty </dev/null | tr -d '\r')
  check "docker: exec -t" /dev/pts/0 "$out"
  out=$(d exec "$id" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
  check "docker: exec sees the container's cgroup" 67108864 "$out"
  out=$(d top "$id" -o pid,args 2>&1 | grep -c 'sh -c trap')
  check "docker: top (runtime ps)" 1 "$out"
  d pause "$id" >/dev/null
  out=$(d inspect -f '{{.State.Status}}' "$id"; cat "/sys/fs/cgroup/freezer$dcg/$id/freezer.state" 2>&1)
  check "docker: pause" "paused FROZEN" "$(echo $out)"
  d unpause "$id" >/dev/null
  out=$(d inspect -f '{{.State.Status}}' "$id"; cat "/sys/fs/cgroup/freezer$dcg/$id/freezer.state" 2>&1)
  check "docker: unpause" "running THAWED" "$(echo $out)"
  d update --memory 96m --memory-swap 192m "$id" >/dev/null
  out=$(cat "/sys/fs/cgroup/memory$dcg/$id/memory.limit_in_bytes" 2>&1)
  check "docker: update --memory 96m" 100663296 "$out"
  d stop -t 10 "$id" >/dev/null
  out=$(d inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")
  check "docker: stop (SIGTERM reaches init, exit 0)" "exited 0" "$out"
  [ -d "/sys/fs/cgroup/memory$dcg/$id" ] && bad "docker: stopped container's cgroup removed" ||
    ok "docker: stopped container's cgroup removed"
  d rm "$id" >/dev/null
  out=$(d ps -aq --filter "id=$id")
  check "docker: rm" "" "$out"

  # Signals and kill from the engine.
  id=$(drun -d --runtime berth "$image" sleep 300)
  d kill "$id" >/dev/null
  out=$(d wait "$id")
  check "docker: kill → exit 137" 137 "$out"
  d rm "$id" >/dev/null
  id=$(drun -d --runtime berth "$image" sh -c 'echo logged; exit 3')
  out=$(d wait "$id")
  check "docker: wait on a detached container" 3 "$out"
  out=$(d logs "$id" 2>&1)
  check "docker: logs" logged "$out"
  d rm "$id" >/dev/null

  # Image archives both ways: berth save -> docker load (and run), docker save -> berth load.
  local broot=$work/berth-images want got
  "$berth" --data-root "$broot" import -c 'CMD ["echo","from-berth"]' "$work/busybox.tar" berth-made/bb:v1 \
    >/dev/null 2>"$work/last.err"
  "$berth" --data-root "$broot" save -o "$work/berth-save.tar" berth-made/bb:v1 2>"$work/last.err"
  out=$(d load -i "$work/berth-save.tar" 2>"$work/last.err")
  check "docker: loads what berth save wrote" "Loaded image: berth-made/bb:v1" "$out"
  out=$(drun --rm --runtime berth berth-made/bb:v1 2>"$work/last.err")
  check "docker: runs the image berth imported and saved (its CMD)" from-berth "$out"
  d rmi berth-made/bb:v1 >/dev/null 2>&1
  d save -o "$work/docker-save.tar" "$image" 2>"$work/last.err"
  out=$("$berth" --data-root "$broot" load -i "$work/docker-save.tar" 2>"$work/last.err")
  check "berth: loads what docker save wrote" "Loaded image: $image" "$out"
  want=$(d image inspect -f '{{json .RootFS.Layers}}' "$image")
  got=$("$berth" --data-root "$broot" image inspect "$image" 2>"$work/last.err" |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[0]["RootFS"]["Layers"],separators=(",",":")))')
  check "berth: same layer DiffIDs as docker after load" "$want" "$got"

  # Nothing of berth's state outlives the containers.
  out=$(find "$work/docker/exec"/runtime-*/moby -mindepth 1 -maxdepth 1 2>/dev/null)
  check "docker: no berth state left" "" "$out"
}

# ---------------------------------------------------------------------------------------------
podman_checks() {
  echo "== podman ($(podman --version | awk '{print $3}'), runtime $runtime)"
  if ! p import -q "$work/busybox.tar" "$image" >/dev/null; then
    bad "podman: import busybox image"
    return
  fi
  ok "podman: import busybox image"

  local out id pid
  prun --rm "$image" sh -c 'exit 7'
  check "podman: exit code 7 propagated" 7 $?

  out=$(prun --rm "$image" printf 'hello \001\377 berth\n' | hex)
  check "podman: stdout bytes" "$want_bytes" "$out"

  out=$(printf 'in\001put' | prun --rm -i "$image" cat | hex)
  check "podman: stdin bytes (-i)" "$(printf 'in\001put' | hex)" "$out"

  out=$(prun --rm --memory 64m "$image" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
  check "podman: --memory 64m inside (memory.limit_in_bytes)" 67108864 "$out"

  out=$(prun --rm --hostname berth-box "$image" hostname)
  check "podman: --hostname" berth-box "$out"

  out=$(prun --rm -e BERTH_GREETING='hi there' "$image" sh -c 'echo "$BERTH_GREETING"')
  check "podman: -e env" "hi there" "$out"

  out=$(prun --rm --read-only=true --read-only-tmpfs=false "$image" sh -c 'touch /probe 2>/dev/null && echo writable || echo read-only')
  check "podman: --read-only root" read-only "$out"

  out=$(prun --rm --user 1000 "$image" sh -c 'echo $(id -u) $(id -g)')
  check "podman: --user 1000" "1000 0" "$out"

  out=$(prun --rm "$image" sh -c 'echo $(ulimit -n) $(ulimit -Hn) $(ulimit -u)')
  check "podman: --ulimit nofile/nproc applied" "1024 1024 1024" "$out"

  out=$(prun --rm -t "$image" sh -c 'tty; test -t 1 && echo stdout-is-tty' </dev/null | tr -d '\r')
  check "podman: -t gives a terminal" "/dev/pts/0 stdout-is-tty" "$(echo $out)"

  id=$(prun -d --memory 64m --name "$tag-d" "$image" sh -c 'trap "exit 0" TERM; while :; do sleep 0.2; done')
  if [ -z "$id" ]; then
    bad "podman: run -d"
    return
  fi
  ok "podman: run -d"
  pid=$(p inspect -f '{{.State.Pid}}' "$id")
  out=$(berth_state /run/berth "$id")
  check "podman: berth state of the container (/run/berth)" "running $pid" "$out"
  out=$(awk -F: '$2 == "memory" { print $3 }' "/proc/$pid/cgroup" 2>&1)
  local cg=$out
  out=$(cat "/sys/fs/cgroup/memory$cg/memory.limit_in_bytes" 2>&1)
  check "podman: --memory 64m on the host ($cg)" 67108864 "$out"
  case $cg in "$pcg"/*) ok "podman: init under --cgroup-parent" ;; *) bad "podman: init under --cgroup-parent" "$cg" ;; esac
  out=$(p exec "$id" sh -c 'echo exec-ok; echo $$')
  check "podman: exec" "exec-ok" "$(echo "$out" | head -1)"
  p exec "$id" sh -c 'exit 5'
  check "podman: exec exit code 5" 5 $?
  out=$(p exec --user 1000 -e X=y -w /tmp "$id" sh -c 'echo $(id -u) $X $(pwd)')
  check "podman: exec --user -e -w" "1000 y /tmp" "$out"
  out=$(p exec -t "$id" tty </dev/null | tr -d '\r')
  check "podman: exec -t" /dev/pts/0 "$out"
  out=$(p top "$id" pid args 2>&1 | grep -c 'sh -c trap')
  check "podman: top" 1 "$out"
  p pause "$id" >/dev/null
  check "podman: pause" paused "$(p inspect -f '{{.State.Status}}' "$id")"
  p unpause "$id" >/dev/null
  check "podman: unpause" running "$(p inspect -f '{{.State.Status}}' "$id")"
  p stop -t 10 "$id" >/dev/null
  out=$(p inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")
  check "podman: stop (SIGTERM reaches init, exit 0)" "exited 0" "$out"
  [ -d "/sys/fs/cgroup/memory$cg" ] && bad "podman: stopped container's cgroup removed" ||
    ok "podman: stopped container's cgroup removed"
  p rm "$id" >/dev/null
  out=$(p ps -aq --filter "id=$id")
  check "podman: rm" "" "$out"
  id=$(prun -d "$image" sleep 300)
  p kill "$id" >/dev/null
  out=$(p wait "$id")
  check "podman: kill → exit 137" 137 "$out"
  p rm "$id" >/dev/null
  out=$(grep -l -F "$work/" /run/berth/*/state.json 2>/dev/null)
  check "podman: no berth state left (/run/berth)" "" "$out"
}

[ "${BERTH_DP_SKIP_DOCKER:-0}" = 1 ] || docker_checks
[ "${BERTH_DP_SKIP_PODMAN:-0}" = 1 ] || podman_checks
exit 0
