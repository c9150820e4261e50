#!/usr/bin/env bash
# Install the system packages Berth's build, demo and tests need (Debian 12, as root).
# Usage: scripts/deps.sh [demo|test]
set -euo pipefail
want=${1:-test}
pkgs=(busybox-static ca-certificates procps util-linux python3 nftables)
if [ "$want" = test ]; then
  pkgs+=(gcc libc6-dev debootstrap mariadb-client iperf3 runc hyperfine docker.io docker-compose podman uidmap iptables skopeo umoci docker-registry openssl time git)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker-py for the engine's compatibility test (the python3 first on the PATH runs it).
if [ "$want" = test ] && ! python3 -c 'import docker' >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  python3 -m pip install -q --break-system-packages docker==7.1.0 2>/dev/null \
    || python3 -m pip install -q docker==7.1.0
fi
# dockerd and the registry must not start on their own (tests start their own, on private sockets and ports).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now docker.service docker.socket containerd.service docker-registry.service >/dev/null 2>&1 || true
fi
