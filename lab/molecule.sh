#!/usr/bin/env bash
# The molecule scenarios on the lab (make test-molecule), one after the other (they share the three containers):
#   default               create, converge (site.yml), idempotence, verify (testinfra), destroy
#   failover-of-a-target  create, converge, side_effect (slave down during load), verify, destroy
#   topology              two hosts -> the founding document's three -> a sync pruned; destroy
# Each scenario starts from fresh containers (lab/lab.sh down, then up).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CONTAINERS_CONF=$root/lab/containers.conf
export ANSIBLE_COLLECTIONS_PATH=$root/.tmp/collections
export PATH=$root/.venv/bin:$PATH
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

step() { printf '\n\033[1m---- molecule: %s ----\033[0m\n' "$*"; }
trap 'lab/lab.sh down' EXIT

step "default"
molecule test -s default
step "failover-of-a-target"
molecule test -s failover-of-a-target
# --destroy never keeps the lab between stages, and also skips the sequence's first destroy: destroy first.
TOPOLOGY_STAGE=two molecule destroy -s topology
for stage in two three prune; do
  step "topology, stage $stage"
  if [[ $stage == two ]]; then
    TOPOLOGY_STAGE=$stage molecule test -s topology --destroy never
  else
    TOPOLOGY_STAGE=$stage molecule converge -s topology
    TOPOLOGY_STAGE=$stage molecule verify -s topology
  fi
done
TOPOLOGY_STAGE=prune molecule destroy -s topology
