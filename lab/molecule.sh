#!/usr/bin/env bash
# The molecule scenarios of extensions/molecule/ on the lab (make test-molecule), one after the other: they share
# the containers, and each starts from fresh ones (lab/lab.sh down, then up).
#   default               create, converge (site.yml), idempotence, verify (testinfra, a runner upgrade), destroy
#   failover-of-a-target  create, converge, idempotence, side_effect (slave down during load), verify, destroy
#   topology              two hosts -> the founding document's three -> a sync pruned (then idempotence); destroy
#   upgrade               master and master3 only: create, converge, side_effect (upgrade.yml under pgbench,
#                         pgbench on master3, rollback.yml), verify, destroy
# Their shared settings: extensions/molecule/config.yml.
#   lab/molecule.sh [SCENARIO...]   all four by default; prints how long each took.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CONTAINERS_CONF=$root/lab/containers.conf
export ANSIBLE_COLLECTIONS_PATH=$root/.tmp/collections
# Ansible's and molecule's own files (local temporary files, molecule's instance state) stay in the project.
export ANSIBLE_HOME=$root/.tmp/ansible-home
export PATH=$root/.venv/bin:$PATH
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

step() { printf '\n\033[1m---- molecule: %s ----\033[0m\n' "$*"; }
timings=()
timed() { # NAME COMMAND...: runs it, records how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%-22s %2dm%02ds' "$name" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)))")
}

topology() {
  # The stages share one lab: destroy first, then converge and verify each (converge creates the lab if needed).
  TOPOLOGY_STAGE=two molecule destroy -s topology
  local stage
  for stage in two three prune; do
    step "topology, stage $stage"
    TOPOLOGY_STAGE=$stage molecule converge -s topology
    # One idempotence run, on the last stage: a prune run again changes nothing (the stages' own are alike).
    if [[ $stage == prune ]]; then TOPOLOGY_STAGE=$stage molecule idempotence -s topology; fi
    TOPOLOGY_STAGE=$stage molecule verify -s topology
  done
  TOPOLOGY_STAGE=prune molecule destroy -s topology
}

scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(default failover-of-a-target topology upgrade)
for s in "${scenarios[@]}"; do
  [[ -f extensions/molecule/$s/molecule.yml ]] || { echo "molecule.sh: no scenario $s" >&2; exit 2; }
done

mkdir -p "$ANSIBLE_HOME"
trap 'lab/lab.sh down' EXIT
step "the collection under test"
scripts/build-collection.sh
start=$SECONDS
for s in "${scenarios[@]}"; do
  step "$s"
  case $s in
    topology) timed "$s" topology ;;
    *) timed "$s" molecule test -s "$s" ;;
  esac
done
timings+=("$(printf '%-22s %2dm%02ds' "all" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)))")
step "timings"
printf '%s\n' "${timings[@]}"
