#!/usr/bin/env bash
# Builds the runner's wheel into roles/sync_runner/files/, the pgrepl.cluster collection into .tmp/dist/, and
# installs that tarball into .tmp/collections/, where the Makefile points ANSIBLE_COLLECTIONS_PATH: playbooks run
# the collection as users get it, not the work tree.
# Offline: Ansible Galaxy is not needed. The dependencies (community.postgresql, ...) come with the `ansible`
# package of the venv, so the tarball is installed with --no-deps and each dependency is checked to be there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PATH=$root/.venv/bin:$PATH
dist=$root/.tmp/dist
collections=$root/.tmp/collections
export ANSIBLE_COLLECTIONS_PATH=$collections

version=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' galaxy.yml)
tarball=$dist/pgrepl-cluster-$version.tar.gz

mkdir -p "$dist" "$collections"
# The runner, as the sync_runner role installs it on the hosts: a wheel in the role's files/ (not in git).
echo "Built the runner: $(basename "$(scripts/build-wheel.sh roles/sync_runner/files)")"
rm -f "$dist"/pgrepl-cluster-*.tar.gz
ansible-galaxy collection build --force --output-path "$dist" . >/dev/null
ansible-galaxy collection install --force --no-deps -p "$collections" "$tarball" >/dev/null
echo "Built and installed $(basename "$tarball") in ${collections#"$root"/}"

# Every dependency of galaxy.yml must be found where ansible looks (the venv's ansible package included), in a
# version the requirement accepts.
python3 - galaxy.yml <<'PY'
import json, subprocess, sys, yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

deps = yaml.safe_load(open(sys.argv[1])).get("dependencies") or {}
found = json.loads(subprocess.run(["ansible-galaxy", "collection", "list", "--format", "json"],
                                  check=True, capture_output=True, text=True).stdout)
installed = {}
for where in found.values():  # first path wins, as for ansible itself
    for name, info in where.items():
        installed.setdefault(name, info["version"])
missing = [f"{name} {req} (found: {installed.get(name, 'none')})" for name, req in deps.items()
           if name not in installed or not meets_requirements(installed[name], req)]
if missing:
    sys.exit("Dependencies not available offline: " + "; ".join(missing))
print("Dependencies found: " + ", ".join(f"{name} {installed[name]}" for name in deps))
PY
