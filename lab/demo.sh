#!/usr/bin/env bash
# make demo: the founding document's cluster on the lab's three hosts, deployed by ansible-playbook, under a
# pgbench workload on both masters; then the status of every runner and every table side by side.
# Re-running it is fine: the lab, the deploy and the syncs are idempotent; pgbench adds transactions.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CONTAINERS_CONF=$root/lab/containers.conf
export ANSIBLE_COLLECTIONS_PATH=$root/.tmp/collections
export PATH=$root/.venv/bin:$PATH
# Ansible's own files (its local temporary files) stay in the project.
export ANSIBLE_HOME=$root/.tmp/ansible-home
seconds=${DEMO_PGBENCH_SECONDS:-20}
hosts=(master slave master2)
tables=(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
sql() { podman exec -u postgres "pgrepl-$1" psql -X -At -d test1 -c "$2"; }
pgrepl_on() { podman exec -u pgrepl_runner "pgrepl-$1" pgrepl "${@:2}"; }

step "The lab: three Debian 12 hosts in podman containers (lab/lab.sh up)"
lab/lab.sh up

step "The collection pgrepl.cluster, built and installed from its tarball"
scripts/build-collection.sh

step "ansible-playbook -i inventories/lab playbooks/site.yml"
ansible-playbook -i inventories/lab playbooks/site.yml

# The invariant's terms, read before the load and before any copy of pgbench_history (benchcopybeta overwrites
# master2's): the balances' sums on master, and each master's total of the deltas its own pgbench applies.
balances="SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches)"
history="SELECT coalesce(sum(delta), 0) FROM pgbench_history"
read -r start_a start_t start_b <<<"$(sql master "$balances")"
declare -A history_before
for host in master master2; do history_before[$host]=$(sql "$host" "$history"); done

step "pgbench TPC-B for ${seconds}s on master and on master2 at once (-c 2 each)"
declare -A pgbench
for host in master master2; do
  podman exec -u postgres "pgrepl-$host" pgbench -n -c 2 -T "$seconds" test1 >".lab/pgbench-$host.log" 2>&1 &
  pgbench[$host]=$!
done
for host in master master2; do
  wait "${pgbench[$host]}" || { cat ".lab/pgbench-$host.log"; exit 1; }
done
grep -h "^tps" .lab/pgbench-master.log .lab/pgbench-master2.log | sed 's/^/    /'
applied=0
for host in master master2; do applied=$((applied + $(sql "$host" "$history") - history_before[$host])); done

step "Kicks: the swap (master2 <-> master), then the pushdelta to slave, then the fullcopy of pgbench_history"
pgrepl_on master2 kick benchswapgamma --wait 120
pgrepl_on master kick benchdeltaalpha --wait 120
pgrepl_on master kick benchcopybeta --wait 120

for runner in master master2; do
  step "pgrepl status on $runner"
  pgrepl_on "$runner" status
done

step "Every table on every host: rows and an order-independent checksum"
printf '%-18s' table
for host in "${hosts[@]}"; do printf '%-26s' "$host"; done
echo
all_equal=true
for t in "${tables[@]}"; do
  printf '%-18s' "$t"
  seen=()
  for host in "${hosts[@]}"; do
    v=$(sql "$host" "SELECT count(*) || ' ' || left(coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '-'), 12) FROM $t AS t")
    printf '%-26s' "$v"
    seen+=("$v")
  done
  if [[ ${seen[0]} == "${seen[1]}" && ${seen[0]} == "${seen[2]}" ]]; then echo "equal"; else echo "DIFFERENT"; all_equal=false; fi
done

step "The invariant: sum(abalance) = sum(tbalance) = sum(bbalance) = start + every delta pgbench applied on both masters"
echo "    deltas pgbench applied: $applied (both masters' pgbench_history, read before it was copied)"
printf '%-10s %-14s %-14s %-14s %s\n' host "sum(abalance)" "sum(tbalance)" "sum(bbalance)" "expected (start + deltas)"
for host in "${hosts[@]}"; do
  read -r a t b <<<"$(sql "$host" "$balances")"
  if ((a == start_a + applied && t == start_t + applied && b == start_b + applied)); then verdict=holds; else verdict=BROKEN; all_equal=false; fi
  printf '%-10s %-14s %-14s %-14s %s %s %s: %s\n' "$host" "$a" "$t" "$b" $((start_a + applied)) $((start_t + applied)) $((start_b + applied)) "$verdict"
done

cat <<'EOF'

Try next:
  podman exec -it -u postgres pgrepl-master psql test1          # a host's database (also pgrepl-slave, pgrepl-master2)
  podman exec -u pgrepl_runner pgrepl-master pgrepl status             # the runner of benchdeltaalpha and benchcopybeta
  podman exec -u pgrepl_runner pgrepl-master2 pgrepl list conflicts    # the swap's conflict journal
  .venv/bin/ansible-playbook -i inventories/lab playbooks/kick.yml -e kick_syncs=benchcopybeta
  make lab-down                                                 # remove the containers and the network
EOF
$all_equal || { echo "demo: some tables differ between hosts, or the invariant is broken" >&2; exit 1; }
