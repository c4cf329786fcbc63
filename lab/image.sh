#!/usr/bin/env bash
# Builds the lab's image, a bare Debian host with systemd, unless it exists already; prints its name.
#   lab/image.sh [SUITE]   bookworm (Debian 12, the default) or trixie (Debian 13, the upgrade's new host)
# This file and the suite are the whole recipe: the image is tagged with their hash, so editing it means a
# rebuild and leaving it alone means none.
set -euo pipefail
lab=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=$lab/containers.conf
suite=${1:-bookworm}
case $suite in
  bookworm | trixie) ;;
  *) echo "image.sh: unknown suite $suite (bookworm or trixie)" >&2; exit 2 ;;
esac

hash=$({ cat "$lab/image.sh"; echo "$suite"; } | sha256sum | cut -c1-12)
image=localhost/pgrepl-lab:$suite-$hash
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

# What Ansible and the roles expect on a freshly installed host; the roles install the rest themselves
# (postgresql, chrony...), so that the lab proves they can.
packages=(
  systemd systemd-sysv dbus     # a real init: units, timers, systemctl, timedatectl
  python3 python3-apt           # Ansible's modules, its apt module
  sudo acl                      # become_user: postgres (acl lets Ansible hand its temp files over)
  ca-certificates netbase iproute2 iputils-ping procps cron
)

# Debian's mirrors as this host's apt is configured (one-line or deb822 sources alike). This host runs bookworm:
# another suite comes from the same mirrors.
# shellcheck disable=SC2016 # $(REPO_URI) is apt's placeholder, not the shell's
mirror_of() {
  apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' 'Origin: Debian' "Release: $1" | awk 'NR == 1'
}
mirror=$(mirror_of bookworm)
if [[ -z $mirror ]]; then
  echo "image.sh: no Debian bookworm mirror in this host's apt sources" >&2
  exit 1
fi

rootfs=$(mktemp -d /var/tmp/pgrepl-lab-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$lab/../.lab"
log=$(cd "$lab/../.lab" && pwd)/image-build-$suite.log
echo "==> building $image from $mirror (log: $log)" >&2
if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" "$suite" "$rootfs" "$mirror" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  exit 1
fi

# The containers use the same mirrors as this host, point releases and security updates included.
for pocket in "" -updates -security; do
  uri=$(mirror_of "bookworm$pocket")
  if [[ -n $uri ]]; then echo "deb $uri $suite$pocket main"; fi
done >"$rootfs/etc/apt/sources.list"

# An empty machine-id: systemd gives each container its own at boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# No stale package lists or .debs in the image: hosts run apt-get update like real ones.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" --numeric-owner -c . |
  podman import --quiet --change 'CMD=["/sbin/init"]' --change "LABEL=pgrepl.lab.recipe=$hash" - "$image" >/dev/null
echo "$image"
