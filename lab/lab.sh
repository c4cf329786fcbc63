#!/usr/bin/env bash
# The lab: three Debian 12 hosts running systemd, as podman containers on their own network, and on demand a
# fourth, master3, Debian 13 (the new host of an upgrade, playbooks/upgrade.yml).
#   lab/lab.sh up [HOST...]   build the images if their recipe changed; create and start whatever is missing of
#                             HOST... (default: master slave master2; add master3 to have it too)
#   lab/lab.sh down    remove the containers and the network (the image and .lab/apt-archives stay: rebuilding
#                      the one and downloading the other again are slow)
#   lab/lab.sh status  containers, addresses, systemd state
# up and down are idempotent.
set -euo pipefail
lab=$(cd "$(dirname "$0")" && pwd)
state=$(dirname "$lab")/.lab # git-ignored: the image build log, apt's downloads, the host's ip_forward before the lab
# The project's podman settings (runc, ulimits, capabilities), never the host's.
export CONTAINERS_CONF=$lab/containers.conf

network=pgrepl-lab
subnet=10.11.12.0/24
gateway=10.11.12.1
all_hosts=(master slave master2 master3)
hosts=(master slave master2) # those `up` starts unless told which
declare -A address=([master]=10.11.12.241 [slave]=10.11.12.242 [master2]=10.11.12.243 [master3]=10.11.12.244)
# Debian release of each host (lab/image.sh SUITE): bookworm unless said here.
declare -A suite=([master3]=trixie)

die() {
  echo "lab.sh: $*" >&2
  exit 1
}

# netavark switches IPv4 forwarding on, host-wide, as soon as a container joins a bridge network (internal
# ones too), and leaves its global iptables chains behind when the last container goes. `up` records the
# host's forwarding setting; `down` puts it back and removes those chains, so that the host is left as found.
remember_ip_forward() {
  mkdir -p "$state"
  [[ -e $state/ip_forward.before ]] || cat /proc/sys/net/ipv4/ip_forward >"$state/ip_forward.before"
}

restore_host() {
  [[ -e $state/ip_forward.before ]] || return 0 # the lab did not run since the last restore
  # Other containers (molecule's, say) may still need both: leave that to the next `down`.
  if [[ -n $(podman ps -q) ]]; then
    echo "lab.sh: other containers are running: IPv4 forwarding and netavark's iptables chains left as they are" >&2
    return 0
  fi
  # Only netavark's own chains and the jumps to them; netavark re-creates them for its next container.
  local table chain
  for table in nat filter; do
    iptables -w -t "$table" -S | awk '$1 == "-A" && $2 !~ /^NETAVARK/ && /-j NETAVARK/ { $1 = "-D"; print }' |
      xargs -r -L1 iptables -w -t "$table"
    for chain in $(iptables -w -t "$table" -S | awk '$1 == "-N" && $2 ~ /^NETAVARK/ { print $2 }'); do
      iptables -w -t "$table" -F "$chain"
      iptables -w -t "$table" -X "$chain"
    done
  done
  cat "$state/ip_forward.before" >/proc/sys/net/ipv4/ip_forward
  rm "$state/ip_forward.before"
}

ensure_network() {
  # No DNS server (aardvark-dns) on the host: the containers know each other from /etc/hosts (--add-host)
  # and resolve the rest with the host's resolvers.
  if ! podman network exists "$network"; then
    podman network create --subnet "$subnet" --gateway "$gateway" --disable-dns --label pgrepl.lab=true \
      "$network" >/dev/null
  fi
  local have
  have=$(podman network inspect -f '{{range .Subnets}}{{.Subnet}}{{end}}' "$network")
  [[ $have == "$subnet" ]] || die "network $network exists with subnet $have, not $subnet: run lab/lab.sh down"
}

# Creates the host's container, or re-creates it when the image or its settings changed: a label holds
# the hash of the arguments it was created with.
ensure_container() {
  local host=$1 image=$2 name=pgrepl-$1 other
  local args=(--name "$name" --hostname "$host" --network "$network" --ip "${address[$host]}")
  for other in "${all_hosts[@]}"; do
    [[ $other == "$host" ]] || args+=(--add-host "$other:${address[$other]}")
  done
  # The .debs apt downloads stay on this machine, in the project's .lab/apt-archives/HOST (apt's own cache
  # directory, bind-mounted): a re-created host installs PostgreSQL without downloading it again. The package
  # lists are not kept: each host runs apt-get update as a fresh one does. One directory per host, as apt locks
  # its cache directory while it downloads and the hosts install at the same time.
  mkdir -p "$state/apt-archives/$host"
  args+=(--volume "$state/apt-archives/$host:/var/cache/apt/archives")
  # systemd as PID 1; SYS_TIME is not granted by containers.conf anyway, dropping it says it must never be.
  args+=(--systemd=always --cap-drop=SYS_TIME "$image" /sbin/init)
  local want have=""
  want=$(printf '%s\n' "${args[@]}" | sha256sum | cut -c1-12)
  if podman container exists "$name"; then
    have=$(podman container inspect -f '{{index .Config.Labels "pgrepl.lab.config"}}' "$name")
    if [[ $have != "$want" ]]; then
      echo "==> $name: image or settings changed, re-creating it"
      podman rm -f --time 10 "$name" >/dev/null
    elif [[ $(podman container inspect -f '{{.State.Status}}' "$name") == running ]] &&
      ! podman exec "$name" true >/dev/null 2>&1; then
      # podman's state says running but the processes are gone (the machine restarted under it)
      echo "==> $name: stale (recorded as running, no process), re-creating it"
      podman rm -f --time 10 "$name" >/dev/null
    fi
  fi
  if ! podman container exists "$name"; then
    podman create --label pgrepl.lab=true --label "pgrepl.lab.config=$want" "${args[@]}" >/dev/null
  fi
  podman start "$name" >/dev/null
}

# "running" once boot is over, "degraded" if a unit failed (possibly one a role installed: only a warning).
wait_booted() {
  local name=pgrepl-$1 s="" i
  for ((i = 0; i < 90; i++)); do
    s=$(podman exec "$name" systemctl is-system-running 2>/dev/null) || true
    [[ $s == running || $s == degraded ]] && break
    sleep 1
  done
  case $s in
    running) ;;
    degraded) podman exec "$name" systemctl --failed --no-legend | sed "s/^/lab.sh: $name: failed unit: /" >&2 ;;
    *) die "$name: systemd did not finish booting (state: ${s:-unknown})" ;;
  esac
}

# Images of older recipes of SUITE go, except those a container still uses (podman refuses to remove them).
prune_images() {
  local release=$1 keep=$2 old
  for old in $(podman images --filter reference=localhost/pgrepl-lab --format '{{.Repository}}:{{.Tag}}'); do
    [[ $old == "$keep" || $old != localhost/pgrepl-lab:$release-* ]] || podman rmi "$old" >/dev/null 2>&1 || true
  done
}

up() {
  local host s
  declare -A image=()
  [[ $# -eq 0 ]] || hosts=("$@")
  for host in "${hosts[@]}"; do
    [[ -n ${address[$host]:-} ]] || die "no host $host (hosts: ${all_hosts[*]})"
    s=${suite[$host]:-bookworm}
    [[ -n ${image[$s]:-} ]] || image[$s]=$("$lab/image.sh" "$s")
  done
  remember_ip_forward
  ensure_network
  for host in "${hosts[@]}"; do ensure_container "$host" "${image[${suite[$host]:-bookworm}]}"; done
  for host in "${hosts[@]}"; do wait_booted "$host"; done
  for s in "${!image[@]}"; do prune_images "$s" "${image[$s]}"; done
  status
}

down() {
  local host
  for host in "${all_hosts[@]}"; do podman rm -f --ignore --time 10 "pgrepl-$host" >/dev/null; done
  if podman network exists "$network"; then podman network rm "$network" >/dev/null; fi
  restore_host
}

status() {
  local host name s
  hosts=("${all_hosts[@]}")
  if podman network exists "$network"; then echo "network $network $subnet"; else echo "network $network: absent"; fi
  for host in "${hosts[@]}"; do
    name=pgrepl-$host
    if ! podman container exists "$name"; then
      s=absent
    else
      s=$(podman container inspect -f '{{.State.Status}}' "$name")
      if [[ $s == running ]]; then s="running, systemd $(podman exec "$name" systemctl is-system-running 2>/dev/null || true)"; fi
    fi
    printf '%-8s %-13s %-15s %s\n' "$host" "${address[$host]}" "$name" "$s"
  done
}

case ${1:-} in
  up) shift; up "$@" ;;
  down | status) "$1" ;;
  *) die "usage: lab/lab.sh up [HOST...]|down|status" ;;
esac
