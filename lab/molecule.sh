#!/usr/bin/env bash
# The molecule scenarios of extensions/molecule/ on the lab (make test-molecule), one after the other: they share
# the containers, and each starts from fresh ones (lab/lab.sh down, then up).
#   default               create, converge (site.yml), idempotence, verify (testinfra, a runner upgrade), destroy
#   failover-of-a-target  side_effect (slave down during load), verify, destroy: it goes on from default's cluster
#                         (same hosts, inventory and site.yml), sparing a second create, converge and idempotence;
#                         run alone (lab/molecule.sh failover-of-a-target) it is its own whole test sequence
#   topology              two hosts -> the founding document's three -> a sync pruned (then idempotence); destroy.
#                         Stage three is first run in check mode (a new host, the runner's user changing), which
#                         must end well and change nothing: stage two's tests run again after it
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
    if [[ $stage == three ]]; then
      TOPOLOGY_STAGE=$stage molecule converge -s topology -- --check --diff
      TOPOLOGY_STAGE=two molecule verify -s topology
    fi
    TOPOLOGY_STAGE=$stage molecule converge -s topology
    # One idempotence run, on the last stage: a prune run again changes nothing (the stages' own are alike).
    if [[ $stage == prune ]]; then TOPOLOGY_STAGE=$stage molecule idempotence -s topology; fi
    TOPOLOGY_STAGE=$stage molecule verify -s topology
  done
  TOPOLOGY_STAGE=prune molecule destroy -s topology
}

# failover-of-a-target converges what default converges: its side effect and verify go on from default's cluster,
# verified and left up. Its own create only tells molecule how to reach the running containers.
default_kept_up() {
  molecule destroy -s failover-of-a-target
  molecule destroy -s default
  local s
  for s in create converge idempotence verify; do molecule "$s" -s default; done
}
failover_on_default() {
  local s
  for s in create side-effect verify destroy; do molecule "$s" -s failover-of-a-target; done
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
# default then failover-of-a-target, both asked for: one cluster for the two.
if [[ " ${scenarios[*]} " == *" default "* && " ${scenarios[*]} " == *" failover-of-a-target "* ]]; then
  step "default, kept up for failover-of-a-target"
  timed default default_kept_up
  step "failover-of-a-target, on default's cluster"
  timed failover-of-a-target failover_on_default
  rest=()
  for s in "${scenarios[@]}"; do [[ $s == default || $s == failover-of-a-target ]] || rest+=("$s"); done
  scenarios=("${rest[@]}")
fi
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
