#!/usr/bin/env bash
# Build a Debian bookworm root filesystem with mariadb-server, as a tarball for `docker import`.
# Usage (as root): scripts/rootfs-mariadb.sh OUT.tar
#   debootstrap --variant=minbase (no recommends, no docs, apt caches cleaned) from the mirror the
#   host's apt sources name (MIRROR=... to override), plus /usr/local/bin/db-entrypoint: like the
#   official mariadb image's entrypoint, it initialises an empty /var/lib/mysql, sets root's
#   password from MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD), creates MYSQL_DATABASE, lets root
#   in from any host, then execs mariadbd in the foreground. Import it with
#   docker import --change 'ENTRYPOINT ["/usr/local/bin/db-entrypoint"]' OUT.tar NAME
# If OUT.tar is newer than this script it is reused. Needs: debootstrap.
set -euo pipefail
out=${1:?usage: rootfs-mariadb.sh OUT.tar}
self=$(readlink -f "$0")
if [ -f "$out" ] && [ "$out" -nt "$self" ]; then
  echo "rootfs-mariadb: reusing $out (newer than $self)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "rootfs-mariadb: must run as root" >&2; exit 1; }
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
command -v debootstrap >/dev/null || {
  echo "rootfs-mariadb: debootstrap is missing (apt-get install -y debootstrap)" >&2
  exit 1
}

# The Debian mirror of the host's apt sources (one-line or deb822 format), not the security one.
mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^[:space:]]+' | sed 's#/*$##' \
    | grep -E '/debian$' | head -n 1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

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

cat >"$root/usr/local/bin/db-entrypoint" <<'EOF'
#!/bin/sh
# Like the official mariadb image's entrypoint: initialise an empty data directory (root's
# password from MYSQL_ROOT_PASSWORD or MARIADB_ROOT_PASSWORD, MYSQL_DATABASE created, root allowed
# from any host), then run mariadbd in the foreground. Arguments starting with '-' go to mariadbd;
# any other command is run as is.
set -eu
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi
datadir=/var/lib/mysql
log() { echo "db-entrypoint: $*" >&2; }
# As root (the default) the server drops to mysql, who must own the data (a bind-mounted
# directory may be root's); with --user mysql the image's own ownership has to do.
asuser=
if [ "$(id -u)" = 0 ]; then
  asuser=--user=mysql
  mkdir -p "$datadir" /run/mysqld
  chown mysql:mysql /run/mysqld
  if [ "$(stat -c %U "$datadir")" != mysql ]; then
    chown -R mysql:mysql "$datadir"
  fi
fi
init=
if [ ! -d "$datadir/mysql" ]; then
  pw=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
  db=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
  user=${MARIADB_USER:-${MYSQL_USER:-}}
  userpw=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
  if [ -z "$pw" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}" ]; then
    log "database is uninitialized and password option is not specified"
    log "  You need to specify one of MARIADB_ROOT_PASSWORD, MYSQL_ROOT_PASSWORD or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD"
    exit 1
  fi
  log "initialising $datadir"
  /usr/bin/mariadb-install-db $asuser --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
  # SQL string literal: double backslashes and quotes.
  q() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g"; }
  # (printf, not echo: dash's echo would undo the doubled backslashes.)
  line() { printf '%s\n' "$1"; }
  init=/run/mysqld/init.sql
  {
    line "SET @@SESSION.SQL_LOG_BIN=0;"
    # mariadb-install-db's other root accounts (by address and by this container's hostname) go.
    line "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', ''@'localhost';"
    line "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
    line "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(q "$pw")';"
    line "CREATE USER 'root'@'%' IDENTIFIED BY '$(q "$pw")';"
    line "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$db" ]; then
      line "CREATE DATABASE IF NOT EXISTS \`$db\`;"
    fi
    if [ -n "$user" ] && [ -n "$userpw" ]; then
      line "CREATE USER '$(q "$user")'@'%' IDENTIFIED BY '$(q "$userpw")';"
      if [ -n "$db" ]; then
        line "GRANT ALL ON \`$db\`.* TO '$(q "$user")'@'%';"
      fi
    fi
    line "FLUSH PRIVILEGES;"
  } >"$init"
  chmod 600 "$init"
  [ -z "$asuser" ] || chown mysql:mysql "$init"
fi
log "starting mariadbd"
# The init file runs once, before the first client is served; an error in it stops the server.
if [ -n "$init" ]; then
  exec /usr/sbin/mariadbd $asuser --bind-address=0.0.0.0 --skip-name-resolve --init-file="$init" "$@"
fi
exec /usr/sbin/mariadbd $asuser --bind-address=0.0.0.0 --skip-name-resolve "$@"
EOF
chmod 0755 "$root/usr/local/bin/db-entrypoint"

tar --numeric-owner -cpf "$work/out.tar" -C "$root" .
mv "$work/out.tar" "$out"
echo "rootfs-mariadb: $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start)) s"
