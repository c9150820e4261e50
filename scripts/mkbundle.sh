#!/usr/bin/env bash
# Make an OCI bundle whose root filesystem is Debian's busybox-static.
# Usage: scripts/mkbundle.sh DIR [BERTH] [-- CMD...]
#   DIR    bundle directory to create (rootfs/ and config.json)
#   BERTH  berth binary used to write config.json (default: target/release/berth)
set -euo pipefail
dir=${1:?usage: mkbundle.sh DIR [BERTH] [-- CMD...]}
shift
berth=${1:-target/release/berth}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
[ -x /bin/busybox ] || { echo "mkbundle: /bin/busybox is missing (apt-get install -y busybox-static)" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir/rootfs"/{bin,dev,proc,sys,tmp,etc,root,home,var,run}
cp /bin/busybox "$dir/rootfs/bin/busybox"
for app in $("$dir/rootfs/bin/busybox" --list); do
  [ "$app" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$app"
done
chmod 1777 "$dir/rootfs/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$dir/rootfs/etc/group"
if [ $# -gt 0 ]; then
  "$berth" runtime spec --bundle "$dir" -- "$@"
else
  "$berth" runtime spec --bundle "$dir" -- sh
fi
sed -i 's#"PATH=[^"]*"#"PATH=/bin"#' "$dir/config.json"
