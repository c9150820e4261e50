#!/usr/bin/env bash
# Build a plain Debian bookworm root filesystem (debootstrap --variant=minbase) as a tarball for
# `import`: the base of examples/mariadb's Dockerfile. apt lists, caches, docs and logs removed;
# later installs skip docs. Mirror: the host's apt sources (MIRROR=... to override).
# Usage (as root): scripts/rootfs-debian.sh OUT.tar     (reused when newer than this script)
set -euo pipefail
out=${1:?usage: rootfs-debian.sh OUT.tar}
self=$(readlink -f "$0")
if [ -f "$out" ] && [ "$out" -nt "$self" ]; then
  echo "rootfs-debian: reusing $out (newer than $self)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "rootfs-debian: must run as root" >&2; exit 1; }
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
command -v debootstrap >/dev/null || { echo "rootfs-debian: debootstrap is missing (apt-get install -y debootstrap)" >&2; exit 1; }
mirror=$("$(dirname "$self")/debian-mirror.sh")
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$(readlink -f "$out")")/.rootfs-debian.XXXXXX")
root=$work/root
cleanup() {
  for m in $(awk -v r="$root" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)
if ! debootstrap --variant=minbase --components=main bookworm "$root" "$mirror" >"$work/log" 2>&1; then
  tail -n 40 "$work/log" >&2
  echo "rootfs-debian: debootstrap failed" >&2
  exit 1
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
  >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc"
tar --numeric-owner -cpf "$work/out.tar" -C "$root" .
mv "$work/out.tar" "$out"
echo "rootfs-debian: $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start)) s"
