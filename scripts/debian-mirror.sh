#!/usr/bin/env bash
# Print the Debian mirror debootstrap should use: $MIRROR, else the first .../debian URL of the
# host's apt sources (one-line or deb822 format; not the security one), else deb.debian.org.
set -euo pipefail
mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^[:space:]]+' | sed 's#/*$##' \
    | grep -E '/debian$' | head -n 1 || true)
fi
echo "${mirror:-http://deb.debian.org/debian}"
