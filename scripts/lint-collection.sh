#!/usr/bin/env bash
# Lints the pgrepl.cluster collection:
#   1. ansible-lint, production profile (.ansible-lint), on the work tree;
#   2. ansible-test sanity on what the collection ships: the built tarball's files, unpacked with galaxy.yml at
#      .tmp/ansible_collections/pgrepl/cluster (ansible-test wants an ansible_collections/NS/NAME path; a symlink does
#      not do, it resolves to the work tree). Python 3.11 only, in ansible-test's own virtual environments (--venv,
#      requirements from PyPI, cached), no containers.
# No ignore files: tests/config.yml says the modules need Python >= 3.11 (they import the runner library).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH=$root/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$root/.tmp/collections

# Playbooks name the roles pgrepl.cluster.*: ansible-lint resolves them in the collection as built and installed
# in .tmp/collections (offline, it installs nothing itself), so build it first.
scripts/build-collection.sh

echo "==> ansible-lint (production profile)"
ansible-lint

echo "==> ansible-test sanity (Python 3.11)"
# ansible-test bootstraps pip in its virtual environments with a get-pip.py it downloads from a host this machine
# cannot reach; our stand-in (ensurepip, then pip from PyPI) goes where ansible-test caches that download.
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
cp scripts/ansible-test-get-pip.py "$cache/get_pip_24_2.py"
: >"$cache/get_pip_24_2.py.download"
version=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' galaxy.yml)
copy=$root/.tmp/ansible_collections/pgrepl/cluster
# A fresh copy each time, except ansible-test's output, which holds the virtual environments it reuses.
saved=$root/.tmp/sanity-output
rm -rf "$saved"
if [[ -d $copy/tests/output ]]; then mv "$copy/tests/output" "$saved"; fi
rm -rf "$copy"
mkdir -p "$copy"
tar -xzf "$root/.tmp/dist/pgrepl-cluster-$version.tar.gz" -C "$copy"
rm "$copy/MANIFEST.json" "$copy/FILES.json"
cp galaxy.yml "$copy/"
# ansible-test lists a collection's files with git when it is inside a work tree: .tmp/ is ignored by ours, so the
# copy gets a repository of its own, files staged, nothing committed.
if [[ -d $saved ]]; then mkdir -p "$copy/tests" && mv "$saved" "$copy/tests/output"; fi
git -C "$copy" init -q
echo /tests/output/ >>"$copy/.git/info/exclude" # ansible-test's own output (and its virtual environments)
git -C "$copy" add -A
cd "$copy"
ansible-test sanity --venv --python 3.11 --color no "$@"
