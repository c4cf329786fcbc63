#!/usr/bin/env bash
# Installs the Debian packages the project needs on this (Debian 12) machine. Idempotent: a no-op when all are there.
set -euo pipefail
packages=(
  # local PostgreSQL clusters for the runner and module tests, pgbench for workloads
  postgresql-15 postgresql-plperl-15 postgresql-client-15 libpq5
  # make bench-peers: Bucardo 5.6 beside pgrepl and native logical replication
  bucardo
  # the .venv; the runner's process titles as on the runner hosts (the .venv gets setproctitle from requirements-dev.txt)
  python3 python3-venv python3-pip python3-setproctitle
  # the lab: rootful podman (runc; netavark + iptables for its bridge network, aardvark-dns for networks with
  # DNS, molecule's), debootstrap (with Debian's keyring, to check what it fetches) to build its image
  podman runc netavark aardvark-dns iptables debootstrap debian-archive-keyring
  # misc tools the tests use
  make git procps iproute2 util-linux cron shellcheck
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a "main" cluster on 5432 when postgresql-15 is installed; the tests start their own clusters
# on other ports, so the packaged one is left alone.
echo "==> system packages ready"
