#!/usr/bin/env bash
# Build a Debian bookworm root filesystem with mariadb-server, as a tarball for `docker import`.
# Usage (as root): scripts/rootfs-mariadb.sh OUT.tar
#   debootstrap --variant=minbase (no recommends, no docs, apt caches cleaned) from the mirror the
#   host's apt sources name (MIRROR=... to override), plus /usr/local/bin/db-entrypoint: like the
#   official mariadb image's entrypoint, it initialises an empty /var/lib/mysql, sets root's
#   password from MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD), creates MYSQL_DATABASE, lets root
#   in from any host, then execs mariadbd in the foreground (examples/mariadb/db-entrypoint). Import it with
#   docker import --change 'ENTRYPOINT ["/usr/local/bin/db-entrypoint"]' OUT.tar NAME
# If OUT.tar is newer than this script it is reused. Needs: debootstrap.
set -euo pipefail
out=${1:?usage: rootfs-mariadb.sh OUT.tar}
self=$(readlink -f "$0")
# The entrypoint is the example's (examples/mariadb, which builds the same image from a Dockerfile).
entry=$(dirname "$self")/../examples/mariadb/db-entrypoint
if [ -f "$out" ] && [ "$out" -nt "$self" ] && [ "$out" -nt "$entry" ]; then
  echo "rootfs-mariadb: reusing $out (newer than $self)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "rootfs-mariadb: must run as root" >&2; exit 1; }
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
command -v debootstrap >/dev/null || {
  echo "rootfs-mariadb: debootstrap is missing (apt-get install -y debootstrap)" >&2
  exit 1
}

mirror=$("$(dirname "$self")/debian-mirror.sh")

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$(readlink -f "$out")")/.rootfs-mariadb.XXXXXX")
root=$work/root
cleanup() {
  # debootstrap mounts proc/sys in the target; a failure can leave them.
  for m in $(awk -v r="$root" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
echo "rootfs-mariadb: debootstrap bookworm from $mirror"
if ! debootstrap --variant=minbase --include=mariadb-server --components=main bookworm "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1; then
  tail -n 40 "$work/debootstrap.log" >&2
  [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 40 "$root/debootstrap/debootstrap.log" >&2
  echo "rootfs-mariadb: debootstrap failed" >&2
  exit 1
fi
echo "rootfs-mariadb: debootstrap took $(($(date +%s) - start)) s"

# Leave nothing of the package install's own server behind: an empty data directory (the
# entrypoint initialises it, and a named volume must not be filled with a root without password).
rm -rf "${root:?}/var/lib/mysql" && mkdir -p "$root/var/lib/mysql" "$root/run/mysqld"
chroot "$root" chown mysql:mysql /var/lib/mysql /run/mysqld
chmod 0755 "$root/var/lib/mysql" "$root/run/mysqld"
# Slim: apt caches and lists, docs, man pages, locales, logs; nothing of the host.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/usr/share/lintian "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"
# Later apt installs in the image skip docs too.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
  >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc"

install -m 0755 "$entry" "$root/usr/local/bin/db-entrypoint"

tar --numeric-owner -cpf "$work/out.tar" -C "$root" .
mv "$work/out.tar" "$out"
echo "rootfs-mariadb: $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start)) s"
